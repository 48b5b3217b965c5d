"""Detectors, each registered family through ``list_detectors()``: the astronaut's face is found
by all that look at pixels, their boxes agree, keypoints sit on the visible anatomy, the crop
holds them; coffee has no face; EXIF-rotated and huge images work; the onnx family decodes
YuNet outputs exactly and refuses files that are not YuNet; detectors release what they hold."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from neopain.faces.base import (
    DetectorError,
    Face,
    choose_face,
    create_detector,
    iou,
    list_detectors,
)
from neopain.faces.benchmark import MODEL_FILE_VARIABLES
from neopain.faces.crop import crop_face
from neopain.data.images import read_image
from neopain.faces.mediapipe import keypoints_from_blazeface
from neopain.faces.opencv import score_from_weight

FAMILIES = {"manifest", "mediapipe-short", "mediapipe-full", "opencv-haar", "onnx", "centerface",
            "mtcnn", "dlib-hog", "retinaface", "yolo-face", "opencv-ssd"}
# the astronaut's pupils, nose tip and mouth corners, read by eye at 8× zoom (image-left first)
ANATOMY = np.array([[202.5, 102.0], [245.5, 103.0], [223.0, 127.5], [203.0, 140.0],
                    [245.0, 140.0]])
EYE_DISTANCE = float(np.linalg.norm(ANATOMY[1] - ANATOMY[0]))
# the detectors that run a model file of the user's: the environment variable naming one here
YUNET_MODEL = os.environ.get("NEOPAIN_YUNET_MODEL")


def options_for(name: str) -> dict | None:
    """Options to build ``name`` on pixels, or None when it cannot look at pixels here."""
    if name == "manifest":
        return None  # looks at no pixels: it returns the manifest's own box (tested below)
    if name in MODEL_FILE_VARIABLES:
        model = os.environ.get(MODEL_FILE_VARIABLES[name])
        return {"model": model} if model else None
    return {}


PIXEL_DETECTORS = [name for name in list_detectors() if options_for(name) is not None]


def needs_pixels(name: str) -> dict:
    options = options_for(name)
    if options is None:
        reason = (f"set {MODEL_FILE_VARIABLES[name]} to its model file"
                  if name in MODEL_FILE_VARIABLES else "the manifest detector looks at no pixels")
        pytest.skip(reason)
    return options


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def astronaut_faces(astronaut: np.ndarray) -> dict[str, Face | None]:
    faces = {}
    for name in PIXEL_DETECTORS:
        with create_detector(name, **options_for(name)) as detector:
            faces[name] = choose_face(detector.detect(astronaut), image_shape=astronaut.shape)
    return faces


def test_every_family_is_registered():
    assert set(list_detectors()) == FAMILIES


@pytest.mark.parametrize("name", list_detectors())
def test_finds_the_astronaut(name: str, astronaut_faces: dict):
    needs_pixels(name)
    face = astronaut_faces[name]
    assert face is not None
    x1, y1, x2, y2 = face.box
    assert x1 < ANATOMY[:, 0].min() and ANATOMY[:, 0].max() < x2  # eyes to mouth corners
    assert y1 < ANATOMY[:, 1].min() and ANATOMY[:, 1].max() < y2
    assert x2 - x1 < 3 * EYE_DISTANCE  # the face, not the whole picture


def test_boxes_of_different_detectors_overlap(astronaut_faces: dict):
    assert len(astronaut_faces) >= 3
    for (a, face_a), (b, face_b) in itertools.combinations(astronaut_faces.items(), 2):
        assert iou(face_a.box, face_b.box) >= 0.5, (a, b)


@pytest.mark.parametrize("name", list_detectors())
def test_keypoints_sit_on_the_visible_anatomy(name: str, astronaut_faces: dict):
    needs_pixels(name)
    face = astronaut_faces[name]
    if face.keypoints is None:
        assert not create_detector(name, **options_for(name)).has_keypoints
        pytest.skip(f"{name} gives no keypoints")
    error = np.linalg.norm(face.keypoints - ANATOMY, axis=1) / EYE_DISTANCE
    assert (error[:3] < 0.15).all(), error  # eyes and nose: detected
    # mouth corners: MediaPipe's are estimated from the mouth centre (module docstring); the
    # astronaut smiles, which lifts her real corners above the estimate
    assert (error[3:] < 0.35).all(), error
    x = face.keypoints[:, 0]
    assert x[0] < x[1] and x[3] < x[4]  # image-left first


@pytest.mark.parametrize("name", list_detectors())
@pytest.mark.parametrize("align", [False, True])
def test_crop_contains_the_five_keypoints(name: str, align: bool, astronaut: np.ndarray,
                                          astronaut_faces: dict):
    needs_pixels(name)
    face = astronaut_faces[name]
    own = ANATOMY if face.keypoints is None else face.keypoints
    points = np.vstack([own, ANATOMY])
    crop = crop_face(astronaut, face.box, margin=0.25, size=(224, 224), keypoints=points,
                     align=align)
    assert ((crop.keypoints >= 0) & (crop.keypoints < 224)).all()


@pytest.mark.parametrize("name", list_detectors())
def test_no_face_in_coffee(name: str):
    coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    options = {} if name == "manifest" else needs_pixels(name)
    with create_detector(name, **options) as detector:
        assert detector.detect(coffee) == []


def test_manifest_detector_returns_the_prior_with_score_one_through_downscaling():
    image = np.zeros((600, 900, 3), np.uint8)
    keypoints = ANATOMY + 300
    prior = Face((480.0, 360.0, 580.0, 470.0), 0.3, keypoints)
    with create_detector("manifest", max_side=300) as detector:  # factor 1/3 and back
        (face,) = detector.detect(image, prior=prior)
        assert detector.detect(image) == []
    assert face.score == 1.0
    np.testing.assert_allclose(face.box, prior.box)
    np.testing.assert_allclose(face.keypoints, keypoints)


def exif_rotated_jpeg(image: np.ndarray, path: Path) -> Path:
    """Save ``image`` as a camera held sideways would: pixels turned, EXIF tag 6 to undo it."""
    stored = np.ascontiguousarray(np.rot90(image, 1)[:, :, ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("name", list_detectors())
def test_exif_rotated_photo_is_detected_upright(name: str, tmp_path: Path, astronaut: np.ndarray,
                                                astronaut_faces: dict):
    options = needs_pixels(name)
    image = read_image(exif_rotated_jpeg(astronaut, tmp_path / "sideways.jpg"))
    assert image.shape == astronaut.shape
    with create_detector(name, **options) as detector:
        face = choose_face(detector.detect(image), image_shape=image.shape)
    assert face is not None and iou(face.box, astronaut_faces[name].box) >= 0.8


HUGE_SCALE, HUGE_OFFSET = 8, np.array([700.0, 1804.0])


@pytest.fixture(scope="module")
def huge_image(astronaut: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A 6000×6000 photo with the astronaut pasted in 8× larger, read back from a JPEG file."""
    canvas = np.full((6000, 6000, 3), 190, np.uint8)
    big = cv2.resize(astronaut, None, fx=HUGE_SCALE, fy=HUGE_SCALE, interpolation=cv2.INTER_LINEAR)
    x, y = HUGE_OFFSET.astype(int)
    canvas[y : y + big.shape[0], x : x + big.shape[1]] = big
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return read_image(path)


