"""The synthetic cohort is the ground truth for every later stage: test that it is true."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.data.manifest import load_manifest
from neopain.data.synthetic import (
    ACTIONS, FACE_BIT, PAIN_THRESHOLD, PERSONAS, PRESENT, CohortSpec, generate_cohort,
)
from neopain.errors import NeopainError

PERCEPTION_COLUMNS = ["file_name", "heatmap_file_name", "persona", "new_percep_file_name",
                      "new_file_name"]


@pytest.fixture(scope="module")
def table(cohort30) -> pd.DataFrame:
    return load_manifest(cohort30.manifest, check_files=True).table


def _mask(root: Path, row) -> np.ndarray:
    return cv2.imread(str(root / row["mask"]), cv2.IMREAD_UNCHANGED)


def test_acceptance_cohort_size_sources_and_label_balance(table):
    assert len(table) >= 300
    assert table["subject"].nunique() == 30
    assert table["source"].nunique() >= 2
    shares = table["label"].value_counts(normalize=True)
    assert set(shares.index) == {"pain", "nopain"}
    assert shares.min() >= 0.30, shares.to_dict()


def test_each_subject_belongs_to_one_source_and_the_noisy_source_is_small(table):
    assert (table.groupby("subject")["source"].nunique() == 1).all()
    subjects = table.groupby("source")["subject"].nunique()
    assert subjects["synth-noisy"] < subjects["synth-sharp"]


def test_sources_differ_like_real_ones_sharp_large_vs_noisy_small(cohort30, table):
    def sample(source: str) -> list[np.ndarray]:
        rows = table[table["source"] == source].head(10)
        return [cv2.imread(str(cohort30.root / p), cv2.IMREAD_GRAYSCALE) for p in rows["image"]]

    sharp, noisy = sample("synth-sharp"), sample("synth-noisy")
    assert min(i.shape[1] for i in sharp) >= 3 * max(i.shape[1] for i in noisy)

    def flat_noise(images: list[np.ndarray]) -> float:  # noise in the flattest image corner
        return float(np.median([np.std(cv2.Laplacian(i[:12, :12].astype(float), cv2.CV_64F))
                                for i in images]))

    assert flat_noise(noisy) > flat_noise(sharp)


def test_label_is_pain_exactly_when_three_or_more_actions_are_present(table):
    for _, row in table.iterrows():
        intensity = json.loads(row["intensity"])
        present = [a for a in ACTIONS if intensity[a] >= PRESENT]
        assert row["actions"].split(";") == (present or [""])
        assert int(row["score"]) == len(present)
        assert row["label"] == ("pain" if len(present) >= PAIN_THRESHOLD else "nopain")
        assert row["scale"] == "NFCS"


def test_hard_cases_are_present_and_all_no_pain(table):
    assert set(table["stimulus"]) == {"pain", "rest", "partial", "cry"}
    hard = table[table["stimulus"].isin(["partial", "cry"])]
    assert len(hard) >= 0.15 * len(table)
    assert (hard["label"] == "nopain").all()
    cry = table[table["stimulus"] == "cry"]
    assert cry["actions"].str.contains("open_lips").all()
    partial_traces = [json.loads(i) for i in table.loc[table["stimulus"] == "partial", "intensity"]]
    assert all(any(0 < v < PRESENT for v in i.values()) for i in partial_traces)


def test_occluders_appear_in_about_a_fifth_of_images(table):
    share = (table["occluder"] != "").mean()
    assert 0.12 <= share <= 0.28
    assert set(table["occluder"]) - {""} == {"pacifier", "blanket", "hand"}


def test_every_image_has_a_mask_and_four_heatmaps_of_its_size(cohort30, table):
    perception = pd.read_csv(cohort30.perception, dtype=str)
    assert list(perception.columns) == PERCEPTION_COLUMNS
    assert set(perception["persona"]) == {p.name for p in PERSONAS}
    heatmaps = perception.groupby("new_file_name")["new_percep_file_name"].apply(list)
    for _, row in table.iterrows():
        shape = cv2.imread(str(cohort30.root / row["image"])).shape[:2]
        assert _mask(cohort30.root, row).shape == shape
        assert len(heatmaps[row["image"]]) == len(PERSONAS)
        for heat in heatmaps[row["image"]]:
            assert cv2.imread(str(cohort30.root / heat), cv2.IMREAD_GRAYSCALE).shape == shape


def test_masks_mark_exactly_the_present_actions_on_the_face(cohort30, table):
    for _, row in table[table["occluder"] == ""].iterrows():
        mask = _mask(cohort30.root, row)
        present = set(filter(None, row["actions"].split(";")))
        for bit, action in enumerate(ACTIONS):
            marked = int(((mask >> bit) & 1).sum())
            assert (marked > 0) == (action in present), (row["image"], action, marked)
        actions = (mask & 0x3F) > 0
        x1, y1, x2, y2 = json.loads(row["face_box"])
        inside = actions[int(y1):int(y2) + 1, int(x1):int(x2) + 1].sum()
        assert inside >= 0.95 * actions.sum()
        assert ((mask >> FACE_BIT) & 1).sum() > actions.sum()


def test_occluders_hide_the_mask_beneath_them(cohort30, table):
    """An occluded face shows less face than the same subject's unoccluded faces."""
    def face_share(rows: pd.DataFrame) -> float:
        return float(np.mean([((_mask(cohort30.root, r) >> FACE_BIT) & 1).mean()
                              for _, r in rows.iterrows()]))

    for kind in ("pacifier", "blanket"):
        occluded = table[table["occluder"] == kind]
        clear = table[(table["occluder"] == "") & table["source"].isin(occluded["source"])]
        same = clear[clear["source"] == occluded["source"].iloc[0]]
        hidden = occluded[occluded["source"] == occluded["source"].iloc[0]]
        assert face_share(hidden) < face_share(same)


