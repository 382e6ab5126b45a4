"""Command line: `attr-compress MODEL --keep 0.5` runs the pipeline; subcommands run one stage each.

Each command parses options, calls one function of the Python API and prints; heavy imports stay inside
commands so `--help` is instant. One error boundary (``main``) turns the project's errors into one line and
an exit code (EXIT_CODES): the library raises, only this module exits.
"""

from __future__ import annotations

import errno
import functools
import math
import shutil
import signal
import sys
import traceback
from typing import Any

import click

from compressor.errors import AttrCompressError, InputError, VerificationError

# The names of compressor.ranking.RANKERS, listed here so `--help` does not import torch (a test checks).
METHODS = ("attattr", "attattr-paper", "attattr-iterative", "attention", "taylor", "random")
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_CODES: dict[type[AttrCompressError], int] = {InputError: 2, VerificationError: 1}


class Terminated(BaseException):
    """Raised by the SIGTERM handler so staged folders are cleaned up like on Ctrl-C."""


class FiniteFloat(click.ParamType):
    """A float option: NaN and infinity are refused when the command line is read, before any work."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloat()


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


def say(message: str) -> None:
    click.echo(message, err=True)


def with_options(command: Any, options: list[Any]) -> Any:
    """``command`` decorated by ``options`` in the order they are listed (so --help lists them that way)."""
    for option in reversed(options):
        command = option(command)
    return command


def data_options(command: Any) -> Any:
    """Column options shared by every command that reads labelled data, passed on as one ``columns`` dict."""

    @functools.wraps(command)
    def with_columns(
        *args: Any, text_column: str | None, text_pair_column: str | None, label_column: str | None, **kwargs: Any
    ) -> Any:
        columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
        return command(*args, columns=columns, **kwargs)

    return with_options(
        with_columns,
        [
            click.option("--text-column", help="Column with the (first) text; detected for GLUE files."),
            click.option("--text-pair-column", help="Column with the second text of pair tasks."),
            click.option("--label-column", help="Column with the gold label."),
        ],
    )


def scoring_options(command: Any) -> Any:
    return with_options(
        command,
        [
            click.option(
                "--method",
                type=click.Choice(METHODS),
                default="attattr",
                show_default=True,
                help="Head ranking: attattr (best attribution ranking), attattr-paper (as published), "
                "attattr-iterative, attention, taylor (Michel et al. 2019) or random.",
            ),
            click.option(
                "--examples",
                default=200,
                show_default=True,
                help="Calibration examples used to score heads and neurons, at most (see --settle).",
            ),
            click.option(
                "--steps",
                default=6,
                show_default=True,
                help="Integration points m per layer (the paper: 20 with --rule left).",
            ),
            click.option(
                "--rule",
                type=click.Choice(["left", "midpoint", "gauss"]),
                default="gauss",
                show_default=True,
                help="Quadrature rule; 'left' is the paper's Riemann sum. Gauss-Legendre with 6 points ranks heads "
                "like the paper's 20-step sum at a third of the cost.",
            ),
            click.option(
                "--settle",
                type=FINITE,
                default=0.995,
                show_default=True,
                help="Stop scoring once two consecutive rankings (every 32 examples, from 64 on) agree this well "
                "(Spearman); 0 scores every example.",
            ),
            click.option("--seed", default=0, show_default=True, help="Seed of the calibration sample."),
            click.option("--device", default="cpu", show_default=True, help="Where to score: cpu, cuda or cuda:N."),
            click.option(
                "--max-batch-tokens",
                default=2048,
                show_default=True,
                help="Bound on examples x steps x tokens per attribution batch (memory).",
            ),
        ],
    )


model_argument = click.argument("model", type=click.Path(path_type=str))


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="attr-compress")
def cli(debug: bool) -> None:
    """Prune a fine-tuned BERT-family classifier's attention heads by self-attention attribution and export a
    verified ONNX model.

    \b
    attr-compress MODEL --keep 0.5 [--data dev.tsv --calib train.tsv --out slim/]
    attr-compress score|prune|export|evaluate|tree ...   (one stage at a time)
    attr-compress sweep ...   (every ranking method at every keep level)
    """
    # --debug is read by main(), which owns the error boundary.


RECOVERY_CHOICES = ("auto", "none", "lsq", "distill")  # compressor.recovery.RECOVERY_METHODS, without importing torch


def recovery_options(command: Any) -> Any:
    return with_options(
        command,
        [
            click.option(
                "--recover",
                type=click.Choice(RECOVERY_CHOICES),
                default="auto",
                show_default=True,
                help="After pruning: lsq refits output projections by least squares (no training); distill then "
                "trains against the original on the training file; auto keeps whichever scores best on held-out "
                "rows (lsq or distill when FFN neurons are pruned or a target is set, else none or lsq).",
            ),
            click.option("--fit-examples", default=1000, show_default=True, help="Calibration examples lsq fits on."),
            click.option(
                "--lsq-damping/--no-lsq-damping",
                default=True,
                show_default=True,
                help="The least-squares refit's ridge pulls toward the layer's weights (no outlier columns for int8 "
                "to round badly) rather than toward zero.",
            ),
            click.option(
                "--distill-examples",
                default=40000,
                show_default=True,
                help="Examples the distillation trains on (at most 8 passes over the training rows); with the seed "
                "it fixes the result bit for bit, whatever the machine.",
            ),
            click.option(
                "--distill-steps",
                type=int,
                help="Exact number of distillation batches of 32 (instead of --distill-examples).",
            ),
            click.option(
                "--distill-int8-aware",
                type=FINITE,
                default=0.0,
                show_default=True,
                help="The last fraction of the distillation trains through int8-rounded weights (quantisation-aware).",
            ),
            click.option(
                "--distill-minutes",
                type=FINITE,
                help="Opt-in time cap: stop distilling when it is up. The result then depends on this machine's "
                "speed and load (the log and recovery.json say when it cut the training short).",
            ),
        ],
    )


def scoring_from(options: dict[str, Any], quiet: bool = False) -> Any:
    """ScoringOptions from the shared scoring options (they are removed from ``options``)."""
    from compressor.scoring import ScoringOptions

    names = ("method", "examples", "steps", "rule", "settle", "seed", "max_batch_tokens", "device")
    return ScoringOptions(**{name: options.pop(name) for name in names if name in options}, progress=not quiet)


def recovery_from(options: dict[str, Any], seed: int) -> Any:
    """RecoveryOptions from the recovery options (they are removed from ``options``)."""
    from compressor.distill import DistillOptions
    from compressor.recovery import RecoveryOptions

    distill = DistillOptions(
        examples=options.pop("distill_examples"),
        steps=options.pop("distill_steps"),
        minutes=options.pop("distill_minutes"),
        quantization_aware=options.pop("distill_int8_aware"),
        seed=seed,
    )
    return RecoveryOptions(
        method=options.pop("recover"),
        fit_examples=options.pop("fit_examples"),
        distill=distill,
        seed=seed,
        damped=options.pop("lsq_damping"),
    )


@cli.command("run")
@model_argument
@click.option("--keep", type=FINITE, help="Fraction of attention heads kept, 0 < keep <= 1.")
@click.option("--keep-ffn", type=FINITE, help="Fraction of FFN neurons kept, 0 < keep-ffn <= 1 (default 1).")
@click.option(
    "--target-speedup",
    type=FINITE,
    help="Choose --keep/--keep-ffn to run X times faster than the original int8 ONNX (batch 1, measured here).",
)
@click.option("--latency-budget", type=FINITE, help="Choose --keep/--keep-ffn to run within MS milliseconds (batch 1).")
@click.option(
    "--drop-layers",
    default="",
    help="Comma-separated layers (1-based) to remove whole, e.g. 6 or 5,6.",
)
@click.option(
    "--max-drop",
    default=1.0,
    type=FINITE,
    show_default=True,
    help="With a target: accuracy points the shipped int8 model may lose against the original, checked on the "
    "selection rows (paired, 95% interval): a model shown to lose more (the whole interval above it) is not "
    "shipped (exit 2); one the rows cannot resolve ships, and the report says so.",
)
@click.option(
    "--allocation",
    type=click.Choice(["per-layer", "global"]),
    default="per-layer",
    show_default=True,
    help="With a target: heads and FFN widths allocated per layer under this machine's latency model (global "
    "rankings compete too), or one global attribution ranking only.",
)
@click.option(
    "--int8",
    type=click.Choice(["per-matmul", "uniform"]),
    default="per-matmul",
    show_default=True,
    help="After recovery, each layer's weight granularity and fp32 for the MatMuls that hurt most are chosen by "
    "agreement with the original; or one recipe for every MatMul.",
)
@click.option(
    "--fidelity-examples",
    default=4000,
    show_default=True,
    help="Unlabelled rows of --calib (at most a third) held out to judge every candidate, recipe and recovery by "
    "agreement with the original; never scored, fitted or distilled on.",
)
@click.option("--data", type=click.Path(path_type=str), help="Labelled evaluation set (TSV, CSV, JSONL).")
@click.option("--calib", type=click.Path(path_type=str), help="Examples to score heads on (default: task train split).")
@click.option(
    "--select-data",
    type=click.Path(path_type=str),
    help="Held-out labelled rows that choose the recipe, candidate and recovery (default: a seeded part of --data).",
)
@click.option("--out", type=click.Path(path_type=str), help="Output folder (default: next to the model).")
@data_options
@scoring_options
@click.option(
    "--threads",
    default=0,
    show_default=True,
    help="Threads for latency measurement; 0 times every graph as a default onnxruntime session runs it (how users "
    "load the shipped folder).",
)
@click.option("--trees", default=5, show_default=True, help="Attribution trees for the first N evaluation examples.")
@click.option("--latency-examples", default=200, show_default=True, help="Examples timed at batch 1.")
@click.option(
    "--select-examples",
    default=1000,
    show_default=True,
    help="Held-out rows (at most half of --data, another seed) that choose the recipe, candidate and recovery.",
)
@recovery_options
@click.option("--compare", is_flag=True, help="Also rank by attention, random and taylor; report their accuracy.")
@click.option("--force", is_flag=True, help="Replace an existing output folder written by attr-compress.")
@click.option(
    "--no-cache", is_flag=True, help="Recompute every stage (default: reuse results cached in $XDG_CACHE_HOME)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run_command(
    model: str,
    data: str | None,
    calib: str | None,
    select_data: str | None,
    columns: dict[str, str | None],
    quiet: bool,
    **options: Any,
) -> None:
    """Score, prune, recover, export, evaluate and report (the whole pipeline)."""
    from attr_compress.pipeline import PipelineOptions, run
    from compressor.task_data import DataOptions

    scoring = scoring_from(options, quiet)
    recovery = recovery_from(options, scoring.seed)
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
    report = run(settings, log=say if not quiet else lambda message: None)
    click.echo(summary(report))


def layer_list(text: str) -> tuple[int, ...]:
    """'5,6' -> (4, 5): 1-based layer numbers as the user counts them, 0-based inside."""
    try:
        return tuple(int(part) - 1 for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--drop-layers takes comma-separated layer numbers like 5,6; got {text!r}") from None


def summary(report: Any) -> str:
    """The one-screen summary printed at the end of a run."""
    from evaluation.report import results_table

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
@click.option("--calib", type=click.Path(path_type=str), required=True, help="Labelled examples to score heads on.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for importance.json/.png.")
@data_options
@scoring_options
@click.option("--ffn", is_flag=True, help="Also score FFN neurons (ffn_importance.json), for --keep-ffn.")
@click.option("--force", is_flag=True, help="Replace an existing folder written by attr-compress.")
def score_command(
    model: str, calib: str, out: str, columns: dict[str, str | None], ffn: bool, force: bool, **options: Any
) -> None:
    """Score every head (attention attribution by default): writes importance.json and importance.png;
    with --ffn also every FFN neuron (ffn_importance.json).

    Under torchrun (WORLD_SIZE > 1) each process scores a slice of the examples; rank 0 writes.
    """
    from attr_compress.commands import score_folder

    heads = score_folder(model, calib, out, scoring_from(options), columns=columns, ffn=ffn, force=force)
    if heads is not None:  # torchrun: only rank 0 writes and talks
        click.echo(f"wrote {out}: importance.json and importance.png ({heads.examples} examples)")


@cli.command("prune")
@model_argument
@click.option(
    "--importance", type=click.Path(path_type=str), required=True, help="importance.json from `attr-compress score`."
)
@click.option("--keep", type=FINITE, required=True, help="Fraction of attention heads kept, 0 < keep <= 1.")
@click.option("--ffn-importance", type=click.Path(path_type=str), help="ffn_importance.json (`score --ffn`).")
@click.option("--keep-ffn", type=FINITE, default=1.0, show_default=True, help="Fraction of FFN neurons kept.")
@click.option("--calib", type=click.Path(path_type=str), help="Calibration file that --recover fits on.")
@recovery_options
@click.option("--seed", default=0, show_default=True, help="Seed of the calibration sample.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for the pruned model.")
@data_options
@click.option("--force", is_flag=True, help="Replace an existing pruned folder written by attr-compress.")
def prune_command(model: str, out: str, columns: dict[str, str | None], seed: int, **options: Any) -> None:
    """Remove the least important heads (and FFN neurons), optionally recover, and save a Hugging Face
    folder (plus prune_plan.json and recovery.json)."""
    from attr_compress.commands import prune_folder

    recovery = recovery_from(options, seed)
    plan, _ = prune_folder(model, out=out, recovery=recovery, columns=columns, log=say, **options)
    click.echo(
        f"wrote {out}: kept {plan.kept_heads}/{plan.total_heads} heads, per layer {plan.heads_kept_per_layer}; "
        f"FFN neurons per layer {plan.ffn_kept_per_layer or 'all'}"
    )


@cli.command("export")
@model_argument
@click.option(
    "--data", type=click.Path(path_type=str), required=True, help="Labelled data; its first rows feed the parity gate."
)
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for the ONNX graphs.")
@data_options
@click.option(
    "--tune/--no-tune",
    default=True,
    show_default=True,
    help="Choose the int8 recipe by measurement on the first --examples rows of --data (else Optimum's recipe).",
)
@click.option("--examples", default=300, show_default=True, help="Rows of --data for parity and recipe tuning.")
@click.option("--latency-examples", default=100, show_default=True, help="Rows timed at batch 1 while tuning.")
@click.option("--threads", default=1, show_default=True, help="Threads the int8 recipes are timed with.")
@click.option("--force", is_flag=True, help="Replace an existing ONNX folder written by attr-compress.")
def export_command(model: str, data: str, out: str, columns: dict[str, str | None], **options: Any) -> None:
    """Export to ONNX (fp32 and int8, with runtime.json) and check parity with PyTorch."""
    from attr_compress.commands import export_folder

    record = export_folder(model, data, out, columns=columns, log=say, **options)
    worst = max(check["max_abs_diff"] for check in record.parity if check["passed"])
    click.echo(f"wrote {out}: parity max |diff| {worst:.2e}, int8 agreement {record.int8_agreement:.1%}")


@cli.command("evaluate")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--data", type=click.Path(path_type=str), required=True, help="Labelled evaluation set.")
@click.option("--out", type=click.Path(path_type=str), help="Write the results as JSON here.")
@data_options
@click.option("--threads", default=1, show_default=True, help="Threads for latency measurement.")
@click.option("--latency-examples", default=200, show_default=True, help="Examples timed at batch 1.")
@click.option("--force", is_flag=True, help="Replace an existing --out file written by attr-compress evaluate.")
def evaluate_command(models: tuple[str, ...], data: str, columns: dict[str, str | None], **options: Any) -> None:
    """Accuracy and latency of model folders side by side (Hugging Face folders and/or ONNX folders)."""
    from attr_compress.commands import evaluate_folders
    from evaluation.report import results_table

    measurement = evaluate_folders(models, data, columns=columns, **options)
    click.echo("\n".join(results_table(measurement.results, reference=measurement.results[0].name)))


def float_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        keeps = tuple(float(item) for item in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of numbers, e.g. 0.9,0.5,0.1") from None
    if not all(0 < keep <= 1 for keep in keeps):
        raise click.BadParameter(f"every keep level must be in (0, 1], got {value}")
    return keeps


def method_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    methods = tuple(item.strip() for item in value.split(",") if item.strip())
    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods:
        raise click.BadParameter(f"unknown method(s) {unknown or value!r}; choose from {', '.join(METHODS)}")
    return methods


@cli.command("sweep")
@model_argument
@click.option("--data", type=click.Path(path_type=str), required=True, help="Labelled evaluation set.")
@click.option("--calib", type=click.Path(path_type=str), required=True, help="Examples to score heads on.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Output folder for the sweep.")
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
@click.option("--examples", default=200, show_default=True, help="Calibration examples used to score heads.")
@click.option("--steps", default=20, show_default=True, help="Integration steps m per layer.")
@click.option("--seed", default=0, show_default=True, help="Seed of the calibration sample.")
@click.option("--threads", default=1, show_default=True, help="Threads for latency measurement.")
@click.option("--latency-examples", default=200, show_default=True, help="Examples timed at batch 1.")
@click.option("--force", is_flag=True, help="Replace an existing sweep folder written by attr-compress.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
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
    from attr_compress.sweep import SweepOptions, sweep
    from evaluation.report import sweep_markdown

    options = SweepOptions(
        methods=methods,
        keeps=keeps,
        latency_method=None if latency_method == "none" else latency_method,
        threads=threads,
        latency_examples=latency_examples,
        scoring=scoring_from(scoring, quiet),
    )
    result = sweep(
        model, data, calib, out, options, columns=columns, force=force, log=(lambda message: None) if quiet else say
    )
    click.echo(sweep_markdown(result))
    click.echo(f"wrote {out} (sweep.json, sweep.md, sweep_accuracy.png, sweep_frontier.png)")


@cli.command("tree")
@model_argument
@click.option("--data", type=click.Path(path_type=str), required=True, help="Labelled data; trees for its first rows.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for tree JSON and SVG files.")
@data_options
@click.option("--trees", default=5, show_default=True, help="Number of examples.")
@click.option("--steps", default=20, show_default=True, help="Integration steps m per layer.")
@click.option(
    "--rule",
    type=click.Choice(["left", "midpoint", "gauss"]),
    default="left",
    show_default=True,
    help="Quadrature rule; 'left' is the paper's Riemann sum.",
)
@click.option("--force", is_flag=True, help="Replace an existing trees folder written by attr-compress.")
def tree_command(model: str, data: str, out: str, columns: dict[str, str | None], **options: Any) -> None:
    """Attribution trees (the paper's Algorithm 1) for the first examples of a data file."""
    from attr_compress.commands import explain_folder

    written = explain_folder(model, data, out, columns=columns, **options)
    click.echo(f"wrote {written} trees to {out}")


def _terminate(_signum: int, _frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place that turns errors into exit codes (2 usage, 1 failed check, 130/143 signal)."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=args, prog_name="attr-compress", standalone_mode=False)
    except click.exceptions.Abort:
        say("interrupted; no output was written")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        say("interrupted; no output was written")
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        say("terminated; no output was written")
        sys.exit(EXIT_TERMINATED)
    except click.UsageError as err:  # one line, like every other error (click would add the usage text)
        command = f" {err.ctx.command_path.split(' ', 1)[-1]}" if err.ctx and " " in err.ctx.command_path else ""
        say(f"error: {err.format_message()}; see 'attr-compress{command} --help'")
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except AttrCompressError as err:
        if debug:
            traceback.print_exc()
        say(f"error: {err}")
        sys.exit(next((code for kind, code in EXIT_CODES.items() if isinstance(err, kind)), 1))
    except OSError as err:  # the machine's faults: a full disk, a file we may not write
        if debug:
            traceback.print_exc()
        say(f"error: {os_error_line(err)}")
        sys.exit(2 if err.errno in USER_FIXABLE_ERRNOS else 1)
    except Exception as err:  # noqa: BLE001 - the boundary: never a raw traceback
        if debug:
            traceback.print_exc()
        message = " ".join(str(err).split())[:300]
        say(f"internal error: {type(err).__name__}: {message}; re-run with --debug and report it")
        sys.exit(1)


USER_FIXABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def os_error_line(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) and err.args[0]:
        _, destination, why = err.args[0][0]  # copytree gathers (source, destination, reason) per file
        return f"{why} (copying to '{destination}'); nothing was written: check the disk and pass another --out"
    where = f" on '{err.filename}'" if err.filename else ""
    remedy = {
        errno.ENOSPC: "free some disk space or pass --out on another disk",
        errno.EDQUOT: "free some of your disk quota or pass --out elsewhere",
        errno.EROFS: "pass --out on a writable disk",
    }.get(err.errno, "check the permissions or pass another --out")
    return f"{err.strerror or type(err).__name__}{where}; nothing was written: {remedy}"


if __name__ == "__main__":
    main()
