"""``neopain models list|show``: the registered architectures and their parameter counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from neopain.cli.console import console, fail
from neopain.errors import NeopainError
if TYPE_CHECKING:
    from neopain.models import PainModel
    from neopain.runs import Description

app = typer.Typer(help="The model architectures: list them, show one.", no_args_is_help=True)


def _megabytes(model: PainModel) -> float:
    """fp32 size of the parameters and buffers (what a saved state dict weighs)."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 1e6


@app.command("list")
def list_command() -> None:
    """List the models: input size, total and trainable parameters, size in MB (fp32)."""
    from neopain.models import create_model, list_models  # torch loads only for this command

    table = Table(title="registered models (as built: every parameter trainable)")
    table.add_column("name", no_wrap=True)
    table.add_column("input", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("trainable", justify="right", no_wrap=True)
    table.add_column("MB", justify="right", no_wrap=True)
    for name in list_models():
        model = create_model(name)
        total, trainable = model.count_parameters()
        height, width = model.cfg.input_size
        table.add_row(name, f"{height}×{width}", f"{total:,}", f"{trainable:,}",
                      f"{_megabytes(model):.1f}")
    console.print(table)
    _print_rule_based()
    console.print("details: [bold]neopain models show NAME[/]")


def _print_rule_based() -> None:
    """The kinds of pain model run by name, not from a file (``neopain.predictors``): rules
    and other models that are not networks."""
    from neopain.prediction import predictor_kinds

    table = Table(title="rule-based models and other kinds run by name (not networks)")
    table.add_column("name", no_wrap=True)
    table.add_column("what it is", overflow="fold")
    for name, kind in sorted(predictor_kinds().items()):
        if not kind.file_suffixes:
            table.add_row(name, escape(kind.summary))
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A model name from `neopain models list`.")],
) -> None:
    """Show a model: preprocessing, blocks, parameter counts (torch, Keras, published)."""
    from neopain.prediction import predictor_kinds
    from neopain.runs.fold_model import other_fold_models

    # models that are not networks first: they need no torch
    fold_model = other_fold_models().get(name)
    if fold_model is not None and (description := fold_model.description()) is not None:
        _print_description(description)
        return
    kind = predictor_kinds().get(name)
    if kind is not None and not kind.file_suffixes:
        console.print(f"[bold]{escape(name)}[/]: {escape(kind.summary)}")
        return
    from neopain.models import create_model, model_info  # torch loads only here
    from neopain.models.registry import model_options
    try:
        info = model_info(name)
        model = create_model(name)
    except NeopainError as error:
        fail(escape(str(error)))
    cfg = model.cfg
    total, trainable = model.count_parameters()
    statistics = model.count_running_statistics()

    table = Table(title=f"{escape(name)}: {escape(info.summary)}", show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("input size", f"{cfg.input_size[0]}×{cfg.input_size[1]} (height×width)")
    table.add_row("channel order", cfg.channel_order)
    table.add_row("mean (0–1)", ", ".join(f"{v:.6f}" for v in cfg.mean))
    table.add_row("std (0–1)", ", ".join(f"{v:.6f}" for v in cfg.std))
    table.add_row("labels", ", ".join(f"{index} {label}" for index, label in enumerate(cfg.labels)))
    table.add_row("threshold", f"{cfg.threshold:g} (P(pain) at or above it is pain)")
    table.add_row("CAM layer", cfg.cam_layer or "-")
    options = model_options(name)
    table.add_row("model_args", options if options == "none" else f"{options} (defaults)")
    table.add_row("parameters", f"{total:,}")
    table.add_row("trainable", f"{trainable:,}")
    if statistics:
        table.add_row("Keras count", f"{total + statistics:,} (+ {statistics:,} batch-norm "
                                     "running-statistic values)")
    if info.published_params is not None:
        note = f" ({escape(info.published_note)})" if info.published_note else ""
        table.add_row("published", f"{info.published_params:,}{note}")
    console.print(table)
    _print_blocks(model)


def _print_blocks(model: PainModel) -> None:
    """One row per block: its parameters, and what trains when it and the later blocks are
    unfrozen over a frozen backbone (the two-phase fine-tuning schedule)."""
    table = Table(title="backbone blocks, input → output (head trains always)")
    table.add_column("block", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("trainable with this and\nlater blocks unfrozen", justify="right",
                     no_wrap=True)
    model.freeze()
    _, head_only = model.count_parameters()
    names = model.blocks()
    rows = []
    for index in range(len(names) - 1, -1, -1):
        model.freeze()
        model.unfreeze(names[index:])
        rows.append((names[index], model.count_parameters()[1]))
    model.unfreeze()
    modules = model.block_modules()
    for block, trainable in reversed(rows):
        params = sum(p.numel() for module in modules[block] for p in module.parameters())
        table.add_row(block, f"{params:,}", f"{trainable:,}")
    table.add_row("head", f"{head_only:,}", f"{head_only:,} (backbone frozen)")
    console.print(table)


def _print_description(description: Description) -> None:
    """A fold model's own tables: field/value rows, or named columns whose last one wraps."""
    for part in description.tables:
        if part.columns:
            table = Table(title=escape(part.title), show_lines=True)
            for column in part.columns[:-1]:
                table.add_column(escape(column), no_wrap=True)
            table.add_column(escape(part.columns[-1]), overflow="fold")
        else:
            table = Table(title=escape(part.title), show_header=False)
            table.add_column("field", no_wrap=True, style="bold")
            table.add_column("value", overflow="fold")
        for row in part.rows:
            table.add_row(*map(escape, row))
        console.print(table)
    if description.note:
        console.print(escape(description.note), highlight=False)