@pytest.mark.parametrize("name", list_detectors())
def test_huge_image_is_downscaled_and_boxes_map_back(name: str, huge_image: np.ndarray,
                                                     astronaut_faces: dict):
    options = needs_pixels(name)
    with create_detector(name, **options) as detector:
        face = choose_face(detector.detect(huge_image), image_shape=huge_image.shape)
    assert face is not None
    expected = np.array(astronaut_faces[name].box) * HUGE_SCALE + np.tile(HUGE_OFFSET, 2)
    assert iou(face.box, tuple(expected)) >= 0.6
    if face.keypoints is not None:
        # the short-range model sees this face 16 px wide: its keypoints are rough, but a
        # keypoint not mapped back would be thousands of pixels off
        error = np.linalg.norm(face.keypoints - (ANATOMY * HUGE_SCALE + HUGE_OFFSET), axis=1)
        assert (error < 0.6 * EYE_DISTANCE * HUGE_SCALE).all(), error


@pytest.mark.parametrize("name", PIXEL_DETECTORS)
def test_closed_detector_refuses_work_and_closes_twice(name: str, astronaut: np.ndarray):
    detector = create_detector(name, **options_for(name))
    with detector:
        assert detector.detect(astronaut)
    detector.close()
    with pytest.raises(DetectorError, match="closed"):
        detector.detect(astronaut)


