"""Guided Grad-CAM (Selvaraju et al., ICCV 2017) through captum's ``GuidedGradCam``.

Guided backpropagation (gradients through ReLUs that pass only positive gradients) gives
pixel-sharp detail; multiplying it by the upsampled Grad-CAM map of the target layer keeps the
detail where the class's evidence lies. Guided backpropagation's sign says little about the
class (it follows the pixel's colour), so the heatmap is the magnitude summed over colour
channels.
"""

from __future__ import annotations

import warnings

from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.explain.base import ClassScores, Explainer
from neopain.explain.gradcam import GradCam


class GuidedGradCam(Explainer):
    """Guided Grad-CAM on a convolution layer of a torch model.

    Args:
        model: a ``PainModel``; its ``cfg.cam_layer`` is the layer unless ``layer`` is given.
        layer: dotted module path of the Grad-CAM layer, e.g. ``"merge.conv"``.
        batch_size: images per pass.

    Raises:
        NeopainError: no layer, or a path that names no module (as ``GradCam``); at
            ``explain``, a layer without a spatial (H, W) output.
    """

    name = "guidedgradcam"

    def __init__(self, model: nn.Module, *, layer: str | None = None,
                 batch_size: int = 16) -> None:
        super().__init__(model, batch_size=batch_size)
        self.layer = layer
        self.layer_ = GradCam._find_layer(model, layer)
        self._guided: CaptumGuidedGradCam | None = CaptumGuidedGradCam(ClassScores(model),
                                                                        self.layer_)

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        images = images.detach().clone().requires_grad_()  # else captum warns that it set it
        with warnings.catch_warnings():  # captum announces its (removed) ReLU hooks
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            warnings.filterwarnings("ignore", message="Couldn't appropriately interpolate")
            attributions = self._guided.attribute(images, target=target,
                                                  interpolate_mode="bilinear")
        if attributions.numel() == 0:  # captum could not upsample the layer's output
            name = next(name for name, module in self.model.named_modules()
                        if module is self.layer_)
            raise NeopainError(f"guidedgradcam: layer {name!r} has no spatial map "
                               "to upsample onto the image; valid: a convolution layer with an "
                               "(H, W) output")
        return attributions.detach().abs().sum(dim=1)

    def _release(self) -> None:
        self._guided = None
