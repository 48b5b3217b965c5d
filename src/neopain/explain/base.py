"""The explainer base class: class scores, targets, batching and heatmaps, as a context manager.

Every method answers the same question: for preprocessed images (N, 3, H, W, normalized as
``FaceDataset`` feeds the model) and one target class per image, heatmaps (N, H, W) that are
larger where the image holds more evidence for that class. Subclasses implement ``_attribute``
only (pytorch-grad-cam's ``BaseCAM`` pattern).

Targets follow the model's output: a 2-class model is explained through its class logits (the
target is the class index, ``nopain`` = 0, ``pain`` = 1); a model with one sigmoid logit ``z``
through ``z`` for pain and ``-z`` for no pain (``ClassScores``).
"""

from __future__ import annotations

import functools

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Union

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.models.cfg import ModelCfg
from neopain.models.scores import ClassScores

BASELINES = ("blur", "black", "mean")
"""What replaces an image where a method removes information (IG's path start, occluded
windows): ``blur`` (a Gaussian blur: detail gone, colour and layout kept), ``black``, or
``mean`` (the normalization's mean colour: 0 after normalizing)."""

CLASSES = ("nopain", "pain")
"""Class names in index order (``FaceDataset.LABEL_INDEX``)."""

PainFunction = Callable[[np.ndarray], np.ndarray]
"""``f(images) -> P(pain)``: float32 (N, 3, H, W) preprocessed images in, (N,) out; e.g. an
ONNX session wrapped in a function."""

Model = Union[nn.Module, PainFunction]
Target = Union[int, str, Sequence[Union[int, str]], np.ndarray, Tensor]


def function_scores(function: PainFunction) -> Callable[[Tensor], Tensor]:
    """(P(nopain), P(pain)) per image from a ``PainFunction``, as a torch function."""

    def scores(images: Tensor) -> Tensor:
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        pain = np.asarray(function(batch), dtype=np.float32).reshape(-1)
        if pain.shape[0] != batch.shape[0]:
            raise NeopainError(f"the model function returned {pain.shape[0]} values for "
                               f"{batch.shape[0]} images; valid: one P(pain) per image")
        pain_t = torch.from_numpy(pain).to(images.device)
        return torch.stack([1.0 - pain_t, pain_t], dim=1)

    return scores


def class_indices(target: Target, n: int) -> Tensor:
    """One class index per image: ``target`` is a class (index or name) or one per image.

    Raises:
        NeopainError: an unknown class, or a sequence whose length is not ``n``.
    """
    if isinstance(target, (int, np.integer, str)):
        target = [target] * n
    values = target.tolist() if isinstance(target, (np.ndarray, Tensor)) else list(target)
    if len(values) != n:
        raise NeopainError(f"target has {len(values)} classes for {n} images; valid: one class, "
                           "or one per image")
    indices = []
    for value in values:
        index = CLASSES.index(value) if value in CLASSES else value
        if isinstance(index, str) or index not in range(len(CLASSES)):
            raise NeopainError(f"target={value!r} is not a class; valid: 0, 1, "
                               f"{', '.join(CLASSES)}")
        indices.append(int(index))
    return torch.tensor(indices, dtype=torch.int64)


def as_batch(images: Tensor | np.ndarray) -> Tensor:
    """Images as a float32 (N, 3, H, W) tensor; a single (3, H, W) image becomes N = 1.

    Raises:
        NeopainError: any other shape.
    """
    batch = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[0] == 0:
        raise NeopainError(f"images have shape {tuple(batch.shape)}; valid: (N, 3, H, W) "
                           "preprocessed images, as FaceDataset makes them")
    return batch.detach().to(torch.float32)


def baseline_images(images: Tensor, *, baseline: str, blur_sigma: float = 0.1,
                    cfg: ModelCfg | None = None) -> Tensor:
    """The baseline of each preprocessed image, normalized like the images.

    Args:
        images: (N, 3, H, W) normalized images.
        baseline: ``blur`` (Gaussian of sigma ``blur_sigma`` × width), ``black`` (pixel value
            0 before normalization, which needs ``cfg``) or ``mean`` (0 after normalization).
        blur_sigma: share of the image width.
        cfg: the model's normalization (mean, std).

    Raises:
        NeopainError: an unknown baseline, or ``black`` without ``cfg``.
    """
    if baseline == "black":
        if cfg is None:
            raise NeopainError("baseline='black' needs the model's normalization: pass cfg= "
                               "or a PainModel built by create_model")
        mean = torch.tensor(cfg.mean, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std, dtype=images.dtype).view(1, 3, 1, 1)
        return ((0.0 - mean) / std).expand_as(images).clone().to(images.device)
    if baseline == "mean":
        return torch.zeros_like(images)
    if baseline != "blur":
        raise NeopainError(f"baseline={baseline!r} is not valid; valid: {', '.join(BASELINES)}")
    sigma = blur_sigma * images.shape[-1]
    # normalization is affine per channel, so blurring normalized images equals normalizing
    # blurred ones; cv2 blurs H×W×C float32 with reflected borders
    blurred = [cv2.GaussianBlur(np.ascontiguousarray(image.permute(1, 2, 0).numpy()),
                                (0, 0), sigma) for image in images.detach().cpu()]
    return torch.from_numpy(np.stack(blurred)).permute(0, 3, 1, 2).to(images.device)


