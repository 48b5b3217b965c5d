"""Export a trained model to ONNX with its preprocessing cfg inside, and check parity.

``export_fold("runs/vgg16_nb/fold_0", "model.onnx")`` rebuilds the fold's model from model.pt
(``runs.load_fold``), exports it (opset 17, dynamic batch; outputs ``probs``, softmax
probabilities, and ``log_probs``, their logarithms, from which a runtime takes the raw logit)
and embeds ``neopain.cfg`` (``export.metadata``): the model cfg, training's crop rule, the
threshold, the architecture, the run, the fold and the fold's calibrator (``calibrator.json``,
when it has one). ``check_parity`` compares torch and ONNX Runtime on real inputs (the fold's
test images, preprocessed by the training ``FaceDataset``): the raw P(pain) and, for a file with
a calibrator, the calibrated P(pain) a runtime shows.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

import neopain
from neopain.errors import NeopainError
from neopain.export.metadata import (
    INPUT_NAME,
    LOG_OUTPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    ExportedCfg,
)
from neopain.models import PainModel
from neopain.models.calibrator import Calibrator
from neopain.models.scores import ClassScores, softmax_logits
from neopain.runs import FoldFolder, TrainedFold, load_fold, read_calibrator

OPSET = 17
ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class Parity:
    """Torch vs ONNX Runtime on the same inputs: images compared, largest |ΔP(pain)|, and how
    many labels differ at the model's threshold; for a file with a calibrator, the same for the
    calibrated P(pain) (whose labels are the ones a runtime shows), else None."""

    images: int
    max_abs_diff: float
    label_changes: int
    calibrated_max_abs_diff: float | None = None
    calibrated_label_changes: int | None = None


class GraphOutputs(nn.Module):
    """What an exported graph computes from a model: P(class) and log P(class), N×2 each, from
    one forward pass. ``log_probs[:, pain] - log_probs[:, nopain]`` is the raw logit (``z_pain -
    z_nopain`` of two logits, ``z`` of one sigmoid logit) without float32 probabilities'
    rounding to 0 or 1. ``probs`` is ``ClassScores(model, probabilities=True)``.

    Raises:
        NeopainError: (when called) the model's output is neither (N, 2) nor (N, 1) / (N,).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = softmax_logits(self.model(images))
        return torch.softmax(logits, dim=1), torch.log_softmax(logits, dim=1)


def exported_cfg(fold: TrainedFold, *, calibrator: Calibrator | None = None) -> ExportedCfg:
    """The ``neopain.cfg`` an export of a training fold carries: its cfg, training's crop rule,
    the run folder, the fold index, its weights' hash, ``calibrator``, this version and today's
    date."""
    return ExportedCfg(cfg=fold.model.cfg, crop=fold.crop_rule.kind,
                       source_run=str(fold.fold_dir.parent), fold=fold.fold,
                       weights_sha256=fold.weights_sha256,
                       version=neopain.__version__, exported=dt.date.today().isoformat(),
                       calibrator=calibrator)


def fold_calibrator(fold_dir: str | os.PathLike[str]) -> Calibrator | None:
    """The fold's ``calibrator.json`` (``neopain calibrate``), or None when it has none.

    Raises:
        NeopainError: a calibrator.json that cannot be read or used (naming the file and the
            field).
    """
    return read_calibrator(FoldFolder(Path(fold_dir)))


