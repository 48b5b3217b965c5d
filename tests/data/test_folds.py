"""Subject-grouped folds: no subject in two of a fold's train/val/test, every k-fold subject
tested once, class balance kept over many seeds (StratifiedGroupKFold lost it for years while
its tests only checked disjointness), and folds.json tied to its manifest."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from neopain.data.folds import (
    KFOLD_PROTOCOLS,
    PROTOCOLS,
    SPLITTERS,
    Fold,
    FoldPlan,
    FoldsError,
    check_folds,
    load_folds,
    make_folds,
    rows_of,
    save_folds,
)
from neopain.data.manifest import Manifest, save_manifest, sha256_file
from neopain.errors import NeopainError
from sample_tables import two_source_table

SEEDS = range(50)
TOLERANCE = 0.15


@pytest.fixture(scope="module")
def cohort57() -> Manifest:
    """57 subjects: 27 UNIFESP + 30 iCOPE."""
    return Manifest(table=two_source_table(), root=Path("."))


def pain_share(manifest: Manifest, subjects) -> float:
    """Share of pain images among these subjects' images (computed here, not by the library)."""
    table = manifest.table
    return float((table.loc[table["subject"].isin(set(subjects)), "label"] == "pain").mean())


def source_of(manifest: Manifest) -> dict[str, str]:
    return dict(zip(manifest.table["subject"], manifest.table["source"]))


def assert_grouped(plan: FoldPlan, manifest: Manifest) -> None:
    """Disjoint train/val/test covering every subject; k-fold: each subject tested once."""
    everyone = set(manifest.subjects)
    for fold in plan.folds:
        train, val, test = set(fold.train), set(fold.val), set(fold.test)
        assert not (train & val or train & test or val & test), fold.index
        assert train | val | test == everyone, fold.index
        assert val <= everyone - test  # validation only from the fold's training subjects
        assert train and test
        assert len(fold.train) == len(train)  # no subject listed twice
    if plan.kfold:
        tested = sorted(s for fold in plan.folds for s in fold.test)
        assert tested == sorted(everyone)


# --- the properties, over many seeds ---------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_keeps_subjects_apart_and_classes_balanced_over_50_seeds(cohort57,
                                                                                protocol):
    overall = pain_share(cohort57, cohort57.subjects)
    worst = 0.0
    for seed in SEEDS:
        plan = make_folds(cohort57, protocol=protocol, k=10, seed=seed)
        assert plan.protocol == protocol and plan.seed == seed and len(plan.folds) == 10
        assert_grouped(plan, cohort57)
        assert all(fold.val for fold in plan.folds)
        worst = max(worst, *(abs(pain_share(cohort57, f.test) - overall) for f in plan.folds))
    if protocol in ("sgkf", "holdout"):  # lsso promises sources per fold, not class balance
        assert worst <= TOLERANCE, f"a test fold is {worst:.3f} from the overall pain share"


def test_seeds_change_the_folds(cohort57):
    for protocol in PROTOCOLS:
        tests = {tuple(make_folds(cohort57, protocol=protocol, seed=seed).folds[0].test)
                 for seed in range(5)}
        assert len(tests) >= 4, protocol


def test_lsso_gives_5_to_6_subjects_with_both_sources_per_test_fold_over_50_seeds(cohort57):
    sources = source_of(cohort57)
    for seed in SEEDS:
        plan = make_folds(cohort57, protocol="lsso", k=10, seed=seed)
        for fold in plan.folds:
            assert 5 <= len(fold.test) <= 6
            per_source = pd.Series([sources[s] for s in fold.test]).value_counts()
            assert per_source.get("UNIFESP") in (2, 3)  # floor/ceil of 27 / 10
            assert per_source.get("iCOPE") == 3  # 30 / 10


