"""Detectors read from the user's own file: ``retinaface`` (biubug6 and insightface layouts),
``yolo-face`` (YOLOv5-face and YOLOv8-face) and ``opencv-ssd`` (OpenCV's Caffe SSD).

No real weights exist here, so each test builds a tiny model whose outputs are constants of
known value (or, for the SSD, a weightless Caffe net whose one score follows the image's
colour). Every decoded box and keypoint is checked against values worked out by hand in the
original image's pixels, through the resize or letterbox; duplicates must be merged by NMS and
weak faces dropped by the threshold. Bad files are refused naming the file and what is valid.
"""

from __future__ import annotations

import gc
import os

from pathlib import Path

import numpy as np
import pytest

from neopain.faces.detect_worker import DetectSettings
from neopain.faces.base import DetectorError, create_detector, detector_class, list_detectors
from neopain.faces.retinaface import biubug6_priors, insightface_centres
from neopain.faces.ssd import faces_from_detections
from neopain.faces.yolo_face import letterbox

FILE_FAMILIES = ("retinaface", "yolo-face", "opencv-ssd")
LAYOUT_NAMES = {"retinaface": ("'biubug6'", "'insightface'"),
                "yolo-face": ("'yolov5-face'", "'yolov8-face'"),
                "opencv-ssd": ("deploy.prototxt", "opencv_face_detector.pbtxt")}


