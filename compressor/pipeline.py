"""The whole job, score -> plan -> prune -> export -> evaluate -> trees -> report, and each stage alone."""

from __future__ import annotations

import copy
import functools
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from compressor.artifacts import library_versions, write_json
from compressor.data import LabelledData, find_glue_split, load_labelled_data, sample_labelled_data
from compressor.errors import InputError
from compressor.importance import DEFAULT_MAX_BATCH_TOKENS, HeadImportance, predicted_attribution
from compressor.modeling import (
    LoadedModel,
    check_device,
    count_truncated,
    load_model,
    on_device,
    read_model_config,
)
from compressor.neurons import FFN_IMPORTANCE_FILE, NeuronImportance, score_neurons
from compressor.outputs import REPORT_FILE, REPORT_KIND, staged_folder
from compressor.plots import plot_head_importance
from compressor.pruning import (
    PrunePlan,
    check_keep,
    check_unpruned,
    count_parameters,
    ffn_widths,
    heads_per_layer,
    plan_pruning,
    prune_model,
    save_pruned,
)
from compressor.ranking import make_ranker
from compressor.recovery import RECOVERY_METHODS, encode_for_fit, recover
from compressor.trees import build_tree, render_tree_svg
from evaluation.target import LatencyTarget

Log = Callable[[str], None]

GLUE_DATASETS = {"sst2": "sst2", "mrpc": "mrpc", "cola": "cola", "qnli": "qnli", "qqp": "qqp", "rte": "rte"}


@dataclass(frozen=True)
class DataOptions:
    """Where the labelled data comes from and which columns hold what."""

    data: str | None = None
    calib: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None


@dataclass(frozen=True)
class PipelineOptions:
    model: str
    keep: float
    keep_ffn: float = 1.0
    recover: str = "none"
    target_speedup: float | None = None
    latency_budget: float | None = None
    out: str | None = None
    data: DataOptions = field(default_factory=DataOptions)
    method: str = "attattr"
    compare: bool = False
    device: str = "cpu"
    examples: int = 200
    steps: int = 20
    rule: str = "left"
    seed: int = 0
    threads: int = 1
    trees: int = 5
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    latency_examples: int = 200
    select_examples: int = 1000
    fit_examples: int = 1000
    distill_steps: int = 200
    force: bool = False
    progress: bool = True

    @property
    def target(self) -> LatencyTarget | None:
        if self.target_speedup is None and self.latency_budget is None:
            return None
        return LatencyTarget(speedup=self.target_speedup, budget_ms=self.latency_budget)


def check_counts(**values: int) -> None:
    """Numeric options that must be at least one (examples, steps, threads, ...)."""
    for name, value in values.items():
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def default_out(model: str, label: str) -> Path:
    return Path(model).resolve().parent / f"{Path(model).resolve().name}-attr-{label}"


def _datasets_split(task: str, split: str) -> Path | None:
    """The GLUE split through the ``datasets`` library, when installed and reachable, as a JSON Lines file."""
    name = GLUE_DATASETS.get("".join(ch for ch in task.lower() if ch.isalnum()))
    if name is None:
        return None
    try:
        import datasets
    except ImportError:
        return None
    try:
        rows = datasets.load_dataset("glue", name, split="validation" if split == "dev" else "train")
    except Exception:  # noqa: BLE001 - any failure here (offline, no such config) means "not available"
        return None
    path = Path(tempfile.mkdtemp(prefix="attr-compress-glue-")) / f"{name}-{split}.jsonl"
    rows.to_json(str(path), lines=True)
    return path


@dataclass(frozen=True)
class ResolvedData:
    """Evaluation data, and three samples of the calibration file: scoring (``calibration``), choosing
    recipes and targets (``selection``, another seed) and fitting the recovery (``fit``, a third seed).
    Without a calibration file all three come from the head of the evaluation data (``shared``)."""

    evaluation: LabelledData
    calibration: LabelledData
    calibration_rows: int
    shared: bool
    source: str
    selection: LabelledData
    fit: LabelledData


