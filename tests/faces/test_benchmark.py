"""The detector comparison: figures that mean what they say (no-face share 0 on faces and 1 on
coffee, times positive with p95 >= median), manifests and videos as sources, bad input named."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data

from neopain.data.manifest import format_box, format_keypoints, save_manifest
from neopain.data.video import VideoReadError
from neopain.errors import NeopainError
from neopain.faces.base import DetectorError, create_detector
from neopain.faces.benchmark import (
    MESH_ROW,
    BenchmarkImage,
    DetectorFigures,
    benchmark_detectors,
    images_from_path,
    manifest_images,
    video_frames,
)


def framed(photo: np.ndarray, shift: int) -> np.ndarray:
    """A 640×360 frame with the photo's upper 300×300 part scaled into its height."""
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:, 100 + shift:460 + shift] = cv2.resize(photo[0:300, 75:375], (360, 360),
                                                   interpolation=cv2.INTER_AREA)
    return frame


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def face_frames(astronaut) -> list[tuple[str, np.ndarray]]:
    return [(f"astronaut-{i}", framed(astronaut, 8 * i)) for i in range(5)]


@pytest.fixture(scope="module")
def coffee_frames() -> list[tuple[str, np.ndarray]]:
    coffee = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    return [(f"coffee-{i}", framed(coffee, 8 * i)) for i in range(4)]


def check_sane(figures: DetectorFigures, *, images: int) -> None:
    assert figures.images == images
    assert 0 < figures.median_ms <= figures.p95_ms
    assert figures.images_per_s > 0
    # images/s is 1000 / mean ms, and the mean lies below the slowest call
    assert figures.images_per_s >= 1000 / (figures.p95_ms * 10)


def test_no_face_share_is_0_on_faces_and_1_on_coffee(face_frames, coffee_frames):
    on_faces = benchmark_detectors(face_frames, detectors=["mediapipe-short", "opencv-haar"],
                                   include_mesh=True, warmup=1)
    assert [f.detector for f in on_faces] == ["mediapipe-short", "opencv-haar", MESH_ROW]
    for figures in on_faces:
        check_sane(figures, images=len(face_frames))
        assert figures.no_face == 0 and figures.no_face_share == 0.0, figures.detector
    on_coffee = benchmark_detectors(coffee_frames, detectors=["mediapipe-short", "opencv-haar"],
                                    include_mesh=True, warmup=1)
    for figures in on_coffee:
        check_sane(figures, images=len(coffee_frames))
        assert figures.no_face == len(coffee_frames) and figures.no_face_share == 1.0


def test_mixed_images_count_each_image_once_whatever_the_repeats(face_frames, coffee_frames):
    mixed = face_frames[:3] + coffee_frames[:1]
    figures, = benchmark_detectors(mixed, detectors=["mediapipe-short"], repeats=3, warmup=0)
    assert figures.images == 4 and figures.no_face == 1 and figures.no_face_share == 0.25


def test_figures_are_json_ready(face_frames):
    figures = benchmark_detectors(face_frames[:2], detectors=["mediapipe-short"],
                                  include_mesh=True, mesh_video=True, warmup=0)
    rows = json.loads(json.dumps([f.to_dict() for f in figures], allow_nan=False))
    assert [row["detector"] for row in rows] == ["mediapipe-short", f"{MESH_ROW} (video)"]
    assert set(rows[0]) == {"detector", "images", "no_face", "no_face_share", "median_ms",
                            "p95_ms", "images_per_s", "threshold"}
    assert rows[0]["threshold"] == 0.5 and rows[0]["images"] == 2


def test_progress_reports_every_image(face_frames):
    calls = []
    benchmark_detectors(face_frames, detectors=["opencv-haar"], warmup=0,
                        on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, len(face_frames)) for i in range(1, len(face_frames) + 1)]
    calls.clear()
    benchmark_detectors(iter(face_frames[:2]), detectors=["opencv-haar"], warmup=0,
                        on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1), (2, 2)]  # a generator has no length: total follows done


def test_built_detectors_are_used_and_left_open(face_frames):
    with create_detector("mediapipe-short", threshold=0.99) as strict:
        figures, = benchmark_detectors(face_frames[:2], detectors=[strict], warmup=0)
        assert figures.detector == "mediapipe-short" and figures.threshold == 0.99
        assert figures.no_face_share == 1.0  # the astronaut scores about 0.95
        assert strict.detect(face_frames[0][1]) == []  # still usable: not closed


def test_detector_options_reach_the_detector(face_frames):
    figures, = benchmark_detectors(face_frames[:1], detectors=["mediapipe-short"], warmup=0,
                                   detector_options={"mediapipe-short": {"threshold": 0.99}})
    assert figures.threshold == 0.99 and figures.no_face == 1


