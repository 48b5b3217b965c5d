"""``RunPredictor``: the networks of a training run → predictions, with their uncertainty.

``--model runs/NAME/fold_K/model.pt`` (or the fold folder) runs one fold's network;
``--model runs/NAME`` runs every ``fold_K/model.pt`` of the run as one ensemble whose answer is
the mean of its members'. Crops are cut and preprocessed exactly as the ONNX runtime does
(``models.preprocess``, the fold's cfg and crop rule from ``runs.load_fold``): BGR uint8 crops in.

With ``mc_passes`` > 0 each member runs that many passes with only its dropout layers sampling
(MC dropout; batch norm stays in eval mode), and ``Prediction.prob_pain`` is the mean over all
members × passes, ``Prediction.uncertainty`` their predictive entropy and mutual information
(``evaluation.uncertainty``). An ensemble gives them even without passes: the spread between
folds. One member and ``mc_passes=0`` is one deterministic pass, with no uncertainty.

The passes are seeded (``seed``), so the same crops in the same batches give the same answer;
torch's own random state is left as it was.

Example:
    >>> with RunPredictor("runs/ncnn", mc_passes=20) as predictor:
    ...     prediction = predictor.predict_crops(crops)[0]  # doctest: +SKIP
    ...     prediction.uncertainty["mutual_information"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neopain.errors import NeopainError
from neopain.evaluation.uncertainty import (
    PassSummary,
    dropout_layers,
    mc_dropout_probs,
    pain_probability,
    summarize_passes,
)
from neopain.models.preprocess import preprocess_crop
from neopain.prediction import Prediction, Predictor, RuntimeOptions
from neopain.runs import TrainedFold, load_fold

MODEL_FILE = "model.pt"
_FOLD_DIR = re.compile(r"fold_(\d+)")
VALID = ("valid: a fold's model.pt (runs/NAME/fold_K/model.pt), its fold folder, or a run "
         "folder holding fold_K/model.pt (runs/NAME, every fold as one ensemble)")


def fold_dirs(spec: str | os.PathLike[str]) -> list[Path]:
    """The fold folders ``spec`` names: a model.pt's folder, a fold folder, or every
    ``fold_K`` with a model.pt in a run folder (by K).

    Raises:
        NeopainError: a missing path, a file other than model.pt, a special file (a FIFO, a
            device), or a folder with no model.
    """
    path = Path(spec)
    if not path.exists():
        raise NeopainError(f"--model {spec}: no such file or folder; {VALID}")
    if path.is_file():
        if path.name != MODEL_FILE:
            raise NeopainError(f"--model {spec}: not a model.pt written by neopain train; {VALID}")
        return [path.parent]
    if not path.is_dir():
        raise NeopainError(f"--model {spec}: neither a regular file nor a folder; {VALID}")
    if (path / MODEL_FILE).is_file():
        return [path]
    folds = sorted((int(match.group(1)), child) for child in path.iterdir()
                   if (match := _FOLD_DIR.fullmatch(child.name)) and (child / MODEL_FILE).is_file())
    if not folds:
        raise NeopainError(f"--model {spec}: the folder holds no fold_K/model.pt (train it "
                           f"with neopain train); {VALID}")
    return [child for _, child in folds]


class RunPredictor(Predictor):
    """One fold's network, or every fold of a run as an ensemble, run by torch on the CPU.

    Args:
        path: ``runs/NAME/fold_K/model.pt``, ``runs/NAME/fold_K`` or ``runs/NAME``.
        mc_passes: stochastic passes per member with dropout sampling; 0: one pass in eval
            mode.
        batch_size: crops per forward pass.
        seed: seeds the dropout masks of every ``predict_crops`` call; None: torch's current
            random state (not reproducible).

    Attributes:
        folds_: the ``TrainedFold`` of each member, in fold order.
        cfg_: the members' shared cfg; its threshold is the mean of theirs.
        crop: the members' shared crop rule (face box exactly, or the whole image).

    Raises:
        NeopainError: a spec naming no model (``fold_dirs``), an unreadable model.pt, members
            that preprocess or crop differently, ``mc_passes`` for a network without dropout,
            or a bad ``mc_passes`` or ``batch_size``.
    """

    kind = "run"
    file_suffixes = (".pt",)
    file_what = ("a trained fold's model.pt (runs/NAME/fold_K/model.pt) or a run folder "
                 "(runs/NAME: its folds as one ensemble)")
    loads_folders = True
    summary = ("the networks of a training run, run by torch: one fold's model.pt or every "
               "fold as an ensemble; MC dropout with --mc-passes")

    def __init__(self, path: str | os.PathLike[str], *, mc_passes: int = 0,
                 batch_size: int = 16, seed: int | None = 0) -> None:
        self.path = Path(path)
        self.mc_passes = mc_passes
        self.batch_size = batch_size
        self.seed = seed
        if isinstance(mc_passes, bool) or not isinstance(mc_passes, int) or mc_passes < 0:
            raise NeopainError(f"mc_passes={mc_passes!r} must be 0 (one deterministic pass) or "
                               "a positive number of passes, e.g. 20")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise NeopainError(f"batch_size={batch_size!r} must be a whole number >= 1")
        self.folds_: list[TrainedFold] = [load_fold(folder) for folder in fold_dirs(path)]
        first = self.folds_[0]
        for fold in self.folds_[1:]:
            if (dataclasses.replace(fold.model.cfg, threshold=0.5)
                    != dataclasses.replace(first.model.cfg, threshold=0.5)
                    or fold.crop_to_face != first.crop_to_face):
                raise NeopainError(f"--model {path}: {fold.fold_dir.name} preprocesses or crops "
                                   f"differently from {first.fold_dir.name}; an ensemble needs "
                                   "folds of one run")
        if mc_passes > 0:
            for fold in self.folds_:
                if not dropout_layers(fold.model):
                    raise NeopainError(f"--model {path}: {fold.model.cfg.name} in "
                                       f"{fold.fold_dir} has no dropout layer; use "
                                       "mc_passes=0 (a run folder still gives the spread "
                                       "between its folds)")
        threshold = float(np.mean([fold.model.cfg.threshold for fold in self.folds_]))
        self.cfg_ = dataclasses.replace(first.model.cfg, threshold=threshold)
        self.crop = first.crop_rule
        where = first.fold_dir.parent.name
        self.name = (f"{self.cfg_.name} {where}/{first.fold_dir.name}" if len(self.folds_) == 1
                     else f"{self.cfg_.name} {first.fold_dir.parent.name} "
                          f"({len(self.folds_)} folds)")
        if mc_passes:
            self.name += f", {mc_passes} MC-dropout passes"

    @classmethod
    def open(cls, spec: str, *, options: RuntimeOptions) -> RunPredictor:
        """A fold's model.pt, a fold folder or a run folder, run with ``options`` (batch size
        and ``mc_passes``; torch keeps its own thread count).

        Raises:
            NeopainError: as the constructor.
        """
        return cls(spec, mc_passes=options.mc_passes, batch_size=options.batch_size)

    @property
    def weights_sha256(self) -> str | None:
        """SHA-256 of the one fold's model.pt (hashed when asked: a calibrator's check); None
        for an ensemble, whose output is no one fold's."""
        return self.folds_[0].weights_sha256 if len(self.folds_) == 1 else None

    @property
    def threshold(self) -> float:
        """P(pain) at or above which the label is ``pain`` (the members' mean threshold)."""
        return self.cfg_.threshold

    @property
    def passes(self) -> int:
        """Predictions per crop: members × max(mc_passes, 1)."""
        return len(self.folds_) * max(self.mc_passes, 1)

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        """One BGR uint8 crop → the float32 3×H×W input training would have made of it.

        Raises:
            NeopainError: a crop that is not an H×W×3 uint8 array.
        """
        return preprocess_crop(crop, self.cfg_)

    def member_probs(self, inputs: np.ndarray) -> np.ndarray:
        """P(pain) of every member's every pass over preprocessed N×3×H×W inputs.

        Returns:
            (passes, N) float64, member by member (``passes`` rows in all).

        Raises:
            NeopainError: the predictor is closed, or inputs of the wrong shape.
        """
        import torch

        if not self.folds_:
            raise NeopainError(f"{self.path}: the predictor is closed; create a new one")
        inputs = np.asarray(inputs, dtype=np.float32)
        expected = (3, *self.cfg_.input_size)
        if inputs.ndim != 4 or inputs.shape[1:] != expected:
            raise NeopainError(f"inputs have shape {inputs.shape}; expected (N, {expected[0]}, "
                               f"{expected[1]}, {expected[2]})")
        pain = self.cfg_.labels.index("pain")
        members = []
        for member, fold in enumerate(self.folds_):
            parts = []
            for number, start in enumerate(range(0, len(inputs), self.batch_size)):
                batch = torch.from_numpy(inputs[start:start + self.batch_size])
                if self.mc_passes:
                    # a seed per member and batch: batches reusing one seed shared their masks
                    seed = None if self.seed is None else int(np.random.SeedSequence(
                        [self.seed, member, number]).generate_state(1)[0])
                    parts.append(mc_dropout_probs(fold.model, batch, passes=self.mc_passes,
                                                  seed=seed, pain_index=pain))
                else:
                    with torch.inference_mode():
                        parts.append(pain_probability(fold.model.eval()(batch),
                                                      pain_index=pain)[None])
            members.append(np.concatenate(parts, axis=1) if parts
                           else np.empty((max(self.mc_passes, 1), 0)))
        return np.concatenate(members, axis=0)

    def summarize(self, crops: Sequence[np.ndarray]) -> PassSummary:
        """Predictive mean, entropy and mutual information of every member's passes per crop.

        Raises:
            NeopainError: a crop that is not BGR uint8 H×W×3, or a closed predictor.
        """
        inputs = np.stack([self.preprocess(crop) for crop in crops]) if len(crops) else \
            np.empty((0, 3, *self.cfg_.input_size), dtype=np.float32)
        return summarize_passes(self.member_probs(inputs))

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """Assess face crops (BGR uint8, cut by ``crop``), one ``Prediction`` each: P(pain) is
        the predictive mean of the networks' own probabilities (not calibrated: wrap in a
        ``CalibratedPredictor`` for that); ``uncertainty`` is empty for one deterministic
        pass."""
        if len(crops) == 0:
            return []
        summary = self.summarize(crops)
        threshold = self.threshold
        return [Prediction(prob_pain=float(p), label="pain" if p >= threshold else "nopain",
                           threshold=threshold, model=self.name, probabilistic=True,
                           uncertainty=summary.for_face(i) if summary.passes > 1 else {})
                for i, p in enumerate(summary.mean)]

    def close(self) -> None:
        """Drop the networks (their weights). Safe to call twice."""
        self.folds_ = []
