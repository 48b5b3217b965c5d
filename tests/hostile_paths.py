"""Paths made hostile for the CLI tests: a FIFO, a device, a folder, a name too long, each with
the reason the package gives for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REASONS = {
    "fifo": "is a FIFO (named pipe), not a regular file",
    "device": "is a character device, not a regular file",
    "folder": "is a folder",
    "long name": "the file name is too long for the file system",
}


def hostile(path: Path, kind: str) -> Path:
    """``path`` made into the hostile ``kind`` of REASONS (a long name is another path)."""
    if kind == "long name":
        return path.with_name("a" * 300 + path.suffix)
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(path)
    elif kind == "device":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero on this system")
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    return path
