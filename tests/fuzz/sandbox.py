"""Run hostile CLI and image-reader inputs in a worker process, bounded in time and memory.

The worker imports the CLI once and runs one case at a time: a ``TableCase`` through
``dataset validate/frames/import`` or an ``ImageCase`` through the image reader and
``neopain assess``, each in a fresh folder. A case that outlives ``bound_s`` is a hang (the
worker's alarm interrupts it, or the parent kills the worker and starts another); the worker's
address space is limited, so a memory bomb is a ``MemoryError`` instead of a machine out of
memory. Every case reports its time and its peak resident memory above the start.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import resource
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fuzz.inputs import ASSETS, TableCase
from fuzz.media import ImageCase, seeds, tiny_video

MAX_FRAME_SIDE = 1920


@dataclass(frozen=True)
class Outcome:
    """What one input did. ``problem``: None (handled: a result or a clear error), or
    ``traceback``, ``5xx``, ``hang``, ``headers``, ``bomb`` (slow or heavy), ``reply`` (an
    answer of the wrong shape); ``signature``
    groups equal failures; ``detail`` is the traceback's last line, a status, a reason;
    ``logged`` the last line of a traceback the server logged meanwhile; ``exit_code`` and
    ``output``: a CLI run's exit code and printed text (None and "" for other inputs), or the
    live stream's ``reply`` (its type) and its text."""

    problem: str | None = None
    signature: str = ""
    detail: str = ""
    seconds: float = 0.0
    peak_mb: float = 0.0
    logged: str = ""
    exit_code: int | None = None
    output: str = ""
    reply: str = ""

    def check(self) -> None:
        """Raise the failure's own exception type (hypothesis tells bugs apart by type, so a
        test reports a 5xx and a missing header as two failures, not the simpler one)."""
        if self.problem is not None:
            message = " | ".join(filter(None, (self.signature, self.detail, self.logged)))
            raise FAILURES[self.problem](f"{self.problem}: {message}")


class FuzzFailure(AssertionError):
    """An input the code under test did not handle."""


FAILURES = {problem: type(f"{name}Failure", (FuzzFailure,), {}) for problem, name in (
    ("traceback", "Traceback"), ("5xx", "ServerError"), ("hang", "Hang"),
    ("headers", "Headers"), ("bomb", "Bomb"), ("reply", "Reply"))}
"""One exception type per problem."""


def bounded(outcome: Outcome, *, slow_s: float, heavy_mb: float, what: str) -> Outcome:
    """A handled input that took longer than ``slow_s`` or more than ``heavy_mb`` of memory
    is a ``bomb`` (refused too late, or not at all); ``what`` names the input's kind."""
    if outcome.problem in (None, "headers") and (outcome.seconds > slow_s
                                                 or outcome.peak_mb > heavy_mb):
        return replace(outcome, problem="bomb", signature=f"slow or heavy: {what}",
                       detail=f"{outcome.seconds:.1f} s, +{outcome.peak_mb:.0f} MB")
    return outcome


class Timeout(BaseException):
    """Raised by the alarm in the middle of a case (not an Exception: nothing may catch it)."""


def failure(error: BaseException, **fields) -> Outcome:
    """A traceback outcome named by the exception type and the deepest neopain frame."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "neopain" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].name}" if frames else ""
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return Outcome("traceback", f"{type(error).__name__}{where}", last[:300], **fields)


def make_file(path: Path, kind: str) -> None:
    """Create a file of ``kind`` (see ``inputs.ASSETS``): image, empty, garbage, fifo, folder,
    zero (a link to /dev/zero), loop (a link to itself), npy, npy-object, npy-huge, video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp"}.get(path.suffix.lower(), "png")
        path.write_bytes(seeds()[fmt])
    elif kind in ("empty", "garbage"):
        path.write_bytes(b"" if kind == "empty" else b"\x89PNG\r\n\x1a\nnot really" * 9)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind in ("zero", "loop"):
        path.symlink_to("/dev/zero" if kind == "zero" else path.name)
    elif kind == "npy":
        np.save(path, np.zeros((478, 3), np.float32))
    elif kind == "npy-object":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "npy-huge":
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                         + header.encode() + b"\x00" * 64)
    elif kind == "video":
        path.write_bytes(tiny_video())


def memory_mb(field: str) -> float:
    """VmRSS, VmHWM or VmSize of this process, MB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) / 1024


def reset_peak() -> None:
    """Set this process's VmHWM to its VmRSS (so a later VmHWM is the peak since)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        pass


class Worker:
    """The worker side: runs cases with the CLI app and the image reader."""

    def __init__(self, root: Path) -> None:
        import typer
        from click.testing import CliRunner

        from neopain.cli.app import app
        from neopain.cli.console import console, err_console

        # this process only runs cases: wide consoles keep paths in the output whole
        console.width = err_console.width = 400
        self.command = typer.main.get_command(app)
        self.runner = CliRunner()
        self.root = root
        self.assets = root / "assets"
        for name, kind in ASSETS.items():
            make_file(self.assets / name, kind)

    def run(self, case: TableCase | ImageCase, bound_s: float) -> Outcome:
        with tempfile.TemporaryDirectory(dir=self.root) as name:
            folder = Path(name)
            (folder / "assets").symlink_to(self.assets)
            rss = memory_mb("VmRSS")
            reset_peak()
            started = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, bound_s)
            try:
                outcome = self._run(case, folder)
            except Timeout as error:
                stuck = failure(error).signature.replace("Timeout", "hang")
                outcome = Outcome("hang", stuck, f"no answer within {bound_s:g} s")
            except BaseException as error:  # noqa: B036 - anything escaping is the finding
                outcome = failure(error)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return replace(outcome, seconds=time.perf_counter() - started,
                           peak_mb=memory_mb("VmHWM") - rss)

    def _run(self, case: TableCase | ImageCase, folder: Path) -> Outcome:
        if isinstance(case, TableCase):
            return self._cli(_argv(case, folder))
        path = folder / "image.jpg"
        path.write_bytes(case.data)
        if case.via == "assess":
            return self._cli(("assess", str(path), "--model", "nfcs"))
        if case.via == "decode":
            return _decoded(case.data)
        if case.via.startswith("path:"):
            path = folder / "assets" / case.via[5:]
        return _read(path)

    def _cli(self, argv: tuple[str, ...]) -> Outcome:
        result = self.runner.invoke(self.command, list(argv))
        ran = {"exit_code": result.exit_code, "output": result.output[-2000:]}
        error = result.exception
        if error is not None and not isinstance(error, SystemExit):
            return failure(error, **ran)  # the root command group turns user errors into exit 1
        if "Traceback (most recent call last)" in result.output:
            return Outcome("traceback", "traceback printed", result.output.strip()[-300:], **ran)
        return Outcome(**ran)