def test_lsso_deals_each_source_evenly_and_sizes_differ_by_at_most_one():
    manifest = Manifest(table=two_source_table(unifesp=13, icope=24), root=Path("."))
    sources = source_of(manifest)
    for seed in range(10):
        plan = make_folds(manifest, protocol="lsso", k=4, seed=seed)
        sizes = [len(fold.test) for fold in plan.folds]
        assert max(sizes) - min(sizes) <= 1
        for source, n in (("UNIFESP", 13), ("iCOPE", 24)):
            counts = {sum(sources[s] == source for s in fold.test) for fold in plan.folds}
            assert counts <= {n // 4, math.ceil(n / 4)}, (seed, source, counts)


def test_holdout_repeats_differ_and_test_a_fifth_of_the_subjects(cohort57):
    plan = make_folds(cohort57, protocol="holdout", k=10, seed=0, test_share=0.2)
    assert len({fold.test for fold in plan.folds}) == 10
    assert all(len(fold.test) in (11, 12) for fold in plan.folds)  # 57 / 5
    assert plan.params["test_fraction"] == "1/5"
    assert len(make_folds(cohort57, protocol="holdout", test_share=0.3).folds[0].test) in (17, 18)


def test_validation_takes_about_val_share_of_the_training_subjects(cohort57):
    plan = make_folds(cohort57, protocol="sgkf", k=10, val_share=0.2)
    for fold in plan.folds:
        assert abs(len(fold.val) - 0.2 * (len(fold.train) + len(fold.val))) <= 1.5
    none = make_folds(cohort57, protocol="lsso", k=10, val_share=0)
    assert all(fold.val == () for fold in none.folds)


def test_balance_by_none_lets_lsso_fold_a_small_source():
    manifest = Manifest(table=two_source_table(unifesp=4, icope=20), root=Path("."))
    with pytest.raises(FoldsError, match=r"'UNIFESP' has 4 .*k=5.*--balance-by none"):
        make_folds(manifest, protocol="lsso", k=5)
    plan = make_folds(manifest, protocol="lsso", k=5, balance_by=None)
    assert_grouped(plan, manifest)
    assert plan.params["balance_by"] is None


def test_a_three_subject_cohort_still_folds():
    manifest = Manifest(table=pd.DataFrame({"image": ["a", "b", "c", "d"],
                                            "subject": ["x", "y", "z", "z"],
                                            "label": ["pain", "nopain", "pain", "nopain"]}),
                        root=Path("."))
    for protocol in KFOLD_PROTOCOLS:
        plan = make_folds(manifest, protocol=protocol, k=3, balance_by=None)
        assert_grouped(plan, manifest)
        assert [len(fold.val) for fold in plan.folds] == [1, 1, 1]


# --- errors that name the parameter, the value and what is valid -----------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(protocol="loso"), r"protocol='loso' .*valid: lsso, sgkf, holdout"),
        (dict(protocol="sgkf", k=58), r"k=58 .*57.*valid: 2 to 57"),
        (dict(protocol="lsso", k=1), r"k=1 .*valid: a whole number >= 2"),
        (dict(protocol="holdout", k=0), r"k=0 .*valid: a whole number >= 1"),
        (dict(protocol="sgkf", seed=-1), r"seed=-1 .*valid"),
        (dict(protocol="sgkf", val_share=1.0), r"val_share=1.0 .*valid: 0 .*below 1"),
        (dict(protocol="holdout", test_share=0.0), r"test_share=0.0 .*valid: 0.05 to 0.95"),
        (dict(protocol="holdout", test_share=1.5), r"test_share=1.5 .*valid"),
        (dict(protocol="lsso", balance_by="site"), r"balance_by='site' is not a manifest column"),
        (dict(protocol="lsso", k=28), r"'UNIFESP' has 27 .*k=28.*lower k to 27"),
    ],
)
def test_bad_parameters_raise_an_error_naming_them(cohort57, kwargs, pattern):
    with pytest.raises(FoldsError, match=pattern):
        make_folds(cohort57, **kwargs)


