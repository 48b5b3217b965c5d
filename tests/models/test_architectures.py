"""Every registered architecture: exact published parameter counts, (N, 2) logits at its input
size, forward == head(features), freezing that changes exactly the documented parameters and
keeps a frozen backbone's features fixed in training mode, and layer names the weight
importers and Grad-CAM rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neopain.errors import NeopainError
from neopain.models import PainModel, create_model, list_models

EXACT_COUNTS = {
    # name: (torch parameters, batch-norm running-statistic values)
    "vgg16_nb": (27_823_938, 0),
    "vgg16_avg": (17_865_538, 0),
    "ncnn": (72_602, 0),
    "resnet50_nb": (25_559_034, 53_120),
    "senet50_nb": (28_090_026, 53_120),
    "inception_v3_nb": (23_081_122, 34_432),
    "vit_b32_nb": (87_456_770, 0),  # torchvision's 88,224,232 - ImageNet head 769,000 + 1,538
}
KERAS_COUNTS = {"resnet50_nb": 25_612_154, "senet50_nb": 28_143_146,
                "inception_v3_nb": 23_115_554}
BIG = {"vgg16_nb": 64, "vgg16_avg": 64, "resnet50_nb": 64, "senet50_nb": 64,
       "inception_v3_nb": 75, "vit_b32_nb": 224}
"""The big models, and the side of the small input their backbones take (Inception's least;
the ViT's position embedding takes 224 only)."""


def build(name: str) -> PainModel:
    torch.manual_seed(0)
    return create_model(name)


def small_input(model: PainModel, *, batch: int = 2) -> torch.Tensor:
    """An input for backbone-only checks: the cfg size, or a small one for the big models
    (their backbones take any size from it; keeps the tests fast)."""
    name = model.cfg.name
    size = (BIG[name], BIG[name]) if name in BIG else model.cfg.input_size
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))


def head_count(model: PainModel) -> int:
    return sum(p.numel() for p in model.head_parameters())


def block_count(model: PainModel, block: str) -> int:
    return sum(p.numel() for module in model.block_modules()[block] for p in module.parameters())


@pytest.mark.parametrize("name", sorted(EXACT_COUNTS))
def test_published_models_have_exactly_the_published_parameter_counts(name):
    model = build(name)
    total, trainable = model.count_parameters()
    assert (total, model.count_running_statistics()) == EXACT_COUNTS[name]
    assert trainable == total
    if name in KERAS_COUNTS:
        assert total + model.count_running_statistics() == KERAS_COUNTS[name]


def test_vgg16_avg_with_only_the_last_block_unfrozen_trains_the_thesis_count():
    model = build("vgg16_avg")
    model.freeze()
    model.unfreeze(model.blocks()[-1:])
    assert model.frozen_blocks() == ["block1", "block2", "block3", "block4"]
    assert model.count_parameters() == (17_865_538, 10_230_274)


def test_ncnn_single_output_is_the_five_cnn_comparison_count():
    model = create_model("ncnn", single_output=True)
    assert model.count_parameters()[0] == 72_593
    assert model(torch.zeros(3, 3, 120, 120)).shape == (3, 1)


def test_ncnn_concatenates_131_channels_into_1600_features():
    model = build("ncnn").eval()
    x = torch.randn(1, 3, 120, 120)
    branches = torch.cat([model.left(x), model.centre(x), model.right(x)], dim=1)
    assert branches.shape == (1, 131, 12, 12)
    assert model.forward_features(x).shape == (1, 1600)


def test_ncnn_pooling_before_activation_computes_the_published_layer_order():
    """ncnn activates after pooling (cheaper); the paper's conv → activation → pool must give
    the same numbers, or the published architecture is not what runs."""
    model = build("ncnn").eval()
    c, r, m = model.centre, model.right, model.merge
    x = torch.randn(4, 3, 120, 120)
    centre = c.pool2(c.act2(c.conv2(c.pool1(c.act1(c.conv1(x))))))
    right = r.pool(r.act(r.conv(x)))
    merged = m.flatten(m.pool(m.act(m.conv(torch.cat([model.left(x), centre, right], dim=1)))))
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), merged)


@pytest.mark.parametrize("name", list_models())
def test_forward_gives_two_logits_and_equals_head_of_features(name):
    model = build(name).eval()
    batch = 1 if name in BIG else 3
    x = torch.randn(batch, 3, *model.cfg.input_size)
    with torch.no_grad():
        logits = model(x)
        split = model.forward_head(model.forward_features(x))
    assert logits.shape == (batch, 2)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, split)


