"""vit_b32_nb: torchvision's ViT-B/32 with FC 768 → 2. Its count, its state-dict names, a
forward that computes torchvision's ViT from those tensors, and the import of the seed
repository's state dict (one sigmoid logit z → logits (0, z), so P(pain) = sigmoid(z)) and of a
plain torchvision one (ImageNet head skipped)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from neopain.errors import NeopainError
from neopain.models import create_model
from neopain.models.vit import VisionTransformer, load_vit_weights, vit_key_map
from neopain.models.weight_files import WeightsError

SMALL = {"image_size": 64, "patch": 16, "layers": 2, "heads": 4, "hidden": 32, "mlp": 64}
"""A ViT of the same code at a size that loads and runs in milliseconds."""


def small(seed: int) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(**SMALL).eval()


def torchvision_forward(state: dict[str, torch.Tensor], x: torch.Tensor, *, patch: int,
                        heads: int, layers: int) -> torch.Tensor:
    """torchvision's VisionTransformer.forward written out from a state dict: patchify,
    class token, position embedding, pre-norm layers (attention then MLP, each residual),
    final layer norm, head on the class token."""
    maps = F.conv2d(x, state["conv_proj.weight"], state["conv_proj.bias"], stride=patch)
    n, width = maps.shape[:2]
    tokens = maps.reshape(n, width, -1).permute(0, 2, 1)
    tokens = torch.cat([state["class_token"].expand(n, -1, -1), tokens], dim=1)
    tokens = tokens + state["encoder.pos_embedding"]
    depth = width // heads
    for i in range(layers):
        pre = f"encoder.layers.encoder_layer_{i}."
        y = F.layer_norm(tokens, (width,), state[pre + "ln_1.weight"], state[pre + "ln_1.bias"],
                         eps=1e-6)
        q, k, v = (part.reshape(n, -1, heads, depth).transpose(1, 2) for part in F.linear(
            y, state[pre + "self_attention.in_proj_weight"],
            state[pre + "self_attention.in_proj_bias"]).chunk(3, dim=-1))
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(depth), dim=-1)
        mixed = (attention @ v).transpose(1, 2).reshape(n, -1, width)
        tokens = tokens + F.linear(mixed, state[pre + "self_attention.out_proj.weight"],
                                   state[pre + "self_attention.out_proj.bias"])
        y = F.layer_norm(tokens, (width,), state[pre + "ln_2.weight"], state[pre + "ln_2.bias"],
                         eps=1e-6)
        y = F.gelu(F.linear(y, state[pre + "mlp.0.weight"], state[pre + "mlp.0.bias"]))
        tokens = tokens + F.linear(y, state[pre + "mlp.3.weight"], state[pre + "mlp.3.bias"])
    tokens = F.layer_norm(tokens, (width,), state["encoder.ln.weight"], state["encoder.ln.bias"],
                          eps=1e-6)
    return F.linear(tokens[:, 0], state["heads.head.weight"], state["heads.head.bias"])


def test_vit_b32_nb_counts_torchvisions_parameters_less_the_imagenet_head():
    model = create_model("vit_b32_nb")
    imagenet_head, two_logits = 768 * 1000 + 1000, 768 * 2 + 2
    assert model.count_parameters() == (88_224_232 - imagenet_head + two_logits,) * 2
    assert model.count_parameters()[0] == 87_456_770
    model.freeze()  # the seed: every backbone parameter frozen, the head alone trains
    assert model.count_parameters() == (87_456_770, two_logits)
    assert model.cfg.input_size == (224, 224) and model.cfg.channel_order == "RGB"
    assert model.cfg.mean == (0.485, 0.456, 0.406) and model.cfg.std == (0.229, 0.224, 0.225)


def test_state_dict_has_torchvisions_names_and_shapes():
    # guards: a renamed module would leave a seed or torchvision file's tensors unexpected
    state = create_model("vit_b32_nb").state_dict()
    layer = ["ln_1.weight", "ln_1.bias", "self_attention.in_proj_weight",
             "self_attention.in_proj_bias", "self_attention.out_proj.weight",
             "self_attention.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.0.weight",
             "mlp.0.bias", "mlp.3.weight", "mlp.3.bias"]
    expected = ["class_token", "conv_proj.weight", "conv_proj.bias", "encoder.pos_embedding",
                *(f"encoder.layers.encoder_layer_{i}.{key}" for i in range(12) for key in layer),
                "encoder.ln.weight", "encoder.ln.bias", "heads.head.weight", "heads.head.bias"]
    assert list(state) == expected
    assert state["conv_proj.weight"].shape == (768, 3, 32, 32)
    assert state["encoder.pos_embedding"].shape == (1, 50, 768)
    assert state["encoder.layers.encoder_layer_11.self_attention.in_proj_weight"].shape == \
        (2304, 768)
    assert state["encoder.layers.encoder_layer_0.mlp.0.weight"].shape == (3072, 768)
    assert state["heads.head.weight"].shape == (2, 768)


def test_forward_computes_torchvisions_vit_from_the_state_dict():
    # guards the layer order (pre-norm, residuals), the heads split and the Grad-CAM grid's
    # round trip through the last layer's input
    model = small(0)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = torchvision_forward(model.state_dict(), x, patch=16, heads=4, layers=2)
        assert torch.allclose(model(x), expected, atol=1e-5)
        grid = model.encoder.cam_grid
        seen = []
        handle = grid.register_forward_hook(lambda module, args, out: seen.append(out.shape))
        model(x)
        handle.remove()
    assert seen == [(3, 32, 4, 4)]


def seed_file(model: VisionTransformer, path, *, head: tuple[torch.Tensor, torch.Tensor],
              prefix: str = "ViT.", legacy_mlp: bool = False):
    """``model``'s backbone and ``head`` saved as the seed (or torchvision) names them."""
    state = {key: value for key, value in model.state_dict().items()
             if not key.startswith("heads.")}
    state["heads.head.weight"], state["heads.head.bias"] = head
    if legacy_mlp:  # torchvision's older files: MLPBlock's linear_1 / linear_2
        state = {key.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): v
                 for key, v in state.items()}
    torch.save({prefix + key: value.clone() for key, value in state.items()}, path)
    return path


