"""Command line: `attr-compress MODEL --keep 0.5` runs the pipeline; subcommands run one stage each.

Each command parses options, calls a library function and prints; heavy imports stay inside commands so
`--help` is instant. One error boundary (``main``) turns the project's errors into one line and an exit code.
"""

from __future__ import annotations

import functools
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from compressor.errors import AttrCompressError, InputError

# The names of compressor.ranking.RANKERS, listed here so `--help` does not import torch (a test checks).
METHODS = ("attattr", "attattr-paper", "attattr-iterative", "attention", "taylor", "random")
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """Raised by the SIGTERM handler so staged folders are cleaned up like on Ctrl-C."""


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


def data_options(command: Any) -> Any:
    """Column options shared by every command that reads labelled data, passed on as one ``columns`` dict."""

    @functools.wraps(command)
    def with_columns(
        *args: Any, text_column: str | None, text_pair_column: str | None, label_column: str | None, **kwargs: Any
    ) -> Any:
        columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
        return command(*args, columns=columns, **kwargs)

    for option in reversed(
        [
            click.option("--text-column", help="Column with the (first) text; detected for GLUE files."),
            click.option("--text-pair-column", help="Column with the second text of pair tasks."),
            click.option("--label-column", help="Column with the gold label."),
        ]
    ):
        with_columns = option(with_columns)
    return with_columns


def scoring_options(command: Any) -> Any:
    for option in reversed(
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
                "--examples", default=200, show_default=True, help="Calibration examples used to score heads."
            ),
            click.option("--steps", default=20, show_default=True, help="Integration steps m per layer."),
            click.option(
                "--rule",
                type=click.Choice(["left", "midpoint", "gauss"]),
                default="left",
                show_default=True,
                help="Quadrature rule; 'left' is the paper's Riemann sum.",
            ),
            click.option("--seed", default=0, show_default=True, help="Seed of the calibration sample."),
            click.option("--device", default="cpu", show_default=True, help="Where to score: cpu, cuda or cuda:N."),
            click.option(
                "--max-batch-tokens",
                default=2048,
                show_default=True,
                help="Bound on examples x steps x tokens per attribution batch (memory).",
            ),
        ]
    ):
        command = option(command)
    return command


model_argument = click.argument("model", type=click.Path(path_type=str))


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="attr-compress")
def cli(debug: bool) -> None:
    """Prune a fine-tuned BERT classifier's attention heads by self-attention attribution and export a
    verified ONNX model.

    \b
    attr-compress MODEL --keep 0.5 [--data dev.tsv --calib train.tsv --out slim/]
    attr-compress score|prune|export|evaluate|tree ...   (one stage at a time)
    attr-compress sweep ...   (every ranking method at every keep level)
    """
    # --debug is read by main(), which owns the error boundary.


RECOVERY_CHOICES = ("none", "lsq", "distill")  # compressor.recovery.RECOVERY_METHODS, without importing torch


def recovery_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--recover",
                type=click.Choice(RECOVERY_CHOICES),
                default="none",
                show_default=True,
                help="After pruning: lsq refits output projections by least squares (no training); distill adds "
                "a short distillation from the original.",
            ),
            click.option(
                "--fit-examples", default=1000, show_default=True, help="Calibration examples --recover fits on."
            ),
            click.option("--distill-steps", default=200, show_default=True, help="Batches of --recover distill."),
        ]
    ):
        command = option(command)
    return command