def onnx_file(path: Path, outputs: list[tuple[str, np.ndarray]], *, size: tuple[int, int],
              free: bool = False, inputs: tuple[str, ...] = ("input",)) -> Path:
    """Write an ONNX model with 1×3×H×W inputs whose outputs are the given constants; with
    ``free`` its H and W are symbolic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Constant", [], [name],
                              value=numpy_helper.from_array(value.astype(np.float32), name))
             for name, value in outputs]
    declared = [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape)
                for name, value in outputs]
    dims = [1, 3, "H", "W"] if free else [1, 3, *size]
    graph = helper.make_graph(nodes, "constant-outputs",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)
                               for name in inputs], declared)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


# --- retinaface, biubug6 layout: a 160×160 model fed a 320×240 image (scale 0.5, pad below) ---

BIUBUG6_PRIORS = 20 * 20 * 2 + 10 * 10 * 2 + 5 * 5 * 2  # strides 8, 16, 32; 2 sizes per cell
FACE_PRIOR = 800 + (4 * 10 + 5) * 2  # stride 16, row 4, col 5, size 64: centre (88, 72)
SMALL_PRIOR = (5 * 20 + 2) * 2  # stride 8, row 5, col 2, size 16: centre (20, 44)


def biubug6_file(path: Path, *, free: bool = False) -> Path:
    loc = np.zeros((1, BIUBUG6_PRIORS, 4))
    conf = np.tile([1.0, 0.0], (1, BIUBUG6_PRIORS, 1))
    landms = np.zeros((1, BIUBUG6_PRIORS, 10))
    # the face: centre moved by (+0.5, -0.5)·0.1·64 = (3.2, -3.2), width ×exp(0.2·ln(1.25)/0.2)
    loc[0, FACE_PRIOR] = [0.5, -0.5, np.log(1.25) / 0.2, 0.0]
    conf[0, FACE_PRIOR] = [0.1, 0.9]
    # keypoints in units of 0.1·64 = 6.4 px from the prior centre, subject's right eye first
    # (image-right here, as in a mirrored face)
    landms[0, FACE_PRIOR] = [1, -1, -1, -1, 0, 0, 1, 1, -1, 1]
    # the same box from the next prior (size 128): NMS drops it for the higher score
    loc[0, FACE_PRIOR + 1] = [0.25, -0.25, np.log(80 / 128) / 0.2, np.log(64 / 128) / 0.2]
    conf[0, FACE_PRIOR + 1] = [0.2, 0.8]
    conf[0, SMALL_PRIOR] = [0.3, 0.7]  # loc 0: exactly the 16×16 prior
    conf[0, 3] = [0.7, 0.3]  # below the default threshold 0.5
    return onnx_file(path, [("output0", loc), ("586", conf), ("585", landms)], size=(160, 160),
                     free=free, inputs=("input0",))


def test_retinaface_decodes_biubug6_priors_through_the_resize(tmp_path: Path):
    path = biubug6_file(tmp_path / "FaceDetector.onnx")
    with create_detector("retinaface", model=path) as detector:
        assert detector.layout_ == "biubug6"
        faces = detector.detect(np.zeros((240, 320, 3), np.uint8))
    assert [round(face.score, 6) for face in faces] == [0.9, 0.7]
    face, small = faces
    # model pixels: centre (91.2, 68.8), size 80×64; ×2 back to the image
    np.testing.assert_allclose(face.box, (102.4, 73.6, 262.4, 201.6), atol=1e-3)
    np.testing.assert_allclose(face.keypoints, np.array(
        [[81.6, 65.6], [94.4, 65.6], [88, 72], [81.6, 78.4], [94.4, 78.4]]) * 2, atol=1e-3)
    np.testing.assert_allclose(small.box, (24, 72, 56, 104), atol=1e-3)  # (12, 36, 28, 52) ×2


def test_retinaface_with_free_input_size_takes_the_image_as_it_is(tmp_path: Path):
    # symbolic H, W: a 150×130 image is only padded to 160×160 (multiples of 32), never resized
    path = biubug6_file(tmp_path / "free.onnx", free=True)
    with create_detector("retinaface", model=path) as detector:
        assert detector.input_size_ == (None, None)
        faces = detector.detect(np.zeros((130, 150, 3), np.uint8))
    np.testing.assert_allclose(faces[0].box, (51.2, 36.8, 131.2, 100.8), atol=1e-3)


def test_retinaface_normalises_as_each_reference_does(tmp_path: Path):
    canvas = np.zeros((160, 160, 3), np.uint8)
    canvas[:] = (10, 20, 255)  # BGR
    with create_detector("retinaface", model=biubug6_file(tmp_path / "b.onnx")) as detector:
        blob = detector._blob(canvas)
    np.testing.assert_allclose(blob[0, :, 0, 0], [10 - 104, 20 - 117, 255 - 123])  # BGR − mean
    with create_detector("retinaface", model=insightface_file(tmp_path / "i.onnx")) as detector:
        blob = detector._blob(canvas[:64, :64])
    np.testing.assert_allclose(blob[0, :, 0, 0], np.array([255, 20, 10]) / 128 - 127.5 / 128)


# --- retinaface, insightface layout (SCRFD with keypoints): 64×64 model, 128×64 image ---

def insightface_file(path: Path, *, keypoints: bool = True) -> Path:
    counts = {8: 8 * 8 * 2, 16: 4 * 4 * 2, 32: 2 * 2 * 2}  # cells × 2 anchors
    scores = {s: np.zeros((n, 1)) for s, n in counts.items()}
    boxes = {s: np.zeros((n, 4)) for s, n in counts.items()}
    kps = {s: np.zeros((n, 10)) for s, n in counts.items()}
    face = (1 * 4 + 2) * 2 + 1  # stride 16, row 1, col 2, second anchor: centre (32, 16)
    scores[16][face] = 0.85
    boxes[16][face] = [1, 0.5, 1, 1.5]  # ×16: box (16, 8, 48, 40)
    points = np.array([[28, 12], [36, 12], [32, 16], [29, 22], [35, 22]])
    kps[16][face] = ((points - [32, 16]) / 16).ravel()
    scores[16][face - 1] = 0.6  # the other anchor of the cell, same box: merged by NMS
    boxes[16][face - 1] = [1, 0.5, 1, 1.5]
    scores[8][0] = 0.45  # below the default threshold 0.5
    outputs = [(f"score_{s}", scores[s]) for s in counts] + \
        [(f"bbox_{s}", boxes[s]) for s in counts]
    if keypoints:
        outputs += [(f"kps_{s}", kps[s]) for s in counts]
    return onnx_file(path, outputs, size=(64, 64), inputs=("input.1",))


def test_retinaface_decodes_the_insightface_layout(tmp_path: Path):
    with create_detector("retinaface", model=insightface_file(tmp_path / "det.onnx")) as detector:
        assert detector.layout_ == "insightface"
        faces = detector.detect(np.zeros((64, 128, 3), np.uint8))
    assert [round(face.score, 6) for face in faces] == [0.85]
    np.testing.assert_allclose(faces[0].box, (32, 16, 96, 80), atol=1e-3)  # ×2 back
    np.testing.assert_allclose(faces[0].keypoints, [[56, 24], [72, 24], [64, 32], [58, 44],
                                                    [70, 44]], atol=1e-3)


@pytest.mark.parametrize(("make", "shape"), [(biubug6_file, (240, 320, 3)),
                                            (insightface_file, (64, 128, 3))])
def test_retinaface_decodes_every_frame_of_a_video_alike(tmp_path: Path, make, shape):
    # guards: the prior and anchor-centre tables of an input size are computed once (not per
    # frame, 0.7 ms at 640×640) and shared by every frame; a decode that changed them in place
    # would move the next frame's faces
    frame = np.zeros(shape, np.uint8)
    with create_detector("retinaface", model=make(tmp_path / "m.onnx")) as detector:
        first, second = detector.detect(frame), detector.detect(frame)
    assert first and len(first) == len(second)
    for face, again in zip(first, second):
        assert face.box == again.box and face.score == again.score
        np.testing.assert_array_equal(face.keypoints, again.keypoints)
    for table, again in ((biubug6_priors(height=160, width=160),
                          biubug6_priors(height=160, width=160)),
                         (insightface_centres(rows=4, cols=4, stride=16, anchors=2),
                          insightface_centres(rows=4, cols=4, stride=16, anchors=2))):
        assert table is again and not table.flags.writeable


def test_retinaface_refuses_scrfd_without_keypoints(tmp_path: Path):
    path = insightface_file(tmp_path / "scrfd_500m.onnx", keypoints=False)
    with pytest.raises(DetectorError, match="SCRFD without keypoint outputs") as caught:
        create_detector("retinaface", model=path)
    assert str(path) in str(caught.value)


# --- yolo-face: a 128×128 model; rows in letterboxed-input pixels ---

def yolo_rows() -> np.ndarray:
    """Rows cx, cy, w, h, obj, 5 keypoints, cls (yolov5-face's order)."""
    # the subject's right eye (listed first) sits on the image's right, as in a mirror
    points = [72, 56, 56, 56, 64, 64, 70, 74, 58, 74]
    rows = np.zeros((6, 16))
    rows[0] = [64, 64, 40, 48, 0.9, *points, 1.0]  # score 0.9
    rows[1] = [65, 64, 40, 48, 0.9, *points, 0.8]  # 0.72, IoU 0.95 with row 0: merged
    rows[2] = [20, 50, 16, 16, 0.8, *([20, 50] * 5), 0.9]  # 0.72, elsewhere: kept
    rows[3] = [100, 60, 16, 16, 0.9, *([100, 60] * 5), 0.6]  # 0.54: obj alone would pass
    return rows


def yolov8_columns() -> np.ndarray:
    """The same faces as ``yolo_rows`` as YOLOv8-face columns: cx, cy, w, h, score, 5 × (x, y,
    visibility)."""
    rows = yolo_rows()
    visibility = np.full((len(rows), 5, 1), 0.3)
    points = np.concatenate([rows[:, 5:15].reshape(-1, 5, 2), visibility], axis=2)
    return np.hstack([rows[:, :4], rows[:, 4:5] * rows[:, 15:16], points.reshape(-1, 15)]).T


@pytest.mark.parametrize("layout", ["yolov5-face", "yolov8-face"])
def test_yolo_face_letterboxes_and_maps_back_exactly(tmp_path: Path, layout: str):
    output = yolo_rows()[None] if layout == "yolov5-face" else yolov8_columns()[None]
    path = onnx_file(tmp_path / "yolo.onnx", [("output", output)], size=(128, 128))
    with create_detector("yolo-face", model=path) as detector:
        assert detector.layout_ == layout
        # 256×128 → ×0.5 to 128×64, 32 grey rows above: image = (input − (0, 32)) × 2
        faces = detector.detect(np.zeros((128, 256, 3), np.uint8))
    assert [round(face.score, 6) for face in faces] == [0.9, 0.72]
    face, small = faces
    np.testing.assert_allclose(face.box, (88, 16, 168, 112), atol=1e-3)
    np.testing.assert_allclose(face.keypoints, [[112, 48], [144, 48], [128, 64], [116, 84],
                                                [140, 84]], atol=1e-3)  # image-left first
    np.testing.assert_allclose(small.box, (24, 20, 56, 52), atol=1e-3)


def test_yolo_face_with_free_input_size_pads_without_scaling(tmp_path: Path):
    path = onnx_file(tmp_path / "free.onnx", [("output", yolov8_columns()[None])],
                     size=(128, 128), free=True)
    with create_detector("yolo-face", model=path) as detector:
        # 120×100 → 128×128 unscaled: left round(4 − 0.1) = 4, top round(14 − 0.1) = 14
        faces = detector.detect(np.zeros((100, 120, 3), np.uint8))
    np.testing.assert_allclose(faces[0].box, (40, 26, 80, 74), atol=1e-3)


def test_letterbox_pads_evenly_with_grey_and_the_blob_is_rgb_over_255():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:] = (0, 51, 255)  # BGR
    canvas, offset, factors = letterbox(image, height=128, width=128)
    # 128×43, 85 rows of pad: round(42.5 − 0.1) = 42 above, 43 below
    assert offset == (0, 42) and factors == (128 / 300, 43 / 100)
    assert (canvas[:42] == 114).all() and (canvas[85:] == 114).all()
    assert (canvas[42:85] == (0, 51, 255)).all()
    from neopain.faces.yolo_face import YoloFaceOnnx

    np.testing.assert_allclose(YoloFaceOnnx._blob(canvas)[0, :, 50, 0], [1.0, 0.2, 0.0])


