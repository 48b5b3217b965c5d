"""A run config's ``model_args`` and ``keep``: a run builds, saves and reloads the network it
was asked for (MC dropout samples at the rate it was trained with), and model.pt holds the
weights it was asked to keep."""

from __future__ import annotations

import pytest
import torch
import yaml
from cli_invoke import invoke
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.errors import NeopainError
from neopain.runs import load_fold
from neopain.training import ConfigError, TrainConfig, load_config, run_cv


def config(cohort, out, **kwargs) -> TrainConfig:
    return TrainConfig(model="ncnn", manifest=cohort / "manifest.csv",
                       folds=cohort / "folds.json", out=out,
                       **{"epochs": 1, "batch_size": 8, "device": "cpu", "fold": 0, **kwargs})


def dropout_rates(model: torch.nn.Module) -> set[float]:
    return {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}


def test_model_args_reach_the_network_model_pt_and_every_later_load(cohort6, tmp_path):
    out = tmp_path / "run"
    run_cv(config(cohort6, out, model_args={"dropout": 0.5}, epochs=2))
    saved = torch.load(out / "fold_0" / "model.pt", weights_only=True)
    assert saved["kwargs"] == {"dropout": 0.5}
    assert dropout_rates(load_fold(out / "fold_0").model) == {0.5}  # not the registry's 0.1
    assert yaml.safe_load((out / "config.yaml").read_text())["model_args"] == {"dropout": 0.5}
    # another rate changes no weight's shape, so a resume would load silently: refused by name
    with pytest.raises(NeopainError, match=r"another recipe: model_args\.dropout: 0\.5 in the "
                                           r"checkpoint, 0\.3 in this fit"):
        run_cv(config(cohort6, out, model_args={"dropout": 0.3}, epochs=3))
    # a checkpoint written before model_args was recorded: its network had none
    checkpoint = out / "fold_0" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    del state["recipe"]["model_args"]
    torch.save(state, checkpoint)
    with pytest.raises(NeopainError, match=r"model_args\.dropout: not given in the checkpoint, "
                                           r"0\.3 in this fit"):
        run_cv(config(cohort6, out, model_args={"dropout": 0.3}, epochs=3))


@pytest.mark.parametrize("args, says", [
    ({"dropuot": 0.5}, "model_args: model 'ncnn': unknown option(s) dropuot; valid: dropout, "
                       "single_output"),
    ({"dropout": 1.5}, "model_args: ncnn: dropout=1.5 must be in [0, 1)"),
    ({"dropout": "high"}, "model_args={'dropout': 'high'} cannot build ncnn"),
    ("dropout=0.5", "model_args='dropout=0.5' is not valid; valid: a mapping of ncnn's options"),
    ([], "model_args=[] is not valid; valid: a mapping of ncnn's options"),
    ({"single_output": True}, "model_args={'single_output': True} gives ncnn outputs of shape "
                              "(1,); neopain trains and runs networks with two logits"),
])
def test_bad_model_args_name_the_option_and_the_valid_ones(args, says):
    with pytest.raises(ConfigError) as raised:
        load_config(None, model="ncnn", manifest="m", folds="f", out="o", model_args=args)
    assert says in str(raised.value)


def test_a_rule_based_model_takes_no_model_args():
    with pytest.raises(ConfigError, match="model_args=.* is not valid for nfcs: only a network"):
        load_config(None, model="nfcs", manifest="m", folds="f", out="o",
                    model_args={"dropout": 0.5})


def test_the_cli_reads_model_arg_flags_as_yaml_values(cohort6, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(neopain_app, [
        "train", "--model", "ncnn", "--manifest", str(cohort6 / "manifest.csv"), "--folds",
        str(cohort6 / "folds.json"), "--out", str(out), "--fold", "0", "--epochs", "1",
        "--device", "cpu", "--model-arg", "dropout=0.25"])
    assert result.exit_code == 0, result.output
    assert dropout_rates(load_fold(out / "fold_0").model) == {0.25}
    bad = CliRunner().invoke(neopain_app, [
        "train", "--model", "ncnn", "--manifest", "m", "--folds", "f", "--out", str(out),
        "--model-arg", "dropout"])
    assert bad.exit_code == 1
    assert "--model-arg 'dropout' is not valid; valid: KEY=VALUE" in " ".join(bad.output.split())


def test_keep_last_keeps_the_last_epoch_and_best_the_best_one(cohort6, tmp_path):
    """Adam at 0.01 on this tiny cohort makes the validation loss worse after the first epoch,
    so the best epoch is not the last and the two settings must keep different weights."""
    kept = {}
    for keep in ("best", "last"):
        out = tmp_path / keep
        run_cv(config(cohort6, out, keep=keep, epochs=5, early_stopping=0, restarts=0,
                      optimizer="Adam", lr=0.01))
        model = torch.load(out / "fold_0" / "model.pt", weights_only=True)["state_dict"]
        checkpoint = torch.load(out / "fold_0" / "checkpoint.pt", weights_only=True)
        best = checkpoint["callbacks"]["Checkpoint"]
        assert best["best_epoch"] < 5, best["best_epoch"]
        expected = checkpoint["model"] if keep == "last" else best["best_state"]
        assert all(torch.equal(model[name], expected[name]) for name in expected), keep
        kept[keep] = model
    assert not all(torch.equal(kept["best"][name], kept["last"][name]) for name in kept["best"])


def test_models_show_names_each_option_a_run_config_can_give():
    code, output = invoke("models", "show", "ncnn")
    assert code == 0
    assert "model_args" in output and "dropout=0.1, single_output=False (defaults)" in output