def export_model(model: PainModel, out: str | os.PathLike[str], *,
                 exported: ExportedCfg | None = None, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX with ``neopain.cfg`` metadata; returns the file.

    Args:
        model: a registered architecture (its ``cfg`` says how inputs are preprocessed).
        out: the .onnx file to write (its folder is created).
        exported: the metadata to embed; None: the model's cfg, crop to the face box, no run.
        opset: ONNX opset, at least 17.

    Raises:
        NeopainError: opset below 17, or a cfg that does not belong to ``model``.
    """
    import onnx

    if opset < OPSET:
        raise NeopainError(f"opset={opset} is too old; valid: {OPSET} or later")
    if exported is None:
        exported = ExportedCfg(cfg=model.cfg, version=neopain.__version__,
                               exported=dt.date.today().isoformat())
    if exported.cfg.name != model.cfg.name:
        raise NeopainError(f"metadata for model {exported.cfg.name!r} given with model "
                           f"{model.cfg.name!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.zeros(1, 3, *exported.cfg.input_size)
    training = model.training
    buffer = io.BytesIO()
    try:
        wrapper = GraphOutputs(model).eval()
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of the dynamo one, which needs
            # onnxscript (not installed); it still writes opset 17 graphs that ORT runs exactly.
            # It traces in eval mode (dropout off, batch-norm running statistics).
            warnings.simplefilter("ignore", DeprecationWarning)
            # GraphOutputs branches on the output's width, which is fixed for a model
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(wrapper, (sample,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME, LOG_OUTPUT_NAME],
                              training=torch.onnx.TrainingMode.EVAL,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"},
                                            LOG_OUTPUT_NAME: {0: "batch"}})
    finally:
        model.train(training)  # the caller's mode, whichever it was
    graph = onnx.load_from_string(buffer.getvalue())
    set_metadata(graph, exported)
    onnx.save(graph, str(out))
    return out


def set_metadata(model, exported: ExportedCfg) -> None:
    """Put ``neopain.cfg`` (and a producer note) into an ``onnx.ModelProto`` in place."""
    kept = [prop for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, exported.to_json()
    model.producer_name, model.producer_version = "neopain", exported.version or "unknown"
    model.doc_string = (f"neopain {exported.cfg.name} pain model; preprocessing in metadata "
                        f"{METADATA_KEY}")


def export_fold(fold_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                opset: int = OPSET, calibrator: bool = True) -> tuple[Path, TrainedFold]:
    """Export the model of a training fold with its calibrator (``calibrator.json``, when the
    fold has one and ``calibrator`` is True); returns the file and the rebuilt fold.

    Raises:
        NeopainError: an unusable fold, or a calibrator.json that cannot be used (named),
            or one fitted on other weights than the fold's model.pt (trained again since).
    """
    fitted = fold_calibrator(fold_dir) if calibrator else None
    fold = load_fold(fold_dir)
    weights = None if fitted is None else fitted.fitted_on.get("model_sha256")
    if weights and weights != fold.weights_sha256:
        raise NeopainError(f"{FoldFolder(Path(fold_dir)).calibrator}: fitted on other weights "
                           "than this fold's model.pt (was the fold trained again?); calibrate "
                           f"the run again (neopain calibrate {Path(fold_dir).parent}) or "
                           "export without it (--no-calibrator)")
    return export_model(fold.model, out, exported=exported_cfg(fold, calibrator=fitted),
                        opset=opset), fold


def fold_test_inputs(fold: TrainedFold, *, limit: int | None = None) -> torch.Tensor:
    """The fold's test images preprocessed exactly as training did (``FaceDataset``), N×3×H×W.

    Raises:
        NeopainError: the run names no manifest, or its manifest cannot be read.
    """
    from neopain.training.dataset import FaceDataset
    from neopain.data.manifest import load_manifest

    if fold.manifest is None:
        raise NeopainError(f"{fold.fold_dir.parent / 'config.yaml'} names no manifest: no real "
                           "images to check parity on")
    manifest = load_manifest(fold.manifest)
    cfg = fold.model.cfg
    subjects = fold.test_subjects or None
    data = FaceDataset(manifest, subjects=subjects, size=cfg.input_size, mean=cfg.mean,
                       std=cfg.std, channel_order=cfg.channel_order,
                       crop_to_face=fold.crop_to_face)
    count = len(data) if limit is None else min(limit, len(data))
    return torch.stack([data[i]["image"] for i in range(count)])


def torch_probabilities(model: PainModel, inputs: torch.Tensor, *, batch_size: int = 16
                        ) -> np.ndarray:
    """P(no pain), P(pain) of ``model`` for preprocessed inputs, N×2 float64."""
    scores = ClassScores(model.eval(), probabilities=True)
    with torch.no_grad():
        parts = [scores(inputs[start:start + batch_size])
                 for start in range(0, len(inputs), batch_size)]
    return torch.cat(parts).numpy().astype(np.float64)


def torch_pain_logits(model: PainModel, inputs: torch.Tensor, *, pain: int = 1,
                      batch_size: int = 16) -> np.ndarray:
    """The raw logit of ``model`` for preprocessed inputs, N float64: ``z_pain - z_nopain`` of
    two class logits (``pain`` is the pain column), ``z`` of one sigmoid logit. What a
    calibrator maps, taken from torch's logits, not from any graph."""
    model.eval()
    with torch.no_grad():
        parts = [model(inputs[start:start + batch_size]).reshape(
            len(inputs[start:start + batch_size]), -1) for start in range(0, len(inputs),
                                                                          batch_size)]
    logits = torch.cat(parts).numpy().astype(np.float64)
    if logits.shape[1] == 1:
        return logits[:, 0]
    return logits[:, pain] - logits[:, 1 - pain]


def _changes(a: np.ndarray, b: np.ndarray, threshold: float) -> int:
    return int(((a >= threshold) != (b >= threshold)).sum())


def check_parity(model: PainModel, path: str | os.PathLike[str], inputs: torch.Tensor | np.ndarray,
                 *, batch_size: int = 16, on_progress: ProgressHook | None = None) -> Parity:
    """Compare P(pain) of ``model`` (torch) and the model file (ONNX Runtime) on ``inputs``;
    for a file with a calibrator also the calibrated P(pain): the file's calibrator applied to
    torch's own logits against what the runtime shows.

    Raises:
        NeopainError: no inputs, or a file ONNX Runtime cannot load (``ModelFileError``).
    """
    from neopain.export.runtime import OnnxPredictor

    tensors = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    if len(tensors) == 0:
        raise NeopainError("parity needs at least one input image")
    with OnnxPredictor(path, batch_size=batch_size) as predictor:
        pain = predictor.exported_.pain_index
        threshold = predictor.exported_.cfg.threshold
        calibrator = predictor.calibrator_
        onnx_out = predictor.pain_outputs(tensors.numpy(), on_progress=on_progress)
    torch_prob = torch_probabilities(model, tensors, batch_size=batch_size)[:, pain]
    parity = Parity(images=len(tensors),
                    max_abs_diff=float(np.abs(onnx_out.raw - torch_prob).max()),
                    label_changes=_changes(onnx_out.raw, torch_prob, threshold))
    if calibrator is None:
        return parity
    torch_calibrated = calibrator.probability(
        torch_pain_logits(model, tensors, pain=pain, batch_size=batch_size))
    return replace(parity, calibrated_max_abs_diff=float(
        np.abs(onnx_out.calibrated - torch_calibrated).max()),
        calibrated_label_changes=_changes(onnx_out.calibrated, torch_calibrated, threshold))


def parity_on_inputs(fold: TrainedFold, path: str | os.PathLike[str], *,
                     limit: int | None = 32, on_progress: ProgressHook | None = None) -> Parity:
    """``check_parity`` on the fold's test images (the first ``limit``)."""
    return check_parity(fold.model, path, fold_test_inputs(fold, limit=limit),
                        on_progress=on_progress)


def describe_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """Size and metadata of a model file, for summaries."""
    from neopain.export.metadata import read_exported_cfg

    exported = read_exported_cfg(path)
    return {"file": str(path), "bytes": Path(path).stat().st_size,
            "architecture": exported.cfg.name, "quantization": exported.quantization,
            "input_size": list(exported.cfg.input_size), "crop": exported.crop,
            "threshold": exported.cfg.threshold, "source_run": exported.source_run,
            "fold": exported.fold,
            "calibrator": None if exported.calibrator is None else {
                "method": exported.calibrator.method, "alpha": exported.calibrator.alpha,
                "fitted_on": dict(exported.calibrator.fitted_on)}}