@pytest.mark.parametrize("name", list_models())
def test_freeze_and_unfreeze_change_trainable_counts_as_documented(name):
    model = build(name)
    total, _ = model.count_parameters()
    blocks = model.blocks()
    assert blocks, "a model needs at least one freezable block"
    assert sum(block_count(model, b) for b in blocks) + head_count(model) == total

    model.freeze()
    assert model.count_parameters() == (total, head_count(model))
    assert all(p.requires_grad for p in model.head_parameters())

    model.unfreeze(blocks[-1:])
    assert model.count_parameters()[1] == head_count(model) + block_count(model, blocks[-1])
    model.unfreeze([blocks[0]])
    assert model.count_parameters()[1] == (head_count(model) + block_count(model, blocks[-1])
                                           + block_count(model, blocks[0]))
    model.unfreeze()
    assert model.count_parameters() == (total, total)
    assert model.frozen_blocks() == []


@pytest.mark.parametrize("name", list_models())
def test_a_frozen_backbone_gives_fixed_features_in_training_mode(name):
    # guards the embedding cache: with the backbone frozen, training-mode features (dropout in
    # N-CNN's branches, batch-norm statistics in ResNet/MobileNet) must equal the cached ones
    model = build(name)
    model.freeze()
    model.train()
    x = small_input(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = model.forward_features(x)
    second = model.forward_features(x)
    model.eval()
    evaluated = model.forward_features(x)
    assert torch.equal(first, second)
    assert torch.allclose(first, evaluated, atol=1e-6)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed in a frozen backbone"
    assert model.head.training is False  # eval() reached the head
    model.train()
    assert model.head.training is True


@pytest.mark.parametrize("name", [n for n in list_models() if n not in BIG])
def test_gradients_reach_only_unfrozen_parameters(name):
    # the big models share the freezing code; their 224×224 backward pass is slow
    model = build(name)
    model.freeze()
    last = model.blocks()[-1]
    model.unfreeze([last])
    model(torch.randn(2, 3, *model.cfg.input_size)).sum().backward()
    trainable = {id(p) for m in model.block_modules()[last] for p in m.parameters()}
    trainable |= {id(p) for p in model.head_parameters()}
    for pname, parameter in model.named_parameters():
        assert (parameter.grad is not None) == (id(parameter) in trainable), pname


@pytest.mark.parametrize("name", list_models())
def test_unknown_block_names_are_refused_with_the_valid_ones(name):
    model = build(name)
    with pytest.raises(NeopainError, match="unknown block.*'blockX'; valid: " + model.blocks()[0]):
        model.freeze(["blockX"])
    model.freeze(model.blocks()[0])  # a bare name is one block, not its letters
    assert model.frozen_blocks() == model.blocks()[:1]


FINER_CAM_LAYERS = {"ncnn": "centre.conv2"}
"""Models whose last convolution's map is too coarse for Grad-CAM (docs/explain.md)."""
TOKEN_CAM_LAYERS = {"vit_b32_nb": "encoder.cam_grid"}
"""Transformers: Grad-CAM reads patch tokens laid out as a map (docs/explain.md)."""


@pytest.mark.parametrize("name", list_models())
def test_cam_layer_is_the_last_convolutional_stage(name):
    model = build(name)
    layer = model.get_submodule(model.cfg.cam_layer)
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if name in TOKEN_CAM_LAYERS:
        assert model.cfg.cam_layer == TOKEN_CAM_LAYERS[name]
        maps = []
        handle = layer.register_forward_hook(lambda module, args, out: maps.append(out.shape))
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *model.cfg.input_size))
        handle.remove()
        assert len(maps) == 1 and len(maps[0]) == 4  # (N, C, rows, columns)
        return
    if name in FINER_CAM_LAYERS:
        assert model.cfg.cam_layer == FINER_CAM_LAYERS[name]
        assert isinstance(layer, nn.Conv2d) and layer is not convolutions[-1]
        return
    assert any(m is convolutions[-1] for m in layer.modules()), \
        f"{model.cfg.cam_layer} does not hold the last convolution"


@pytest.mark.parametrize("name", ["vgg16_nb", "vgg16_avg"])
def test_vgg_convolutions_carry_vgg_face_names_and_shapes(name):
    model = build(name)
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
              (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    names = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), start=1)
             for i in range(1, n + 1)]
    convolutions = [n for n, m in model.features.named_children() if isinstance(m, nn.Conv2d)]
    assert convolutions == names
    for conv_name, (inputs, outputs) in zip(names, widths):
        conv = getattr(model.features, conv_name)
        assert conv.weight.shape == (outputs, inputs, 3, 3)
    blocks = model.block_modules()
    assert model.blocks() == ["block1", "block2", "block3", "block4", "block5"]
    assert model.features.conv5_3 in blocks["block5"]
    assert model.features.pool5 in blocks["block5"]
    assert model.features.conv1_1 in blocks["block1"]


