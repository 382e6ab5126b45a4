"""The whole job as a short list of stage calls: load -> score -> (search the sizes) -> plan, prune, recover ->
export and verify -> evaluate -> compare -> explain -> report, inside one staged output folder."""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressor.allocation import plan_structure
from compressor.architectures import family_of, ffn_width
from compressor.artifacts import library_versions
from compressor.cache import StageCache, ThisMachine
from compressor.distill import TrainingText, distill
from compressor.encoded import EncodedData, encode_data, parity_batches
from compressor.errors import InputError, VerificationError, check_counts, check_finite
from compressor.explain import explain
from compressor.importance import HeadImportance
from compressor.modeling import (
    USERS_ATTENTION,
    LoadedModel,
    ModelIdentity,
    count_truncated,
    load_model,
    read_model_config,
)
from compressor.neurons import FFN_IMPORTANCE_FILE, NeuronImportance
from compressor.outputs import REPORT_FILE, staged_folder
from compressor.pruning import (
    PrunePlan,
    check_drop_layers,
    check_keep,
    check_unpruned,
    count_parameters,
    ffn_widths,
    heads_per_layer,
    model_layer_spans,
    plan_pruning,
    prune_model,
    save_pruned,
)
from compressor.recovery import RecoveryOptions, RecoveryRecord, encode_for_fit, recover
from compressor.scoring import ScoringOptions, score_heads, score_neurons
from compressor.task_data import DataOptions, ResolvedData, resolve_data
from compressor.trees import AttributionTree
from evaluation.fidelity import Judge, paired_drop
from evaluation.int8 import choose_int8
from evaluation.measure import Measurement, evaluate
from evaluation.page import render_html
from evaluation.plots import save_importance
from evaluation.report import (
    Comparison,
    DataSummary,
    FfnSummary,
    HeadsSummary,
    Machine,
    ParameterCounts,
    Report,
    SelectionCheck,
    StageTiming,
    WeightsInfo,
    WhySummary,
    render_markdown,
)
from evaluation.target import LatencyTarget, TargetSearch
from evaluation.tuning import TuningResult, tune_recipe
from exporters.onnx_export import ONNX_FP32, ONNX_INT8
from exporters.recipes import OPTIMUM_BASELINE, Recipe
from exporters.runtime import OnnxRunner, TorchRunner
from exporters.verified import ExportRecord, VerifiedGraphs, export_verified, quantize_all, ship_int8

Log = Callable[[str], None]
SENSITIVITY_EXAMPLES = 128  # calibration rows each layer's thinning is measured on
TIMED_EXAMPLES = 100  # evaluation inputs every structure's latency is timed on, side by side with the baseline
ALLOCATIONS = ("per-layer", "global")
INT8_CHOICES = ("per-matmul", "uniform")
UNTARGETED_SLOWDOWN = 0.03  # without a target, fp32 MatMuls may make the int8 graph at most 3% slower