@cli.command("run")
@model_argument
@click.option("--keep", type=float, help="Fraction of attention heads kept, 0 < keep <= 1.")
@click.option("--keep-ffn", type=float, help="Fraction of FFN neurons kept, 0 < keep-ffn <= 1 (default 1).")
@click.option(
    "--target-speedup",
    type=float,
    help="Choose --keep/--keep-ffn to run X times faster than the original int8 ONNX (batch 1, measured here).",
)
@click.option("--latency-budget", type=float, help="Choose --keep/--keep-ffn to run within MS milliseconds (batch 1).")
@click.option("--data", type=click.Path(path_type=str), help="Labelled evaluation set (TSV, CSV, JSONL).")
@click.option("--calib", type=click.Path(path_type=str), help="Examples to score heads on (default: task train split).")
@click.option("--out", type=click.Path(path_type=str), help="Output folder (default: next to the model).")
@data_options
@scoring_options
@click.option("--threads", default=1, show_default=True, help="Threads for latency measurement.")
@click.option("--trees", default=5, show_default=True, help="Attribution trees for the first N evaluation examples.")
@click.option("--latency-examples", default=200, show_default=True, help="Examples timed at batch 1.")
@click.option(
    "--select-examples",
    default=1000,
    show_default=True,
    help="Calibration examples (another seed) that choose the int8 recipe and the target's candidate.",
)
@recovery_options
@click.option("--compare", is_flag=True, help="Also rank by attention, random and taylor; report their accuracy.")
@click.option("--force", is_flag=True, help="Replace an existing output folder written by attr-compress.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run_command(
    model: str,
    data: str | None,
    calib: str | None,
    columns: dict[str, str | None],
    quiet: bool,
    keep: float | None,
    keep_ffn: float | None,
    **options: Any,
) -> None:
    """Score, prune, recover, export, evaluate and report (the whole pipeline)."""
    from compressor.pipeline import DataOptions, PipelineOptions, run_pipeline

    has_target = options["target_speedup"] is not None or options["latency_budget"] is not None
    if has_target and (keep is not None or keep_ffn is not None):
        raise InputError("a latency target chooses --keep and --keep-ffn; pass either them or the target, not both")
    if not has_target and keep is None:
        raise InputError("pass --keep (fraction of heads kept) or a latency target (--target-speedup/--latency-budget)")
    data_source = DataOptions(data, calib, **columns)
    report = run_pipeline(
        PipelineOptions(
            model=model,
            keep=1.0 if keep is None else keep,
            keep_ffn=1.0 if keep_ffn is None else keep_ffn,
            data=data_source,
            progress=not quiet,
            **options,
        ),
        log=say if not quiet else lambda message: None,
    )
    click.echo(summary(report))


def summary(report: dict[str, Any]) -> str:
    """The one-screen summary printed at the end of a run."""
    from evaluation.report import results_table

    heads, ffn = report["heads"], report["ffn"]
    lines = [
        "",
        f"attr-compress: kept {heads['kept']}/{heads['total']} heads; per layer {heads['kept_per_layer']}",
        f"FFN neurons kept per layer {ffn['kept_per_layer']} (keep-ffn {ffn['keep_ffn']:g}); "
        f"int8 recipe: {report['export']['pruned']['recipe']['name']}",
        *results_table(report["results"]),
        "",
        "pruned int8 vs original: {:.2f}x faster than PyTorch fp32, {:.2f}x faster than int8 ONNX (batch-1 p50)".format(
            report["ratios"]["speedup_p50_pruned_int8_vs_original_pytorch_fp32"],
            report["ratios"]["speedup_p50_pruned_int8_vs_original_int8"],
        ),
        *(
            [f"latency target ({report['target_search']['target']}): NOT met in the final measurement"]
            if report.get("target_search") and not report["target_search"]["met_in_final_measurement"]
            else []
        ),
        "stages: " + ", ".join(f"{t['stage'].split(' (')[0]} {t['seconds']:.0f}s" for t in report["timings"]),
        f"wrote {report['out']}  (report.md, onnx/, pruned/, trees/)",
    ]
    return "\n".join(lines)


