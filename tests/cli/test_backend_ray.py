"""``--backend ray`` (issue 23): ``faces detect``, ``train`` (2 folds, N-CNN), ``augment``,
``assess`` and ``explain run`` on a local Ray with 2 CPUs write the local backend's files byte
for byte, except what records time (faces.jsonl's ``detect_ms``, metrics.json's ``seconds``)
and config.yaml's ``out``; a rerun into a partial Ray run completes it to the same files; the
folds' progress reaches the driver's one progress hook; and without Ray the option is one line
naming the extra.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml
from cli_invoke import invoke
from ray_cluster import without_ray
from run_progress import Recorder

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.parallel import Backend
from neopain.runs import load_fold
from neopain.training import TrainConfig, run_cv

RAY = ("--backend", "ray")


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """Sets torch's threads in this process for the test (restored after it). explain's Ray
    actors run on the driver's count and take as many CPUs, and the test Ray has 2."""
    import torch

    threads = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cohort(cohort6, tmp_path_factory) -> Path:
    """cohort6's manifest with 2 lsso folds."""
    root = tmp_path_factory.mktemp("two_folds")
    manifest = cohort6 / "manifest.csv"
    save_folds(make_folds(load_manifest(manifest), protocol="lsso", k=2,
                          manifest_sha256=sha256_file(manifest)), root / "folds.json")
    return root


def detect(cohort6, out, *options):
    return invoke("faces", "detect", str(cohort6 / "manifest.csv"), "--detector", "manifest",
                  "--out", str(out), *options)


def train(cohort6, cohort, out, *options):
    return invoke("train", "--model", "ncnn", "--manifest", str(cohort6 / "manifest.csv"),
                  "--folds", str(cohort / "folds.json"), "--out", str(out), "--epochs", "2",
                  "--batch-size", "8", "--device", "cpu", "--workers", "0", *options,
                  seconds=300)


def skipped(text: str) -> int:
    """The images ``faces detect`` says an earlier run did."""
    found = re.search(r"skipped as done \(earlier run\) │ (\d+)", text)
    assert found, text
    return int(found.group(1))