def resolve_data(
    config: dict[str, Any],
    options: DataOptions,
    label2id: dict[str, int],
    *,
    examples: int,
    seed: int,
    select_examples: int = 1000,
    fit_examples: int = 1000,
) -> ResolvedData:
    """Evaluation and calibration sets: the options, else the model's GLUE task from $GLUE_DIR or ``datasets``."""
    task = config.get("finetuning_task")
    glue_dir = os.environ.get("GLUE_DIR")
    data_path, calib_path, source = options.data, options.calib, "options"
    if data_path is None:
        if not task:
            raise InputError("no --data given and the model's config names no finetuning_task; pass --data FILE")
        found = find_glue_split(task, "dev", glue_dir) or _datasets_split(task, "dev")
        if found is None:
            where = f"$GLUE_DIR ({glue_dir})" if glue_dir else "$GLUE_DIR (not set)"
            raise InputError(f"no dev split for task '{task}' in {where} or via datasets; pass --data FILE")
        data_path, source = str(found), f"task '{task}'"
    if calib_path is None and task:
        found = find_glue_split(task, "train", glue_dir) or (
            _datasets_split(task, "train") if options.data is None else None
        )
        calib_path = str(found) if found else None
    columns = {
        "text_column": options.text_column,
        "text_pair_column": options.text_pair_column,
        "label_column": options.label_column,
    }
    evaluation = load_labelled_data(data_path, label2id, **columns)
    if calib_path is None or Path(calib_path).resolve() == Path(data_path).resolve():
        head = evaluation.head
        return ResolvedData(
            evaluation, head(examples), len(evaluation), True, source, head(select_examples), head(fit_examples)
        )
    # each sample streams the file once: memory bounded by the sample, not the file
    sample, rows = sample_labelled_data(calib_path, label2id, examples, seed, **columns)
    selection, _ = sample_labelled_data(calib_path, label2id, select_examples, seed + 1, **columns)
    fit, _ = sample_labelled_data(calib_path, label2id, fit_examples, seed + 2, **columns)
    return ResolvedData(evaluation, sample, rows, False, source, selection, fit)


class StageTimer:
    """Wall time of each named stage, in the order they ran."""

    def __init__(self, log: Log) -> None:
        self.seconds: dict[str, float] = {}  # insertion order is the run order
        self.log = log

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"[{len(self.seconds) + 1}] {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def save_importance(importance: HeadImportance, folder: Path, plan: PrunePlan | None = None) -> None:
    importance.save(folder / "importance.json")
    plot_head_importance(
        importance.scores,
        folder / "importance.png",
        title=f"Head importance ({importance.method}, {importance.examples} examples, m={importance.steps})",
        pruned=None if plan is None else [[not kept for kept in row] for row in plan.head_mask],
    )


