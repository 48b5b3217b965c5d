"""LIME (Ribeiro et al., KDD 2016) on superpixels through captum's ``Lime``.

The face is cut into superpixels by scikit-image's SLIC; random subsets of them are replaced
by the baseline, the model scores each copy, and a weighted linear model on the binary
"superpixel shown" features (weighted by captum's exponential cosine kernel) gives each
superpixel its weight. The linear model is a ridge regression, not captum's default Lasso
(alpha 0.01): the changes of P(pain) a single superpixel makes are often below Lasso's
penalty, which then zeroes every weight. A pixel's heatmap value is its superpixel's weight,
negative weights set to 0. It needs no gradients, so it explains an ONNX model given as a function.
"""

from __future__ import annotations

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge  # captum's documented LIME models
from captum.attr import Lime as CaptumLime
from torch import Tensor

from neopain.explain.base import Explainer, Model, baseline_images
from neopain.explain.captum_gradients import seeded_random
from neopain.explain.perturbation import check_baseline, check_counts, probability_scores
from neopain.models.cfg import ModelCfg


def superpixels(image: Tensor, *, segments: int) -> Tensor:
    """SLIC superpixels (H, W) int64 of one normalized image (3, H, W)."""
    from skimage.segmentation import slic  # here: it adds a third of a second to importing explain

    pixels = image.detach().cpu().permute(1, 2, 0).numpy().astype(np.float64)
    span = pixels.max() - pixels.min()
    scaled = (pixels - pixels.min()) / span if span > 0 else np.zeros_like(pixels)
    labels = slic(scaled, n_segments=segments, compactness=10.0, start_label=0,
                  channel_axis=-1)
    return torch.from_numpy(labels.astype(np.int64))


class Lime(Explainer):
    """LIME on SLIC superpixels of a torch model or a function ``images -> P(pain)``.

    Args:
        model: a torch model, or a ``PainFunction`` (float32 (N, 3, H, W) -> (N,) P(pain)).
        samples: perturbed copies per image.
        segments: about how many superpixels SLIC cuts.
        baseline: what a hidden superpixel becomes: ``blur``, ``black`` or ``mean``.
        blur_sigma: the blur's sigma as a share of the image width.
        cfg: the normalization for ``black`` (default: the model's cfg).
        seed: seeds the random subsets, so a call is repeatable.
        perturbations_per_eval: copies per model call.
        batch_size: images per pass (LIME fits one linear model per image).

    Raises:
        NeopainError: a bad option, or ``black`` without a cfg.
    """

    name = "lime"
    needs_gradients = False

    def __init__(self, model: Model, *, samples: int = 200, segments: int = 50,
                 baseline: str = "blur", blur_sigma: float = 0.1, cfg: ModelCfg | None = None,
                 seed: int = 0, perturbations_per_eval: int = 32, batch_size: int = 4) -> None:
        self.samples = samples
        self.segments = segments
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.cfg = cfg if cfg is not None else getattr(model, "cfg", None)  # PainModel has one
        self.seed = seed
        self.perturbations_per_eval = perturbations_per_eval
        check_counts(self, ("samples", "segments"), least=2)
        check_counts(self, ("perturbations_per_eval",))
        check_baseline(baseline, self.cfg)
        super().__init__(model, batch_size=batch_size)  # after the checks: it sets eval mode
        self._lime: CaptumLime | None = CaptumLime(probability_scores(model),
                                                   interpretable_model=SkLearnRidge(alpha=1.0))

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        backgrounds = baseline_images(images, baseline=self.baseline,
                                      blur_sigma=self.blur_sigma, cfg=self.cfg)
        maps = []
        for image, background, target_ in zip(images, backgrounds, target.tolist()):
            mask = superpixels(image, segments=self.segments)
            with seeded_random(self.seed):
                weights = self._lime.attribute(
                    image[None], baselines=background[None], target=target_,
                    feature_mask=mask[None, None].expand(1, 3, *mask.shape),
                    n_samples=self.samples, perturbations_per_eval=self.perturbations_per_eval)
            maps.append(weights.detach()[0, 0])  # one weight per superpixel, same in every channel
        return torch.stack(maps).clamp(min=0.0)

    def _release(self) -> None:
        self._lime = None
