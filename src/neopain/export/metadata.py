"""``neopain.cfg``: the JSON an exported model file carries so that any runtime feeds it exactly
as training did. Reading it needs neither torch nor onnxruntime (only ``onnx``).

The JSON is flat::

    {"format": 1, "architecture": "vgg16_nb", "name": "vgg16_nb", "input_size": [224, 224],
     "mean": [...], "std": [...], "channel_order": "BGR", "labels": ["nopain", "pain"],
     "cam_layer": "features.conv5_3", "threshold": 0.5, "crop": "face_box", "margin": 0.0,
     "source_run": "runs/vgg16_nb", "fold": 0, "quantization": "none",
     "input": "image", "output": "probs", "log_output": "log_probs", "calibrator": null,
     "exported": "2026-11-22", "neopain": "0.1.0"}

``crop`` is the rule training used: ``face_box`` (``crop_to_face``: the manifest's face box in
whole pixels, no margin, not squared) or ``image`` (the whole image). The network's input is a
float32 N×3×H×W batch normalized as ``(pixel / 255 - mean) / std`` in ``channel_order``; its
output ``probs`` is N×len(labels) softmax probabilities, and ``log_probs`` their logarithms
(log-softmax), so that ``log_probs[:, pain] - log_probs[:, nopain]`` is the network's raw logit
``z_pain - z_nopain`` even where float32 probabilities round to 0 or 1 (files exported before
it have ``probs`` only).

``calibrator`` is the fold's ``models.calibrator.Calibrator`` (``to_dict``) or null: a runtime
maps the raw logit through it to the calibrated P(pain) it shows, and gives the conformal set
when it has a band.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from neopain.data.json_text import parse_json
from neopain.data.files import regular_file_problem
from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.models.calibrator import Calibrator
from neopain.models.cfg import ModelCfg

METADATA_KEY = "neopain.cfg"
FORMAT = 1
CROPS = ("face_box", "image")
"""The ``CropRule`` kinds a trained network's file can carry (training crops exactly or not)."""
QUANTIZATIONS = ("none", "static", "dynamic")
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
LOG_OUTPUT_NAME = "log_probs"


class ModelFileError(NeopainError):
    """A model file neopain cannot use: unreadable, not ONNX, or without a valid ``neopain.cfg``."""


