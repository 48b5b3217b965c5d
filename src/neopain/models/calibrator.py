"""``Calibrator``: how a model's raw output becomes a probability that means what it says, and
the referral band around it. It travels with the model (a run's ``fold_K/calibrator.json``, an
exported model's ``neopain.cfg``), so every runtime maps the raw output exactly as it was fitted.

A calibrator maps the raw logit ``z = log(P/(1-P))`` of P(pain) (for a network ``z_pain -
z_nopain``) to a calibrated P(pain) by one of ``METHODS``:

- ``temperature``: ``sigmoid(z / t)`` (ranking unchanged);
- ``platt``: ``sigmoid(a * z + b)``;
- ``isotonic``: a non-decreasing curve through ``x`` (raw P) → ``y``, linear between the
  points and flat outside them, as scikit-learn's ``IsotonicRegression`` predicts;
- ``histogram``: raw P binned at ``edges``; each bin's P is the share of pain among the
  fitting images in it.

With ``alpha`` and ``quantile`` it also gives split-conformal prediction sets: a label is in an
image's set when ``1 - P(label) <= quantile``, so that over new subjects like the fitting ones the
set holds the true label with probability at least ``1 - alpha``. The set ``{pain, nopain}``
and the empty set (``none``: when ``quantile`` < 0.5, a P near 0.5 excludes both labels) both
mean "uncertain: look at the baby" (``REFERRED``); the guarantee counts the empty set as a miss.

Fitting lives in ``evaluation.calibration``; this module only applies, so that a runtime needs
numpy alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from neopain.data.files import read_regular_text
from neopain.data.json_text import parse_json
from neopain.errors import NeopainError

METHODS = ("temperature", "platt", "isotonic", "histogram")
PARAMS = {"temperature": ("t",), "platt": ("a", "b"), "isotonic": ("x", "y"),
          "histogram": ("edges", "values")}
PAIN, NOPAIN, BOTH, NONE = "pain", "nopain", "pain|nopain", "none"
SETS = (PAIN, NOPAIN, BOTH, NONE)
"""How a prediction set is written (predictions.csv, assess output): one label, both, or
none (neither label is plausible enough)."""
REFERRED = (BOTH, NONE)
"""The sets that say "uncertain: look at the baby": the guarantee counts an empty set as a miss,
and neopain refers it, so what a nurse is shown covers at least as often."""


def refers(prediction_set: str | None, label: str) -> bool:
    """Whether a face is referred ("uncertain: look at the baby"): its set is ``REFERRED``, or
    one label other than ``label``. A threshold below 0.5, chosen for sensitivity, labels pain
    some faces whose band excludes pain; the two rules disagree, so a person looks. No set
    (no band): never."""
    return prediction_set in REFERRED or (prediction_set in (PAIN, NOPAIN)
                                          and prediction_set != label)


CALIBRATOR_FILE = "calibrator.json"
"""A run's fold keeps its calibrator under this name (``neopain calibrate``)."""
MAX_CALIBRATOR_BYTES = 4_000_000
"""An isotonic calibrator of a large fold is some tens of KB; more is not a calibrator."""
LOGIT_CLIP = 1e-7
"""A probability of exactly 0 or 1 (rounded in a file) is read as this far inside (0, 1)."""


def logit_of(prob: ArrayLike) -> np.ndarray:
    """The logit of P(pain), with 0 and 1 clipped to ``LOGIT_CLIP`` inside."""
    p = np.clip(np.asarray(prob, dtype=float), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: ArrayLike) -> np.ndarray:
    """1 / (1 + exp(-z)), without overflow."""
    z = np.asarray(z, dtype=float)
    return np.exp(-np.logaddexp(0.0, -z))


def _numbers(value: Any, *, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float) if isinstance(value, (list, tuple)) else None
    except (TypeError, ValueError, OverflowError):  # strings, nested or ragged lists, 1e400
        array = None
    if array is None or array.ndim != 1 or not len(array) or not np.isfinite(array).all():
        raise NeopainError(f"{where} must be a non-empty list of finite numbers; got "
                           f"{str(value)[:80]}")
    return array


