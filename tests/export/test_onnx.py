"""Export: every registered model gives an ONNX file that ONNX Runtime runs as torch does, and
the file carries the cfg, crop rule, run and fold that a runtime needs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from neopain.data.manifest import load_manifest
from neopain.errors import NeopainError
from neopain.export import onnx as onnx_module
from neopain.faces.crop import CropRule
from neopain.export.inputs import manifest_crops
from neopain.export.metadata import METADATA_KEY, ModelFileError, read_exported_cfg
from neopain.export.onnx import (
    check_parity,
    export_fold,
    export_model,
    fold_test_inputs,
    parity_on_inputs,
)
from neopain.export.runtime import OnnxPredictor
from neopain.models import create_model, list_models, model_cfg
from neopain.models.preprocess import preprocess_crop
from neopain.runs import load_fold, select_rows

PARITY = 1e-4


@pytest.fixture(scope="module")
def real_crops(tiny_fold):
    """Face crops of the synthetic cohort's images (the test subjects of the tiny run)."""
    fold = load_fold(tiny_fold)
    manifest = load_manifest(fold.manifest)
    rows = select_rows(manifest, subjects=fold.test_subjects)
    return [crop for _, crop in manifest_crops(manifest, rows, crop=CropRule.exact_box())]


def lively(model: torch.nn.Module, inputs: np.ndarray) -> None:
    """Weights that keep the signal (He initialization), batch-norm statistics of ``inputs``
    and a last layer scaled to logits about ±1 apart: torch's default initialization lets
    activations fade through VGG's 16 and Inception's 94 layers, so a fresh network answered
    every crop alike and parity held trivially."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = 1.0
    if norms:
        with torch.no_grad():
            model.train()(torch.from_numpy(inputs))
    model.eval()
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # logits about ±1 apart: P(pain) neither saturated nor constant
        logits = model(torch.from_numpy(inputs))
        spread = float((logits[:, 1] - logits[:, 0]).std()) or 1.0
        last.weight /= spread
        last.bias /= spread


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_in_onnx_runtime_as_in_torch(name, real_crops, tmp_path):
    # guards: a model whose exported graph differs from torch (dropout left on, an op the
    # exporter rewrites) would assess the bedside differently from the evaluation
    torch.manual_seed(0)
    model = create_model(name).eval()
    inputs = np.stack([preprocess_crop(crop, model.cfg) for crop in real_crops])
    lively(model, inputs)
    path = export_model(model, tmp_path / f"{name}.onnx")
    parity = check_parity(model, path, inputs)
    assert parity.images == len(real_crops) >= 4
    assert parity.max_abs_diff <= PARITY, name
    with torch.no_grad():
        pain = torch.softmax(model(torch.from_numpy(inputs)), dim=1)[:, 1]
    assert float(pain.max() - pain.min()) > 1e-3, f"{name} answers every crop alike: no parity"
    graph = onnx.load(str(path), load_external_data=False)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_a_trained_fold_exports_with_parity_on_its_test_images(tiny_fold, tmp_path):
    path, fold = export_fold(tiny_fold, tmp_path / "ncnn.onnx")
    parity = parity_on_inputs(fold, path, limit=None)
    assert parity.images == len(fold_test_inputs(fold)) > 0
    assert parity.max_abs_diff <= PARITY and parity.label_changes == 0


def test_a_single_sigmoid_logit_exports_as_two_probabilities(real_crops, tmp_path):
    # guards: a softmax over one logit is 1.0 for every image
    torch.manual_seed(0)
    model = create_model("ncnn", single_output=True).eval()
    path = export_model(model, tmp_path / "single.onnx")
    assert not model.training  # an eval model stays in eval mode
    with OnnxPredictor(path) as predictor:
        inputs = np.stack([predictor.preprocess(crop) for crop in real_crops])
        probs = predictor.predict_inputs(inputs)
    with torch.no_grad():
        pain = torch.sigmoid(model(torch.as_tensor(inputs))).numpy()[:, 0]
    assert probs.shape == (len(real_crops), 2)
    assert np.allclose(probs[:, 1], pain, atol=PARITY) and np.allclose(probs.sum(axis=1), 1)
    assert np.ptp(probs[:, 1]) > 0


def test_export_traces_eval_mode_whatever_mode_the_model_is_in(real_crops, tmp_path):
    # guards: a graph traced in training mode normalizes with each batch's statistics
    torch.manual_seed(0)
    model = create_model("mobilenet_nb")
    batch = torch.randn(8, 3, *model.cfg.input_size)
    model.train()
    with torch.no_grad():
        model(batch)  # running statistics move away from their initial values
    path = export_model(model, tmp_path / "m.onnx")
    assert model.training  # the caller's mode is given back
    with OnnxPredictor(path) as predictor:
        inputs = np.stack([predictor.preprocess(crop) for crop in real_crops])
    assert check_parity(model.eval(), path, inputs).max_abs_diff <= PARITY


def test_the_file_carries_cfg_crop_rule_threshold_run_and_fold(tiny_fold, tiny_onnx):
    saved = torch.load(tiny_fold / "model.pt", weights_only=True)
    exported = read_exported_cfg(tiny_onnx)
    assert exported.cfg.to_dict() == saved["cfg"]
    assert exported.crop == "face_box" and exported.crop_rule == CropRule.exact_box()
    assert exported.source_run == str(tiny_fold.parent) and exported.fold == 0
    assert exported.quantization == "none"
    raw = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    data = json.loads(raw[METADATA_KEY])
    for key in ("input_size", "mean", "std", "channel_order", "labels", "threshold",
                "architecture", "source_run", "fold", "crop"):
        assert key in data
    assert data["architecture"] == "ncnn" and data["input_size"] == [120, 120]


def test_a_run_trained_on_whole_images_exports_the_whole_image_rule(whole_image_fold, tmp_path):
    path, fold = export_fold(whole_image_fold, tmp_path / "whole.onnx")
    exported = read_exported_cfg(path)
    assert exported.crop == "image" and exported.crop_rule == CropRule.whole_image()
    with OnnxPredictor(path) as predictor:
        assert predictor.crop == CropRule.whole_image()
    assert parity_on_inputs(fold, path, limit=4).max_abs_diff <= PARITY


def test_bad_folds_and_files_are_named(tmp_path, tiny_onnx):
    with pytest.raises(NeopainError, match="model.pt: file not found"):
        load_fold(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not torch")
    with pytest.raises(NeopainError, match="not a neopain model.pt"):
        load_fold(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="junk.onnx"):
        read_exported_cfg(junk)
    with pytest.raises(ModelFileError, match="junk.onnx: ONNX Runtime cannot load it"):
        OnnxPredictor(junk)
    bare = onnx.load(str(tiny_onnx))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelFileError, match="has no neopain.cfg metadata"):
        OnnxPredictor(tmp_path / "bare.onnx")
    with pytest.raises(NeopainError, match="opset=13"):
        export_model(create_model("ncnn"), tmp_path / "old.onnx", opset=13)


def test_the_cfg_must_belong_to_the_model(tmp_path):
    from neopain.export.metadata import ExportedCfg

    with pytest.raises(NeopainError, match="metadata for model 'vgg16_nb'"):
        export_model(create_model("ncnn"), tmp_path / "x.onnx",
                     exported=ExportedCfg(cfg=model_cfg("vgg16_nb")))
    assert onnx_module.OPSET == 17
