"""Before/after parity of a refactor: the same inputs through the CLI and the live pipeline,
every output kept, and a comparison of two such folders.

``produce --out DIR [--src SRC]`` runs, in DIR/work and with relative paths only (so that the
paths written into the outputs are the same wherever DIR is), with ``python -m neopain`` of the
source tree SRC (default ./src; put first on PYTHONPATH, and checked: the run stops if
``neopain.__file__`` is not under it) and one thread everywhere (OMP/MKL/OpenBLAS, ONNX
Runtime ``--threads 1``):

1. ``synth`` a cohort (6 subjects × 4 images, seed 0), ``folds make`` (lsso, k=3, seed 0);
2. ``train --model ncnn --fold 0 --epochs 2 --seed 0 --workers 0`` and ``train --model nfcs``
   (every fold) → predictions.csv, metrics.json, history.csv, nfcs.json;
3. ``export`` fold 0 to ONNX (``--json`` summary, with torch/ORT parity on the test images);
4. ``assess`` ``--format csv`` with nfcs and with the .onnx on: two real photographs
   (scikit-image's astronaut, matplotlib's grace_hopper.jpg), the cohort's image folder, and
   the cohort's manifest (its own face boxes);
5. a video made here, 100 frames at 10 fps (mp4v), each picture moving a few pixels: the
   astronaut 2 s, a cohort face in pain 2 s, a calm one 1.5 s, no face 2.5 s (longer than the
   2 s gap that resets smoothing), Grace Hopper 2 s: ``assess clip.mp4`` with both models →
   timeline.csv, episodes.csv, summary.json;
6. in Python (a subprocess with the same environment): each decoded frame of that video through
   ``monitor.pipeline.Assessor(load_predictor(...)).step(frame, time_s=...)`` with both models →
   per frame time, face box, prob_pain, label, assessable, details, smoothed, state, changed;
   and the .onnx in onnxruntime directly on a fixed N(0, 1) tensor (seed 0) → .npy.

The files compared are in DIR/results; DIR/provenance.txt says which source made them.

``compare A B [--tol 1e-6]`` compares every .csv, .json and .npy of A/results and B/results
(a file in one only is a difference). CSV: same rows and columns; numeric columns within
``tol`` (absolute; NaN only where the other is NaN), other columns exactly. JSON: the same
structure, numbers within ``tol``, the rest exactly. .npy: same shape, values within ``tol``.
Timing is ignored (columns/keys ``seconds``, ``latency_ms``, ``server_ms``, ``ms`` and ``*_ms``)
and the absolute DIR in text is replaced by ``<OUT>``. ``tol`` is widened by one part in 10^6
so that two values printed with 6 decimals that differ by 1 in the last place still agree
(1e-6 written in binary is not exactly 1e-6). Prints one line per file (rows, largest
difference, verdict) and the first differing row and column; exit 0 when all agree, 1 if not.

Usage (the baseline in a worktree, compared with the tree being refactored):
    cd /work/parity-base && /work/main/.venv/bin/python /work/main/benchmarks/parity.py \\
        produce --out /work/parity/base --src /work/parity-base/src
    cd /work/main && .venv/bin/python benchmarks/parity.py produce --out /work/parity/after
    .venv/bin/python benchmarks/parity.py compare /work/parity/base /work/parity/after
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TIMING = {"seconds", "latency_ms", "server_ms", "ms"}
THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                  "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


def environment(src: Path, out: Path) -> dict[str, str]:
    env = {**os.environ, **THREADS, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0",
           "NEOPAIN_DATA_DIR": str(out / "data"), "COLUMNS": "200", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("NEOPAIN_DATABASE_URL", None)
    return env


def neopain(work: Path, env: dict[str, str], *args: str, stdout: Path | None = None) -> None:
    """``python -m neopain ARGS`` in ``work``; stops the run on a non-zero exit."""
    print("  neopain", " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "neopain", *args], cwd=work, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"neopain {' '.join(args)} exited {done.returncode}:\n{done.stdout}"
                 f"{done.stderr}")
    if stdout is not None:
        stdout.write_text(done.stdout)


def write_media(work: Path) -> None:
    """faces/astronaut.png, faces/grace_hopper.png and clip.mp4 (after synth: it shows two of
    the cohort's faces, one in pain): the same pixels every time."""
    import cv2
    import numpy as np
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with cbook.get_sample_data("grace_hopper.jpg") as file:
        hopper = cv2.cvtColor(np.asarray(Image.open(file).convert("RGB")), cv2.COLOR_RGB2BGR)
    (work / "faces").mkdir()
    cv2.imwrite(str(work / "faces" / "astronaut.png"), astronaut)
    cv2.imwrite(str(work / "faces" / "grace_hopper.png"), hopper)
    pain, calm = (cv2.imread(str(work / "cohort/images/synth-sharp" / name))
                  for name in ("S002/S002_02.jpg", "S006/S006_03.jpg"))
    empty = np.full((300, 300, 3), 60, np.uint8)
    writer = cv2.VideoWriter(str(work / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10,
                             (480, 360))
    for i, image in enumerate([astronaut] * 20 + [pain] * 20 + [calm] * 15 + [empty] * 25
                              + [hopper] * 20):
        dx, dy = int(6 * math.sin(i / 3)), int(4 * math.cos(i / 4))
        canvas = np.full((360, 480, 3), 60, np.uint8)
        canvas[30 + dy:330 + dy, 90 + dx:390 + dx] = cv2.resize(image, (300, 300),
                                                                interpolation=cv2.INTER_AREA)
        writer.write(canvas)
    writer.release()


def produce(out: Path, src: Path) -> None:
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    work, results = out / "work", out / "results"
    work.mkdir(parents=True)
    results.mkdir()
    env = environment(src, out)
    check = subprocess.run([sys.executable, "-c", "import neopain; print(neopain.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(check).resolve().is_relative_to(src.resolve()):
        sys.exit(f"neopain resolves to {check}, not under --src {src}")
    commit = subprocess.run(["git", "-C", str(src), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    (out / "provenance.txt").write_text(f"neopain: {check}\ncommit: {commit}\n"
                                        f"python: {sys.executable}\n")
    print(f"produce: neopain from {check} ({commit or 'no git'}) into {out}", flush=True)
    run = lambda *args, **kw: neopain(work, env, *args, **kw)  # noqa: E731
    run("synth", "--out", "cohort", "--subjects", "6", "--min-images", "4", "--max-images", "4",
        "--seed", "0", "--workers", "1")
    write_media(work)
    run("folds", "make", "cohort/manifest.csv", "--out", "cohort/folds.json", "--protocol",
        "lsso", "--k", "3", "--seed", "0", "--balance-by", "none")
    data = ("--manifest", "cohort/manifest.csv", "--folds", "cohort/folds.json")
    run("train", "--model", "ncnn", *data, "--out", "runs/ncnn", "--fold", "0", "--epochs", "2",
        "--workers", "0", "--seed", "0", "--device", "cpu")
    run("train", "--model", "nfcs", *data, "--out", "runs/nfcs", "--seed", "0")
    run("export", "runs/ncnn/fold_0", "--out", "model.onnx", "--json",
        stdout=results / "export.json")
    for name in ("predictions.csv", "metrics.json", "history.csv"):
        shutil.copy(work / "runs/ncnn/fold_0" / name, results / f"ncnn_fold0_{name}")
    shutil.copy(work / "runs/nfcs/nfcs.json", results / "nfcs_run.json")
    for fold in sorted((work / "runs/nfcs").glob("fold_*")):
        for name in ("predictions.csv", "metrics.json"):
            shutil.copy(fold / name, results / f"nfcs_{fold.name}_{name}")
    models = {"nfcs": ("--model", "nfcs"), "onnx": ("--model", "model.onnx", "--threads", "1")}
    for model, flags in models.items():
        for source, tag in (("faces", "faces"), ("cohort/images", "cohort"),
                            ("cohort/manifest.csv", "manifest")):
            run("assess", source, *flags, "--format", "csv",
                "--out", str(Path("..", "results", f"assess_{tag}_{model}.csv")))
        run("assess", "clip.mp4", *flags, "--out", f"clip_{model}")
        for name in ("timeline.csv", "episodes.csv", "summary.json"):
            shutil.copy(work / f"clip_{model}" / name, results / f"clip_{model}_{name}")
    print("  live pipeline and onnxruntime (python)", flush=True)
    subprocess.run([sys.executable, __file__, "_live", str(work), str(results)], env=env,
                   cwd=work, check=True)
    print(f"produce: {len(list(results.iterdir()))} files in {results} "
          f"in {time.perf_counter() - started:.0f} s")


def live(work: Path, results: Path) -> None:
    """Per-frame results of ``Assessor`` on clip.mp4 for both models; raw ONNX outputs."""
    import cv2
    import numpy as np
    import onnxruntime as ort
    import pandas as pd

    from neopain.monitor.pipeline import Assessor
    from neopain.prediction import load_predictor

    capture = cv2.VideoCapture(str(work / "clip.mp4"))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append((capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, image))
    capture.release()
    for model, path, options in (("nfcs", "nfcs", {}),
                                 ("onnx", str(work / "model.onnx"), {"threads": 1})):
        try:
            predictor = load_predictor(path, **options)
        except TypeError:  # an interface without those options
            predictor = load_predictor(path)
        rows = []
        with predictor, Assessor(predictor) as assessor:
            for index, (time_s, image) in enumerate(frames):
                result = assessor.step(image, time_s=time_s)
                box = getattr(result.face, "box", None)
                prediction = result.prediction
                row = {"frame": index, "time_s": result.time_s, "face": int(box is not None),
                       **{key: (None if box is None else float(box[i]))
                          for i, key in enumerate(("x1", "y1", "x2", "y2"))},
                       "face_score": getattr(result.face, "score", None),
                       "prob_pain": getattr(prediction, "prob_pain", None),
                       "label": getattr(prediction, "label", None),
                       "threshold": getattr(prediction, "threshold", None),
                       "assessable": (None if prediction is None
                                      else int(getattr(prediction, "assessable", True))),
                       "smoothed": result.smoothed, "state": result.state,
                       "changed": int(bool(result.changed)),
                       "latency_ms": getattr(result, "latency_ms", None)}
                details = getattr(prediction, "details", None) or {}
                row.update({f"detail_{key}": float(value) for key, value in details.items()})
                rows.append(row)
        pd.DataFrame(rows).to_csv(results / f"live_{model}.csv", index=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(work / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 4 for dim in spec.shape]
    tensor = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for name, value in zip([o.name for o in session.get_outputs()],
                           session.run(None, {spec.name: tensor})):
        np.save(results / f"onnx_direct_{name}.npy", value)


def flatten(value: object, key: str = "") -> dict[str, object]:
    """A JSON value as {dotted key: leaf}, timing keys left out."""
    if isinstance(value, dict):
        return {k: v for name, item in value.items()
                if name not in TIMING and not name.endswith("_ms")
                for k, v in flatten(item, f"{key}.{name}" if key else name).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{key}[{i}]")
                .items()}
    return {key: value}


def compare_file(a: Path, b: Path, tol: float, roots: tuple[str, str]):
    """(rows, largest numeric difference, first difference or None) of two result files."""
    import numpy as np
    import pandas as pd

    def text(value: object, root: str) -> object:
        return value.replace(root, "<OUT>") if isinstance(value, str) else value

    if a.suffix == ".npy":
        x, y = np.load(a), np.load(b)
        if x.shape != y.shape:
            return len(x), math.nan, f"shape {x.shape} vs {y.shape}"
        diff = np.abs(x.astype(float) - y.astype(float))
        worst = float(diff.max()) if diff.size else 0.0
        where = np.unravel_index(int(diff.argmax()), diff.shape) if diff.size else ()
        return len(x), worst, None if worst <= tol else f"index {where}: {x[where]} vs {y[where]}"
    if a.suffix == ".json":
        x = flatten(json.loads(a.read_text()))
        y = flatten(json.loads(b.read_text()))
        worst = 0.0
        for key in sorted(x.keys() | y.keys()):
            if key not in x or key not in y:
                return len(x), worst, f"key {key} only in {'A' if key in x else 'B'}"
            u, v = text(x[key], roots[0]), text(y[key], roots[1])
            numbers = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (u, v))
            if numbers:
                worst = max(worst, abs(u - v))
            if (numbers and not abs(u - v) <= tol) or (not numbers and u != v):
                return len(x), worst, f"key {key}: {u!r} vs {v!r}"
        return len(x), worst, None
    x, y = pd.read_csv(a), pd.read_csv(b)
    if len(x) != len(y):
        return len(x), math.nan, f"{len(x)} rows vs {len(y)}"
    if list(x.columns) != list(y.columns):
        return len(x), math.nan, f"columns {list(x.columns)} vs {list(y.columns)}"
    worst, first = 0.0, None
    for column in x.columns:
        if column in TIMING or column.endswith("_ms"):
            continue
        u, v = x[column], y[column]
        if pd.api.types.is_numeric_dtype(u) and pd.api.types.is_numeric_dtype(v):
            u, v = u.to_numpy(float), v.to_numpy(float)
            same_nan = np.isnan(u) == np.isnan(v)
            diff = np.where(np.isnan(u) | np.isnan(v), 0.0, np.abs(u - v))
            worst = max(worst, float(diff.max(initial=0.0)))
            bad = ~same_nan | (diff > tol)
        else:
            bad = (u.map(lambda t: "<NA>" if pd.isna(t) else str(text(t, roots[0])))
                   != v.map(lambda t: "<NA>" if pd.isna(t) else str(text(t, roots[1])))
                   ).to_numpy()
        if bad.any() and first is None:
            row = int(np.flatnonzero(bad)[0])
            first = f"row {row} column {column}: {x[column].iloc[row]!r} vs {y[column].iloc[row]!r}"
    return len(x), worst, first


def compare(a: Path, b: Path, tol: float) -> int:
    """Print a line per result file; 0 when every file agrees within ``tol``, else 1."""
    tol *= 1 + 1e-6
    files_a = {p.relative_to(a / "results") for p in (a / "results").rglob("*") if p.is_file()}
    files_b = {p.relative_to(b / "results") for p in (b / "results").rglob("*") if p.is_file()}
    roots = (str(a.resolve()), str(b.resolve()))
    failures = []
    print(f"{'file':40} {'rows':>6} {'max abs diff':>13}  verdict")
    for name in sorted(files_a | files_b):
        if name not in files_a or name not in files_b:
            failures.append(f"{name}: only in {'A' if name in files_a else 'B'}")
            print(f"{str(name):40} {'':>6} {'':>13}  MISSING in {'B' if name in files_a else 'A'}")
            continue
        rows, worst, first = compare_file(a / "results" / name, b / "results" / name, tol, roots)
        print(f"{str(name):40} {rows:>6} {worst:>13.3g}  {'ok' if first is None else 'DIFFERS'}")
        if first is not None:
            failures.append(f"{name}: {first}")
    for failure in failures:
        print("first difference:", failure)
    print(f"{len(files_a | files_b) - len(failures)} of {len(files_a | files_b)} files agree "
          f"(tolerance {tol:.7g})")
    return 1 if failures or not files_a else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("produce", help="run the fixed pipeline into OUT")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--src", type=Path, default=Path.cwd() / "src",
                      help="the source tree whose neopain runs (default: ./src)")
    check = commands.add_parser("compare", help="compare two produced folders")
    check.add_argument("a", type=Path)
    check.add_argument("b", type=Path)
    check.add_argument("--tol", type=float, default=1e-6)
    inner = commands.add_parser("_live")  # produce's Python part, in its environment
    inner.add_argument("work", type=Path)
    inner.add_argument("results", type=Path)
    args = parser.parse_args()
    if args.command == "produce":
        sys.path.insert(0, str(args.src))
        produce(args.out.resolve(), args.src.resolve())
    elif args.command == "compare":
        sys.exit(compare(args.a, args.b, args.tol))
    else:
        live(args.work, args.results)


if __name__ == "__main__":
    main()
