"""Hostile and odd image files that several test modules build (importable because pytest puts
tests/ on the path)."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header(width: int, height: int) -> bytes:
    """A PNG file whose header claims ``width``×``height`` (the pixel data is never decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))


def png_bomb(width: int, height: int, *, rgba: bool = False) -> bytes:
    """A real PNG of ``width``×``height`` black pixels, made in milliseconds: one deflate segment
    of zero rows (ended by a full flush, so it refers to nothing before it) repeated.

    30000×30000 RGB is 2.6 MB and decodes to 2.7 GB; 10000×10000 RGBA is 389 KB (400 MB).
    """
    channels = 4 if rgba else 3
    row = 1 + width * channels  # a filter byte, then the pixels
    block_rows = 500
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = raw.compress(bytes(row * block_rows)) + raw.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(height, block_rows)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    last = tail.compress(bytes(row * rest)) + tail.flush()
    adler = (row * height % 65521) << 16 | 1  # Adler-32 of zero bytes: a stays 1, b counts
    stream = b"\x78\xda" + segment * blocks + last + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream)
            + _chunk(b"IEND", b""))


def bmp_header_154() -> bytes:
    """The audit's 154-byte BMP: a BITMAPV5 header claiming 65536×65536 pixels and no pixels
    (``cv2.imdecode`` raised cv2.error on it, stopping a whole folder's batch)."""
    header = struct.pack("<IHHIIiiHHIIiiII", 154, 0, 0, 138, 124, 65536, 65536, 1, 24, 0, 0,
                         2835, 2835, 0, 0)
    return b"BM" + header + bytes(154 - 2 - len(header))
