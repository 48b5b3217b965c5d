"""The one image reader (read_image, decode_image, read_gray): every odd-but-valid file becomes an
upright BGR uint8 image with the right colours; every broken, hostile or non-regular file raises
ImageReadError naming the file and the problem (a batch over thousands of images must never stop
on a traceback or hang), and images over the caps are refused from their header."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import threading
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin
from skimage import data

from image_files import bmp_header_154, png_bomb, png_header
from neopain.data.files import FileReadError
from neopain.data.images import (
    ImageReadError, decode_image, image_size, read_gray, read_image,
)
from neopain.errors import NeopainError


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
    "header_only.bmp": (bmp_header_154(), "at most 40,000,000 are read"),
    "huge.png": (png_header(11_000, 10_000), "110,000,000 pixels; at most 40,000,000 are read "
                                             "(NEOPAIN_MAX_IMAGE_PIXELS)"),
    "bomb.png": (png_header(20_000, 20_000), "400,000,000 pixels; at most 40,000,000 are read"),
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
    assert error.source == path
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
    # the size from the header alone is the upright one too (explain places crops with it)
    assert image_size(path) == (upright.shape[1], upright.shape[0])


def test_cmyk_jpeg_is_converted(tmp_path: Path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(path, quality=100)  # red ink-wise
    out = read_image(path)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert out[..., 2].min() > 200 and out[..., :2].max() < 60


def test_image_read_error_pickles_for_worker_processes():
    error = pickle.loads(pickle.dumps(ImageReadError("a/b.jpg", "the file is empty")))
    assert error.source == "a/b.jpg" and "the file is empty" in str(error)
    assert str(error) == "a/b.jpg: cannot read image: the file is empty"


def test_image_read_error_is_a_file_read_error(tmp_path: Path):
    """ImageReadError copied FileReadError's shape without being one: `except FileReadError`
    around a reader missed unreadable images."""
    with pytest.raises(FileReadError) as caught:
        read_image(tmp_path / "missing.jpg")
    assert isinstance(caught.value, ImageReadError)
    assert caught.value.path == caught.value.source == tmp_path / "missing.jpg"
    assert caught.value.reason == "file not found"


def test_large_valid_image_is_read(tmp_path: Path):
    """Images over one band of rows are converted band by band: every pixel must come out as
    a single-pass conversion gives it (no seam, no band left out)."""
    path = tmp_path / "large.png"
    image = np.zeros((4000, 3000, 3), np.uint8)
    image[::7, ::5] = 255
    image[:, :, 1] = np.arange(4000, dtype=np.uint32)[:, None] % 251  # every row differs
    Image.fromarray(image).save(path, compress_level=1)
    read = read_image(path)
    assert read.shape == (4000, 3000, 3)
    np.testing.assert_array_equal(read[:, :, ::-1], image)


def test_large_transparent_and_16_bit_images_are_converted_exactly(tmp_path: Path):
    """The banded conversion of alpha (on white) and of 16-bit gray, checked against Pillow's
    single-pass conversion of the whole image."""
    rows = np.arange(1500, dtype=np.uint32)[:, None]
    rgba = np.dstack([np.broadcast_to((rows * 3) % 256, (1500, 2000)),
                      np.broadcast_to((rows * 5) % 256, (1500, 2000)),
                      np.full((1500, 2000), 90), np.broadcast_to(rows % 256, (1500, 2000))]
                     ).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png", compress_level=1)
    white = Image.new("RGBA", (2000, 1500), (255, 255, 255, 255))
    shown = np.asarray(Image.alpha_composite(white, Image.fromarray(rgba, "RGBA")).convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png")[:, :, ::-1], shown)
    gray = np.broadcast_to((rows * 37) % 65536, (1500, 2000)).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "gray16.png", compress_level=1)
    expected = np.round(gray / 257.0).astype(np.uint8)
    read = read_image(tmp_path / "gray16.png")
    np.testing.assert_array_equal(read, np.repeat(expected[:, :, None], 3, axis=2))


def test_png_bomb_is_a_real_image():
    """The bomb helper below must make a decodable PNG, or the bomb test proves nothing."""
    image = Image.open(io.BytesIO(png_bomb(700, 1100, rgba=True)))
    image.load()
    assert image.size == (700, 1100) and image.mode == "RGBA"


_BOMB_SCRIPT = """
import json, resource, sys, time
from neopain.data.files import FileReadError
from neopain.data.images import ImageReadError, decode_image, read_image
decode_image(open(sys.argv[1], "rb").read(), source="warm-up")
report = {}
for name, path, side in zip(sys.argv[2::3], sys.argv[3::3], sys.argv[4::3]):
    data = open(path, "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        if side == "file":
            read_image(path)
        else:
            decode_image(data, source=name, max_side=int(side) if side != "-" else None)
        reason = None
    except ImageReadError as error:
        reason = error.reason
    seconds = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    report[name] = {"ms": 1000 * seconds, "grown_mb": grown / 1024, "reason": reason,
                    "bytes": len(data)}
print(json.dumps(report))
"""


def test_pixel_bombs_are_refused_from_the_header_in_milliseconds_without_memory(tmp_path):
    """Issue 16's memory bombs: a 2.6 MB PNG of 30000×30000 pixels as a live frame raised the
    server's memory by 5.1 GB (decoded before its size was checked) and as a file took 11.8 s;
    a 389 KB 10000×10000 RGBA PNG passed the old 100 MP cap (+2.3 GB). Each is refused from
    its header: peak memory of a fresh interpreter grows < 20 MB, each answer within 0.5 s."""
    (tmp_path / "small.png").write_bytes(png_bomb(64, 48))
    (tmp_path / "30000.png").write_bytes(png_bomb(30_000, 30_000))
    (tmp_path / "rgba.png").write_bytes(png_bomb(10_000, 10_000, rgba=True))
    cases = [("frame", "30000.png", "1920"), ("upload", "30000.png", "-"),
             ("file", "30000.png", "file"), ("rgba upload", "rgba.png", "-"),
             ("rgba file", "rgba.png", "file")]
    args = [str(tmp_path / "small.png")]
    for name, file, side in cases:
        args += [name, str(tmp_path / file), side]
    done = subprocess.run([sys.executable, "-c", _BOMB_SCRIPT, *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ,
                                                       "NEOPAIN_MAX_IMAGE_PIXELS": "40000000"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 2_500_000 < report["frame"]["bytes"] < 2_700_000
    assert 300_000 < report["rgba file"]["bytes"] < 450_000
    for name, measured in report.items():
        assert measured["reason"] is not None, name
        assert "at most 40,000,000 are read (NEOPAIN_MAX_IMAGE_PIXELS)" in measured["reason"]
        assert measured["ms"] < 500 and measured["grown_mb"] < 20, (name, measured)
    assert report["rgba file"]["reason"].startswith("the image is 10000×10000 = 100,000,000")


def test_live_frames_are_refused_over_the_side_limit_from_the_header():
    """A live frame of 1921 pixels on a side is refused before decoding (the old frame decoder
    decoded first and checked the side after)."""
    wide = png_bomb(1921, 10)
    with pytest.raises(ImageReadError, match="1921×10 pixels; at most 1920 pixels on a side"):
        decode_image(wide, source="frame", max_side=1920)
    assert decode_image(png_bomb(1920, 10), source="frame", max_side=1920).shape == (10, 1920, 3)
    with pytest.raises(ImageReadError, match="^frame: cannot read image: no bytes"):
        decode_image(b"", source="frame")


def test_caps_are_parameters_and_settings(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    path.write_bytes(png_bomb(100, 50))
    with pytest.raises(ImageReadError, match=r"100×50 = 5,000 pixels; at most 4,999 are read$"):
        read_image(path, max_pixels=4_999)
    assert read_image(path, max_pixels=5_000).shape == (50, 100, 3)
    monkeypatch.setenv("NEOPAIN_MAX_IMAGE_PIXELS", "4999")
    with pytest.raises(ImageReadError, match=r"at most 4,999 are read \(NEOPAIN_MAX_IMAGE_PIX"):
        read_image(path)
    with pytest.raises(ValueError, match="max_pixels=0 is not valid; valid: an integer >= 1"):
        read_image(path, max_pixels=0)


def _in_thread(call, *, seconds: float = 10.0):
    """``call()``'s result or exception, or AssertionError if it does not return in time."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (it hangs)"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifos_devices_and_folders_are_refused_without_being_opened(tmp_path):
    """Issue 16: a FIFO named x.jpg hung ``neopain assess`` (the reader waited for a writer);
    /dev/zero would be read forever. Both are refused from os.stat, never opened."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    error = _in_thread(lambda: read_image(fifo))
    assert isinstance(error, ImageReadError)
    assert error.reason == "is a FIFO (named pipe), not a regular file; expected an image file"
    if os.path.exists("/dev/zero"):
        error = _in_thread(lambda: read_image("/dev/zero"))
        assert isinstance(error, ImageReadError) and "is a character device" in error.reason
    with pytest.raises(ImageReadError, match="is a folder; expected an image file"):
        read_image(tmp_path)


def test_names_too_long_and_unreadable_files_get_a_reason(tmp_path):
    """A name longer than the file system allows raised OSError (ENAMETOOLONG) past the
    reader's checks; permission problems must say so too."""
    with pytest.raises(ImageReadError, match="the file name is too long for the file system"):
        read_image(tmp_path / ("a" * 300 + ".jpg"))
    with pytest.raises(ImageReadError, match="the file name holds a NUL character"):
        read_image(str(tmp_path / "a\0.jpg"))
    locked = tmp_path / "locked.png"
    locked.write_bytes(png_bomb(4, 4))
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything
        pytest.skip("this user can read a file with mode 000")
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(locked)


def test_only_image_formats_are_opened(tmp_path):
    """Icons hold several sizes (the header's is not the one decoded) and EPS runs Ghostscript:
    files Pillow could open but that are no photo are refused."""
    icon = io.BytesIO()
    Image.new("RGB", (64, 64)).save(icon, "ICO", sizes=[(16, 16), (64, 64)])
    with pytest.raises(ImageReadError, match="not an image file of a format read here"):
        decode_image(icon.getvalue(), source="icon")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    with pytest.raises(ImageReadError, match="not an image file of a format read here"):
        decode_image(eps, source="eps")


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP", "PNG"])
def test_multi_frame_files_give_their_first_frame(fmt: str):
    first = Image.new("RGB", (40, 30), (200, 10, 10))
    second = Image.new("RGB", (40, 30), (10, 10, 200))
    buffer = io.BytesIO()
    first.save(buffer, fmt, save_all=True, append_images=[second], **(
        {"lossless": True} if fmt == "WEBP" else {}))
    out = decode_image(buffer.getvalue(), source=fmt)
    assert out.shape == (30, 40, 3)
    assert out[..., 2].min() > 150 and out[..., 0].max() < 60  # red, in BGR order


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_like_pillow(orientation: int):
    """The reader turns the BGR array itself (one copy, no Pillow copy of the full image): each
    of the 8 EXIF orientations must give exactly ImageOps.exif_transpose's pixels."""
    stored = noise((30, 50, 3), seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
    out = decode_image(buffer.getvalue(), source="exif")
    np.testing.assert_array_equal(out, expected[:, :, ::-1])
    assert out.flags.c_contiguous and out.flags.writeable


def test_read_gray_keeps_values_and_exact_refuses_colour(tmp_path):
    values = noise((7, 9), seed=6)
    (tmp_path / "g.png").write_bytes(encoded(values, ".png"))
    np.testing.assert_array_equal(read_gray(tmp_path / "g.png", exact=True), values)
    colour = noise((7, 9, 3), seed=7)
    (tmp_path / "c.png").write_bytes(encoded(colour, ".png"))
    gray = read_gray(tmp_path / "c.png")
    assert gray.shape == (7, 9) and gray.dtype == np.uint8
    assert np.abs(gray.astype(int) - cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)).max() <= 1
    with pytest.raises(ImageReadError, match="has mode RGB; valid: an 8-bit single-channel"):
        read_gray(tmp_path / "c.png", exact=True)


def _corrupt_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buffer, "JPEG", exif=exif.tobytes())
    data = bytearray(buffer.getvalue())
    data[data.index(b"Exif\0\0") + 10] = 0xFF  # the IFD offset points past the block
    return bytes(data)


