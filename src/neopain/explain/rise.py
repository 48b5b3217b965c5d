"""RISE (Petsiuk et al., BMVC 2018): randomized input sampling, hand-written.

Hand-written because captum has no RISE (its perturbation methods are occlusion, feature
ablation, feature permutation, Shapley sampling, LIME and KernelSHAP).

The image is shown to the model through many random smooth masks: a coarse random grid of
``cells`` × ``cells`` cells, each kept with probability ``keep``, upsampled bilinearly and
shifted by a random sub-cell offset; where the mask is 0 the image is replaced by its baseline.
A pixel's heatmap value is the mean of P(target) over the masks weighted by how much each mask
showed the pixel. We subtract the mean score first (``Σ (s_i - mean s) M_i / (n keep)``): the
plain estimate adds ``mean s`` to every pixel, a constant that hides nothing of the ranking but
swamps the share of mass in any region. Negative values (showing the pixel lowered the score)
are set to 0, as for the other methods.

Like occlusion it needs no gradients, so it also explains an ONNX model given as a function.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.explain.base import Explainer, Model, baseline_images
from neopain.explain.perturbation import check_baseline, check_counts, probability_scores
from neopain.models.cfg import ModelCfg


def random_masks(count: int, *, size: tuple[int, int], cells: int, keep: float,
                 generator: torch.Generator, per_pass: int = 64) -> Iterator[Tensor]:
    """``count`` smooth random masks in [0, 1], as RISE draws them, ``per_pass`` (n, H, W) at a
    time. The random draws come first, so the masks do not depend on ``per_pass``."""
    height, width = size
    cell_h, cell_w = -(-height // cells), -(-width // cells)  # ceil: the grid covers the image
    grids = torch.rand(count, 1, cells, cells, generator=generator) < keep
    dy = torch.randint(0, cell_h, (count,), generator=generator).tolist()
    dx = torch.randint(0, cell_w, (count,), generator=generator).tolist()
    for start in range(0, count, per_pass):
        up = nn.functional.interpolate(
            grids[start:start + per_pass].float(),
            size=((cells + 1) * cell_h, (cells + 1) * cell_w), mode="bilinear",
            align_corners=False)
        yield torch.stack([up[i, 0, y:y + height, x:x + width] for i, (y, x) in enumerate(
            zip(dy[start:start + per_pass], dx[start:start + per_pass]))])


class Rise(Explainer):
    """RISE of a torch model or of a function ``images -> P(pain)``, explaining P(target).

    Every image of a call sees the same masks, drawn from ``seed``: the same image gets the same
    heatmap whatever else is in the batch. Memory is bounded by ``masks_per_eval``: at most that
    many masked copies of one image exist at a time.

    Args:
        model: a torch model, or a ``PainFunction`` (float32 (N, 3, H, W) -> (N,) P(pain)).
        masks: random masks per image (more: smoother, slower; the paper uses 4000-8000).
        cells: the random grid's side (the paper's ``s``; larger finds smaller parts).
        keep: the probability that a grid cell shows the image (the paper's ``p``).
        baseline: what a masked pixel becomes: ``blur``, ``black`` or ``mean``.
        blur_sigma: the blur's sigma as a share of the image width.
        cfg: the normalization for ``black`` (default: the model's cfg).
        seed: seeds the masks.
        masks_per_eval: masked images per model call.
        batch_size: images per pass.

    Raises:
        NeopainError: a bad option, or ``black`` without a cfg.
    """

    name = "rise"
    needs_gradients = False

    def __init__(self, model: Model, *, masks: int = 2000, cells: int = 8, keep: float = 0.5,
                 baseline: str = "blur", blur_sigma: float = 0.1, cfg: ModelCfg | None = None,
                 seed: int = 0, masks_per_eval: int = 64, batch_size: int = 4) -> None:
        self.masks = masks
        self.cells = cells
        self.keep = keep
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.cfg = cfg if cfg is not None else getattr(model, "cfg", None)  # PainModel has one
        self.seed = seed
        self.masks_per_eval = masks_per_eval
        check_counts(self, ("masks", "cells", "masks_per_eval"))
        if not isinstance(keep, (int, float)) or not 0 < keep < 1:
            raise NeopainError(f"keep={keep!r} is not valid; valid: a probability in (0, 1)")
        check_baseline(baseline, self.cfg)
        super().__init__(model, batch_size=batch_size)  # after the checks: it sets eval mode
        self._scores = probability_scores(model)

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        size = tuple(images.shape[-2:])
        if self.cells > min(size):
            raise NeopainError(f"cells={self.cells} is more than the images' side "
                               f"({size[0]}×{size[1]}); valid: at most {min(size)}")
        backgrounds = baseline_images(images, baseline=self.baseline,
                                      blur_sigma=self.blur_sigma, cfg=self.cfg)
        generator = torch.Generator().manual_seed(self.seed)
        weighted = torch.zeros(len(images), *size, dtype=torch.float64)
        coverage = torch.zeros(*size, dtype=torch.float64)
        scores = torch.zeros(len(images), dtype=torch.float64)
        for chunk in random_masks(self.masks, size=size, cells=self.cells, keep=self.keep,
                                  generator=generator, per_pass=self.masks_per_eval):
            shown = chunk[:, None].to(images.device)
            for i, (image, background) in enumerate(zip(images, backgrounds)):
                with torch.no_grad():
                    score = self._scores(shown * image + (1 - shown) * background)
                score = score[:, int(target[i])].double().cpu()
                weighted[i] += torch.einsum("m,mhw->hw", score, chunk.double())
                scores[i] += score.sum()
            coverage += chunk.double().sum(dim=0)
        # Σ (s_i - mean s) M_i = Σ s_i M_i - mean s · Σ M_i (module docstring)
        centred = weighted - (scores / self.masks)[:, None, None] * coverage
        return (centred / (self.masks * self.keep)).clamp(min=0.0).float()

    def _release(self) -> None:
        self._scores = None
