"""int8 per MatMul, ranked by fidelity: after recovery, each layer's weights may take the other granularity, and
the few weighted MatMuls whose quantisation hurts most may stay fp32, within the latency the run allows.

1. Each layer's weights flipped to the other granularity, judged on a slice of the fidelity rows: the flips
   that bring the graph closer to the original are kept.
2. A shortlist of weights whose quantisation is likely to hurt (the largest outliers: max |w| / rms(w)) is
   ranked by how much closer to the original the graph gets with that one MatMul in fp32.
3. The extra cost of an fp32 MatMul is estimated from the int8 and fp32 graphs timed side by side (per weight,
   in proportion to its size); the first 0..``MAX_FP32`` of the ranking are kept fp32 while the estimate stays
   within ``slowdown`` of the int8 graph's latency. Of these graphs and the uniform recipe, the closest to the
   original on all fidelity rows wins (ties: fewer exceptions).
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from attr_compress.evaluation.fidelity import Judge, Judgement
from attr_compress.exporters.mixed import flops, weighted_nodes
from attr_compress.exporters.recipes import Recipe
from attr_compress.exporters.runtime import OnnxRunner, batch1_latency
from attr_compress.exporters.verified import VerifiedGraphs, quantize_all

logger = logging.getLogger(__name__)

MAX_FP32 = 4
SHORTLIST = 8
RANKING_ROWS = 1000
LAYER = re.compile(r"(?:layer[._/]|Attention_)(\d+)")


@dataclass(frozen=True)
class Int8Trial:
    """A recipe with per-node exceptions, judged against the original, and its estimated slowdown."""

    recipe: Recipe
    judgement: Judgement
    estimated_slowdown: float


@dataclass(frozen=True)
class Int8Choice:
    chosen: Recipe
    trials: list[Int8Trial]
    fp32_cost_per_weight: float  # extra ms per weight element in fp32, from the side-by-side timing
    reason: str


def layer_groups(nodes: dict[str, str]) -> dict[int, tuple[str, ...]]:
    groups: dict[int, list[str]] = {}
    for name in nodes:
        match = LAYER.search(name)
        if match:
            groups.setdefault(int(match.group(1)), []).append(name)
    return {layer: tuple(sorted(names)) for layer, names in sorted(groups.items())}


def outliers(graph: object, nodes: dict[str, str]) -> list[str]:
    """Weighted nodes by max |w| / rms(w), largest first: outlier columns quantise worst."""
    from onnx import numpy_helper

    tensors = {initializer.name: initializer for initializer in graph.initializer}

    def ratio(name: str) -> float:
        weight = numpy_helper.to_array(tensors[nodes[name]]).astype(np.float64)
        return float(np.abs(weight).max() / max(np.sqrt(np.mean(weight**2)), 1e-12))

    return sorted(nodes, key=lambda name: (-ratio(name), name))


class _Trials:
    """Quantises recipes from the verified graphs and judges them (on a slice, or on every fidelity row). Each
    recipe is quantised once and judged on the slice once; sessions are opened when needed and not kept (a choice
    tries dozens of graphs, and one BERT-large int8 session holds about a third of a GiB)."""

    def __init__(self, graphs: VerifiedGraphs, judge: Judge, threads: int, folder: Path) -> None:
        self.graphs, self.judge, self.threads, self.folder = graphs, judge, threads, folder
        self.slice = judge.subset(RANKING_ROWS)
        self.paths: dict[Recipe, Path] = {}
        self.kls: dict[Recipe, float] = {}

    def runner(self, recipe: Recipe) -> OnnxRunner:
        """A new session of the recipe's int8 graph, quantised the first time it is asked for."""
        if recipe not in self.paths:
            (self.paths[recipe],) = quantize_all(self.graphs, [recipe], self.folder / f"trial-{len(self.paths) + 1}")
        return OnnxRunner(recipe.name, self.paths[recipe], threads=self.threads)

    def kl(self, recipe: Recipe) -> float:
        if recipe not in self.kls:
            self.kls[recipe] = self.slice.judge(self.runner(recipe)).fidelity.kl
        return self.kls[recipe]


