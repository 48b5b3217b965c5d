"""Weight import: each format's random weights give the outputs an independent reference gives;
shapes that do not fit, foreign files and strict mismatches are refused with clear errors.

The reference VGG is plain numpy on the raw arrays as each format stores them (Keras HWIO
kernels on BGR input), so a wrong transpose, a missing channel flip or a mis-mapped layer
changes the numbers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from neopain.models import create_model, model_cfg
from neopain.models.vgg import vgg16_features
from neopain.models.weights import (
    VGG16_CONVS,
    VGGFACE_MEAN_RGB,
    WeightsError,
    load_weights,
)

VGG_WIDTHS = {"conv1_1": 64, "conv1_2": 64, "conv2_1": 128, "conv2_2": 128, "conv3_1": 256,
              "conv3_2": 256, "conv3_3": 256, "conv4_1": 512, "conv4_2": 512, "conv4_3": 512,
              "conv5_1": 512, "conv5_2": 512, "conv5_3": 512}


def random_vgg_face(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """VGG-Face conv layers as Keras stores them: (HWIO kernel, bias), He-scaled, float32."""
    rng = np.random.default_rng(seed)
    layers, channels = {}, 3
    for name in VGG16_CONVS:
        width = VGG_WIDTHS[name]
        kernel = rng.normal(0, np.sqrt(2 / (9 * channels)), (3, 3, channels, width))
        layers[name] = (kernel.astype(np.float32), rng.normal(0, 0.1, width).astype(np.float32))
        channels = width
    return layers


def write_keras_h5(path: Path, layers: dict[str, tuple[np.ndarray, ...]], *,
                   dense: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """The Keras 2 ``save_weights`` layout (as keras-vggface's files have it)."""
    names = []
    with h5py.File(path, "w") as file:
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"2.2.4"
        for block in range(1, 6):
            for name in [n for n in VGG16_CONVS if n.startswith(f"conv{block}_")]:
                names.append(name)
                kernel, bias = layers[name]
                group = file.create_group(name)
                group.attrs["weight_names"] = [f"{name}/kernel:0".encode(),
                                               f"{name}/bias:0".encode()]
                group.create_dataset(f"{name}/kernel:0", data=kernel)
                group.create_dataset(f"{name}/bias:0", data=bias)
            names.append(f"pool{block}")
            file.create_group(f"pool{block}").attrs["weight_names"] = np.array([], dtype="S")
        for name, (kernel, bias) in (dense or {}).items():
            names += [name, f"{name}/relu"]
            group = file.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(),
                                           f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=kernel)
            group.create_dataset(f"{name}/bias:0", data=bias)
            file.create_group(f"{name}/relu").attrs["weight_names"] = np.array([], dtype="S")
        file.attrs["layer_names"] = [name.encode() for name in names]
    return path


