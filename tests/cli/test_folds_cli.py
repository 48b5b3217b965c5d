"""``neopain folds make|check``: folds.json for a manifest; check exits 1 naming the subject that
leaks, is tested twice or never, and refuses folds made for another manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.folds import Fold, FoldPlan, load_folds, save_folds
from neopain.data.manifest import save_manifest, sha256_file
from sample_tables import two_source_table


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, ["folds", *args])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


@pytest.fixture()
def manifest(tmp_path) -> Path:
    """The 57-subject, 2-source acceptance table (27 UNIFESP + 30 iCOPE) on disk."""
    return save_manifest(two_source_table(), tmp_path / "manifest.csv")


def make(manifest: Path, *args: str) -> Path:
    out = manifest.parent / "folds.json"
    code, output = run("make", str(manifest), "--out", str(out), *args)
    assert code == 0, output
    return out


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_lsso_10_folds_of_57_subjects_give_5_to_6_per_test_fold_with_both_sources(manifest):
    folds = make(manifest, "--protocol", "lsso", "--k", "10")
    table = pd.read_csv(manifest, dtype=str)
    source = dict(zip(table["subject"], table["source"]))
    plan = load_folds(folds, manifest=manifest)
    assert (plan.protocol, plan.k, len(plan.folds)) == ("lsso", 10, 10)
    for fold in plan.folds:
        assert 5 <= len(fold.test) <= 6
        assert {source[s] for s in fold.test} == {"UNIFESP", "iCOPE"}
    code, output = run("check", str(manifest), str(folds))
    assert code == 0, output
    assert "no leakage" in output
    assert "every subject is in exactly one test fold" in " ".join(output.split())


@pytest.mark.parametrize("protocol", ["lsso", "sgkf", "holdout"])
def test_make_prints_a_row_per_fold_and_check_passes(manifest, protocol):
    folds = make(manifest, "--protocol", protocol, "--k", "4", "--seed", "2")
    plan = load_folds(folds)
    code, output = run("check", str(manifest), str(folds))
    assert code == 0, output
    for fold in plan.folds:
        test = rf"{len(fold.test)} \(\d+\)"
        assert re.search(rf"│\s*{fold.index}\s*│\s*{len(fold.train)} \(\d+\)\s*│.*│\s*{test}\s*│",
                         output), output
    assert "UNIFESP" in output and "iCOPE" in output


@pytest.mark.parametrize("protocol", ["lsso", "sgkf"])
def test_moving_a_test_subject_into_the_training_set_fails_naming_it(manifest, protocol):
    folds = make(manifest, "--protocol", protocol)
    subject = load_folds(folds).folds[3].test[0]

    def move(data: dict) -> None:
        data["folds"][3]["test"].remove(subject)
        data["folds"][3]["train"].append(subject)

    edit(folds, move)
    code, output = run("check", str(manifest), str(folds))
    assert code == 1
    assert re.search(rf"{subject}\s*│.*no test fold", output), output
    assert f"subjects: {subject}" in output


def test_adding_a_test_subject_to_the_training_set_fails_as_leakage_naming_it(manifest):
    folds = make(manifest, "--protocol", "holdout")
    subject = load_folds(folds).folds[0].test[2]
    edit(folds, lambda data: data["folds"][0]["train"].append(subject))
    code, output = run("check", str(manifest), str(folds))
    assert code == 1
    assert re.search(rf"│\s*0\s*│\s*{subject}\s*│.*in both train and test \(leakage\)", output)
    assert f"subjects: {subject}" in output


def test_folds_made_for_another_manifest_are_refused(manifest, tmp_path):
    folds = make(manifest, "--protocol", "sgkf")
    other = tmp_path / "other.csv"
    other.write_bytes(manifest.read_bytes() + b"extra.jpg,U01,pain,UNIFESP\n")
    code, output = run("check", str(other), str(folds))
    assert code == 1
    assert "made for a different manifest" in output


def test_the_same_command_writes_identical_bytes(manifest):
    first = make(manifest, "--protocol", "holdout", "--seed", "9").read_bytes()
    second = make(manifest, "--protocol", "holdout", "--seed", "9").read_bytes()
    assert first == second
    assert json.loads(first)["manifest_sha256"] == sha256_file(manifest)


def test_strict_turns_a_class_balance_warning_into_exit_1(manifest):
    table = pd.read_csv(manifest, dtype=str)
    share = table.groupby("subject")["label"].agg(lambda s: (s == "pain").mean())
    painful = sorted(share[share == 1.0].index)[:2]
    plan = FoldPlan(protocol="holdout", seed=0, k=1, manifest_sha256=sha256_file(manifest),
                    folds=(Fold(index=0, train=sorted(set(share.index) - set(painful)), val=(),
                                test=painful),))
    folds = save_folds(plan, manifest.parent / "hand.json")
    code, output = run("check", str(manifest), str(folds))
    assert code == 0 and "test pain share 100%" in output
    code, output = run("check", str(manifest), str(folds), "--strict")
    assert code == 1 and "class-balance warning" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "loso"], "protocol='loso' is not known; valid: lsso, sgkf, holdout"),
        (["--protocol", "sgkf", "--k", "99"], "k=99 folds is more than the number of subjects"),
        (["--protocol", "lsso", "--k", "28"], "lower k to 27 or less"),
        (["--protocol", "lsso", "--balance-by", "site"], "balance_by='site' is not a manifest"),
    ],
)
def test_bad_options_exit_1_with_what_is_valid(manifest, args, message):
    code, output = run("make", str(manifest), "--out", str(manifest.parent / "f.json"), *args)
    assert code == 1
    assert message in " ".join(output.split())
    assert not (manifest.parent / "f.json").exists()


def test_a_bad_manifest_or_folds_file_exits_1_naming_it(manifest, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,subject,label\na.jpg,s1,Pain\n")
    code, output = run("make", str(bad), "--out", str(tmp_path / "f.json"), "--protocol", "sgkf")
    assert code == 1 and "not a valid manifest" in output and "label" in output
    folds = make(manifest, "--protocol", "sgkf")
    edit(folds, lambda data: data["folds"][1].pop("val"))
    code, output = run("check", str(manifest), str(folds))
    assert code == 1
    assert "folds[1] (fold 1): 'val' must be a list" in " ".join(output.split())