def test_seed_state_dict_imports_exactly_and_p_pain_is_sigmoid_of_the_seed_logit(tmp_path):
    # guards: the seed's one-logit head must give the same P(pain) in neopain's 2-logit model
    source = small(0)
    w, b = torch.randn(1, 32), torch.randn(1)
    path = seed_file(source, tmp_path / "seed.pt", head=(w, b))
    model = small(1)
    report = load_vit_weights(model, path, strict=True)
    assert report.missing == () and report.unexpected == () and report.skipped == {}
    assert "heads.head.weight" in report.loaded and any("sigmoid(z)" in n for n in report.notes)
    for key, value in source.state_dict().items():
        if not key.startswith("heads."):
            assert torch.equal(model.state_dict()[key], value), key
    assert torch.equal(model.heads.head.weight, torch.cat([torch.zeros(1, 32), w]))
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        z = F.linear(source.forward_features(x), w, b)[:, 0]  # the seed's forward
        pain = torch.softmax(model(x), dim=1)[:, 1]
    assert torch.allclose(pain, torch.sigmoid(z), atol=1e-6)
    assert pain.std() > 0.01  # not a constant the test would pass by chance


def test_a_run_configs_weights_file_loads_through_the_seed_import(tmp_path):
    # guards: neopain train's `weights:` calls model.load_pretrained; the generic key-only
    # loader refuses the seed's one-logit head, so a seed checkpoint could not be fine-tuned
    source, model = small(0), small(1)
    w, b = torch.randn(1, 32), torch.randn(1)
    path = seed_file(source, tmp_path / "seed.pt", head=(w, b))
    report = model.load_pretrained(path)
    assert "heads.head.weight" in report.loaded
    assert torch.equal(model.heads.head.weight, torch.cat([torch.zeros(1, 32), w]))


