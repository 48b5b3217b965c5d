"""Pretrained weights from files: VGG-Face (Keras h5, MatConvNet-converted .pth), any state dict.

Nothing is downloaded: the user gives the file. Every file key is mapped to a model key, every
shape is checked before the model is touched (a mismatch raises ``WeightsError`` naming both
shapes), and what was loaded, left missing, unexpected or skipped is returned as a
``LoadReport``.

VGG-Face preprocessing: both VGG-Face releases expect raw 0–255 pixels minus the VGG-Face
channel means (R 129.1863, G 104.7624, B 93.5940), std 1. The Keras (keras-vggface) weights
take BGR input, the MatConvNet-converted ones RGB. When the file's channel order differs from
the model's (``model.cfg.channel_order``; ``vgg16_nb`` and ``vgg16_avg`` are BGR), the input
channels of ``conv1_1`` are reversed so the model computes exactly what the original network
computes on the same image; a model cfg whose mean/std differ from VGG-Face's gets a note.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from neopain.data.files import regular_file_problem
from neopain.errors import NeopainError
from neopain.models.base import PainModel

log = logging.getLogger(__name__)

FORMATS = ("auto", "keras-h5", "vggface-pth", "state-dict")
VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
VGG16_FCS = ("fc6", "fc7", "fc8")
VGGFACE_MEAN_RGB = (129.1863, 104.7624, 93.5940)
"""VGG-Face channel means in 0–255 units, RGB order (keras-vggface subtracts them in BGR)."""
_FILE_CHANNEL_ORDER = {"keras-h5": "BGR", "vggface-pth": "RGB"}
_VGG_FLATTEN = (512, 7, 7)  # pool5 output that fc6 reads: (channels, height, width)

KeyMap = Mapping[str, str | None] | Callable[[str], str | None]
"""Prefix renames ``{"old.": "new."}`` (a prefix mapped to None drops its keys) or a callable
``file key -> model key`` (None drops it)."""


class WeightsError(NeopainError):
    """A weights file that cannot be loaded into the model."""


@dataclass(frozen=True)
class LoadReport:
    """What ``load_weights`` did.

    Attributes:
        path: the weights file.
        format: the format it was read as (``auto`` resolved).
        loaded: model keys set from the file.
        missing: model keys the file did not set (they keep their values).
        unexpected: file keys with no place in the model.
        skipped: file keys left out on purpose → why (dropped by the key map, or a VGG-Face
            classifier layer that the model's head does not have or that does not fit it).
        notes: conversions done and preprocessing warnings, one sentence each.
    """

    path: Path
    format: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass
class _Tensor:
    """One array from the file, in torch layout, with where it came from (for messages)."""

    value: torch.Tensor
    source: str
    source_shape: tuple[int, ...]


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    key_map: KeyMap | None = None,
    strict: bool = False,
    file_channel_order: str | None = None,
) -> LoadReport:
    """Load pretrained weights from ``path`` into ``model`` in place.

    Args:
        model: the model; a ``PainModel``'s cfg gives the channel order it is fed.
        path: the weights file.
        format: ``keras-h5`` (keras-vggface VGG-16, Keras 2 ``save_weights`` layout: HWIO
            kernels), ``vggface-pth`` (MatConvNet-converted VGG-Face state dict, keys
            ``conv1_1.weight`` … ``fc8.bias``), ``state-dict`` (any torch file holding a state
            dict, or a dict holding one under ``state_dict`` or ``model``), or ``auto``
            (HDF5 → keras-h5; a torch file with ``conv1_1.weight`` … ``conv5_3.weight`` at the
            top → vggface-pth; else state-dict).
        key_map: renames file keys to model keys (see ``KeyMap``). The VGG-Face formats map
            ``conv1_1`` … ``conv5_3`` (and ``fc6`` … ``fc8`` where the model has them) to the
            model's modules of those names by default; a given key_map replaces that.
        strict: raise if any model key is missing or any file key unexpected.
        file_channel_order: the channel order the file's first convolution expects, when it
            is not the format's (keras-h5: BGR, vggface-pth: RGB; state-dict: not converted).

    Returns:
        The ``LoadReport``.

    Raises:
        WeightsError: unreadable file or not of the format, a shape that does not fit (naming
            the key and both shapes), or with ``strict``, missing or unexpected keys. The model
            is unchanged when this is raised.

    Example:
        >>> model = create_model("vgg16_nb")
        >>> report = load_weights(model, "rcmalli_vggface_tf_notop_vgg16.h5")
        >>> report.missing  # the head: trained from scratch
    """
    path = Path(path)
    if format not in FORMATS:
        raise WeightsError(f"format={format!r} is not valid; valid: {', '.join(FORMATS)}")
    if file_channel_order not in (None, "RGB", "BGR"):
        raise WeightsError(f"file_channel_order={file_channel_order!r} is not valid; "
                           "valid: RGB, BGR or None")
    if (problem := regular_file_problem(path, what="a weights file (.h5, .pth, .pt)")) is not None:
        raise WeightsError(f"{path}: {problem}")
    fmt, tensors = _read(path, format)
    notes: list[str] = []
    optional: set[str] = set()
    if fmt in _FILE_CHANNEL_ORDER:
        if key_map is None:
            key_map = _vgg_key_map(model, path)
            optional = {key for key in tensors if key.split(".")[0] in VGG16_FCS}
        _convert_vgg(model, tensors, key_map=key_map,
                     file_order=file_channel_order or _FILE_CHANNEL_ORDER[fmt],
                     keras=fmt == "keras-h5", notes=notes)
    elif file_channel_order is not None:
        notes += _flip_first_conv(model, tensors, key_map=key_map, file_order=file_channel_order)

    state = model.state_dict()
    selected: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    skipped: dict[str, str] = {}
    for key, tensor in tensors.items():
        target = _rename(key, key_map)
        if target is None:
            skipped[key] = "dropped by the key map"
        elif target not in state:
            if key in optional:
                skipped[key] = f"VGG-Face classifier layer; the model has no {target!r}"
            else:
                unexpected.append(key)
        elif tuple(state[target].shape) != tuple(tensor.value.shape):
            if key in optional:
                skipped[key] = (f"VGG-Face classifier layer of shape {tuple(tensor.value.shape)}"
                                f" does not fit the model's {target!r} "
                                f"{tuple(state[target].shape)}")
                continue
            raise WeightsError(_shape_message(path, tensor, target, tuple(state[target].shape)))
        elif target in selected:
            raise WeightsError(f"{path}: two file keys map to the model's {target!r} "
                               f"(the second is {tensor.source!r}); fix the key map")
        else:
            selected[target] = tensor.value
    missing = [key for key in state if key not in selected]
    if strict and (missing or unexpected):
        raise WeightsError(_strict_message(path, missing, unexpected))
    with torch.no_grad():
        model.load_state_dict(selected, strict=False)
    notes += _preprocessing_notes(model, fmt)
    for note in notes:
        log.info("%s: %s", path, note)
    return LoadReport(path, fmt, tuple(selected), tuple(missing), tuple(unexpected), skipped,
                      tuple(notes))


def _read(path: Path, format: str) -> tuple[str, dict[str, _Tensor]]:
    """The format (``auto`` resolved) and the file's tensors in torch layout."""
    if format == "keras-h5" or (format == "auto" and h5py.is_hdf5(path)):
        return "keras-h5", _read_keras_h5(path)
    tensors = _read_torch(path)
    renamed = {_matconvnet_name(key): value for key, value in tensors.items()}
    if format == "auto":
        vgg = {f"{name}.weight" for name in VGG16_CONVS}
        format = "vggface-pth" if vgg <= renamed.keys() else "state-dict"
    return format, renamed if format == "vggface-pth" else tensors


def _matconvnet_name(key: str) -> str:
    # some conversions write conv_1_1 for conv1_1
    return re.sub(r"^conv_(\d)_(\d)\.", r"conv\1_\2.", key)


def _read_torch(path: Path) -> dict[str, _Tensor]:
    with path.open("rb") as file:
        pickled = file.read(1) == b"\x80"  # torch's legacy (non-zip) format is a pickle
    if not zipfile.is_zipfile(path) and not pickled:
        raise WeightsError(f"{path}: not a torch weights file (.pt/.pth) nor a Keras HDF5 file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged or foreign file
        reason = str(error).strip().split("\n")[0][:200]
        raise WeightsError(f"{path}: cannot be read as a torch weights file "
                           f"({type(error).__name__}: {reason})") from None
    if isinstance(data, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(data.get(wrapper), dict):
                data = data[wrapper]
                break
    if not isinstance(data, dict) or not data:
        raise WeightsError(f"{path}: holds a {type(data).__name__}, not a state dict (a dict of "
                           "tensors, or a dict holding one under 'state_dict' or 'model')")
    tensors = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: key {key!r} holds a {type(value).__name__}, not a "
                               "tensor; a state dict holds only tensors")
        tensors[str(key)] = _Tensor(value, str(key), tuple(value.shape))
    return tensors


def _decode(names: object) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]


def _read_keras_h5(path: Path) -> dict[str, _Tensor]:
    """Keras 2 ``save_weights`` layout: attribute ``layer_names`` on the root (or on
    ``model_weights`` for a whole saved model), attribute ``weight_names`` on each layer group,
    datasets at ``layer/weight_name`` (``conv1_1/conv1_1/kernel:0``)."""
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(f"{path}: cannot be read as an HDF5 file ({error})") from None
    with file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            raise WeightsError(f"{path}: not a Keras 2 weights file (no 'layer_names' attribute;"
                               " expected the layout of Keras 2 save_weights)")
        tensors: dict[str, _Tensor] = {}
        for layer in _decode(root.attrs["layer_names"]):
            if layer not in root:
                raise WeightsError(f"{path}: layer {layer!r} is listed in 'layer_names' but "
                                   "has no group")
            group = root[layer]
            for name in _decode(group.attrs.get("weight_names", [])):
                if name not in group:
                    raise WeightsError(f"{path}: weight {layer}/{name} is listed but missing")
                array = np.asarray(group[name])
                leaf = name.rsplit("/", 1)[-1].split(":")[0]
                if leaf == "kernel" or leaf.endswith("_W"):
                    key = f"{layer}.weight"
                    # Keras kernels: conv (h, w, in, out) -> torch (out, in, h, w);
                    # dense (in, out) -> (out, in)
                    if array.ndim == 4:
                        value = array.transpose(3, 2, 0, 1)
                    elif array.ndim == 2:
                        value = array.T
                    else:
                        value = array
                elif leaf == "bias" or leaf.endswith("_b"):
                    key, value = f"{layer}.bias", array
                else:
                    key, value = f"{layer}.{leaf}", array
                tensors[key] = _Tensor(torch.from_numpy(np.ascontiguousarray(value)),
                                       f"{layer}/{name}", tuple(array.shape))
    return tensors


def _vgg_key_map(model: nn.Module, path: Path) -> dict[str, str]:
    """VGG-Face layer ``conv1_1`` → the model's module whose last name is ``conv1_1``."""
    by_leaf: dict[str, list[str]] = {}
    for name, _ in model.named_modules():
        by_leaf.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    key_map = {}
    for layer in VGG16_CONVS + VGG16_FCS:
        found = by_leaf.get(layer, [])
        if len(found) > 1:
            raise WeightsError(f"{path}: the model has several modules named {layer!r} "
                               f"({', '.join(found)}); give a key_map")
        if not found and layer in VGG16_CONVS:
            raise WeightsError(f"{path}: VGG-Face weights need a VGG-16 model with convolutions "
                               f"conv1_1 … conv5_3; this model has no module named {layer!r} "
                               "(use vgg16_nb or vgg16_avg, or give a key_map)")
        key_map[f"{layer}."] = f"{found[0]}." if found else f"{layer}."
    return key_map


def _convert_vgg(model: nn.Module, tensors: dict[str, _Tensor], *, key_map: KeyMap,
                 file_order: str, keras: bool, notes: list[str]) -> None:
    """Reverse conv1_1's input channels when the orders differ; Keras fc6 from HWC flatten."""
    notes += _flip_first_conv(model, tensors, key_map=key_map, file_order=file_order,
                              first="conv1_1.weight")
    fc6 = tensors.get("fc6.weight")
    loads_fc6 = _rename("fc6.weight", key_map) in model.state_dict()
    if keras and loads_fc6 and fc6 is not None and fc6.value.shape[1] == np.prod(_VGG_FLATTEN):
        # Keras flattens pool5 as (h, w, c), torch as (c, h, w): reorder fc6's input columns
        c, h, w = _VGG_FLATTEN
        out = fc6.value.shape[0]
        fc6.value = fc6.value.reshape(out, h, w, c).permute(0, 3, 1, 2).reshape(out, -1)
        notes.append("fc6 input columns reordered from Keras' (h, w, c) flatten to torch's "
                     "(c, h, w)")


def _flip_first_conv(model: nn.Module, tensors: dict[str, _Tensor], *, key_map: KeyMap | None,
                     file_order: str, first: str | None = None) -> list[str]:
    model_order = model.cfg.channel_order if isinstance(model, PainModel) else file_order
    if model_order == file_order:
        return []
    if first is None:  # state dict: the first 4-d tensor is the first convolution's kernel
        first = next((k for k, t in tensors.items() if t.value.ndim == 4), None)
    tensor = tensors.get(first) if first is not None else None
    if tensor is None or tensor.value.ndim != 4 or tensor.value.shape[1] != 3:
        return []
    tensor.value = tensor.value.flip(1)
    return [f"{_rename(first, key_map) or first}: input channels reversed ({file_order} in the "
            f"file, {model_order} in the model cfg)"]


def _rename(key: str, key_map: KeyMap | None) -> str | None:
    if key_map is None:
        return key
    if callable(key_map):
        return key_map(key)
    prefixes = [p for p in key_map if key.startswith(p)]
    if not prefixes:
        return key
    prefix = max(prefixes, key=len)
    new = key_map[prefix]
    return None if new is None else new + key[len(prefix):]


def _shape_message(path: Path, tensor: _Tensor, target: str, model_shape: tuple) -> str:
    file_shape = tuple(tensor.value.shape)
    in_file = f"{tensor.source!r} has shape {tensor.source_shape}"
    if tensor.source_shape != file_shape:
        in_file += f" ({file_shape} in torch layout)"
    return (f"{path}: {in_file} but the model's {target!r} has shape {model_shape}; "
            "the file is for a different architecture or model options "
            "(drop the key with key_map={'prefix.': None} to keep the model's own values)")


def _strict_message(path: Path, missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} model key(s) not in the file: {', '.join(missing[:8])}"
                     + (" …" if len(missing) > 8 else ""))
    if unexpected:
        parts.append(f"{len(unexpected)} file key(s) not in the model: "
                     f"{', '.join(unexpected[:8])}" + (" …" if len(unexpected) > 8 else ""))
    return f"{path}: strict=True but " + "; ".join(parts) + " (fix the key map or use strict=False)"


def _preprocessing_notes(model: nn.Module, fmt: str) -> list[str]:
    if fmt not in _FILE_CHANNEL_ORDER or not isinstance(model, PainModel):
        return []
    cfg = model.cfg
    mean = VGGFACE_MEAN_RGB if cfg.channel_order == "RGB" else VGGFACE_MEAN_RGB[::-1]
    if (np.allclose(np.array(cfg.mean) * 255, mean, atol=1e-3)
            and np.allclose(np.array(cfg.std) * 255, 1.0, atol=1e-6)):
        return []
    return [f"model cfg {cfg.name!r} normalizes with mean={cfg.mean}, std={cfg.std}, but "
            f"VGG-Face features expect mean={tuple(round(m / 255, 6) for m in mean)}, "
            f"std=1/255 in {cfg.channel_order} (pixels minus the VGG-Face means)"]
