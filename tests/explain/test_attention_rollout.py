"""Attention rollout: the arithmetic on known attention matrices, the weights it recomputes
equal torch's, its map lands on the patch a planted model attends to, it releases its hooks,
and a model without attention is refused by name (or skipped among other methods)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from neopain.errors import NeopainError
from neopain.explain.attention_rollout import AttentionRollout, attention_weights, rollout
from neopain.explain.gradcam import GradCam
from neopain.explain.methods import build_explainers
from neopain.models import create_model
from neopain.models.cfg import ModelCfg
from neopain.models.vit import VisionTransformer

TOKENS = 5  # the class token and a 2×2 patch grid


def attending_to(token: int, *, heads: int = 1, batch: int = 1) -> torch.Tensor:
    """Attention (batch, heads, T, T) in which every token attends only to ``token``."""
    attention = torch.zeros(batch, heads, TOKENS, TOKENS)
    attention[..., token] = 1.0
    return attention


def test_rollout_of_layers_attending_to_one_patch_is_the_residual_mix():
    # each layer is (A + I) / 2: the class row after one layer is ½ class + ½ patch; patch 3's
    # own row is all patch 3, so after two layers the class row is ¼ class + ¾ patch 3
    one = rollout([attending_to(3)], discard_ratio=0.0)
    two = rollout([attending_to(3), attending_to(3)], discard_ratio=0.0)
    assert torch.allclose(one[0, 0], torch.tensor([0.5, 0, 0, 0.5, 0], dtype=torch.float64))
    assert torch.allclose(two[0, 0], torch.tensor([0.25, 0, 0, 0.75, 0], dtype=torch.float64))
    assert torch.allclose(two.sum(dim=-1), torch.ones(1, TOKENS, dtype=torch.float64))


def test_rows_are_normalized_by_their_own_sum():
    # guards the seed's slip: dividing by a.sum(dim=-1) without keepdim scales column j by
    # row j's sum, so rows no longer sum to 1 when rows differ
    attention = torch.softmax(torch.randn(2, 3, TOKENS, TOKENS,
                                          generator=torch.Generator().manual_seed(0)), dim=-1)
    result = rollout([attention, attention], discard_ratio=0.5)  # rows lose unequal shares
    assert torch.allclose(result.sum(dim=-1), torch.ones(2, TOKENS, dtype=torch.float64))


def test_head_fusion_and_discard_ratio():
    # head 0 attends to patch 1, head 1 to patch 2: mean splits, max keeps both, min neither
    attention = torch.cat([attending_to(1), attending_to(2)], dim=1)
    mean = rollout([attention], discard_ratio=0.0, head_fusion="mean")[0, 0]
    assert torch.allclose(mean, torch.tensor([0.5, 0.25, 0.25, 0, 0], dtype=torch.float64))
    top = rollout([attention], discard_ratio=0.0, head_fusion="max")[0, 0]
    assert torch.allclose(top, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0], dtype=torch.float64))
    low = rollout([attention], discard_ratio=0.0, head_fusion="min")[0, 0]
    assert torch.allclose(low, torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64))
    # 0.9 of 25 distinct entries: the lowest 22 are dropped, all but 30 (class → patch 4),
    # 25 and 24 (row 4), and the class token's attention to itself (0.5, the lowest of all,
    # but always kept)
    graded = torch.arange(1.0, TOKENS * TOKENS + 1).view(1, 1, TOKENS, TOKENS)
    graded[0, 0, 0, 0], graded[0, 0, 0, 4] = 0.5, 30.0
    kept = rollout([graded], discard_ratio=0.9)[0]
    assert torch.allclose(kept[0], torch.tensor([1.5, 0, 0, 0, 30], dtype=torch.float64) / 31.5)
    eye = torch.eye(TOKENS, dtype=torch.float64)
    assert torch.equal(kept[1:4], eye[1:4])  # rows left empty keep only the residual
    assert kept[4, :3].eq(0).all() and kept[4, 3:].gt(0).all()
    with pytest.raises(NeopainError, match="head_fusion='median' is not valid; valid: mean, "
                                           "max, min"):
        rollout([attention], head_fusion="median")
    with pytest.raises(NeopainError, match="discard_ratio=1.0 is not valid; valid: a share in"):
        rollout([attention], discard_ratio=1.0)


def test_recomputed_weights_equal_torchs_own():
    torch.manual_seed(0)
    layer = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(3, TOKENS, 16)
    with torch.no_grad():
        _, expected = layer(x, x, x, need_weights=True, average_attn_weights=False)
        assert torch.allclose(attention_weights(layer, x, x), expected, atol=1e-6)


SIDE, PATCH = 32, 8
PLANTED_CFG = ModelCfg(name="planted_vit", input_size=(SIDE, SIDE), mean=(0.0, 0.0, 0.0),
                       std=(1.0, 1.0, 1.0))


def planted_vit() -> VisionTransformer:
    """A 4×4-patch ViT whose every query attends to the brightest patch: the patch embedding is
    a patch's brightness, every key is that brightness, every query the same constant; the
    layers add nothing to the tokens (zero attention output and MLP), so each layer attends the
    same way."""
    model = VisionTransformer(image_size=SIDE, patch=PATCH, layers=2, heads=2, hidden=8, mlp=8)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.conv_proj.weight[0].fill_(1.0 / (3 * PATCH * PATCH))
        for block in model.encoder.layers:
            block.ln_1.weight.fill_(1.0)
            w_q, w_k, _ = block.self_attention.in_proj_weight.chunk(3)
            b_q, _, _ = block.self_attention.in_proj_bias.chunk(3)
            b_q.fill_(1.0)
            w_k[:, 0] = 20.0
    model.cfg = PLANTED_CFG
    return model.eval()


def bright_patch_image(row: int, column: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((3, SIDE, SIDE), np.float32)
    mask = np.zeros((SIDE, SIDE), bool)
    mask[row * PATCH:(row + 1) * PATCH, column * PATCH:(column + 1) * PATCH] = True
    image[:, mask] = 1.0
    return image, mask


@pytest.mark.parametrize("row, column", [(0, 3), (2, 1)])
def test_the_map_lies_on_the_patch_the_model_attends_to(row, column):
    image, mask = bright_patch_image(row, column)
    with AttentionRollout(planted_vit()) as explainer:
        heat = explainer.explain(np.stack([image, np.zeros_like(image)]), target="pain")
    assert heat.shape == (2, SIDE, SIDE) and heat.min() >= 0
    assert mask[np.unravel_index(heat[0].argmax(), mask.shape)]
    assert heat[0][mask].sum() / heat[0].sum() > 0.5  # the patch is 1/16 of the image
    assert np.ptp(heat[1]) < 1e-6  # a blank image: attention is uniform, so is the map


def test_the_explainer_releases_its_hooks_and_restores_the_mode():
    model = planted_vit().train()
    image, _ = bright_patch_image(1, 1)
    for _ in range(3):
        with AttentionRollout(model, head_fusion="max") as explainer:
            explainer.explain(image, target="nopain")
            assert not model.training
        assert model.training
        assert all(not layer._forward_pre_hooks for layer in model.modules()
                   if isinstance(layer, nn.MultiheadAttention))
    with torch.no_grad():
        model(torch.from_numpy(image)[None])  # nothing left that records


def test_vit_b32_nb_maps_the_input_size():
    torch.manual_seed(0)
    model = create_model("vit_b32_nb")
    with AttentionRollout(model) as explainer:
        heat = explainer.explain(torch.randn(1, 3, 224, 224), target="pain")
    assert heat.shape == (1, 224, 224) and np.isfinite(heat).all() and heat.min() >= 0


def test_a_model_without_attention_is_refused_by_name_or_skipped_among_others(
        colour_model, caplog):
    with pytest.raises(NeopainError, match="rollout needs a transformer: model 'toy' has no "
                                           "attention layers .* gradcam, ig"):
        AttentionRollout(colour_model())
    with pytest.raises(NeopainError, match="rollout needs the torch model .* occlusion"):
        AttentionRollout(lambda images: np.zeros(len(images)))
    with pytest.raises(NeopainError, match="'rollout' needs a torch model \\(it reads attention"):
        build_explainers(["occlusion", "rollout"], lambda images: np.zeros(len(images)), None)
    with pytest.raises(NeopainError, match="model 'toy' has no attention layers"):
        build_explainers(["rollout"], colour_model(), None)
    with caplog.at_level(logging.WARNING, logger="neopain.explain.methods"):
        built = build_explainers(["gradcam", "rollout"], colour_model(), None)
    assert list(built) == ["gradcam"]
    assert "rollout skipped: the model has no attention layers" in caplog.text
    for explainer in built.values():
        explainer.close()
    built = build_explainers(["rollout", "occlusion"], planted_vit(), PLANTED_CFG)
    assert list(built) == ["rollout", "occlusion"]
    for explainer in reversed(built.values()):
        explainer.close()


def test_grad_cam_explains_the_vit_through_its_patch_token_grid():
    # guards: cam_grid must lie on the path to the logits, or its gradient (and the map) is 0
    torch.manual_seed(0)
    model = VisionTransformer(image_size=SIDE, patch=PATCH, layers=2, heads=2, hidden=8, mlp=8)
    model.cfg = ModelCfg(name="small_vit", input_size=(SIDE, SIDE), mean=(0.0, 0.0, 0.0),
                         std=(1.0, 1.0, 1.0), cam_layer="encoder.cam_grid")
    with GradCam(model, gate=False) as explainer:
        heat = explainer.explain(torch.randn(2, 3, SIDE, SIDE), target=["pain", "nopain"])
    assert heat.shape == (2, SIDE, SIDE) and heat.min() >= 0
    assert all(np.ptp(map_) > 0 for map_ in heat)