KERAS_INCEPTION_SIZES = {"stem": (192, 35, 35), "mixed0": (256, 35, 35), "mixed1": (288, 35, 35),
                         "mixed2": (288, 35, 35), "mixed3": (768, 17, 17),
                         **{f"mixed{i}": (768, 17, 17) for i in range(4, 8)},
                         "mixed8": (1280, 8, 8), "mixed9": (2048, 8, 8),
                         "mixed10": (2048, 8, 8)}
"""Each block's output at 299×299 (channels, height, width), as keras.applications'
inception_v3 comments them: 'valid' and 'same' paddings decide every size."""


def test_inception_blocks_give_keras_sizes_at_299():
    model = build("inception_v3_nb").eval().to("meta")  # shapes only, nothing computed
    sizes = {}
    x = torch.zeros(1, 3, 299, 299, device="meta")
    with torch.no_grad():
        for name, block in model.features.named_children():
            x = block(x)
            sizes[name] = tuple(x.shape[1:])
    assert sizes == KERAS_INCEPTION_SIZES


def test_inception_last_two_blocks_are_the_thesis_18_fine_tuned_convolutions():
    model = build("inception_v3_nb")
    assert model.blocks() == ["stem", *(f"mixed{i}" for i in range(11))]
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    last_two = [m for block in ("mixed9", "mixed10")
                for m in model.block_modules()[block][0].modules() if isinstance(m, nn.Conv2d)]
    assert len(convolutions) == 94 and last_two == convolutions[-18:]
    model.freeze()
    model.unfreeze(model.blocks()[-2:])
    assert model.count_parameters() == (23_081_122, 12_427_650)


def test_inception_is_keras_conv2d_bn_without_batch_norm_scale():
    # guards the Keras count: an affine torch batch norm would add a gamma Keras does not have
    model = build("inception_v3_nb").eval()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 94
    assert all(m.weight is None and m.bias.requires_grad and m.eps == 1e-3 for m in norms)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    unit = model.features.mixed0.branch1x1
    with torch.no_grad():
        unit.bn.bias.normal_()
        unit.bn.running_mean.normal_()
        unit.bn.running_var.uniform_(0.5, 2)
        x = torch.randn(2, 192, 5, 5)
        conv = unit.conv(x)
        keras = torch.relu((conv - unit.bn.running_mean[:, None, None])
                           / torch.sqrt(unit.bn.running_var[:, None, None] + 1e-3)
                           + unit.bn.bias[:, None, None])
        torch.testing.assert_close(unit(x), keras)
        # TensorFlow's 'same' average pool leaves the padding out of the average
        ones = torch.ones(1, 1, 5, 5)
        assert torch.equal(model.features.mixed0.pool(ones), ones)
    unit.bn.reset_parameters()  # what explain's randomization test calls: beta too
    assert not unit.bn.bias.any() and (unit.bn.running_var == 1).all()


_CHAINS_35 = (("branch1x1",), ("branch5x5_1", "branch5x5_2"),
              ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), ("pool", "branch_pool"))
_CHAINS_17 = (("branch1x1",), ("branch7x7_1", "branch7x7_2", "branch7x7_3"),
              tuple(f"branch7x7dbl_{i}" for i in range(1, 6)), ("pool", "branch_pool"))
_CHAINS_8 = (("branch1x1",), ("branch3x3_1", "branch3x3_2a"), ("branch3x3_1", "branch3x3_2b"),
             ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a"),
             ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3b"), ("pool", "branch_pool"))
KERAS_CONCATENATIONS = {
    **dict.fromkeys(("mixed0", "mixed1", "mixed2"), _CHAINS_35),
    "mixed3": (("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
               ("pool",)),
    **dict.fromkeys(("mixed4", "mixed5", "mixed6", "mixed7"), _CHAINS_17),
    "mixed8": (("branch3x3_1", "branch3x3_2"),
               ("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"), ("pool",)),
    **dict.fromkeys(("mixed9", "mixed10"), _CHAINS_8),
}
"""What each mixed block concatenates, in Keras's channel order: one chain of its modules per
part (mixed9/10 split their 3×3 branches into 1×3 and 3×1 parts, mixed9_0 and mixed9_1)."""


def test_inception_blocks_concatenate_their_branches_in_keras_order():
    # guards the channel order Keras weights were trained on: swapped branches still give the
    # right shapes and counts
    model = build("inception_v3_nb").eval()
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for name, chains in KERAS_CONCATENATIONS.items():
            block = model.features.get_submodule(name)
            channels = getattr(block, chains[0][0]).conv.in_channels
            x = torch.randn(1, channels, 7, 7, generator=generator)
            parts = []
            for chain in chains:
                part = x
                for module in chain:
                    part = getattr(block, module)(part)
                parts.append(part)
            assert torch.equal(block(x), torch.cat(parts, dim=1)), name
