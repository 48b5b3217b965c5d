"""Pretrained weights from files: Keras h5 (VGG-Face, InceptionV3), VGG-Face's MatConvNet
conversion (.pth), any state dict.

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

Keras files in build order: a Keras h5 whose layers carry Keras's automatic names
(``conv2d_N``, ``batch_normalization_N``, ``dense_N``; InceptionV3's, with or without the
thesis's head) is matched to the model's ``Conv2d``, batch-norm and ``Linear`` modules in the
order Keras built its layers, which the name numbers give (the file lists its layers by depth,
branches interleaved). ``inception_v3_nb`` defines its modules in that order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neopain.data.files import regular_file_problem
from neopain.models.base import PainModel
from neopain.models.weight_files import (
    VGG16_CONVS,
    FileTensor,
    WeightsError,
    keras_layers_in_build_order,
    read_weights,
)

log = logging.getLogger(__name__)

FORMATS = ("auto", "keras-h5", "vggface-pth", "state-dict")
VGG16_FCS = ("fc6", "fc7", "fc8")
VGGFACE_MEAN_RGB = (129.1863, 104.7624, 93.5940)
"""VGG-Face channel means in 0–255 units, RGB order (keras-vggface subtracts them in BGR)."""
_FILE_CHANNEL_ORDER = {"keras-h5": "BGR", "vggface-pth": "RGB"}
"""The channel order of VGG-Face's first convolution in each of its releases."""
_MODULE_KINDS = {"convolution": nn.Conv2d, "batch-norm": nn.modules.batchnorm._BatchNorm,
                 "dense": nn.Linear}
"""The model's module type for each kind of Keras layer (``keras_layers_in_build_order``)."""
_VGG_FLATTEN = (512, 7, 7)  # pool5 output that fc6 reads: (channels, height, width)

KeyMap = Mapping[str, str | None] | Callable[[str], str | None]
"""Prefix renames ``{"old.": "new."}`` (a prefix mapped to None drops its keys) or a callable
``file key -> model key`` (None drops it)."""


