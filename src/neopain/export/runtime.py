"""``OnnxPredictor``: an exported model file → predictions, preprocessing exactly as training.

The file's ``neopain.cfg`` says everything: crops are the face box in whole pixels when
training cropped to the face (``CropRule.exact_box``) or the whole image; each crop is put in
the cfg's channel order, resized as training's ``resize_sample`` does (INTER_AREA when
shrinking, INTER_LINEAR when growing) and normalized as ``(pixel / 255 - mean) / std`` in
float32 (``models.preprocess``, as ``FaceDataset`` does).
Batches go through one ONNX Runtime session, released by ``close``.

A file that carries a calibrator (``neopain.cfg``) is shown calibrated from the file alone: the
raw logit ``z = log P(pain) - log P(nopain)`` is taken in float64 from the graph's
``log_probs`` output (not from float32 probabilities, which round to 0 or 1 for a confident
network), ``prob_pain`` is ``calibrator.probability(z)``, the label is the cfg's threshold on
it, ``prob_raw`` is the network's own P(pain) and ``prediction_set`` the conformal set when the
calibrator has a band.

An exported model has no gradients, so its ``evidence`` is occlusion sensitivity (captum's
``Occlusion``, Zeiler & Fergus 2014): each square of the model's input is set to the
normalized zero (the cfg's mean colour) in turn, and the drop in P(pain) is that square's
evidence for pain. Only drops count (squares whose removal raises P(pain) stay cold).

Example:
    >>> with OnnxPredictor("model.onnx", threads=2) as predictor:
    ...     predictions = predictor.predict_crops(crops)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neopain.data.files import regular_file_problem
from neopain.errors import NeopainError
from neopain.export.metadata import (
    INPUT_NAME,
    LOG_OUTPUT_NAME,
    OUTPUT_NAME,
    ExportedCfg,
    ModelFileError,
    cfg_from_metadata,
)
from neopain.models.calibrator import Calibrator, logit_of
from neopain.models.preprocess import preprocess_crop
from neopain.prediction import (
    Prediction, Predictor, RuntimeOptions, check_threads, model_choices,
)

ProgressHook = Callable[[int, int], None]
OPTIMIZATIONS = ("disable", "basic", "extended", "all")
OCCLUSION_SQUARES = 8
"""The occlusion grid of ``evidence`` unless the options ask for another (``evidence_grid``)."""


@dataclass(frozen=True)
class PainOutputs:
    """P(pain) of a batch, float64, one value per input.

    Attributes:
        raw: the network's own P(pain).
        logit: its raw logit ``log P(pain) - log P(nopain)``.
        calibrated: ``calibrator.probability(logit)``; ``raw`` when the file has no calibrator.
    """

    raw: np.ndarray
    logit: np.ndarray
    calibrated: np.ndarray


def session_options(*, threads: int | None = None, optimization: str = "all"):
    """ONNX Runtime session options: ``threads`` for one operator (None: ORT's default, one per
    core), operators run one after another, and the graph optimization level.

    Raises:
        NeopainError: threads below 1 or an unknown optimization level.
    """
    import onnxruntime as ort

    check_threads(threads)
    levels = dict(zip(OPTIMIZATIONS, (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                      ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                      ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                      ort.GraphOptimizationLevel.ORT_ENABLE_ALL)))
    if optimization not in levels:
        raise NeopainError(f"optimization={optimization!r} is not valid; valid: "
                           f"{', '.join(OPTIMIZATIONS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
    return options


class OnnxPredictor(Predictor):
    """An exported neopain model file run by ONNX Runtime on the CPU.

    Args:
        path: the .onnx file (``neopain export``), fp32 or int8.
        threads: ONNX Runtime threads per operator; None: one per CPU core.
        batch_size: crops per session call.
        optimization: ONNX Runtime graph optimization: disable, basic, extended or all.

    Attributes:
        exported_: the file's ``ExportedCfg`` (cfg, crop rule, run, fold, quantization,
            calibrator).
        calibrator_: the file's calibrator, or None (``prob_pain`` is the network's own).
        crop: the file's crop rule: the face box exactly, or the whole image.
        occlusion_squares: the evidence heatmap cuts the input into this many squares a side.

    Raises:
        ModelFileError: a missing file, one ONNX Runtime cannot load, or no ``neopain.cfg``.
        NeopainError: bad ``threads``, ``batch_size`` or ``optimization``.
    """

    kind = "onnx"
    file_suffixes = (".onnx",)
    file_what = "an exported .onnx file (neopain export)"
    summary = "a CNN exported by neopain export (fp32 or int8), run by ONNX Runtime"
    evidence_interval_s = 2.0  # occlusion: occlusion_squares² model calls
    thread_safe = True  # ONNX Runtime sessions run concurrent calls

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None,
                 batch_size: int = 16, optimization: str = "all",
                 occlusion_squares: int = OCCLUSION_SQUARES) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads
        self.batch_size = batch_size
        self.optimization = optimization
        self.occlusion_squares = occlusion_squares
        if not isinstance(batch_size, int) or batch_size < 1:
            raise NeopainError(f"batch_size={batch_size!r} must be a whole number >= 1")
        if not isinstance(occlusion_squares, int) or occlusion_squares < 1:
            raise NeopainError(f"occlusion_squares={occlusion_squares!r} must be a whole "
                               "number >= 1")
        options = session_options(threads=threads, optimization=optimization)
        if (problem := regular_file_problem(self.path, what="an .onnx model file")) is not None:
            raise ModelFileError(f"{self.path}: {problem}; valid: an .onnx file written by "
                                 "neopain export")
        try:
            self.session_ = ort.InferenceSession(str(self.path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelFileError(f"{self.path}: ONNX Runtime cannot load it "
                                 f"({str(error).splitlines()[0][:200]})") from None
        metadata = self.session_.get_modelmeta().custom_metadata_map
        self.exported_: ExportedCfg = cfg_from_metadata(metadata, source=str(self.path))
        self.calibrator_: Calibrator | None = self.exported_.calibrator
        outputs = [output.name for output in self.session_.get_outputs()]
        self.outputs_ = [OUTPUT_NAME] + ([LOG_OUTPUT_NAME] if LOG_OUTPUT_NAME in outputs else [])
        if OUTPUT_NAME not in outputs:
            raise ModelFileError(f"{self.path}: the graph has no {OUTPUT_NAME!r} output "
                                 f"(outputs: {', '.join(outputs)}); export it with neopain export")
        cfg = self.exported_.cfg
        self.crop = self.exported_.crop_rule
        self.weights_sha256 = self.exported_.weights_sha256 or None
        self.name = cfg.name + (f" {self.exported_.source_run}/fold_{self.exported_.fold}"
                                if self.exported_.source_run else "")
        if self.exported_.quantization != "none":
            self.name += f" int8-{self.exported_.quantization}"

    @classmethod
    def open(cls, spec: str, *, options: RuntimeOptions) -> OnnxPredictor:
        """An exported file, run with ``options`` (threads, batch size).

        Raises:
            NeopainError: not a readable regular file, or ``mc_passes`` asked for;
                ModelFileError: not a neopain model.
        """
        if options.mc_passes > 0:
            raise NeopainError(f"--model {spec}: an exported .onnx file cannot run "
                               f"mc_passes={options.mc_passes} (MC dropout): its graph was "
                               "traced with dropout off; use mc_passes 0, or the run's model.pt "
                               "(neopain models list)")
        if (problem := regular_file_problem(Path(spec), what="an .onnx model file")) is not None:
            raise NeopainError(f"--model {spec}: {problem}; valid: {model_choices()}")
        return cls(spec, threads=options.threads, batch_size=options.batch_size,
                   occlusion_squares=options.evidence_grid or OCCLUSION_SQUARES)

    @property
    def threshold(self) -> float:
        """P(pain) at or above which the label is ``pain`` (the model's cfg)."""
        return self.exported_.cfg.threshold

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        """One BGR uint8 crop → the float32 3×H×W input training would have made of it.

        Raises:
            NeopainError: a crop that is not an H×W×3 uint8 array.
        """
        return preprocess_crop(crop, self.exported_.cfg)

    def predict_inputs(self, inputs: np.ndarray, *,
                       on_progress: ProgressHook | None = None) -> np.ndarray:
        """Run preprocessed N×3×H×W float32 inputs in batches; N×classes probabilities.

        Raises:
            NeopainError: the predictor is closed, or inputs of the wrong shape.
        """
        return self._run(inputs, on_progress=on_progress)[0]

    def pain_outputs(self, inputs: np.ndarray, *,
                     on_progress: ProgressHook | None = None) -> PainOutputs:
        """Raw P(pain), raw logit and calibrated P(pain) of preprocessed N×3×H×W float32
        inputs, from one pass.

        Raises:
            NeopainError: as ``predict_inputs``.
        """
        probs, log_probs = self._run(inputs, on_progress=on_progress)
        pain = self.exported_.pain_index
        raw = probs[:, pain]
        if log_probs is None:  # a file exported before log_probs: its rounded probabilities
            logit = logit_of(raw)
        else:
            logit = log_probs[:, pain] - log_probs[:, 1 - pain]
        calibrated = raw if self.calibrator_ is None else self.calibrator_.probability(logit)
        return PainOutputs(raw=raw, logit=logit, calibrated=calibrated)

    def _run(self, inputs: np.ndarray, *, on_progress: ProgressHook | None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        session = self._session()
        inputs = np.asarray(inputs, dtype=np.float32)
        expected = (3, *self.exported_.cfg.input_size)
        if inputs.ndim != 4 or inputs.shape[1:] != expected:
            raise NeopainError(f"inputs have shape {inputs.shape}; expected (N, {expected[0]}, "
                               f"{expected[1]}, {expected[2]})")
        parts = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start:start + self.batch_size]
            parts.append(session.run(self.outputs_, {INPUT_NAME: batch}))
            if on_progress is not None:
                on_progress(min(start + self.batch_size, len(inputs)), len(inputs))
        if not parts:
            empty = np.empty((0, len(self.exported_.cfg.labels)))
            return empty, (empty if len(self.outputs_) > 1 else None)
        joined = [np.concatenate([part[i] for part in parts]).astype(np.float64)
                  for i in range(len(self.outputs_))]
        return joined[0], (joined[1] if len(joined) > 1 else None)

    def prob_pain(self, inputs: np.ndarray) -> np.ndarray:
        """P(pain) of preprocessed N×3×H×W float32 inputs (what explainers perturb).

        Raises:
            NeopainError: as ``predict_inputs``.
        """
        return self.predict_inputs(inputs)[:, self.exported_.pain_index]

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """Assess face crops (BGR uint8, cut by ``crop``), one ``Prediction`` each."""
        if len(crops) == 0:
            return []
        out = self.pain_outputs(np.stack([self.preprocess(crop) for crop in crops]))
        threshold, calibrator = self.threshold, self.calibrator_
        if calibrator is None:
            return [Prediction(prob_pain=float(p), label="pain" if p >= threshold else "nopain",
                               threshold=threshold, model=self.name, probabilistic=True)
                    for p in out.raw]
        sets = (calibrator.prediction_sets(out.calibrated) if calibrator.has_band
                else [None] * len(crops))
        return [Prediction(prob_pain=float(p), label="pain" if p >= threshold else "nopain",
                           threshold=threshold, model=self.name, prob_raw=float(raw),
                           prediction_set=band, probabilistic=True)
                for p, raw, band in zip(out.calibrated, out.raw, sets)]

    def evidence(self, crops: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Occlusion sensitivity over each crop, H×W of the crop, 0–1 (1: the strongest square).

        ``neopain.explain.Occlusion`` over the model's input cut into ``occlusion_squares`` ×
        ``occlusion_squares`` windows (not overlapping), each replaced by the mean colour.

        Raises:
            NeopainError: a crop that is not BGR uint8 H×W×3.
        """
        return [self._occlusion(crop) for crop in crops]

    def _occlusion(self, crop: np.ndarray) -> np.ndarray:
        import cv2

        from neopain.explain.occlusion import Occlusion

        inputs = self.preprocess(crop)[None]
        side = max(1, min(inputs.shape[2:]) // self.occlusion_squares)
        with Occlusion(self.prob_pain, window=side, stride=side, baseline="mean",
                       perturbations_per_eval=self.batch_size, batch_size=1) as explainer:
            heat = explainer.explain(inputs, target="pain")[0]
        if heat.max() > 0:
            heat = heat / heat.max()
        return cv2.resize(heat.astype(np.float32), (crop.shape[1], crop.shape[0]),
                          interpolation=cv2.INTER_LINEAR)

    def _session(self):
        if self.session_ is None:
            raise NeopainError(f"{self.path}: the predictor is closed; create a new one")
        return self.session_

    def close(self) -> None:
        """Release the ONNX Runtime session (its weights and thread pool). Safe to call twice."""
        self.session_ = None
