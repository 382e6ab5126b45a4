"""Choose the int8 recipe by measurement on this machine: every candidate graph is built, checked and timed.

Candidates: plain or fused graph x per-channel or per-tensor weights x two operator sets x the
onnxruntime session's SkipLayerNormalization fusion on or off, plus Optimum's baseline recipe. The
choice is the fastest at batch 1 among those whose accuracy on the selection data is within
``tolerance`` of the most accurate candidate.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.artifacts import JsonArtifact
from compressor.encoded import EncodedData
from evaluation.measure import evaluate_runners
from exporters.recipes import OPERATOR_SETS, OPTIMUM_BASELINE, Recipe
from exporters.runtime import OnnxRunner
from exporters.verified import VerifiedGraphs, quantize_all

DEFAULT_TOLERANCE = 0.01  # one point: 10 of the default 1000 selection examples


def candidate_recipes(fused: bool = True) -> list[Recipe]:
    graphs = ("plain", "fused") if fused else ("plain",)
    recipes = [OPTIMUM_BASELINE]
    for graph, per_channel, operators in itertools.product(graphs, (True, False), OPERATOR_SETS):
        recipes.append(Recipe(graph, "onnxruntime", per_channel, operators))
    return recipes


@dataclass(frozen=True)
class TuningResult(JsonArtifact):
    """Every candidate recipe with its accuracy and latency, the chosen one and why."""

    kind = "graph-tuning"

    chosen: dict[str, Any]
    reason: str
    tolerance: float
    threads: int
    candidates: list[dict[str, Any]]
    fusion_note: str

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.chosen)


def tune_recipe(
    graphs: VerifiedGraphs,
    selection: EncodedData,
    *,
    threads: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
    num_labels: int = 2,
    log: Callable[[str], None] = lambda message: None,
    progress: bool = False,
) -> TuningResult:
    """Quantise every candidate recipe from the verified graphs (in a scratch folder), measure them side by
    side on ``selection``, choose."""
    fused = graphs.fused is not None
    fusion_note = "fused graph matches PyTorch" if fused else f"fused graph dropped: {graphs.fusion.get('rejected')}"
    recipes = candidate_recipes(fused=fused)
    log(f"tuning the int8 recipe: quantising for {len(recipes)} recipes")
    with tempfile.TemporaryDirectory(prefix="attr-compress-tuning-") as scratch:
        runners = [
            OnnxRunner(recipe.name, graph, threads=threads)
            for recipe, graph in zip(recipes, quantize_all(graphs, recipes, Path(scratch)), strict=True)
        ]
        results, _ = evaluate_runners(runners, selection, threads=threads, num_labels=num_labels, progress=progress)
        del runners
    return choose_recipe(recipes, results, tolerance=tolerance, threads=threads, fusion_note=fusion_note)


def choose_recipe(
    recipes: Sequence[Recipe],
    results: dict[str, dict[str, Any]],
    *,
    tolerance: float,
    threads: int,
    fusion_note: str,
) -> TuningResult:
    """The fastest batch-1 recipe among those within ``tolerance`` of the best selection accuracy."""
    best = max(results[recipe.name]["accuracy"] for recipe in recipes)
    eligible = [recipe for recipe in recipes if results[recipe.name]["accuracy"] >= best - tolerance]
    chosen = min(eligible, key=lambda recipe: results[recipe.name]["latency_p50_ms"])
    baseline = results[OPTIMUM_BASELINE.name]["latency_p50_ms"]
    fastest = results[chosen.name]
    reason = (
        f"fastest at batch 1 ({fastest['latency_p50_ms']:.3f} ms p50, {baseline / fastest['latency_p50_ms']:.2f}x "
        f"Optimum's recipe) among {len(eligible)} of {len(recipes)} recipes whose selection accuracy is within "
        f"{tolerance * 100:g} point of the best ({best:.4f})"
    )
    candidates = [
        {
            **recipe.to_dict(),
            **{key: results[recipe.name][key] for key in ("accuracy", "latency_p50_ms", "throughput_per_s")},
            "eligible": recipe in eligible,
        }
        for recipe in recipes
    ]
    return TuningResult(
        chosen=chosen.to_dict(),
        reason=reason,
        tolerance=tolerance,
        threads=threads,
        candidates=candidates,
        fusion_note=fusion_note,
    )
