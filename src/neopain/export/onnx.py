"""Export a trained model to ONNX with its preprocessing cfg inside, and check parity.

``export_fold("runs/vgg16_nb/fold_0", "model.onnx")`` rebuilds the fold's model from model.pt,
exports it (opset 17, dynamic batch, softmax included so the output is probabilities) and embeds
``neopain.cfg`` (``export.metadata``): the model cfg, training's crop rule, the threshold, the
architecture, the run and the fold. ``check_parity`` compares torch and ONNX Runtime on real
inputs (the fold's test images, preprocessed by the training ``FaceDataset``).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import neopain
from neopain.data.files import FileReadError, regular_file_problem
from neopain.data.yaml_text import read_yaml_mapping
from neopain.errors import NeopainError
from neopain.export.metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ExportedCfg
from neopain.models import ModelCfg, PainModel, create_model
from neopain.models.scores import ClassScores

logger = logging.getLogger(__name__)

OPSET = 17
ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainedFold:
    """A fold's model rebuilt from ``fold_K/model.pt`` and what its run says about it.

    Attributes:
        model: the network in eval mode, with its saved cfg.
        exported: the ``neopain.cfg`` an export of it carries.
        fold_dir: the fold folder.
        manifest: the run's manifest (from config.yaml), or None when the config has none.
        train_subjects: the subjects it was trained on (calibration images come from them).
        test_subjects: the subjects it was tested on (parity images come from them).
    """

    model: PainModel
    exported: ExportedCfg
    fold_dir: Path
    manifest: Path | None
    train_subjects: tuple[str, ...]
    test_subjects: tuple[str, ...]


@dataclass(frozen=True)
class Parity:
    """Torch vs ONNX Runtime on the same inputs: images compared, largest |ΔP(pain)|, and how
    many labels differ at the model's threshold."""

    images: int
    max_abs_diff: float
    label_changes: int


def load_fold(fold_dir: str | os.PathLike[str]) -> TrainedFold:
    """Rebuild the model a training fold saved (``runs/NAME/fold_K/model.pt``).

    The crop rule comes from the run's config.yaml (``crop_to_face``, default true, as
    ``TrainConfig``); the threshold from the saved cfg.

    Raises:
        NeopainError: no model.pt, an unreadable one, or weights that do not fit the model.
    """
    fold_dir = Path(fold_dir)
    file = fold_dir / "model.pt"
    if (problem := regular_file_problem(file, what="a model.pt file")) is not None:
        raise NeopainError(f"{file}: {problem}; give a fold folder of a training run "
                           "(runs/NAME/fold_K, written by neopain train)")
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
        name, state = saved["model"], saved["state_dict"]
        cfg = ModelCfg.from_dict(saved["cfg"])
    except Exception as error:  # torch raises many types (IndexError too) for a foreign file
        reason = str(error).strip().split("\n")[0][:200]
        raise NeopainError(f"{file}: not a neopain model.pt ({type(error).__name__}: "
                           f"{reason}); valid: the file neopain train writes") from None
    model = create_model(name, **saved.get("kwargs", {}))
    model.cfg = cfg
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise NeopainError(f"{file}: weights do not fit model {name!r}: "
                           f"{str(error).splitlines()[0]}") from None
    model.eval()
    config = _run_config(fold_dir.parent / "config.yaml")
    manifest = config.get("manifest")
    exported = ExportedCfg(cfg=cfg, crop="face_box" if config.get("crop_to_face", True)
                           else "image", source_run=str(fold_dir.parent),
                           fold=saved.get("fold"), version=neopain.__version__,
                           exported=dt.date.today().isoformat())
    return TrainedFold(model=model, exported=exported, fold_dir=fold_dir,
                       manifest=None if manifest is None else Path(manifest),
                       train_subjects=tuple(saved.get("train_subjects", ())),
                       test_subjects=tuple(saved.get("test_subjects", ())))


def _run_config(file: Path) -> dict:
    if not os.path.lexists(file):
        logger.warning("%s not found: exporting with crop_to_face=true (the training default)",
                       file)
        return {}
    try:
        return read_yaml_mapping(file, what="a run's config.yaml (written by neopain train)")
    except FileReadError as error:
        raise NeopainError(str(error)) from None


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
    return export_model(fold.model, out, exported=fold.exported, opset=opset), fold


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
    cfg = fold.exported.cfg
    subjects = fold.test_subjects or None
    data = FaceDataset(manifest, subjects=subjects, size=cfg.input_size, mean=cfg.mean,
                       std=cfg.std, channel_order=cfg.channel_order,
                       crop_to_face=fold.exported.crop == "face_box")
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