def write_matconvnet_pth(path: Path, layers: dict[str, tuple[np.ndarray, np.ndarray]],
                         *, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """The MatConvNet-converted VGG-Face state dict: OIHW kernels, conv1_1 reading RGB."""
    state = {}
    for name, (kernel, bias) in layers.items():
        oihw = kernel.transpose(3, 2, 0, 1)
        if name == "conv1_1":
            oihw = oihw[:, ::-1]  # the Keras file reads BGR, MatConvNet's RGB
        state[f"{name}.weight"] = torch.from_numpy(oihw.copy())
        state[f"{name}.bias"] = torch.from_numpy(bias.copy())
    torch.save({**state, **(extra or {})}, path)
    return path


def numpy_vgg_features(image_hwc: np.ndarray, layers: dict) -> np.ndarray:
    """VGG-16 convolutions ('same' padding) + ReLU + 2×2 max-pools, in float64 numpy, HWC."""
    x = image_hwc.astype(np.float64)
    for block in range(1, 6):
        for name in [n for n in VGG16_CONVS if n.startswith(f"conv{block}_")]:
            kernel, bias = (a.astype(np.float64) for a in layers[name])
            padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            height, width = x.shape[:2]
            out = np.zeros((height, width, kernel.shape[3])) + bias
            for dy in range(3):
                for dx in range(3):
                    out += padded[dy:dy + height, dx:dx + width] @ kernel[dy, dx]
            x = np.maximum(out, 0)
        height, width, channels = x.shape
        x = x.reshape(height // 2, 2, width // 2, 2, channels).max(axis=(1, 3))
    return x


@pytest.fixture(scope="module")
def vgg_face() -> dict:
    return random_vgg_face()


def test_keras_h5_weights_give_the_output_of_an_independent_numpy_vgg(tmp_path, vgg_face):
    fc6 = (np.zeros((25088, 8), np.float32), np.zeros(8, np.float32))
    path = write_keras_h5(tmp_path / "vggface.h5", vgg_face, dense={"fc6": fc6})
    model = create_model("vgg16_nb").eval()
    report = load_weights(model, path)

    image_bgr = np.random.default_rng(1).normal(0, 60, (32, 32, 3))
    with torch.no_grad():
        ours = model.features(torch.from_numpy(image_bgr.transpose(2, 0, 1)[None]).float())
    expected = numpy_vgg_features(image_bgr, vgg_face)  # (1, 1, 512) after five pools
    ours = ours[0].numpy().transpose(1, 2, 0)
    assert expected.std() > 0.1  # the reference is not all zeros (dead ReLUs would hide bugs)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * expected.std())

    assert report.format == "keras-h5"
    assert sorted(report.loaded) == sorted(f"features.{n}.{p}" for n in VGG16_CONVS
                                           for p in ("weight", "bias"))
    assert sorted(report.missing) == sorted(k for k in model.state_dict() if k.startswith("head."))
    assert report.unexpected == () and set(report.skipped) == {"fc6.weight", "fc6.bias"}
    assert report.notes == ()  # BGR file, BGR model, VGG-Face means: nothing converted or off


def test_vggface_pth_and_keras_h5_of_the_same_weights_give_identical_outputs(tmp_path, vgg_face):
    h5 = write_keras_h5(tmp_path / "vggface.h5", vgg_face)
    fc8 = {"fc8.weight": torch.zeros(2622, 16), "fc8.bias": torch.zeros(2622)}
    pth = write_matconvnet_pth(tmp_path / "vgg_face_dag.pth", vgg_face, extra=fc8)
    torch.manual_seed(0)
    from_keras = create_model("vgg16_nb").eval()
    from_pth = create_model("vgg16_nb").eval()
    from_pth.head.load_state_dict(from_keras.head.state_dict())  # heads are not in the files
    load_weights(from_keras, h5, format="keras-h5")
    report = load_weights(from_pth, pth)

    assert report.format == "vggface-pth"
    assert report.skipped.keys() == fc8.keys() and report.unexpected == ()
    assert report.notes == ("features.conv1_1.weight: input channels reversed (RGB in the file, "
                            "BGR in the model cfg)",)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2)) * 60
    with torch.no_grad():
        a, b = from_keras(x), from_pth(x)
    assert a.abs().max() > 1e-3
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_vgg_models_are_fed_as_vgg_face_was_trained_and_other_preprocessing_is_noted(
        tmp_path, vgg_face):
    bgr_means = VGGFACE_MEAN_RGB[::-1]
    for name in ("vgg16_nb", "vgg16_avg"):
        cfg = model_cfg(name)
        assert cfg.channel_order == "BGR" and cfg.input_size == (224, 224)
        np.testing.assert_allclose(np.array(cfg.mean) * 255, bgr_means, atol=1e-4)
        np.testing.assert_allclose(np.array(cfg.std) * 255, 1.0)
    model = create_model("vgg16_avg")
    model.cfg = dataclasses.replace(model.cfg, mean=(0.485, 0.456, 0.406), std=(0.229,) * 3)
    report = load_weights(model, write_keras_h5(tmp_path / "w.h5", vgg_face))
    assert len(report.notes) == 1 and "VGG-Face features expect mean=" in report.notes[0]


