"""Grad-CAM (Selvaraju et al., ICCV 2017) through captum's ``LayerGradCam``.

The target layer's activations are weighted by their spatially averaged gradients, summed over
channels, passed through a ReLU (only evidence *for* the class) and upsampled to the input size.

The gate: Grad-CAM's channel weights are global, so it also credits positions of the layer that
cannot change the output at all: ones a later max-pool never selects in any channel, or that a
pooling with a remainder drops (N-CNN's ``merge.conv`` map is 11×11 and its 2×2 pool keeps
10×10; the last row and column lit up as hot borders). With ``gate=True`` (default) the map is
zeroed where the gradient of the target score is 0 in every channel; ``gate=False`` is plain
Grad-CAM.
"""

from __future__ import annotations

from captum.attr import LayerGradCam, LayerGradientXActivation
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.explain.base import ClassScores, Explainer, upsample

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class GradCam(Explainer):
    """Grad-CAM on a convolution layer of a torch model.

    Args:
        model: a ``PainModel``; its ``cfg.cam_layer`` is the target layer unless ``layer`` is
            given.
        layer: dotted module path of the target layer, e.g. ``"merge.conv"``.
        interpolation: how the coarse map is upsampled: ``bilinear``, ``bicubic`` or
            ``nearest``.
        gate: zero the map where no channel's gradient reaches the output (see the module
            docstring); costs a second backward pass.
        batch_size: images per pass.

    Raises:
        NeopainError: no layer (neither ``layer`` nor a cfg with ``cam_layer``), a path that
            names no module (the model's convolution layers are listed), a bad interpolation.
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, *, layer: str | None = None,
                 interpolation: str = "bilinear", gate: bool = True,
                 batch_size: int = 32) -> None:
        super().__init__(model, batch_size=batch_size)
        self.layer = layer
        self.interpolation = interpolation
        self.gate = gate
        if interpolation not in INTERPOLATIONS:
            raise NeopainError(f"interpolation={interpolation!r} is not valid; valid: "
                               f"{', '.join(INTERPOLATIONS)}")
        self.layer_ = self._find_layer(model, layer)
        scores = ClassScores(model)
        self._cam: LayerGradCam | None = LayerGradCam(scores, self.layer_)
        self._gradients: LayerGradientXActivation | None = LayerGradientXActivation(
            scores, self.layer_, multiply_by_inputs=False)

    @staticmethod
    def _find_layer(model: nn.Module, layer: str | None) -> nn.Module:
        cfg = getattr(model, "cfg", None)  # PainModel sets it; a bare nn.Module has none
        path = layer if layer is not None else (cfg.cam_layer if cfg is not None else "")
        convolutions = [name for name, module in model.named_modules()
                        if isinstance(module, nn.Conv2d)]
        if not path:
            raise NeopainError("Grad-CAM needs a target layer: give layer=... or a model whose "
                               f"cfg has cam_layer; convolution layers: {', '.join(convolutions)}")
        try:
            return model.get_submodule(path)
        except AttributeError:
            raise NeopainError(f"layer={path!r} is not a module of the model; convolution "
                               f"layers: {', '.join(convolutions)}") from None

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        cam = self._cam.attribute(images, target=target, relu_attributions=True)
        if self.gate:
            gradients = self._gradients.attribute(images, target=target)
            cam = cam * (gradients != 0).any(dim=1, keepdim=True)
        return upsample(cam, tuple(images.shape[-2:]), mode=self.interpolation)

    def _release(self) -> None:
        self._cam = None
        self._gradients = None