def test_yolo_face_refuses_a_face_model_without_keypoints(tmp_path: Path):
    path = onnx_file(tmp_path / "yolov8n-face.onnx", [("output0", np.zeros((1, 5, 336)))],
                     size=(128, 128))
    with pytest.raises(DetectorError, match="YOLOv8 face model without keypoints") as caught:
        create_detector("yolo-face", model=path)
    assert str(path) in str(caught.value)


# --- opencv-ssd: a weightless Caffe net whose single prior's face score is set by the image ---

# The mean-subtracted image is averaged to 3 values; loc is 0 (the box is the prior, the centre
# 150×150 of 300×300) and the face score is softmax(0, blue − 104) = 1 / (1 + exp(104 − blue)).
TINY_SSD = """name: "tiny-ssd"
input: "data"
input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }
layer { name: "pool" type: "Pooling" bottom: "data" top: "feat"
  pooling_param { pool: AVE kernel_size: 300 stride: 300 } }
layer { name: "zero" type: "Power" bottom: "feat" top: "zero" power_param { scale: 0 } }
layer { name: "split" type: "Slice" bottom: "feat" top: "blue" top: "rest"
  slice_param { axis: 1 slice_point: 1 } }
layer { name: "zsplit" type: "Slice" bottom: "zero" top: "zero1" top: "zero2"
  slice_param { axis: 1 slice_point: 1 } }
layer { name: "loc4" type: "Concat" bottom: "zero" bottom: "zero1" top: "loc4" }
layer { name: "loc" type: "Flatten" bottom: "loc4" top: "mbox_loc" }
layer { name: "conf2" type: "Concat" bottom: "zero1" bottom: "blue" top: "conf2" }
layer { name: "conf" type: "Flatten" bottom: "conf2" top: "mbox_conf" }
layer { name: "conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "conf_reshape"
  reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }
layer { name: "conf_softmax" type: "Softmax" bottom: "conf_reshape" top: "conf_softmax"
  softmax_param { axis: 2 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_softmax" top: "conf_flat" }
layer { name: "prior" type: "PriorBox" bottom: "feat" bottom: "data" top: "prior"
  prior_box_param { min_size: 150.0 clip: false variance: 0.1 variance: 0.1 variance: 0.2
    variance: 0.2 step: 300 offset: 0.5 } }
"""
DETECTION_OUTPUT = """layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc"
  bottom: "conf_flat" bottom: "prior" top: "detection_out"
  detection_output_param { num_classes: 2 share_location: true background_label_id: 0
    nms_param { nms_threshold: 0.45 top_k: 400 } code_type: CENTER_SIZE keep_top_k: 200
    confidence_threshold: 0.2 } }
"""
WEIGHTS = b"\n\x08tiny-ssd"  # a NetParameter holding only its name: these layers have no weights


