"""The one image reader: files, uploads and live frames → BGR uint8 H×W×3, or ImageReadError.

Pillow decodes (it reports truncated files, which OpenCV silently fills with grey). The header
is read first and an image is refused *before* its pixels are decoded when it has more than
``max_pixels`` pixels (default ``NEOPAIN_MAX_IMAGE_PIXELS``, 40 MP) or, for live frames, a side
longer than ``max_side``. Only ``FORMATS`` are opened (JPEG, PNG, BMP, TIFF, WebP, GIF): no
icon containers whose largest entry is not the one in the header, no EPS (Ghostscript), no
rarely used decoders. Multi-frame files (GIF, TIFF, WebP, APNG, MPO) give their first frame,
whose size is the one checked.

Conversions, the same for every caller:

- EXIF orientation is applied, so the array is the photo as a viewer shows it upright;
- grayscale (8- or 16-bit) is repeated into three channels;
- transparency (RGBA, LA, palette with a transparent colour) is composited on WHITE, the way
  viewers show it, so a transparent background does not turn into a black frame;
- 16-bit images are scaled to 8 bits by their full range (value / 257), not stretched per
  image, so that brightness means the same in every file; 32-bit integer images are read as
  16-bit values, float images as [0, 1] (values outside are clipped);
- CMYK, YCbCr and other modes go through Pillow's conversion to RGB.

Metadata: Pillow itself bounds PNG text chunks (1 MB each once decompressed, 64 MB in all;
``PngImagePlugin.MAX_TEXT_CHUNK`` / ``MAX_TEXT_MEMORY``) and the ICC profile (1 MB); these
limits, like Pillow's own ``Image.MAX_IMAGE_PIXELS``, are global and left as they are.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import cv2
import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from neopain.config import get_settings
from neopain.data.files import FileReadError, open_regular

logger = logging.getLogger(__name__)

FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")
"""Pillow formats that are opened (JPEG includes MPO, a phone's multi-picture JPEG)."""

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIGNATURES = {
    b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "RIFF (WebP)",
}  # fmt: skip
# EXIF orientation → the numpy steps that turn the stored pixels upright (as
# PIL.ImageOps.exif_transpose does): flip rows, flip columns, then swap the two axes
_ORIENTATIONS = {2: (False, True, False), 3: (True, True, False), 4: (True, False, False),
                 5: (False, False, True), 6: (True, False, True), 7: (True, True, True),
                 8: (False, True, True)}
_VALID = "valid: " + ", ".join(FORMATS)
_BAND_PIXELS = 2_000_000  # pixels converted at once


class ImageReadError(FileReadError):
    """An image that cannot be read: missing, empty, truncated, corrupt, too large or unusable.

    ``source`` (``path``) is the file, or a label such as "upload" or "frame", and ``reason``
    says what is wrong with it. A ``FileReadError``, so ``except FileReadError`` catches both.
    """

    def _message(self) -> str:
        return f"{self.path}: cannot read image: {self.reason}"

    @property
    def source(self) -> str | os.PathLike[str]:
        """The file or label (``path`` by another name)."""
        return self.path


def _open_file(path: str | os.PathLike[str]) -> BinaryIO:
    """The file opened for reading; only regular, non-empty files are (a FIFO would block)."""
    try:
        file = open_regular(path, what="an image file")
    except FileReadError as error:
        raise ImageReadError(path, error.reason, missing=error.missing) from None
    if os.fstat(file.fileno()).st_size == 0:
        file.close()
        raise ImageReadError(path, "the file is empty (0 bytes)")
    return file


@functools.lru_cache(maxsize=4)
def _setting(variable: str | None) -> int:
    """The setting for one value of its variable: get_settings() takes ~3 ms, per image read
    that would add minutes to a training run."""
    return get_settings().max_image_pixels


def _cap(max_pixels: int | None) -> tuple[int, str]:
    if max_pixels is None:
        return _setting(os.environ.get("NEOPAIN_MAX_IMAGE_PIXELS")), " (NEOPAIN_MAX_IMAGE_PIXELS)"
    if max_pixels < 1:
        raise ValueError(f"max_pixels={max_pixels} is not valid; valid: an integer >= 1")
    return max_pixels, ""


def _unidentified(file: BinaryIO) -> str:
    file.seek(0)
    head = file.read(16)
    kind = next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), None)
    if kind is None:
        return f"not an image file of a format read here ({_VALID})"
    return f"the {kind} header is broken (for example a zero width or height)"