@dataclass(frozen=True)
class PipelineOptions:
    """Every option of a run, checked when made. Pass ``keep`` (and ``keep_ffn``) or a latency target."""

    model: str
    keep: float | None = None
    keep_ffn: float | None = None
    target_speedup: float | None = None
    latency_budget: float | None = None
    drop_layers: tuple[int, ...] = ()  # whole layers removed (0-based)
    max_drop: float = 1.0
    allocation: str = "per-layer"  # with a target: heads and FFN widths allocated per layer, or "global" ranking
    int8: str = "per-matmul"  # granularity and fp32 chosen per MatMul after recovery, or "uniform"
    out: str | None = None
    data: DataOptions = field(default_factory=DataOptions)
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    recovery: RecoveryOptions = field(default_factory=RecoveryOptions)
    compare: bool = False
    threads: int = 0  # latency measured as a default onnxruntime session runs (0), or with this many threads
    trees: int = 5
    latency_examples: int = 200
    select_examples: int = 1000
    fidelity_examples: int = 4000  # unlabelled rows of --calib that judge candidates (never scored, fitted, distilled)
    force: bool = False
    cache: bool = True  # reuse stage results cached by content ($XDG_CACHE_HOME/attr-compress)
    progress: bool = True

    def __post_init__(self) -> None:
        check_finite(self)
        if self.target is not None and (self.keep is not None or self.keep_ffn is not None or self.drop_layers):
            raise InputError(
                "a latency target chooses --keep, --keep-ffn and --drop-layers; pass either them or the target"
            )
        if self.target is None and self.keep is None:
            raise InputError(
                "pass --keep (fraction of heads kept) or a latency target (--target-speedup/--latency-budget)"
            )
        if self.keep is not None:
            check_keep(self.keep)
        if self.keep_ffn is not None:
            check_keep(self.keep_ffn, "--keep-ffn", "FFN neurons")
        check_counts(
            latency_examples=self.latency_examples,
            select_examples=self.select_examples,
            fidelity_examples=self.fidelity_examples,
        )
        if self.allocation not in ALLOCATIONS or self.int8 not in INT8_CHOICES:
            raise InputError(
                f"--allocation must be one of {', '.join(ALLOCATIONS)} and --int8 one of {', '.join(INT8_CHOICES)}"
            )
        if self.trees < 0 or self.threads < 0:
            raise InputError(f"--trees and --threads must be 0 or more, got {self.trees} and {self.threads}")
        if not self.max_drop >= 0:
            raise InputError(f"--max-drop must be 0 or more accuracy points, got {self.max_drop}")

    @property
    def target(self) -> LatencyTarget | None:
        if self.target_speedup is None and self.latency_budget is None:
            return None
        return LatencyTarget(speedup=self.target_speedup, budget_ms=self.latency_budget)

    @property
    def scores_neurons(self) -> bool:
        return (self.keep_ffn or 1.0) < 1 or self.target is not None

    @property
    def out_folder(self) -> Path:
        if self.out:
            return Path(self.out)
        label = "target" if self.target else f"keep{self.keep:g}-ffn{self.keep_ffn or 1.0:g}"
        model = Path(self.model).resolve()
        return model.parent / f"{model.name}-attr-{label}"

    def record(self, sizes: Sizes) -> dict[str, Any]:
        """The options as the report lists them, with the keep values used (a target chooses them)."""
        scoring = {key: value for key, value in asdict(self.scoring).items() if key != "progress"}
        recovery = asdict(self.recovery)
        recovery["recover"] = recovery.pop("method")
        top = {
            key: value for key, value in asdict(self).items() if key not in ("data", "scoring", "recovery", "progress")
        }
        chosen = {"keep": sizes.keep, "keep_ffn": sizes.keep_ffn, "drop_layers": list(sizes.drop_layers)}
        return {**top, **scoring, **recovery, **chosen}


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

    @property
    def timings(self) -> list[StageTiming]:
        return [StageTiming(name, seconds) for name, seconds in self.seconds.items()]


@dataclass(frozen=True)
class RunInputs:
    """The run's data, tokenised once: evaluation (accuracy, latency), parity batches (real inputs at shapes the
    export never saw), selection (choices; timed on the evaluation inputs' lengths) and the recovery's fit."""

    resolved: ResolvedData
    evaluation: EncodedData
    parity: list[dict[str, np.ndarray]]
    selection: EncodedData
    fit_batches: list[dict[str, torch.Tensor]]
    training: TrainingText | None  # the calibration file, streamed by distillation (None when data is shared)
    fidelity: EncodedData  # the unlabelled slice every candidate is judged on against the original


def prepare_inputs(loaded: LoadedModel, options: PipelineOptions) -> RunInputs:
    resolved = resolve_data(
        loaded.config.to_dict(),
        options.data,
        loaded.label2id,
        examples=options.scoring.examples,
        seed=options.scoring.seed,
        select_examples=options.select_examples,
        fit_examples=options.recovery.fit_examples,
        fidelity_examples=options.fidelity_examples,
    )
    evaluation = encode_data(loaded, resolved.evaluation, singles=options.latency_examples)
    # choices are scored on calibration labels (selection) but timed on the inputs the model will serve
    selection = replace(encode_data(loaded, resolved.selection, singles=0, by_length=True), singles=evaluation.singles)
    fit = encode_for_fit(loaded, resolved.fit.examples) if options.recovery.method != "none" else []
    training = None
    if not resolved.shared:
        held_out = frozenset(example.content for example in resolved.fidelity.examples)
        path, rows = resolved.calibration.path, resolved.calibration_rows
        training = TrainingText(loaded, path, rows, options.data.columns, held_out)
    fidelity = encode_data(loaded, resolved.fidelity, singles=0, by_length=True)
    return RunInputs(resolved, evaluation, parity_batches(evaluation), selection, fit, training, fidelity)