@cli.command("score")
@model_argument
@click.option("--calib", type=click.Path(path_type=str), required=True, help="Labelled examples to score heads on.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for importance.json/.png.")
@data_options
@scoring_options
@click.option("--ffn", is_flag=True, help="Also score FFN neurons (ffn_importance.json), for --keep-ffn.")
@click.option("--force", is_flag=True, help="Replace an existing importance.json.")
def score_command(
    model: str,
    calib: str,
    out: str,
    columns: dict[str, str | None],
    method: str,
    examples: int,
    steps: int,
    rule: str,
    seed: int,
    max_batch_tokens: int,
    device: str,
    ffn: bool,
    force: bool,
) -> None:
    """Score every head (attention attribution by default): writes importance.json and importance.png;
    with --ffn also every FFN neuron (ffn_importance.json).

    Under torchrun (WORLD_SIZE > 1) each process scores a slice of the examples; rank 0 writes.
    """
    from compressor.data import sample_labelled_data
    from compressor.distributed import is_main_process, process_group
    from compressor.modeling import check_device, load_model, to_device
    from compressor.neurons import FFN_IMPORTANCE_FILE, score_neurons
    from compressor.pipeline import check_counts, save_importance
    from compressor.pruning import check_unpruned
    from compressor.ranking import make_ranker

    check_counts(examples=examples, steps=steps, max_batch_tokens=max_batch_tokens)
    check_device(device)
    folder = Path(out)
    refuse_overwrite(folder / "importance.json", force)
    loaded = load_model(model)
    check_unpruned(loaded.model)
    data, _ = sample_labelled_data(calib, loaded.label2id, examples, seed, **columns)
    with process_group():
        to_device(loaded, device)
        main = is_main_process()
        scoring = {"steps": steps, "rule": rule, "seed": seed, "max_batch_tokens": max_batch_tokens, "progress": main}
        importance = make_ranker(method, loaded, **scoring).rank(data)
        neurons = score_neurons(loaded, data, **scoring) if ffn else None
        if main:
            folder.mkdir(parents=True, exist_ok=True)
            save_importance(importance, folder)
            if neurons is not None:
                neurons.save(folder / FFN_IMPORTANCE_FILE)
            click.echo(f"wrote {folder / 'importance.json'} and importance.png ({len(data)} examples)")


