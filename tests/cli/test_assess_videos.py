"""``neopain assess LIST.txt``: a list of videos, each assessed as ``neopain assess VIDEO``
assesses it (the same files in its own folder), one row per video in videos.csv, a video that
fails recorded without stopping the others, a rerun that assesses only what is not finished,
and ``--backend ray`` (one video per task) writing the local backend's files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest
from cli_invoke import invoke
from pain_clip import write_pain_clip
from ray_cluster import local_ray
from skimage import data

TIMED = ("latency_ms",)  # what records time: differs between any two runs


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A folder with ``list.txt`` naming: a clip of a face with a pain episode, a clip with no
    face (a cup of coffee) in a subfolder, and a file that is no video."""
    folder = tmp_path_factory.mktemp("videos")
    write_pain_clip(folder / "baby.mp4", seconds=3, fps=5, episodes=((1.0, 2.5),))
    (folder / "cot2").mkdir()
    cup = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (320, 240))
    writer = cv2.VideoWriter(str(folder / "cot2" / "empty.mp4"),
                             cv2.VideoWriter_fourcc(*"mp4v"), 5, (320, 240))
    for _ in range(6):
        writer.write(cup)
    writer.release()
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "list.txt").write_text("# two cots\nbaby.mp4\n\ncot2/empty.mp4\nbroken.mp4\n")
    return folder


def files_of(folder: Path) -> dict[str, object]:
    """Every file under ``folder`` (bytes; CSV tables without their timing columns)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = str(path.relative_to(folder))
            if path.suffix == ".csv":
                table = pd.read_csv(path, dtype=str, keep_default_na=False)
                found[name] = table.drop(columns=[c for c in TIMED if c in table]).to_dict()
            elif path.suffix in (".png", ".html"):
                found[name] = path.stat().st_size > 0  # drawn from the same tables
            else:
                found[name] = path.read_bytes()
    return found


def test_each_video_of_a_list_gets_the_single_video_files(videos, tmp_path):
    code, output = invoke("assess", str(videos / "list.txt"), "--out", str(tmp_path / "all"),
                          seconds=300)
    assert code == 1, output  # one video could not be read: said, and the others done
    assert "broken.mp4" in output and "1 of 3 videos could not be assessed" in output
    table = pd.read_csv(tmp_path / "all" / "videos.csv", keep_default_na=False)
    assert list(table["status"]) == ["done", "no_face", "error"]
    assert [Path(v).name for v in table["video"]] == ["baby.mp4", "empty.mp4", "broken.mp4"]
    assert int(table.loc[0, "episodes"]) >= 1 and float(table.loc[0, "pain_share"]) > 0
    code, output = invoke("assess", str((videos / "baby.mp4").absolute()), "--out",
                          str(tmp_path / "one"), seconds=300)
    assert code == 0, output
    assert files_of(tmp_path / "all" / "baby") == files_of(tmp_path / "one")
    assert json.loads((tmp_path / "all" / "cot2" / "empty" / "summary.json").read_text()
                      )["face_frames"] == 0


def test_a_rerun_assesses_only_the_videos_not_finished(videos, tmp_path):
    out = tmp_path / "run"
    invoke("assess", str(videos / "list.txt"), "--out", str(out), seconds=300)
    done = (out / "baby" / "timeline.csv").stat().st_mtime_ns
    table = pd.read_csv(out / "videos.csv", keep_default_na=False)
    table.loc[table["status"] == "no_face", "status"] = "error"  # as if it had failed
    table.to_csv(out / "videos.csv", index=False)
    code, output = invoke("assess", str(videos / "list.txt"), "--out", str(out), seconds=300)
    assert code == 1, output
    assert (out / "baby" / "timeline.csv").stat().st_mtime_ns == done  # not assessed again
    again = pd.read_csv(out / "videos.csv", keep_default_na=False)
    assert list(again["status"]) == ["done", "no_face", "error"]  # the failed ones retried
    code, output = invoke("assess", str(videos / "list.txt"), "--out", str(out), "--window", "7",
                          seconds=300)  # another smoothing: not mixed into the same table
    assert code == 1 and "window: 5 then, 7 now" in " ".join(output.split()), output
    assert (out / "baby" / "timeline.csv").stat().st_mtime_ns == done


@pytest.mark.parametrize("lines, problem", [
    ("baby.mp4\nmissing.mp4\n", "list.txt line 2: 'missing.mp4': no such file"),
    ("baby.mp4\nlist.txt\n", "list.txt line 2: 'list.txt' is not a video"),
    ("# nothing\n\n", "names no video"),
])
def test_a_bad_list_names_its_line(videos, tmp_path, lines, problem):
    (tmp_path / "list.txt").write_text(lines)
    (tmp_path / "baby.mp4").symlink_to(videos / "baby.mp4")
    code, output = invoke("assess", str(tmp_path / "list.txt"), "--out", str(tmp_path / "o"))
    assert code == 1 and problem in " ".join(output.split()), output
    assert "Traceback" not in output


@pytest.mark.parametrize("settings", ["{not json", "[1, 2]"])
def test_a_videos_json_that_is_not_the_settings_is_named_not_a_traceback(videos, tmp_path,
                                                                       settings):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "videos.json").write_text(settings)
    code, output = invoke("assess", str(videos / "list.txt"), "--out", str(tmp_path / "o"))
    said = " ".join(output.split())
    assert code == 1 and "videos.json: not the settings" in said, output
    assert "delete that folder to start again" in said and "Traceback" not in output


@pytest.mark.slow
def test_ray_assesses_one_video_per_task_as_the_local_backend_does(videos, tmp_path):
    code, output = invoke("assess", str(videos / "list.txt"), "--out", str(tmp_path / "local"),
                          seconds=300)
    assert code == 1, output
    with local_ray():
        code, output = invoke("assess", str(videos / "list.txt"), "--out",
                              str(tmp_path / "ray"), "--backend", "ray", seconds=300)
    assert code == 1, output
    local, ray = files_of(tmp_path / "local"), files_of(tmp_path / "ray")
    for table in (local, ray):  # the folders differ: local/ vs ray/
        table["videos.csv"]["folder"] = {k: Path(v).name
                                         for k, v in table["videos.csv"]["folder"].items()}
    assert local == ray
