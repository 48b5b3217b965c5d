"""``neopain dataset frames``: a readable summary and exit 0 when frames were written (a warning
when some videos could not be read), exit 1 with every bad row named or when nothing could be
read, and never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortSpec
from neopain.data.synthetic.cohort import make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, ["dataset", "frames", *args])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    generate_clips(root, make_subjects(CohortSpec(subjects=2, seed=3)), clips=1,
                   clip=ClipSpec(seconds=8, fps=10), seed=3)
    return root


def write_table(folder: Path, rows: list[dict]) -> Path:
    path = folder / "videos.csv"
    pd.DataFrame(rows).to_csv(path, index=False, lineterminator="\n")
    return path


def good_rows(clips: Path) -> list[dict]:
    video = next((clips / "videos").glob("S*.mp4"))
    return [{"video": str(video), "subject": video.stem, "score": 1, "start_s": 0, "end_s": 4},
            {"video": str(video), "subject": video.stem, "score": 3, "start_s": 4, "end_s": ""}]


def test_frames_are_written_with_a_summary_and_a_valid_manifest(clips, tmp_path):
    out = tmp_path / "out"
    code, output = run(str(write_table(tmp_path, good_rows(clips))), "--out", str(out))
    assert code == 0, output
    manifest = load_manifest(out / "manifest.csv", check_files=True).table
    assert len(manifest) == 2 + 4  # 0-4 s at 1 frame / 2 s, then 4-8 s at 1 frame / s
    assert manifest["label"].tolist() == ["nopain"] * 2 + ["pain"] * 4
    assert re.search(r"[│|]\s*2, 3\s*[│|]\s*6\s*[│|]\s*0\.000\s*[│|]\s*7\.000\s*[│|]", output)
    assert "wrote 6 frames (4 pain, 2 nopain)" in output


def test_fixed_policy_with_labels_and_png(clips, tmp_path):
    rows = [{**row, "label": "pain", "score": ""} for row in good_rows(clips)[:1]]
    out = tmp_path / "out"
    code, output = run(str(write_table(tmp_path, rows)), "--out", str(out), "--policy", "fixed",
                       "--fps", "2", "--format", "png", "--max-frames", "5")
    assert code == 0, output
    manifest = load_manifest(out / "manifest.csv", check_files=True).table
    assert manifest["time_s"].tolist() == ["0.000", "0.500", "1.000", "1.500", "2.000"]
    assert all(image.endswith(".png") for image in manifest["image"])
    assert "max_frames=5 reached" in output


def test_a_corrupt_video_is_listed_and_the_run_still_exits_0(clips, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    rows = [*good_rows(clips), {"video": "broken.mp4", "subject": "S9", "score": 2}]
    code, output = run(str(write_table(tmp_path, rows)), "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert re.search(r"broken\.mp4\s*[│|]\s*4\s*[│|]\s*cannot be opened", output), output
    assert "warning: 1 of 2 videos could not be read" in output


def test_nothing_readable_exits_1(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    table = write_table(tmp_path, [{"video": "broken.mp4", "subject": "S9", "score": 2}])
    code, output = run(str(table), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "error: no frames were extracted: no video could be read" in output


def test_bad_rows_exit_1_naming_each_line_and_column(clips, tmp_path):
    rows = [*good_rows(clips),
            {"video": "absent.mp4", "subject": "S1", "score": 7, "start_s": 3, "end_s": 2}]
    code, output = run(str(write_table(tmp_path, rows)), "--out", str(tmp_path / "out"))
    assert code == 1
    for column in ("video", "score", "end_s"):
        assert re.search(rf"[│|]\s*4\s*[│|]\s*{column}\s*[│|]", output), (column, output)
    assert "is not a valid videos table: 3 problems" in output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--fps", "2"], "--fps applies to --policy fixed only"),
    (["--policy", "flacc", "--pain-from", "3"], "pain_from=3.0 is outside"),
    (["--max-seconds", "0"], "max_seconds=0.0 is not valid"),
])
def test_bad_options_exit_1_with_the_option_named(clips, tmp_path, args, message):
    table = write_table(tmp_path, good_rows(clips))
    code, output = run(str(table), "--out", str(tmp_path / "out"), *args)
    assert code == 1
    assert message in output
