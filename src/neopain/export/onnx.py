"""Export a trained model to ONNX with its preprocessing cfg inside, and check parity.

``export_fold("runs/vgg16_nb/fold_0", "model.onnx")`` rebuilds the fold's model from model.pt
(``runs.load_fold``), exports it (opset 17, dynamic batch, softmax included so the output is
probabilities) and embeds ``neopain.cfg`` (``export.metadata``): the model cfg, training's crop
rule, the threshold, the architecture, the run and the fold. ``check_parity`` compares torch and
ONNX Runtime on real inputs (the fold's test images, preprocessed by the training
``FaceDataset``).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import neopain
from neopain.errors import NeopainError
from neopain.export.metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ExportedCfg
from neopain.models import PainModel
from neopain.models.scores import ClassScores
from neopain.runs import TrainedFold, load_fold

OPSET = 17
ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class Parity:
    """Torch vs ONNX Runtime on the same inputs: images compared, largest |ΔP(pain)|, and how
    many labels differ at the model's threshold."""

    images: int
    max_abs_diff: float
    label_changes: int


def exported_cfg(fold: TrainedFold) -> ExportedCfg:
    """The ``neopain.cfg`` an export of a training fold carries: its cfg, training's crop rule,
    the run folder, the fold index, this version and today's date."""
    return ExportedCfg(cfg=fold.model.cfg, crop=fold.crop_rule.kind,
                       source_run=str(fold.fold_dir.parent), fold=fold.fold,
                       version=neopain.__version__, exported=dt.date.today().isoformat())


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
        wrapper = ClassScores(model, probabilities=True).eval()
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of the dynamo one, which needs
            # onnxscript (not installed); it still writes opset 17 graphs that ORT runs exactly.
            # It traces in eval mode (dropout off, batch-norm running statistics).
            warnings.simplefilter("ignore", DeprecationWarning)
            # ClassScores branches on the output's width, which is fixed for a model
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(wrapper, (sample,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              training=torch.onnx.TrainingMode.EVAL,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
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
                opset: int = OPSET) -> tuple[Path, TrainedFold]:
    """Export the model of a training fold; returns the file and the rebuilt fold."""
    fold = load_fold(fold_dir)
    return export_model(fold.model, out, exported=exported_cfg(fold), opset=opset), fold


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


def check_parity(model: PainModel, path: str | os.PathLike[str], inputs: torch.Tensor | np.ndarray,
                 *, batch_size: int = 16, on_progress: ProgressHook | None = None) -> Parity:
    """Compare P(pain) of ``model`` (torch) and the model file (ONNX Runtime) on ``inputs``.

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
        onnx_prob = predictor.predict_inputs(tensors.numpy(), on_progress=on_progress)[:, pain]
    torch_prob = torch_probabilities(model, tensors, batch_size=batch_size)[:, pain]
    return Parity(images=len(tensors), max_abs_diff=float(np.abs(onnx_prob - torch_prob).max()),
                  label_changes=int(((onnx_prob >= threshold) != (torch_prob >= threshold)).sum()))


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
            "fold": exported.fold}

