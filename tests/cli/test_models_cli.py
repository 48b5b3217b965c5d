"""``neopain models list|show``: the exact published parameter counts reach the terminal, and an
unknown name exits 1 listing the valid ones (no traceback)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.models import list_models


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, ["models", *args], terminal_width=120)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def row(output: str, label: str) -> str:
    """The table line whose first cell is ``label``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if cells and cells[0] == label:
            return line
    raise AssertionError(f"no row {label!r} in:\n{output}")


# name: (torch total, Keras count or None, published count)
COUNTS = {
    "vgg16_nb": ("27,823,938", None, "27,823,938"),
    "vgg16_avg": ("17,865,538", None, "17,865,538"),
    "ncnn": ("72,602", None, "72,593"),
    "resnet50_nb": ("25,559,034", "25,612,154", "25,612,154"),
    "senet50_nb": ("28,090,026", "28,143,146", "28,143,146"),
    "inception_v3_nb": ("23,081,122", "23,115,554", "23,115,554"),
    "vit_b32_nb": ("87,456,770", None, "88,224,232"),
}


def test_list_shows_every_model_with_its_input_size_and_exact_counts():
    code, output = run("list")
    assert code == 0, output
    for name in list_models():
        assert name in output
    for name, (total, _, _) in COUNTS.items():
        line = row(output, name)
        assert line.count(total) == 2, line  # total and trainable, as built
    assert "224×224" in row(output, "vgg16_nb")
    assert "120×120" in row(output, "ncnn")


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_show_prints_the_exact_torch_keras_and_published_counts(name):
    total, keras, published = COUNTS[name]
    code, output = run("show", name)
    assert code == 0, output
    assert total in row(output, "parameters")
    assert total in row(output, "trainable")
    assert published in row(output, "published")
    if keras:
        assert keras in row(output, "Keras count")
        statistics = int(keras.replace(",", "")) - int(total.replace(",", ""))
        assert f"+ {statistics:,} batch-norm" in row(output, "Keras count")
    else:
        assert "Keras count" not in output  # VGG and N-CNN have no batch norm: same count


def test_show_vgg16_avg_gives_the_trainable_count_with_the_last_block_unfrozen():
    code, output = run("show", "vgg16_avg")
    assert code == 0
    assert "10,230,274" in row(output, "block5")
    assert "features.conv5_3" in row(output, "CAM layer")
    assert "BGR" in row(output, "channel order")


def test_show_ncnn_gives_both_output_variants():
    code, output = run("show", "ncnn")
    assert code == 0
    assert "72,602" in output and "72,593" in output
    assert "centre.conv2" in row(output, "CAM layer")


def test_unknown_model_exits_1_listing_valid_names():
    code, output = run("show", "vgg19")
    assert code == 1
    assert "unknown model 'vgg19'" in output
    for name in list_models():
        assert name in output


def test_starting_the_command_line_loads_neither_torch_nor_scikit_learn():
    """Every `neopain` call paid ~2 s for torch (through `train` and `models`) until those
    commands imported the library inside their bodies."""
    import subprocess
    import sys

    code = ("import sys; import neopain.cli.app; "
            "print(sorted(m for m in ('torch', 'sklearn', 'albumentations') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def wrapped_row(output: str, label: str) -> str:
    """The text of the table row whose first cell is ``label``, its wrapped lines joined
    (Rich wraps long cells onto lines whose first cell is empty)."""
    lines = output.splitlines()
    for start, line in enumerate(lines):
        cells = [c.strip() for c in re.split(r"[│┃]", line)][1:-1]
        if cells and cells[0] == label:
            columns = [[c] for c in cells]
            for more in lines[start + 1:]:
                extra = [c.strip() for c in re.split(r"[│┃]", more)][1:-1]
                if len(extra) != len(cells) or extra[0]:
                    break
                for column, text in zip(columns, extra):
                    column.append(text)
            return " | ".join(" ".join(part for part in column if part) for column in columns)
    raise AssertionError(f"no row {label!r} in:\n{output}")


def test_list_shows_nfcs_as_a_rule_based_model():
    code, output = run("list")
    assert code == 0
    assert "rule-based models" in output
    assert "screening aid" in wrapped_row(output, "nfcs")


def test_show_nfcs_says_plainly_what_it_is_with_every_threshold():
    from neopain.scoring import ACTION_INFO

    code, output = run("show", "nfcs")
    assert code == 0, output
    assert "Not a validated medical device" in wrapped_row(output, "what it is not")
    assert "Neonatal Facial Coding System" in wrapped_row(output, "what it is")
    assert "reaches 3" in wrapped_row(output, "decision")
    for name, info in ACTION_INFO.items():
        text = wrapped_row(output, name)
        assert f"{info.threshold:g} {info.unit}" in text
        assert " ".join(info.rationale.split()[:4]) in text
    assert "chin_quiver" in output and "taut tongue" in output
    assert "None learned" in wrapped_row(output, "parameters")


def test_show_prints_the_description_any_registered_fold_model_gives(monkeypatch):
    """`models show` printed the NFCS tables only when the name was "nfcs"; a fold model
    registered elsewhere must be shown from its own description."""
    from neopain.runs import Description, DescriptionTable, FoldModel, fold_model

    class Described(FoldModel):
        def predict(self, fold):
            raise AssertionError("never run here")

        @classmethod
        def description(cls):
            return Description((DescriptionTable("coin: a fair coin", rows=(("odds", "1:1"),)),
                                DescriptionTable("sides", rows=(("heads", "pain"),),
                                                 columns=("side", "reads as"))),
                               note="not a medical device")

    installed = fold_model.other_fold_models()
    monkeypatch.setattr(fold_model, "other_fold_models",
                        lambda: {**installed, "coin": Described})
    code, output = run("show", "coin")
    assert code == 0, output
    assert "coin: a fair coin" in " ".join(output.split()) and "1:1" in wrapped_row(output, "odds")
    assert "pain" in wrapped_row(output, "heads") and "reads as" in output
    assert output.rstrip().endswith("not a medical device")


def test_a_kind_run_by_name_is_listed_and_shown_though_it_trains_nothing(monkeypatch):
    """A kind registered only as a predictor (e.g. a remote model) was listed by `models list`
    but `models show` called it unknown."""
    from types import SimpleNamespace

    from neopain import prediction

    class Remote(prediction.Predictor):
        kind = "remote"
        summary = "a model served by another machine"

        def predict_crops(self, crops):
            raise AssertionError("never run here")

    installed = prediction._registered()
    remote = SimpleNamespace(name="remote", load=lambda: Remote)
    monkeypatch.setattr(prediction, "_registered", lambda: [*installed, remote])
    prediction._entry_points.cache_clear()
    try:
        code, output = run("show", "remote")
        assert code == 0 and "remote: a model served by another machine" in " ".join(
            output.split()), output
        code, output = run("list")
        assert code == 0 and "served by another machine" in " ".join(output.split())
    finally:
        prediction._entry_points.cache_clear()