@pytest.fixture()
def ssd_files(tmp_path: Path) -> Path:
    (tmp_path / "deploy.prototxt").write_text(TINY_SSD + DETECTION_OUTPUT)
    model = tmp_path / "res10_300x300_ssd_iter_140000.caffemodel"
    model.write_bytes(WEIGHTS)
    return model


def coloured(blue: int, *, height: int = 300, width: int = 600) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = (blue, 177, 123)  # green and red at the mean: only blue moves the score
    return image


def test_opencv_ssd_maps_shares_to_pixels_and_keeps_the_threshold(ssd_files: Path):
    # config= left out: deploy.prototxt next to the model is used
    with create_detector("opencv-ssd", model=ssd_files) as detector:
        (face,) = detector.detect(coloured(106))
        # 0.27: passed by the net's own DetectionOutput (0.2), dropped by the threshold 0.5
        assert detector.detect(coloured(103)) == []
    assert face.score == pytest.approx(1 / (1 + np.exp(-2)), abs=1e-5)
    assert face.keypoints is None
    np.testing.assert_allclose(face.box, (150, 75, 450, 225))  # x by width, y by height
    with create_detector("opencv-ssd", model=ssd_files, threshold=0.25) as detector:
        assert [round(f.score, 4) for f in detector.detect(coloured(103))] == [0.2689]


