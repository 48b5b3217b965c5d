"""Files neopain writes: written whole or not at all (``atomic_output``), and the names of
files that batch commands write per manifest row (crops, augmented copies)."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path



def create_private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600), and the folders it needs 0700 (patient
    data: the records database, a bed device's outbox); an existing file or folder keeps its
    mode (the operator's choice). SQLite gives its -wal and -shm files the file's mode.

    Raises:
        OSError: it cannot be created.
    """
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)  # mkdir's mode is filtered by the umask
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    path.chmod(0o600)

@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; it replaces ``path`` when the block ends
    without an error and is deleted when it raises, so an interruption (a crash, Ctrl-C, a
    full disk) never leaves half a file under the real name. The parent folder is created;
    the file gets the permissions the umask gives any new file, as a plain write would.

    Example:
        >>> with atomic_output(run / "metrics.json") as partial:  # doctest: +SKIP
        ...     partial.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the real suffix last: cv2.imwrite picks the format by it, np.save adds .npy without it;
    # O_EXCL with mode 0o666 rather than mkstemp (always 0600), so the umask decides
    partial = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial{path.suffix}")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_output``; returns the path."""
    with atomic_output(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def safe_name(text: str) -> str:
    """A file or folder name from a subject id or file stem: ASCII letters, digits, ``._-``."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)
    return name.strip(".") or "_"


def output_stems(images: Sequence[str], subjects: Sequence[str]) -> list[str]:
    """``<subject>/<stem>`` per row; where two would collide, 8 hex digits of a hash of the
    image path are added (compared case-insensitively, for case-insensitive file systems).

    >>> output_stems(["a/x.jpg", "b/x.jpg", "c/y.png"], ["S1", "S1", "S2"])[2]
    'S2/y'
    """
    stems = [f"{safe_name(s)}/{safe_name(Path(i).stem)}" for i, s in zip(images, subjects)]
    counts = Counter(stem.lower() for stem in stems)
    return [stem if counts[stem.lower()] == 1
            else f"{stem}_{hashlib.sha256(image.encode()).hexdigest()[:8]}"
            for stem, image in zip(stems, images)]