def resident_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_creating_detecting_and_closing_in_a_loop_does_not_leak(astronaut: np.ndarray):
    # a bedside stream runs for hours: graphs and sessions must be released on close (without
    # MediaPipe's close() each cycle kept about 5 MB and 2 threads: 40 cycles grow > 200 MB)
    frame = cv2.resize(astronaut, (320, 320))
    small = cv2.resize(astronaut, (160, 160))

    def cycle() -> None:
        for name in PIXEL_DETECTORS:
            with create_detector(name, **options_for(name)) as detector:
                detector.detect(small)

    with create_detector("mediapipe-short") as detector:
        for _ in range(20):
            detector.detect(frame)
        for _ in range(5):
            cycle()
        before, threads = resident_mb(), thread_count()
        for _ in range(1000):
            assert detector.detect(frame)
    for _ in range(40):
        cycle()
    assert resident_mb() - before < 50
    assert thread_count() <= threads


def test_haar_score_mapping_is_monotonic_with_half_at_1_5():
    weights = np.linspace(-3, 8, 50)
    scores = [score_from_weight(w) for w in weights]
    assert np.all(np.diff(scores) > 0) and 0 < min(scores) and max(scores) < 1
    assert score_from_weight(1.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scale_factor": 1.0}, "scale_factor=1.0 must be greater than 1"),
        ({"min_neighbors": -1}, "min_neighbors=-1"),
        ({"min_size": 0}, "min_size=0"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"colour": "red"}, "detector 'opencv-haar'"),
    ],
)
def test_bad_haar_options_name_the_parameter(options: dict, message: str):
    with pytest.raises(DetectorError, match=message):
        create_detector("opencv-haar", **options)


def test_blazeface_keypoints_put_image_left_eye_first_and_straddle_mouth_centre():
    # subject's right eye, left eye, nose, mouth centre, ears: here the face is seen mirrored
    points = np.array([[60.0, 40.0], [20.0, 40.0], [40.0, 55.0], [40.0, 70.0], [70, 45], [10, 45]])
    kp = keypoints_from_blazeface(points)
    np.testing.assert_allclose(kp[:3], [[20, 40], [60, 40], [40, 55]])
    np.testing.assert_allclose(kp[3:], [[24, 70], [56, 70]])  # mouth 0.8 eye distances wide


# --- onnx: a tiny model with YuNet's input and outputs, whose constant outputs encode faces ---

OUTPUT_WIDTHS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}