def test_ssd_detections_leave_out_background_and_empty_rows_and_clip_to_the_image():
    detections = np.array([[[[0, 1, 0.9, -0.1, 0.2, 0.5, 1.2],    # clipped to the image
                             [0, 0, 0.8, 0.1, 0.1, 0.3, 0.3],     # class 0: background
                             [0, 1, 0.7, 0.4, 0.4, 0.4, 0.6],     # no width
                             [0, np.nan, 0.9, 0.1, 0.1, 0.3, 0.3],  # no class (int() raised)
                             [0, 1, 0.9, np.nan, 0.1, 0.3, 0.3],  # no corner (was a NaN box)
                             [0, 1, np.nan, 0.1, 0.1, 0.3, 0.3],  # no score
                             [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]]]])  # padding
    (face,) = faces_from_detections(detections, width=200, height=100)
    assert face.box == (0.0, 20.0, 100.0, 100.0) and face.score == pytest.approx(0.9)


def test_opencv_ssd_mean_is_an_option_checked_by_name(ssd_files: Path):
    # the training recipe's green mean, 117, instead of the samples' 177: the score moves
    with create_detector("opencv-ssd", model=ssd_files, mean=(104, 117, 123)) as detector:
        assert detector.detect(coloured(106)) != []
    with pytest.raises(DetectorError, match=r"mean=\(104, 177\) is not valid; valid: three"):
        create_detector("opencv-ssd", model=ssd_files, mean=(104, 177))


def test_a_resumed_run_sees_an_edited_network_file_found_next_to_the_weights(ssd_files: Path):
    # guards: the resume key hashed only option files, so a deploy.prototxt found next to the
    # weights could change and the old crops were kept as done
    settings = DetectSettings("opencv-ssd", {"model": ssd_files}, margin=0.25, size=224,
                              landmarks=False, align=False)
    before = settings.key()
    assert set(before["option_files"]) == {"model", "config"}
    (ssd_files.parent / "deploy.prototxt").write_text(TINY_SSD + DETECTION_OUTPUT + "\n# edited")
    assert settings.key() != before


def test_opencv_ssd_names_a_missing_or_empty_weights_file_before_looking_for_its_config(
        tmp_path: Path):
    # guards: the missing network file was blamed when the weights themselves were missing
    with pytest.raises(DetectorError, match="nosuch.caffemodel: file not found"):
        create_detector("opencv-ssd", model=tmp_path / "nosuch.caffemodel")
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(DetectorError, match=r"empty.caffemodel: the file is empty \(0 bytes\)"):
        create_detector("opencv-ssd", model=tmp_path / "empty.caffemodel")


def test_opencv_ssd_needs_its_config(ssd_files: Path, tmp_path: Path):
    (tmp_path / "deploy.prototxt").unlink()
    with pytest.raises(DetectorError, match="no config=PATH given and neither deploy.prototxt"):
        create_detector("opencv-ssd", model=ssd_files)


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("m.caffemodel", lambda p: p.write_bytes(b""), "the file is empty"),
        ("m.caffemodel", lambda p: p.mkdir(), "is a folder"),
        ("m.caffemodel", lambda p: None, "file not found"),
        ("m.caffemodel", lambda p: p.write_bytes(b"\xff\xfe garbage"), "not a Caffe net"),
        ("m.onnx", lambda p: p.write_bytes(WEIGHTS), "must be a .caffemodel or .pb file"),
    ],
)
def test_opencv_ssd_refuses_bad_weights(tmp_path: Path, name: str, write, message: str):
    (tmp_path / "deploy.prototxt").write_text(TINY_SSD + DETECTION_OUTPUT)
    path = tmp_path / name
    write(path)
    with pytest.raises(DetectorError) as caught:
        create_detector("opencv-ssd", model=path, config=tmp_path / "deploy.prototxt")
    text = str(caught.value)
    assert str(path) in text and message in text and "deploy.prototxt" in text