def test_unusable_manifest_rows_are_named():
    table = pd.DataFrame({"image": ["a", "b", "c"], "subject": ["x", "", "y"],
                          "label": ["pain", "nopain", "pain"]})
    with pytest.raises(FoldsError, match=r"rows 1 .*'subject' is empty"):
        make_folds(Manifest(table=table, root=Path(".")), protocol="sgkf", k=2)
    table["subject"] = ["x", "y", "z"]
    table.loc[2, "label"] = "Pain"
    with pytest.raises(FoldsError, match=r"rows 2 .*'label'.*valid: pain, nopain"):
        make_folds(Manifest(table=table, root=Path(".")), protocol="sgkf", k=2)


def test_folds_error_is_a_neopain_error():
    assert issubclass(FoldsError, NeopainError)
    assert set(SPLITTERS) == set(PROTOCOLS)


# --- folds.json ------------------------------------------------------------------------------


@pytest.fixture()
def saved(tmp_path, cohort57) -> tuple[Path, Path, FoldPlan]:
    manifest_path = save_manifest(cohort57, tmp_path / "manifest.csv")
    plan = make_folds(cohort57, protocol="lsso", k=10, seed=3,
                      manifest_sha256=sha256_file(manifest_path), manifest_name="manifest.csv")
    return manifest_path, save_folds(plan, tmp_path / "folds.json"), plan


def test_save_then_load_gives_the_same_plan(saved):
    manifest_path, path, plan = saved
    assert load_folds(path, manifest=manifest_path) == plan
    data = json.loads(path.read_text())
    assert [data[key] for key in ("protocol", "seed", "k", "manifest")] == [
        "lsso", 3, 10, "manifest.csv"]
    assert data["manifest_sha256"] == sha256_file(manifest_path)
    assert data["folds"][0]["test"] == sorted(data["folds"][0]["test"])


def test_the_same_seed_gives_identical_bytes(tmp_path, cohort57):
    for protocol in PROTOCOLS:
        files = [save_folds(make_folds(cohort57, protocol=protocol, seed=5), tmp_path / name)
                 for name in ("a.json", "b.json")]
        assert files[0].read_bytes() == files[1].read_bytes()
        other = save_folds(make_folds(cohort57, protocol=protocol, seed=6), tmp_path / "c.json")
        assert other.read_bytes() != files[0].read_bytes()


def test_loading_with_another_manifest_is_refused_naming_both_files(saved, tmp_path):
    manifest_path, path, _ = saved
    other = tmp_path / "other.csv"
    other.write_bytes(manifest_path.read_bytes().replace(b"nopain", b"pain", 1))
    with pytest.raises(FoldsError, match=r"folds.json was made for a different manifest.*"
                                         r"manifest.csv.*other.csv"):
        load_folds(path, manifest=other)


def test_loading_a_plan_without_sha_against_a_manifest_is_refused(saved, tmp_path):
    manifest_path, _, plan = saved
    path = save_folds(replace(plan, manifest_sha256=""), tmp_path / "nosha.json")
    assert load_folds(path).manifest_sha256 == ""
    with pytest.raises(FoldsError, match="records no manifest sha256"):
        load_folds(path, manifest=manifest_path)


def _edit(data: dict, change: str) -> object:
    if change == "no protocol":
        del data["protocol"]
    elif change == "k as text":
        data["k"] = "10"
    elif change == "fold 2 test not a list":
        data["folds"][2]["test"] = "M01"
    elif change == "fold 4 val holds a number":
        data["folds"][4]["val"] = ["M01", 7]
    elif change == "fold 3 index wrong":
        data["folds"][3]["index"] = 7
    elif change == "fold 1 missing train":
        del data["folds"][1]["train"]
    elif change == "one fold fewer than k":
        data["folds"].pop()
    elif change == "bad sha":
        data["manifest_sha256"] = "abc"
    elif change == "a list":
        return [data]
    return data