def test_keras_fc6_is_reordered_from_keras_flatten_order(tmp_path, vgg_face):
    class VGGWithFc6(nn.Module):  # a plain module, as VGG-Face's own network with an fc6
        def __init__(self) -> None:
            super().__init__()
            self.features = vgg16_features()
            self.fc6 = nn.Linear(25088, 3)

    rng = np.random.default_rng(3)
    kernel, bias = rng.normal(0, 0.01, (25088, 3)).astype(np.float32), np.zeros(3, np.float32)
    model = VGGWithFc6().eval()
    report = load_weights(model, write_keras_h5(tmp_path / "w.h5", vgg_face,
                                                dense={"fc6": (kernel, bias)}))
    assert "fc6.weight" in report.loaded and report.missing == ()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4)) * 60
    with torch.no_grad():
        pool5 = model.features(x)[0].numpy()
        ours = model.fc6(model.features(x).flatten(1))[0].numpy()
    keras_flatten = pool5.transpose(1, 2, 0).reshape(-1)  # Keras: (h, w, c), channels last
    np.testing.assert_allclose(ours, keras_flatten @ kernel + bias, rtol=1e-4, atol=1e-5)


def test_a_state_dict_with_other_names_loads_through_a_key_map(tmp_path):
    torch.manual_seed(0)
    source = create_model("resnet50_nb").eval()
    # a VGGFace2 conversion: bare backbone names under DataParallel's "module.", an 8631-way
    # classifier "fc", no num_batches_tracked; wrapped in a checkpoint dict
    backbone = {f"module.{k}": v for k, v in source.state_dict().items()
                if not k.startswith("head.") and not k.endswith("num_batches_tracked")}
    extra = {"module.fc.weight": torch.zeros(8631, 4), "module.fc.bias": torch.zeros(8631)}
    torch.save({"state_dict": {**backbone, **extra}, "epoch": 7}, tmp_path / "vggface2.pth")

    target = create_model("resnet50_nb").eval()
    report = load_weights(target, tmp_path / "vggface2.pth",
                          key_map={"module.": "", "module.fc.": None})
    assert report.format == "state-dict" and report.unexpected == ()
    assert set(report.skipped) == set(extra)
    assert len(report.loaded) == len(backbone)
    assert all(k.startswith("head.") or k.endswith("num_batches_tracked") for k in report.missing)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(target.forward_features(x), source.forward_features(x),
                                   rtol=0, atol=0)

    again = create_model("resnet50_nb").eval()
    report = load_weights(again, tmp_path / "vggface2.pth",
                          key_map=lambda key: None if ".fc." in key else key[len("module."):])
    assert len(report.loaded) == len(backbone) and set(report.skipped) == set(extra)


def test_a_whole_model_state_dict_loads_strictly_and_reproduces_the_outputs(tmp_path):
    torch.manual_seed(0)
    source = create_model("ncnn").eval()
    torch.save({"model": "ncnn", "state_dict": source.state_dict(), "fold": 0},
               tmp_path / "model.pt")
    target = create_model("ncnn").eval()
    report = load_weights(target, tmp_path / "model.pt", strict=True)
    assert report.missing == () and report.unexpected == ()
    x = torch.randn(3, 3, 120, 120)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_a_wrong_shape_is_refused_naming_key_and_both_shapes_and_the_model_is_unchanged(
        tmp_path, vgg_face):
    layers = dict(vgg_face)
    layers["conv2_1"] = (np.zeros((3, 3, 64, 100), np.float32), np.zeros(100, np.float32))
    path = write_keras_h5(tmp_path / "wrong.h5", layers)
    model = create_model("vgg16_nb")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as error:
        load_weights(model, path)
    message = str(error.value)
    assert str(path) in message and "'conv2_1/conv2_1/kernel:0'" in message
    assert "(3, 3, 64, 100)" in message and "(100, 64, 3, 3) in torch layout" in message
    assert "'features.conv2_1.weight' has shape (128, 64, 3, 3)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    torch.save({"conv1.weight": torch.zeros(8, 3, 5, 5)}, tmp_path / "small.pt")
    with pytest.raises(WeightsError, match=r"'conv1.weight' has shape \(8, 3, 5, 5\) but the "
                                           r"model's 'conv1.weight' has shape \(64, 3, 7, 7\)"):
        load_weights(create_model("resnet50_nb"), tmp_path / "small.pt")