@cli.command("prune")
@model_argument
@click.option(
    "--importance",
    "importance_path",
    type=click.Path(path_type=str),
    required=True,
    help="importance.json from `attr-compress score`.",
)
@click.option("--keep", type=float, required=True, help="Fraction of attention heads kept, 0 < keep <= 1.")
@click.option(
    "--ffn-importance", "ffn_path", type=click.Path(path_type=str), help="ffn_importance.json (`score --ffn`)."
)
@click.option("--keep-ffn", type=float, default=1.0, show_default=True, help="Fraction of FFN neurons kept.")
@click.option("--calib", type=click.Path(path_type=str), help="Calibration file that --recover fits on.")
@recovery_options
@click.option("--seed", default=0, show_default=True, help="Seed of the calibration sample.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for the pruned model.")
@data_options
@click.option("--force", is_flag=True, help="Replace an existing pruned folder written by attr-compress.")
def prune_command(
    model: str,
    importance_path: str,
    keep: float,
    ffn_path: str | None,
    keep_ffn: float,
    calib: str | None,
    recover: str,
    fit_examples: int,
    distill_steps: int,
    seed: int,
    out: str,
    columns: dict[str, str | None],
    force: bool,
) -> None:
    """Remove the least important heads (and FFN neurons), optionally recover, and save a Hugging Face
    folder (plus prune_plan.json and recovery.json)."""
    import copy

    from compressor.importance import HeadImportance
    from compressor.modeling import load_model
    from compressor.neurons import NeuronImportance
    from compressor.pipeline import check_counts
    from compressor.pruning import check_keep, ffn_widths, heads_per_layer, plan_pruning, prune_model, save_pruned

    check_keep(keep)
    check_counts(fit_examples=fit_examples, distill_steps=distill_steps)
    if recover != "none" and calib is None:
        raise InputError(f"--recover {recover} fits on calibration data; pass --calib FILE")
    importance = HeadImportance.load(importance_path)
    neurons = NeuronImportance.load(ffn_path) if ffn_path else None
    plan = plan_pruning(
        importance.scores, keep, importance.order, ffn_scores=neurons and neurons.scores, keep_ffn=keep_ffn
    )
    folder = Path(out)
    refuse_overwrite(folder / "config.json", force)
    loaded = load_model(model)
    pruned = prune_model(copy.deepcopy(loaded.model), plan)
    if recover != "none":
        from compressor.data import sample_labelled_data
        from compressor.recovery import encode_for_fit
        from compressor.recovery import recover as run_recovery

        fit, _ = sample_labelled_data(calib, loaded.label2id, fit_examples, seed + 2, **columns)
        batches = encode_for_fit(loaded, fit.examples)
        record = run_recovery(
            recover,
            loaded.model,
            pruned,
            batches,
            examples=len(fit),
            distill_steps=distill_steps,
            seed=seed,
            progress=True,
            log=say,
        )
    save_pruned(pruned, loaded.tokenizer, folder)
    plan.save(folder / "prune_plan.json")
    if recover != "none":
        record.save(folder / "recovery.json")
    click.echo(
        f"wrote {folder}: kept {plan.kept_heads}/{plan.total_heads} heads, per layer {heads_per_layer(pruned)}; "
        f"FFN neurons per layer {ffn_widths(pruned)}"
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
    help="Choose the int8 recipe by measurement on the first 300 --data rows (else Optimum's recipe).",
)
@click.option("--threads", default=1, show_default=True, help="Threads the int8 recipes are timed with.")
@click.option("--force", is_flag=True, help="Replace an existing ONNX folder.")
def export_command(
    model: str,
    data: str,
    out: str,
    columns: dict[str, str | None],
    tune: bool,
    threads: int,
    force: bool,
) -> None:
    """Export to ONNX (fp32 and int8, with runtime.json) and check parity with PyTorch."""
    from compressor.data import load_labelled_data
    from compressor.modeling import load_model
    from compressor.pipeline import check_counts
    from evaluation.encoded import encode_data, parity_batches
    from exporters.recipes import OPTIMUM_BASELINE
    from exporters.runtime import TorchRunner
    from exporters.tuning import tune_recipe
    from exporters.verified import export_verified

    check_counts(threads=threads)
    folder = Path(out)
    refuse_overwrite(folder / "model.onnx", force)
    loaded = load_model(model)
    rows = load_labelled_data(data, loaded.label2id, **columns).head(300)
    encoded = encode_data(loaded, rows, singles=100)
    reference = TorchRunner("pytorch", loaded.model)
    batches = parity_batches(encoded)
    recipe = OPTIMUM_BASELINE
    if tune:
        tuning = tune_recipe(
            loaded.model,
            loaded.tokenizer,
            reference,
            batches,
            encoded,
            threads=threads,
            num_labels=loaded.config.num_labels,
            log=say,
        )
        recipe = tuning.recipe
        say(f"int8 recipe: {recipe.name} ({tuning.reason})")
    record = export_verified(
        loaded.model,
        loaded.tokenizer,
        folder,
        reference,
        batches,
        recipe=recipe,
        source=str(model),
        thread_singles=encoded.singles,
        log=say,
    )
    if tune:
        tuning.save(folder / "graph_tuning.json")
    worst = max(check["max_abs_diff"] for check in record.parity if check["passed"])
    click.echo(f"wrote {folder}: parity max |diff| {worst:.2e}, int8 agreement {record.int8_agreement:.1%}")


