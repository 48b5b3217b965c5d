"""Hostile image and video bytes (hypothesis): small real files made from the astronaut in
every format and mode, mutations of them, crafted headers that declare huge sizes, and
decompression bombs (``bombs``: a few MB that decode to gigabytes; too slow to generate at
random, so callers add them as fixed inputs)."""

from __future__ import annotations

import functools
import io
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from hypothesis import strategies as st
from PIL import Image
from skimage import data as skdata

from image_files import bmp_header_154, png_bomb, png_header

SIZES = [0, 1, 2, 1921, 5000, 30000, 65500, 65535, 2**31 - 1, 2**32 - 1]
"""Declared widths and heights of crafted headers."""


@functools.cache
def astronaut(side: int = 48) -> np.ndarray:
    """The astronaut as a small RGB array."""
    return cv2.resize(skdata.astronaut(), (side, side), interpolation=cv2.INTER_AREA)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.cache
def seeds() -> dict[str, bytes]:
    """Small valid files: every format the readers take, in several modes."""
    rgb = Image.fromarray(astronaut())
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90°
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return {
        "png": encode(rgb, "PNG"), "png-rgba": encode(rgba, "PNG"),
        "png-16bit": encode(Image.fromarray((np.asarray(rgb.convert("L")) * 257)
                                            .astype(np.uint16)), "PNG"),
        "png-palette-alpha": encode(palette, "PNG", transparency=0),
        "jpeg": encode(rgb, "JPEG", quality=80),
        "jpeg-exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        "jpeg-progressive": encode(rgb, "JPEG", progressive=True),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"), "bmp": encode(rgb, "BMP"),
        "tiff": encode(rgb, "TIFF", compression="tiff_deflate"),
        "webp": encode(rgb, "WEBP"), "gif": encode(palette, "GIF"),
        "gif-animated": encode(palette, "GIF", save_all=True, append_images=[palette.rotate(90)]),
    }  # fmt: skip


@functools.cache
def frame_jpeg() -> bytes:
    """A 320×240 JPEG camera frame with the astronaut's face."""
    canvas = np.full((240, 320, 3), 40, np.uint8)
    canvas[:, 40:280] = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR),
                                   (240, 240))
    return cv2.imencode(".jpg", canvas)[1].tobytes()


@functools.cache
def tiny_video() -> bytes:
    """A 1-second 64×48 MJPG AVI at 5 frames per second."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
        for shift in range(5):
            writer.write(np.roll(cv2.resize(astronaut(), (64, 48)), shift * 3, axis=1))
        writer.release()
        return path.read_bytes()


def crafted(fmt: str, width: int, height: int) -> bytes:
    """A header of ``fmt`` declaring ``width`` × ``height`` pixels, with almost no pixel data."""
    w16, h16 = width & 0xFFFF, height & 0xFFFF
    if fmt == "png":
        return png_header(width & 0xFFFFFFFF, height & 0xFFFFFFFF)
    if fmt == "bmp":
        info = struct.pack("<IiiHHIIiiII", 40, width & 0x7FFFFFFF, -(height & 0x7FFFFFFF), 1,
                           24, 0, 0, 2835, 2835, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + b"\x00" * 64
    if fmt == "gif":
        return (b"GIF89a" + struct.pack("<HHBBB", w16, h16, 0, 0, 0)
                + b"," + struct.pack("<HHHHB", 0, 0, w16, h16, 0) + b"\x02\x02\x44\x01\x00;")
    if fmt == "jpeg":
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h16, w16, 3) + bytes(
            [1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
        return b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 64
    if fmt == "tiff":
        entries = [(256, 4, 1, width & 0xFFFFFFFF), (257, 4, 1, height & 0xFFFFFFFF),
                   (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
                   (277, 3, 1, 1), (279, 4, 1, 64)]
        ifd = struct.pack("<H", len(entries)) + b"".join(
            struct.pack("<HHII", *entry) for entry in entries) + b"\x00" * 4
        return b"II*\x00" + struct.pack("<I", 8 + 64) + b"\x00" * 64 + ifd
    canvas = struct.pack("<I", (width - 1) & 0xFFFFFF)[:3] + struct.pack(
        "<I", (height - 1) & 0xFFFFFF)[:3]  # WebP VP8X
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + canvas
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


@functools.cache
def bombs() -> dict[str, bytes]:
    """The audit's images: a 30000² PNG (2.6 MB; 2.7 GB as BGR), a 10000² RGBA PNG, and the
    1×5000 strip that broke uploads."""
    return {"png-30000x30000": png_bomb(30000, 30000),
            "png-rgba-10000x10000": png_bomb(10000, 10000, rgba=True),
            "png-1x5000": encode(Image.fromarray(np.full((5000, 1, 3), 90, np.uint8)), "PNG"),
            "png-5000x1": encode(Image.fromarray(np.full((1, 5000, 3), 90, np.uint8)), "PNG")}


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 30000, 65535]


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (operation, position, value) edits: flip, set, insert, delete, truncate, repeat,
    or write a 4-byte size (big- or little-endian)."""
    out = bytearray(data)
    for operation, position, value in edits:
        if not out:
            break
        at = position % len(out)
        if operation == 0:
            out[at] ^= 1 << (value % 8)
        elif operation == 1:
            out[at] = INTERESTING[value % 5]
        elif operation == 2:
            out[at:at] = bytes([value % 256]) * (1 + value % 16)
        elif operation == 3:
            del out[at:at + 1 + value % 64]
        elif operation == 4:
            del out[at:]
        elif operation == 5:
            out[at:at] = out[at:at + 1 + value % 256] * 4
        else:
            endian = ">I" if value % 2 else "<I"
            out[at:at + 4] = struct.pack(endian, INTERESTING[value % len(INTERESTING)])
    return bytes(out)