BAD_FILES = {
    "no protocol": r"key 'protocol' is missing",
    "k as text": r"key 'k' is '10'; valid: a whole number",
    "fold 2 test not a list": r"folds\[2\] \(fold 2\): 'test' must be a list",
    "fold 4 val holds a number": r"folds\[4\] \(fold 4\): 'val' must be a list of subject ids",
    "fold 3 index wrong": r"folds\[3\] \(fold 3\): 'index' must be 3; got 7",
    "fold 1 missing train": r"folds\[1\] \(fold 1\): 'train' .* got nothing",
    "one fold fewer than k": r"has 9 folds but 'k' is 10",
    "bad sha": r"key 'manifest_sha256' is 'abc'; valid: 64 lowercase hex",
    "a list": r"must hold a JSON object",
}


@pytest.mark.parametrize("change", BAD_FILES)
def test_a_bad_folds_file_names_the_key_and_fold(saved, change):
    _, path, _ = saved
    path.write_text(json.dumps(_edit(json.loads(path.read_text()), change)))
    with pytest.raises(FoldsError, match=BAD_FILES[change]) as caught:
        load_folds(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("content", "pattern"), [
    (b"{\n  \"k\": 1,\n", r"line 3, column 1: not valid JSON"),
    (b"\xff\xfe{}", r"not UTF-8"),
])
def test_an_unreadable_folds_file_is_named(tmp_path, content, pattern):
    path = tmp_path / "folds.json"
    path.write_bytes(content)
    with pytest.raises(FoldsError, match=pattern):
        load_folds(path)
    with pytest.raises(FoldsError, match="file not found"):
        load_folds(tmp_path / "absent.json")


# --- check_folds -----------------------------------------------------------------------------


def moved(plan: FoldPlan, index: int, subject: str, *, to: str, keep: bool = False) -> FoldPlan:
    """The plan with ``subject`` added to fold ``index``'s ``to`` split (and, unless ``keep``,
    removed from the split it was in)."""
    fold = plan.folds[index]
    splits = {name: [s for s in getattr(fold, name) if keep or s != subject]
              for name in ("train", "val", "test")}
    splits[to].append(subject)
    folds = list(plan.folds)
    folds[index] = Fold(index=index, **splits)
    return replace(plan, folds=tuple(folds))


def test_a_made_plan_passes_the_check(cohort57):
    for protocol in PROTOCOLS:
        found = check_folds(make_folds(cohort57, protocol=protocol), cohort57)
        assert found.ok and found.problems == (), (protocol, found.problems)
        if protocol in KFOLD_PROTOCOLS:
            assert sum(stats.subjects["test"] for stats in found.stats) == 57


def test_a_subject_in_train_and_test_is_leakage_named_with_its_fold(cohort57):
    plan = make_folds(cohort57, protocol="sgkf", seed=1)
    subject = plan.folds[2].test[0]
    found = check_folds(moved(plan, 2, subject, to="train", keep=True), cohort57)
    assert not found.ok
    [problem] = found.problems
    assert problem.fold == 2 and problem.subjects == (subject,)
    assert f"subject {subject!r} is in both train and test (leakage)" in str(problem)


def test_a_test_subject_moved_into_training_is_in_no_test_fold(cohort57):
    plan = make_folds(cohort57, protocol="lsso", seed=1)
    subject = plan.folds[4].test[1]
    [problem] = check_folds(moved(plan, 4, subject, to="train"), cohort57).problems
    assert problem.subjects == (subject,)
    assert f"subject(s) {subject!r} are in no test fold" in problem.message


def test_a_subject_tested_twice_and_unknown_or_missing_subjects_are_named(cohort57):
    plan = make_folds(cohort57, protocol="lsso", seed=1)
    twice = plan.folds[0].test[0]
    plan = moved(plan, 1, twice, to="test")  # fold 1: was in train or val, now tested again
    plan = moved(plan, 3, "ghost", to="val")
    gone = plan.folds[5].train[0]
    folds = list(plan.folds)
    folds[5] = replace(folds[5], train=folds[5].train[1:])
    found = check_folds(replace(plan, folds=tuple(folds)), cohort57)
    messages = [str(p) for p in found.problems]
    assert "subject 'ghost' (folds 3) is not in the manifest" in messages
    assert any(m.startswith("fold 5: ") and repr(gone) in m and "in none of" in m
               for m in messages)
    assert any(f"subject {twice!r} is in the test set of folds 0, 1" in m for m in messages)


