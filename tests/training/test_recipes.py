"""Optimizers and schedulers by torch class name, and the published recipes in configs/.

Guards: every torch optimizer and scheduler a YAML file can use is accepted by name, computed
from torch (not a hand list); a wrong name, argument or value is refused when the config is
built, naming the class and its parameters; the old names (``sgd``, ``lr_schedule``) still
load, resolved to what torch gets; each recipe file validates, says where each value comes
from, and trains from the command line with the manifest, folds and run folder as flags.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from cli_invoke import invoke
from neopain.training import ConfigError, TrainConfig, load_config
from neopain.training.optimizers import FILLED, UNUSABLE, optimizer_names, scheduler_names

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PLACES = {"manifest": "m.csv", "folds": "f.json", "out": "runs/x"}
RECIPES = {
    "ncnn_tuned.yaml": {"model": "ncnn", "optimizer": "RMSprop", "lr": 1e-3,
                        "weight_decay": 1e-5, "scheduler": "CosineAnnealingLR",
                        "scheduler_args": {"T_max": 5, "eta_min": 1e-6},
                        "label_smoothing": 0.3, "epochs": 120, "early_stopping": 43,
                        "batch_size": 16, "class_weights": None},
    "ncnn.yaml": {"model": "ncnn", "optimizer": "RMSprop", "lr": 1e-4, "weight_decay": 1e-5,
                  "scheduler": None, "label_smoothing": 0.0, "epochs": 100,
                  "early_stopping": 10, "batch_size": 16, "class_weights": None},
    "vggnb.yaml": {"model": "vgg16_nb", "freeze_backbone": True, "optimizer": "RMSprop",
                   "lr": 1e-4, "weight_decay": 1e-5, "scheduler": None, "epochs": 100,
                   "early_stopping": 10, "batch_size": 16, "class_weights": None},
}
"""The seed repository's values (models/configs/config_Tuned_NCNN.yaml, config_NCNN.yaml,
config_VGGFace.yaml)."""


def build(**keys) -> TrainConfig:
    return load_config(None, model="ncnn", **PLACES, **keys)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_validates_and_comments_each_values_source(name):
    path = CONFIGS / name
    config = load_config(path, **PLACES)
    assert {key: getattr(config, key) for key in RECIPES[name]} == RECIPES[name]
    keys = [line for line in path.read_text(encoding="utf-8").splitlines()
            if re.match(r"\w+:", line)]
    assert keys and all("#" in line for line in keys), [k for k in keys if "#" not in k]


def test_configs_holds_exactly_the_checked_recipes():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(RECIPES)


def test_every_torch_optimizer_and_scheduler_a_yaml_file_can_use_is_valid_by_name():
    """The names are torch's own classes: a torch that adds one is taken up, none is lost."""
    torch_optimizers = {name for name, value in vars(torch.optim).items()
                        if inspect.isclass(value) and issubclass(value, torch.optim.Optimizer)
                        and value is not torch.optim.Optimizer}
    assert set(optimizer_names()) == torch_optimizers - set(UNUSABLE)
    assert {"RMSprop", "AdamW", "SGD", "NAdam"} <= set(optimizer_names())
    for name in optimizer_names():
        assert build(optimizer=name).optimizer == name
    assert {"CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau", "StepLR"} <= set(
        scheduler_names())
    for name in scheduler_names():
        cls = getattr(torch.optim.lr_scheduler, name)
        required = [p.name for p in list(inspect.signature(cls).parameters.values())[1:]
                    if p.default is p.empty and p.name not in FILLED.get(name, {})]
        if not required:
            assert build(scheduler=name).scheduler == name
        else:  # named with what is missing and the class's parameters
            with pytest.raises(ConfigError, match=rf"{name} needs {', '.join(required)}; its "
                                                  rf"parameters: {required[0]}"):
                build(scheduler=name)


