"""`neopain augment` end to end through the installed console script: it augments one fold's
training subjects only, and refuses folds of another manifest, bad folds and bad ranges."""

from __future__ import annotations

import subprocess

import pytest

from neopain.data.folds import load_folds, make_folds, save_folds
from neopain.data.manifest import load_manifest, save_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort


def _run(script, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A small cohort with its folds.json (2 folds, validation subjects in each)."""
    root = tmp_path_factory.mktemp("cohort")
    result = generate_cohort(root, CohortSpec(subjects=5, seed=3, images_per_subject=(2, 3)))
    manifest = load_manifest(result.manifest)
    plan = make_folds(manifest, protocol="lsso", k=2, val_share=0.3, balance_by=None,
                      manifest_sha256=sha256_file(result.manifest))
    return result.manifest, save_folds(plan, root / "folds.json")


def test_augment_writes_n_copies_of_the_training_images_only(neopain_script, cohort, tmp_path):
    manifest_path, folds_path = cohort
    out = tmp_path / "aug"
    done = _run(neopain_script, "augment", str(manifest_path), "--folds", str(folds_path),
                "--fold", "1", "--n", "3", "--out", str(out), "--size", "96", "128",
                "--workers", "2")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "augmented images written" in text and "valid (files checked)" in text
    fold = load_folds(folds_path).folds[1]
    manifest = load_manifest(manifest_path)
    train_images = manifest.table["subject"].isin(fold.train).sum()
    augmented = load_manifest(out / "manifest.csv", check_files=True)
    assert len(augmented) == 3 * train_images
    assert f"fold 1: {3 * train_images} augmented images" in text
    assert set(augmented.table["subject"]) == set(fold.train)
    assert not set(augmented.table["subject"]) & (set(fold.test) | set(fold.val))


def test_folds_of_another_manifest_are_refused(neopain_script, cohort, tmp_path):
    manifest_path, folds_path = cohort
    other = load_manifest(manifest_path)
    edited = other.table.copy()
    edited.loc[0, "label"] = "pain" if edited.loc[0, "label"] == "nopain" else "nopain"
    copy = save_manifest(edited, manifest_path.parent / "edited.csv")
    done = _run(neopain_script, "augment", str(copy), "--folds", str(folds_path), "--fold", "0",
                "--out", str(tmp_path / "aug"))
    assert done.returncode == 1
    assert "was made for a different manifest" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "aug").exists()


@pytest.mark.parametrize("args, message", [
    (["--fold", "2"], "fold=2 is out of range; valid: 0 to 1"),
    (["--fold", "0", "--zoom", "2", "1"], "zoom=(2.0, 1.0) must be (low, high)"),
    (["--fold", "0", "--n", "0"], "n=0 must be a whole number >= 1"),
    (["--fold", "0", "--fill-mode", "wrap"], "fill_mode='wrap' is not valid; valid: nearest"),
])
def test_bad_options_exit_1_naming_what_is_valid(neopain_script, cohort, tmp_path, args, message):
    manifest_path, folds_path = cohort
    done = _run(neopain_script, "augment", str(manifest_path), "--folds", str(folds_path),
                "--out", str(tmp_path / "aug"), *args)
    assert done.returncode == 1
    assert message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr + done.stdout