def _number(value: Any, *, where: str) -> float:
    try:
        number = float(value) if isinstance(value, Real) and not isinstance(value, bool) \
            else math.nan
    except OverflowError:  # an integer of hundreds of digits
        number = math.nan
    if not math.isfinite(number):
        raise NeopainError(f"{where}={str(value)[:40]!r} must be a finite number")
    return number


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration of P(pain) and, optionally, its conformal referral band.

    Attributes:
        method: one of ``METHODS``.
        params: the method's numbers (``PARAMS``): ``{"t": 1.8}``, ``{"a": .., "b": ..}``,
            ``{"x": [..], "y": [..]}`` or ``{"edges": [..], "values": [..]}``.
        alpha: the conformal error rate (None: no prediction sets).
        quantile: the conformal threshold on ``1 - P(true label)`` (with ``alpha``).
        fitted_on: what it was fitted on, for people (``{"fold": 0, "images": 120,
            "subjects": 4}``); never patient identifiers.

    Raises:
        NeopainError: a method, parameter or band out of range (named, with what is valid).
    """

    method: str
    params: Mapping[str, Any]
    alpha: float | None = None
    quantile: float | None = None
    fitted_on: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NeopainError(f"calibrator: method={self.method!r}; valid: {', '.join(METHODS)}")
        if not isinstance(self.params, Mapping) or set(self.params) != set(PARAMS[self.method]):
            got = sorted(self.params) if isinstance(self.params, Mapping) else self.params
            raise NeopainError(f"calibrator {self.method}: params must be exactly "
                               f"{', '.join(PARAMS[self.method])}; got {got!r}")
        where = f"calibrator {self.method}"
        if self.method == "temperature":
            if _number(self.params["t"], where=f"{where}: t") <= 0:
                raise NeopainError(f"{where}: t={self.params['t']!r} must be positive")
        elif self.method == "platt":
            for key in ("a", "b"):
                _number(self.params[key], where=f"{where}: {key}")
        elif self.method == "isotonic":
            x = _numbers(self.params["x"], where=f"{where}: x")
            y = _numbers(self.params["y"], where=f"{where}: y")
            if len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) \
                    or y.min() < 0 or y.max() > 1:
                raise NeopainError(f"{where}: x and y must be equally long, non-decreasing, "
                                   "y within [0, 1]")
        else:
            edges = _numbers(self.params["edges"], where=f"{where}: edges")
            values = _numbers(self.params["values"], where=f"{where}: values")
            if (len(edges) != len(values) + 1 or np.any(np.diff(edges) <= 0)
                    or values.min() < 0 or values.max() > 1):
                raise NeopainError(f"{where}: edges must rise strictly and be one longer than "
                                   "values, values within [0, 1]")
        if (self.alpha is None) != (self.quantile is None):
            raise NeopainError("calibrator: alpha and quantile go together (both or neither)")
        if self.alpha is not None:
            alpha = _number(self.alpha, where="calibrator: alpha")
            quantile = _number(self.quantile, where="calibrator: quantile")
            if not 0 < alpha < 1:
                raise NeopainError(f"calibrator: alpha={alpha!r} must be between 0 and 1 "
                                   "(exclusive), e.g. 0.1")
            if not 0 <= quantile <= 1:
                raise NeopainError(f"calibrator: quantile={quantile!r} must be within [0, 1]")

    @property
    def has_band(self) -> bool:
        """Whether it gives conformal prediction sets."""
        return self.alpha is not None

    def probability(self, logit: ArrayLike) -> np.ndarray:
        """Calibrated P(pain) for raw logits ``z`` (``logit_of`` turns a raw P into one)."""
        z = np.asarray(logit, dtype=float)
        p = self.params
        if self.method == "temperature":
            return sigmoid(z / float(p["t"]))
        if self.method == "platt":
            return sigmoid(float(p["a"]) * z + float(p["b"]))
        raw = sigmoid(z)
        if self.method == "isotonic":
            return np.interp(raw, np.asarray(p["x"], float), np.asarray(p["y"], float))
        edges = np.asarray(p["edges"], float)
        bins = np.clip(np.searchsorted(edges, raw, side="right") - 1, 0, len(edges) - 2)
        return np.asarray(p["values"], float)[bins]

    def prediction_sets(self, prob: ArrayLike) -> list[str]:
        """The conformal set of each calibrated P(pain) (``SETS``).

        Raises:
            NeopainError: the calibrator has no band (``alpha`` None).
        """
        if not self.has_band:
            raise NeopainError("this calibrator has no referral band; fit it with alpha "
                               "(neopain calibrate --alpha 0.1)")
        p = np.asarray(prob, dtype=float)
        pain = 1.0 - p <= self.quantile
        nopain = p <= self.quantile
        return [BOTH if a and b else PAIN if a else NOPAIN if b else NONE
                for a, b in zip(pain, nopain)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        params = {key: [float(v) for v in value] if isinstance(value, (list, tuple, np.ndarray))
                  else float(value) for key, value in self.params.items()}
        return {"method": self.method, "params": params, "alpha": self.alpha,
                "quantile": self.quantile, "fitted_on": dict(self.fitted_on)}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "calibrator") -> Calibrator:
        """Rebuild one written by ``to_dict``.

        Raises:
            NeopainError: not a mapping, unknown or missing fields, values out of range;
                the message starts with ``where`` (the file it came from).
        """
        if not isinstance(data, Mapping):
            raise NeopainError(f"{where}: must be a mapping with method and params, got "
                               f"{type(data).__name__}")
        known = {"method", "params", "alpha", "quantile", "fitted_on"}
        unknown = sorted(set(data) - known)
        if unknown or "method" not in data or "params" not in data:
            raise NeopainError(f"{where}: needs method and params (and may have alpha, "
                               f"quantile, fitted_on); got {sorted(data)}")
        fitted_on = data.get("fitted_on") or {}
        if not isinstance(fitted_on, Mapping):
            raise NeopainError(f"{where}: fitted_on must be a mapping")
        try:
            return cls(method=data["method"], params=data["params"], alpha=data.get("alpha"),
                       quantile=data.get("quantile"), fitted_on=fitted_on)
        except NeopainError as error:
            raise NeopainError(f"{where}: {error}") from None


def read_calibrator(path: str | os.PathLike[str]) -> Calibrator:
    """The ``Calibrator`` of a calibrator.json (``Calibrator.to_dict`` as JSON).

    Raises:
        NeopainError: not a regular readable file, not JSON, or a field out of range; the
            message starts with the file and names the field.
    """
    text = read_regular_text(path, what="a calibrator.json (neopain calibrate)",
                             max_bytes=MAX_CALIBRATOR_BYTES)
    try:
        data = parse_json(text)
    except json.JSONDecodeError as error:
        raise NeopainError(f"{path}: not valid JSON ({error.msg}, line {error.lineno} column "
                           f"{error.colno}); expected a calibrator.json written by neopain "
                           "calibrate") from None
    return Calibrator.from_dict(data, where=str(path))
