"""int8 copies of an exported model, and the report that says what they cost and gain.

- ``quantize_static_model``: ONNX Runtime's static quantization in QDQ format, weights int8 per
  output channel, activation ranges calibrated (MinMax) on real face crops preprocessed by the
  runtime; ``quant_pre_process`` (shape inference + graph optimization) first. The logits
  layer, the Softmax and the LogSoftmax stay float so that probabilities and the raw logit keep
  their resolution.
- ``quantize_dynamic_model``: int8 weights for MatMul/Gemm only, activations quantized on the
  fly. On CPUs it speeds up fully connected layers, not convolutions.
- ``compare_models``: label agreement, AUC of each, |ΔP(pain)|, file sizes and ms per image of
  the fp32 and int8 files, timed alternately in the same process. P(pain) is the one the
  runtime shows: calibrated when the files carry a calibrator.

Both quantizers copy ``neopain.cfg`` into the int8 file (with ``quantization`` set, the
calibrator included), so ``OnnxPredictor`` preprocesses and calibrates for it exactly as for
the fp32 file.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neopain.errors import NeopainError
from neopain.export.metadata import INPUT_NAME, read_exported_cfg
from neopain.export.runtime import OnnxPredictor
from neopain.models.preprocess import preprocess_crop

ProgressHook = Callable[[int, int], None]
ACTIVATION_TYPES = ("int8", "uint8")


@dataclass(frozen=True)
class QuantizationReport:
    """fp32 vs int8 on the same images.

    Attributes:
        method: ``static`` or ``dynamic``.
        images: images compared.
        label_agreement: share of images whose label is the same (0–1).
        flipped_within: the largest distance of an fp32 P(pain) from the threshold among the
            images whose label int8 changed (0 when none changed): flips this close to the
            threshold are the model's uncertainty, not a broken copy.
        auc_fp32, auc_int8: ROC AUC against the manifest labels (None with one class).
        max_abs_diff: largest |P(pain) int8 − P(pain) fp32|.
        calibrated: whether P(pain) (and so the labels and AUC) is the calibrated one that the
            files' calibrator gives, as the runtime shows it.
        fp32_bytes, int8_bytes: file sizes.
        fp32_ms, int8_ms: milliseconds per image (best of the repeats, same images, batch
            size and threads, timed alternately in one process).
    """

    method: str
    images: int
    label_agreement: float
    flipped_within: float
    auc_fp32: float | None
    auc_int8: float | None
    max_abs_diff: float
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float
    int8_ms: float
    calibrated: bool = False

    @property
    def auc_delta(self) -> float | None:
        """AUC int8 − AUC fp32, or None without an AUC."""
        if self.auc_fp32 is None or self.auc_int8 is None:
            return None
        return self.auc_int8 - self.auc_fp32

    @property
    def size_ratio(self) -> float:
        """int8 file size / fp32 file size."""
        return self.int8_bytes / self.fp32_bytes

    @property
    def speedup(self) -> float:
        """fp32 ms / int8 ms (above 1: int8 is faster)."""
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else math.inf

    def to_dict(self) -> dict[str, object]:
        """Plain values, with the derived figures."""
        return {**asdict(self), "auc_delta": self.auc_delta, "size_ratio": self.size_ratio,
                "speedup": self.speedup}


class _Calibration:
    """``CalibrationDataReader`` over preprocessed inputs, in batches, reporting progress."""

    def __init__(self, inputs: np.ndarray, *, batch_size: int,
                 on_progress: ProgressHook | None, total: int) -> None:
        self.inputs = inputs
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.total = total
        self.start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.inputs):
            return None
        batch = self.inputs[self.start:self.start + self.batch_size]
        self.start += len(batch)
        if self.on_progress is not None:
            self.on_progress(self.start, self.total)
        return {INPUT_NAME: batch}

    def rewind(self) -> None:
        self.start = 0


def preprocess_crops(model: str | os.PathLike[str], crops: Sequence[np.ndarray]) -> np.ndarray:
    """Face crops → the model's inputs (N×3×H×W float32), preprocessed as for prediction."""
    cfg = read_exported_cfg(model).cfg
    return np.stack([preprocess_crop(crop, cfg) for crop in crops])