def test_a_subject_listed_twice_in_one_split_is_named(cohort57):
    plan = make_folds(cohort57, protocol="sgkf", seed=0)
    subject = plan.folds[2].val[0]
    [problem] = check_folds(moved(plan, 2, subject, to="val", keep=True), cohort57).problems
    assert (problem.fold, problem.subjects) == (2, (subject,))
    assert "more than once" in problem.message


def test_holdout_refuses_a_test_share_finer_than_the_subjects_allow():
    manifest = Manifest(table=two_source_table(unifesp=4, icope=4), root=Path("."))
    with pytest.raises(FoldsError, match=r"test_share=0.3 splits subjects in 10 parts .*8 subj"):
        make_folds(manifest, protocol="holdout", test_share=0.3)
    assert_grouped(make_folds(manifest, protocol="holdout", test_share=0.25), manifest)


def test_holdout_plans_need_no_coverage(cohort57):
    plan = make_folds(cohort57, protocol="holdout", k=2)
    assert not {s for fold in plan.folds for s in fold.test} >= set(cohort57.subjects)
    assert check_folds(plan, cohort57).ok


def test_a_test_fold_off_the_pain_share_is_a_warning_not_a_problem(cohort57):
    table = cohort57.table
    share = table.groupby("subject")["label"].agg(lambda s: (s == "pain").mean())
    painful = sorted(share[share == 1.0].index)[:3]
    others = sorted(set(cohort57.subjects) - set(painful))
    plan = FoldPlan(protocol="holdout", seed=0, k=1, manifest_sha256="",
                    folds=(Fold(index=0, train=others, val=(), test=painful),))
    found = check_folds(plan, cohort57, tolerance=0.15)
    assert found.ok and found.stats[0].test_pain_share == 1.0
    [warning] = found.warnings
    assert warning.fold == 0 and "test pain share 100%" in str(warning)
    assert check_folds(plan, cohort57, tolerance=1.0).warnings == ()
    with pytest.raises(FoldsError, match=r"tolerance=2 .*valid: 0 to 1"):
        check_folds(plan, cohort57, tolerance=2)


def test_fold_stats_count_subjects_images_and_sources(cohort57):
    plan = make_folds(cohort57, protocol="lsso", seed=0)
    found = check_folds(plan, cohort57)
    sources = source_of(cohort57)
    for fold, stats in zip(plan.folds, found.stats):
        assert stats.images["test"] == len(rows_of(cohort57, fold.test))
        assert sum(stats.images.values()) == len(cohort57)
        assert stats.test_sources == dict(pd.Series([sources[s] for s in fold.test])
                                          .value_counts().sort_index())
        assert stats.test_pain_share == pytest.approx(pain_share(cohort57, fold.test))


# --- small API pieces ------------------------------------------------------------------------


def test_fold_sorts_its_subjects_and_tells_where_one_is():
    fold = Fold(index=0, train=["b", "a"], val=("c",), test=["e", "d"])
    assert fold.train == ("a", "b") and fold.test == ("d", "e")
    assert [fold.split_of(s) for s in "acdz"] == ["train", "val", "test", None]
    assert fold.subjects == ("a", "b", "c", "d", "e")


def test_rows_of_gives_the_rows_of_those_subjects_in_order(cohort57):
    rows = rows_of(cohort57, ["i40", "U01"])
    assert list(rows) == sorted(rows)
    assert set(cohort57.table["subject"].iloc[rows]) == {"i40", "U01"}
    assert len(rows) == int(cohort57.table["subject"].isin(["i40", "U01"]).sum())
