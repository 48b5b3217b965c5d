"""The one interface every pain model answers through at run time: face crops → ``Prediction``.

A ``Predictor`` says how its crops are cut (``crop``, a ``faces.crop.CropRule``), predicts a
batch of crops (``predict_crops``) and may show where it saw pain (``evidence``, a heatmap per
crop, None by default). ``neopain assess``, the video timeline and the bedside monitor use only
this interface, so they treat every kind of model alike.

Kinds of predictor are registered as entry points of the group ``neopain.predictors`` (see
``pyproject.toml``): the built-in rule-based NFCS scorer (``scoring.nfcs``) and exported ONNX
files (``export.runtime``); another package can add its own the same way. ``load_predictor``
resolves a model spec, a kind's name or a file whose suffix a kind claims, through them, so this
module imports no implementation.

``CalibratedPredictor`` shows any predictor's output through a run's calibrator
(``models.calibrator.read_calibrator("runs/NAME/fold_K/calibrator.json")``).
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import ClassVar

import numpy as np

from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.models.calibrator import Calibrator, logit_of, refers

LABELS = ("nopain", "pain")
ENTRY_POINT_GROUP = "neopain.predictors"
PROB_KINDS = ("calibrated", "uncalibrated", "score")
"""What a ``Prediction.prob_pain`` is (``Prediction.prob_kind``)."""


@dataclass(frozen=True)
class Prediction:
    """One face's assessment.

    Attributes:
        prob_pain: P(pain), 0–1 (for rule-based models a probability-like confidence).
        label: ``"pain"`` when ``prob_pain >= threshold``, else ``"nopain"``.
        threshold: the decision threshold the model carries.
        model: what produced it (the kind's name, or the architecture and run of an exported
            model).
        details: model-specific numbers, e.g. NFCS action intensities and the action count.
        assessable: False when the model could not judge this face (e.g. the NFCS scorer found
            no landmarks, or the head is turned too far); ``prob_pain`` is then 0.5 and means
            nothing, and callers show "cannot assess" and leave it out of smoothing and records.
        reason: why the face could not be assessed ("head turned beyond the limits …",
            "face too small …"), for the screen; "" when assessable or when the model does not
            say.
        prob_raw: the model's P(pain) before calibration when ``prob_pain`` is calibrated
            (``models.calibrator``); None: ``prob_pain`` is the model's own output.
        prediction_set: the conformal set (``"pain"``, ``"nopain"``, or ``"pain|nopain"`` /
            ``"none"``:
            uncertain, look at the baby) when the model carries a referral band, else None.
        uncertainty: spread over stochastic passes or ensemble members (``entropy``,
            ``mutual_information``, ``passes``); empty when the model gives none.
        probabilistic: whether the model's own output (``prob_raw`` when calibrated, else
            ``prob_pain``) is a probability (a network's softmax or sigmoid); False (the
            default): a score, such as the rule-based NFCS confidence.
    """

    prob_pain: float
    label: str
    threshold: float
    model: str
    details: Mapping[str, float] = field(default_factory=dict)
    assessable: bool = True
    reason: str = ""
    prob_raw: float | None = None
    prediction_set: str | None = None
    uncertainty: Mapping[str, float] = field(default_factory=dict)
    probabilistic: bool = False

    @property
    def prob_kind(self) -> str:
        """What ``prob_pain`` is (``PROB_KINDS``): ``calibrated`` (a calibrated probability),
        ``uncalibrated`` (a network's own probability, not calibrated) or ``score`` (a
        rule-based score, not a probability)."""
        if self.calibrated:
            return "calibrated"
        return "uncalibrated" if self.probabilistic else "score"

    @property
    def calibrated(self) -> bool:
        """Whether ``prob_pain`` is a calibrated probability (else a raw model output, for a
        rule-based model a score)."""
        return self.prob_raw is not None

    @property
    def uncertain(self) -> bool:
        """Whether the referral band refers the face, "uncertain: look at the baby": it holds
        both labels or neither, or one the label (at the model's threshold) contradicts
        (``models.calibrator.refers``)."""
        return refers(self.prediction_set, self.label)

    @property
    def confidence(self) -> float:
        """How sure the model is of its label: P(label) (0.5–1 at a 0.5 threshold; below 0.5
        possible for a model whose threshold is not 0.5)."""
        return self.prob_pain if self.label == "pain" else 1.0 - self.prob_pain


@dataclass(frozen=True)
class Calibration:
    """A subject's reference taken at rest, for a model that measures change from it.

    Attributes:
        model: the model it was taken for (``Predictor.name``).
        frames: how many rest faces it rests on.
        reference: the model's reference values by name (JSON-ready numbers; for NFCS the
            rest face's measurements), read back by that model's ``with_calibration``.
    """

    model: str
    frames: int
    reference: Mapping[str, float]


@dataclass(frozen=True)
class RuntimeOptions:
    """How a predictor runs, for kinds that use it (the NFCS scorer uses none of it).

    Attributes:
        threads: threads per operator (None: one per CPU core).
        batch_size: crops per model call.
        evidence_grid: squares a side of an evidence heatmap computed on a grid (occlusion);
            None: the kind's own default. The bedside asks for a coarser, cheaper one.
        mc_passes: stochastic forward passes with dropout on (MC dropout) per crop, for kinds
            that can (``Prediction.uncertainty``); 0: one deterministic pass. A kind that cannot
            refuses a positive value in ``open``.
    """

    threads: int | None = None
    batch_size: int = 16
    evidence_grid: int | None = None
    mc_passes: int = 0

    def __post_init__(self) -> None:
        check_threads(self.threads)  # here too for the kinds that ignore it: never silent
        mc = self.mc_passes
        if isinstance(mc, bool) or not isinstance(mc, int) or mc < 0:
            raise NeopainError(f"mc_passes={mc!r} must be 0 (one deterministic pass) or a "
                               "positive number of passes, e.g. 20")


def check_threads(threads: object) -> None:
    """Raises NeopainError unless ``threads`` is a whole number >= 1 or None (one per core)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise NeopainError(f"threads={threads!r} must be a whole number >= 1, or None for one "
                           "per CPU core")


class Predictor(ABC):
    """Face crops in, predictions out; a context manager that releases its resources.

    Subclasses implement ``predict_crops`` and set ``crop``, the rule their crops are cut by
    (the same rule their training crops had): callers cut with
    ``predictor.crop.cut(image, box=face.box)``. A kind loadable by name or file also sets ``kind``
    (and ``file_suffixes`` for files) and implements ``open``.
    """

    name: str = "predictor"
    crop: CropRule = CropRule.padded_square(0.25)
    weights_sha256: str | None = None
    """SHA-256 of the trained fold's model.pt it runs, or None (a scorer, an ensemble, a file
    of unknown origin): a run's calibrator is fitted on one fold's weights and only fits them."""
    evidence_interval_s: float = 0.0
    """How often a live stream recomputes ``evidence``: 0 on every frame; a model whose
    evidence costs many model calls sets seconds."""
    calibrates: ClassVar[bool] = False
    """Whether ``calibrate`` can give a calibration (a kind that needs none: False)."""
    thread_safe: ClassVar[bool] = False
    """Whether several threads may call it at once (an ONNX Runtime session may; the face
    mesh may not). Callers sharing a predictor that is not serialize their calls."""
    kind: ClassVar[str] = ""
    """The kind's registered name (the entry point's name)."""
    file_suffixes: ClassVar[tuple[str, ...]] = ()
    """File suffixes this kind loads (``.onnx``); empty for a kind named, not a file."""
    file_what: ClassVar[str] = ""
    """What such a file is, for error texts (``an exported .onnx file``)."""
    loads_folders: ClassVar[bool] = False
    """Whether a folder can name one of its models (a training run's folder)."""
    summary: ClassVar[str] = ""
    """One line for ``neopain models list``."""
    default: ClassVar[bool] = False
    """The kind ``load_predictor(None)`` and the monitor use when no model is given."""

    @classmethod
    def open(cls, spec: str, *, options: RuntimeOptions) -> Predictor:
        """The predictor ``spec`` names (the kind's name or one of its files).

        Raises:
            NeopainError: the spec cannot be loaded (naming it and what is valid).
        """
        raise NeopainError(f"model {spec}: the {cls.kind or cls.__name__} kind cannot be "
                           "loaded by name")

    @abstractmethod
    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """Assess face crops (H×W×3 uint8, BGR like the faces package), one prediction each."""

    def evidence(self, crops: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Where the model saw pain in each crop: an H×W float32 heatmap over the crop, 0–1
        (1: the strongest evidence), or None where it cannot say. Default: None for all."""
        return [None] * len(crops)

    def explain(self, prediction: Prediction) -> list[str] | None:
        """What the model saw in one of its predictions, as lines for a person to read (e.g. the
        NFCS actions present); None (the default) for a model that names nothing, whose only
        evidence is its heatmap (``evidence``)."""
        return None

    def window_score(self, predictions: Sequence[Prediction]) -> dict[str, float] | None:
        """A score over a stream's recent predictions (the NFCS scorer: the DAN facial score,
        ``{"score", "of", "frames", "assessable"}``); None (the default) for a model that has
        none."""
        return None

    def calibrate(self, crops: Sequence[np.ndarray]) -> Calibration | None:
        """The reference of a subject at rest, from face crops of a few seconds at rest; None
        (the default): this model needs no calibration. The predictor itself is unchanged:
        apply the result with ``with_calibration``.

        Raises:
            NeopainError: no usable face among the crops (naming why).
        """
        return None

    def with_calibration(self, calibration: Calibration) -> Predictor:
        """A view of this predictor that measures against ``calibration`` and shares its heavy
        resources (models, graphs); the predictor and its other views are unchanged. The view
        holds nothing of its own to release: closing it closes nothing shared. Default: self
        (a model without calibration).

        Raises:
            NeopainError: a calibration this model cannot use.
        """
        return self

    def close(self) -> None:  # noqa: B027 - a hook that does nothing by default (STYLE rule 7)
        """Release sessions, threads or models the predictor holds."""

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_fits(predictor: Predictor, calibrator: Calibrator, *, where: str) -> None:
    """Refuse a calibrator fitted on another model's outputs: its temperature and band would
    be another network's, and P(pain) and the sets would look calibrated without being so.
    A calibrator that names no model (written before they did) is taken as it is."""
    fitted = calibrator.fitted_on
    weights, model = fitted.get("model_sha256"), fitted.get("model")
    fits = (predictor.weights_sha256 == weights if weights
            else not model or predictor.kind == model)
    if not fits:
        fold = f" of fold {fitted['fold']}" if "fold" in fitted else ""
        source = f"the {model} network{fold}" if weights else f"{model}{fold}"
        raise NeopainError(
            f"{where or 'the calibrator'}: fitted on the outputs of {source}, not of "
            f"{predictor.name}; a calibrator fits only the model it was fitted on. Use the "
            "calibrator.json of the fold whose model.pt you assess (not a run folder's "
            "ensemble), or neopain export that fold: its .onnx file carries its calibrator")


class CalibratedPredictor(Predictor):
    """Another predictor's output shown through a ``Calibrator``: the calibrated P(pain) is
    ``calibrator.probability(logit_of(raw P))``, labelled at the predictor's threshold, with
    the conformal set when the calibrator has a band. Everything else (crop rule, evidence,
    explanations, window score, rest calibration) is the predictor's own.

    The raw P is the predictor's own output (``prob_raw`` of one that calibrates itself: this
    calibrator replaces that one). A float32 P rounded to 0 or 1 is read ``LOGIT_CLIP`` inside,
    so an exported network is calibrated exactly only by the calibrator embedded in its file
    (``neopain export``), which works on its logits.

    Args:
        predictor: the predictor to calibrate; closing this one closes it.
        calibrator: the calibration (e.g. ``read_calibrator(...)``).
        where: where the calibrator came from, for the name (e.g. its file).

    Raises:
        NeopainError: the calibrator was fitted on another model's output (``fitted_on`` names
            the fold's weights, or the scorer, it came from).
    """

    def __init__(self, predictor: Predictor, calibrator: Calibrator, *, where: str = "") -> None:
        _check_fits(predictor, calibrator, where=where)
        self.predictor = predictor
        self.calibrator = calibrator
        self.where = where
        self.crop = predictor.crop
        self.evidence_interval_s = predictor.evidence_interval_s
        self.calibrates = predictor.calibrates
        self.thread_safe = predictor.thread_safe
        self.name = f"{predictor.name}, calibrated ({calibrator.method}" + (
            f", {where})" if where else ")")

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """The predictor's predictions with ``prob_pain`` calibrated (unassessable ones as
        they are)."""
        predictions = self.predictor.predict_crops(crops)
        usable = [p for p in predictions if p.assessable]
        raw = np.array([p.prob_pain if p.prob_raw is None else p.prob_raw for p in usable])
        calibrated = self.calibrator.probability(logit_of(raw)) if usable else raw
        sets = (self.calibrator.prediction_sets(calibrated) if self.calibrator.has_band
                else [None] * len(usable))
        found = iter(zip(usable, raw, calibrated, sets))
        out = []
        for prediction in predictions:
            if not prediction.assessable:
                out.append(prediction)
                continue
            _, prob_raw, prob, band = next(found)
            out.append(dataclasses.replace(
                prediction, prob_pain=float(prob), prob_raw=float(prob_raw),
                label="pain" if prob >= prediction.threshold else "nopain", prediction_set=band,
                model=self.name))
        return out

    def evidence(self, crops: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        return self.predictor.evidence(crops)

    def explain(self, prediction: Prediction) -> list[str] | None:
        return self.predictor.explain(prediction)

    def window_score(self, predictions: Sequence[Prediction]) -> dict[str, float] | None:
        return self.predictor.window_score(predictions)

    def calibrate(self, crops: Sequence[np.ndarray]) -> Calibration | None:
        return self.predictor.calibrate(crops)

    def with_calibration(self, calibration: Calibration) -> Predictor:
        """The predictor's view for ``calibration``, shown through the same calibrator."""
        return CalibratedPredictor(self.predictor.with_calibration(calibration),
                                   self.calibrator, where=self.where)

    def close(self) -> None:
        """Close the predictor."""
        self.predictor.close()


