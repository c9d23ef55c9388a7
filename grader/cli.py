"""Command line: parse options, call the core, print. Nothing else lives here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import click

from . import __version__
from . import assignment as assignment_mod
from .errors import GraderError

DEFAULT_ASSIGNMENT = "challenge_s3"


class GraderGroup(click.Group):
    """Turns GraderError into a one-line message and its exit code (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GraderError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=GraderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grader")
def main() -> None:
    """Autograder and report generator for the Fashion-MNIST Keras assignment.

    \b
    grader reference   run (or list) the battery of reference experiments
    grader data        show where the Fashion-MNIST files are looked for
    """


# ----------------------------------------------------------------------------------- data

@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the four Fashion-MNIST IDX files (gzip or not).")
def data(data_dir: str | None) -> None:
    """Show where the data is looked for, what each place holds, and validate what is used."""
    from . import data as data_mod

    for place in data_mod.survey(data_dir):
        found = sum(1 for v in place.found.values() if v)
        state = "complete" if place.complete else f"{found}/4 files"
        click.echo(f"{place.source:15} {place.directory}  [{state}]")
    directory = data_mod.locate(data_dir)
    train = data_mod.load_train(data_dir)
    click.echo(f"using {directory}: train {train.images.shape[0]} images, checksums ok")
    for name, digest in data_mod.checksums(data_dir).items():
        click.echo(f"  {digest}  {name}")


# ------------------------------------------------------------------------------ reference

@main.command()
@click.option("--assignment", "-a", "assignment_name", default=DEFAULT_ASSIGNMENT, show_default=True,
              help="Assignment name (trabajo2, challenge_s3) or a TOML file.")
@click.option("--only", "pattern", default=None, help="Experiment ids to run, glob-like: 'activations.*,final'.")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="cores",
              help="Worker processes training in parallel.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override every experiment's epochs (smoke run: never written to reference_runs/).")
@click.option("--list", "list_only", is_flag=True, help="List the experiments and their cache state; train nothing.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where records go [default: reference_runs/, or the cache for --epochs runs].")
@click.option("--force", is_flag=True, help="Retrain even when a cached record matches.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Fashion-MNIST folder.")
def reference(assignment_name: str, pattern: str | None, workers: int, epochs: int | None, list_only: bool,
              out: str | None, force: bool, data_dir: str | None) -> None:
    """Run the battery of reference experiments (cached by spec, data and versions)."""
    from .experiments import runner
    from .records import Store

    assignment = assignment_mod.load(assignment_name)
    selected = assignment.select(pattern)
    out_dir = Path(out) if out else (runner.smoke_dir() if epochs else runner.reference_dir())
    runner.check_writable(out_dir, epochs)
    store = Store(out_dir)
    if list_only:
        _list_battery(assignment, selected, store)
        return
    plan = runner.make_plan(assignment, selected, store, epochs=epochs, force=force, data_dir=data_dir)
    from .progress import BatteryProgress, summary_table

    if not plan.train:
        click.echo(f"{assignment.id}: all {len(plan.cached)} selected experiments are cached in {out_dir}; "
                   "nothing to train (--force retrains)")
    else:
        smoke = f", {epochs} epochs (smoke run)" if epochs else ""
        click.echo(f"{assignment.id}: training {len(plan.train)} experiments, {len(plan.cached)} cached, "
                   f"{workers} workers{smoke} -> {out_dir}")
    with BatteryProgress(enabled=bool(plan.train)) as progress:
        outcome = runner.run(plan, store, workers=workers, data_dir=data_dir, on_event=progress.event)
    if not epochs and (outcome.trained or not (out_dir / "index.json").exists()):
        store.write_index([r for r in store.records()])
    summary_table(list(plan.cached) + outcome.trained, {r.id for r in outcome.trained}, plan.tests)
    if outcome.interrupted:
        raise click.ClickException(f"interrupted: {len(outcome.trained)} finished records kept in {out_dir}")
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} experiments failed: {', '.join(outcome.failed)}")


def _list_battery(assignment: assignment_mod.Assignment, selected: Any, store: Any) -> None:
    click.echo(f"{assignment.id}: {assignment.title}")
    click.echo(f"seeds: {', '.join(map(str, assignment.seeds))}")
    click.echo(f"{'id':24} {'kind':5} {'split':9} {'epochs':>6} {'batch':>5} {'optimizer':10} {'spec':16} stored")
    for spec in selected:
        record = store.get(spec.of if spec.kind == "test" and spec.of else spec.id)
        stored = "-" if record is None else ("yes" if record.spec_hash == spec.spec_hash() else "stale")
        click.echo(f"{spec.id:24} {spec.kind:5} {spec.split:9} {spec.epochs:>6} {spec.batch_size:>5} "
                   f"{spec.optimizer['name']:10} {spec.spec_hash():16} {stored}")


if __name__ == "__main__":  # python -m grader.cli
    main()