def _argv(case: TableCase, folder: Path) -> tuple[str, ...]:
    table = folder / "table.csv"
    table.write_bytes(case.table)
    for relative, kind in case.tree:
        try:
            make_file(folder / "tree" / relative, kind)
        except OSError:  # a name this file system refuses: the case goes on without it
            pass
    (folder / "tree").mkdir(exist_ok=True)
    target = case.target if case.target.startswith("/") else str(folder / case.target)
    values = {"{table}": target, "{root}": str(folder), "{out}": str(folder / "out"),
              "{tree}": str(folder / "tree")}
    argv = []
    for arg in case.argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    return tuple(argv)


def _checked(image: object, *, max_pixels: int, max_side: int | None = None) -> Outcome:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3):
        return Outcome("reply", "not a BGR uint8 image", repr(getattr(image, "shape", image)))
    height, width = image.shape[:2]
    if height * width > max_pixels or (max_side is not None and max(height, width) > max_side):
        return Outcome("bomb", "over the cap", f"decoded {width}×{height} pixels")
    return Outcome()


def _read(path: Path) -> Outcome:
    from neopain.config import get_settings
    from neopain.data.images import ImageReadError, read_image

    try:
        return _checked(read_image(path), max_pixels=get_settings().max_image_pixels)
    except ImageReadError:
        return Outcome()


def _decoded(data: bytes) -> Outcome:
    from neopain.data.images import ImageReadError, decode_image

    try:
        return _checked(decode_image(data, source="frame", max_side=MAX_FRAME_SIDE),
                        max_pixels=MAX_FRAME_SIDE**2, max_side=MAX_FRAME_SIDE)
    except ImageReadError:
        return Outcome()


def _serve(conn, root: str, bound_s: float, memory_limit_mb: int, log: str) -> None:
    """The worker process: warm up, limit the address space, then answer cases until None."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)  # native libraries' chatter
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)

    def alarm(*_):
        raise Timeout()

    signal.signal(signal.SIGALRM, alarm)
    worker = Worker(Path(root))
    worker.run(ImageCase(seeds()["jpeg"], "assess"), 60.0)  # load the model before the limit
    limit = int((memory_mb("VmSize") + memory_limit_mb) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send("ready")
    while (case := conn.recv()) is not None:
        conn.send(worker.run(case, bound_s))


class Sandbox:
    """The parent side: ``run(case)`` in the worker; a hung or dead worker is replaced.

    Args:
        folder: where cases and the worker's log live.
        bound_s: a case that takes longer is a hang.
        memory_mb: address space the worker may add after warming up (a bomb's MemoryError
            is a finding, not an out-of-memory machine).
        slow_s, heavy_mb: a handled case that took longer or more memory is a ``bomb``.
    """

    def __init__(self, folder: Path, *, bound_s: float = 10.0, memory_mb: int = 3072,
                 slow_s: float = 2.0, heavy_mb: float = 1024.0) -> None:
        self.folder = Path(folder)
        self.bound_s = bound_s
        self.memory_mb = memory_mb
        self.slow_s = slow_s
        self.heavy_mb = heavy_mb
        self.log = self.folder / "worker.log"
        self._process = None
        self._conn = None

    def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        root = tempfile.mkdtemp(prefix="worker-", dir=self.folder)
        self._process = context.Process(
            target=_serve, args=(child, root, self.bound_s, self.memory_mb, str(self.log)),
            daemon=True)
        self._process.start()
        if not self._conn.poll(180) or self._conn.recv() != "ready":
            self.close()
            raise RuntimeError(f"the fuzz worker did not start; see {self.log}")

    def run(self, case: TableCase | ImageCase) -> Outcome:
        if self._process is None or not self._process.is_alive():
            self.close()
            self._start()
        started = time.perf_counter()
        self._conn.send(case)
        try:
            if self._conn.poll(self.bound_s + 10):
                what = case.via if isinstance(case, ImageCase) else " ".join(case.argv[:2])
                return bounded(self._conn.recv(), slow_s=self.slow_s, heavy_mb=self.heavy_mb,
                               what=what)
            outcome = Outcome("hang", "hang", f"no answer within {self.bound_s:g} s (killed)")
        except EOFError:
            self._process.join(5)
            code = self._process.exitcode
            outcome = Outcome("traceback", f"worker died ({code})", f"exit code {code}")
        self.close()
        return replace(outcome, seconds=time.perf_counter() - started)

    def close(self) -> None:
        """Stop the worker (a hung one is killed)."""
        if self._process is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(2)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_) -> None:
        self.close()