@cli.command("evaluate")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--data", type=click.Path(path_type=str), required=True, help="Labelled evaluation set.")
@click.option("--out", type=click.Path(path_type=str), help="Write the results as JSON here.")
@data_options
@click.option("--threads", default=1, show_default=True, help="Threads for latency measurement.")
@click.option("--latency-examples", default=200, show_default=True, help="Examples timed at batch 1.")
def evaluate_command(
    models: tuple[str, ...],
    data: str,
    out: str | None,
    columns: dict[str, str | None],
    threads: int,
    latency_examples: int,
) -> None:
    """Accuracy and latency of model folders side by side (Hugging Face folders and/or ONNX folders)."""
    from compressor.artifacts import read_json, write_json
    from compressor.data import load_labelled_data
    from compressor.modeling import load_model
    from compressor.pipeline import check_counts
    from evaluation.encoded import encode_data
    from evaluation.measure import evaluate_runners
    from evaluation.report import results_table
    from exporters.onnx_export import ONNX_FP32, ONNX_INT8
    from exporters.runtime import RUNTIME_FILE, OnnxRunner, TorchRunner

    check_counts(threads=threads, latency_examples=latency_examples)
    runners: list[Any] = []
    tokenizer_source = None
    for model in models:
        folder = Path(model)
        onnx_files = [name for name in (ONNX_FP32, ONNX_INT8) if (folder / name).is_file()]
        if onnx_files:
            settings = read_json(folder / RUNTIME_FILE, "re-export") if (folder / RUNTIME_FILE).is_file() else {}
            runtimes = {ONNX_FP32: "onnx-fp32", ONNX_INT8: "onnx-int8"}
            runners += [
                OnnxRunner(
                    f"{folder.name}/{runtimes[name]}",
                    folder / name,
                    threads=threads,
                    disabled_optimizers=settings.get("disabled_optimizers", []) if name == ONNX_INT8 else (),
                )
                for name in onnx_files
            ]
        else:
            loaded = load_model(folder, attn_implementation="sdpa")
            tokenizer_source = tokenizer_source or loaded
            runners.append(TorchRunner(f"{folder.name}/pytorch-fp32", loaded.model))
    if tokenizer_source is None:
        raise InputError("evaluate needs at least one Hugging Face model folder (for its tokenizer and labels)")
    rows = load_labelled_data(data, tokenizer_source.label2id, **columns)
    encoded = encode_data(tokenizer_source, rows, singles=latency_examples)
    results, _ = evaluate_runners(
        runners, encoded, threads=threads, num_labels=tokenizer_source.config.num_labels, progress=True
    )
    if out:
        write_json({"kind": "evaluation", "schema": 1, "data": data, "results": results}, out)
    click.echo("\n".join(results_table(results, reference=runners[0].name)))


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
    methods: tuple[str, ...],
    keeps: tuple[float, ...],
    latency_method: str,
    examples: int,
    steps: int,
    seed: int,
    threads: int,
    latency_examples: int,
    force: bool,
    quiet: bool,
) -> None:
    """Accuracy of every ranking method at every keep level, and the accuracy/latency frontier."""
    from compressor.pipeline import run_sweep_command

    latency = None if latency_method == "none" else latency_method
    if latency is not None and latency not in methods:
        raise InputError(f"--latency-method {latency} is not among --methods {','.join(methods)}; add it or pass none")
    sweep = run_sweep_command(
        model,
        data,
        calib,
        Path(out),
        columns,
        methods=methods,
        keeps=keeps,
        latency_method=latency,
        examples=examples,
        steps=steps,
        seed=seed,
        threads=threads,
        latency_examples=latency_examples,
        force=force,
        progress=not quiet,
        log=(lambda message: None) if quiet else say,
    )
    from evaluation.sweep import sweep_markdown

    click.echo(sweep_markdown(sweep))
    click.echo(f"wrote {out} (sweep.json, sweep.md, sweep_accuracy.png, sweep_frontier.png)")


@cli.command("tree")
@model_argument
@click.option("--data", type=click.Path(path_type=str), required=True, help="Labelled data; trees for its first rows.")
@click.option("--out", type=click.Path(path_type=str), required=True, help="Folder for tree JSON and SVG files.")
@data_options
@click.option("--trees", default=5, show_default=True, help="Number of examples.")
@click.option("--steps", default=20, show_default=True, help="Integration steps m per layer.")
@click.option("--force", is_flag=True, help="Write into an existing folder.")
def tree_command(
    model: str,
    data: str,
    out: str,
    columns: dict[str, str | None],
    trees: int,
    steps: int,
    force: bool,
) -> None:
    """Attribution trees (the paper's Algorithm 1) for the first examples of a data file."""
    from compressor.data import load_labelled_data
    from compressor.modeling import load_model
    from compressor.pipeline import check_counts, write_trees

    check_counts(trees=trees, steps=steps)
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()) and not force:
        raise InputError(f"'{folder}' already exists and is not empty; pass --force or choose another --out")
    loaded = load_model(model)
    rows = load_labelled_data(data, loaded.label2id, **columns)
    names = write_trees(loaded, rows, trees, folder, steps=steps, rule="left", progress=True)
    click.echo(f"wrote {len(names)} trees to {folder}")


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"'{path}' already exists; pass --force to replace it or choose another --out")


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
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except AttrCompressError as err:
        if debug:
            traceback.print_exc()
        say(f"error: {err}")
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
