"""Fuzz every surface of neopain and count what goes wrong (issue 16, item 8).

    python benchmarks/fuzz_all.py --examples 10000
    python benchmarks/fuzz_all.py --examples 300 --surface tables,images --seed 1 --out fuzz-out

Surfaces, each tried ``--examples`` times after a fixed corpus of the audit's repros:

- tables: manifests, videos tables and importer sources through ``dataset validate``,
  ``dataset frames`` and ``dataset import`` (the CLI in a worker process, bounded in time and
  memory);
- images: bytes through the image reader (files and live frames) and ``neopain assess``;
- api: a real ``neopain serve`` on 127.0.0.1: schemathesis over ``/api/openapi.json`` with a
  logged-in client, ids and query values beyond 64 bits, hostile uploads;
- ws: the live WebSocket of that server: garbage, huge and bomb frames, JSON of every shape,
  commands, hostile handshakes, connection bursts.

Per surface it prints inputs tried, tracebacks, 5xx (WebSocket: close 1011 or a handshake
5xx), hangs (no answer within ``--hang-s``), other failures (missing security headers,
inputs slower than ``--slow-s`` or heavier than ``--heavy-mb``, odd replies), the peak RSS
growth (the worker's, or the server's), and a verdict. Exit code 1 when anything failed.
``--out`` keeps each distinct failure's first and smallest input (hypothesis shrinks them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz.campaign import Campaign, Tally  # noqa: E402
from fuzz.sandbox import Outcome, Sandbox, bounded  # noqa: E402

SURFACES = ("tables", "images", "api", "ws")
COLUMNS = {"tracebacks": ("traceback",), "5xx": ("5xx",), "hangs": ("hang",),
           "other": ("headers", "bomb", "reply")}
console = Console()


def sandboxed(name: str, args, folder: Path, advance) -> tuple[Tally, float]:
    """tables or images: the CLI and the image reader in a bounded worker."""
    from fuzz.inputs import table_cases, table_corpus
    from fuzz.media import image_cases, image_corpus

    strategy, corpus = ((table_cases(), table_corpus()) if name == "tables"
                        else (image_cases(), image_corpus()))
    with Sandbox(folder, bound_s=args.hang_s, slow_s=args.slow_s,
                 heavy_mb=args.heavy_mb) as box:
        box.run(table_corpus()["a valid manifest"])  # start the worker outside the counts
        campaign = Campaign(box.run, on_input=advance)
        tally = campaign.run(strategy, examples=args.examples, corpus=corpus,
                             seed_value=args.seed)
    return tally, tally.peak_mb


def served(name: str, args, folder: Path, advance) -> tuple[Tally, float]:
    """api or ws: a real server, with its memory polled during each input."""
    from fuzz.live import family
    from fuzz.live_server import LiveServer
    from fuzz.web import seed_records

    with LiveServer(folder, memory_mb=args.server_memory_mb, timeout_s=args.hang_s) as server:
        known = seed_records(server.client)  # rows to find; the first upload warms the model
        server.new_log()
        if name == "api":
            check, strategy, corpus, done = _api(server, known)
        else:
            check, strategy, corpus, done = _ws(server, known, args)

        def measured(value: object) -> Outcome:
            with server.memory.window() as window:
                outcome = check(value)
            what = (f"{value.method} {value.route}" if name == "api"
                    else f"{value.kind} {family(value)}".strip())
            return bounded(dataclasses.replace(outcome, peak_mb=window["peak_mb"]),
                           slow_s=args.slow_s, heavy_mb=args.heavy_mb, what=what)

        try:
            tally = Campaign(measured, on_input=advance).run(
                strategy, examples=args.examples, corpus=corpus, seed_value=args.seed)
        finally:
            done()
        return tally, server.memory.peak_growth_mb()


def _api(server, known):
    import schemathesis

    from fuzz.web import api_calls, send, upload_corpus
    from neopain.config import Settings
    from neopain.server.app import create_app

    with warnings.catch_warnings():  # the test helpers import Starlette's TestClient
        warnings.simplefilter("ignore")
        from server.conftest import list_routes

    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json")
    # the pages are not in the schema: their routes come from an app of our own
    routes = list_routes(create_app(Settings(data_dir=server.folder / "routes")))
    strategy = api_calls(schema, routes, known)

    def check(call) -> Outcome:
        return send(server.client, call, server_log=server.new_log)

    return check, strategy, upload_corpus(known["patients"][0]), lambda: None


def _ws(server, known, args):
    from fuzz.live import LiveFuzz, RealSocket, ws_actions, ws_corpus

    base = server.url.replace("http://", "ws://")
    fuzz = LiveFuzz(lambda path: RealSocket(base + path, cookie=server.cookie(),
                                            timeout_s=args.hang_s),
                    lambda: server.new_session(known["patients"][1]),
                    timeout_s=args.hang_s, server_log=server.new_log)
    fuzz.act(ws_corpus()["face frame with heatmap on"])  # warm the stream's detector
    ids = sorted({i for values in known.values() for i in values})
    return fuzz.act, ws_actions(ids), ws_corpus(), fuzz.close


def counts(tally: Tally) -> dict[str, int]:
    return {column: sum(tally.problems[p] for p in problems)
            for column, problems in COLUMNS.items()}


def keep(tally: Tally, folder: Path) -> None:
    """Each distinct failure's first and smallest input under ``folder``: ``findings.json``,
    with every long text or bytes value in a file of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = []
    for index, (key, finding) in enumerate(sorted(tally.findings.items())):
        entry = {"failure": key, "count": finding.count, "detail": finding.outcome.detail,
                 "server_log": finding.outcome.logged}
        for which in ("first", "smallest"):
            value = getattr(finding, which)
            fields = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            entry[which] = {"type": type(value).__name__,
                            "value": _external(fields, folder, f"{index:02d}-{which}")}
        summary.append(entry)
    (folder / "findings.json").write_text(json.dumps(summary, indent=1, default=repr))


