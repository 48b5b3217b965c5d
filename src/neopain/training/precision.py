"""Where and in which precision the trainer computes: the device, bfloat16 autocast, logits."""

from __future__ import annotations

import torch

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.training.config import DEVICES, PRECISIONS


def check_device(device: str) -> str:
    """``device`` when it is one of ``DEVICES`` (whether CUDA is there is ``resolve_device``'s
    question)."""
    if device not in DEVICES:
        raise NeopainError(f"device={device!r} is not valid; valid: {', '.join(DEVICES)}")
    return device


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``; ``cuda`` (refused when missing)."""
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NeopainError("device='cuda' but torch sees no CUDA GPU; valid here: auto, cpu")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA GPU that says so; a CPU with
    AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def check_precision(precision: str) -> str:
    """``precision`` when it is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise NeopainError(f"precision={precision!r} is not valid; valid: {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training forward passes: None (float32) or ``torch.bfloat16``."""
    check_precision(precision)
    if precision == "fp32" or (precision == "auto" and not bf16_supported(device)):
        return None
    if not bf16_supported(device):
        raise NeopainError(f"precision='bf16' but this {device.type.upper()} has no native "
                           "bfloat16 (it would be emulated, slower than float32); valid here: "
                           "fp32, auto")
    return torch.bfloat16


def logits(model: PainModel, inputs: torch.Tensor, *, features: bool) -> torch.Tensor:
    """``model``'s logits of images, or of backbone ``features`` (the head only)."""
    if features:
        return model.forward_head(inputs)
    # channels-last images: oneDNN's convolutions run about 25 % faster on this CPU (ncnn
    # training step 14 vs 19 ms per image, measured side by side)
    return model(inputs.contiguous(memory_format=torch.channels_last))


def train_logits(model: PainModel, inputs: torch.Tensor, *, features: bool,
                 autocast: torch.dtype | None) -> torch.Tensor:
    """Training logits, in float32, from a forward pass in ``autocast`` (None: float32);
    features go through the head in float32."""
    if autocast is None or features:
        return logits(model, inputs, features=features)
    with torch.autocast(inputs.device.type, dtype=autocast):
        return logits(model, inputs, features=features).float()