def test_file_channel_order_reverses_a_state_dicts_first_convolution_for_a_bgr_model(tmp_path):
    kernel = torch.randn(64, 3, 3, 3)
    torch.save({"features.conv1_1.weight": kernel}, tmp_path / "rgb.pt")
    model = create_model("vgg16_nb")  # BGR
    report = load_weights(model, tmp_path / "rgb.pt", file_channel_order="RGB")
    assert torch.equal(model.features.conv1_1.weight, kernel.flip(1))
    assert report.notes == ("features.conv1_1.weight: input channels reversed (RGB in the file, "
                            "BGR in the model cfg)",)
    load_weights(model, tmp_path / "rgb.pt")
    assert torch.equal(model.features.conv1_1.weight, kernel)  # state dicts: no conversion


def test_strict_refuses_missing_and_unexpected_keys(tmp_path):
    state = create_model("ncnn").state_dict()
    first = next(iter(state))
    state["extra.weight"] = torch.zeros(2)
    del state[first]
    torch.save(state, tmp_path / "partial.pt")
    report = load_weights(create_model("ncnn"), tmp_path / "partial.pt")
    assert report.missing == (first,) and report.unexpected == ("extra.weight",)
    with pytest.raises(WeightsError, match=rf"strict=True but 1 model key\(s\) not in the file: "
                                           rf"{first}; 1 file key\(s\) not in the model: "
                                           r"extra.weight"):
        load_weights(create_model("ncnn"), tmp_path / "partial.pt", strict=True)


def test_files_that_are_not_weights_are_refused_naming_the_file(tmp_path, vgg_face):
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(WeightsError, match=rf"{text}: not a torch weights file"):
        load_weights(create_model("ncnn"), text)
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"\x80\x02garbage")
    with pytest.raises(WeightsError, match=rf"{damaged}: cannot be read as a torch weights file"):
        load_weights(create_model("ncnn"), damaged)
    with pytest.raises(WeightsError, match=r"file not found"):
        load_weights(create_model("ncnn"), tmp_path / "absent.h5")
    plain_h5 = tmp_path / "plain.h5"
    with h5py.File(plain_h5, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsError, match=rf"{plain_h5}: not a Keras 2 weights file"):
        load_weights(create_model("vgg16_nb"), plain_h5)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match=r"holds a list, not a state dict"):
        load_weights(create_model("ncnn"), tmp_path / "list.pt")
    with pytest.raises(WeightsError, match=r"format='onnx' is not valid; valid: auto, keras-h5"):
        load_weights(create_model("ncnn"), text, format="onnx")
    h5 = write_keras_h5(tmp_path / "vggface.h5", vgg_face)
    with pytest.raises(WeightsError, match=r"need a VGG-16 model .* no module named 'conv1_1'"):
        load_weights(create_model("ncnn"), h5)



# Keras's InceptionV3 (keras.applications.inception_v3) builds its conv2d_bn layers in this
# order, block by block: each block's convolutions as the Keras source calls conv2d_bn, named
# here by the inception_v3_nb module that must receive them, with the Keras kernel (rows, cols)
_BLOCK35 = (("branch1x1", 1, 1), ("branch5x5_1", 1, 1), ("branch5x5_2", 5, 5),
            ("branch3x3dbl_1", 1, 1), ("branch3x3dbl_2", 3, 3), ("branch3x3dbl_3", 3, 3),
            ("branch_pool", 1, 1))
_BLOCK17 = (("branch1x1", 1, 1), ("branch7x7_1", 1, 1), ("branch7x7_2", 1, 7),
            ("branch7x7_3", 7, 1), ("branch7x7dbl_1", 1, 1), ("branch7x7dbl_2", 7, 1),
            ("branch7x7dbl_3", 1, 7), ("branch7x7dbl_4", 7, 1), ("branch7x7dbl_5", 1, 7),
            ("branch_pool", 1, 1))
_BLOCK8 = (("branch1x1", 1, 1), ("branch3x3_1", 1, 1), ("branch3x3_2a", 1, 3),
           ("branch3x3_2b", 3, 1), ("branch3x3dbl_1", 1, 1), ("branch3x3dbl_2", 3, 3),
           ("branch3x3dbl_3a", 1, 3), ("branch3x3dbl_3b", 3, 1), ("branch_pool", 1, 1))