def test_a_file_with_half_a_head_accounts_for_every_file_key(tmp_path):
    # guards: a head weight without its bias fell out of the report (neither loaded, skipped
    # nor unexpected), so nobody was told the file's head was not used
    source, model = small(0), small(1)
    path = seed_file(source, tmp_path / "half.pt", head=(torch.randn(1, 32), torch.randn(1)))
    state = torch.load(path)
    del state["ViT.heads.head.bias"]
    torch.save(state, path)
    report = load_vit_weights(model, path)
    accounted = {*report.skipped, *report.unexpected}
    assert "ViT.heads.head.weight" in accounted | {f"ViT.{key}" for key in report.loaded}
    assert "heads.head.weight" not in report.loaded


def test_torchvision_state_dict_loads_its_backbone_and_skips_the_imagenet_head(tmp_path):
    source, model = small(0), small(1)
    head_before = model.heads.head.weight.clone()
    path = seed_file(source, tmp_path / "vit_b_32.pth", prefix="", legacy_mlp=True,
                     head=(torch.randn(1000, 32), torch.randn(1000)))
    report = load_vit_weights(model, path)
    assert set(report.skipped) == {"heads.head.weight", "heads.head.bias"}
    assert "1000-class" in report.skipped["heads.head.weight"]
    assert set(report.missing) == {"heads.head.weight", "heads.head.bias"}
    assert report.unexpected == () and any("1000-class" in n for n in report.notes)
    assert torch.equal(model.heads.head.weight, head_before)
    key = "encoder.layers.encoder_layer_1.mlp.3.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])
    assert vit_key_map("ViT.encoder.layers.encoder_layer_0.mlp.linear_1.bias") == \
        "encoder.layers.encoder_layer_0.mlp.0.bias"


def test_a_head_of_another_width_or_another_model_is_refused_and_nothing_changes(tmp_path):
    source, model = small(0), small(1)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    path = seed_file(source, tmp_path / "bad.pt", head=(torch.randn(1, 16), torch.randn(1)))
    with pytest.raises(WeightsError, match=r"'heads.head' has shapes \(1, 16\) and \(1,\); "
                                           r"valid: \(\(K, 32\), \(K,\)\)"):
        load_vit_weights(model, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(WeightsError, match="loads a ViT.*got MobileNetV2"):
        load_vit_weights(create_model("mobilenet_nb"), path)


def test_strict_refuses_a_file_without_a_layer_before_changing_the_model(tmp_path):
    source, model = small(0), small(1)
    path = seed_file(source, tmp_path / "seed.pt", head=(torch.randn(1, 32), torch.randn(1)))
    state = torch.load(path, weights_only=True)
    del state["ViT.encoder.ln.bias"]
    torch.save(state, path)
    before = model.encoder.ln.weight.clone()
    with pytest.raises(WeightsError, match=r"strict=True but the file leaves 1 model key\(s\) "
                                           r"unset \(encoder.ln.bias\)"):
        load_vit_weights(model, path, strict=True)
    assert torch.equal(model.encoder.ln.weight, before)
    assert load_vit_weights(model, path).missing == ("encoder.ln.bias",)


def test_options_that_cannot_make_a_vit_are_refused_by_name():
    with pytest.raises(NeopainError, match="image_size=100 is not valid for patch=32; valid: "
                                           "a multiple of the patch side"):
        VisionTransformer(image_size=100)
    with pytest.raises(NeopainError, match="hidden=30 is not valid for heads=4"):
        VisionTransformer(**{**SMALL, "hidden": 30})


def test_a_missing_file_or_a_folder_is_a_weights_error_and_a_file_is_read_once(tmp_path,
                                                                               monkeypatch):
    # guards: load_vit_weights read the file before load_weights checked it (a missing file
    # raised FileNotFoundError, a folder IsADirectoryError), and then read it a second time
    model = small(1)
    with pytest.raises(WeightsError, match="missing.pt"):
        load_vit_weights(model, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match=str(tmp_path)):
        load_vit_weights(model, tmp_path)
    from neopain.models import weight_files, weights

    reads = []
    read = weight_files.read_weights
    for module in (weight_files, weights):
        monkeypatch.setattr(module, "read_weights",
                            lambda *a, **k: reads.append(a) or read(*a, **k))
    path = seed_file(small(0), tmp_path / "seed.pt", head=(torch.randn(1, 32), torch.randn(1)))
    load_vit_weights(model, path)
    assert len(reads) == 1