def test_pillow_warnings_become_log_records_naming_the_file(tmp_path: Path, caplog, recwarn):
    """A corrupt EXIF block made Pillow print 'UserWarning: Corrupt EXIF data' on stderr, named
    no file, and garbled a batch's progress bar: it is a log record that names the image."""
    path = tmp_path / "cot-3.jpg"
    path.write_bytes(_corrupt_exif_jpeg())
    with caplog.at_level("WARNING", logger="neopain.data.images"):
        image = read_image(path)
    assert image.shape == (6, 8, 3)  # the pixels are fine; the turn is unknown
    assert not [w for w in recwarn if "EXIF" in str(w.message)]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: Corrupt EXIF data.  Expecting to read 2 bytes but only got 0. "]


def test_decode_image_never_swaps_the_process_warning_filters(monkeypatch):
    """decode_image ran warnings.catch_warnings per frame: it swapped the filters of every
    thread (live streams decode on several at once) and reset every module's once-registry.
    Its warnings now go out as warnings (logging.captureWarnings turns them into records)."""

    def swap(*args, **kwargs):
        raise AssertionError("decode_image swapped the warning filters")

    monkeypatch.setattr(warnings, "catch_warnings", swap)
    with pytest.warns(UserWarning, match="Corrupt EXIF data"):
        image = decode_image(_corrupt_exif_jpeg(), source="frame")
    assert image.shape == (6, 8, 3)


