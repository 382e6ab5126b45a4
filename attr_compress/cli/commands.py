"""The commands: each parses its options, calls the stage functions the pipeline calls (``attr_compress.stages``
for the one-stage commands) and prints. Options shared with the run come from ``compressor.defaults`` through
``flag``, so a default or a choice is written once."""

from __future__ import annotations

from typing import Any

import click

from attr_compress.cli.options import (
    FINITE,
    data_options,
    flag,
    float_list,
    layer_list,
    method_list,
    recovery_from,
    recovery_options,
    scoring_from,
    scoring_options,
)


class PipelineGroup(click.Group):
    """A group whose default command is `run`: `attr-compress MODEL ...` means `attr-compress run MODEL ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        position = 0
        while position < len(args) and args[position] == "--debug":
            position += 1
        if position < len(args):
            first = args[position]
            if first not in self.commands and first not in ("--help", "-h", "--version"):
                args = [*args[:position], "run", *args[position:]]
        return super().parse_args(ctx, args)


model_argument = click.argument("model", type=click.Path(path_type=str))
path = click.Path(path_type=str)
force_option = click.option("--force", is_flag=True, help="Replace an existing output written by attr-compress.")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars and no log but warnings.")


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="attr-compress")
def cli(debug: bool) -> None:
    """Prune a fine-tuned BERT-family classifier's attention heads by self-attention attribution and export a
    verified ONNX model.

    \b
    attr-compress MODEL --keep 0.5 [--data dev.tsv --calib train.tsv --out slim/]
    attr-compress MODEL --target-speedup 2.5   (the structure chosen for a latency target)
    attr-compress score|prune|export|evaluate|tree ...   (one stage at a time)
    attr-compress sweep ...   (every ranking method at every keep level)
    """
    # --debug and --quiet are read by main(), which owns the error boundary and the log.


@cli.command("run")
@model_argument
@click.option("--keep", type=FINITE, help="Fraction of attention heads kept, 0 < keep <= 1.")
@click.option("--keep-ffn", type=FINITE, help="Fraction of FFN neurons kept, 0 < keep-ffn <= 1 (default 1).")
@click.option(
    "--target-speedup",
    type=FINITE,
    help="Choose the structure to run X times faster than the original int8 ONNX (batch 1, measured here).",
)
@click.option("--latency-budget", type=FINITE, help="Choose the structure to run within MS milliseconds (batch 1).")
@click.option("--drop-layers", default="", help="Comma-separated layers (1-based) to remove whole, e.g. 6 or 5,6.")
@flag("max_drop")
@flag("allocation")
@flag("int8")
@click.option("--data", type=path, help="Labelled evaluation set (TSV, CSV, JSONL).")
@click.option("--calib", type=path, help="Calibration text: scores, fits, distils, judges (default: task train split).")
@click.option(
    "--select-data",
    type=path,
    help="Held-out labelled rows that choose and check --max-drop (default: a seeded part of --data).",
)
@click.option("--out", type=path, help="Output folder (default: next to the model).")
@data_options
@scoring_options
@flag("fidelity_examples")
@flag("select_examples")
@flag("threads")
@flag("trees")
@flag("latency_examples")
@recovery_options
@click.option("--compare", is_flag=True, help="Also rank by attention, random and taylor; report their accuracy.")
@force_option
@click.option(
    "--no-cache", is_flag=True, help="Recompute every stage (default: reuse results cached in $XDG_CACHE_HOME)."
)
@quiet_option
def run_command(
    model: str,
    data: str | None,
    calib: str | None,
    select_data: str | None,
    columns: dict[str, str | None],
    quiet: bool,
    **options: Any,
) -> None:
    """Score, prune, recover, export, evaluate and report (the whole pipeline).

    Under torchrun rank 0 runs the pipeline and the other processes share its scoring, refits and distillation.
    """
    from attr_compress.compressor.data.task import DataOptions
    from attr_compress.compressor.scoring.distributed import lead_or_serve
    from attr_compress.pipeline import PipelineOptions, run

    scoring = scoring_from(options, quiet)
    recovery = recovery_from(options, scoring.seed, scoring.device)
    options["drop_layers"] = layer_list(options.pop("drop_layers"))
    options["cache"] = not options.pop("no_cache")
    settings = PipelineOptions(
        model=model,
        data=DataOptions(data, calib, select_data, **columns),
        scoring=scoring,
        recovery=recovery,
        progress=not quiet,
        **options,
    )
    report = lead_or_serve(lambda: run(settings))
    if report is not None:  # torchrun: rank 0 runs the pipeline, writes and talks; the others share its heavy stages
        click.echo(summary(report))


def summary(report: Any) -> str:
    """The one-screen summary printed at the end of a run."""
    from attr_compress.evaluation.report.markdown import results_table

    heads, ffn, ratios = report.heads, report.ffn, report.ratios
    missed = report.target_search is not None and not report.target_met_in_final_measurement
    lines = [
        "",
        f"attr-compress: kept {heads.kept}/{heads.total} heads; per layer {heads.kept_per_layer}",
        f"FFN neurons kept per layer {ffn.kept_per_layer} (keep-ffn {ffn.keep_ffn:g}); "
        f"int8 recipe: {report.export['pruned'].recipe['name']}",
        *results_table(report.results),
        "",
        "pruned int8 vs original: {:.2f}x faster than PyTorch fp32, {:.2f}x faster than int8 ONNX (batch-1 p50)".format(
            ratios["speedup_p50_pruned_int8_vs_original_pytorch_fp32"],
            ratios["speedup_p50_pruned_int8_vs_original_int8"],
        ),
        *([f"latency target ({report.target_search.target}): NOT met in the final measurement"] if missed else []),
        "stages: " + ", ".join(f"{t.stage.split(' (')[0]} {t.seconds:.0f}s" for t in report.timings),
        f"wrote {report.out}  (report.md, onnx/, pruned/, trees/)",
    ]
    return "\n".join(lines)


@cli.command("score")
@model_argument
@click.option("--calib", type=path, required=True, help="Labelled examples to score heads on.")
@click.option("--out", type=path, required=True, help="Folder for importance.json/.png.")
@data_options
@scoring_options
@click.option("--ffn", is_flag=True, help="Also score FFN neurons (ffn_importance.json), for --keep-ffn.")
@force_option
@quiet_option
def score_command(
    model: str,
    calib: str,
    out: str,
    columns: dict[str, str | None],
    ffn: bool,
    force: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Score every head (attention attribution by default): writes importance.json and importance.png;
    with --ffn also every FFN neuron (ffn_importance.json).

    Under torchrun (WORLD_SIZE > 1) each process scores a slice of the examples; rank 0 writes.
    """
    from attr_compress.stages import score_folder

    heads = score_folder(model, calib, out, scoring_from(options, quiet), columns=columns, ffn=ffn, force=force)
    if heads is not None:  # torchrun: only rank 0 writes and talks
        click.echo(f"wrote {out}: importance.json and importance.png ({heads.examples} examples)")