KERAS_INCEPTION_BUILD_ORDER = [
    *((f"stem.{name}", r, c) for name, r, c in (("conv1", 3, 3), ("conv2", 3, 3),
                                               ("conv3", 3, 3), ("conv4", 1, 1),
                                               ("conv5", 3, 3))),
    *((f"mixed{i}.{name}", r, c) for i in range(3) for name, r, c in _BLOCK35),
    *((f"mixed3.{name}", r, c) for name, r, c in (("branch3x3", 3, 3), ("branch3x3dbl_1", 1, 1),
                                                 ("branch3x3dbl_2", 3, 3),
                                                 ("branch3x3dbl_3", 3, 3))),
    *((f"mixed{i}.{name}", r, c) for i in range(4, 8) for name, r, c in _BLOCK17),
    *((f"mixed8.{name}", r, c) for name, r, c in (("branch3x3_1", 1, 1), ("branch3x3_2", 3, 3),
                                                 ("branch7x7x3_1", 1, 1),
                                                 ("branch7x7x3_2", 1, 7),
                                                 ("branch7x7x3_3", 7, 1),
                                                 ("branch7x7x3_4", 3, 3))),
    *((f"mixed{i}.{name}", r, c) for i in (9, 10) for name, r, c in _BLOCK8),
]


def keras_name(base: str, index: int, *, tf2: bool) -> str:
    """Keras's automatic name of the index-th layer of a type: Keras 2.0 counts from 1
    (conv2d_1), tf.keras from none (conv2d, conv2d_1)."""
    if tf2:
        return base if index == 0 else f"{base}_{index}"
    return f"{base}_{index + 1}"


def _write_layer(group: h5py.Group, layer: str, weights: dict[str, np.ndarray]) -> None:
    group.attrs["weight_names"] = [f"{layer}/{name}:0".encode() for name in weights]
    for name, array in weights.items():
        group.create_dataset(f"{layer}/{name}:0", data=array)


def random_inception(seed: int) -> nn.Module:
    """inception_v3_nb with random batch-norm betas and moving statistics too."""
    torch.manual_seed(seed)
    model = create_model("inception_v3_nb").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model


def write_keras_inception(path: Path, model: nn.Module, *, tf2: bool = False,
                          whole_model: bool = False, head: bool = False,
                          predictions: bool = False, wrong: str | None = None) -> Path:
    """The model's weights as a Keras InceptionV3 h5: weights only (the ImageNet download's
    layout, ``predictions`` adding its 1000-way Dense) or a whole saved model (``model_weights``,
    the base nested in a Sequential) with the 512-512-2 head. Layers are listed in a shuffled
    order, as Keras lists them by depth and not in build order; ``wrong`` names the Keras
    convolution written with 100 output channels."""
    layers: list[tuple[str, dict[str, np.ndarray]]] = []
    for index, (module, rows, cols) in enumerate(KERAS_INCEPTION_BUILD_ORDER):
        unit = model.get_submodule(f"features.{module}")
        kernel = unit.conv.weight.detach().numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
        assert kernel.shape[:2] == (rows, cols), module
        conv = keras_name("conv2d", index, tf2=tf2)
        if conv == wrong:
            kernel = np.zeros((*kernel.shape[:3], 100), np.float32)
        bn = {"beta": unit.bn.bias, "moving_mean": unit.bn.running_mean,
              "moving_variance": unit.bn.running_var}
        layers += [(conv, {"kernel": kernel}),
                   (keras_name("batch_normalization", index, tf2=tf2),
                    {name: value.detach().numpy() for name, value in bn.items()}),
                   (keras_name("activation", index, tf2=tf2), {})]
    layers += [(f"mixed{i}", {}) for i in range(11)]
    layers = [layers[i] for i in np.random.default_rng(0).permutation(len(layers))]
    top = [(keras_name("dense", i, tf2=tf2),
            {"kernel": getattr(model.head, f"fc{i + 1}").weight.detach().numpy().T,
             "bias": getattr(model.head, f"fc{i + 1}").bias.detach().numpy()})
           for i in range(3 if head else 0)]
    if predictions:
        top.append(("predictions", {"kernel": np.zeros((2048, 1000), np.float32),
                                    "bias": np.zeros(1000, np.float32)}))
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = b"2.1.6" if not tf2 else b"2.4.0"
        root = file.create_group("model_weights") if whole_model else file
        names = [name for name, _ in layers] + [name for name, _ in top]
        if whole_model:  # Sequential([InceptionV3(include_top=False), pooling, Dense ...])
            names = ["inception_v3", "global_average_pooling2d"] + [name for name, _ in top]
            base = root.create_group("inception_v3")
            base.attrs["weight_names"] = [f"{layer}/{name}:0".encode() for layer, weights in layers
                                          for name in weights]
            for layer, weights in layers:
                for name, array in weights.items():
                    base.create_dataset(f"{layer}/{name}:0", data=array)
            root.create_group("global_average_pooling2d").attrs["weight_names"] = \
                np.array([], dtype="S")
        else:
            for layer, weights in layers:
                _write_layer(root.create_group(layer), layer, weights)
        for layer, weights in top:
            _write_layer(root.create_group(layer), layer, weights)
        root.attrs["layer_names"] = [name.encode() for name in names]
    return path