def test_an_occluder_only_clears_mask_bits_and_always_hides_some_face(tmp_path):
    """Same seed with and without occluders: identical faces, so the masks differ only by what
    the occluder hides (a no-op ``Canvas.clear`` passes the share test above but fails here)."""
    spec = dict(subjects=3, seed=11, images_per_subject=(6, 6))
    clean = generate_cohort(tmp_path / "clean", CohortSpec(**spec, occluder_share=0.0))
    hidden = generate_cohort(tmp_path / "hidden", CohortSpec(**spec, occluder_share=1.0))
    rows = pd.read_csv(hidden.manifest, dtype=str, keep_default_na=False)
    assert (rows["occluder"] != "").all()
    for _, row in rows.iterrows():
        before, after = _mask(clean.root, row), _mask(hidden.root, row)
        assert not (after & ~before).any(), row["image"]  # no bit appears
        face_before = ((before >> FACE_BIT) & 1).sum()
        face_after = ((after >> FACE_BIT) & 1).sum()
        assert face_after < face_before, (row["image"], row["occluder"])


def test_keypoints_lie_in_the_face_box_image_left_eye_first(cohort30):
    manifest = load_manifest(cohort30.manifest)
    boxes, keypoints = manifest.boxes(), manifest.keypoints()
    assert not np.isnan(boxes).any() and not np.isnan(keypoints).any()
    x, y = keypoints[..., 0], keypoints[..., 1]
    assert ((x >= boxes[:, [0]]) & (x <= boxes[:, [2]])).all()
    assert ((y >= boxes[:, [1]]) & (y <= boxes[:, [3]])).all()
    assert (keypoints[:, 0, 0] < keypoints[:, 1, 0]).all()  # eyes
    assert (keypoints[:, 3, 0] < keypoints[:, 4, 0]).all()  # mouth corners
    assert (keypoints[:, 2, 1] > keypoints[:, :2, 1].max(axis=1) - 1).all()  # nose below the eyes


def test_subjects_have_an_identity_skin_tone_varies_between_more_than_within(cohort30, table):
    rows = table[(table["source"] == "synth-sharp") & (table["occluder"] == "")]
    tones = []
    for _, row in rows.iterrows():
        image = cv2.imread(str(cohort30.root / row["image"])).astype(float)
        mask = _mask(cohort30.root, row)
        skin = (((mask >> FACE_BIT) & 1) == 1) & ((mask & 0x3F) == 0)
        tones.append((row["subject"], image[skin].mean()))
    tone = pd.DataFrame(tones, columns=["subject", "tone"])
    within = tone.groupby("subject")["tone"].std().mean()
    between = tone.groupby("subject")["tone"].mean().std()
    assert between > 2 * within


def _union_of_actions(root: Path, row) -> np.ndarray:
    return ((_mask(root, row) & 0x3F) > 0).astype(float)


