"""``retinaface``: a user-supplied RetinaFace or SCRFD ONNX file, run with onnxruntime on the CPU.

Two export layouts are read; which one a file has is told from its graph's outputs.

**biubug6** — ``convert_to_onnx.py`` of biubug6/Pytorch_Retinaface (the mobilenet0.25 and the
resnet50 exports differ only in their backbone: same input, outputs and priors):

- one input, float32 1×3×H×W, BGR minus the mean (104, 117, 123), not scaled (``detect.py``);
- three outputs in this order, told apart by their last dimension (the export names only the
  first, ``output0``): loc 1×N×4, conf 1×N×2 (softmax of background, face), landms 1×N×10;
- N priors (``layers/functions/prior_box.py``, ``data/config.py``): for strides 8, 16, 32 with
  min sizes (16, 32), (64, 128), (256, 512), each cell of the ceil(H/s)×ceil(W/s) grid,
  row-major, has one prior per min size m: centre ((col + 0.5)·s, (row + 0.5)·s), size m×m;
- with variances 0.1 and 0.2 (``utils/box_utils.py`` ``decode``, ``decode_landm``): box
  centre = prior centre + loc[0:2]·0.1·m, box size = m·exp(loc[2:4]·0.2), keypoint k = prior
  centre + landms[2k:2k+2]·0.1·m; score = conf[1].

**insightface** — SCRFD and insightface's RetinaFace with keypoints, e.g. ``det_10g.onnx`` and
``det_500m.onnx`` of the buffalo packs (``python-package/insightface/model_zoo/scrfd.py``):

- one input, float32 1×3×H×W, RGB, (pixel − 127.5) / 128;
- 9 outputs (strides 8, 16, 32, two anchors per cell) or 15 (strides 8 to 128, one anchor):
  the scores of every stride, then the boxes of every stride, then the keypoints, each K×1,
  K×4, K×10 (or 1×K×…), K = (H/s)·(W/s)·anchors, cells row-major, a cell's anchors together;
- anchor centre c = (col·s, row·s); box = (c − d[0:2]·s, c + d[2:4]·s); keypoint k =
  c + kps[2k:2k+2]·s; the score is the output as it is (already a sigmoid). Files without
  keypoint outputs (6 or 10 outputs) are refused: every face here needs its 5 keypoints.

A model with a fixed H×W gets the image resized to fit (aspect kept) and padded right and below
with black; a model with free H and W gets the image as it is, padded right and below to a
multiple of the largest stride. Overlapping boxes are merged by non-maximum suppression at IoU
0.4 (``cv2.dnn.NMSBoxes``), the value of both references. The default threshold, 0.5, is
insightface's ``det_thresh`` (biubug6's demo draws faces from 0.6). Eyes and mouth corners are
re-ordered image-left first (``KEYPOINT_NAMES``). No model ships with neopain; pass
``model=PATH``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from neopain.faces.base import DetectorError, Face, image_left_first, register_detector
from neopain.faces.onnx_session import OnnxFileDetector

BIUBUG6_MEAN = (104.0, 117.0, 123.0)
BIUBUG6_STEPS = (8, 16, 32)
BIUBUG6_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
BIUBUG6_VARIANCES = (0.1, 0.2)
INSIGHTFACE_MEAN, INSIGHTFACE_STD = 127.5, 128.0
INSIGHTFACE_STRIDES = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
"""Number of outputs → (strides, anchors per cell)."""
_EXPECTED = ("a RetinaFace ONNX model in one of these layouts: 'biubug6' "
             "(biubug6/Pytorch_Retinaface's export: one input 1×3×H×W; outputs loc 1×N×4, "
             "conf 1×N×2, landms 1×N×10) or 'insightface' (SCRFD or insightface's RetinaFace "
             "with keypoints, e.g. det_10g.onnx: one input 1×3×H×W; 9 or 15 outputs: the scores "
             "(K×1), boxes (K×4) and keypoints (K×10) of each stride)")


def _last_dims(outputs: list[Any]) -> list[int | None]:
    return [o.shape[-1] if o.shape and isinstance(o.shape[-1], int) else None for o in outputs]


def _layout(outputs: list[Any]) -> str | None:
    """'biubug6', 'insightface', or None when the outputs match neither (a symbolic last
    dimension matches any; the sizes are checked again on every run)."""
    last = _last_dims(outputs)

    def widths_are(*expected: int) -> bool:
        return all(dim is None or dim == width for dim, width in zip(last, expected))

    if len(outputs) == 3 and widths_are(4, 2, 10):
        return "biubug6"
    if len(outputs) in INSIGHTFACE_STRIDES:
        count = len(outputs) // 3
        if widths_are(*[1] * count, *[4] * count, *[10] * count):
            return "insightface"
    return None


@functools.lru_cache(maxsize=4)
def biubug6_priors(*, height: int, width: int) -> np.ndarray:
    """biubug6's priors for an H×W input: (N, 3) rows of centre x, centre y, size, in pixels.

    Computed once per input size (every frame of a video has the same one) and read-only.
    """
    priors = []
    for step, sizes in zip(BIUBUG6_STEPS, BIUBUG6_MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.mgrid[:rows, :cols]
        centres = np.stack([(xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step], axis=1)
        for_each_size = np.repeat(centres, len(sizes), axis=0)
        size_column = np.tile(np.asarray(sizes, np.float64), rows * cols)[:, None]
        priors.append(np.hstack([for_each_size, size_column]))
    table = np.vstack(priors)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=16)
def insightface_centres(*, rows: int, cols: int, stride: int, anchors: int) -> np.ndarray:
    """The anchor centres (x, y) in pixels of a rows×cols grid of ``stride``, each repeated
    ``anchors`` times, row-major: computed once per grid and read-only."""
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1) * stride, anchors,
                        axis=0).astype(np.float64)
    centres.flags.writeable = False
    return centres


@register_detector("retinaface")
class RetinaFaceOnnx(OnnxFileDetector):
    """A RetinaFace or SCRFD ONNX file (layouts in the module docstring), on onnxruntime's CPU.

    Options as ``OnnxFileDetector``'s: ``model`` (the .onnx file), ``threshold`` (default
    0.5), ``max_side``, ``nms_threshold`` (default 0.4) and ``top_k``.

    Raises:
        DetectorError: no model given, a file that is missing, not ONNX, or in neither layout.
    """

    default_threshold = 0.5
    default_nms_threshold = 0.4
    has_keypoints = True
    expected = _EXPECTED

    def _check_graph(self, inputs: list[Any], outputs: list[Any], *, path: Path) -> str:
        problems = self._image_input_problems(inputs)
        layout = _layout(outputs)
        if layout is None:
            found = ", ".join(f"{o.name!r} {o.shape}" for o in outputs) or "none"
            problems.append(f"outputs are {found}")
            if len(outputs) in (6, 10):
                problems.append("this looks like SCRFD without keypoint outputs (use a model "
                                "with keypoints, e.g. det_10g.onnx or scrfd_*_bnkps)")
        if problems:
            raise DetectorError(f"{path}: {'; '.join(problems)}; expected {_EXPECTED}")
        return layout

    @property
    def strides_(self) -> tuple[int, ...]:
        """The feature strides of the file's layout."""
        if self.layout_ == "biubug6":
            return BIUBUG6_STEPS
        return INSIGHTFACE_STRIDES[len(self._live_session().get_outputs())][0]

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        pixels = canvas.astype(np.float32)
        if self.layout_ == "biubug6":
            pixels -= np.asarray(BIUBUG6_MEAN, np.float32)
        else:
            pixels = (pixels[..., ::-1] - INSIGHTFACE_MEAN) / INSIGHTFACE_STD
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        canvas, factors = self._fit_canvas(image, divisor=max(self.strides_))
        outputs = [np.asarray(value, dtype=np.float64) for value in self._run(self._blob(canvas))]
        decode = self._decode_biubug6 if self.layout_ == "biubug6" else self._decode_insightface
        boxes, scores, points = decode(outputs, canvas.shape[0], canvas.shape[1])
        keep = np.flatnonzero(scores >= self.threshold_)
        if not len(keep):
            return []
        boxes, scores, points = boxes[keep], scores[keep], points[keep]
        xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
        return [Face(box=tuple(float(v) for v in boxes[i] / np.tile(factors, 2)),
                     score=float(scores[i]),
                     keypoints=image_left_first(points[i] / factors))
                for i in self._suppress(xywh, scores)]

    def _sized(self, value: np.ndarray, rows: int, width: int, what: str, shape: str) -> np.ndarray:
        if value.size != rows * width:
            raise DetectorError(f"{self.model}: output {what} has {value.size} values; a {shape} "
                                f"input needs {rows}×{width}")
        return value.reshape(rows, width)

    def _decode_biubug6(self, outputs: list[np.ndarray], height: int,
                        width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        priors = biubug6_priors(height=height, width=width)
        shape, count = f"{width}×{height}", len(priors)
        loc = self._sized(outputs[0], count, 4, "loc", shape)
        conf = self._sized(outputs[1], count, 2, "conf", shape)
        landms = self._sized(outputs[2], count, 10, "landms", shape)
        centre, size = priors[:, :2], priors[:, 2:3]
        small, large = BIUBUG6_VARIANCES
        box_centre = centre + loc[:, :2] * small * size
        box_size = size * np.exp(loc[:, 2:4] * large)
        boxes = np.hstack([box_centre - box_size / 2, box_centre + box_size / 2])
        points = centre[:, None, :] + landms.reshape(-1, 5, 2) * small * size[:, :, None]
        return boxes, conf[:, 1], points

    def _decode_insightface(self, outputs: list[np.ndarray], height: int,
                            width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        strides, anchors = INSIGHTFACE_STRIDES[len(outputs)]
        count = len(strides)
        boxes, scores, points = [], [], []
        for index, stride in enumerate(strides):
            rows, cols = height // stride, width // stride
            cells = rows * cols * anchors
            shape = f"{width}×{height}"
            score = self._sized(outputs[index], cells, 1, f"{index} (scores, stride {stride})",
                                shape)[:, 0]
            distance = self._sized(outputs[index + count], cells, 4,
                                   f"{index + count} (boxes, stride {stride})", shape) * stride
            offsets = self._sized(outputs[index + 2 * count], cells, 10,
                                  f"{index + 2 * count} (keypoints, stride {stride})", shape)
            centre = insightface_centres(rows=rows, cols=cols, stride=stride, anchors=anchors)
            boxes.append(np.hstack([centre - distance[:, :2], centre + distance[:, 2:]]))
            scores.append(score)
            points.append(centre[:, None, :] + offsets.reshape(-1, 5, 2) * stride)
        return np.vstack(boxes), np.concatenate(scores), np.concatenate(points)