@dataclass(frozen=True)
class Scores:
    heads: HeadImportance
    neurons: NeuronImportance | None


@dataclass(frozen=True)
class OriginalGraphs:
    """The original model exported once: its verified fp32 graphs and its int8 graph by Optimum's recipe
    (the reference of every speed-up)."""

    graphs: VerifiedGraphs
    record: ExportRecord

    @property
    def baseline_int8(self) -> Path:
        return self.graphs.folder / ONNX_INT8


@dataclass(frozen=True)
class Sizes:
    """The plan (from the options' keep fractions, or the latency target's search) and, with a target, the
    search and the recipe tuning that chose it."""

    plan: PrunePlan
    search: TargetSearch | None = None
    tuning: TuningResult | None = None

    @property
    def keep(self) -> float:
        return self.plan.keep

    @property
    def keep_ffn(self) -> float:
        return self.plan.keep_ffn

    @property
    def drop_layers(self) -> tuple[int, ...]:
        return tuple(self.plan.dropped_layers)


@dataclass(frozen=True)
class Pruned:
    plan: PrunePlan
    recovery: RecoveryRecord | None
    eager: Any  # the saved folder reloaded: eager attention, for export
    as_users_load: Any  # the same with transformers' default attention, timed as users run it


@dataclass(frozen=True)
class Shipped:
    record: ExportRecord
    tuning: TuningResult
    tuned_on: str
    original_tuned_int8: Path  # the original quantised by the shipped recipe: what the recipe alone buys

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.record.recipe)


@dataclass
class Run:
    """What every stage of one run reads: options, model, data, the staging folder, the timer and the log."""

    options: PipelineOptions
    loaded: LoadedModel
    inputs: RunInputs
    staging: Path
    timer: StageTimer
    log: Log
    cache: StageCache
    judge: Judge  # the original's outputs on the fidelity slice and the selection rows, to compare candidates with
    reused: list[str] = field(default_factory=list)  # stages whose results came from the cache

    @property
    def num_labels(self) -> int:
        return self.loaded.config.num_labels


@dataclass(frozen=True)
class Outcome:
    """What the stages of one run produced, for its report."""

    scores: Scores
    sizes: Sizes
    pruned: Pruned
    shipped: Shipped
    original: OriginalGraphs
    check: SelectionCheck
    measurement: Measurement
    comparison: dict[str, Comparison] | None
    trees: list[AttributionTree]


def compress(model: str | Path, keep: float | None = None, **options: Any) -> Report:
    """Compress a model folder in one call: ``compress("model/", keep=0.5, data="dev.tsv", out="slim/")``.

    Keyword options are PipelineOptions fields; ``data``/``calib`` (file paths) go to DataOptions, and
    ``scoring``/``recovery`` take ScoringOptions/RecoveryOptions. Returns the run's Report (figures, paths).
    """
    data = DataOptions(**{key: options.pop(key) for key in ("data", "calib", "select_data") if key in options})
    return run(PipelineOptions(model=str(model), keep=keep, data=data, **{"progress": False, **options}))


def run(options: PipelineOptions, log: Log = lambda message: None) -> Report:
    """Every stage, in a staged folder renamed to ``options.out_folder`` only when all checks passed."""
    read_model_config(options.model)
    timer = StageTimer(log)
    with staged_folder(options.out_folder, force=options.force, log=log) as staging:
        with timer.stage("load model and data"):
            loaded = load_model(options.model)
            check_unpruned(loaded.model)
            check_drop_layers(options.drop_layers, loaded.config.num_hidden_layers)
            cache = StageCache.default(options.cache, log)
            inputs = prepare_inputs(loaded, options)
            judge = Judge(TorchRunner("original", loaded.model), inputs.fidelity, inputs.selection)
            job = Run(options, loaded, inputs, staging, timer, log, cache, judge)
        scores = score(job)
        original = export_original(job)
        sizes = choose_sizes(job, scores, original)
        pruned = prune_and_recover(job, scores, sizes)
        shipped = export_pruned(job, sizes, pruned, original)
        check = check_selection(job, sizes)
        measurement = measure(job, pruned, shipped, original)
        comparison = compare(job, scores.heads, sizes.keep) if options.compare else None
        trees = explain_examples(job)
        outcome = Outcome(scores, sizes, pruned, shipped, original, check, measurement, comparison, trees)
        report = build_report(job, outcome)
        report.save(staging / REPORT_FILE)
        (staging / "report.md").write_text(render_markdown(report), encoding="utf-8")
        (staging / "report.html").write_text(render_html(report, trees), encoding="utf-8")
    return report


