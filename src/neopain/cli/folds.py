"""``neopain folds``: make subject-grouped folds (folds.json) and check them against a manifest."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail
from neopain.cli.dataset import count_problems, print_problems
from neopain.data.folds import (
    PROTOCOLS,
    FoldCheck,
    FoldIssue,
    FoldPlan,
    FoldsError,
    check_folds,
    load_folds,
    make_folds,
    save_folds,
)
from neopain.data.manifest import Manifest, ManifestError, load_manifest, sha256_file

app = typer.Typer(help="Subject-grouped folds: make folds.json, check it.", no_args_is_help=True)

MAX_ISSUE_ROWS = 100

ManifestArg = Annotated[Path, typer.Argument(help="The manifest CSV (one row per image).")]
ToleranceOpt = Annotated[float, typer.Option(
    help="Largest distance (0-1) of a test fold's pain share from the overall one before a "
         "warning.")]


def _load(path: Path) -> Manifest:
    try:
        return load_manifest(path)
    except ManifestError as error:
        print_problems(error)
        fail(f"{escape(str(path))} is not a valid manifest: {count_problems(error)}")


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def print_folds(plan: FoldPlan, found: FoldCheck) -> None:
    """One row per fold: subjects and images per split, test pain share and sources."""
    what = "repeats" if plan.protocol == "holdout" else "folds"
    table = Table(title=f"{plan.protocol}: {len(plan.folds)} {what}, seed {plan.seed}, "
                        f"overall pain share {_share(found.pain_share)}")
    table.add_column("fold", justify="right")
    for name in ("train", "val", "test"):
        table.add_column(f"{name}\nsubjects (images)", justify="right")
    table.add_column("test\npain", justify="right")
    table.add_column("test subjects\nper source")
    off = {issue.fold for issue in found.warnings}
    for stats in found.stats:
        cells = [str(stats.index)]
        cells += [f"{stats.subjects[name]} ({stats.images[name]})"
                  for name in ("train", "val", "test")]
        share = _share(stats.test_pain_share)
        cells.append(f"[yellow]{share}[/]" if stats.index in off else share)
        sources = ", ".join(f"{escape(source)} {n}" for source, n in stats.test_sources.items())
        table.add_row(*cells, sources)
    console.print(table)
    console.print(
        f"largest distance of a test fold's pain share from the overall: "
        f"{found.largest_deviation * 100:.1f} points (tolerance {found.tolerance * 100:.0f})",
        highlight=False)


def _print_issues(title: str, issues: tuple[FoldIssue, ...], *, style: str) -> None:
    table = Table(title=Text(title), title_style=style)
    table.add_column("fold", justify="right", no_wrap=True)
    table.add_column("subjects", overflow="fold")
    table.add_column("finding", overflow="fold")
    for issue in issues[:MAX_ISSUE_ROWS]:
        table.add_row("-" if issue.fold is None else str(issue.fold),
                      Text(", ".join(issue.subjects[:10]) + (" ..." * (len(issue.subjects) > 10))),
                      Text(str(issue.message)))
    err_console.print(table)
    if len(issues) > MAX_ISSUE_ROWS:
        err_console.print(f"... and {len(issues) - MAX_ISSUE_ROWS} more", highlight=False)


def _report(plan: FoldPlan, found: FoldCheck, *, strict: bool) -> bool:
    """Print the fold table, warnings and problems; whether the plan passes."""
    print_folds(plan, found)
    if found.warnings:
        _print_issues(f"{len(found.warnings)} warning(s): class balance", found.warnings,
                      style="bold yellow")
    if found.problems:
        _print_issues(f"{len(found.problems)} problem(s)", found.problems, style="bold red")
        return False
    coverage = "; every subject is in exactly one test fold" if plan.kfold else ""
    console.print(f"[bold green]no leakage[/]: no subject is in two of train/val/test in any of "
                  f"the {len(plan.folds)} folds{coverage}", highlight=False)
    return not (strict and found.warnings)


@app.command()
def make(
    manifest: ManifestArg,
    out: Annotated[Path, typer.Option("--out", help="The folds.json file to write.")],
    protocol: Annotated[str, typer.Option(
        help=f"{', '.join(PROTOCOLS)}: leave-some-subjects-out k-fold with a fixed share of each "
             "source per test fold; StratifiedGroupKFold by label; repeated grouped, "
             "stratified train/test splits.")],
    k: Annotated[int, typer.Option("--k", help="Folds (lsso, sgkf) or repeats (holdout).")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 0,
    val_share: Annotated[float, typer.Option(
        help="Share of each fold's training subjects that validate (at least 1); 0 for none.")
    ] = 0.1,
    test_share: Annotated[float, typer.Option(
        help="holdout: share of subjects tested in each repeat (0.2 for 80/20).")] = 0.2,
    balance_by: Annotated[str, typer.Option(
        help="Manifest column whose values every test fold (lsso, holdout) and validation set "
             "shares in; 'none' to turn off.")] = "source",
    tolerance: ToleranceOpt = 0.15,
) -> None:
    """Make subject-grouped folds of a manifest and write them to folds.json.

    No subject is ever in two of a fold's train, validation and test sets. folds.json records
    the protocol, seed, k and the manifest's sha256, so it is only used with this manifest.
    """
    loaded = _load(manifest)
    try:
        plan = make_folds(
            loaded, protocol=protocol, k=k, seed=seed, val_share=val_share,
            test_share=test_share, balance_by=None if balance_by.lower() == "none" else balance_by,
            manifest_sha256=sha256_file(manifest), manifest_name=manifest.name,
        )
        found = check_folds(plan, loaded, tolerance=tolerance)
    except FoldsError as error:
        fail(escape(str(error)))
    if not _report(plan, found, strict=False):
        fail("the folds made are not valid; this is a bug in neopain, please report it")
    save_folds(plan, out)
    console.print(f"wrote {len(plan.folds)} {plan.protocol} folds of {len(loaded.subjects)} "
                  f"subjects to [bold]{escape(str(out))}[/]", highlight=False)


@app.command()
def check(
    manifest: ManifestArg,
    folds: Annotated[Path, typer.Argument(help="The folds.json made for this manifest.")],
    tolerance: ToleranceOpt = 0.15,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also exit 1 when a test fold's pain share is beyond the tolerance.")
    ] = False,
) -> None:
    """Check folds.json against its manifest: leakage, coverage and class balance.

    Exits 1 naming the subjects when a subject is in two of a fold's train/val/test, a k-fold
    subject is tested in no fold or several, subjects are unknown or missing, or folds.json was
    made for a different manifest.
    """
    loaded = _load(manifest)
    try:
        plan = load_folds(folds, manifest=manifest)
        found = check_folds(plan, loaded, tolerance=tolerance)
    except FoldsError as error:
        fail(escape(str(error)))
    if not _report(plan, found, strict=strict):
        what = (f"{len(found.problems)} problem(s)" if found.problems
                else f"{len(found.warnings)} class-balance warning(s) with --strict")
        named = sorted({s for issue in found.problems or found.warnings for s in issue.subjects})
        subjects = f"; subjects: {', '.join(named[:10])}" if named else ""
        fail(escape(f"{folds} does not pass: {what}{subjects}"))