def choose_int8(
    graphs: VerifiedGraphs,
    recipe: Recipe,
    judge: Judge,
    singles: list[dict],
    *,
    threads: int = 0,
    slowdown: float = 0.0,
) -> Int8Choice:
    """See the module docstring; ``slowdown`` is the share of the int8 graph's latency fp32 MatMuls may add."""
    import onnx

    if recipe.quantizer != "onnxruntime":
        return Int8Choice(recipe, [], 0.0, "Optimum's recipe has no per-node exceptions")
    graph = onnx.load(str(graphs.source(recipe))).graph
    nodes = weighted_nodes(graph)
    shortlist, costs = outliers(graph, nodes)[:SHORTLIST], flops(graph)
    del graph  # the fp32 graph with its weights: not held while dozens of int8 graphs are tried
    with tempfile.TemporaryDirectory(prefix="attr-compress-int8-") as scratch:
        trials = _Trials(graphs, judge, threads, Path(scratch))
        base = recipe.uniform
        reference = trials.kl(base)
        flipped = tuple(
            name
            for names in layer_groups(nodes).values()
            if trials.kl(replace(base, flipped=names)) < reference
            for name in names
        )
        start = replace(base, flipped=flipped)
        start_kl = trials.kl(start) if flipped else reference
        gains = {name: start_kl - trials.kl(replace(start, fp32=(name,))) for name in shortlist}
        ranked = [name for name in sorted(gains, key=lambda name: (-gains[name], name)) if gains[name] > 0][:MAX_FP32]
        per_weight, int8_ms = fp32_cost(graphs, trials.runner(start), singles, threads, sum(costs.values()))
        results = [Int8Trial(base, judge.judge(trials.runner(base)), 0.0)]
        for count in range(len(ranked) + 1):
            candidate = replace(start, fp32=tuple(ranked[:count]))
            extra = per_weight * sum(costs[name] for name in candidate.fp32) / max(int8_ms, 1e-9)
            if extra > slowdown:
                break
            if candidate != base:
                results.append(Int8Trial(candidate, judge.judge(trials.runner(candidate)), extra))
    best = min(results, key=lambda trial: (*trial.judgement.key, len(trial.recipe.fp32), len(trial.recipe.flipped)))
    logger.info(
        "int8 per MatMul: "
        + ", ".join(f"{t.recipe.name} {t.judgement.fidelity.disagreement:.2%}" for t in results)
        + f"; kept {best.recipe.name}"
    )
    reason = (
        f"{len(flipped)} weight(s) of {len(nodes)} took the other granularity (their layer came closer to the "
        f"original); {len(best.recipe.fp32)} MatMul(s) left fp32, of {len(ranked)} whose fp32 helped, within an "
        f"estimated slowdown of {slowdown:.0%}: the closest to the original of {len(results)} graphs"
    )
    return Int8Choice(best.recipe, results, per_weight, reason)


def fp32_cost(
    graphs: VerifiedGraphs, int8: OnnxRunner, singles: list[dict], threads: int, weights: int
) -> tuple[float, float]:
    """(extra milliseconds per weight element when a MatMul runs in fp32 rather than int8, the int8 graph's
    p50): the fp32 and the int8 graph timed side by side (three rounds, medians), the difference spread over
    every weight."""
    fp32 = OnnxRunner("fp32", graphs.fp32, threads=threads)
    latency = batch1_latency([int8, fp32], singles, rounds=3)
    ours, theirs = latency[int8.name], latency["fp32"]
    difference = float(np.median(np.subtract(theirs["round_p50_ms"], ours["round_p50_ms"])))
    return max(0.0, difference) / max(weights, 1), ours["latency_p50_ms"]
