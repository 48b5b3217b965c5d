"""int8: static QDQ per-channel weights calibrated on face crops, dynamic MatMul/Gemm, the cfg
copied into the int8 file, and a parity report whose figures mean what they say.

The speed and size promise for VGG-16 and ResNet-50 is measured by benchmarks/bench_int8.py
(timings are machine figures, not test assertions).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from neopain.data.manifest import load_manifest
from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.export.inputs import labels_of, manifest_crops
from neopain.export.metadata import read_exported_cfg
from neopain.export.quantize import (
    compare_models,
    quantize_dynamic_model,
    quantize_static_model,
)
from neopain.export.runtime import OnnxPredictor, PainOutputs
from neopain.runs import load_fold, select_rows


@pytest.fixture(scope="module")
def fold(tiny_fold):
    return load_fold(tiny_fold)


@pytest.fixture(scope="module")
def crops(fold):
    manifest = load_manifest(fold.manifest)
    train = select_rows(manifest, subjects=fold.train_subjects)
    test = select_rows(manifest, subjects=fold.test_subjects)
    return ([crop for _, crop in manifest_crops(manifest, train, crop=CropRule.exact_box())],
            [crop for _, crop in manifest_crops(manifest, test, crop=CropRule.exact_box())],
            labels_of(manifest, test))


@pytest.fixture(scope="module")
def static_file(tiny_onnx, crops, tmp_path_factory):
    progress = []
    path = quantize_static_model(tiny_onnx, tmp_path_factory.mktemp("q") / "static.onnx",
                                 crops=crops[0], batch_size=4,
                                 on_progress=lambda done, total: progress.append((done, total)))
    n = len(crops[0])
    assert progress[0] == (4, n + 1) and progress[-1] == (n + 1, n + 1)
    return path


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_static_int8_holds_int8_per_channel_conv_weights_and_float_logits(static_file,
                                                                                 tiny_onnx):
    model = onnx.load(str(static_file))
    ops = op_types(static_file)
    assert {"QuantizeLinear", "DequantizeLinear", "Softmax"} <= ops
    int8 = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer
            if i.data_type == onnx.TensorProto.INT8}
    assert int8, "no int8 weights"
    scales = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    per_channel = [node for node in model.graph.node if node.op_type == "DequantizeLinear"
                   and node.input[0] in int8 and scales[node.input[1]].ndim == 1
                   and scales[node.input[1]].size > 1]
    assert per_channel, "weights are not quantized per channel"
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    logits = next(n for n in model.graph.node if softmax.input[0] in n.output)
    assert logits.op_type == "Gemm"  # computed in float, from dequantized features
    assert producers.get(logits.input[1]) != "DequantizeLinear"  # its weights stay float
    exported = read_exported_cfg(static_file)
    assert exported.quantization == "static"
    assert exported.cfg == read_exported_cfg(tiny_onnx).cfg
    assert static_file.stat().st_size < 0.4 * tiny_onnx.stat().st_size


def test_static_int8_agrees_with_fp32_on_the_test_images(static_file, tiny_onnx, crops):
    report = compare_models(tiny_onnx, static_file, crops=crops[1], labels=crops[2], repeats=1)
    assert report.method == "static" and report.images == len(crops[1])
    assert report.max_abs_diff < 0.02
    with OnnxPredictor(tiny_onnx) as fp32, OnnxPredictor(static_file) as int8:
        assert int8.crop == fp32.crop
        p32 = np.array([p.prob_pain for p in fp32.predict_crops(crops[1])])
        p8 = np.array([p.prob_pain for p in int8.predict_crops(crops[1])])
    assert report.max_abs_diff == pytest.approx(np.abs(p8 - p32).max(), abs=1e-9)
    assert report.label_agreement == pytest.approx(np.mean((p32 >= 0.5) == (p8 >= 0.5)))
    assert report.flipped_within <= report.max_abs_diff  # a flip needs P to cross 0.5
    assert report.size_ratio == static_file.stat().st_size / tiny_onnx.stat().st_size
    assert report.speedup == pytest.approx(report.fp32_ms / report.int8_ms)
    assert report.to_dict()["auc_delta"] == report.auc_delta


def test_dynamic_int8_quantizes_matmul_and_gemm_but_not_convolutions(tiny_onnx, tmp_path):
    path = quantize_dynamic_model(tiny_onnx, tmp_path / "dynamic.onnx")
    ops = op_types(path)
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    assert "ConvInteger" not in ops and "Conv" in ops
    assert read_exported_cfg(path).quantization == "dynamic"


def test_a_report_counts_labels_that_int8_flips(tiny_onnx, static_file, crops, monkeypatch):
    # the report must see disagreement when there is some: make int8 answer 1 - P(pain)
    p32 = np.array(_probs(tiny_onnx, crops[1]))
    original = OnnxPredictor.pain_outputs

    def reversed_int8(self, inputs, **kwargs):
        out = original(self, inputs, **kwargs)
        if self.exported_.quantization != "static":
            return out
        return PainOutputs(raw=1 - out.raw, logit=-out.logit, calibrated=1 - out.calibrated)

    monkeypatch.setattr(OnnxPredictor, "pain_outputs", reversed_int8)
    report = compare_models(tiny_onnx, static_file, crops=crops[1], labels=crops[2], repeats=1)
    expected = np.mean((p32 >= 0.5) == ((1 - p32) >= 0.5))
    assert report.label_agreement == pytest.approx(expected) and expected < 0.5
    flipped = (p32 >= 0.5) != ((1 - p32) >= 0.5)
    assert report.flipped_within == pytest.approx(np.abs(p32[flipped] - 0.5).max())
    if report.auc_fp32 is not None:
        assert report.auc_delta == pytest.approx(1 - 2 * report.auc_fp32)


def _probs(path, crops):
    with OnnxPredictor(path) as predictor:
        return [p.prob_pain for p in predictor.predict_crops(crops)]


def test_quantizing_is_refused_where_it_makes_no_sense(tiny_onnx, static_file, tmp_path):
    with pytest.raises(NeopainError, match="already quantized"):
        quantize_dynamic_model(static_file, tmp_path / "twice.onnx")
    with pytest.raises(NeopainError, match="is the input file"):
        quantize_dynamic_model(tiny_onnx, tiny_onnx)
    with pytest.raises(NeopainError, match="crops is empty"):
        quantize_static_model(tiny_onnx, tmp_path / "s.onnx", crops=[])
    with pytest.raises(NeopainError, match="activation_type='int4'"):
        quantize_static_model(tiny_onnx, tmp_path / "s.onnx", crops=[np.zeros((9, 9, 3),
                                                                              np.uint8)],
                              activation_type="int4")
    with pytest.raises(NeopainError, match="not a quantized copy"):
        compare_models(tiny_onnx, tiny_onnx, crops=[np.zeros((9, 9, 3), np.uint8)], labels=[1])