def test_keras_inception_weights_load_by_build_order_not_file_order(tmp_path):
    # guards: Keras lists InceptionV3's layers by depth, branches interleaved; loading them in
    # file order would put conv2d_9's kernel into conv2d_7's place wherever the shapes allow
    source = random_inception(0)
    path = write_keras_inception(tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                                 source, predictions=True)
    target = random_inception(1)
    report = load_weights(target, path)

    assert report.format == "keras-h5" and report.unexpected == () and report.notes == ()
    assert len(report.loaded) == 94 * 4  # kernel; beta, moving mean and variance
    assert sorted(report.missing) == sorted(k for k in target.state_dict() if k.startswith("head."))
    assert set(report.skipped) == {"predictions.weight", "predictions.bias"}
    assert "the file has 1, the model 3 Linear layers" in report.skipped["predictions.weight"]
    expected = source.state_dict()
    for key, value in target.features.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, expected[f"features.{key}"]), key
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(target.forward_features(x), source.forward_features(x))


def test_a_whole_saved_keras_inception_with_the_thesis_head_round_trips_exactly(tmp_path):
    source = random_inception(0)
    path = write_keras_inception(tmp_path / "thesis_inception.h5", source, tf2=True,
                                 whole_model=True, head=True)
    target = random_inception(1)
    report = load_weights(target, path, strict=True)
    assert report.missing == () and report.unexpected == () and report.skipped == {}
    assert len(report.loaded) == 94 * 4 + 3 * 2
    expected = source.state_dict()
    for key, value in target.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, expected[key]), key
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_keras_inception_files_that_do_not_fit_are_refused_naming_what(tmp_path):
    source = random_inception(0)
    wrong = write_keras_inception(tmp_path / "wrong.h5", source, wrong="conv2d_10")
    model = create_model("inception_v3_nb")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as error:
        load_weights(model, wrong)
    message = str(error.value)
    # conv2d_10 is mixed0's second 3x3dbl convolution: 64 -> 96 channels, 3x3
    assert "'conv2d_10/conv2d_10/kernel:0' has shape (3, 3, 64, 100)" in message
    assert ("((100, 64, 3, 3) in torch layout) but the model's "
            "'features.mixed0.branch3x3dbl_2.conv.weight' has shape (96, 64, 3, 3)") in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    path = write_keras_inception(tmp_path / "inception.h5", source)
    with pytest.raises(WeightsError, match=r"file's 94 convolution and 94 batch-norm layers load "
                                           r"by the order Keras built them, but the model has "
                                           r"53 and 53.*inception_v3_nb"):
        load_weights(create_model("resnet50_nb"), path)
    with h5py.File(path, "a") as file:
        file.move("conv2d_5", "stem_conv5")
        names = [n.decode() if isinstance(n, bytes) else n for n in file.attrs["layer_names"]]
        file.attrs["layer_names"] = [("stem_conv5" if n == "conv2d_5" else n).encode()
                                     for n in names]
    with pytest.raises(WeightsError, match=r"convolution layer 'stem_conv5' is not named as "
                                           r"Keras names the others .* all 94 convolution "
                                           r"layers\), so the order .* unknown; give a key_map"):
        load_weights(create_model("inception_v3_nb"), path)
