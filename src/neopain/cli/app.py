"""The ``neopain`` Typer application: command groups are added here as their stages land.
The console script's entry point is ``cli.main.main``; a bed device's ``neopain agent`` runs
from ``cli.device_app``, which imports none of the research stack."""

from __future__ import annotations


from neopain.cli import (
    agent, assess, augment, calibrate, dataset, demo, devices, evaluate, explain, export, faces,
    folds, frames, importing, models, robustness, serve, synth, train, users,
)
from neopain.cli.root import root_app

app = root_app()
app.command("synth")(synth.synth)
app.command("demo")(demo.demo)
app.add_typer(dataset.app, name="dataset")
dataset.app.command("import")(importing.import_dataset)
dataset.app.command("frames")(frames.frames)
app.add_typer(faces.app, name="faces")
app.add_typer(folds.app, name="folds")
app.command("augment")(augment.augment)
app.add_typer(models.app, name="models")
app.command("train")(train.train)
app.command("calibrate")(calibrate.calibrate)
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(evaluate.compare)
app.command("robustness")(robustness.robustness)
app.add_typer(explain.app, name="explain")
app.command("export")(export.export)
app.command("assess")(assess.assess)
app.command("serve")(serve.serve)
app.command("agent")(agent.agent)
app.add_typer(users.app, name="users")
app.add_typer(devices.app, name="devices")