@pytest.mark.parametrize("shape, side, expected", [
    ((480, 640, 3), 320, (240, 320, 3)),
    ((1, 5000, 3), 1280, (1, 1280, 3)),  # never a zero side
    ((100, 80, 3), 320, (100, 80, 3)),  # fits: as it is
])
def test_fit_within_keeps_the_longest_side_at_most_side(shape, side, expected):
    from neopain.data.images import fit_within

    image = np.zeros(shape, np.uint8)
    assert fit_within(image, side=side).shape == expected


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_image_size_reads_the_header_alone(tmp_path: Path, ext: str):
    """``image_size`` is how explain learns an original's size without decoding it: a file cut
    after its header still gives its size there, while ``read_image`` refuses it."""
    whole = encoded(noise((300, 200, 3)), ext)
    path = tmp_path / f"cut{ext}"
    path.write_bytes(whole[:len(whole) // 3])
    with pytest.raises(ImageReadError):
        read_image(path)
    assert image_size(path) == (200, 300)


def _png_with_exif_after_pixels(pixels: np.ndarray, orientation: int) -> bytes:
    """A PNG whose eXIf chunk (the orientation) follows its pixel data, as libpng may write."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()[6:]  # without the "Exif\0\0" of JPEG's APP1
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]))
    png = encoded(pixels, ".png")
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def test_image_size_finds_a_png_orientation_after_the_pixels_without_decoding_them(
        tmp_path: Path, monkeypatch):
    """Bug: Pillow decodes a whole PNG to look for an eXIf chunk after its pixels, so
    ``image_size`` decoded every PNG original it was meant to spare."""
    path = tmp_path / "turned.png"
    path.write_bytes(_png_with_exif_after_pixels(noise((300, 200, 3)), 6))
    assert read_image(path).shape == (200, 300, 3)  # turned upright
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: decoded.append(self.format) or load(self))
    assert image_size(path) == (300, 200)
    assert decoded == [], "image_size decoded the pixels"


def test_image_size_turns_a_png_by_its_raw_profile_exif_as_read_image_does(tmp_path: Path):
    """ImageMagick keeps a PNG's EXIF in a "Raw profile type exif" text chunk; the header-only
    size must turn by it as ``read_image`` does."""
    exif = Image.Exif()
    exif[0x0112] = 6
    hexed = exif.tobytes()[6:].hex()
    text = PngImagePlugin.PngInfo()
    text.add_text("Raw profile type exif", f"\nexif\n{len(hexed) // 2}\n{hexed}")
    path = tmp_path / "profile.png"
    Image.fromarray(noise((300, 200, 3))).save(path, pnginfo=text)
    assert read_image(path).shape == (200, 300, 3)
    assert image_size(path) == (300, 200)
