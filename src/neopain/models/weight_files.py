"""Reading weight files: torch files holding a state dict (VGG-Face's MatConvNet conversion
among them) and Keras 2 HDF5 weights, as tensors in torch layout with where each came from."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from neopain.errors import NeopainError

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
        tensors: dict[str, FileTensor] = {}
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
                tensors[key] = FileTensor(torch.from_numpy(np.ascontiguousarray(value)),
                                       f"{layer}/{name}", tuple(array.shape))
    return tensors
