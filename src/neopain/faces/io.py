"""Read any image file a study brings as a BGR uint8 H×W×3 array, or fail with a clear error.

Pillow decodes (it reports truncated files, which OpenCV silently fills with grey, and it
applies EXIF orientation). Conversions:

- EXIF orientation is applied, so the array is the photo as a viewer shows it upright;
- grayscale (8- or 16-bit) is repeated into three channels;
- transparency (RGBA, LA, palette with a transparent colour) is composited on WHITE, the way
  viewers show it, so a transparent background does not turn into a black frame;
- 16-bit images are scaled to 8 bits by their full range (value / 257), not stretched per
  image, so that brightness means the same in every file; 32-bit integer images are read as
  16-bit values, float images as [0, 1] (values outside are clipped);
- CMYK, YCbCr and other modes go through Pillow's conversion to RGB.

Images with more than ``MAX_PIXELS`` pixels are refused before they are decoded (detectors
downscale large images anyway; such files are almost always broken or hostile).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from neopain.errors import NeopainError

MAX_PIXELS = 100_000_000
"""The largest image read, in pixels (width × height): 10,000 × 10,000."""

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIGNATURES = {
    b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "RIFF (WebP)",
}  # fmt: skip


class ImageReadError(NeopainError):
    """An image file that cannot be read: missing, empty, truncated, corrupt or unusable.

    ``path`` is the file and ``reason`` says what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read image: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[Path, str]]:
        # rebuilt from (path, reason) when it crosses a worker process boundary
        return (type(self), (self.path, self.reason))


def _file_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageReadError(path, f"the file cannot be opened ({error.strerror})") from None
    if not data:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    return data


def _open(path: Path, data: bytes) -> Image.Image:
    """Open and fully decode; size checks run on the header, before the pixels are decoded."""
    try:
        with warnings.catch_warnings():
            # our own MAX_PIXELS check below decides; Pillow's bomb warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageReadError(path, f"the image is larger than {MAX_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        kind = next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)
        if kind is None:
            reason = "not an image file (JPEG, PNG, TIFF, BMP, WebP, ... are read)"
        else:
            reason = f"the {kind} header is broken (for example a zero width or height)"
        raise ImageReadError(path, reason) from None
    except (OSError, SyntaxError, ValueError) as error:  # a header Pillow cannot parse
        raise ImageReadError(path, f"the file is corrupt: {error}") from None
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageReadError(path, f"the image has zero size ({width}×{height} pixels)")
    if width * height > MAX_PIXELS:
        raise ImageReadError(path, f"the image is {width}×{height} pixels, more than the "
                                   f"{MAX_PIXELS:,} pixels read (MAX_PIXELS)")
    try:
        image.load()
        # the transposed copy is fully decoded too; a broken EXIF block is one more way to fail
        return ImageOps.exif_transpose(image)
    except Exception as error:
        # decoders raise OSError, SyntaxError, ValueError, struct.error, ...: any of them means
        # this one file is broken, and a batch must go on
        detail = str(error) or type(error).__name__
        if "truncated" in detail:
            raise ImageReadError(path, "the file is truncated (it ends before the image "
                                       "data does)") from None
        raise ImageReadError(path, f"the file is corrupt ({detail})") from None


def _to_bgr(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        if mode == "F":
            values = np.clip(values, 0.0, 1.0) * 255.0
        else:
            values = np.clip(values, 0, 65535) / 257.0
        gray = np.round(values).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in _TRANSPARENT_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as a BGR uint8 H×W×3 array, upright (EXIF orientation applied).

    Grayscale, transparent, 16-bit and other modes are converted as the module docstring says.

    Raises:
        ImageReadError: missing, empty, unidentifiable, truncated or corrupt files, zero-size
            images and images over ``MAX_PIXELS``; the message names the file and the problem.
    """
    path = Path(path)
    image = _open(path, _file_bytes(path))
    return _to_bgr(image)