def score(job: Run) -> Scores:
    """Head scores (and FFN neuron scores when neurons are pruned or a target is searched)."""
    calibration, scoring = job.inputs.resolved.calibration, replace(job.options.scoring, progress=job.options.progress)
    work = f"{len(calibration)} examples x {scoring.steps} steps"
    inputs = (job.loaded, calibration, scoring)
    with job.timer.stage(f"score heads with {scoring.method} ({work})"):
        heads = cached_artifact(
            job, "head scores", inputs, HeadImportance, lambda: score_heads(job.loaded, calibration, scoring)
        )
        job.log(
            f"head ranking from {heads.examples} of {len(calibration)} examples"
            + settled(scoring, heads, len(calibration))
        )
    neurons = None
    if job.options.scores_neurons:
        with job.timer.stage(f"score FFN neurons ({work})"):
            neurons = cached_artifact(
                job, "neuron scores", inputs, NeuronImportance, lambda: score_neurons(job.loaded, calibration, scoring)
            )
            job.log(
                f"FFN neuron ranking from {neurons.examples} of {len(calibration)} examples"
                + settled(scoring, neurons, len(calibration))
            )
            neurons.save(job.staging / FFN_IMPORTANCE_FILE)
    return Scores(heads, neurons)


def settled(scoring: ScoringOptions, scores: Any, available: int) -> str:
    """Why scoring stopped where it did, for the log."""
    if scoring.settle and scores.examples < available:
        return f" (it settled: Spearman >= {scoring.settle:g} between consecutive rankings)"
    return ""


def cached_artifact(job: Run, stage: str, inputs: tuple[Any, ...], kind: type[Any], compute: Callable[[], Any]) -> Any:
    """A JSON artifact from the cache when this code made it before from the same inputs (model, rows, options)."""
    stored, hit = job.cache.json(stage, inputs, lambda: compute().to_dict())
    if hit:
        job.reused.append(stage)
        job.log(f"{stage}: reused from the cache (same model, rows and options)")
    return kind.from_dict(stored)


def export_original(job: Run) -> OriginalGraphs:
    """The original's graphs, exported once: baseline of every ratio, source of its tuned int8 variant."""
    with job.timer.stage("export the original model (baseline)"):
        model = job.loaded.model
        graphs = export_verified(
            model,
            job.loaded.tokenizer,
            job.staging / "_original_onnx",
            TorchRunner("original", model),
            job.inputs.parity,
            log=job.log,
        )
        record = ship_int8(
            graphs, OPTIMUM_BASELINE, job.inputs.parity, source="original", threads=job.options.threads, log=job.log
        )
    return OriginalGraphs(graphs, record)


def tune(job: Run, graphs: VerifiedGraphs, model: ModelIdentity | LoadedModel) -> TuningResult:
    """The int8 recipe chosen by measurement on this machine (cached: a repeated run keeps the same recipe, so its
    search candidates match the cached ones too)."""
    timing, threads = job.inputs.selection, job.options.threads
    return cached_artifact(
        job,
        "int8 recipe choice",
        (model, timing, job.inputs.fidelity, threads, ThisMachine.here()),
        TuningResult,
        lambda: tune_recipe(graphs, job.judge, timing, threads=threads, log=job.log),
    )


def choose_sizes(job: Run, scores: Scores, original: OriginalGraphs) -> Sizes:
    """The plan from the options' keep fractions, or the latency-target search's structure (with the recipe
    tuned for it)."""
    from attr_compress.search import SearchInputs, search_target

    target, options, heads, neurons = job.options.target, job.options, scores.heads, scores.neurons
    if target is None:
        plan = plan_pruning(
            heads.scores,
            options.keep,
            heads.order,
            ffn_scores=neurons and neurons.scores,
            keep_ffn=options.keep_ffn or 1.0,
            drop_layers=options.drop_layers,
        )
        return Sizes(plan)
    with job.timer.stage(f"search the structure for the target: {target.description}"):
        tuning = tune(job, original.graphs, job.loaded)
        refit = replace(options.recovery, method="none" if options.recovery.method == "none" else "lsq")
        inputs = SearchInputs(
            job.loaded,
            heads,
            neurons,
            target,
            job.judge,
            job.inputs.fit_batches,
            encode_for_fit(job.loaded, job.inputs.resolved.fit.examples[:SENSITIVITY_EXAMPLES]),
            refit,
            job.inputs.evaluation.singles[:TIMED_EXAMPLES],
            tuning.recipe,
            original.baseline_int8,
            threads=options.threads,
            allocation=options.allocation,
            cache=job.cache,
        )
        search = search_target(inputs, log=job.log, progress=options.progress)
        search.save(job.staging / "target_search.json")
        job.reused.extend(search.reused)
    return Sizes(plan_structure(search.chosen, heads.array, neurons.array), search, tuning)