@pytest.mark.parametrize(("keys", "message"), [
    ({"optimizer": "adamw"}, "optimizer='adamw' is not valid; valid: adam, rmsprop, sgd, "
                             "Adadelta, .*AdamW"),
    ({"optimizer": "LBFGS"}, "LBFGS is torch's, but its step needs a closure"),
    # the seed's spelling differs in case from torch's class: the near name is offered
    ({"optimizer": "RMSProp"}, r"valid: .* \(did you mean RMSprop\?\)$"),
    ({"scheduler": "CosineAnealingLR"}, r"\(did you mean CosineAnnealingLR\?\)$"),
    ({"scheduler": "Cosine"}, "scheduler='Cosine' is not valid; valid: ConstantLR, "
                              "CosineAnnealingLR, .*, or null"),
    ({"scheduler": "CosineAnnealingLR"}, "scheduler_args: CosineAnnealingLR needs T_max; its "
                                         "parameters: T_max, eta_min$"),
    ({"scheduler": "CosineAnnealingLR", "scheduler_args": {"T_max": 5, "eta": 0}},
     "CosineAnnealingLR takes no 'eta'; its parameters: T_max, eta_min"),
    # checked against the signature's type before torch sees it ('5' is text, not a number)
    ({"scheduler": "CosineAnnealingLR", "scheduler_args": {"T_max": "5"}},
     "^invalid run config:\n  scheduler_args: T_max='5' is not valid for CosineAnnealingLR; "
     "valid: a whole number$"),
    ({"scheduler": "ReduceLROnPlateau", "scheduler_args": {"patience": 2.5}},
     "patience=2.5 is not valid for ReduceLROnPlateau; valid: a whole number"),
    ({"optimizer": "SGD", "optimizer_args": {"nesterov": "yes"}},
     "nesterov='yes' is not valid for SGD; valid: true or false"),
    ({"optimizer": "RMSprop", "optimizer_args": {"momentum": True}},
     "momentum=True is not valid for RMSprop; valid: a number"),
    # torch's own refusals say where the valid values are
    ({"scheduler": "StepLR", "scheduler_args": {"step_size": 0}},
     "StepLR failed a step: integer modulo by zero; valid: values torch's StepLR accepts "
     "\\(see its documentation\\)$"),
    ({"scheduler": "CosineAnnealingLR", "scheduler_args": {"T_max": 0}},
     "CosineAnnealingLR failed a step: .*; valid: values torch's CosineAnnealingLR accepts"),
    ({"scheduler": "ExponentialLR", "scheduler_args": {"gamma": -1.0}},
     "ExponentialLR gives a learning rate of -0.001 after 1 step\\(s\\); valid: finite rates"),
    ({"optimizer": "RMSprop", "optimizer_args": {"lr": 0.1}},
     "the run sets RMSprop's lr \\(the run config's top-level lr\\); leave it out"),
    ({"optimizer": "SGD", "optimizer_args": {"momentum": -1}},
     "SGD refused them: Invalid momentum value: -1; valid: values torch's SGD accepts"),
    ({"optimizer": "Rprop", "weight_decay": 0.1}, "it takes no weight_decay; valid: 0"),
    ({"scheduler": "OneCycleLR", "scheduler_args": {"max_lr": 1}},
     "the run sets OneCycleLR's max_lr \\(the run config's lr\\)"),
    ({"optimizer": "Adagrad", "scheduler": "OneCycleLR"},
     "OneCycleLR refused them: optimizer must support momentum.*; valid: values torch's "
     "OneCycleLR accepts"),
    ({"scheduler": "OneCycleLR", "unfreeze_patience": 3},
     "scheduler='OneCycleLR' steps after every batch .*unfreeze_patience"),
    ({"soft_labels": "sigmoid", "label_smoothing": 0.3},
     "label_smoothing=0.3 cannot be combined with soft_labels='sigmoid'"),
    ({"lr_schedule": "cosine"}, "lr_schedule='cosine' is not valid; valid: constant, onecycle"),
    ({"lr_schedule": "onecycle", "scheduler": "StepLR"},
     "the old key of scheduler and cannot be combined with scheduler='StepLR'; valid: "
     "lr_schedule alone, or scheduler and scheduler_args without lr_schedule"),
    # it said "give only scheduler (scheduler=None is given too)"
    ({"lr_schedule": "onecycle", "scheduler_args": {"pct_start": 0.2}},
     "lr_schedule='onecycle' is the old key of scheduler and cannot be combined with "
     "scheduler_args=\\{'pct_start': 0.2\\}; valid: .*\\(lr_schedule: onecycle is scheduler: "
     "OneCycleLR\\)"),
    # silently ignored: no scheduler used them
    ({"scheduler_args": {"T_max": 5}}, "scheduler_args=\\{'T_max': 5\\} is given without a "
                                       "scheduler; valid: a scheduler"),
], ids=lambda value: next(iter(value)) if isinstance(value, dict) else "")
def test_a_wrong_optimizer_or_scheduler_is_refused_when_the_config_is_built(keys, message):
    with pytest.raises(ConfigError, match=message):
        build(**keys)