def _open(file: BinaryIO, *, source: str | os.PathLike[str], max_pixels: int | None,
          max_side: int | None, load: bool = True) -> Image.Image:
    """The first frame, decoded after its header passed the size checks (``load``: else
    only its header is read)."""
    cap, setting = _cap(max_pixels)
    try:
        image = Image.open(file, formats=FORMATS)
        width, height = image.size
    except Image.DecompressionBombError as error:
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(claimed[1]):,} pixels" if claimed else "more pixels than Pillow decodes"
        raise ImageReadError(source, f"the image is {size}; at most {cap:,} are "
                                     f"read{setting}") from None
    except UnidentifiedImageError:
        raise ImageReadError(source, _unidentified(file)) from None
    except Exception as error:  # any header parser failure: a broken file
        raise ImageReadError(source, f"the file is corrupt: {error or type(error).__name__}") \
            from None
    if width <= 0 or height <= 0:
        raise ImageReadError(source, f"the image has zero size ({width}×{height} pixels)")
    if width * height > cap:
        raise ImageReadError(source, f"the image is {width}×{height} = {width * height:,} "
                                     f"pixels; at most {cap:,} are read{setting}")
    if max_side is not None and max(width, height) > max_side:
        raise ImageReadError(source, f"the image is {width}×{height} pixels; at most "
                                     f"{max_side} pixels on a side are read")
    if not load:
        return image
    try:
        image.load()
    except Exception as error:  # OSError, SyntaxError, ValueError, struct.error,
        # EOFError ...: any of them means this one file is broken
        detail = str(error) or type(error).__name__
        if "truncated" in detail:
            raise ImageReadError(source, "the file is truncated (it ends before the image "
                                         "data does)") from None
        raise ImageReadError(source, f"the file is corrupt ({detail})") from None
    return image


def _orientation(image: Image.Image, *, source: str | os.PathLike[str]) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as error:  # a broken EXIF block
        raise ImageReadError(source, f"the EXIF block is corrupt ({error})") from None
    return value if value in _ORIENTATIONS else 1


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    if orientation == 1:
        return pixels
    flip_rows, flip_columns, swap = _ORIENTATIONS[orientation]
    pixels = pixels[::-1] if flip_rows else pixels
    pixels = pixels[:, ::-1] if flip_columns else pixels
    return np.ascontiguousarray(np.swapaxes(pixels, 0, 1) if swap else pixels)


def _gray_values(image: Image.Image) -> np.ndarray | None:
    """8-bit values of a 16-bit, 32-bit or float single-channel image; None for other modes."""
    mode = image.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return None
    values = np.asarray(image).astype(np.float64)
    values = np.clip(values, 0.0, 1.0) * 255.0 if mode == "F" else np.clip(values, 0, 65535) / 257
    return np.round(values).astype(np.uint8)


def _on_white(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in _TRANSPARENT_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image


def _to_bgr(image: Image.Image) -> np.ndarray:
    """The BGR array, converted in bands of rows so that no full-size temporary is made
    besides Pillow's image and the output (peak memory about 7 bytes a pixel, not 13)."""
    width, height = image.size
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        band = image if rows >= height else image.crop((0, top, width, bottom))
        gray = _gray_values(band)
        if gray is not None:
            cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR, dst=out[top:bottom])
            continue
        band = _on_white(band)
        rgb = np.asarray(band if band.mode == "RGB" else band.convert("RGB"))
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=out[top:bottom])
    return out


@contextmanager
def _warnings_logged(source: str | os.PathLike[str]) -> Iterator[None]:
    """Pillow's warnings about one file (corrupt EXIF ...) as log records that name it, not
    lines on stderr; its decompression-bomb warning is dropped (our cap decides).

    ``warnings.catch_warnings`` swaps the process-wide filters (Python 3.11 has no per-thread
    ones) and resets every module's once-registry, so only the file readers use it: a CLI batch
    reads one file at a time, and a warning without the file's name would be useless there.
    ``decode_image`` (uploads and live frames, decoded on several threads at once) never does;
    its warnings reach logging through ``logging.captureWarnings`` (the CLI's ``setup_logging``).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                if not issubclass(warning.category, Image.DecompressionBombWarning):
                    logger.warning("%s: %s", source, warning.message)


def _bgr(file: BinaryIO, *, source: str | os.PathLike[str], max_pixels: int | None,
         max_side: int | None) -> np.ndarray:
    with _open(file, source=source, max_pixels=max_pixels, max_side=max_side) as image:
        orientation = _orientation(image, source=source)
        bgr = _to_bgr(image)
    return _upright(bgr, orientation)  # turned after Pillow's image is closed


def fit_within(image: np.ndarray, *, side: int) -> np.ndarray:
    """``image`` scaled down (area averaging) so its longest side is at most ``side`` pixels,
    at least one pixel a side (a 1×5000 image does not become 0×1280); as it is when it fits."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray:
    """An image file as a BGR uint8 H×W×3 array, upright (EXIF orientation applied).

    Args:
        path: the file; folders, FIFOs, devices and sockets are refused without being opened.
        max_pixels: the largest width × height read; None: ``NEOPAIN_MAX_IMAGE_PIXELS``.

    Raises:
        ImageReadError: missing, unreadable, empty, unidentifiable, truncated or corrupt files,
            zero-size images and images over ``max_pixels``; the message names the file.
    """
    with _open_file(path) as file, _warnings_logged(path):
        return _bgr(file, source=path, max_pixels=max_pixels, max_side=None)