def prune_and_recover(job: Run, scores: Scores, sizes: Sizes) -> Pruned:
    with job.timer.stage("plan, prune and recover"):
        plan = sizes.plan
        plan.save(job.staging / "prune_plan.json")
        save_importance(scores.heads, job.staging, plan)
        recovery = recovered_folder(job, plan)
        if recovery is not None:
            recovery.save(job.staging / "recovery.json")
        eager, as_users_load = reload_pruned(job, "recovered weights" in job.reused)
    return Pruned(plan, recovery, eager, as_users_load)


def reload_pruned(job: Run, from_cache: bool) -> tuple[Any, Any]:
    """What users get from ``pruned/``, reloaded: eager attention for export (the exporter switches to the
    family's traced attention itself), transformers' default attention for timing like the original. A folder
    that does not load is this run's fault or its cache's, never the user's model: the error says which."""
    folder = job.staging / "pruned"
    try:
        return load_model(folder).model, load_model(folder, attn_implementation=USERS_ATTENTION).model
    except InputError as err:
        reason = getattr(err, "reason", str(err))
        if from_cache:
            raise VerificationError(
                f"the recovered weights reused from the cache ({job.cache.root}) do not load ({reason}); re-run with "
                "--no-cache, or delete the cache folder"
            ) from None
        raise VerificationError(f"the pruned model this run wrote does not load back ({reason})") from None


def recovered_folder(job: Run, plan: PrunePlan) -> RecoveryRecord | None:
    """Prune, recover and save ``pruned/``, or copy the folder (and its record) a run with the same model,
    plan, data rows and recovery options cached (checked against the entry's manifest where it lands)."""
    inputs, methods = job.inputs, recovery_methods(job, plan)
    key = (job.loaded, plan, methods, job.options.recovery, inputs.resolved.fit, inputs.selection, inputs.training)

    def build(folder: Path) -> dict[str, Any]:
        model = prune_model(copy.deepcopy(job.loaded.model), plan)
        model, recovery = recover_by_measurement(job, model, methods)
        save_pruned(model, job.loaded.tokenizer, folder)
        return {"recovery": recovery and recovery.to_dict()}

    stored, hit = job.cache.folder("recovered weights", key, job.staging / "pruned", build)
    if hit:
        job.reused.append("recovered weights")
        job.log("recovered weights: reused from the cache (same model, plan, rows and options)")
    return stored["recovery"] and RecoveryRecord.from_dict(stored["recovery"])


def recovery_methods(job: Run, plan: PrunePlan) -> tuple[str, ...]:
    """The methods to try: the one asked for, or with auto the ones worth measuring. FFN pruning and latency
    targets always recover (lsq, and distill when there is a training file); heads alone may not need to."""
    method = job.options.recovery.method
    if method != "auto":
        return (method,)
    if plan.keep_ffn < 1 or plan.dropped_layers or job.options.target is not None:
        return ("lsq", "distill") if job.inputs.training is not None else ("lsq",)
    return ("none", "lsq")


