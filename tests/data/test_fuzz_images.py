"""Property: any bytes, and real PNG/JPEG/BMP/TIFF/WebP/GIF files with bytes changed, cut or
inserted, either decode to a BGR uint8 H×W×3 array within the caps or raise ImageReadError —
never another exception (issue 16: cv2.error from a 154-byte BMP stopped a whole batch) and
never an image over the caps (a header that lies must not buy a larger decode)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fuzz.inputs import examples
from image_files import bmp_header_154, png_bomb
from neopain.data.images import ImageReadError, decode_image, read_image

MAX_PIXELS = 200_000
MAX_SIDE = 1024
FUZZ = examples(150, deadline_ms=5000)


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every format read, in the modes cameras and tools write."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (24, 32, 4), dtype=np.uint8), "RGBA")
    gray16 = Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {}
    for name, image, fmt, options in [
        ("rgb.jpg", rgb, "JPEG", {"exif": exif.tobytes()}),
        ("progressive.jpg", rgb, "JPEG", {"progressive": True}),
        ("rgba.png", rgba, "PNG", {"exif": exif.tobytes()}),
        ("palette.png", rgb.convert("P"), "PNG", {"transparency": 0}),
        ("gray16.png", gray16, "PNG", {}),
        ("rgb.bmp", rgb, "BMP", {}),
        ("rgb.tiff", rgb, "TIFF", {"compression": "tiff_deflate"}),
        ("gray16.tiff", gray16, "TIFF", {}),
        ("rgba.webp", rgba, "WEBP", {"lossless": True}),
        ("two.gif", rgb.convert("P"), "GIF", {"save_all": True,
                                              "append_images": [rgb.convert("P")]}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        files[name] = buffer.getvalue()
    files["header.bmp"] = bmp_header_154()
    files["bomb.png"] = png_bomb(2000, 2000)
    return files


SEEDS = _seed_files()


@st.composite
def mutated(draw) -> bytes:
    """A seed file with a few bytes overwritten, cut short and/or bytes inserted; the header
    (where sizes live) is hit more often than the rest."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 6))):
        end = len(data) if draw(st.booleans()) else min(len(data), 64)
        data[draw(st.integers(0, max(end - 1, 0)))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        del data[draw(st.integers(1, len(data))):]
    return bytes(data)


def _check(call) -> None:
    try:
        image = call()
    except ImageReadError as error:
        assert error.reason and "Traceback" not in str(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    height, width = image.shape[:2]
    assert 0 < height * width <= MAX_PIXELS and max(height, width) <= MAX_SIDE


@FUZZ
@given(st.binary(max_size=4000))
def test_any_bytes_decode_within_the_caps_or_raise_image_read_error(data):
    _check(lambda: decode_image(data, source="fuzz", max_pixels=MAX_PIXELS, max_side=MAX_SIDE))


@FUZZ
@given(mutated())
def test_mutated_image_files_decode_within_the_caps_or_raise_image_read_error(data):
    _check(lambda: decode_image(data, source="fuzz", max_pixels=MAX_PIXELS, max_side=MAX_SIDE))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-images")


@examples(40, deadline_ms=5000)
@given(mutated())
def test_mutated_files_on_disk_read_within_the_cap_or_raise_image_read_error(folder, data):
    path = folder / "image"
    path.write_bytes(data)
    _check(lambda: read_image(path, max_pixels=MAX_PIXELS))


def test_every_seed_file_decodes():
    """The seeds are valid, so mutations start from images that exercise every decoder."""
    for name, data in SEEDS.items():
        if name in ("header.bmp", "bomb.png"):
            continue
        image = decode_image(data, source=name)
        assert image.shape[2] == 3 and image.dtype == np.uint8, name