def mutated(seed: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    edit = st.tuples(st.integers(0, 6), st.integers(0, 2**16), st.integers(0, 2**16))
    return st.builds(mutate, seed, st.lists(edit, min_size=1, max_size=8))


def image_bytes() -> st.SearchStrategy[bytes]:
    """Valid seeds, mutations of them, crafted headers, garbage with an image's magic bytes,
    and random bytes."""
    seed = st.sampled_from(sorted(seeds())).map(lambda name: seeds()[name])
    size = st.sampled_from(SIZES) | st.integers(0, 70000)
    header = st.builds(crafted, st.sampled_from(["png", "bmp", "gif", "jpeg", "tiff", "webp"]),
                       size, size)
    magic = st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a", b"II*\x00",
                             b"RIFF\x00\x00\x00\x00WEBP"])
    return st.one_of(seed, mutated(seed), mutated(seed), mutated(header), header,
                     st.builds(bytes.__add__, magic, st.binary(max_size=512)),
                     st.binary(max_size=2048))


def video_bytes() -> st.SearchStrategy[bytes]:
    """A tiny real video, mutations of it, and random bytes behind video magic numbers."""
    video = st.builds(tiny_video)
    magic = st.sampled_from([b"RIFF\x00\x00\x00\x00AVI ", b"\x00\x00\x00\x18ftypmp42",
                             b"\x1a\x45\xdf\xa3"])
    return st.one_of(video, mutated(video), st.builds(bytes.__add__, magic,
                                                      st.binary(max_size=512)))


@dataclass(frozen=True)
class ImageCase:
    """Bytes for the image reader: ``via`` is ``file`` (read_image on a file), ``decode``
    (decode_image as a live frame, 1920-pixel sides), ``assess`` (``neopain assess FILE``) or
    ``path:NAME`` (read_image on a special file such as a FIFO; ``data`` unused)."""

    data: bytes
    via: str = "file"


SPECIAL_FILES = ["path:folder.jpg", "path:loop.jpg", "path:empty.jpg", "path:missing.jpg",
                 "path:" + "x" * 300 + ".jpg", "path:garbage.png", "path:lm.npy"]


def image_corpus() -> dict[str, ImageCase]:
    """Fixed inputs, each too costly to draw at random today: the bombs as files, as frames
    and through ``neopain assess``, the 154-byte BMP that claims 65536² pixels, a FIFO and
    /dev/zero named like images."""
    corpus = {f"{name} {via}": ImageCase(data, via)
              for name, data in bombs().items() for via in ("file", "decode")}
    corpus["png-1x5000 assess"] = ImageCase(bombs()["png-1x5000"], "assess")
    for via in ("file", "decode", "assess"):
        corpus[f"bmp-154-bytes {via}"] = ImageCase(bmp_header_154(), via)
    corpus["fifo.jpg"] = ImageCase(b"", "path:fifo.jpg")
    corpus["zero.jpg (/dev/zero)"] = ImageCase(b"", "path:zero.jpg")
    return corpus


def image_cases() -> st.SearchStrategy[ImageCase]:
    """Mostly file and frame decodes; 1 in 50 through ``neopain assess``; special files."""
    via = st.integers(0, 99).map(lambda i: "file" if i < 48 else "decode" if i < 96
                                 else "assess" if i < 98 else "special")
    return st.builds(ImageCase, image_bytes(), via).flatmap(
        lambda case: st.builds(ImageCase, st.just(b""), st.sampled_from(SPECIAL_FILES))
        if case.via == "special" else st.just(case))