def recover_by_measurement(job: Run, model: Any, methods: tuple[str, ...]) -> tuple[Any, RecoveryRecord | None]:
    """Each method in turn on a copy (distill continues from lsq's weights when both run); the one closest to the
    original on the fidelity slice wins (least disagreement, then KL; ties: the cheaper, earlier one)."""
    options, tried = job.options.recovery, {}
    for method in methods:
        if method == "distill" and "lsq" in tried:
            candidate, record = copy.deepcopy(tried["lsq"][0]), tried["lsq"][1]
            text = job.inputs.training
            job.log(f"distilling from the original model on {text.path}")
            trained = distill(
                job.loaded.model, candidate, text, options.distill, progress=job.options.progress, log=job.log
            )
            record = replace(record, method="distill", distill=trained)
        else:
            candidate = copy.deepcopy(model)
            record = recover(
                job.loaded.model,
                candidate,
                job.inputs.fit_batches,
                replace(options, method=method),
                text=job.inputs.training,
                progress=job.options.progress,
                log=job.log,
            )
        tried[method] = (candidate, record, job.judge.judge(TorchRunner("candidate", candidate)))
    best = min(tried, key=lambda method: (*tried[method][2].key, methods.index(method)))
    chosen, record, _ = tried[best]
    judgements = {method: judgement for method, (_, _, judgement) in tried.items()}
    job.log(
        "recovery against the original: "
        + ", ".join(f"{m} disagrees on {j.fidelity.disagreement:.2%}" for m, j in judgements.items())
        + f" of {job.judge.rows} unlabelled rows; kept {best}"
    )
    compared = {method: judgement.summary for method, judgement in judgements.items()}
    return chosen, None if record is None else replace(record, compared=compared)


def export_pruned(job: Run, sizes: Sizes, pruned: Pruned, original: OriginalGraphs) -> Shipped:
    """Export the pruned model once, choose its int8 recipe (unless the search did), ship it verified."""
    with job.timer.stage("choose the int8 recipe by measurement, export, parity"):
        graphs = export_verified(
            pruned.eager,
            job.loaded.tokenizer,
            job.staging / "onnx",
            TorchRunner("pruned", pruned.eager),
            job.inputs.parity,
            log=job.log,
        )
        if sizes.search is None:
            tuning, tuned_on, recipe = (
                tune(job, graphs, ModelIdentity.of(pruned.eager, job.loaded.tokenizer)),
                "pruned",
                None,
            )
        else:  # the search timed its candidates with the recipe tuned on the original
            tuning, tuned_on, recipe = sizes.tuning, "original", int8_granularity(job, graphs, sizes.tuning.recipe)
        recipe = recipe or tuning.recipe
        if job.options.int8 == "per-matmul":
            int8 = choose_int8(
                graphs,
                recipe,
                job.judge,
                job.inputs.evaluation.singles[:TIMED_EXAMPLES],
                threads=job.options.threads,
                slowdown=allowed_slowdown(sizes.search),
                log=job.log,
            )
            recipe, tuning = int8.chosen, replace(tuning, per_matmul=int8)
        tuning.save(job.staging / "graph_tuning.json")
        (tuned,) = quantize_all(original.graphs, [recipe.uniform], original.graphs.folder / "tuned")
        record = ship_int8(
            graphs,
            recipe,
            job.inputs.parity,
            source="pruned",
            thread_singles=job.inputs.evaluation.singles,
            log=job.log,
        )
        graphs.drop_fused()
    return Shipped(record, tuning, tuned_on, tuned)


def allowed_slowdown(search: TargetSearch | None) -> float:
    """How much slower fp32 MatMuls may make the shipped graph: with a target, the part of the planned budget
    the allocation left unused (from the latency model, not a timing); without one, 3%."""
    if search is None:
        return UNTARGETED_SLOWDOWN
    planned = search.latency_model.predict(search.chosen)
    return max(0.0, search.target_ratio / search.margin / planned - 1)


def int8_granularity(job: Run, graphs: VerifiedGraphs, recipe: Recipe) -> Recipe:
    """Recovery changed the weights since the recipe was tuned on the original: of the recipe with per-channel
    and with per-tensor weights, the one closer to the original on the fidelity slice (on the demo model the
    distilled weights lost 5 points as per-tensor int8 and none as per-channel)."""
    recipes = [replace(recipe, per_channel=True), replace(recipe, per_channel=False)]
    with tempfile.TemporaryDirectory(prefix="attr-compress-granularity-") as scratch:
        paths = quantize_all(graphs, recipes, Path(scratch))
        verdicts = [
            job.judge.judge(OnnxRunner(r.name, p, threads=job.options.threads))
            for r, p in zip(recipes, paths, strict=True)
        ]
    best = min(range(len(recipes)), key=lambda index: (*verdicts[index].key, recipes[index] != recipe))
    job.log(
        "int8 after recovery against the original: "
        + ", ".join(
            f"{r.name} disagrees on {v.fidelity.disagreement:.2%}" for r, v in zip(recipes, verdicts, strict=True)
        )
    )
    return recipes[best]


