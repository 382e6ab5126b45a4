"""Export stage for the pruned model: graphs verified against PyTorch, the int8 recipe chosen per MatMul, and
the shipped graph checked on the selection rows against --max-drop."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import (
    ModelIdentity,
)
from attr_compress.evaluation.int8 import choose_int8
from attr_compress.evaluation.report.record import (
    SelectionCheck,
)
from attr_compress.evaluation.target import TargetSearch
from attr_compress.exporters.onnx_export import ONNX_INT8
from attr_compress.exporters.recipes import Recipe
from attr_compress.exporters.runtime import OnnxRunner, TorchRunner
from attr_compress.exporters.verified import VerifiedGraphs, export_verified, quantize_all, ship_int8
from attr_compress.pipeline.job import OriginalGraphs, Pruned, Run, Shipped, Sizes
from attr_compress.pipeline.sizing import TIMED_EXAMPLES, tune

UNTARGETED_SLOWDOWN = 0.03  # without a target, fp32 MatMuls may make the int8 graph at most 3% slower

logger = logging.getLogger(__name__)


def export_pruned(job: Run, sizes: Sizes, pruned: Pruned, original: OriginalGraphs) -> Shipped:
    """Export the pruned model once, choose its int8 recipe (unless the search did), ship it verified."""
    with job.timer.stage("choose the int8 recipe by measurement, export, parity"):
        graphs = export_verified(
            pruned.eager,
            job.loaded.tokenizer,
            job.staging / "onnx",
            TorchRunner("pruned", pruned.eager),
            job.inputs.parity,
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
    logger.info(
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
