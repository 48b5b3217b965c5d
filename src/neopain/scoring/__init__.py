"""Rule-based pain scoring: NFCS facial actions from face mesh landmarks (``scoring.nfcs``),
over time as chin quiver and the DAN facial score (``scoring.dan``).

Example::

    from neopain.scoring import NfcsScorer
    result = NfcsScorer().score(points)    # points: FaceMesh(refine=True).landmarks(crop)
    result.actions, result.count, result.pain, result.prob_pain
"""

from neopain.scoring.actions import (
    ACTION_INFO,
    ACTIONS,
    DEFAULT_THRESHOLDS,
    POPULATION_REFERENCE,
    Measurements,
    ScoringError,
    intensities,
    measure,
)
from neopain.scoring.dan import ChinQuiver, WindowScore, chin_quiver, dan_facial_score, score_window
from neopain.scoring.nfcs import NfcsPredictor, NfcsResult, NfcsScorer, pain_probability

__all__ = [
    "ACTIONS", "ACTION_INFO", "DEFAULT_THRESHOLDS", "POPULATION_REFERENCE", "ChinQuiver",
    "Measurements", "NfcsPredictor", "NfcsResult", "NfcsScorer", "ScoringError", "WindowScore",
    "chin_quiver", "dan_facial_score", "intensities", "measure", "pain_probability",
    "score_window",
]