@cache
def _registered() -> tuple[EntryPoint, ...]:
    """The entry points ``neopain.predictors``, read once per process: reading them scans every
    installed package's metadata (10 to 30 ms), and each kind is then imported when needed."""
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


@cache
def _entry_points() -> tuple[dict[str, type[Predictor]], dict[str, str]]:
    """The kinds that load here by name, and the others by name with why not (a bed device
    without the training stack cannot load the ``run`` kind)."""
    kinds: dict[str, type[Predictor]] = {}
    missing: dict[str, str] = {}
    for point in _registered():
        try:
            kinds[point.name] = point.load()
        except ImportError as error:  # a package this installation left out
            missing[point.name] = str(error)
    return kinds, missing


def _load(point: EntryPoint) -> type[Predictor] | None:
    """The kind ``point`` registers, importing its module; None where this installation
    cannot (said by ``load_predictor`` with the other kinds)."""
    try:
        return point.load()
    except ImportError:
        return None


def _kind_named(name: str) -> type[Predictor] | None:
    """The kind registered under ``name``, importing that kind's module alone (None when no
    kind has that name or its module cannot be imported here): ``--model nfcs`` on a bed agent
    imports no training stack, which would cost it memory and 0.4 s at every exit."""
    point = next((p for p in _registered() if p.name == name), None)
    return None if point is None else _load(point)