def _copy_metadata(source: Path, out: Path, *, quantization: str) -> None:
    import onnx

    from neopain.export.onnx import set_metadata

    exported = read_exported_cfg(source).with_quantization(quantization)
    model = onnx.load(str(out))
    set_metadata(model, exported)
    onnx.save(model, str(out))


def _check_paths(model: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[Path, Path]:
    model, out = Path(model), Path(out)
    exported = read_exported_cfg(model)  # refuses files without neopain.cfg
    if exported.quantization != "none":
        raise NeopainError(f"{model} is already quantized ({exported.quantization}); quantize "
                           "the fp32 file that neopain export writes")
    if out.resolve() == model.resolve():
        raise NeopainError(f"out={out} is the input file; give another path for the int8 copy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return model, out


def quantize_static_model(model: str | os.PathLike[str], out: str | os.PathLike[str], *,
                          crops: Sequence[np.ndarray], batch_size: int = 8,
                          per_channel: bool = True, activation_type: str = "uint8",
                          on_progress: ProgressHook | None = None) -> Path:
    """Static int8 (QDQ) copy of an fp32 model file, calibrated on ``crops``.

    Args:
        model: the fp32 .onnx file (``neopain export``).
        out: the int8 file to write.
        crops: BGR uint8 face crops cut as the model's crop rule says (its ``margin``), e.g.
            training images of the fold; a few dozen to a few hundred.
        batch_size: crops per calibration batch.
        per_channel: one weight scale per output channel (more accurate for convolutions).
        activation_type: ``uint8`` (ORT's fast U8S8 kernels on x86) or ``int8``.
        on_progress: ``(done, total)``: the calibration images, then one step for writing the
            quantized graph (total = images + 1).

    Raises:
        NeopainError: no crops, bad options, a model without ``neopain.cfg``, or a quantized one.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    # MinMax only: ORT's entropy and percentile calibrators kept so much of every activation
    # that VGG-16 with 200 images was killed at 21 GB. MinMax also keeps every batch's
    # activations (about 3 GB for 200 ResNet-50 images); its CalibMaxIntermediateOutputs
    # option bounds that but changed the ranges here (max |ΔP| 0.007 → 0.11 on ResNet-50)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, out = _check_paths(model, out)
    if len(crops) == 0:
        raise NeopainError("static quantization needs calibration images; crops is empty")
    if activation_type not in ACTIVATION_TYPES:
        raise NeopainError(f"activation_type={activation_type!r} is not valid; valid: "
                           f"{', '.join(ACTIVATION_TYPES)}")
    inputs = preprocess_crops(model, crops)
    with tempfile.TemporaryDirectory(prefix="neopain-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))
        quantize_static(
            str(prepared), str(out),
            _Calibration(inputs, batch_size=batch_size, on_progress=on_progress,
                         total=len(inputs) + 1),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_float_tail(prepared))
    _copy_metadata(model, out, quantization="static")
    if on_progress is not None:
        on_progress(len(inputs) + 1, len(inputs) + 1)
    return out


def _float_tail(path: Path) -> list[str]:
    """The Softmax and LogSoftmax nodes and the layers computing their logits: kept float, so
    that the probabilities and the raw logit keep their resolution (int8 logits would put
    P(pain) on a coarse grid and tie images that fp32 ranks apart)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {output: node.name for node in graph.node for output in node.output}
    softmax = [node for node in graph.node if node.op_type in ("Softmax", "LogSoftmax")]
    logits = [producers[node.input[0]] for node in softmax if node.input[0] in producers]
    return list(dict.fromkeys([node.name for node in softmax] + logits))


def quantize_dynamic_model(model: str | os.PathLike[str], out: str | os.PathLike[str], *,
                           per_channel: bool = False) -> Path:
    """Dynamic int8 copy of an fp32 model file: MatMul/Gemm weights int8.

    Raises:
        NeopainError: a model without ``neopain.cfg``, or one already quantized.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, out = _check_paths(model, out)
    with tempfile.TemporaryDirectory(prefix="neopain-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))
        quantize_dynamic(str(prepared), str(out), op_types_to_quantize=["MatMul", "Gemm"],
                         per_channel=per_channel, weight_type=QuantType.QInt8)
    _copy_metadata(model, out, quantization="dynamic")
    return out


def time_per_image(predictor: OnnxPredictor, inputs: np.ndarray, *, repeats: int = 3) -> float:
    """Milliseconds per image of ``predictor`` on ``inputs``: the best of ``repeats`` passes
    after one warm-up batch."""
    predictor.predict_inputs(inputs[:predictor.batch_size])
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_inputs(inputs)
        best = min(best, time.perf_counter() - started)
    return best * 1000.0 / len(inputs)


def _auc(labels: np.ndarray, prob: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    known = labels >= 0
    if len(set(labels[known].tolist())) < 2:
        return None
    return float(roc_auc_score(labels[known], prob[known]))


def compare_models(fp32: str | os.PathLike[str], int8: str | os.PathLike[str], *,
                   crops: Sequence[np.ndarray], labels: Sequence[int], threads: int | None = None,
                   batch_size: int = 8, repeats: int = 3, timed: int | None = 64,
                   on_progress: ProgressHook | None = None) -> QuantizationReport:
    """Compare an fp32 model file with its int8 copy on the same face crops.

    Args:
        fp32, int8: the two files.
        crops: BGR uint8 face crops cut as the models' crop rule says (e.g. a fold's test rows).
        labels: 1 pain, 0 nopain (-1 unknown: left out of the AUC), one per crop.
        threads, batch_size: ONNX Runtime settings, the same for both.
        repeats: timed passes per model (the best counts).
        timed: crops in each timed pass (the first ones; None: all).
        on_progress: ``(done, total)`` over the 2 × (repeats + 1) passes.

    Raises:
        NeopainError: no crops, labels of another length, or unusable files.
    """
    labels = np.asarray(labels, dtype=int)
    if len(crops) == 0 or len(labels) != len(crops):
        raise NeopainError(f"compare_models needs crops and one label each; got {len(crops)} "
                           f"crops and {len(labels)} labels")
    total = 2 * (repeats + 1)
    with OnnxPredictor(fp32, threads=threads, batch_size=batch_size) as reference, \
            OnnxPredictor(int8, threads=threads, batch_size=batch_size) as quantized:
        method = quantized.exported_.quantization
        if method == "none":
            raise NeopainError(f"{int8} is not a quantized copy (its neopain.cfg says "
                               "quantization none)")
        inputs = np.stack([reference.preprocess(crop) for crop in crops])
        calibrated = reference.calibrator_ is not None
        prob32 = reference.pain_outputs(inputs).calibrated
        prob8 = quantized.pain_outputs(inputs).calibrated
        if on_progress is not None:
            on_progress(2, total)
        ms32, ms8 = math.inf, math.inf
        sample = inputs if timed is None else inputs[:timed]
        for done in range(repeats):  # alternate, so both see the same machine load
            ms32 = min(ms32, time_per_image(reference, sample, repeats=1))
            ms8 = min(ms8, time_per_image(quantized, sample, repeats=1))
            if on_progress is not None:
                on_progress(2 * (done + 2), total)
        threshold = reference.threshold
    flipped = (prob32 >= threshold) != (prob8 >= threshold)
    return QuantizationReport(
        method=method, images=len(crops), label_agreement=float(1.0 - flipped.mean()),
        flipped_within=float(np.abs(prob32[flipped] - threshold).max()) if flipped.any() else 0.0,
        auc_fp32=_auc(labels, prob32), auc_int8=_auc(labels, prob8),
        max_abs_diff=float(np.abs(prob8 - prob32).max()),
        fp32_bytes=Path(fp32).stat().st_size, int8_bytes=Path(int8).stat().st_size,
        fp32_ms=ms32, int8_ms=ms8, calibrated=calibrated)
