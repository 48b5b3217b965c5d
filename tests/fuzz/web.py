"""Hostile HTTP requests for the monitor (hypothesis + schemathesis) and what a good answer is.

Three kinds of ``Call``: schemathesis cases from ``/api/openapi.json`` (valid and invalid),
every route that takes an id with ids beyond 64 bits, negative, ``1e23`` … and hostile query
values, and uploads of hostile images and videos. ``send`` makes the call with any httpx
client (FastAPI's ``TestClient`` in-process, ``httpx.Client`` against a real server) and
judges the answer: a 5xx, or a response without the security headers (``nosniff``, a
Content-Security-Policy) and ``Cache-Control: no-store``, is a failure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import h11
import httpx
from hypothesis import strategies as st

from fuzz.media import bombs, image_bytes, video_bytes
from fuzz.sandbox import Outcome

IDS = ["0", "-1", "1", "2147483647", "2147483648", "9223372036854775807",
       "9223372036854775808", "18446744073709551616", "99999999999999999999999",
       "-9223372036854775809", "1e23", "1.5", "NaN", "inf", "0x10", "%00", "%2e%2e", "+1",
       "%D9%A1", "9" * 400, "9" * 5000, "1%20", "%E2%80%AE1"]
"""Path ids the database cannot hold, or that are not integers at all."""
QUERY = ["0", "-1", "1e23", "99999999999999999999999", "9223372036854775808", "NaN",
         "-inf", "", "true", "x" * 300, "\x00", "'; --", "<script>", "%", "9" * 5000]
QUERY_NAMES = ["offset", "limit", "q", "snapshots_only", "next", "message", "uploaded", "by"]
NOT_FUZZED = ("/api/logout",)
"""Would end the fuzzing client's own login."""


@dataclass(frozen=True)
class Call:
    """One HTTP request. ``route`` is the path template, used to group failures. A corpus
    call also says what it must get: ``status`` and a text of the answer (``says``)."""

    method: str
    path: str
    route: str
    params: tuple[tuple[str, str], ...] = ()
    json: object = None
    content: bytes | None = None
    files: tuple[tuple[str, str, bytes, str], ...] = ()
    status: int | None = None
    says: str = ""


def _clean(text: object) -> str:
    """Text an HTTP client can send (lone surrogates replaced)."""
    return str(text).encode("utf-8", "replace").decode("utf-8")


def call_of_case(case) -> Call:
    """A schemathesis case as a ``Call``."""
    kwargs = case.as_transport_kwargs(base_url="http://fuzz")
    path = kwargs["url"].removeprefix("http://fuzz")
    data, files = kwargs.get("data"), []
    for name, (filename, value) in kwargs.get("files") or []:
        body = value if isinstance(value, bytes) else _clean(value).encode()
        files.append((_clean(name), _clean(filename or ""), body, "application/octet-stream"))
    return Call(kwargs["method"], path, case.operation.path,
                params=tuple((_clean(k), _clean(v)) for k, v in (kwargs.get("params") or {})
                             .items() if not isinstance(v, list)),
                json=kwargs.get("json"),
                content=data if isinstance(data, bytes) else
                None if data is None else _clean(data).encode(),
                files=tuple(files))


def schema_calls(schema) -> st.SearchStrategy[Call]:
    """Valid and invalid calls of every operation in an OpenAPI schema (schemathesis)."""
    from schemathesis import GenerationMode

    schema = schema.exclude(path=list(NOT_FUZZED))
    return st.one_of(*[schema.as_strategy(generation_mode=mode).map(call_of_case)
                       for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)])


def with_ids(call: Call, ids: Sequence[int], pick: int) -> Call:
    """The call with its first numeric path segment replaced by a known row id."""
    if not ids:
        return call
    path = re.sub(r"/-?\d+(?=/|$)", f"/{ids[pick % len(ids)]}", call.path, count=1)
    return replace(call, path=path)