def timeless(path: Path, root: Path) -> bytes:
    """A file's bytes without what records time or the run folder's own name."""
    data = path.read_bytes()
    if path.name == "faces.jsonl":
        return re.sub(rb'"detect_ms": [0-9.e-]+, ', b"", data)
    if path.name == "metrics.json":
        return re.sub(rb'"seconds": [0-9.]+', b"", data)
    if path.name == "config.yaml":
        return data.replace(str(root).encode(), b"OUT")
    return data


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): timeless(path, root)
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def local_faces(cohort6, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "faces"
    code, _ = detect(cohort6, out)
    assert code == 0
    return out


@pytest.fixture(scope="module")
def local_run(cohort6, cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    code, text = train(cohort6, cohort, out)
    assert code == 0, text
    return out


@pytest.mark.slow
def test_faces_detect_on_ray_writes_the_local_backends_files(ray, cohort6, local_faces,
                                                             tmp_path):
    code, text = detect(cohort6, tmp_path / "faces", *RAY)
    assert code == 0, text
    assert skipped(text) == 0
    local = files(local_faces)
    assert {"manifest.csv", "no_face.csv", "faces.json", "faces.jsonl"} <= set(local)
    assert sum(name.startswith("crops/") for name in local) == 20
    assert files(tmp_path / "faces") == local


@pytest.mark.slow
def test_faces_detect_on_ray_resumes_a_partial_run(ray, cohort6, local_faces, tmp_path):
    out = tmp_path / "faces"
    shutil.copytree(local_faces, out)
    records = (out / "faces.jsonl").read_text().splitlines(keepends=True)
    (out / "faces.jsonl").write_text("".join(records[:8]))  # stopped after 8 images
    for crop in list((out / "crops").rglob("*.jpg"))[::2]:
        crop.unlink()
    (out / "manifest.csv").unlink()
    code, text = detect(cohort6, out, *RAY)
    assert code == 0, text
    assert 0 < skipped(text) < 8
    assert files(out) == files(local_faces)


@pytest.mark.slow
def test_train_on_ray_writes_the_local_backends_files(ray, cohort6, cohort, local_run,
                                                      tmp_path):
    # guards: Ray's workers run torch on one thread, which changes the weights' last bits
    code, text = train(cohort6, cohort, tmp_path / "run", *RAY)
    assert code == 0, text
    local = files(local_run)
    assert {f"fold_{k}/{name}" for k in (0, 1)
            for name in ("model.pt", "checkpoint.pt", "predictions.csv", "metrics.json")} \
        <= set(local)
    assert files(tmp_path / "run") == local


@pytest.mark.slow
def test_train_on_ray_resumes_a_partial_run(ray, cohort6, cohort, local_run, tmp_path):
    out = tmp_path / "run"
    code, text = train(cohort6, cohort, out, *RAY, "--fold", "0")  # then stopped
    assert code == 0, text
    assert not (out / "fold_1").exists()
    code, text = train(cohort6, cohort, out, *RAY)
    assert code == 0, text
    assert files(out) == files(local_run)
    assert yaml.safe_load((out / "config.yaml").read_text())["fold"] is None


@pytest.mark.slow
def test_augment_on_ray_writes_the_local_backends_files(ray, cohort6, cohort, tmp_path):
    for name, options in (("local", ()), ("ray", RAY)):
        code, text = invoke("augment", str(cohort6 / "manifest.csv"), "--folds",
                            str(cohort / "folds.json"), "--fold", "0", "--n", "3", "--out",
                            str(tmp_path / name), *options)
        assert code == 0, text
    local = files(tmp_path / "local")
    assert sum(name.startswith("images/") for name in local) >= 3 * 6
    assert files(tmp_path / "ray") == local


@pytest.mark.slow
@pytest.mark.parametrize("source", ["manifest.csv", "images"])
def test_assess_on_ray_writes_the_local_backends_results(ray, cohort6, tmp_path, source):
    # guards: results out of order across the actors' chunks, or a chunk's rows lost
    written = {}
    for name, options in (("local", ()), ("ray", RAY)):
        written[name] = tmp_path / f"{name}.csv"
        code, text = invoke("assess", str(cohort6 / source), "--model", "nfcs", "--out",
                            str(written[name]), "--batch-size", "2", *options)
        assert code == 0, text
    table = written["local"].read_text().splitlines()
    assert len(table) == 1 + 20
    assert written["ray"].read_bytes() == written["local"].read_bytes()


@pytest.mark.slow
def test_assess_on_ray_opens_a_relative_run_folder_from_where_it_was_started(
        ray, cohort6, local_run, tmp_path, monkeypatch):
    # the bug guarded: a run folder given relative to this folder was sent to the actors as
    # it was, and opened in the Ray worker's folder
    monkeypatch.chdir(local_run.parent)
    for name, options in (("local", ()), ("ray", RAY)):
        code, text = invoke("assess", str(cohort6 / "manifest.csv"), "--model",
                            f"{local_run.name}/fold_0", "--out", str(tmp_path / f"{name}.csv"),
                            *options)
        assert code == 0, text
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


@pytest.mark.slow
def test_assess_threads_are_each_ray_actors_and_the_cpus_it_takes(ray, cohort6, tmp_path):
    # guards: --threads not reaching the actors (each reserving one CPU and running ONNX
    # Runtime's one thread per core) and --threads 0 read as unset
    code, text = invoke("assess", str(cohort6 / "images"), "--model", "nfcs", "--out",
                        str(tmp_path / "ray.csv"), "--threads", "3", *RAY)
    assert code == 1 and "runs on 3 threads" in text and "valid: 1 to 2" in text, text
    code, text = invoke("assess", str(cohort6 / "images"), "--model", "nfcs", "--out",
                        str(tmp_path / "ray.csv"), "--threads", "0", *RAY)
    assert (code, text) == (1, "error: --threads 0 is not valid; valid: a whole number >= 1, "
                               "or leave it out")
    assert not (tmp_path / "ray.csv").exists()


@pytest.mark.slow
def test_explain_run_on_ray_writes_the_local_backends_files(ray, local_run, tmp_path,
                                                            torch_threads):
    torch_threads(2)  # not Ray's default of one: the actors must be given the driver's count
    for name, options in (("local", ()), ("ray", RAY)):
        code, text = invoke("explain", "run", str(local_run / "fold_0"), "--out",
                            str(tmp_path / name), "--method", "gradcam", *options)
        assert code == 0, text
    local = files(tmp_path / "local")
    assert sum(name.startswith("heatmaps/") for name in local) >= 5
    assert files(tmp_path / "ray") == local


@pytest.mark.slow
def test_explain_actors_take_as_many_cpus_as_the_drivers_torch_threads(ray, local_run,
                                                                       tmp_path, torch_threads):
    # guards: explain's actors reserving one CPU each while running torch on the driver's
    # threads (each sets its own count, so the files alone cannot show it)
    torch_threads(3)
    code, text = invoke("explain", "run", str(local_run / "fold_0"), "--out",
                        str(tmp_path / "ray"), "--method", "gradcam", *RAY)
    assert code == 1 and "each Ray actor runs on 3 threads" in text, text
    assert not (tmp_path / "ray" / "explanations.csv").exists()


@pytest.mark.slow
def test_explain_batches_on_ray_come_back_in_order(ray, cohort6, local_run, tmp_path,
                                                  torch_threads):
    # guards: batches spread over the actors written or listed out of order; heatmaps whose
    # last bits change with the actors' torch threads
    from neopain.cli.explain import open_explainers
    from neopain.explain.run import explain_images, manifest_items

    model = local_run / "fold_0"
    cfg = load_fold(model).model.cfg
    explainers = open_explainers(model, ["gradcam"])
    tables = {}
    torch_threads(1)  # two actors of one thread each fit the 2-CPU test Ray
    for name, backend in (("local", Backend()), ("ray", Backend("ray", actors=2))):
        items = manifest_items(load_manifest(cohort6 / "manifest.csv"), cfg, rows=range(8))
        tables[name] = explain_images(items, explainers, cfg=cfg, out=tmp_path / name,
                                      batch_size=3, backend=backend,
                                      open_explainers=partial(open_explainers, model,
                                                              ["gradcam"]))
    explainers["gradcam"].close()
    assert len(tables["local"]) == 8
    assert tables["ray"].equals(tables["local"])
    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_assess_on_ray_refuses_a_video(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    code, text = invoke("assess", str(video), *RAY)
    assert code == 1
    assert "a single video runs here (--backend local)" in " ".join(text.split())


@pytest.mark.slow
def test_the_folds_progress_on_ray_reaches_the_one_progress_hook(ray, cohort6, cohort,
                                                                 tmp_path):
    # guards: progress lost in the Ray workers (a bar that stands still until the end)
    seen = {}
    for name, backend in (("local", Backend()), ("ray", Backend("ray"))):
        progress = Recorder()
        run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                           folds=cohort / "folds.json", out=tmp_path / name, epochs=1,
                           batch_size=8, device="cpu"), progress=progress, backend=backend)
        seen[name] = progress.calls
    assert seen["ray"][0] == seen["local"][0] == ("start", "ncnn", 2, True)
    assert sorted(seen["ray"][1:], key=repr) == sorted(seen["local"][1:], key=repr)
    assert {call[1] for call in seen["ray"] if call[0] == "step"} == {0, 1}
    for fold in (0, 1):  # each fold's steps in order, and its end after them
        mine = [call for call in seen["ray"] if call[0] != "start" and call[1] == fold]
        assert mine == [call for call in seen["local"] if call[0] != "start" and call[1] == fold]


@pytest.mark.slow
def test_train_on_ray_takes_paths_from_the_folder_it_was_started_in(ray, cohort6, cohort,
                                                                    tmp_path, monkeypatch):
    # the bug guarded: the fold tasks got the config's relative paths and opened them in the
    # Ray worker's folder, not the one the command was started in
    (tmp_path / "data").symlink_to(cohort6)
    (tmp_path / "plan").symlink_to(cohort)
    monkeypatch.chdir(tmp_path)
    result = run_cv(TrainConfig(model="ncnn", manifest=Path("data/manifest.csv"),
                                folds=Path("plan/folds.json"), out=Path("run"), fold=0,
                                epochs=1, batch_size=8, device="cpu"),
                    backend=Backend("ray"))
    assert [fold.index for fold in result.folds] == [0]
    assert (tmp_path / "run" / "fold_0" / "model.pt").is_file()
    assert (tmp_path / "run" / "fold_0" / "predictions.csv").is_file()


@pytest.mark.parametrize("command", ["detect", "train"])
def test_without_ray_the_option_is_one_line_naming_the_extra(monkeypatch, cohort6, cohort,
                                                             tmp_path, command):
    # guards: an ImportError traceback, or a run folder written before Ray was found missing
    without_ray(monkeypatch)
    out = tmp_path / "out"
    if command == "detect":
        code, text = detect(cohort6, out, *RAY)
    else:
        code, text = train(cohort6, cohort, out, *RAY)
    assert not out.exists()
    assert code == 1
    assert text == ('error: --backend ray needs Ray, which is not installed here: pip install '
                    '"neopain[ray]" (or choose --backend local)')


def test_address_without_the_ray_backend_is_refused(cohort6, tmp_path):
    code, text = detect(cohort6, tmp_path / "faces", "--address", "auto")
    assert (code, text) == (1, "error: --address 'auto' applies to --backend ray only")
    assert not (tmp_path / "faces").exists()


@pytest.mark.parametrize("command", ["detect", "augment"])
def test_zero_workers_is_refused_not_taken_as_the_default(cohort6, cohort, tmp_path, command):
    # the bug guarded: --workers became optional for Ray, and `workers or default` read 0 as unset
    out = tmp_path / "out"
    if command == "detect":
        code, text = detect(cohort6, out, "--workers", "0")
    else:
        code, text = invoke("augment", str(cohort6 / "manifest.csv"), "--folds",
                            str(cohort / "folds.json"), "--fold", "0", "--n", "1", "--out",
                            str(out), "--workers", "0")
    assert code == 1 and "workers=0" in text and "a whole number >= 1" in text, text
    assert not out.exists() or not any(out.iterdir())