@cli.command("prune")
@model_argument
@click.option("--importance", type=path, required=True, help="importance.json from `attr-compress score`.")
@click.option("--keep", type=FINITE, required=True, help="Fraction of attention heads kept, 0 < keep <= 1.")
@click.option("--ffn-importance", type=path, help="ffn_importance.json (`score --ffn`).")
@click.option("--keep-ffn", type=FINITE, default=1.0, show_default=True, help="Fraction of FFN neurons kept.")
@click.option("--calib", type=path, help="Calibration file that --recover fits on (and judges on, with auto).")
@recovery_options
@flag("seed")
@flag("device")
@flag("fidelity_examples")
@click.option("--out", type=path, required=True, help="Folder for the pruned model.")
@data_options
@force_option
@quiet_option
def prune_command(
    model: str, out: str, columns: dict[str, str | None], seed: int, device: str, quiet: bool, **options: Any
) -> None:
    """Remove the least important heads (and FFN neurons), recover, and save a Hugging Face folder (plus
    prune_plan.json and recovery.json); the recovery is chosen as a run chooses it. Under torchrun the refit's
    statistics and the distillation are shared between the processes and rank 0 writes."""
    from attr_compress.stages import prune_folder

    recovery = recovery_from(options, seed, device)
    result = prune_folder(model, out=out, recovery=recovery, columns=columns, progress=not quiet, **options)
    if result is None:  # torchrun: only rank 0 writes and talks
        return
    plan, _ = result
    click.echo(
        f"wrote {out}: kept {plan.kept_heads}/{plan.total_heads} heads, per layer {plan.heads_kept_per_layer}; "
        f"FFN neurons per layer {plan.ffn_kept_per_layer or 'all'}"
    )