def test_personas_match_the_masks_in_their_documented_order(cohort30, table):
    """Guards issue 6: the persona whose heatmaps match the masks best must be identifiable."""
    perception = pd.read_csv(cohort30.perception, dtype=str).set_index(["new_file_name", "persona"])
    pain = table[(table["label"] == "pain") & (table["occluder"] == "")].head(60)
    mean_corr = {}
    for persona in PERSONAS:
        corr = []
        for _, row in pain.iterrows():
            heat = cv2.imread(str(cohort30.root / perception.loc[(row["image"], persona.name),
                                                                 "new_percep_file_name"]), 0)
            truth = _union_of_actions(cohort30.root, row)
            corr.append(np.corrcoef(heat.ravel(), truth.ravel())[0, 1])
        mean_corr[persona.name] = float(np.mean(corr))
    ranked = sorted(mean_corr, key=mean_corr.get, reverse=True)
    assert ranked == [p.name for p in PERSONAS], mean_corr


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    spec = CohortSpec(subjects=3, seed=7, images_per_subject=(4, 6))
    one = generate_cohort(tmp_path / "one", spec, workers=1)
    two = generate_cohort(tmp_path / "two", spec, workers=2)
    assert one.manifest.read_bytes() == two.manifest.read_bytes()
    assert _tree_digest(one.root) == _tree_digest(two.root)
    other = generate_cohort(tmp_path / "other", CohortSpec(subjects=3, seed=8,
                                                           images_per_subject=(4, 6)))
    assert other.manifest.read_bytes() != one.manifest.read_bytes()


def test_progress_hook_counts_every_image(tmp_path):
    seen = []
    result = generate_cohort(tmp_path, CohortSpec(subjects=2, images_per_subject=(2, 2)),
                             on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, result.images) for i in range(1, result.images + 1)]


def test_a_noisy_rater_changes_labels_near_the_cut_off_and_nothing_drawn(tmp_path):
    """Same seed with and without rater noise: the same image bytes, masks and drawn actions;
    only score and label differ, on some images, and a label only changes when the score
    crosses the cut-off by a step or two (a rater misjudging one or two actions)."""
    spec = dict(subjects=4, seed=5, images_per_subject=(12, 12))
    truth = generate_cohort(tmp_path / "truth", CohortSpec(**spec))
    rated = generate_cohort(tmp_path / "rated", CohortSpec(**spec, rater_noise=0.25))
    a = pd.read_csv(truth.manifest, dtype=str, keep_default_na=False)
    b = pd.read_csv(rated.manifest, dtype=str, keep_default_na=False)
    drawn = [c for c in a.columns if c not in ("score", "label")]
    pd.testing.assert_frame_equal(a[drawn], b[drawn])
    for _, row in a.iterrows():
        for key in ("image", "mask"):
            assert (truth.root / row[key]).read_bytes() == (rated.root / row[key]).read_bytes()
    changed = a["label"] != b["label"]
    assert 0 < changed.sum() < len(a) / 3, changed.sum()
    step = (a["score"].astype(int) - b["score"].astype(int)).abs()
    assert (step[changed] <= 2).all()
    rated_pain = b["score"].astype(int) >= PAIN_THRESHOLD
    assert (b["label"] == np.where(rated_pain, "pain", "nopain")).all()
    assert json.loads(rated.info.read_text())["spec"]["rater_noise"] == 0.25


@pytest.mark.parametrize("kwargs, field", [
    ({"subjects": 1}, "subjects=1"),
    ({"images_per_subject": (5, 2)}, "images_per_subject"),
    ({"pain_share": 1.5}, "pain_share=1.5"),
    ({"rater_noise": -0.1}, "rater_noise=-0.1"),
])
def test_bad_spec_names_the_field_and_what_is_valid(kwargs, field):
    with pytest.raises(NeopainError, match=field):
        CohortSpec(**kwargs)


def test_cohort_json_documents_the_conventions(cohort30):
    info = json.loads(cohort30.info.read_text())
    assert info["actions"] == {a: {"mask_bit": i} for i, a in enumerate(ACTIONS)}
    assert info["face_mask_bit"] == FACE_BIT
    assert [n for n, _ in sorted(info["personas"].items(), key=lambda kv: kv[1]["fidelity_rank"])] \
        == [p.name for p in PERSONAS]
