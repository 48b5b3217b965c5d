"""``neopain dataset validate``: a summary for a valid manifest; for a bad one every problem by
line and column, exit code 1, and never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner


from neopain.cli.app import app as neopain_app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, ["dataset", "validate", *args])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def shows(output: str, line: int | None, column: str) -> bool:
    """Whether the problems table has a row for this line and column."""
    line_text = "-" if line is None else str(line)
    pattern = rf"[│|]\s*{line_text}\s*[│|]\s*{re.escape(column)}\s*[│|]"
    return re.search(pattern, output) is not None


HEADER = "image,subject,label,source,face_box"


def make_dataset(folder: Path, rows: list[str], *, header: str = HEADER) -> Path:
    """Write images a.png..d.png and a manifest with the given rows."""
    (folder / "faces").mkdir(parents=True, exist_ok=True)
    for name in "abcd":
        cv2.imwrite(str(folder / "faces" / f"{name}.png"), np.full((8, 8, 3), 127, np.uint8))
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


GOOD_ROWS = [
    'faces/a.png,s1,pain,icope,"[1, 2, 6, 7]"',
    "faces/b.png,s1,nopain,icope,",
    "faces/c.png,s2,pain,unifesp,",
    "faces/d.png,s3,nopain,,",
]


def test_a_valid_manifest_exits_0_and_prints_the_summary(tmp_path):
    code, output = run(str(make_dataset(tmp_path, GOOD_ROWS)))
    assert code == 0, output
    assert "valid" in output and "files checked" in output
    assert "4 rows, 3 subjects, 3 sources" in output
    assert re.search(r"icope\s*[│|]\s*1\s*[│|]\s*1\s*[│|]\s*2\b", output)
    assert re.search(r"\(none\)\s*[│|]\s*0\s*[│|]\s*1\s*[│|]\s*1\b", output)


BAD_CASES = {
    "missing column": (
        dict(header="image,label,source,face_box",
             rows=[r.replace(",s1", "") for r in GOOD_ROWS[:2]]),
        (None, "subject"),
    ),
    "bad label": (dict(rows=[*GOOD_ROWS[:2], "faces/c.png,s2,Pain?,unifesp,"]), (4, "label")),
    "unparseable face_box": (
        dict(rows=[*GOOD_ROWS[:2], 'faces/c.png,s2,pain,x,"[1, 2"']),
        (4, "face_box"),
    ),
    "missing file": (dict(rows=[*GOOD_ROWS[:3], "faces/zz.png,s3,pain,,"]), (5, "image")),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_manifest_exits_1_and_names_the_line_and_column(tmp_path, case):
    manifest, (line, column) = BAD_CASES[case]
    code, output = run(str(make_dataset(tmp_path, **manifest)))
    assert code == 1
    assert shows(output, line, column), output
    assert "1 problem" in output


def test_all_four_problems_at_once_are_all_named(tmp_path):
    rows = [
        "faces/a.png,pain,icope,",
        "faces/b.png,Pain?,icope,",
        'faces/c.png,pain,x,"[1, 2"',
        "faces/zz.png,nopain,,",
    ]
    code, output = run(str(make_dataset(tmp_path, rows, header="image,label,source,face_box")))
    assert code == 1
    for line, column in [(None, "subject"), (3, "label"), (4, "face_box"), (5, "image")]:
        assert shows(output, line, column), (line, column, output)
    assert "4 problems" in output


def test_no_check_files_skips_the_file_check(tmp_path):
    path = make_dataset(tmp_path, [*GOOD_ROWS[:3], "faces/zz.png,s3,pain,,"])
    code, output = run(str(path), "--no-check-files")
    assert code == 0, output
    assert "files not checked" in output


def test_values_with_rich_markup_are_shown_literally(tmp_path):
    path = make_dataset(tmp_path, ["faces/a.png,s1,[bold]pain[/bold],icope,"])
    code, output = run(str(path), "--no-check-files")
    assert code == 1
    assert "[bold]pain[/bold]" in output


def test_more_than_200_problems_are_cut_with_a_count_per_column(tmp_path):
    rows = [f"faces/{i}.png,s,bad,," for i in range(230)] + ["faces/x.png,,pain,,"]
    code, output = run(str(make_dataset(tmp_path, rows)), "--no-check-files")
    assert code == 1
    assert shows(output, 201, "label") and not shows(output, 202, "label")
    assert "... and 31 more (label: 30, subject: 1)" in output


@pytest.mark.parametrize(
    "content", [b"", b"image,subject,label\n\xff\xfe,s,pain\n", b'image,"subject\n']
)
def test_unreadable_files_exit_1_without_a_traceback(tmp_path, content):
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    code, _ = run(str(path))
    assert code == 1


def test_a_missing_manifest_exits_1_without_a_traceback(tmp_path):
    code, output = run(str(tmp_path / "absent.csv"))
    assert code == 1
    assert "file not found" in output


def test_the_installed_console_script_exits_1_without_a_traceback(tmp_path):
    script = Path(sys.executable).parent / "neopain"
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    probe = subprocess.run([sys.executable, "-c", "import neopain.cli.app"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("neopain.cli.app does not import yet (other command groups missing)")
    path = make_dataset(tmp_path, [*GOOD_ROWS[:2], "faces/c.png,s2,Pain?,unifesp,"])
    result = subprocess.run(
        [str(script), "dataset", "validate", path.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert shows(result.stderr, 4, "label"), result.stderr
