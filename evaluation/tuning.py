"""Choose the int8 recipe by measurement on this machine: every candidate graph is built, judged and timed.

Candidates: plain or fused graph x per-channel or per-tensor weights x two operator sets, plus Optimum's
baseline recipe. A recipe is eligible when its disagreement with the original on the fidelity slice is
within ``tolerance`` (a share of the rows) of the closest recipe's; of the eligible ones, the first in
candidate order whose batch-1 latency is within ``LATENCY_TIE`` of the fastest is chosen, so two recipes
that time alike do not trade places from one run to the next on timing noise.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.data.encoded import EncodedData
from attr_compress.evaluation.fidelity import Judge, Judgement
from attr_compress.evaluation.int8 import Int8Choice
from attr_compress.evaluation.measure import evaluate_runners
from attr_compress.exporters.recipes import OPERATOR_SETS, OPTIMUM_BASELINE, Recipe
from attr_compress.exporters.runtime import OnnxRunner
from attr_compress.exporters.verified import VerifiedGraphs, quantize_all

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.005  # half a percent of the fidelity rows more disagreement than the closest recipe
LATENCY_TIE = 1.05  # recipes within 5% of the fastest count as equally fast


def candidate_recipes(fused: bool = True) -> list[Recipe]:
    graphs = ("plain", "fused") if fused else ("plain",)
    recipes = [OPTIMUM_BASELINE]
    for graph, per_channel, operators in itertools.product(graphs, (True, False), OPERATOR_SETS):
        recipes.append(Recipe(graph, "onnxruntime", per_channel, operators))
    return recipes


@dataclass(frozen=True)
class RecipeTrial:
    """One recipe's int8 graph: how it compares with the original, and how fast it runs."""

    recipe: Recipe
    judgement: Judgement
    latency_p50_ms: float
    throughput_per_s: float
    eligible: bool


@dataclass(frozen=True)
class TuningResult(JsonArtifact):
    """Every candidate recipe judged and timed, the chosen one and why."""

    kind = "graph-tuning"
    schema = 2

    chosen: Recipe
    reason: str
    tolerance: float
    threads: int
    trials: list[RecipeTrial]
    fusion_note: str
    per_matmul: Int8Choice | None = None  # the exceptions chosen for the shipped model after recovery

    @property
    def recipe(self) -> Recipe:
        return self.chosen


def tune_recipe(
    graphs: VerifiedGraphs,
    judge: Judge,
    timing: EncodedData,
    *,
    threads: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: bool = False,
) -> TuningResult:
    """Quantise every candidate recipe from the verified graphs (in a scratch folder), judge each against the
    reference and time them side by side on ``timing``'s single examples (batch 1), choose."""
    fused = graphs.fused is not None
    fusion_note = "fused graph matches PyTorch" if fused else f"fused graph dropped: {graphs.fusion.get('rejected')}"
    recipes = candidate_recipes(fused=fused)
    logger.info(f"tuning the int8 recipe: quantising for {len(recipes)} recipes")
    with tempfile.TemporaryDirectory(prefix="attr-compress-tuning-") as scratch:
        runners = [
            OnnxRunner(recipe.name, graph, threads=threads)
            for recipe, graph in zip(recipes, quantize_all(graphs, recipes, Path(scratch)), strict=True)
        ]
        judgements = [judge.judge(runner) for runner in runners]
        results, _ = evaluate_runners(runners, timing, threads=threads, progress=progress)
        del runners
    return choose_recipe(recipes, judgements, results, tolerance=tolerance, threads=threads, fusion_note=fusion_note)


def choose_recipe(
    recipes: Sequence[Recipe],
    judgements: Sequence[Judgement],
    results: dict[str, dict],
    *,
    tolerance: float,
    threads: int,
    fusion_note: str,
) -> TuningResult:
    """See the module docstring."""
    closest = min(judgement.fidelity.disagreement for judgement in judgements)
    trials = [
        RecipeTrial(
            recipe,
            judgement,
            results[recipe.name]["latency_p50_ms"],
            results[recipe.name]["throughput_per_s"],
            judgement.fidelity.disagreement <= closest + tolerance,
        )
        for recipe, judgement in zip(recipes, judgements, strict=True)
    ]
    eligible = [trial for trial in trials if trial.eligible]
    fastest = min(trial.latency_p50_ms for trial in eligible)
    chosen = next(trial for trial in eligible if trial.latency_p50_ms <= fastest * LATENCY_TIE)
    baseline = next(trial for trial in trials if trial.recipe == OPTIMUM_BASELINE).latency_p50_ms
    reason = (
        f"the first in candidate order within {(LATENCY_TIE - 1) * 100:.0f}% of the fastest at batch 1 "
        f"({chosen.latency_p50_ms:.3f} ms p50, {baseline / chosen.latency_p50_ms:.2f}x Optimum's recipe) among "
        f"{len(eligible)} of {len(trials)} recipes whose disagreement with the original is within "
        f"{tolerance:.1%} of the closest ({closest:.2%})"
    )
    return TuningResult(
        chosen=chosen.recipe,
        reason=reason,
        tolerance=tolerance,
        threads=threads,
        trials=trials,
        fusion_note=fusion_note,
    )
