"""Plan stage: the original's graphs and int8 recipe, then the sizes, given (--keep) or searched for a latency
target."""

from __future__ import annotations

from dataclasses import replace

from attr_compress.compressor.cache import ThisMachine
from attr_compress.compressor.models.loading import (
    LoadedModel,
    ModelIdentity,
)
from attr_compress.compressor.pruning.prune import (
    plan_pruning,
)
from attr_compress.compressor.pruning.structures import plan_structure
from attr_compress.compressor.recovery.lsq import encode_for_fit
from attr_compress.evaluation.tuning import TuningResult, tune_recipe
from attr_compress.exporters.recipes import OPTIMUM_BASELINE
from attr_compress.exporters.runtime import TorchRunner
from attr_compress.exporters.verified import VerifiedGraphs, export_verified, ship_int8
from attr_compress.pipeline.job import OriginalGraphs, Run, Scores, Sizes
from attr_compress.pipeline.scoring import cached_artifact

SENSITIVITY_EXAMPLES = 128  # calibration rows each layer's thinning is measured on
TIMED_EXAMPLES = 100  # evaluation inputs every structure's latency is timed on, side by side with the baseline


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
        )
        record = ship_int8(graphs, OPTIMUM_BASELINE, job.inputs.parity, source="original", threads=job.options.threads)
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
        lambda: tune_recipe(graphs, job.judge, timing, threads=threads),
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
        search = search_target(inputs, progress=options.progress)
        search.save(job.staging / "target_search.json")
        job.reused.extend(search.reused)
    return Sizes(plan_structure(search.chosen, heads.array, neurons.array), search, tuning)
