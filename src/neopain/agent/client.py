"""The device protocol's HTTP client (docs/agent.md), on the standard library alone.

One ``DeviceClient`` keeps one keep-alive connection and is used by one thread. Every answer
that is not a success becomes one of three errors, which say what the agent does next:

- ``Unreachable``: no answer, a timeout, 5xx/503, or an answer the protocol does not expect;
  keep assessing and queueing, try again (``timed_out``: the server may be busy rather than
  away; ``retry_after_s``: a 503's ``Retry-After``).
- ``Revoked`` (403 ``revoked``) and ``UnknownToken`` (401): stop, printing the server's words.
- ``InvalidRequest`` (422): the request was refused as invalid; ``record_indices`` names the
  records the server's problems point at (``loc`` ``["body", "records", i, …]``), when all do.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import ssl
import stat
import time
from urllib.parse import urlsplit

from neopain.data.files import read_regular_text, regular_file_error
from neopain.errors import NeopainError

API = "/api/device"


class DeviceError(NeopainError):
    """An answer of the server that was not a success."""


class Unreachable(DeviceError):
    """No usable answer now (network, timeout, server busy or failing): try again later.
    ``status`` is the HTTP status when the server did answer (503, 500, 404 …), else None."""

    def __init__(self, message: str, *, status: int | None = None, timed_out: bool = False,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.timed_out = timed_out
        self.retry_after_s = retry_after_s


class Stop(DeviceError):
    """The server refuses this device: the agent must stop (the message is the server's)."""


class Revoked(Stop):
    """403 ``revoked``: an administrator revoked this device."""


class UnknownToken(Stop):
    """401 ``unknown_token``: the server knows no device with this token."""


class InvalidRequest(DeviceError):
    """422: the server refused the request as invalid (naming what); or 403
    ``foreign_session``: records for a session this device never fed (another bed's), named.

    Attributes:
        reason: ``invalid``, or ``foreign_session``: the refusal the named records get.
        problems: the answer's ``detail`` when it is a list of problems (FastAPI's
            ``{"loc": [...], "msg": ...}``), else empty.
        record_indices: the indices of the records in the request that the problems name,
            when every problem names one (``loc`` ``["body", "records", i, …]``); else empty:
            the refusal is not about a record (a server of another version, a proxy that
            changed the body), so no record is to blame.
    """

    def __init__(self, message: str, *, problems: list | None = None,
                 reason: str = "invalid") -> None:
        super().__init__(message)
        self.problems = problems or []
        self.reason = reason
        indices = [_record_index(p) for p in self.problems]
        self.record_indices = sorted(set(indices)) if indices and None not in indices else []


def _record_index(problem: object) -> int | None:
    """``i`` of a problem whose ``loc`` is ``["body", "records", i, …]``, else None."""
    loc = problem.get("loc") if isinstance(problem, dict) else None
    if isinstance(loc, list) and len(loc) >= 3 and loc[:2] == ["body", "records"] \
            and isinstance(loc[2], int) and not isinstance(loc[2], bool) and loc[2] >= 0:
        return loc[2]
    return None


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain") or \
            host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_warning(url: str) -> str | None:
    """A warning when ``url`` sends the token unencrypted to another machine (``http://`` to a
    host that is not loopback); None for https or loopback."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (f"--server {url} is plain http: the token travels unencrypted to "
                f"{parts.hostname}; use https:// (the ward server behind TLS) on any network "
                "others can see")
    return None


def check_server_url(url: str) -> str:
    """``url`` without a trailing slash, when it is an http(s) URL with a host.

    Raises:
        NeopainError: any other URL, naming it and what is valid.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NeopainError(f"--server {url!r} is not a server address; valid: http://HOST:PORT "
                           "or https://HOST (the ward server's address)")
    return url.rstrip("/")


class DeviceClient:
    """Requests to the ward server's device routes for one thread.

    Args:
        server: the server's base URL (``https://ward.example``).
        token: the device token (``npd_…``).
        timeout_s: seconds to wait for a connection or an answer.
        cafile: a PEM file of the certificate authority to trust for https (a server with its
            own certificate); None: the system's.
    """

    def __init__(self, server: str, *, token: str, timeout_s: float = 5.0,
                 cafile: str | None = None) -> None:
        self.server = check_server_url(server)
        self.token = token
        self.timeout_s = timeout_s
        self.cafile = cafile
        parts = urlsplit(self.server)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/") + API
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                context = ssl.create_default_context(cafile=self.cafile)
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout_s, context=context)
            else:
                self._connection = http.client.HTTPConnection(self._host, self._port,
                                                              timeout=self.timeout_s)
        return self._connection

    def request(self, method: str, route: str, body: dict | None = None) -> dict:
        """The JSON answer of ``method`` on ``/api/device/<route>``.

        Raises:
            Unreachable, Revoked, UnknownToken, InvalidRequest: as the module docstring says.
        """
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection = self._connect()
            connection.request(method, f"{self._prefix}/{route}", body=data, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
            retry_after = response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as error:
            self.close()  # a broken keep-alive connection is opened afresh next time
            raise Unreachable(f"{self.server}: no answer ({_why(error)})",
                              timed_out=isinstance(error, TimeoutError)) from None
        return _answer(status, raw, where=f"{self.server} {method} {route}",
                       retry_after=retry_after)

    def clock(self) -> tuple[float, float, float, float]:
        """One clock reading: (monotonic time sent, server time, monotonic time answered, wall
        time answered), seconds (``clock.best_offset``)."""
        sent = time.monotonic()
        server_time = float(self.request("GET", "clock")["server_time"])
        return sent, server_time, time.monotonic(), time.time()

    def heartbeat(self, body: dict) -> dict:
        """Send the device's status; the server's answer (binding, intervals, server time)."""
        return self.request("POST", "heartbeat", body)

    def send_records(self, records: list[dict]) -> dict:
        """Send 1–100 records, oldest first; ``{"acked": [...], "refused": [...]}``."""
        answer = self.request("POST", "records", {"records": records})
        if not isinstance(answer.get("acked"), list) or not isinstance(answer.get("refused"),
                                                                       list):
            raise Unreachable(f"{self.server}: records answer without acked/refused lists",
                              status=200)
        return answer

    def close(self) -> None:
        """Close the keep-alive connection (a later request opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` of seconds (an HTTP date is not used by the server), at most 5 min."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return None if seconds is None or not seconds >= 0 else min(seconds, 300.0)


def _problems_text(detail: list) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in p.get('loc', []))}: {p.get('msg', '')}"
        if isinstance(p, dict) else str(p) for p in detail[:5])


def _answer(status: int, raw: bytes, *, where: str, retry_after: str | None = None) -> dict:
    try:
        reply = json.loads(raw) if raw else {}
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise Unreachable(f"{where}: HTTP {status} without a JSON object (is this the ward "
                          "server's address?)", status=status)
    detail = str(reply.get("detail") or "")
    reason = reply.get("reason")
    if status == 200:
        return reply
    if status == 403 and reason == "revoked":
        raise Revoked(detail or "this device was revoked; ask an administrator for a new token")
    if status == 401:
        raise UnknownToken(detail or "the server knows no device with this token; register "
                                     "the device and write its token to the token file")
    if status == 403 and reason == "foreign_session":  # records for another bed's session
        named = reply.get("records") if isinstance(reply.get("records"), list) else []
        raise InvalidRequest(f"{where}: {detail}", reason="foreign_session", problems=[
            {"loc": ["body", "records", index, "session_id"], "msg": detail}
            for index in named if isinstance(index, int)])
    if status == 422:
        problems = reply.get("detail") if isinstance(reply.get("detail"), list) else []
        raise InvalidRequest(f"{where}: refused as invalid: "
                             f"{_problems_text(problems) if problems else detail}",
                             problems=problems)
    raise Unreachable(f"{where}: HTTP {status}" + (f": {detail}" if detail else ""),
                      status=status,
                      retry_after_s=_retry_after(retry_after) if status == 503 else None)


TOKEN_PREFIX = "npd_"


def read_token(path: str | os.PathLike[str]) -> str:
    """The device token in ``path``, a file only its owner may read (as ssh asks of a key).

    Raises:
        NeopainError: a missing or unreadable file, one that group or others may read or
            write (naming its mode and the ``chmod`` that fixes it), or one that holds no
            ``npd_…`` token.
    """
    if (error := regular_file_error(path, what="a token file")) is not None:
        raise NeopainError(f"--token-file {error}")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if os.name == "posix" and mode & 0o077:
        raise NeopainError(f"--token-file {path}: its mode {mode:04o} lets group or others "
                           f"read it; the token is a password: chmod 600 {path}")
    token = read_regular_text(path, what="a token file", max_bytes=4096).strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) < 20 or any(
            c.isspace() or not c.isprintable() for c in token):
        raise NeopainError(f"--token-file {path}: holds no device token; valid: one line "
                           f"{TOKEN_PREFIX}… as the server gave it when the device was "
                           "registered")
    return token
