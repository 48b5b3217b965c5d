"""A synthetic cohort with ground truth for every stage: faces, NFCS actions, masks, perception.

Not real infants: it exists so that every stage of neopain can be tested against known truth.
"""

from neopain.data.synthetic.cohort import (
    PAIN_THRESHOLD,
    STIMULI,
    CohortResult,
    CohortSpec,
    generate_cohort,
)
from neopain.data.synthetic.face import ACTIONS, FACE_BIT, PRESENT
from neopain.data.synthetic.perception import PERSONAS

__all__ = [
    "ACTIONS", "FACE_BIT", "PAIN_THRESHOLD", "PERSONAS", "PRESENT", "STIMULI", "CohortResult",
    "CohortSpec", "generate_cohort",
]
