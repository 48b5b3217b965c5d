"""Hostile tables for the CLI: manifests, videos tables and importer sources (hypothesis).

A ``TableCase`` is one command (``dataset validate``, ``dataset frames``, ``dataset import``)
on one table file, plus the files the table points to. Cells are mostly valid, with hostile
ones mixed in: deep JSON nesting, 5,000-digit numbers, NaN/inf, NUL, invalid UTF-8, long and
absolute names, ``/dev/zero``, FIFOs, symlink loops. ``ASSETS`` names the special files every
case finds in its ``assets/`` folder (``sandbox`` creates them).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ASSETS = {
    "a.png": "image", "b.jpg": "image", "c.bmp": "image", "empty.jpg": "empty",
    "garbage.png": "garbage", "fifo.jpg": "fifo", "folder.jpg": "folder", "zero.jpg": "zero",
    "loop.jpg": "loop", "lm.npy": "npy", "object.npy": "npy-object", "huge.npy": "npy-huge",
    "clip.avi": "video", "broken.mp4": "garbage", "fifo.mp4": "fifo",
}  # fmt: skip
"""File name in ``assets/`` → what it is (see ``sandbox.make_file``)."""

LONG = ["x" * 255 + ".jpg", "x" * 300 + ".jpg", "/".join(["d" * 200] * 25) + "/a.png"]
TEXTS = [
    "", " ", "\x00", "a\x00b", "\n", "\r\n", '"', ",", "\ufeff", "\u202e", "\U0001f600", "\udc80",
    "nan", "NaN", "inf", "-Infinity", "1e309", "-1", "-0", "0x10", "1_000", "\u0661\u0662",
    "9" * 5000, "a" * 300, "../" * 40 + "etc/passwd", "/etc/passwd", "/dev/zero", "/dev/null",
    "/dev/stdin", "/proc/self/mem", "C:\\x.jpg", "\\\\server\\share\\x.jpg", "~/x.jpg", "%s%n",
    "{0}", "{label}", "[", "]]", "null", "true", "{}", "[]", "pain", "nopain", "NFCS",
]  # fmt: skip
PATHS = [f"assets/{name}" for name in ASSETS] + [
    *LONG, "missing.png", "assets", "assets/", ".", "/", "/dev/zero", "/dev/null", "/dev/stdin",
    "/proc/self/mem", "/etc", "assets/a.png/x", "assets\\a.png", "a.png\x00.jpg", "assets//a.png",
    "../../../../../../etc/passwd", "/tmp/../dev/zero",
]  # fmt: skip
NUMBERS = ["0", "1", "2.5", "-1", "-0.0", "1e308", "1e309", "-1e309", "nan", "inf", "-inf",
           "NaN", "Infinity", "1e-320", "9" * 400, "9" * 5000, "0x1f", "1,5", "1 000", "٣",
           "4.", ".5", "+3", "--1", "1e", "2**64", "18446744073709551617"]
HUGE = ["a" * 200_000, "\x00" * 70_000, "[" * 100_000, "9" * 100_000, "\udc80" * 1000]
"""Cells over 64 KB (a field the ``csv`` module refuses by default) and of one odd character."""
SPECIAL_TARGETS = ["assets", "missing.csv", "x" * 300 + ".csv", "assets/loop.jpg", "/dev/null"]
"""Where the table itself may be instead of the written ``table.csv`` (a FIFO or /dev/zero
costs seconds each: they are in ``TABLE_CORPUS``)."""


def examples(n: int, *, deadline_ms: int | None = None) -> settings:
    """Settings of a fuzz test: ``n`` inputs, the same ones each run (CI must not draw new
    random inputs: the random search is ``benchmarks/fuzz_all.py``'s), no deadline unless
    ``deadline_ms`` (the harness times each input), nothing kept in a .hypothesis folder."""
    return settings(max_examples=n, deadline=deadline_ms, derandomize=True, database=None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@dataclass(frozen=True)
class TableCase:
    """One CLI run on a table: the sandbox fills in ``argv``'s ``{table}`` (``target``, where
    ``table`` is written), ``{root}`` (the case's folder, holding ``assets/``), ``{out}`` (a
    new folder) and ``{tree}`` (a folder holding ``tree``: relative path, kind of file).
    A corpus case also says what it must end in: ``exit_code`` and texts the output ``says``
    (None and () for drawn cases, which need only end without a traceback, hang or bomb)."""

    argv: tuple[str, ...]
    table: bytes = b""
    target: str = "table.csv"
    tree: tuple[tuple[str, str], ...] = ()
    exit_code: int | None = None
    says: tuple[str, ...] = ()


def deep(depth: int, *, opener: str = "[", closer: str = "]", core: str = "1") -> str:
    """Text nested ``depth`` levels deep, e.g. ``[[[1]]]``; ``closer=""`` leaves it open."""
    return opener * depth + core + closer * depth


def json_values() -> st.SearchStrategy[object]:
    """JSON values of every shape (NaN and infinities included)."""
    leaves = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=5)
                        | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                        max_leaves=25)


def nested_texts() -> st.SearchStrategy[str]:
    """Deeply nested brackets, closed or not, in JSON and Python forms (recursion limits)."""
    depth = st.integers(1, 4000) | st.sampled_from([999, 1000, 3000, 100_000])
    return st.builds(
        deep, depth, opener=st.sampled_from(["[", "(", '{"a":', "array(", "np.float64("]),
        closer=st.sampled_from(["]", ")", "}", ""]), core=st.sampled_from(["1", "", "[1,2]"]))


def json_cells() -> st.SearchStrategy[str]:
    """face_box / keypoints cells: valid, nearly valid and hostile."""
    number = st.floats() | st.integers(-2**70, 2**70) | st.sampled_from([1e308, -0.0, 2**64])
    box = st.lists(number, min_size=0, max_size=6)
    pairs = st.lists(st.lists(number, min_size=1, max_size=3), min_size=0, max_size=7)
    return st.one_of(
        st.just('[1, 2, 6, 7]'), st.just("[[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]]"),
        st.builds(json.dumps, box), st.builds(json.dumps, pairs),
        st.builds(json.dumps, json_values()), nested_texts(), st.sampled_from(TEXTS),
        st.sampled_from(["[1,2,3," + "9" * 5000 + "]", "[[ 20  30]\n [ 40  30]]",
                         "array([1, 2, 6, 7])", "np.float64(1e400)", "(1, 2, 6, 7)"]))


def cells(kind: str) -> st.SearchStrategy[str]:
    """A cell for a column of this kind: label, subject, path, json, number or text."""
    huge = st.integers(0, 19).flatmap(lambda i: st.sampled_from(HUGE) if i == 19
                                      else st.sampled_from(TEXTS))  # 1 in 20 hostile cells
    hostile = st.sampled_from(TEXTS) | st.text(max_size=20) | huge
    valid = {
        "label": st.sampled_from(["pain", "nopain", "Pain", "rest", "cry", "air", "drop"]),
        "subject": st.sampled_from(["s1", "s2", "S04", "a/b", "..", "\\"]),
        "path": st.sampled_from(PATHS),
        "json": json_cells(),
        "number": st.sampled_from(NUMBERS) | st.floats().map(repr),
        "text": st.sampled_from(["icope", "unifesp", "NFCS", "DAN", "FLACC", "NIPS", "x"]),
    }[kind]
    return st.one_of(valid, valid, valid, hostile)


def encoded(header: list[str], rows: list[list[str]], *, style: int, cut: int) -> bytes:
    """The CSV bytes of a table in one of several dialects; ``cut`` > 0 truncates there.

    Styles: 0 minimal quoting; 1 every cell quoted, CRLF; 2 a BOM; 3 raw joins (quotes and
    commas break the layout); 4 a byte that is not UTF-8; 5 NUL bytes."""
    buffer = io.StringIO()
    if style == 3:
        buffer.write("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    else:
        quoting = csv.QUOTE_ALL if style == 1 else csv.QUOTE_MINIMAL
        csv.writer(buffer, quoting=quoting,
                   lineterminator="\r\n" if style == 1 else "\n").writerows([header, *rows])
    data = buffer.getvalue().encode("utf-8", "surrogatepass")
    if style == 2:
        data = b"\xef\xbb\xbf" + data
    elif style == 4:
        data = data[: len(data) // 2] + b"\xff\xfe\xc0" + data[len(data) // 2:]
    elif style == 5:
        data = data.replace(b",", b",\x00", 2)
    return data[:cut] if cut > 0 else data


@st.composite
def tables(draw, columns: dict[str, str], *, required: list[str]) -> bytes:
    """A CSV file: the required columns, some optional ones (and odd names), rows of cells."""
    optional = [name for name in columns if name not in required]
    extra = draw(st.lists(st.sampled_from(optional + ["", "unknown", "image", " label ",
                                                      "x" * 500, "\x00"]), max_size=6))
    header = draw(st.permutations(required + extra)) if draw(st.booleans()) \
        else required + extra
    if draw(st.integers(0, 9)) == 0:
        header = header[1:]  # a required column missing
    rows = draw(st.lists(st.tuples(*[cells(columns.get(name, "text")) for name in header]),
                         max_size=6))
    style = draw(st.integers(0, 5))
    cut = draw(st.integers(0, 400)) if draw(st.integers(0, 9)) == 0 else 0
    return encoded(header, [list(row) for row in rows], style=style, cut=cut)


MANIFEST = {"image": "path", "subject": "subject", "label": "label", "source": "text",
            "stimulus": "label", "score": "number", "scale": "text", "video": "path",
            "time_s": "number", "face_box": "json", "keypoints": "json", "landmarks": "path",
            "original_image": "path", "original_face_box": "json"}
VIDEOS = {"video": "path", "subject": "subject", "score": "number", "scale": "text",
          "label": "label", "source": "text", "start_s": "number", "end_s": "number",
          "stimulus": "label", "image": "path"}
ICOPE = {"file_name": "path", "subject": "subject", "gender": "text", "class": "label",
         "dataset": "text", "NFCS": "number", "new_subject": "subject", "new_file_name": "path",
         "face_coordinates": "json", "keypoints_coordinates": "json"}
SCORES = {"file": "path", "baby": "subject", "class": "label", "nfcs": "number",
          "box": "json", "points": "json", "site": "text"}
MAPS = ["image=file,subject=baby,label=class", "image=file,subject=baby,label=class,score=nfcs,"
        "face_box=box,keypoints=points,source=site", "image=file", "image=,subject=baby",
        "=file", "image=file,image=baby,label=class", "image=nope,subject=baby,label=class"]
PATTERNS = ["{label}/{subject}/{*}", "{source}/{subject}_{label}_{*}", "{label}{label}", "{",
            "{*}", "re:(?P<label>[^/]+)/(?P<subject>[^/]+)/.*", "re:(", "re:.*"]
TREE_NAMES = ["pain/s1/a.jpg", "nopain/s1/b.png", "nopain/s2/c.BMP", "cry/s3/d.jpg",
              "pain/s1/.hidden.jpg", "pain/" + "s" * 250 + "/e.jpg", "x.jpg", "pain/s1/f.jpeg",
              "nopain/s\u202e2/g.jpg", "pain/s1/h h.jpg"]
TREE_KINDS = ["image", "image", "image", "empty", "garbage", "fifo", "folder", "zero", "loop"]


def table_target() -> st.SearchStrategy[str]:
    """Mostly the written table; sometimes a FIFO, a folder, a missing or too long name."""
    return st.one_of(*[st.just("table.csv")] * 12, st.sampled_from(SPECIAL_TARGETS))


def table_cases() -> st.SearchStrategy[TableCase]:
    """Every table command with structured hostile tables, plus unstructured bytes."""
    raw = st.binary(max_size=3000)
    validate = st.builds(
        TableCase, st.sampled_from([("dataset", "validate", "{table}"),
                                    ("dataset", "validate", "{table}", "--no-check-files")]),
        tables(MANIFEST, required=["image", "subject", "label"]) | raw, table_target())
    frames = st.builds(
        TableCase, st.sampled_from(["dan", "flacc", "fixed"]).map(
            lambda policy: ("dataset", "frames", "{table}", "--out", "{out}", "--policy", policy,
                            "--max-frames", "2")),
        tables(VIDEOS, required=["video", "subject", "score"]) | raw, table_target())
    icope = st.builds(
        TableCase, st.sampled_from([(), ("--allow-missing",), ("--pain-vs-rest",)]).map(
            lambda extra: ("dataset", "import", "{table}", "--format", "icope-unifesp",
                           "--root", "{root}", "--out", "{out}/manifest.csv", *extra)),
        tables(ICOPE, required=["class", "dataset", "new_subject", "new_file_name"]) | raw,
        table_target())
    scores = st.builds(
        TableCase, st.sampled_from(MAPS).map(
            lambda mapping: ("dataset", "import", "{table}", "--format", "csv", "--map", mapping,
                             "--root", "{root}", "--out", "{out}/manifest.csv")),
        tables(SCORES, required=["file", "baby", "class"]) | raw, table_target())
    folder = st.builds(
        TableCase, st.sampled_from(PATTERNS).map(
            lambda pattern: ("dataset", "import", "{tree}", "--format", "folder", "--pattern",
                             pattern, "--out", "{out}/manifest.csv")),
        tree=st.lists(st.tuples(st.sampled_from(TREE_NAMES), st.sampled_from(TREE_KINDS)),
                      max_size=6, unique_by=lambda entry: entry[0]).map(tuple))
    return st.one_of(validate, validate, frames, icope, scores, folder)


VALIDATE = ("dataset", "validate", "{table}")
GOOD_MANIFEST = b"image,subject,label,face_box\nassets/a.png,s1,pain,\"[1, 2, 6, 7]\"\n"


def table_corpus() -> dict[str, TableCase]:
    """Fixed inputs: the audit's repros, tables that are a FIFO or /dev/zero (each costs
    seconds while it hangs or fills memory, too much to draw at random), and what fuzzing
    found since (a video name longer than a file name may be)."""
    nested = deep(3000)
    long_name = ("file_name,class,dataset,new_subject,new_file_name\n"
                 f"{'x' * 300}.jpg,pain,iCOPE,1,{'y' * 300}.jpg\n").encode()
    fifo = "is a FIFO (named pipe)"
    bad_manifest = "table.csv is not a valid manifest"
    bad_videos = "table.csv is not a valid videos table"
    return {
        "manifest is a FIFO": TableCase(
            VALIDATE, target="assets/fifo.jpg", exit_code=1,
            says=("assets/fifo.jpg is not a valid manifest", fifo)),
        "manifest is /dev/zero": TableCase(
            VALIDATE, target="assets/zero.jpg", exit_code=1,
            says=("assets/zero.jpg is not a valid manifest", "is a character device")),
        "videos table is a FIFO": TableCase(
            ("dataset", "frames", "{table}", "--out", "{out}"), target="assets/fifo.mp4",
            exit_code=1, says=("assets/fifo.mp4: 1 problem", fifo)),
        "face_box nested 3000 deep": TableCase(
            VALIDATE, f'image,subject,label,face_box\nassets/a.png,s1,pain,"{nested}"\n'
            .encode(), exit_code=1, says=(bad_manifest, "nested deeper than")),
        "keypoints nested 3000 deep": TableCase(
            VALIDATE, f'image,subject,label,keypoints\nassets/a.png,s1,pain,"{nested}"\n'
            .encode(), exit_code=1, says=(bad_manifest, "nested deeper than")),
        "image name too long (icope import)": TableCase(
            ("dataset", "import", "{table}", "--format", "icope-unifesp", "--root", "{root}",
             "--out", "{out}/manifest.csv"), long_name, exit_code=1,
            says=("nothing written", "table.csv has 1 problem")),
        "video name of 256 characters (frames)": TableCase(
            ("dataset", "frames", "{table}", "--out", "{out}"),
            b"video,subject,score\n" + b"v" * 256 + b",s1,1\n", exit_code=1,
            says=(bad_videos, "too long")),
        "video is a FIFO": TableCase(
            ("dataset", "frames", "{table}", "--out", "{out}", "--policy", "fixed"),
            b"video,subject,score,label\nassets/fifo.mp4,s1,1,pain\n", exit_code=1,
            says=(bad_videos, fifo)),
        "a valid manifest": TableCase(VALIDATE, GOOD_MANIFEST, exit_code=0,
                                      says=("valid (files checked)", "table.csv")),
    }