@pytest.mark.parametrize("keys", [
    {"optimizer": "RMSprop", "optimizer_args": {"momentum": 0.9, "centered": True}},
    {"optimizer": "SGD", "optimizer_args": {"momentum": 0, "dampening": 0.1}},
    {"scheduler": "ReduceLROnPlateau", "scheduler_args": {"min_lr": 1.0e-6, "patience": 2}},
    {"scheduler": "CosineAnnealingLR", "scheduler_args": {"T_max": 5, "eta_min": 0}},
], ids=lambda keys: keys.get("optimizer", keys.get("scheduler")))
def test_a_float_is_valid_where_torch_writes_an_int_default_and_an_int_where_a_float(keys):
    """momentum and min_lr default to 0 in torch's signatures: their type is the annotation's
    (float), not the default's."""
    assert build(**keys).optimizer_args == keys.get("optimizer_args", {})


def test_the_optimizers_and_the_schedulers_problems_are_told_together():
    """recipe_problems returned at the first problem: the scheduler's were told only after the
    optimizer was fixed."""
    with pytest.raises(ConfigError) as raised:
        build(optimizer="adamw", optimizer_args={"momentum": "0.9"},
              scheduler="CosineAnnealingLR", scheduler_args={"Tmax": 5})
    lines = str(raised.value).splitlines()[1:]
    assert [line.strip().split(" is not valid")[0].split(";")[0] for line in lines] == [
        "optimizer='adamw'", "scheduler_args: CosineAnnealingLR takes no 'Tmax'",
        "scheduler_args: CosineAnnealingLR needs T_max"]
    with pytest.raises(ConfigError) as raised:
        build(optimizer="RMSprop", optimizer_args={"momentum": "0.9"}, weight_decay=0.1,
              scheduler="StepLR", scheduler_args={"step_size": 2.5})
    assert [line.strip() for line in str(raised.value).splitlines()[1:]] == [
        "optimizer_args: momentum='0.9' is not valid for RMSprop; valid: a number",
        "scheduler_args: step_size=2.5 is not valid for StepLR; valid: a whole number"]


def test_the_documented_refusal_is_what_the_code_says():
    """docs/training.md's example config and its error block (it showed lines that no config
    gives together)."""
    text = (CONFIGS.parent / "docs" / "training.md").read_text(encoding="utf-8")
    config, shown = re.search(r"```yaml\n# bad\.yaml\n(.*?)```\n.*?```\nerror: (.*?)```", text,
                              re.DOTALL).groups()
    with pytest.raises(ConfigError) as raised:
        TrainConfig.from_dict({**PLACES, **yaml.safe_load(config)})
    assert str(raised.value) == shown.rstrip("\n")


