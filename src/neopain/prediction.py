"""The one interface every pain model answers through at run time: face crops → ``Prediction``.

An exported CNN (``export.runtime.OnnxPredictor``) and the rule-based NFCS scorer
(``scoring.nfcs``) are both ``Predictor`` subclasses, so ``neopain assess``, the video timeline
and the bedside monitor treat them alike. ``load_predictor("nfcs")`` or
``load_predictor("model.onnx")`` picks one by name.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neopain.data.files import regular_file_problem
from neopain.errors import NeopainError

LABELS = ("nopain", "pain")


@dataclass(frozen=True)
class Prediction:
    """One face's assessment.

    Attributes:
        prob_pain: P(pain), 0–1 (for rule-based models a probability-like confidence).
        label: ``"pain"`` when ``prob_pain >= threshold``, else ``"nopain"``.
        threshold: the decision threshold the model carries.
        model: what produced it (``"nfcs"``, or the architecture and run of an exported model).
        details: model-specific numbers, e.g. NFCS action intensities and the action count.
        assessable: False when the model could not judge this face (e.g. the NFCS scorer found
            no landmarks, or the head is turned too far); ``prob_pain`` is then 0.5 and means
            nothing, and callers show "cannot assess" and leave it out of smoothing and records.
    """

    prob_pain: float
    label: str
    threshold: float
    model: str
    details: Mapping[str, float] = field(default_factory=dict)
    assessable: bool = True

    @property
    def confidence(self) -> float:
        """How sure the model is of its label: P(label), 0.5–1."""
        return self.prob_pain if self.label == "pain" else 1.0 - self.prob_pain


class Predictor(ABC):
    """Face crops in, predictions out; a context manager that releases its resources.

    Subclasses implement ``predict_crops``; ``margin`` says how much context around the detected
    face box their crops need (the same margin training crops had), so callers crop with
    ``monitor.pipeline.crop_for_predictor(image, face.box, margin=predictor.margin)``.
    """

    name: str = "predictor"
    margin: float = 0.25

    @abstractmethod
    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """Assess face crops (H×W×3 uint8, BGR like the faces package), one prediction each."""

    def close(self) -> None:  # noqa: B027 - a hook that does nothing by default (STYLE rule 7)
        """Release sessions, threads or models the predictor holds."""

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_predictor(model: str | os.PathLike[str], **options: object) -> Predictor:
    """The predictor named by ``model``: ``"nfcs"`` or the path of an exported ``.onnx`` file.

    Raises:
        NeopainError: neither ``nfcs`` nor an existing ``.onnx`` file.
    """
    if str(model) == "nfcs":
        from neopain.scoring.nfcs import NfcsPredictor

        return NfcsPredictor(**options)
    path = Path(model)
    if path.suffix.lower() == ".onnx":
        if (problem := regular_file_problem(path, what="an .onnx model file")) is not None:
            raise NeopainError(f"--model {path}: {problem}; valid: nfcs or an exported "
                               ".onnx file (neopain export)")
        from neopain.export.runtime import OnnxPredictor

        return OnnxPredictor(path, **options)
    raise NeopainError(f"--model {model!s}: not a model neopain can run; valid: nfcs or an "
                       "exported .onnx file (neopain export)")