def check_selection(job: Run, sizes: Sizes) -> SelectionCheck:
    """The shipped int8 graph against the original on the selection rows (paired) and the fidelity slice. With a
    latency target, a drop that the selection rows show to exceed --max-drop (the lower end of its 95% interval
    above it) ships nothing (one line, exit 2); a drop they cannot resolve ships, and the report says so."""
    shipped = OnnxRunner("shipped", job.staging / "onnx" / ONNX_INT8, threads=job.options.threads)
    verdict = job.judge.judge(shipped)
    check = SelectionCheck(
        drop=verdict.selection,
        fidelity=verdict.fidelity,
        max_drop=job.options.max_drop,
        enforced=sizes.search is not None,
    )
    if check.refused:
        interval = check.drop.interval()
        raise InputError(
            f"the structure that meets the target ({sizes.search.target}) loses {check.drop_points:.2f} points "
            f"(95% interval {interval.low:.2f} to {interval.high:.2f}) on {check.drop.rows} selection rows as int8, "
            f"more than --max-drop {check.max_drop:g}; nothing was written: relax --max-drop or the target"
        )
    return check


def measure(job: Run, pruned: Pruned, shipped: Shipped, original: OriginalGraphs) -> Measurement:
    """Every variant side by side; the original's scratch graphs are deleted afterwards."""
    with job.timer.stage("evaluate accuracy and latency"):
        threads = job.options.threads
        onnx = job.staging / "onnx"
        variants = {
            ("original", "pytorch-fp32"): TorchRunner(
                "", load_model(job.options.model, attn_implementation=USERS_ATTENTION).model
            ),
            ("original", "onnx-fp32"): OnnxRunner("", original.graphs.fp32, threads=threads),
            ("original", "onnx-int8"): OnnxRunner("", original.baseline_int8, threads=threads),
            ("original", "onnx-int8-tuned"): OnnxRunner("", shipped.original_tuned_int8, threads=threads),
            ("pruned", "pytorch-fp32"): TorchRunner("", pruned.as_users_load),
            ("pruned", "onnx-fp32"): OnnxRunner("", onnx / ONNX_FP32, threads=threads),
            ("pruned", "onnx-int8-tuned"): OnnxRunner("", onnx / ONNX_INT8, threads=threads),
        }
        measurement = evaluate(
            variants, job.inputs.evaluation, threads=threads, num_labels=job.num_labels, progress=job.options.progress
        )
        del variants  # close the original's sessions before deleting its graphs
        shutil.rmtree(original.graphs.folder)
    return measurement


def compare(job: Run, heads: HeadImportance, keep: float) -> dict[str, Any]:
    """Other rankings at the same keep level (why these heads)."""
    from attr_compress.sweep import SweepOptions, why_these_heads

    with job.timer.stage("compare with other rankings"):
        scoring = replace(job.options.scoring, progress=job.options.progress)
        options = SweepOptions(
            ("attention", "random", "taylor"), random_seeds=(0, 1, 2), latency_method=None, scoring=scoring
        )
        return why_these_heads(
            job.loaded, job.inputs.resolved.calibration, job.inputs.evaluation, heads, keep, options, job.log
        )


def explain_examples(job: Run) -> list[AttributionTree]:
    evaluation, options = job.inputs.resolved.evaluation, job.options
    with job.timer.stage(f"attribution trees ({min(options.trees, len(evaluation))} examples)"):
        return explain(
            job.loaded,
            evaluation,
            options.trees,
            job.staging / "trees",
            steps=options.scoring.steps,
            rule=options.scoring.rule,
            progress=options.progress,
        )