def test_bad_arguments_name_what_is_valid(face_frames):
    with pytest.raises(NeopainError, match=r"detectors=\[\] names nothing to time; valid: .*"
                                           r"mediapipe-short"):
        benchmark_detectors(face_frames, detectors=[])
    with pytest.raises(NeopainError, match="must be a list of names"):
        benchmark_detectors(face_frames, detectors="opencv-haar")
    with pytest.raises(NeopainError, match="opencv-haar more than once"):
        benchmark_detectors(face_frames, detectors=["opencv-haar", "opencv-haar"])
    with pytest.raises(NeopainError, match="repeats=0 must be at least 1"):
        benchmark_detectors(face_frames, detectors=["opencv-haar"], repeats=0)
    with pytest.raises(NeopainError, match="warmup=-1 must be 0 or more"):
        benchmark_detectors(face_frames, detectors=["opencv-haar"], warmup=-1)
    with pytest.raises(DetectorError, match="unknown detector 'retina'"):
        benchmark_detectors(face_frames, detectors=["retina"])
    with pytest.raises(NeopainError, match="no images to benchmark"):
        benchmark_detectors([], detectors=["opencv-haar"])
    with pytest.raises(NeopainError, match="'gray' is uint8 \\(360, 640\\); valid: a BGR uint8"):
        benchmark_detectors([("gray", np.zeros((360, 640), np.uint8))], detectors=["opencv-haar"])
    with pytest.raises(NeopainError, match="benchmark image 0 is ndarray"):
        benchmark_detectors([np.zeros((360, 640, 3), np.uint8)], detectors=["opencv-haar"])


def write_image(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_manifest_source_gives_priors_and_reports_unreadable_files(tmp_path, astronaut):
    write_image(tmp_path / "img" / "face.jpg", astronaut)
    write_image(tmp_path / "img" / "coffee.jpg",
                cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    whole = (tmp_path / "img" / "face.jpg").read_bytes()
    (tmp_path / "img" / "broken.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    keypoints = [[204, 102], [247, 104], [224, 131], [202, 139], [246, 142]]
    table = pd.DataFrame({
        "image": ["img/face.jpg", "img/broken.jpg", "img/coffee.jpg"],
        "subject": ["a", "b", "c"],
        "label": ["pain", "nopain", "nopain"],
        "face_box": [format_box((178, 83, 273, 178)), "", ""],
        "keypoints": [format_keypoints(keypoints), "", ""],
    })
    manifest = save_manifest(table, tmp_path / "manifest.csv")

    source = images_from_path(manifest)
    assert len(source) == 3
    items = list(source)
    assert [item.name for item in items] == ["img/face.jpg", "img/coffee.jpg"]
    assert items[0].prior.box == (178, 83, 273, 178)
    np.testing.assert_array_equal(items[0].prior.keypoints, keypoints)
    assert items[1].prior is None
    assert [name for name, _ in source.skipped_] == ["img/broken.jpg"]
    assert "truncated" in source.skipped_[0][1]

    figures = benchmark_detectors(source, detectors=["manifest", "mediapipe-short"], warmup=0)
    by_name = {f.detector: f for f in figures}
    assert by_name["manifest"].images == 2 and by_name["manifest"].no_face == 1  # coffee: no box
    assert by_name["mediapipe-short"].no_face == 1
    assert len(manifest_images(manifest, limit=1)) == 1


def write_video(path, frames: list[np.ndarray], *, fps: float = 10.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_video_source_reads_frames_in_order(tmp_path, face_frames, coffee_frames):
    path = tmp_path / "ward.avi"
    frames = [image for _, image in face_frames + coffee_frames]  # 5 faces, then 4 coffee
    write_video(path, frames)
    assert len(video_frames(path)) == 9
    every_other = list(video_frames(path, step=2))
    assert [item.name for item in every_other] == [f"ward.avi#{i}" for i in (0, 2, 4, 6, 8)]
    assert len(video_frames(path, step=2, limit=3)) == 3
    assert len(list(video_frames(path, step=2, limit=3))) == 3
    # decoded frames are the written ones (MJPG is lossy: compare loosely)
    assert np.abs(every_other[1].image.astype(int) - frames[2]).mean() < 4

    source = images_from_path(path)
    figures = benchmark_detectors(source, detectors=["mediapipe-short"], include_mesh=True,
                                  mesh_video=True, warmup=0)
    for row in figures:
        assert row.images == 9 and row.no_face == 4, row.detector


def test_unreadable_sources_name_the_file(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match="broken.mp4"):
        list(video_frames(broken))
    with pytest.raises(NeopainError, match="missing.csv not found"):
        images_from_path(tmp_path / "missing.csv")
    with pytest.raises(NeopainError, match="step=0 must be at least 1"):
        video_frames(broken, step=0)
    with pytest.raises(NeopainError, match="limit=0 must be at least 1"):
        manifest_images(tmp_path / "m.csv", limit=0)


def test_items_may_be_named_tuples_with_priors(face_frames):
    from neopain.faces.base import Face

    name, image = face_frames[0]
    prior = Face((10.0, 10.0, 100.0, 100.0), 1.0)
    figures, = benchmark_detectors([BenchmarkImage(name, image, prior), (name, image)],
                                   detectors=["manifest"], warmup=0)
    assert figures.images == 2 and figures.no_face == 1


def test_detectors_built_by_name_are_closed_even_when_an_item_is_bad(face_frames, monkeypatch):
    import neopain.faces.benchmark as benchmark

    built = []

    def recording_create_detector(name, **options):
        built.append(create_detector(name, **options))
        return built[-1]

    monkeypatch.setattr(benchmark, "create_detector", recording_create_detector)
    benchmark_detectors(face_frames[:1], detectors=["mediapipe-short"], warmup=0)
    with pytest.raises(NeopainError, match="'bad' is uint8"):
        benchmark_detectors([face_frames[0], ("bad", np.zeros((4, 4), np.uint8))],
                            detectors=["mediapipe-full"], warmup=0)
    assert [d.name for d in built] == ["mediapipe-short", "mediapipe-full"]
    for detector in built:  # a closed MediaPipe detector refuses to run
        with pytest.raises(DetectorError, match="is closed"):
            detector.detect(face_frames[0][1])