def test_opencv_ssd_refuses_a_net_without_detection_output(tmp_path: Path):
    (tmp_path / "net.prototxt").write_text(TINY_SSD)
    (tmp_path / "m.caffemodel").write_bytes(WEIGHTS)
    with pytest.raises(DetectorError, match="not one DetectionOutput"):
        create_detector("opencv-ssd", model=tmp_path / "m.caffemodel",
                        config=tmp_path / "net.prototxt")


# --- every family: bad files, no model, closing ---

def wrong_outputs(path: Path) -> Path:
    return onnx_file(path, [("boxes", np.zeros((1, 10, 15))), ("scores", np.zeros((1, 10, 2)))],
                     size=(64, 64))


@pytest.mark.parametrize("family", ["retinaface", "yolo-face"])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not a model"), "not a usable ONNX model"),
        (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "file not found"),
        (wrong_outputs, "outputs are 'boxes' [1, 10, 15], 'scores' [1, 10, 2]"),
        (lambda p: onnx_file(p, [("loc", np.zeros((1, 10, 4))), ("conf", np.zeros((1, 10, 2))),
                                 ("landms", np.zeros((1, 10, 5)))], size=(64, 64)),
         "'landms' [1, 10, 5]"),
        (lambda p: onnx_file(p, [("output", yolo_rows()[None])], size=(64, 64),
                             inputs=("image", "size")), "inputs are 'image'"),
    ],
)
def test_onnx_families_refuse_files_naming_the_layouts_accepted(tmp_path: Path, family: str,
                                                                make, message: str):
    path = tmp_path / "model.onnx"
    make(path)
    with pytest.raises(DetectorError) as caught:
        create_detector(family, model=path)
    text = str(caught.value)
    assert str(path) in text and message in text
    assert all(layout in text for layout in LAYOUT_NAMES[family])


def test_every_family_that_runs_a_model_file_is_tested_here_or_with_yunet():
    # guards: the memory loop of test_memory.py leaves out every family that needs a model
    # file, trusting this file to loop it; a new one missing from FILE_FAMILIES went unlooped
    needing = {name for name in list_detectors() if detector_class(name).needs_model}
    # onnx (YuNet) has its own tests in test_detectors.py, looped there when
    # NEOPAIN_YUNET_MODEL names a file
    assert needing == set(FILE_FAMILIES) | {"onnx"}


@pytest.mark.parametrize("family", FILE_FAMILIES)
def test_file_detectors_need_a_model(family: str):
    assert detector_class(family).needs_model  # the CLI gives --model only to these
    with pytest.raises(DetectorError, match="needs model=PATH") as caught:
        create_detector(family)
    assert all(layout in str(caught.value) for layout in LAYOUT_NAMES[family])


def small_model(family: str, folder: Path, ssd_files: Path) -> Path:
    """A tiny model file of ``family`` that finds a face in any image."""
    return {"retinaface": lambda: insightface_file(folder / "det.onnx"),
            "yolo-face": lambda: onnx_file(folder / "y.onnx", [("output", yolo_rows()[None])],
                                           size=(128, 128)),
            "opencv-ssd": lambda: ssd_files}[family]()


def resident_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


@pytest.mark.parametrize("family", FILE_FAMILIES)
def test_file_detectors_opened_and_closed_200_times_give_their_memory_back(
        family: str, tmp_path: Path, ssd_files: Path):
    # guards: a bedside stream reopens its detector when its settings change, for hours; a
    # session or net kept after close() grows memory by its size every time
    model = small_model(family, tmp_path, ssd_files)
    image = coloured(106, height=128, width=128)
    closed = []  # kept, as a stream keeps its detector object: close() must free what it holds

    def cycle() -> None:
        with create_detector(family, model=model) as detector:
            if not detector.detect(image):
                raise AssertionError(f"{family} must really find the face")
        closed.append(detector)

    for _ in range(5):
        cycle()
    gc.collect()
    before = resident_mb()
    for _ in range(200):
        cycle()
    gc.collect()
    grown = resident_mb() - before
    assert grown < 5, f"200 {family} detectors opened and closed grew memory by {grown:.1f} MB"


@pytest.mark.parametrize("family", FILE_FAMILIES)
def test_file_detectors_close_twice_and_refuse_work_after(family: str, tmp_path: Path,
                                                          ssd_files: Path):
    model = small_model(family, tmp_path, ssd_files)
    detector = create_detector(family, model=model)
    detector.detect(np.zeros((64, 64, 3), np.uint8))
    detector.close()
    detector.close()
    with pytest.raises(DetectorError, match="is closed"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))