def _external(value: object, folder: Path, stem: str) -> object:
    """``value`` for JSON: texts and bytes over 200 long are written to ``stem-N.bin``."""
    if isinstance(value, (bytes, str)) and len(value) > 200:
        path = folder / f"{stem}-{len(list(folder.glob(stem + '-*')))}.bin"
        path.write_bytes(value if isinstance(value, bytes) else
                         value.encode("utf-8", "surrogatepass"))
        return f"see {path.name}"
    if isinstance(value, bytes):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_external(item, folder, stem) for item in value]
    if isinstance(value, dict):
        return {str(k): _external(item, folder, stem) for k, item in value.items()}
    return value


def report(results: dict[str, tuple[Tally, float, float]], out: Path | None) -> bool:
    """Print the figures and every distinct failure; True when nothing failed."""
    table = Table(title="neopain fuzzing")
    for column in ("surface", "inputs", "unsent", *COLUMNS, "peak RSS growth MB", "time s"):
        table.add_column(column, justify="left" if column == "surface" else "right")
    failed = 0
    for name, (tally, peak_mb, seconds) in results.items():
        figures = counts(tally)
        failed += sum(figures.values())
        table.add_row(name, str(tally.tried), str(tally.unsent),
                      *(str(v) for v in figures.values()),
                      f"{peak_mb:.0f}", f"{seconds:.0f}")
        if out is not None:
            keep(tally, out / name)
    console.print(table)
    for name, (tally, _, _) in results.items():
        for key, finding in sorted(tally.findings.items()):
            line = " | ".join(filter(None, (finding.outcome.detail, finding.outcome.logged)))
            console.print(f"{name} {finding.count}× {key}: {line[:200]}", highlight=False,
                          markup=False, soft_wrap=True)
    inputs = sum(t.tried for t, _, _ in results.values())
    total = {c: sum(counts(t)[c] for t, _, _ in results.values()) for c in COLUMNS}
    verdict = "PASS" if failed == 0 else "FAIL"
    console.print(f"verdict: {verdict}: {inputs} inputs, " + ", ".join(
        f"{v} {k}" for k, v in total.items()), highlight=False)
    return failed == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="inputs per surface")
    parser.add_argument("--surface", default=",".join(SURFACES),
                        help=f"comma-separated, from {', '.join(SURFACES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder to keep the failing inputs in")
    parser.add_argument("--hang-s", type=float, default=10.0, help="an input without an "
                        "answer after this long is a hang")
    parser.add_argument("--slow-s", type=float, default=2.0)
    parser.add_argument("--heavy-mb", type=float, default=1024.0)
    parser.add_argument("--server-memory-mb", type=int, default=12_000,
                        help="the server's address-space limit (protects this machine)")
    args = parser.parse_args()
    names = [name.strip() for name in args.surface.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SURFACES))
    if unknown:
        parser.error(f"--surface {','.join(unknown)}: valid: {', '.join(SURFACES)}")
    for signum in (signal.SIGINT, signal.SIGTERM):  # clean up on either (even when started
        signal.signal(signum, signal.default_int_handler)  # in the background, SIGINT ignored)
    try:
        results = fuzz(names, args)
    except KeyboardInterrupt:
        console.print("interrupted: the server and the temporary folders are removed")
        return 130
    return 0 if report(results, args.out) else 1


def fuzz(names: list[str], args: argparse.Namespace) -> dict[str, tuple[Tally, float, float]]:
    """Each surface in turn: (tally, peak RSS growth MB, seconds) by name."""
    results = {}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failures]}"), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="neopain-fuzz-") as tmp, \
            Progress(*columns, console=console) as progress:
        for name in names:
            task = progress.add_task(name, total=None, failures="")

            def advance(tally: Tally, task=task) -> None:
                figures = ", ".join(f"{v} {k}" for k, v in counts(tally).items() if v)
                progress.update(task, completed=tally.tried, total=tally.goal,
                                failures=figures)

            started = time.monotonic()
            run = sandboxed if name in ("tables", "images") else served
            tally, peak_mb = run(name, args, Path(tmp) / name, advance)
            results[name] = (tally, peak_mb, time.monotonic() - started)
            progress.update(task, total=tally.tried)
    return results


if __name__ == "__main__":
    sys.exit(main())