def build_report(job: Run, outcome: Outcome) -> Report:
    scores, sizes, pruned, shipped = outcome.scores, outcome.sizes, outcome.pruned, outcome.shipped
    original, measurement, check = outcome.original, outcome.measurement, outcome.check
    loaded, plan = job.loaded, pruned.plan
    shipped_row = next(row for row in measurement.results if row.name == "pruned/onnx-int8-tuned")
    baseline_row = next(row for row in measurement.results if row.name == "original/onnx-int8")
    target = job.options.target
    return Report(
        model=loaded.path,
        family=f"{family_of(loaded.model).name}, {type(loaded.model).__name__}",
        out=str(job.options.out_folder),
        options=job.options.record(sizes),
        data=data_summary(job),
        importance=scores.heads,
        heads=heads_summary(plan, sizes.keep, pruned.as_users_load),
        why=WhySummary([len(row) - sum(row) for row in plan.head_mask], outcome.comparison),
        ffn=ffn_summary(loaded, scores.neurons, sizes.keep_ffn, pruned.as_users_load),
        recovery=pruned.recovery,
        target_search=sizes.search,
        target_met_in_final_measurement=None
        if target is None
        else target.met(shipped_row.latency_p50_ms, baseline_row.latency_p50_ms / shipped_row.latency_p50_ms),
        selection_check=check,
        graph_tuning=shipped.tuning,
        tuned_on=shipped.tuned_on,
        parameters={
            "original": ParameterCounts(**count_parameters(loaded.model)),
            "pruned": ParameterCounts(**count_parameters(pruned.as_users_load)),
        },
        export={"pruned": shipped.record, "original": original.record},
        results=measurement.results,
        int8_agreement_with_fp32={
            model: measurement.agreement(f"{model}/{int8}", f"{model}/onnx-fp32")
            for model, int8 in (("original", "onnx-int8"), ("pruned", "onnx-int8-tuned"))
        },
        trees=[f"tree_{index + 1:03d}" for index in range(len(outcome.trees))],
        timings=job.timer.timings,
        machine=Machine.here(job.options.threads),
        weights=WeightsInfo(loaded.weights_file, loaded.weights_note, loaded.stored_dtype),
        versions=library_versions(),
        drop=paired_drop(
            measurement.predictions["original/pytorch-fp32"],
            measurement.predictions["pruned/onnx-int8-tuned"],
            job.inputs.evaluation.labels,
        ),
        reused=list(job.reused),
    )


def per_original_layer(model: Any, counts: list[int]) -> list[int]:
    """Per-layer counts of a pruned model, spread back over the original layers (dropped ones: 0)."""
    record = getattr(model.config, "attr_compress", None) or {}
    spread = [0] * record.get("original_layers", len(counts))
    for (first, _), count in zip(model_layer_spans(model), counts, strict=True):
        spread[first] = count
    return spread


def heads_summary(plan: PrunePlan, keep: float, model: Any) -> HeadsSummary:
    kept = per_original_layer(model, heads_per_layer(model))
    return HeadsSummary(
        keep=keep,
        total=plan.total_heads,
        kept=plan.kept_heads,
        kept_per_layer=kept,
        pruned={str(layer): heads for layer, heads in plan.pruned_heads.items()},
        empty_layers=[layer for layer, count in enumerate(kept) if count == 0 and layer not in plan.dropped_layers],
        dropped_layers=plan.dropped_layers,
    )


def ffn_summary(loaded: LoadedModel, neurons: NeuronImportance | None, keep_ffn: float, model: Any) -> FfnSummary:
    return FfnSummary(
        keep_ffn=keep_ffn,
        total=ffn_width(loaded.config) * loaded.config.num_hidden_layers,
        kept_per_layer=per_original_layer(model, ffn_widths(model)),
        aggregation=None if neurons is None else neurons.aggregation,
        steps=None if neurons is None else neurons.steps,
    )


def data_summary(job: Run) -> DataSummary:
    resolved, calibration = job.inputs.resolved, job.inputs.resolved.calibration
    evaluation = resolved.evaluation
    return DataSummary(
        evaluation=evaluation.path,
        evaluation_rows=len(evaluation),
        evaluation_truncated=job.inputs.evaluation.truncated,
        calibration=calibration.path,
        calibration_rows_in_file=resolved.calibration_rows,
        calibration_examples=len(calibration),
        calibration_truncated=count_truncated(job.loaded, calibration.examples),
        calibration_shared_with_evaluation=resolved.shared,
        source=resolved.source,
        columns={
            "text": evaluation.text_column,
            "text_pair": evaluation.text_pair_column,
            "label": evaluation.label_column,
        },
        selection=resolved.selection_how,
        selection_rows=len(resolved.selection),
        evaluation_row_numbers=[example.row for example in evaluation.examples],
        selection_row_numbers=[example.row for example in resolved.selection.examples],
        excluded=list(resolved.excluded),
        fidelity_rows=len(resolved.fidelity),
    )
