"""Occlusion (Zeiler & Fergus, ECCV 2014) through captum: hide a window, measure what is lost.

A square window slides over the image; under it the image is replaced by its baseline (blurred
by default, so that hiding a patch removes detail without adding a black square the network has
never seen). A pixel's heatmap value is the mean drop in P(target) over the windows covering it,
negative values (hiding helped the class) set to 0.

It needs no gradients, so it explains any model given as a function of preprocessed images,
such as an exported ONNX model::

    session = onnxruntime.InferenceSession("model.onnx")
    def prob_pain(images):  # float32 (N, 3, H, W) -> (N,)
        return softmax(session.run(None, {"input": images})[0])[:, 1]
    with Occlusion(prob_pain) as explainer:
        heatmaps = explainer.explain(images, target="pain")
"""

from __future__ import annotations

from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor

from neopain.errors import NeopainError
from neopain.explain.base import Explainer, Model, baseline_images
from neopain.explain.perturbation import check_baseline, check_counts, probability_scores
from neopain.models.cfg import ModelCfg


class Occlusion(Explainer):
    """Occlusion of a torch model or of a function ``images -> P(pain)``.

    Both are explained through P(class): softmax (or sigmoid) of a torch model's logits, and
    ``(1 - p, p)`` of a function, so a model and its ONNX export give the same heatmaps.

    Args:
        model: a torch model, or a ``PainFunction`` (float32 (N, 3, H, W) -> (N,) P(pain)).
        window: side of the occluding square in pixels.
        stride: pixels between window positions.
        baseline: what replaces the window: ``blur`` or ``black`` (see ``IntegratedGradients``).
        blur_sigma: the blur's sigma as a share of the image width.
        cfg: the normalization for ``black`` (default: the model's cfg).
        perturbations_per_eval: occluded copies evaluated per model call.
        batch_size: images per pass.

    Raises:
        NeopainError: a bad window, stride or baseline, or ``black`` without a cfg.
    """

    name = "occlusion"
    needs_gradients = False

    def __init__(self, model: Model, *, window: int = 20, stride: int = 10,
                 baseline: str = "blur", blur_sigma: float = 0.1,
                 cfg: ModelCfg | None = None, perturbations_per_eval: int = 32,
                 batch_size: int = 4) -> None:
        self.window = window
        self.stride = stride
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.cfg = cfg if cfg is not None else getattr(model, "cfg", None)  # PainModel has one
        self.perturbations_per_eval = perturbations_per_eval
        check_counts(self, ("window", "stride", "perturbations_per_eval"))
        check_baseline(baseline, self.cfg)
        super().__init__(model, batch_size=batch_size)  # after the checks: it sets eval mode
        self._occlusion: CaptumOcclusion | None = CaptumOcclusion(probability_scores(model))

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        if self.window > min(height, width):
            raise NeopainError(f"window={self.window} is larger than the images "
                               f"({height}×{width}); valid: at most {min(height, width)}")
        attributions = self._occlusion.attribute(
            images, sliding_window_shapes=(3, self.window, self.window),
            strides=(3, self.stride, self.stride), baselines=baseline_images(
                images, baseline=self.baseline, blur_sigma=self.blur_sigma, cfg=self.cfg),
            target=target, perturbations_per_eval=self.perturbations_per_eval)
        # the window covers all 3 channels, so every channel holds the same drop
        return attributions.detach().mean(dim=1).clamp(min=0.0)

    def _release(self) -> None:
        self._occlusion = None