def test_the_seeds_keys_are_named_with_ours(tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text("model: ncnn\noptimizer: RMSprop\noptimizer_hyp: {lr: 0.001}\n")
    with pytest.raises(ConfigError, match="'optimizer_hyp' \\(optimizer_hyp is optimizer_args "
                                          "\\(with lr and weight_decay as top-level keys\\)"):
        load_config(path, **PLACES)


def test_old_names_load_as_what_torch_gets_and_save_that(tmp_path):
    """Runs made before: ``optimizer: sgd`` is SGD with momentum 0.9, ``lr_schedule`` is read
    as ``scheduler`` and never written back."""
    path = tmp_path / "old.yaml"
    path.write_text("model: ncnn\noptimizer: sgd\nlr_schedule: onecycle\n")
    config = load_config(path, **PLACES)
    assert (config.optimizer, config.optimizer_args) == ("SGD", {"momentum": 0.9})
    assert (config.scheduler, config.lr_schedule) == ("OneCycleLR", None)
    assert build(optimizer="sgd", optimizer_args={"momentum": 0.5}).optimizer_args == {
        "momentum": 0.5}
    assert build(lr_schedule="constant").scheduler is None
    saved = config.to_dict()
    assert "lr_schedule" not in saved and saved["scheduler"] == "OneCycleLR"
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(saved))) == config


def test_a_recipe_trains_from_the_command_line_with_its_places_as_flags(cohort6, tmp_path):
    """configs/ncnn_tuned.yaml has no manifest, folds or out: the flags give them and
    override its epochs; config.yaml and the checkpoint keep the seed's recipe."""
    out = tmp_path / "run"
    code, output = invoke("train", "--config", str(CONFIGS / "ncnn_tuned.yaml"),
                          "--manifest", str(cohort6 / "manifest.csv"),
                          "--folds", str(cohort6 / "folds.json"), "--out", str(out),
                          "--fold", "0", "--epochs", "2", "--device", "cpu", "--workers", "0")
    assert code == 0, output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert {key: saved[key] for key in RECIPES["ncnn_tuned.yaml"]} == {
        **RECIPES["ncnn_tuned.yaml"], "epochs": 2}
    checkpoint = torch.load(out / "fold_0" / "checkpoint.pt", weights_only=True)
    recipe = RECIPES["ncnn_tuned.yaml"]
    assert checkpoint["recipe"] == {"optimizer": "RMSprop", "optimizer_args": {},
                                    **{key: recipe[key] for key in ("lr", "weight_decay",
                                                                    "scheduler",
                                                                    "scheduler_args")},
                                    "model_args": {}}
    assert checkpoint["scheduler"]["last_epoch"] == 2
    history = (out / "fold_0" / "history.csv").read_text().splitlines()
    assert [float(row.split(",")[-1]) for row in history[1:]] == pytest.approx(
        [1e-3, 1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi / 5)) / 2], rel=1e-9)
    # resuming with another T_max went on with the checkpoint's 5 (torch restores it) while
    # config.yaml said 7
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump({**yaml.safe_load((CONFIGS / "ncnn_tuned.yaml").read_text()),
                                      "scheduler_args": {"T_max": 7, "eta_min": 1e-6}}))
    code, output = invoke("train", "--config", str(edited), "--manifest",
                          str(cohort6 / "manifest.csv"), "--folds", str(cohort6 / "folds.json"),
                          "--out", str(out), "--fold", "0", "--epochs", "3", "--device", "cpu")
    assert code == 1
    assert (f"error: {out / 'fold_0' / 'checkpoint.pt'}: the checkpoint was trained with "
            "another recipe: scheduler_args.T_max: 5 in the checkpoint, 7 in this fit. To "
            "resume it, give the checkpoint's values again") in output
    # the refused run leaves config.yaml describing the checkpoints that are there
    assert yaml.safe_load((out / "config.yaml").read_text()) == saved


def test_a_wrong_recipe_is_one_error_line_before_any_training(cohort6, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: ncnn\nscheduler: CosineAnnealingLR\nscheduler_args: {eta_min: 0}\n")
    code, output = invoke("train", "--config", str(path), "--manifest",
                          str(cohort6 / "manifest.csv"), "--folds", str(cohort6 / "folds.json"),
                          "--out", str(tmp_path / "run"))
    assert code == 1
    assert "CosineAnnealingLR needs T_max; its parameters: T_max, eta_min" in output
    assert not (tmp_path / "run").exists()