@cli.command("export")
@model_argument
@click.option(
    "--data", type=path, required=True, help="Labelled data: parity inputs, and the rows recipes are judged on."
)
@click.option("--out", type=path, required=True, help="Folder for the ONNX graphs.")
@data_options
@click.option(
    "--tune/--no-tune",
    default=True,
    show_default=True,
    help="Choose the int8 recipe by measurement on the rows of --data (else Optimum's recipe).",
)
@flag("select_examples", help="Rows of --data the int8 recipes are judged on (against the model).")
@flag("latency_examples")
@flag("threads")
@force_option
@quiet_option
def export_command(
    model: str, data: str, out: str, columns: dict[str, str | None], quiet: bool, **options: Any
) -> None:
    """Export to ONNX (fp32 and int8, with runtime.json) and check parity with PyTorch."""
    from attr_compress.stages import export_folder

    record = export_folder(model, data, out, columns=columns, **options)
    worst = max(check["max_abs_diff"] for check in record.parity if check["passed"])
    click.echo(f"wrote {out}: parity max |diff| {worst:.2e}, int8 agreement {record.int8_agreement:.1%}")


@cli.command("evaluate")
@click.argument("models", nargs=-1, required=True, type=path)
@click.option("--data", type=path, required=True, help="Labelled evaluation set.")
@click.option("--out", type=path, help="Write the results as JSON here.")
@data_options
@flag("threads")
@flag("latency_examples")
@force_option
@quiet_option
def evaluate_command(
    models: tuple[str, ...], data: str, columns: dict[str, str | None], quiet: bool, **options: Any
) -> None:
    """Accuracy and latency of model folders side by side (Hugging Face folders and/or ONNX folders)."""
    from attr_compress.evaluation.report.markdown import results_table
    from attr_compress.stages import evaluate_folders

    measurement = evaluate_folders(models, data, columns=columns, progress=not quiet, **options)
    click.echo("\n".join(results_table(measurement.results, reference=measurement.results[0].name)))


@cli.command("sweep")
@model_argument
@click.option("--data", type=path, required=True, help="Labelled evaluation set.")
@click.option("--calib", type=path, required=True, help="Examples to score heads on.")
@click.option("--out", type=path, required=True, help="Output folder for the sweep.")
@data_options
@click.option(
    "--methods",
    default=",".join(("attattr", "attattr-paper", "taylor", "attention", "random")),
    show_default=True,
    callback=method_list,
    help="Comma-separated ranking methods.",
)
@click.option(
    "--keeps",
    default="0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1",
    show_default=True,
    callback=float_list,
    help="Comma-separated keep levels.",
)
@click.option(
    "--latency-method",
    default="attattr",
    show_default=True,
    help="Method whose keep levels are exported and timed as ONNX int8 ('none' to skip).",
)
@scoring_options
@flag("threads")
@flag("latency_examples")
@force_option
@quiet_option
def sweep_command(
    model: str,
    data: str,
    calib: str,
    out: str,
    columns: dict[str, str | None],
    force: bool,
    quiet: bool,
    methods: tuple[str, ...],
    keeps: tuple[float, ...],
    latency_method: str,
    threads: int,
    latency_examples: int,
    **scoring: Any,
) -> None:
    """Accuracy of every ranking method at every keep level, and the accuracy/latency frontier."""
    from attr_compress.evaluation.report.sweep import sweep_markdown
    from attr_compress.sweep import SweepOptions, sweep

    scoring.pop("method")  # --methods lists them
    options = SweepOptions(
        methods=methods,
        keeps=keeps,
        latency_method=None if latency_method == "none" else latency_method,
        threads=threads,
        latency_examples=latency_examples,
        scoring=scoring_from(scoring, quiet),
    )
    result = sweep(model, data, calib, out, options, columns=columns, force=force)
    click.echo(sweep_markdown(result))
    click.echo(f"wrote {out} (sweep.json, sweep.md, sweep_accuracy.png, sweep_frontier.png)")


@cli.command("tree")
@model_argument
@click.option("--data", type=path, required=True, help="Labelled data; trees for its first rows.")
@click.option("--out", type=path, required=True, help="Folder for tree JSON and SVG files.")
@data_options
@flag("trees", help="Number of examples.")
@scoring_options
@force_option
@quiet_option
def tree_command(
    model: str,
    data: str,
    out: str,
    columns: dict[str, str | None],
    trees: int,
    force: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Attribution trees (the paper's Algorithm 1) for the first examples of a data file."""
    from attr_compress.stages import explain_folder

    written = explain_folder(model, data, out, scoring_from(options, quiet), columns=columns, trees=trees, force=force)
    click.echo(f"wrote {written} trees to {out}")
