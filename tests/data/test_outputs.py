"""``atomic_output``: a file is replaced whole or not at all, keeps its suffix while written
(cv2 and numpy pick the format by it), and gets the permissions any new file would."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from neopain.data.outputs import atomic_output, write_text_atomic


def test_an_interrupted_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = write_text_atomic(tmp_path / "metrics.json", "old")
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as partial:
        partial.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_the_partial_file_keeps_the_real_suffix(tmp_path):
    with atomic_output(tmp_path / "crops" / "face.png") as partial:
        assert partial.suffix == ".png" and partial.parent == tmp_path / "crops"
        assert cv2.imwrite(str(partial), np.zeros((4, 4, 3), np.uint8))
    with atomic_output(tmp_path / "points.npy") as partial:
        np.save(partial, np.ones(3))
    assert cv2.imread(str(tmp_path / "crops" / "face.png")).shape == (4, 4, 3)
    assert np.load(tmp_path / "points.npy").tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    # the bug guarded: mkstemp made every run file, crop and checkpoint 0600, so a research
    # group sharing a run folder could no longer read what it could read before
    previous = os.umask(umask)
    try:
        target = write_text_atomic(tmp_path / "predictions.csv", "a,b\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == mode