def _kinds_in_turn() -> Iterator[type[Predictor]]:
    """The kinds that load here, in the order they are registered, each imported only when
    the one before it has been passed over: an ``.onnx`` file is opened before the ``run``
    kind (and with it torch) is imported."""
    for point in _registered():
        kind = _load(point)
        if kind is not None:
            yield kind


def predictor_kinds() -> dict[str, type[Predictor]]:
    """Every registered kind of predictor (entry points ``neopain.predictors``) that loads in
    this installation, by name.

    Raises:
        NeopainError: none or several kinds claim to be the default (a packaging error).
    """
    kinds = _entry_points()[0]
    defaults = [name for name, kind in kinds.items() if kind.default]
    if len(defaults) != 1:
        raise NeopainError(f"the installed predictor kinds ({', '.join(sorted(kinds))}) have "
                           f"{len(defaults)} defaults; exactly one must set default = True")
    return kinds


def default_kind() -> str:
    """The name of the kind used when no model is given."""
    return next(name for name, kind in predictor_kinds().items() if kind.default)


def model_choices() -> str:
    """What ``--model`` accepts, for help and error texts."""
    kinds = predictor_kinds()
    named = [name for name, kind in kinds.items() if not kind.file_suffixes]
    files = [kind.file_what or f"a {'/'.join(kind.file_suffixes)} file"
             for kind in kinds.values() if kind.file_suffixes]
    return " or ".join([*named, *files])


