"""Open a file a user named, only when it is a regular file, with a reason when it cannot be.

A FIFO named ``x.jpg`` or ``manifest.csv`` would block the reader until something writes to it,
``/dev/zero`` would never end, and a name longer than the file system allows raises OSError
from places no one expects (``Path.exists`` included). ``open_regular`` checks with
``os.stat`` before opening anything and turns every such case into one error with a reason.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
from typing import BinaryIO

import numpy as np

from neopain.errors import NeopainError

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


class FileReadError(NeopainError):
    """A file that cannot be opened or read as what it should be; ``reason`` says why,
    ``path`` names it, ``missing`` is True when no file has that name."""

    def __init__(self, path: str | os.PathLike[str], reason: str, *,
                 missing: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.missing = missing
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type[FileReadError], tuple[str | os.PathLike[str], str],
                                  dict[str, object]]:
        # rebuilt from (path, reason) and its attributes when it crosses a process boundary
        return (type(self), (self.path, self.reason), self.__dict__)


def os_error_reason(error: OSError) -> str:
    """What an OSError from opening or inspecting a path means, in words."""
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied (this user may not read it)"
    if error.errno == errno.ENAMETOOLONG:
        return "the file name is too long for the file system"
    if isinstance(error, NotADirectoryError):
        return "file not found (a part of its path is a file, not a folder)"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a file"
    return f"the file cannot be opened ({error.strerror or error})"


def _os_error(path: str | os.PathLike[str], error: OSError) -> FileReadError:
    return FileReadError(path, os_error_reason(error),
                         missing=isinstance(error, FileNotFoundError))


def regular_file_error(path: str | os.PathLike[str], *,
                       what: str = "a file") -> FileReadError | None:
    """Why ``path`` is not a regular file (or a link to one) that exists, as the error to raise
    (``missing`` when there is no such file), or None if it is one.

    Only ``os.stat`` is asked: nothing is opened.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        return _os_error(path, error)
    except ValueError:  # a NUL character in the name
        return FileReadError(path, "the file name holds a NUL character")
    if stat.S_ISDIR(info.st_mode):
        return FileReadError(path, f"is a folder; expected {what}")
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        return FileReadError(path, f"is {kind}, not a regular file; expected {what}")
    return None


def regular_file_problem(path: str | os.PathLike[str], *, what: str = "a file") -> str | None:
    """Why ``path`` is not a regular file (or a link to one) that exists, in words, or None
    if it is (``regular_file_error``'s reason)."""
    error = regular_file_error(path, what=what)
    return None if error is None else error.reason


def model_file_problem(path: str | os.PathLike[str], *, what: str = "a model file") -> str | None:
    """``regular_file_problem``, and an empty file said as such (a model file of 0 bytes is an
    interrupted copy or download; the library reading it would say only that it cannot)."""
    if (problem := regular_file_problem(path, what=what)) is not None:
        return problem
    return "the file is empty (0 bytes)" if os.stat(path).st_size == 0 else None


def open_regular(path: str | os.PathLike[str], *, what: str = "a file") -> BinaryIO:
    """``path`` opened for binary reading, when it is a regular file (or a link to one).

    Folders, FIFOs, devices and sockets are refused from ``os.stat`` without being opened; a
    name that became a FIFO since is opened without blocking and refused.

    Args:
        path: the file.
        what: what the file should be, said when ``path`` is a folder or a special file.

    Raises:
        FileReadError: missing, not a regular file, not readable, a name too long or holding
            a NUL character.
    """
    if (error := regular_file_error(path, what=what)) is not None:
        raise error
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise _os_error(path, error) from None
    file = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        file.close()
        raise FileReadError(path, f"is not a regular file; expected {what}")
    return file


def read_regular(path: str | os.PathLike[str], *, what: str = "a file",
                 max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (no more is read).

    Raises:
        FileReadError: as ``open_regular``; an error while reading; a larger file.
    """
    with open_regular(path, what=what) as file:
        try:
            data = file.read(max_bytes + 1)
        except OSError as error:
            raise FileReadError(path, f"cannot be read ({error.strerror or error})") from None
    if len(data) > max_bytes:
        raise FileReadError(path, f"is larger than {max_bytes:,} bytes; expected {what}")
    return data


def read_regular_text(path: str | os.PathLike[str], *, what: str = "a text file",
                      max_bytes: int) -> str:
    """The UTF-8 text (a BOM dropped) of a regular file of at most ``max_bytes``.

    Raises:
        FileReadError: as ``read_regular``; not UTF-8, or holding a NUL byte (a binary file).
    """
    data = read_regular(path, what=what, max_bytes=max_bytes)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileReadError(path, f"is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                                  f"offset {error.start}); expected {what}") from None
    if (nul := data.find(b"\0")) >= 0:
        raise FileReadError(path, f"holds a NUL byte at offset {nul}, so it is no text file; "
                                  f"expected {what}")
    return text


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def load_npy(path: str | os.PathLike[str], *, what: str = "a .npy array file",
             max_bytes: int) -> np.ndarray:
    """The one array of a ``.npy`` file (``np.save``) of at most ``max_bytes``.

    The file is read like ``read_regular`` (a FIFO or device is refused, not opened), and its
    header is checked before any array is made: Python objects (pickles), ``.npz`` archives and
    a header promising more data than the file holds are refused.

    Raises:
        FileReadError: as ``read_regular``; not a ``.npy`` array, or a broken one.
    """
    data = read_regular(path, what=what, max_bytes=max_bytes)
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version not in _NPY_HEADERS:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
        shape, _, dtype = _NPY_HEADERS[version](buffer)
        if dtype.hasobject:
            raise ValueError("it holds Python objects, which are never loaded")
        promised, held = math.prod(shape) * dtype.itemsize, len(data) - buffer.tell()
        if promised != held:
            raise ValueError(f"its header promises {promised:,} bytes of data, it holds {held:,}")
        buffer.seek(0)
        return np.load(buffer, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise FileReadError(path, f"is not a readable .npy array ({error}); expected "
                                  f"{what}") from None
