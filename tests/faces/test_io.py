"""read_image: every odd-but-valid file becomes an upright BGR uint8 image with the right
colours; every broken file raises ImageReadError naming the file and the problem (a batch over
thousands of images must never stop on a traceback)."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from neopain.errors import NeopainError
from neopain.faces.io import MAX_PIXELS, ImageReadError, read_image


def png_header(width: int, height: int) -> bytes:
    """A PNG file whose header claims ``width``×``height`` (the pixel data is never decoded)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def encoded(image: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def noise(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, size=shape, endpoint=True, dtype=dtype)


BAD_FILES = {
    "empty": (b"", "empty (0 bytes)"),
    "text.jpg": (b"patient notes, not a picture\n" * 20, "not an image file"),
    "truncated.jpg": (encoded(noise((200, 200, 3)), ".jpg")[:3000], "truncated"),
    "truncated.png": (encoded(noise((200, 200, 3)), ".png")[:30000], "truncated"),
    "junk_after_jpeg_magic.jpg": (b"\xff\xd8\xff\xe0" + b"junk" * 10, "corrupt"),
    "zero_width.png": (png_header(0, 10), "PNG header is broken"),
    "huge.png": (png_header(11_000, 10_000), f"more than the {MAX_PIXELS:,} pixels"),
    "bomb.png": (png_header(20_000, 20_000), f"larger than {MAX_PIXELS:,} pixels"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_image_read_error_naming_file_and_problem(tmp_path: Path, name: str):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    error = caught.value
    assert isinstance(error, NeopainError)  # the CLI prints it as "error: ..." with exit 1
    assert error.path == path
    assert reason in error.reason
    assert str(error).startswith(f"{path}: cannot read image: ")
    assert "Traceback" not in str(error) and "BytesIO" not in str(error)


def test_missing_file_and_folder_are_named(tmp_path: Path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


def test_colour_image_keeps_bgr_channel_order(tmp_path: Path):
    image = noise((30, 40, 3), seed=1)
    (tmp_path / "c.png").write_bytes(encoded(image, ".png"))
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), image)


def test_non_ascii_path(tmp_path: Path):
    image = noise((12, 16, 3), seed=2)
    path = tmp_path / "bebê_ação.png"
    path.write_bytes(encoded(image, ".png"))
    np.testing.assert_array_equal(read_image(path), image)


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_grayscale_8_and_16_bit_become_three_equal_channels(tmp_path: Path, ext: str):
    gray8 = noise((20, 30), seed=3)
    gray16 = noise((20, 30), seed=4, dtype=np.uint16)
    (tmp_path / f"g8{ext}").write_bytes(encoded(gray8, ext))
    (tmp_path / f"g16{ext}").write_bytes(encoded(gray16, ext))
    out8, out16 = read_image(tmp_path / f"g8{ext}"), read_image(tmp_path / f"g16{ext}")
    for out in (out8, out16):
        assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out8, np.repeat(gray8[:, :, None], 3, axis=2))
    # 16-bit is scaled by its full range (/257), not stretched per image
    expected16 = np.round(gray16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out16, np.repeat(expected16[:, :, None], 3, axis=2))


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_colour_is_scaled_to_8_bit_in_bgr_order(tmp_path: Path, ext: str):
    image = noise((20, 30, 3), seed=5, dtype=np.uint16)
    (tmp_path / f"c16{ext}").write_bytes(encoded(image, ext))
    out = read_image(tmp_path / f"c16{ext}")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.abs(out.astype(int) - image.astype(int) / 257).max() <= 1.0


def test_transparency_is_composited_on_white(tmp_path: Path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (10, 20, 250, 255)  # opaque, in BGRA as cv2 writes it
    rgba[0, 1] = (10, 20, 250, 0)  # fully transparent → white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black → mid grey
    (tmp_path / "a.png").write_bytes(encoded(rgba, ".png"))
    out = read_image(tmp_path / "a.png")
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], (10, 20, 250))
    np.testing.assert_array_equal(out[0, 1], (255, 255, 255))
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 1)


def test_palette_with_transparent_colour_is_composited_on_white(tmp_path: Path):
    image = Image.new("P", (4, 2), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    out = read_image(path)
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))  # transparent red → white
    np.testing.assert_array_equal(out[0, 1], (255, 0, 0))  # opaque blue, BGR


def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int):
    upright = astronaut_bgr()[::4, ::4]  # 128×128 is enough and keeps the test fast
    upright = np.ascontiguousarray(upright[:, :96])  # not square, so a missed turn shows
    # the pixels as a camera held sideways stores them; the tag says how to turn them upright
    stored = {3: np.rot90(upright, 2), 6: np.rot90(upright, 1), 8: np.rot90(upright, -1)}
    pil = Image.fromarray(np.ascontiguousarray(stored[orientation][:, :, ::-1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    pil.save(path, quality=95, exif=exif.tobytes())
    out = read_image(path)
    assert out.shape == upright.shape
    assert np.abs(out.astype(int) - upright.astype(int)).mean() < 6


def test_cmyk_jpeg_is_converted(tmp_path: Path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(path, quality=100)  # red ink-wise
    out = read_image(path)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert out[..., 2].min() > 200 and out[..., :2].max() < 60


def test_image_read_error_pickles_for_worker_processes():
    error = pickle.loads(pickle.dumps(ImageReadError("a/b.jpg", "the file is empty")))
    assert error.path == Path("a/b.jpg") and "the file is empty" in str(error)


def test_large_valid_image_is_read(tmp_path: Path):
    path = tmp_path / "large.png"
    image = np.zeros((4000, 3000, 3), np.uint8)
    image[::7, ::5] = 255
    Image.fromarray(image).save(path, compress_level=1)
    assert read_image(path).shape == (4000, 3000, 3)