def load_predictor(model: str | os.PathLike[str] | None = None, *,
                   threads: int | None = None, batch_size: int = 16,
                   evidence_grid: int | None = None, mc_passes: int = 0) -> Predictor:
    """The predictor ``model`` names: a kind's name (``nfcs``), a file whose suffix a kind loads
    (an exported ``.onnx``), a folder a kind loads (a training run), or None for the default
    kind; the keywords are its ``RuntimeOptions``.

    Raises:
        NeopainError: a spec no registered kind accepts, or the kind's own error for it; bad
            threads or mc_passes, whether or not the kind uses them.
    """
    options = RuntimeOptions(threads=threads, batch_size=batch_size,
                             evidence_grid=evidence_grid, mc_passes=mc_passes)
    spec = default_kind() if model is None else str(model)
    named = _kind_named(spec)
    if named is not None and not named.file_suffixes:
        return named.open(spec, options=options)
    suffix = Path(spec).suffix.lower()
    for kind in _kinds_in_turn():
        if (suffix and suffix in kind.file_suffixes) or (kind.loads_folders
                                                          and os.path.isdir(spec)):
            return kind.open(spec, options=options)
    missing = _entry_points()[1]
    if spec in missing or (os.path.isdir(spec) and missing):
        what = spec if spec in missing else ", ".join(sorted(missing))
        raise NeopainError(f"--model {spec}: this installation cannot load the {what} kind of "
                           f"model ({missing.get(spec, next(iter(missing.values())))}); valid "
                           f"here: {model_choices()}")
    raise NeopainError(f"--model {spec}: not a model neopain can run; valid: "
                       f"{model_choices()}")
