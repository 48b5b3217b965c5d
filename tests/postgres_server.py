"""A throwaway PostgreSQL server for the tests: Debian's server binaries, its own data folder,
a loopback port, a random password; one fresh database per test.

Which server the PostgreSQL suites use:
- ``NEOPAIN_TEST_DATABASE_URL``: an existing server (a ``postgresql+psycopg://`` URL whose
  user may create databases); each test gets its own database there.
- otherwise the binaries of the ``postgresql`` package (``/usr/lib/postgresql/*/bin``): one
  server per test process, started on first use, stopped when the process ends.
- neither: the suites skip, saying why — unless ``NEOPAIN_TEST_POSTGRES=required`` (CI's
  ``.ci/run`` sets it), where a missing or failing server fails them instead.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ports import free_port
from sqlalchemy.engine import make_url

URL_ENV = "NEOPAIN_TEST_DATABASE_URL"
REQUIRED_ENV = "NEOPAIN_TEST_POSTGRES"
START_TIMEOUT_S = 60
SERVER_USER = "postgres"  # the server refuses to run as root; Debian's package makes this user


class Unavailable(Exception):
    """No PostgreSQL server for the tests; the message says why and how to get one."""


def required() -> bool:
    """True where a missing server must fail the suites rather than skip them (CI)."""
    return os.environ.get(REQUIRED_ENV, "") == "required"


def find_bindir() -> Path | None:
    """The newest installed server's binaries folder (Debian: ``/usr/lib/postgresql/N/bin``)."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    versions = sorted(found, key=lambda path: int(path.parent.name) if path.parent.name.isdigit()
                      else 0)
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class LocalServer:
    """A server in a private temporary folder, started by ``start`` and ended by ``stop``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # under /tmp when root: the server's own user must reach its folder (TMPDIR may not let it)
        self.folder = Path(tempfile.mkdtemp(prefix="neopain-pg-",
                                            dir="/tmp" if os.geteuid() == 0 else None))
        self.data = self.folder / "data"
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.process: subprocess.Popen | None = None

    def _as_server_user(self, command: list[str]) -> list[str]:
        """``command`` run as ``SERVER_USER`` when this process is root (``setpriv`` execs, so
        the child is the server itself: its signals and exit reach us)."""
        if os.geteuid() != 0:
            return command
        return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups",
                *command]

    def start(self) -> None:
        password_file = self.folder / "password"
        password_file.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(self.folder, user=SERVER_USER)
            shutil.chown(password_file, user=SERVER_USER)
        initdb = subprocess.run(
            self._as_server_user([str(self.bindir / "initdb"), "-D", str(self.data),
                                  "-U", "neopain", "--auth=scram-sha-256",
                                  f"--pwfile={password_file}", "--encoding=UTF8",
                                  "--locale=C.UTF-8"]),
            capture_output=True, text=True, timeout=START_TIMEOUT_S, stdin=subprocess.DEVNULL)
        password_file.unlink()
        if initdb.returncode != 0:
            raise Unavailable(f"initdb failed ({initdb.returncode}): {initdb.stderr.strip()}")
        self.port = free_port()
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            self._as_server_user([str(self.bindir / "postgres"), "-D", str(self.data),
                                  "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                                  "-k", str(self.folder), "-c", "max_connections=200",
                                  "-c", "fsync=off", "-c", "full_page_writes=off"]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:  # bounded: the server takes about a second
            if self.process.poll() is not None:
                raise Unavailable(f"postgres exited ({self.process.returncode}): "
                                  f"{self.log_tail()}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(self.port)], timeout=10)
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise Unavailable(f"postgres not ready after {START_TIMEOUT_S} s: {self.log_tail()}")

    def log_tail(self) -> str:
        log = self.folder / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.is_file() else ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then kill if it lingers; the folder is removed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql+psycopg://neopain:{self.password}@127.0.0.1:{self.port}"
                f"/{database}")


class Databases:
    """Creates and drops one database per test on a server reached by ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)

    def _execute(self, statement: str) -> None:
        import psycopg

        url = self.admin
        with psycopg.connect(host=url.host, port=url.port, user=url.username,
                             password=url.password, dbname=url.database or "postgres",
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)

    def create(self) -> str:
        """A new, empty database; its URL."""
        name = f"neopain_test_{secrets.token_hex(6)}"
        self._execute(f'CREATE DATABASE "{name}"')
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_databases: Databases | None = None
_why_not: str | None = None


def databases() -> Databases:
    """This test process's database maker, starting a local server on first use.

    Raises:
        Unavailable: no server can be had (the reason, and how to get one).
    """
    global _databases, _why_not
    if _databases is not None:
        return _databases
    if _why_not is not None:
        raise Unavailable(_why_not)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _why_not = 'PostgreSQL suites: no psycopg driver (pip install "neopain[postgres]")'
        raise Unavailable(_why_not) from None
    if os.environ.get(URL_ENV):
        _databases = Databases(os.environ[URL_ENV])
        return _databases
    bindir = find_bindir()
    if bindir is None:
        _why_not = ("PostgreSQL suites: no server binaries (apt install postgresql, or set "
                    f"{URL_ENV} to a server's URL)")
        raise Unavailable(_why_not)
    server = LocalServer(bindir)
    try:
        server.start()
    except (Unavailable, OSError, subprocess.TimeoutExpired, LookupError) as error:
        server.stop()
        _why_not = f"PostgreSQL suites: the test server did not start: {error}"
        raise Unavailable(_why_not) from None
    _databases = Databases(server.url())
    return _databases