_MAX_EXIF_BYTES = 1 << 20
"""Far above any camera's EXIF block (JPEG caps it at 64 kB)."""


def _png_exif_after_pixels(file: BinaryIO) -> bytes:
    """A PNG's eXIf chunk placed after its pixel data (libpng may write it there), found by
    skipping from chunk to chunk; b"" when there is none. Pillow's ``getexif`` decodes the
    whole image to look for it."""
    file.seek(8)  # past the signature
    while len(header := file.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"eXIf":  # read at most what an EXIF block can hold: a forged length
            return file.read(min(length, _MAX_EXIF_BYTES))  # must not read a whole file
        if kind == b"IEND":
            break
        file.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    return b""


def image_size(path: str | os.PathLike[str], *, max_pixels: int | None = None
               ) -> tuple[int, int]:
    """(width, height) of an image file, upright as ``read_image`` returns it, from its header
    alone (no pixels are decoded).

    Raises:
        ImageReadError: as ``read_image`` for the header (a file broken further on is not
            noticed).
    """
    with _open_file(path) as file, _warnings_logged(path), \
            _open(file, source=path, max_pixels=max_pixels, max_side=None, load=False) as image:
        width, height = image.size
        if image.format == "PNG" and not {"exif", "Raw profile type exif"} & set(image.info):
            image.info["exif"] = _png_exif_after_pixels(file)  # else Pillow decodes it all
        orientation = _orientation(image, source=path)
    swap = orientation != 1 and _ORIENTATIONS[orientation][2]
    return (height, width) if swap else (width, height)


def decode_image(data: bytes, *, source: str, max_pixels: int | None = None,
                 max_side: int | None = None) -> np.ndarray:
    """Image bytes (an upload, a live frame) as a BGR uint8 H×W×3 array, like ``read_image``.

    Args:
        data: the encoded image.
        source: what the bytes are, for the message, e.g. "upload" or "frame".
        max_pixels: the largest width × height; None: ``NEOPAIN_MAX_IMAGE_PIXELS``.
        max_side: the longest side read (live frames: 1920); None: no side limit.

    Raises:
        ImageReadError: empty or broken bytes, or an image over a limit (from its header).
    """
    if not data:
        raise ImageReadError(source, "no bytes (an empty image)")
    return _bgr(io.BytesIO(data), source=source, max_pixels=max_pixels, max_side=max_side)


def read_gray(path: str | os.PathLike[str], *, max_pixels: int | None = None,
              exact: bool = False) -> np.ndarray:
    """An image file as a uint8 H×W array (heatmaps, masks), upright like ``read_image``.

    Colour images become Pillow's luma (ITU-R 601-2, as OpenCV's grayscale), transparency is
    flattened on white, 16-bit and float values are scaled as in ``read_image``.

    Args:
        path: the file.
        max_pixels: the largest width × height; None: ``NEOPAIN_MAX_IMAGE_PIXELS``.
        exact: read only 8-bit single-channel images, their values untouched (bit masks);
            anything else is refused.

    Raises:
        ImageReadError: as ``read_image``; with ``exact``, an image that is not 8-bit gray.
    """
    with _open_file(path) as file, _warnings_logged(path), _open(
            file, source=path, max_pixels=max_pixels, max_side=None) as image:
        if exact and image.mode != "L":
            raise ImageReadError(path, f"has mode {image.mode}; valid: an 8-bit "
                                       "single-channel image (mode L)")
        gray = _gray_values(image)
        if gray is None:
            gray = np.array(_on_white(image).convert("L"))
        return _upright(gray, _orientation(image, source=path))