@dataclass(frozen=True)
class ExportedCfg:
    """What an exported model file says about itself.

    Attributes:
        cfg: the model's ``ModelCfg`` (input size, mean, std, channel order, labels, threshold).
        crop: ``face_box`` (training cropped to the face box, margin 0) or ``image``.
        source_run: the run folder the weights came from ("" when exported from a bare model).
        fold: the fold index of that run, or None.
        weights_sha256: SHA-256 of the fold's model.pt the weights came from ("" when not
            known): a calibrator fitted on that fold names the same weights.
        quantization: ``none``, ``static`` (int8 QDQ) or ``dynamic`` (int8 MatMul/Gemm).
        exported: ISO date of the export.
        version: the neopain version that exported it.
        calibrator: the calibration of P(pain) (and its referral band) the file carries, or
            None: the file's P(pain) is the network's own.
    """

    cfg: ModelCfg
    crop: str = "face_box"
    source_run: str = ""
    fold: int | None = None
    weights_sha256: str = ""
    quantization: str = "none"
    exported: str = ""
    version: str = ""
    calibrator: Calibrator | None = None

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ModelFileError(f"crop={self.crop!r} is not valid; valid: {', '.join(CROPS)}")
        if self.quantization not in QUANTIZATIONS:
            raise ModelFileError(f"quantization={self.quantization!r} is not valid; valid: "
                                 f"{', '.join(QUANTIZATIONS)}")

    @property
    def crop_rule(self) -> CropRule:
        """How crops for this model are cut: the face box exactly, or the whole image."""
        return CropRule(self.crop)

    @property
    def pain_index(self) -> int:
        """The output column of P(pain).

        Raises:
            ModelFileError: the labels have no ``pain``.
        """
        if "pain" not in self.cfg.labels:
            raise ModelFileError(f"labels={list(self.cfg.labels)} has no 'pain' class")
        return self.cfg.labels.index("pain")

    def with_quantization(self, quantization: str) -> ExportedCfg:
        """The same cfg for a quantized copy of the model."""
        return replace(self, quantization=quantization)

    def with_calibrator(self, calibrator: Calibrator | None) -> ExportedCfg:
        """The same cfg carrying ``calibrator`` (None: none)."""
        return replace(self, calibrator=calibrator)

    def to_json(self) -> str:
        """The flat JSON stored under ``neopain.cfg``."""
        data: dict[str, Any] = {"format": FORMAT, "architecture": self.cfg.name,
                                **self.cfg.to_dict(), "crop": self.crop,
                                "margin": 0.0 if self.crop_rule.needs_box else None,
                                "source_run": self.source_run, "fold": self.fold,
                                "weights_sha256": self.weights_sha256,
                                "quantization": self.quantization, "input": INPUT_NAME,
                                "output": OUTPUT_NAME, "log_output": LOG_OUTPUT_NAME,
                                "calibrator": None if self.calibrator is None
                                else self.calibrator.to_dict(),
                                "exported": self.exported, "neopain": self.version}
        return json.dumps(data, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = "model file") -> ExportedCfg:
        """Parse ``to_json`` output.

        Raises:
            ModelFileError: not JSON, a newer format, or a missing or invalid field (named; for
                the calibrator, its field).
        """
        try:
            data = parse_json(text)
        except json.JSONDecodeError as error:
            raise ModelFileError(f"{source}: {METADATA_KEY} is not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ModelFileError(f"{source}: {METADATA_KEY} must be a JSON object")
        if data.get("format") != FORMAT:
            raise ModelFileError(f"{source}: {METADATA_KEY} format={data.get('format')!r}; this "
                                 f"neopain reads format {FORMAT} (export the model again)")
        cfg_keys = {field.name for field in fields(ModelCfg)}
        calibrator = data.get("calibrator")
        if calibrator is not None:
            try:
                calibrator = Calibrator.from_dict(calibrator,
                                                  where=f"{source}: {METADATA_KEY}: calibrator")
            except NeopainError as error:
                raise ModelFileError(str(error)) from None
        try:
            cfg = ModelCfg.from_dict({key: data[key] for key in cfg_keys if key in data})
            fold = data.get("fold")
            return cls(cfg=cfg, crop=data.get("crop", "face_box"),
                       source_run=str(data.get("source_run") or ""),
                       fold=None if fold is None else int(fold),
                       weights_sha256=str(data.get("weights_sha256") or ""),
                       quantization=data.get("quantization", "none"),
                       exported=str(data.get("exported") or ""),
                       version=str(data.get("neopain") or ""), calibrator=calibrator)
        except NeopainError as error:
            raise ModelFileError(f"{source}: {METADATA_KEY}: {error}") from None
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{source}: {METADATA_KEY}: {error}") from None


def read_exported_cfg(path: str | os.PathLike[str]) -> ExportedCfg:
    """The ``neopain.cfg`` of a model file, read without building a session.

    Raises:
        ModelFileError: a missing file, a file that is not ONNX, or no valid ``neopain.cfg``.
    """
    import onnx

    path = Path(path)
    if (problem := regular_file_problem(path, what="an .onnx model file")) is not None:
        raise ModelFileError(f"{path}: {problem}; valid: an .onnx file written by "
                             "neopain export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError, ValueError, ...
        raise ModelFileError(f"{path}: not an ONNX model ({type(error).__name__})") from None
    return cfg_from_metadata({p.key: p.value for p in model.metadata_props}, source=str(path))


def cfg_from_metadata(metadata: dict[str, str], *, source: str) -> ExportedCfg:
    """``ExportedCfg`` from a model's metadata map (``onnx`` or onnxruntime's).

    Raises:
        ModelFileError: no ``neopain.cfg`` in it, or an invalid one.
    """
    if METADATA_KEY not in metadata:
        raise ModelFileError(f"{source}: has no {METADATA_KEY} metadata, so neopain cannot know "
                             "how to preprocess its input; export it with neopain export")
    return ExportedCfg.from_json(metadata[METADATA_KEY], source=source)
