"""Captum's plain gradient methods behind the ``Explainer`` interface, chosen by name.

They differ only in the captum class and how it is called, so one wrapper holds them
(``GradCam``, ``IntegratedGradients``, ``GuidedGradCam`` and ``Lime`` need options or
post-processing of their own and have their own files):

- ``saliency`` (Simonyan et al. 2014): |∂ score / ∂ pixel|;
- ``inputxgradient``: input × gradient;
- ``deeplift`` (Shrikumar et al. 2017, Rescale rule) against the baseline image;
- ``gradientshap`` (Lundberg & Lee 2017): expected gradients from noisy points on the path to
  the baseline images of the batch;
- ``smoothgrad`` (Smilkov et al. 2017): saliency averaged over noisy copies (captum's
  ``NoiseTunnel``).

The heatmap is the attributions summed over colour channels, negative values (evidence against
the class) set to 0, as for IG. The random methods (``gradientshap``, ``smoothgrad``) draw from
``seed``, so a call is repeatable.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
from captum.attr import DeepLift, GradientShap, InputXGradient, NoiseTunnel, Saliency
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.explain.base import ClassScores, Explainer, baseline_images
from neopain.explain.perturbation import check_baseline, check_counts
from neopain.models.cfg import ModelCfg


@contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Seed torch's and numpy's global generators for the block (captum draws from both:
    GradientSHAP's path points from numpy, noise and LIME's subsets from torch), and put their
    states back afterwards."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


class CaptumGradients(Explainer):
    """One of captum's gradient methods (``METHODS``) on a torch model.

    Args:
        model: a torch model; a ``PainModel``'s cfg gives the normalization of black.
        method: ``saliency``, ``inputxgradient``, ``deeplift``, ``gradientshap`` or
            ``smoothgrad``.
        baseline: the reference of ``deeplift`` and ``gradientshap``: ``blur``, ``black`` or
            ``mean`` (see ``IntegratedGradients``).
        samples: noisy samples per image of ``gradientshap`` and ``smoothgrad``.
        noise: their noise's standard deviation, in normalized pixel units.
        seed: seeds the noise.
        blur_sigma: the blur baseline's sigma as a share of the image width.
        cfg: the normalization for ``black`` (default: the model's cfg).
        batch_size: images per pass.

    Raises:
        NeopainError: an unknown method, a bad count; for ``deeplift`` and ``gradientshap``
            an unknown baseline or ``black`` without a cfg.
    """

    METHODS: ClassVar[tuple[str, ...]] = ("saliency", "inputxgradient", "deeplift",
                                          "gradientshap", "smoothgrad")

    def __init__(self, model: nn.Module, *, method: str, baseline: str = "blur",
                 samples: int = 16, noise: float = 0.15, seed: int = 0,
                 blur_sigma: float = 0.1, cfg: ModelCfg | None = None,
                 batch_size: int = 16) -> None:
        if method not in self.METHODS:
            raise NeopainError(f"method={method!r} is not valid; valid: "
                               f"{', '.join(self.METHODS)}")
        self.name = method  # before the base checks, which name the method
        self.method = method
        self.baseline = baseline
        self.samples = samples
        self.noise = noise
        self.seed = seed
        self.blur_sigma = blur_sigma
        self.cfg = cfg if cfg is not None else getattr(model, "cfg", None)  # PainModel has one
        if method in ("deeplift", "gradientshap"):  # the others use no baseline
            check_baseline(baseline, self.cfg)
        check_counts(self, ("samples",))
        super().__init__(model, batch_size=batch_size)  # after the checks: it sets eval mode
        scores = ClassScores(model)
        self._captum = {"saliency": Saliency, "inputxgradient": InputXGradient,
                        "deeplift": DeepLift, "gradientshap": GradientShap,
                        "smoothgrad": lambda f: NoiseTunnel(Saliency(f))}[method](scores)

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        images = images.detach().clone().requires_grad_()  # else captum warns that it set it
        if self.method in ("saliency", "inputxgradient"):
            attributions = self._captum.attribute(images, target=target)
        elif self.method == "deeplift":
            baselines = baseline_images(images, baseline=self.baseline,
                                        blur_sigma=self.blur_sigma, cfg=self.cfg)
            with warnings.catch_warnings():  # captum announces its (removed) hooks
                warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
                attributions = self._captum.attribute(images, baselines=baselines,
                                                      target=target)
        else:  # noisy samples: image by image, so a heatmap does not depend on its batch
            attributions = torch.cat([self._sampled(images[i:i + 1], target[i:i + 1])
                                      for i in range(len(images))])
        return attributions.detach().sum(dim=1).clamp(min=0.0)

    def _sampled(self, image: Tensor, target: Tensor) -> Tensor:
        """SmoothGrad or GradientSHAP attributions of one image, under the explainer's seed."""
        with seeded_random(self.seed):
            if self.method == "smoothgrad":
                return self._captum.attribute(image, target=target, nt_type="smoothgrad",
                                              nt_samples=self.samples, stdevs=self.noise)
            baselines = baseline_images(image.detach(), baseline=self.baseline,
                                        blur_sigma=self.blur_sigma, cfg=self.cfg)
            return self._captum.attribute(image, baselines=baselines, target=target,
                                          n_samples=self.samples, stdevs=self.noise)

    def _release(self) -> None:
        self._captum = None