def templated(routes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (method, path) routes with a path parameter, WebSockets and mounts left out."""
    return [(method, path) for method, path in routes
            if "{" in path and method in ("GET", "POST", "PATCH", "PUT", "DELETE")]


def id_calls(routes: Sequence[tuple[str, str]], known: Sequence[int]) -> st.SearchStrategy[Call]:
    """Every templated route with hostile ids, plus hostile query values."""
    ident = st.sampled_from(IDS) | st.sampled_from([str(i) for i in known] or ["1"])
    query = st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.sampled_from(QUERY)),
                     max_size=3).map(tuple)

    def build(route: tuple[str, str], values: list[str], params) -> Call:
        method, template = route
        path = template
        for value in values:
            path = re.sub(r"\{[^}]+\}", value, path, count=1)
        return Call(method, path, template, params=params)

    return st.builds(build, st.sampled_from(list(templated(routes))),
                     st.lists(ident, min_size=2, max_size=2), query)


def plain_calls() -> st.SearchStrategy[Call]:
    """Listings and searches with hostile query values."""
    query = st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.sampled_from(QUERY)),
                     min_size=1, max_size=4).map(tuple)
    paths = ["/api/patients", "/patients", "/audit", "/users", "/login", "/instructions",
             "/api/me", "/setup", "/"]
    return st.builds(lambda path, params: Call("GET", path, path, params=params),
                     st.sampled_from(paths), query)


def upload_calls(patient_ids: Sequence[int]) -> st.SearchStrategy[Call]:
    """Hostile images and videos uploaded through the API and the page form."""
    content = image_bytes() | video_bytes()
    kinds = st.sampled_from(["image/jpeg", "video/mp4", "application/octet-stream", ""])
    names = st.sampled_from(["a.jpg", "", "x" * 300 + ".png", "../../etc/passwd", "a\x00.jpg"])

    def build(patient: int, form: bool, body: bytes, name: str, kind: str) -> Call:
        route = ("/patients/{patient_id}/upload" if form
                 else "/api/patients/{patient_id}/uploads")
        return Call("POST", route.replace("{patient_id}", str(patient)), route,
                    files=(("file", name, body, kind),))

    return st.builds(build, st.sampled_from(list(patient_ids) or [1]), st.booleans(), content,
                     names, kinds)


UPLOAD_ANSWERS = {"png-30000x30000": (422, "is 900,000,000 pixels"),
                  "png-rgba-10000x10000": (422, "100,000,000 pixels"),
                  "png-1x5000": (201, '"kind":"image"'), "png-5000x1": (201, '"kind":"image"')}
"""The answer each of ``bombs()`` must get as an upload: bombs refused naming their pixels,
the strips (a 500 in the audit) assessed."""


def upload_corpus(patient_id: int) -> dict[str, Call]:
    """The audit's uploads: the 10000² RGBA PNG, the 1×5000 strip, the 30000² PNG."""
    route = "/api/patients/{patient_id}/uploads"
    return {f"upload {name}": Call("POST", route.replace("{patient_id}", str(patient_id)),
                                   route, files=(("file", "a.png", data, "image/png"),),
                                   status=UPLOAD_ANSWERS[name][0], says=UPLOAD_ANSWERS[name][1])
            for name, data in bombs().items()}


def api_calls(schema, routes, known: dict[str, list[int]]) -> st.SearchStrategy[Call]:
    """The API surface: schemathesis (a third with known ids), hostile ids and queries,
    uploads (1 in 10)."""
    ids = sorted({i for values in known.values() for i in values})
    from_schema = schema_calls(schema)
    known_ids = st.builds(with_ids, from_schema, st.just(ids), st.integers(0, 50))
    return st.one_of(from_schema, known_ids, from_schema, id_calls(routes, ids),
                     id_calls(routes, ids), plain_calls(), from_schema, known_ids,
                     st.integers(0, 1).flatmap(lambda i: upload_calls(known["patients"]) if i
                                               else id_calls(routes, ids)))


def judge(call: Call, response: httpx.Response) -> Outcome:
    """A 5xx, an answer other than the call's own ``status`` and ``says``, or missing security
    headers / no-store: a failure; anything else is handled. The outcome's ``reply`` is the
    status, its ``output`` the answer's text."""
    answer = {"reply": str(response.status_code), "output": response.text[:2000]}
    return replace(_judged(call, response), **answer)


def _judged(call: Call, response: httpx.Response) -> Outcome:
    where = f"{call.method} {call.route}"
    headers = response.headers
    missing = [name for name in ("X-Content-Type-Options", "Content-Security-Policy")
               if name not in headers]
    if "no-store" not in headers.get("Cache-Control", ""):
        missing.append("Cache-Control: no-store")
    if call.path.startswith("/static/"):
        missing = []
    lacks = f"lacks {', '.join(missing)}" if missing else ""
    if response.status_code >= 500:
        return Outcome("5xx", f"{response.status_code} {where}",
                       "; ".join(filter(None, (lacks, " ".join(response.text.split())[:120]))))
    if call.status is not None and (response.status_code != call.status
                                    or call.says not in response.text):
        return Outcome("reply", f"not {call.status} saying {call.says!r}: {where}",
                       f"{response.status_code} {' '.join(response.text.split())[:200]}")
    if missing:
        area = "API" if call.path.startswith("/api/") else "page"
        return Outcome("headers", f"{area} response {lacks}", f"{response.status_code} {where}")
    return Outcome()


def send(client: httpx.Client, call: Call, *,
         server_log: Callable[[], str] = lambda: "") -> Outcome:
    """Make the call and judge the answer; ``server_log`` returns the server's new log text
    (a traceback in it is a failure too). A timeout of the client's is a hang; a URL or a
    request the client refuses to make is ``unsent`` (handled: no server saw it)."""
    started = time.perf_counter()
    for attempt in range(2):  # a kept-alive connection the server dropped: once more, anew
        try:
            response = client.request(
                call.method, call.path, params=call.params or None, json=call.json,
                content=call.content,
                files=[(field, (name, body, kind or "application/octet-stream"))
                       for field, name, body, kind in call.files] or None)
            break
        except httpx.TimeoutException:
            return Outcome("hang", f"hang {call.method} {call.route}", "no answer in time",
                           time.perf_counter() - started)
        except (httpx.InvalidURL, httpx.LocalProtocolError, h11.LocalProtocolError):
            return Outcome(None, "unsent", seconds=time.perf_counter() - started)
        except httpx.TransportError as error:
            if attempt:
                return Outcome("5xx", f"connection dropped {call.method} {call.route}",
                               repr(error), time.perf_counter() - started)
    outcome = replace(judge(call, response), seconds=time.perf_counter() - started)
    logged = read_traceback(server_log, expected=response.status_code >= 500)
    if logged is None:
        return outcome
    if outcome.problem == "5xx":
        outcome = replace(outcome, signature=f"{outcome.signature}: {logged[0]}")
    elif outcome.problem is None:
        outcome = replace(outcome, problem="traceback",
                          signature=f"{logged[0]} ({call.method} {call.route})")
    return replace(outcome, logged=logged[1])


def read_traceback(server_log: Callable[[], str], *, expected: bool) -> tuple[str, str] | None:
    """``server_log_traceback`` of the log's new text; waits up to 1 s for the rest of a
    traceback being written, or for one that is ``expected`` (a 500's comes after the answer).
    """
    text = server_log()
    for _ in range(20):
        if server_log_traceback(text) or not (expected or "Traceback" in text):
            break
        time.sleep(0.05)
        text += server_log()
    return server_log_traceback(text)


def server_log_traceback(text: str) -> tuple[str, str] | None:
    """(exception type at the deepest neopain frame, the exception's line) of the last
    traceback in a server log, or None."""
    if "Traceback (most recent call last)" not in text:
        return None
    block = text[text.rindex("Traceback (most recent call last)"):]
    frames = re.findall(r'File "[^"]*neopain/([^"]+)", line \d+, in (\w+)', block)
    last = next((line for line in block.splitlines()[1:]
                 if re.match(r"[A-Za-z_][\w.]*(:|$)", line)), None)
    if last is None:
        return None  # not all written yet
    kind = last.split(":")[0] or "Traceback"
    where = f" at {frames[-1][0].rsplit('/', 1)[-1]}:{frames[-1][1]}" if frames else ""
    return f"{kind}{where}", last[:300]


def seed_records(client: httpx.Client) -> dict[str, list[int]]:
    """Rows for calls to find: two patients, an open and an ended live session, an image
    upload's session and assessment. Returns their ids by kind."""
    from fuzz.media import frame_jpeg

    def made(response: httpx.Response) -> dict:
        if response.status_code >= 300:
            raise RuntimeError(f"seeding the records failed: {response.status_code} "
                               f"{response.text[:200]}")
        return response.json()

    patients = [made(client.post("/api/patients", json={"record_number": f"FZ-{i}",
                                                        "name": f"Fuzz {i}"}))["id"]
                for i in range(2)]
    live = [made(client.post(f"/api/patients/{patients[0]}/sessions"))["id"] for _ in range(2)]
    made(client.post(f"/api/sessions/{live[1]}/stop"))
    upload = made(client.post(f"/api/patients/{patients[0]}/uploads",
                              files={"file": ("face.jpg", frame_jpeg(), "image/jpeg")}))
    return {"patients": patients, "sessions": [*live, upload["session"]["id"]],
            "assessments": [row["id"] for row in upload["saved"]]}
