"""Reading weight files: torch files holding a state dict (VGG-Face's MatConvNet conversion
among them) and Keras 2 HDF5 weights, as tensors in torch layout with where each came from;
the order Keras built a file's layers in."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from neopain.errors import NeopainError

KERAS_TORCH_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                     "moving_mean": "running_mean", "moving_variance": "running_var"}
"""Keras weight names → torch parameter and buffer names (Dense, Conv2D, BatchNormalization)."""
KERAS_AUTO_NAME = re.compile(r"(?P<base>[a-z][a-z0-9_]*?)(?:_(?P<number>\d+))?")
"""Keras's automatic layer names: ``conv2d``, ``conv2d_1``, … (one counter per layer type)."""

VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")


class WeightsError(NeopainError):
    """A weights file that cannot be loaded into the model."""


@dataclass
class FileTensor:
    """One array from the file, in torch layout, with where it came from (for messages)."""

    value: torch.Tensor
    source: str
    source_shape: tuple[int, ...]


def read_weights(path: Path, *, format: str) -> tuple[str, dict[str, FileTensor]]:
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


def _read_torch(path: Path) -> dict[str, FileTensor]:
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
        tensors[str(key)] = FileTensor(value, str(key), tuple(value.shape))
    return tensors


def _decode(names: object) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]


def _read_keras_h5(path: Path) -> dict[str, FileTensor]:
    """Keras 2 ``save_weights`` layout: attribute ``layer_names`` on the root (or on
    ``model_weights`` for a whole saved model), attribute ``weight_names`` on each layer group,
    datasets at ``layer/weight_name`` (``conv1_1/conv1_1/kernel:0``). A group holding a whole
    model (a base model inside a Sequential) holds the weights of several layers: each is keyed
    by its own layer (``conv2d_1/kernel:0`` → ``conv2d_1.weight``)."""
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(f"{path}: cannot be read as an HDF5 file ({error})") from None
    with file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            raise WeightsError(f"{path}: not a Keras 2 weights file (no 'layer_names' attribute;"
                               " expected the layout of Keras 2 save_weights)")
        tensors: dict[str, FileTensor] = {}
        for group_name in _decode(root.attrs["layer_names"]):
            if group_name not in root:
                raise WeightsError(f"{path}: layer {group_name!r} is listed in 'layer_names' "
                                   "but has no group")
            group = root[group_name]
            names = _decode(group.attrs.get("weight_names", []))
            nested = len({_layer_of(name, group_name) for name in names}) > 1
            for name in names:
                if name not in group:
                    raise WeightsError(f"{path}: weight {group_name}/{name} is listed but "
                                       "missing")
                layer = _layer_of(name, group_name) if nested else group_name
                key, value, array = _keras_tensor(layer, name, np.asarray(group[name]))
                source = f"{group_name}/{name}"
                if key in tensors:
                    raise WeightsError(f"{path}: {tensors[key].source!r} and {source!r} are both "
                                       f"{key!r}; give each layer its own name")
                tensors[key] = FileTensor(torch.from_numpy(np.ascontiguousarray(value)), source,
                                          tuple(array.shape))
    return tensors


def _layer_of(weight_name: str, group_name: str) -> str:
    """The layer a weight belongs to: the part of its name before the last ``/``."""
    parts = weight_name.split("/")
    return parts[-2] if len(parts) > 1 else group_name


def _keras_tensor(layer: str, name: str, array: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(torch key, value in torch layout, the array as stored) of one Keras weight."""
    leaf = name.rsplit("/", 1)[-1].split(":")[0]
    if leaf.endswith("_W"):  # Keras 1: conv1_1_W, conv1_1_b
        leaf = "kernel"
    elif leaf.endswith("_b"):
        leaf = "bias"
    value = array
    if leaf == "kernel":
        # Keras kernels: conv (h, w, in, out) -> torch (out, in, h, w); dense (in, out) -> (out, in)
        if array.ndim == 4:
            value = array.transpose(3, 2, 0, 1)
        elif array.ndim == 2:
            value = array.T
    return f"{layer}.{KERAS_TORCH_NAMES.get(leaf, leaf)}", value, array


def keras_layers_in_build_order(tensors: dict[str, FileTensor], *, path: Path
                                ) -> dict[str, list[str]]:
    """The convolution, batch-norm and Dense layers of a Keras file, each kind in the order
    Keras built them: by the number of their automatic names (``conv2d`` is 0; the file lists
    layers by depth, branches interleaved). Dense layers with other names keep the file's
    order, the build order of a chain of Dense layers.

    Returns:
        ``{"convolution": [...], "batch-norm": [...], "dense": [...]}``, layer names.

    Raises:
        WeightsError: a convolution or batch-norm layer without an automatic name like the
            others of its kind (its build order is unknown).
    """
    layers: dict[str, list[str]] = {"convolution": [], "batch-norm": [], "dense": []}
    for key, tensor in tensors.items():
        layer, leaf = key.rsplit(".", 1)
        if leaf == "running_mean":
            layers["batch-norm"].append(layer)
        elif leaf == "weight" and tensor.value.ndim in (2, 4):
            layers["dense" if tensor.value.ndim == 2 else "convolution"].append(layer)
    for kind, names in layers.items():
        matches = [KERAS_AUTO_NAME.fullmatch(name) for name in names]
        bases = [match["base"] if match else None for match in matches]
        if all(bases) and len(set(bases)) <= 1:
            layers[kind] = [name for _, name in sorted(
                (int(match["number"] or 0), name) for match, name in zip(matches, names))]
        elif kind != "dense":
            odd = next(name for name, base in zip(names, bases) if base != bases[0] or not base)
            raise WeightsError(f"{path}: {kind} layer {odd!r} is not named as Keras names the "
                               f"others (a layer type and a number, one type for all {len(names)}"
                               f" {kind} layers), so the order Keras built them in is unknown; "
                               "give a key_map (file layer prefix → model module prefix)")
    return layers