def yunet_file(path: Path, cells: dict, *, size: tuple[int, int] = (640, 640),
               input_name: str = "input", leave_out: tuple[str, ...] = ()) -> Path:
    """Write an ONNX model shaped like YuNet whose outputs are zero except at ``cells``:
    {(stride, row, col): {"cls": .., "obj": .., "bbox": [4], "kps": [10]}}."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width = size
    nodes, outputs = [], []
    for kind, stride in itertools.product(OUTPUT_WIDTHS, (8, 16, 32)):
        name = f"{kind}_{stride}"
        if name in leave_out:
            continue
        cols = width // stride
        values = np.zeros((1, (height // stride) * cols, OUTPUT_WIDTHS[kind]), np.float32)
        for (s, row, col), cell in cells.items():
            if s == stride:
                values[0, row * cols + col] = cell[kind]
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=numpy_helper.from_array(values, name)))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, values.shape))
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, height, width])
    graph = helper.make_graph(nodes, "yunet-shaped", [image], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def cell(stride: int, row: int, col: int, *, cls: float, obj: float, box: tuple,
         points: list[tuple[float, float]]) -> dict:
    """Raw YuNet outputs for a face with centre/size ``box`` (cx, cy, w, h) and ``points``
    in model-input pixels (right eye, left eye, nose, right and left mouth corner)."""
    cx, cy, w, h = box
    bbox = [cx / stride - col, cy / stride - row, np.log(w / stride), np.log(h / stride)]
    kps = [v for x, y in points for v in (x / stride - col, y / stride - row)]
    return {(stride, row, col): {"cls": cls, "obj": obj, "bbox": bbox, "kps": kps}}


# model-input pixels; the test feeds a 1280×720 image, so the model sees it at half size
KNOWN_POINTS = [(300, 130), (356, 130), (328, 170), (305, 205), (350, 205)]
KNOWN_FACE = cell(16, 10, 20, cls=0.81, obj=1.0, box=(328, 164, 128, 160), points=KNOWN_POINTS)
DUPLICATE = cell(8, 20, 41, cls=0.7, obj=0.7, box=(330, 166, 120, 150), points=KNOWN_POINTS)
SMALL_FACE = cell(32, 15, 3, cls=0.8, obj=0.8, box=(112, 496, 64, 64),
                  points=[(100, 490), (124, 490), (112, 500), (104, 512), (120, 512)])
WEAK_FACE = cell(32, 2, 16, cls=0.5, obj=0.5, box=(528, 80, 64, 64), points=[(528, 80)] * 5)


@pytest.fixture()
def yunet(tmp_path: Path) -> Path:
    return yunet_file(tmp_path / "yunet.onnx", KNOWN_FACE | DUPLICATE | SMALL_FACE | WEAK_FACE)


def test_onnx_decodes_yunet_outputs_to_the_known_faces(yunet: Path):
    image = np.zeros((720, 1280, 3), np.uint8)
    with create_detector("onnx", model=yunet) as detector:
        faces = detector.detect(image)
    # the duplicate (IoU > 0.3 with the known face, lower score) goes to NMS, the weak face
    # (score 0.5 < 0.6) to the threshold
    assert [round(face.score, 6) for face in faces] == [0.9, 0.8]  # sqrt(cls · obj)
    known, small = faces
    np.testing.assert_allclose(known.box, (528, 168, 784, 488), atol=1e-3)  # ×2 back
    np.testing.assert_allclose(known.keypoints, np.array(KNOWN_POINTS) * 2, atol=1e-3)
    np.testing.assert_allclose(small.box, (160, 928, 288, 1056), atol=1e-3)


def test_onnx_orders_keypoints_image_left_first(tmp_path: Path):
    # YuNet names eyes and mouth corners by the subject's side; a face seen from behind a
    # mirror (or upside down) has the subject's right eye on the image's right
    mirrored = [(356, 130), (300, 130), (328, 170), (350, 205), (305, 205)]
    path = yunet_file(tmp_path / "m.onnx",
                      cell(16, 10, 20, cls=1, obj=1, box=(328, 164, 128, 160), points=mirrored))
    with create_detector("onnx", model=path) as detector:
        (face,) = detector.detect(np.zeros((640, 640, 3), np.uint8))
    np.testing.assert_allclose(face.keypoints, KNOWN_POINTS, atol=1e-3)


def test_onnx_with_free_input_size_pads_to_multiples_of_32(tmp_path: Path):
    # a model with symbolic H, W: the image is only padded (scale 1), never resized
    import onnx

    path = yunet_file(tmp_path / "free.onnx", {}, size=(96, 160))
    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    onnx.save(model, path)
    with create_detector("onnx", model=path) as detector:
        assert detector.input_size_ == (None, None)
        canvas, factors = detector._fit_canvas(np.full((70, 150, 3), 7, np.uint8), divisor=32)
    assert canvas.shape == (96, 160, 3) and factors.tolist() == [1.0, 1.0]
    assert (canvas[:70, :150] == 7).all() and canvas[70:].sum() == 0 and canvas[:, 150:].sum() == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not a model"), "not a usable ONNX model"),
        (lambda p: yunet_file(p, {}, input_name="data"), "inputs are 'data'"),
        (lambda p: yunet_file(p, {}, leave_out=("kps_32", "obj_8")), "obj_8, kps_32 are missing"),
        (lambda p: None, "file not found"),
    ],
)
def test_onnx_refuses_files_that_are_not_yunet(tmp_path: Path, make, message: str):
    path = tmp_path / "model.onnx"
    make(path)
    with pytest.raises(DetectorError) as caught:
        create_detector("onnx", model=path)
    text = str(caught.value)
    assert str(path) in text and message in text
    assert "input 'input' (1×3×H×W)" in text  # says what was expected


def test_onnx_needs_a_model():
    with pytest.raises(DetectorError, match="needs model=PATH"):
        create_detector("onnx")


@pytest.mark.skipif(not YUNET_MODEL, reason="set NEOPAIN_YUNET_MODEL to a YuNet .onnx file")
def test_real_yunet_model_finds_the_astronaut(astronaut: np.ndarray, astronaut_faces: dict):
    with create_detector("onnx", model=YUNET_MODEL) as detector:
        face = choose_face(detector.detect(astronaut), image_shape=astronaut.shape)
    assert face is not None
    assert iou(face.box, astronaut_faces["mediapipe-short"].box) >= 0.5
    error = np.linalg.norm(face.keypoints - ANATOMY, axis=1) / EYE_DISTANCE
    assert (error < 0.2).all(), error