class Explainer(ABC):
    """Heatmaps for a model's decisions; one subclass per method, each implementing ``_attribute``.

    The model is put in eval mode while the explainer is open; ``close`` (or leaving the
    ``with`` block) releases what the method holds (layer hooks, captum objects) and restores
    the model's training mode.

    Args:
        model: a torch model (``PainModel``), or for perturbation methods a ``PainFunction``.
        batch_size: images explained per pass.

    Example::

        with GradCam(model) as explainer:
            heatmaps = explainer.explain(images, target="pain")  # (N, H, W)
    """

    name: ClassVar[str] = "explainer"
    needs_gradients: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        # every method's constructor checks its own options after the base has switched the
        # model to eval mode; one that refuses must not leave a training model in eval mode,
        # so each constructor is wrapped once, here, instead of each method catching its errors
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def restoring_init(self: Explainer, *args: object, **options: object) -> None:
            try:
                init(self, *args, **options)
            except BaseException:
                self._restore_mode()
                raise

        cls.__init__ = restoring_init  # type: ignore[method-assign]

    def __init__(self, model: Model, *, batch_size: int = 16) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise NeopainError(f"batch_size={batch_size!r} is not valid; valid: a whole number "
                               ">= 1")
        if self.needs_gradients and not isinstance(model, nn.Module):
            raise NeopainError(f"{self.name} needs a torch model (it follows gradients); got "
                               f"{type(model).__name__}; use occlusion for a model function")
        if not isinstance(model, nn.Module) and not callable(model):
            raise NeopainError(f"model must be a torch model or a function images -> P(pain); "
                               f"got {type(model).__name__}")
        self.model = model
        self.batch_size = batch_size
        self._was_training = isinstance(model, nn.Module) and model.training
        if isinstance(model, nn.Module):
            model.eval()
        self._closed = False

    @abstractmethod
    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        """Heatmaps (n, H, W) for one batch of images and their target class indices."""

    def explain(self, images: Tensor | np.ndarray, *, target: Target) -> np.ndarray:
        """Heatmaps (N, H, W) float32 of the images for ``target`` (a class or one per image).

        Raises:
            NeopainError: bad images or targets, or the explainer is closed.
        """
        if self._closed:
            raise NeopainError(f"this {self.name} explainer is closed; create a new one")
        batch = as_batch(images)
        targets = class_indices(target, len(batch))
        parts = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            heat = self._attribute(chunk, targets[start:start + self.batch_size])
            parts.append(heat.detach().to(torch.float32).cpu().numpy())
        return np.concatenate(parts)

    def predict(self, images: Tensor | np.ndarray) -> np.ndarray:
        """P(pain) per image, (N,) — e.g. to explain the predicted class."""
        batch = as_batch(images)
        if isinstance(self.model, nn.Module):
            scores = ClassScores(self.model, probabilities=True)
        else:
            scores = function_scores(self.model)
        with torch.no_grad():
            return np.concatenate([scores(batch[s:s + self.batch_size])[:, 1].cpu().numpy()
                                   for s in range(0, len(batch), self.batch_size)])

    def _release(self) -> None:  # noqa: B027 - a hook that does nothing by default (STYLE rule 7)
        """Free what the method holds (hooks, captum objects); called once by ``close``."""

    def close(self) -> None:
        """Release the method's resources and restore the model's mode. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._release()
        self._restore_mode()

    def _restore_mode(self) -> None:
        """Put back the training mode the model had before this explainer (if the base
        constructor got as far as changing it)."""
        if isinstance(getattr(self, "model", None), nn.Module) and hasattr(self, "_was_training"):
            self.model.train(self._was_training)

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def upsample(maps: Tensor, size: tuple[int, int], *, mode: str = "bilinear") -> Tensor:
    """(n, h, w) or (n, 1, h, w) maps resized to ``size`` (height, width), as (n, H, W)."""
    if maps.ndim == 3:
        maps = maps[:, None]
    if tuple(maps.shape[-2:]) != tuple(size):
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        maps = torch.nn.functional.interpolate(maps, size=tuple(size), mode=mode, **kwargs)
    return maps[:, 0]
