"""The model registry and ModelCfg: every entry is buildable by name and carries a cfg that
survives a trip through JSON; bad names, options and cfg fields fail naming what is valid."""

from __future__ import annotations

import json

import pytest

from neopain.errors import NeopainError
from neopain.models import (
    ModelCfg,
    create_model,
    list_models,
    model_cfg,
    model_info,
    register_model,
)

PUBLISHED = {"vgg16_nb", "vgg16_avg", "ncnn", "resnet50_nb", "senet50_nb", "inception_v3_nb"}


def test_registry_holds_the_published_models_and_a_bedside_one():
    names = list_models()
    assert PUBLISHED <= set(names)
    assert "mobilenet_nb" in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", list_models())
def test_model_cfg_without_building_equals_the_built_models_cfg(name):
    # the trainer preprocesses with model_cfg(name) and the exported model carries model.cfg:
    # they must be the same (create_model now sets the registered cfg itself)
    cfg = model_cfg(name)
    assert cfg == create_model(name).cfg
    assert cfg.name == name


@pytest.mark.parametrize("name", list_models())
def test_cfg_round_trips_through_json(name):
    cfg = model_cfg(name)
    data = json.loads(json.dumps(cfg.to_dict()))
    again = ModelCfg.from_dict(data)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    assert isinstance(again.input_size, tuple) and isinstance(again.mean, tuple)


def test_vgg_cfg_is_vgg_face_preprocessing():
    # raw 0-255 BGR minus the VGG-Face means: (pixel / 255 - m / 255) / (1 / 255) == pixel - m
    cfg = model_cfg("vgg16_nb")
    assert cfg.channel_order == "BGR"
    assert cfg.input_size == (224, 224)
    pixel = 200.0
    normalized = [(pixel / 255 - m) / s for m, s in zip(cfg.mean, cfg.std)]
    assert normalized == pytest.approx([pixel - 93.5940, pixel - 104.7624, pixel - 129.1863])


def test_inception_cfg_is_keras_inception_preprocessing():
    # keras.applications.inception_v3.preprocess_input (mode 'tf'): RGB, pixel / 127.5 - 1
    cfg = model_cfg("inception_v3_nb")
    assert cfg.channel_order == "RGB"
    assert cfg.input_size == (299, 299)
    for pixel in (0.0, 100.0, 255.0):
        normalized = [(pixel / 255 - m) / s for m, s in zip(cfg.mean, cfg.std)]
        assert normalized == pytest.approx([pixel / 127.5 - 1] * 3)


def test_unknown_model_names_every_valid_one():
    with pytest.raises(NeopainError, match="unknown model 'vgg19'") as caught:
        create_model("vgg19")
    for name in list_models():
        assert name in str(caught.value)
    with pytest.raises(NeopainError, match="valid: .*ncnn"):
        model_cfg("nope")


def test_unknown_option_names_the_option_and_the_valid_ones():
    with pytest.raises(NeopainError, match=r"'ncnn': unknown option\(s\) drop_rate; "
                                           r"valid: dropout, single_output"):
        create_model("ncnn", drop_rate=0.2)


def test_bad_option_value_is_a_clear_error():
    with pytest.raises(NeopainError, match=r"dropout=1\.5"):
        create_model("ncnn", dropout=1.5)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("ncnn", cfg=model_cfg("ncnn"))(lambda: None)


def test_model_info_records_the_published_counts():
    assert model_info("vgg16_nb").published_params == 27_823_938
    assert model_info("vgg16_avg").published_params == 17_865_538
    assert model_info("ncnn").published_params == 72_593
    assert model_info("resnet50_nb").published_params == 25_612_154
    assert model_info("senet50_nb").published_params == 28_143_146
    assert model_info("inception_v3_nb").published_params == 23_115_554


@pytest.mark.parametrize(("field", "value", "message"), [
    ("input_size", (224,), "input_size=.*two positive integers"),
    ("input_size", (0, 224), "input_size"),
    ("mean", (0.5, 0.5), "mean=.*three numbers"),
    ("std", (0.5, 0.0, 0.5), "std=.*positive"),
    ("channel_order", "RGBA", "channel_order='RGBA'; valid: RGB, BGR"),
    ("labels", ("pain", "pain"), "labels=.*distinct"),
    ("threshold", 1.0, "threshold=1.0 must be between 0 and 1"),
])
def test_cfg_refuses_bad_fields_naming_them(field, value, message):
    good = model_cfg("ncnn").to_dict()
    with pytest.raises(NeopainError, match=message):
        ModelCfg.from_dict({**good, field: value})


def test_cfg_from_dict_names_unknown_and_missing_fields():
    good = model_cfg("ncnn").to_dict()
    with pytest.raises(NeopainError, match="unknown field.*input_shape; valid:"):
        ModelCfg.from_dict({**good, "input_shape": [1, 2]})
    del good["mean"]
    with pytest.raises(NeopainError, match="missing field.*mean"):
        ModelCfg.from_dict(good)
    with pytest.raises(NeopainError, match="must be a mapping"):
        ModelCfg.from_dict([("name", "x")])


def test_rule_based_nfcs_is_listed_apart_from_the_networks():
    # list_models() means the torch architectures: every loop over it builds a network
    from neopain.prediction import predictor_kinds

    assert not predictor_kinds()["nfcs"].file_suffixes and "nfcs" not in list_models()
    with pytest.raises(NeopainError, match=r"'nfcs' is rule-based, not a network.*"
                                           r"load_predictor\('nfcs'\)"):
        create_model("nfcs")
    with pytest.raises(NeopainError, match=r"\(rule-based: nfcs\)"):
        create_model("nfc")