@dataclass(frozen=True)
class LoadReport:
    """What ``load_weights`` did.

    Attributes:
        path: the weights file.
        format: the format it was read as (``auto`` resolved).
        loaded: model keys set from the file.
        missing: model keys the file did not set (they keep their values); batch norm's
            ``num_batches_tracked`` counters are not listed.
        unexpected: file keys with no place in the model.
        skipped: file keys left out on purpose → why (dropped by the key map, a VGG-Face
            classifier layer that the model's head does not have or that does not fit it, or
            Keras Dense layers not as many as the model's ``Linear`` layers).
        notes: conversions done and preprocessing warnings, one sentence each.
    """

    path: Path
    format: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


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
        format: ``keras-h5`` (Keras 2 ``save_weights`` or ``save`` layout, HWIO kernels:
            keras-vggface VGG-16, or layers with Keras's automatic names such as InceptionV3,
            matched in build order), ``vggface-pth`` (MatConvNet-converted VGG-Face state
            dict, keys ``conv1_1.weight`` … ``fc8.bias``), ``state-dict`` (any torch file
            holding a state dict, or a dict holding one under ``state_dict`` or ``model``), or
            ``auto`` (HDF5 → keras-h5; a torch file with ``conv1_1.weight`` …
            ``conv5_3.weight`` at the top → vggface-pth; else state-dict).
        key_map: renames file keys to model keys (see ``KeyMap``). The VGG-Face formats map
            ``conv1_1`` … ``conv5_3`` (and ``fc6`` … ``fc8`` where the model has them) to the
            model's modules of those names by default, other Keras files by build order; a
            given key_map replaces that.
        strict: raise if any model key is missing or any file key unexpected.
        file_channel_order: the channel order the file's first convolution expects, when it
            is not the format's (VGG-Face: BGR in keras-h5, RGB in vggface-pth; other files:
            not converted).

    Returns:
        The ``LoadReport``.

    Raises:
        WeightsError: unreadable file or not of the format, a shape that does not fit (naming
            the key and both shapes), a Keras file whose layers cannot be put in build order
            or whose convolutions and batch norms the model does not have as many of, or
            with ``strict``, missing or unexpected keys. The model is unchanged when this is
            raised.

    Example:
        >>> model = create_model("vgg16_nb")
        >>> report = load_weights(model, "rcmalli_vggface_tf_notop_vgg16.h5")
        >>> report.missing  # the head: trained from scratch
    """
    if file_channel_order not in (None, "RGB", "BGR"):
        raise WeightsError(f"file_channel_order={file_channel_order!r} is not valid; "
                           "valid: RGB, BGR or None")
    path, fmt, tensors = read_weights_file(path, format=format)
    return load_tensors(model, tensors, path=path, fmt=fmt, key_map=key_map, strict=strict,
                        file_channel_order=file_channel_order)


def read_weights_file(path: str | os.PathLike[str], *, format: str = "auto"
                      ) -> tuple[Path, str, dict[str, FileTensor]]:
    """Check that ``path`` is a regular file and read it: (path, format with ``auto``
    resolved, the file's tensors in torch layout), for ``load_tensors``.

    Raises:
        WeightsError: an invalid format, a path that is not a readable file, or a file not of
            the format.
    """
    path = Path(path)
    if format not in FORMATS:
        raise WeightsError(f"format={format!r} is not valid; valid: {', '.join(FORMATS)}")
    if (problem := regular_file_problem(path, what="a weights file (.h5, .pth, .pt)")) is not None:
        raise WeightsError(f"{path}: {problem}")
    return path, *read_weights(path, format=format)


def load_tensors(model: nn.Module, tensors: dict[str, FileTensor], *, path: Path, fmt: str,
                 key_map: KeyMap | None = None, strict: bool = False,
                 file_channel_order: str | None = None) -> LoadReport:
    """``load_weights`` on tensors already read from ``path`` (``read_weights_file``), for a
    caller that reads the file's values itself (``load_vit_weights``); the arguments are
    ``load_weights``'s. ``tensors`` may be converted in place."""
    plan = _convert(model, tensors, path=path, fmt=fmt, key_map=key_map,
                    file_channel_order=file_channel_order)
    state = model.state_dict()
    selected, unexpected, skipped = _select(tensors, state, path=path, plan=plan)
    # batch norm's step counter is in no Keras file; torch's own loading fills it in too
    missing = [key for key in state
               if key not in selected and not key.endswith("num_batches_tracked")]
    if strict and (missing or unexpected):
        raise WeightsError(_strict_message(path, missing, unexpected))
    with torch.no_grad():
        model.load_state_dict(selected, strict=False)
    notes = plan.notes
    if plan.vgg_face:
        notes += _preprocessing_notes(model)
    for note in notes:
        log.info("%s: %s", path, note)
    return LoadReport(path, fmt, tuple(selected), tuple(missing), tuple(unexpected), skipped,
                      tuple(notes))


@dataclass
class _Plan:
    """How the file's keys go into the model.

    Attributes:
        key_map: file key → model key (None: keys as they are).
        vgg_face: the file is a VGG-Face release.
        optional: file keys skipped, not refused, when they do not fit → what they are.
        skipped: file keys left out before any is matched → why.
        notes: conversions done, one sentence each.
    """

    key_map: KeyMap | None
    vgg_face: bool = False
    optional: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _convert(model: nn.Module, tensors: dict[str, FileTensor], *, path: Path, fmt: str,
             key_map: KeyMap | None, file_channel_order: str | None) -> _Plan:
    """Convert the file's tensors in place for the model (VGG-Face layouts, channel order) and
    plan the key map (VGG-Face's or Keras build order's when none is given)."""
    if fmt == "vggface-pth" or (fmt == "keras-h5" and "conv1_1.weight" in tensors):
        plan = _Plan(key_map, vgg_face=True)
        if key_map is None:
            plan.key_map = _vgg_key_map(model, path)
            plan.optional = {key: "VGG-Face classifier layer" for key in tensors
                             if key.split(".")[0] in VGG16_FCS}
        _convert_vgg(model, tensors, key_map=plan.key_map,
                     file_order=file_channel_order or _FILE_CHANNEL_ORDER[fmt],
                     keras=fmt == "keras-h5", notes=plan.notes)
        return plan
    plan = _Plan(key_map)
    first = None
    if fmt == "keras-h5" and key_map is None:
        in_file = keras_layers_in_build_order(tensors, path=path)
        plan.key_map, plan.skipped = _keras_order_key_map(model, tensors, in_file, path=path)
        first = f"{in_file['convolution'][0]}.weight" if in_file["convolution"] else None
    if file_channel_order is not None:
        plan.notes += _flip_first_conv(model, tensors, key_map=plan.key_map,
                                       file_order=file_channel_order, first=first)
    return plan


def _select(tensors: dict[str, FileTensor], state: Mapping[str, torch.Tensor], *, path: Path,
            plan: _Plan) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    """(model key → tensor to load, unexpected file keys, skipped file key → why).

    Raises:
        WeightsError: a shape that does not fit, or two file keys for one model key.
    """
    selected: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    skipped = dict(plan.skipped)
    for key, tensor in tensors.items():
        if key in plan.skipped:
            continue
        target = _rename(key, plan.key_map)
        what = plan.optional.get(key)
        if target is None:
            skipped[key] = "dropped by the key map"
        elif target not in state:
            if what is not None:
                skipped[key] = f"{what}; the model has no {target!r}"
            else:
                unexpected.append(key)
        elif tuple(state[target].shape) != tuple(tensor.value.shape):
            if what is not None:
                skipped[key] = (f"{what} of shape {tuple(tensor.value.shape)} does not fit the "
                                f"model's {target!r} {tuple(state[target].shape)}")
                continue
            raise WeightsError(_shape_message(path, tensor, target, tuple(state[target].shape)))
        elif target in selected:
            raise WeightsError(f"{path}: two file keys map to the model's {target!r} "
                               f"(the second is {tensor.source!r}); fix the key map")
        else:
            selected[target] = tensor.value
    return selected, unexpected, skipped


def _keras_order_key_map(model: nn.Module, tensors: dict[str, FileTensor],
                         in_file: dict[str, list[str]], *, path: Path
                         ) -> tuple[dict[str, str], dict[str, str]]:
    """Prefix renames from the file's Keras layers (``in_file``: its layers of each kind in
    build order, as ``keras_layers_in_build_order`` gives them) to the model's modules of the
    same kind, in that order, and the file's Dense layers left out (→ why) when the model has
    not as many ``Linear`` modules.

    Raises:
        WeightsError: convolution or batch-norm layers not as many as the model has.
    """
    in_model = {kind: [name for name, module in model.named_modules() if isinstance(module, cls)]
                for kind, cls in _MODULE_KINDS.items()}
    kinds = ("convolution", "batch-norm")
    if any(len(in_file[kind]) != len(in_model[kind]) for kind in kinds):
        raise WeightsError(
            f"{path}: the file's {len(in_file['convolution'])} convolution and "
            f"{len(in_file['batch-norm'])} batch-norm layers load by the order Keras built "
            f"them, but the model has {len(in_model['convolution'])} and "
            f"{len(in_model['batch-norm'])}: the file is for another architecture (a Keras "
            "InceptionV3 file loads into inception_v3_nb; for another layout give a key_map)")
    key_map: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for kind, layers in in_file.items():
        if kind == "dense" and len(layers) != len(in_model[kind]):
            skipped.update({key: f"Keras Dense layer: the file has {len(layers)}, the model "
                                 f"{len(in_model[kind])} Linear layers; the model keeps its own"
                            for key in tensors if key.rsplit(".", 1)[0] in layers})
            continue
        key_map.update({f"{layer}.": f"{module}." for layer, module in
                        zip(layers, in_model[kind])})
    return key_map, skipped


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


def _convert_vgg(model: nn.Module, tensors: dict[str, FileTensor], *, key_map: KeyMap,
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


def _flip_first_conv(model: nn.Module, tensors: dict[str, FileTensor], *, key_map: KeyMap | None,
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


def _shape_message(path: Path, tensor: FileTensor, target: str, model_shape: tuple) -> str:
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


def _preprocessing_notes(model: nn.Module) -> list[str]:
    if not isinstance(model, PainModel):
        return []
    cfg = model.cfg
    mean = VGGFACE_MEAN_RGB if cfg.channel_order == "RGB" else VGGFACE_MEAN_RGB[::-1]
    if (np.allclose(np.array(cfg.mean) * 255, mean, atol=1e-3)
            and np.allclose(np.array(cfg.std) * 255, 1.0, atol=1e-6)):
        return []
    return [f"model cfg {cfg.name!r} normalizes with mean={cfg.mean}, std={cfg.std}, but "
            f"VGG-Face features expect mean={tuple(round(m / 255, 6) for m in mean)}, "
            f"std=1/255 in {cfg.channel_order} (pixels minus the VGG-Face means)"]