def write_trees(
    loaded: LoadedModel, data: LabelledData, count: int, folder: Path, *, steps: int, rule: str, progress: bool = False
) -> list[str]:
    """The paper's attribution trees for the first ``count`` examples, F = predicted-class probability."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    id2label = loaded.config.id2label
    chosen = data.examples[:count]
    for index, example in enumerate(tqdm(chosen, desc="trees", unit="ex", disable=not progress)):
        result = predicted_attribution(loaded, example, steps=steps, rule=rule)
        meta = {
            "row": example.row,
            "text": example.text,
            "text_pair": example.text_pair,
            "gold": id2label.get(example.label, str(example.label)),
            "predicted": id2label.get(result["predicted"], str(result["predicted"])),
            "probability": result["probability"],
            "steps": steps,
            "title": f"row {example.row}: predicted {id2label.get(result['predicted'])} "
            f"(p={result['probability']:.3f}), gold {id2label.get(example.label)}",
        }
        tree = build_tree(result["attributions"], result["tokens"], meta=meta)
        name = f"tree_{index + 1:03d}"
        tree.save(folder / f"{name}.json")
        render_tree_svg(tree, folder / f"{name}.svg")
        names.append(name)
    return names


def run_pipeline(options: PipelineOptions, log: Log = lambda message: None) -> dict[str, Any]:
    """Run every stage into a staged folder that is renamed to ``options.out`` only when all checks passed."""
    check_keep(options.keep)
    check_keep(options.keep_ffn, "--keep-ffn", "FFN neurons")
    check_counts(
        examples=options.examples,
        steps=options.steps,
        threads=options.threads,
        latency_examples=options.latency_examples,
        max_batch_tokens=options.max_batch_tokens,
        select_examples=options.select_examples,
        fit_examples=options.fit_examples,
        distill_steps=options.distill_steps,
    )
    if options.recover not in RECOVERY_METHODS:
        raise InputError(f"--recover must be one of {', '.join(RECOVERY_METHODS)}, got {options.recover!r}")
    _ = options.target  # validates the target options before any work
    if options.trees < 0:
        raise InputError(f"--trees must be 0 or more, got {options.trees}")
    check_device(options.device)
    config = read_model_config(options.model)
    out = (
        Path(options.out)
        if options.out
        else default_out(options.model, "target" if options.target else f"keep{options.keep:g}-ffn{options.keep_ffn:g}")
    )
    timer = StageTimer(log)
    with staged_folder(out, force=options.force) as staging:
        with timer.stage("load model and data"):
            loaded = load_model(options.model)
            check_unpruned(loaded.model)
            resolved = resolve_data(
                config,
                options.data,
                loaded.label2id,
                examples=options.examples,
                seed=options.seed,
                select_examples=options.select_examples,
                fit_examples=options.fit_examples,
            )
        report = _run_stages(options, loaded, resolved, staging, timer, log)
        report["out"] = str(out)
        write_json(report, staging / REPORT_FILE)
        from evaluation.report import render_markdown

        (staging / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report


def _run_stages(
    options: PipelineOptions, loaded: LoadedModel, resolved: ResolvedData, staging: Path, timer: StageTimer, log: Log
) -> dict[str, Any]:
    from evaluation.encoded import encode_data, parity_batches
    from evaluation.measure import evaluate_runners
    from evaluation.target import search_target
    from exporters.onnx_export import ONNX_FP32, ONNX_INT8
    from exporters.recipes import Recipe
    from exporters.runtime import OnnxRunner, TorchRunner
    from exporters.tuning import tune_recipe
    from exporters.verified import export_verified

    calibration = resolved.calibration
    target = options.target
    scoring = {
        "steps": options.steps,
        "rule": options.rule,
        "seed": options.seed,
        "max_batch_tokens": options.max_batch_tokens,
        "progress": options.progress,
    }
    stage = f"score heads with {options.method} ({len(calibration)} examples x {options.steps} steps)"
    with timer.stage(stage), on_device(loaded, options.device):
        importance = make_ranker(options.method, loaded, **scoring).rank(calibration)
    neurons: NeuronImportance | None = None
    if options.keep_ffn < 1 or target is not None:
        stage = f"score FFN neurons ({len(calibration)} examples x {options.steps} steps)"
        with timer.stage(stage), on_device(loaded, options.device):
            neurons = score_neurons(loaded, calibration, **scoring)
            neurons.save(staging / FFN_IMPORTANCE_FILE)
    encoded = encode_data(loaded, resolved.evaluation, singles=options.latency_examples)
    batches = parity_batches(encoded)
    # choices are scored on calibration labels (selection) but timed on the inputs the model will serve
    # (the evaluation texts: latency depends on their lengths, not their labels)
    selection = replace(encode_data(loaded, resolved.selection, singles=0), singles=encoded.singles)
    fit_batches = []  # tokenised only when a recovery will fit on them
    if options.recover != "none":
        fit_batches = encode_for_fit(loaded, resolved.fit.examples)
    num_labels = loaded.config.num_labels
    keep, keep_ffn = options.keep, options.keep_ffn

    def tune(model: Any, name: str) -> Any:
        return tune_recipe(
            model,
            loaded.tokenizer,
            TorchRunner(name, model),
            batches,
            selection,
            threads=options.threads,
            num_labels=num_labels,
            log=log,
        )

    baseline_dir = staging / "_original_onnx"

    @functools.cache
    def original_baseline() -> Any:
        """The original's int8 graph by Optimum's recipe (the reference of every ratio), exported once."""
        return export_verified(
            loaded.model,
            loaded.tokenizer,
            baseline_dir,
            TorchRunner("original", loaded.model),
            batches,
            threads=options.threads,
            source="original",
            log=log,
        )

    search = None
    if target is not None:
        with timer.stage(f"search keep / keep-ffn for the target: {target.description}"):
            original_baseline()
            original_tuning = tune(loaded.model, "original")
            search = search_target(
                loaded,
                importance,
                neurons,
                target,
                original_tuning.recipe,
                selection,
                fit_batches,
                baseline_graph=baseline_dir / ONNX_INT8,
                recovery=options.recover,
                fit_examples=len(resolved.fit),
                distill_steps=options.distill_steps,
                seed=options.seed,
                threads=options.threads,
                log=log,
            )
            search.save(staging / "target_search.json")
            keep, keep_ffn = search.keep, search.keep_ffn
    with timer.stage("plan, prune and recover"):
        plan = plan_pruning(
            importance.scores,
            keep,
            importance.order,
            ffn_scores=None if neurons is None else neurons.scores,
            keep_ffn=keep_ffn,
        )
        plan.save(staging / "prune_plan.json")
        save_importance(importance, staging, plan)
        original_parameters = count_parameters(loaded.model)
        pruned_model = prune_model(copy.deepcopy(loaded.model), plan)
        recovery = recover(
            options.recover,
            loaded.model,
            pruned_model,
            fit_batches,
            examples=len(resolved.fit),
            distill_steps=options.distill_steps,
            seed=options.seed,
            progress=options.progress,
            log=log,
        )
        if recovery is not None:
            recovery.save(staging / "recovery.json")
        save_pruned(pruned_model, loaded.tokenizer, staging / "pruned")
        # What users get from the folder: timed with transformers' default (SDPA) attention like the original
        # below, exported with eager attention like every other graph (the two trace to different graphs).
        pruned = load_model(staging / "pruned", attn_implementation="sdpa").model
        pruned_eager = load_model(staging / "pruned").model
    with timer.stage("choose the int8 recipe by measurement, export, parity"):
        if search is None:
            tuning, tuned_on = tune(pruned_eager, "pruned"), "pruned"
        else:  # the target's candidates were measured and judged with recipes tuned on the original
            tuning, tuned_on = original_tuning, "original"
        tuning.save(staging / "graph_tuning.json")
        recipe = tuning.recipe if search is None else Recipe.from_dict(search.recipe)
        pruned_record = export_verified(
            pruned_eager,
            loaded.tokenizer,
            staging / "onnx",
            TorchRunner("pruned", pruned_eager),
            batches,
            recipe=recipe,
            source="pruned",
            thread_singles=encoded.singles,
            log=log,
        )
        original_record = original_baseline()
        tuned_dir = staging / "_original_onnx_tuned"
        export_verified(
            loaded.model,
            loaded.tokenizer,
            tuned_dir,
            TorchRunner("original", loaded.model),
            batches,
            recipe=recipe,
            threads=options.threads,
            source="original",
            log=log,
        )
    with timer.stage("evaluate accuracy and latency"):
        # Timed with transformers' default SDPA attention, as users run it (scoring needs eager).
        original_sdpa = load_model(options.model, attn_implementation="sdpa").model
        threads = options.threads
        disabled = recipe.disabled_optimizers
        runners = [
            TorchRunner("original/pytorch-fp32", original_sdpa),
            OnnxRunner("original/onnx-fp32", baseline_dir / ONNX_FP32, threads=threads),
            OnnxRunner("original/onnx-int8", baseline_dir / ONNX_INT8, threads=threads),
            OnnxRunner(
                "original/onnx-int8-tuned", tuned_dir / ONNX_INT8, threads=threads, disabled_optimizers=disabled
            ),
            TorchRunner("pruned/pytorch-fp32", pruned),
            OnnxRunner("pruned/onnx-fp32", staging / "onnx" / ONNX_FP32, threads=threads),
            OnnxRunner(
                "pruned/onnx-int8-tuned", staging / "onnx" / ONNX_INT8, threads=threads, disabled_optimizers=disabled
            ),
        ]
        results, predictions = evaluate_runners(
            runners, encoded, threads=threads, num_labels=num_labels, progress=options.progress
        )
        del runners  # close the original's onnxruntime sessions before deleting their files
        shutil.rmtree(baseline_dir)
        shutil.rmtree(tuned_dir)
    why: dict[str, Any] = {"pruned_per_layer": [len(row) - sum(row) for row in plan.head_mask]}
    if options.compare:
        with timer.stage("compare with other rankings"):
            from evaluation.sweep import SweepOptions, why_these_heads

            compare = SweepOptions(
                methods=("attention", "random", "taylor"),
                random_seeds=(0, 1, 2),
                steps=options.steps,
                rule=options.rule,
                seed=options.seed,
                max_batch_tokens=options.max_batch_tokens,
                progress=options.progress,
            )
            why["comparison"] = why_these_heads(loaded, calibration, encoded, importance, keep, compare, log)
    with timer.stage(f"attribution trees ({min(options.trees, len(resolved.evaluation))} examples)"):
        trees = write_trees(
            loaded,
            resolved.evaluation,
            options.trees,
            staging / "trees",
            steps=options.steps,
            rule=options.rule,
            progress=options.progress,
        )

    def ratio(numerator: str, denominator: str, key: str) -> float:
        return results[numerator][key] / results[denominator][key]

    return {
        "kind": REPORT_KIND,
        "schema": 1,
        "model": loaded.path,
        "options": {
            **{key: value for key, value in asdict(options).items() if key not in ("data", "progress")},
            "keep": keep,  # the values used: a latency target chooses them
            "keep_ffn": keep_ffn,
        },
        "data": {
            "evaluation": resolved.evaluation.path,
            "evaluation_rows": len(resolved.evaluation),
            "evaluation_truncated": encoded.truncated,
            "calibration": calibration.path,
            "calibration_rows_in_file": resolved.calibration_rows,
            "calibration_examples": len(calibration),
            "calibration_truncated": count_truncated(loaded, calibration.examples),
            "calibration_shared_with_evaluation": resolved.shared,
            "source": resolved.source,
            "columns": {
                "text": resolved.evaluation.text_column,
                "text_pair": resolved.evaluation.text_pair_column,
                "label": resolved.evaluation.label_column,
            },
        },
        "importance": {key: value for key, value in importance.to_dict().items() if key != "scores"},
        "heads": {
            "keep": keep,
            "total": plan.total_heads,
            "kept": plan.kept_heads,
            "kept_per_layer": heads_per_layer(pruned),
            "pruned": {str(layer): heads for layer, heads in plan.pruned_heads.items()},
            "empty_layers": [layer for layer, count in enumerate(heads_per_layer(pruned)) if count == 0],
        },
        "why": why,
        "ffn": {
            "keep_ffn": keep_ffn,
            "total": loaded.config.intermediate_size * loaded.config.num_hidden_layers,
            "kept_per_layer": ffn_widths(pruned),
            "importance": None
            if neurons is None
            else {key: value for key, value in neurons.to_dict().items() if key != "scores"},
        },
        "recovery": None if recovery is None else recovery.to_dict(),
        "target_search": None
        if search is None
        else {
            **search.to_dict(),
            # the final, side-by-side measurement above is what counts
            "met_in_final_measurement": target.met(
                results["pruned/onnx-int8-tuned"]["latency_p50_ms"],
                ratio("original/onnx-int8", "pruned/onnx-int8-tuned", "latency_p50_ms"),
            ),
        },
        "graph_tuning": {**tuning.to_dict(), "tuned_on": tuned_on},
        "parameters": {"original": original_parameters, "pruned": count_parameters(pruned)},
        "export": {"pruned": pruned_record.to_dict(), "original": original_record.to_dict()},
        "results": results,
        "ratios": {
            "speedup_p50_pruned_int8_vs_original_pytorch_fp32": ratio(
                "original/pytorch-fp32", "pruned/onnx-int8-tuned", "latency_p50_ms"
            ),
            "speedup_p50_pruned_int8_vs_original_int8": ratio(
                "original/onnx-int8", "pruned/onnx-int8-tuned", "latency_p50_ms"
            ),
            "throughput_pruned_int8_vs_original_pytorch_fp32": ratio(
                "pruned/onnx-int8-tuned", "original/pytorch-fp32", "throughput_per_s"
            ),
            "throughput_pruned_int8_vs_original_int8": ratio(
                "pruned/onnx-int8-tuned", "original/onnx-int8", "throughput_per_s"
            ),
        },
        "int8_agreement_with_fp32": {
            model: float((predictions[int8] == predictions[f"{model}/onnx-fp32"]).mean())
            for model, int8 in (("original", "original/onnx-int8"), ("pruned", "pruned/onnx-int8-tuned"))
        },
        "trees": trees,
        "timings": [{"stage": name, "seconds": seconds} for name, seconds in timer.seconds.items()],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": options.threads,
        },
        "weights": {
            "file": loaded.weights_file,
            "how": loaded.weights_note,
            "stored_dtype": loaded.stored_dtype,
            "loaded_as": "float32",
        },
        "versions": library_versions(),
    }


def run_sweep_command(
    model: str,
    data: str,
    calib: str,
    out: Path,
    columns: dict[str, str | None],
    *,
    examples: int,
    force: bool,
    log: Log,
    **options: Any,
) -> dict[str, Any]:
    """`attr-compress sweep`: load, score every method once, measure every keep level, write the outputs."""
    from evaluation.sweep import SweepOptions, plot_sweep_accuracy, plot_sweep_frontier, run_sweep, sweep_markdown

    check_counts(
        examples=examples,
        steps=options["steps"],
        threads=options["threads"],
        latency_examples=options["latency_examples"],
    )
    read_model_config(model)
    with staged_folder(out, force=force) as staging:
        loaded = load_model(model)
        evaluation = load_labelled_data(data, loaded.label2id, **columns)
        calibration, _ = sample_labelled_data(calib, loaded.label2id, examples, options["seed"], **columns)
        sweep = run_sweep(loaded, evaluation, calibration, SweepOptions(**options), log)
        write_json(sweep, staging / "sweep.json")
        (staging / "sweep.md").write_text(sweep_markdown(sweep), encoding="utf-8")
        plot_sweep_accuracy(sweep, staging / "sweep_accuracy.png")
        if sweep["latency"]:
            plot_sweep_frontier(sweep, staging / "sweep_frontier.png")
        write_json(
            {"kind": REPORT_KIND, "schema": 1, "contents": "sweep", "sweep": "sweep.json"}, staging / REPORT_FILE
        )
    return sweep
