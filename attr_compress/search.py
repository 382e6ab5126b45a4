"""Choose the structure for a latency target: per-layer heads and FFN widths under a latency model measured on
this machine, judged by fidelity to the original.

1. ``measure_latency_model``: a fixed design of structures (uniform, emptied blocks, dropped layers, mixed) is
   pruned, exported to int8 with the search's recipe and timed side by side with the original's Optimum int8
   graph, example by example, in several rounds; ``LatencyModel.fit`` turns that into a cost per kept layer,
   attention block, head, FFN block and FFN neuron, with its errors.
2. ``measure_sensitivity``: each layer thinned alone (attribution keeps its best heads and neurons), KL of the
   class distribution from the original's.
3. Candidates: the dynamic programme's allocation (with and without dropping layers), and for comparison the
   global attribution ranking at each head keep with the largest FFN keep the model admits. The budget is the
   target with a stated margin (three residual errors of the model, at least 3%), rounded down to a 0.5% grid
   so that small differences between two runs' models do not move it.
4. Each candidate is refitted by least squares and judged against the original: disagreement and KL on the
   large unlabelled fidelity slice (the decision), and the paired drop on the labelled selection rows (shown).
   The least disagreeing wins; ties go to the lower KL.
5. The chosen structure's int8 graph is timed once more beside the baseline (``confirm``); if it misses the
   target, or runs more than OVERSHOOT faster than predicted, the model is rescaled by what was measured and
   the allocation redone (at most twice); the last plan confirmed to meet the target ships.

No timing decides on its own between two candidates: latency enters only through the fitted model.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attr_compress.compressor.cache import StageCache, ThisMachine
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.families import ffn_width
from attr_compress.compressor.models.loading import LoadedModel
from attr_compress.compressor.pruning.prune import plan_pruning, prune_model
from attr_compress.compressor.pruning.structures import (
    LayerShape,
    Sensitivity,
    Structure,
    allocate,
    measure_sensitivity,
    plan_structure,
)
from attr_compress.compressor.recovery.lsq import RecoveryOptions, recover
from attr_compress.compressor.scoring.distributed import collective
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import NeuronImportance
from attr_compress.evaluation.fidelity import Judge, Judgement
from attr_compress.evaluation.target import (
    Candidate,
    Confirmation,
    CostPrior,
    LatencyModel,
    LatencyTarget,
    TargetSearch,
    Timing,
)
from attr_compress.exporters.recipes import Recipe
from attr_compress.exporters.runtime import OnnxRunner, TorchRunner, batch1_latency, torch_threads
from attr_compress.exporters.verified import export_verified, quantize_all

logger = logging.getLogger(__name__)

HEAD_KEEPS = (1.0, 0.75, 0.5, 0.4, 0.3, 0.2)
FFN_KEEPS = (1.0, 0.75, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)
ROUNDS = 3  # side-by-side timing rounds per structure
BUDGET_GRID = 0.005  # the budget is rounded down to this fraction of the baseline's latency
REPLANS = 2
LADDER_STEP = 0.05  # allocations are proposed every 5% of the full model's prior cost
OVERSHOOT = 1.15  # a structure measured this much faster than predicted: the model was off, replan with it rescaled


@dataclass(frozen=True)
class SearchInputs:
    """What the search prunes, times and judges with."""

    loaded: LoadedModel
    heads: HeadImportance
    neurons: NeuronImportance
    target: LatencyTarget
    judge: Judge
    fit_batches: Sequence[dict[str, torch.Tensor]]
    sensitivity_batches: Sequence[dict[str, torch.Tensor]]
    recovery: RecoveryOptions  # how candidates are refitted before they are judged: lsq
    singles: Sequence[dict[str, np.ndarray]]  # batch-1 inputs latency is timed on
    recipe: Recipe
    baseline_graph: Path
    threads: int = 1
    allocation: str = "per-layer"  # or "global": one attribution ranking over the whole model (the ablation)
    cache: StageCache = StageCache(None)  # latency model, sensitivity and judgements: a resumed search reuses them
    reused: list[str] = field(default_factory=list)  # the stages that came from the cache, in order

    def cached(self, stage: str, key: Any, kind: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``'s record of type ``kind``, or the one a run with the same ``key`` stored."""
        value, hit = self.cache.record(stage, key, kind, compute)
        if hit and stage not in self.reused:
            self.reused.append(stage)
        return value

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, heads per layer, FFN width)."""
        layers, heads = self.heads.array.shape
        return layers, heads, ffn_width(self.loaded.config)

    def plan(self, structure: Structure) -> Any:
        return plan_structure(structure, self.heads.array, self.neurons.array)

    def pruned(self, structure: Structure) -> Any:
        return prune_model(copy.deepcopy(self.loaded.model), self.plan(structure))


def design_structures(layers: int, heads: int, width: int) -> list[Structure]:
    """Structures that pin down every coefficient of the latency model: uniform thinning, emptied attention or
    FFN blocks, dropped layers, and mixed layers (fixed, so two runs time the same graphs)."""
    uniform = Structure.uniform
    half, quarter = max(1, heads // 2), max(1, heads // 4)
    dropped = LayerShape(0, 0, True)
    kept = max(1, layers // 2)
    rng = np.random.default_rng(0)
    mixed = [
        Structure(tuple(LayerShape(int(rng.integers(heads + 1)), int(rng.integers(width + 1))) for _ in range(layers)))
        for _ in range(3)
    ]
    return [
        uniform(layers, heads, width),
        uniform(layers, half, width // 2),
        uniform(layers, quarter, width // 4),
        uniform(layers, 1, max(1, width // 16)),
        uniform(layers, 0, width // 2),
        uniform(layers, half, 0),
        uniform(layers, 0, 0),
        Structure((*(LayerShape(heads, width) for _ in range(kept)), *(dropped for _ in range(layers - kept)))),
        Structure((LayerShape(half, width // 2), *(dropped for _ in range(layers - 1)))),
        Structure(tuple(LayerShape(heads, width) if i % 2 else LayerShape(quarter, width // 8) for i in range(layers))),
        Structure(tuple(LayerShape(0, width) if i % 2 else LayerShape(heads, 0) for i in range(layers))),
        *mixed,
    ]


class _Graphs:
    """Builds int8 graphs of structures in a scratch folder and times them beside the baseline."""

    def __init__(self, inputs: SearchInputs, folder: Path) -> None:
        self.inputs, self.folder = inputs, folder
        self.baseline = OnnxRunner("baseline", inputs.baseline_graph, threads=inputs.threads)

    def runner(self, model: Any, name: str) -> OnnxRunner:
        parity = [{key: value[:1] for key, value in single.items()} for single in self.inputs.singles[:2]]
        folder, fuse = self.folder / name, self.inputs.recipe.graph == "fused"
        graphs = export_verified(
            model, self.inputs.loaded.tokenizer, folder, TorchRunner(name, model), parity, fuse=fuse
        )
        (graph,) = quantize_all(graphs, [self.inputs.recipe], folder)
        runner = OnnxRunner(name, graph, threads=self.inputs.threads)
        shutil.rmtree(folder)  # the session holds the graph: scratch stays small
        return runner

    def time(self, runners: Sequence[OnnxRunner], structures: Sequence[Structure]) -> list[Timing]:
        """Every runner and the baseline, each on its own over the timing inputs, ``ROUNDS`` times; a structure's
        ratio in a round is its median over the baseline's median."""
        with torch_threads(self.inputs.threads):
            latency = batch1_latency([self.baseline, *runners], self.inputs.singles, rounds=ROUNDS)
        baseline = latency[self.baseline.name]
        return [
            Timing(
                structure,
                [ours / theirs for ours, theirs in zip(row["round_p50_ms"], baseline["round_p50_ms"], strict=True)],
                row["latency_p50_ms"],
                baseline["latency_p50_ms"],
            )
            for structure, row in zip(structures, (latency[runner.name] for runner in runners), strict=True)
        ]


def measure_latency_model(inputs: SearchInputs, graphs: _Graphs) -> LatencyModel:
    """The latency model of this model's shape on this machine (cached: it depends on the machine, the recipe,
    the thread count and the inputs timed, not on the target)."""

    structures = design_structures(*inputs.shape)
    layers, heads, width = inputs.shape
    neutral = (np.zeros((layers, heads)), np.zeros((layers, width)))  # which units stay does not change the time

    def measure() -> LatencyModel:
        logger.info(
            f"latency model: timing {len(structures)} structures beside the original int8 graph, {ROUNDS} rounds"
        )
        runners = [
            graphs.runner(prune_model(copy.deepcopy(inputs.loaded.model), plan_structure(s, *neutral)), f"design-{i}")
            for i, s in enumerate(structures)
        ]
        return LatencyModel.fit(graphs.time(runners, structures))

    key = (inputs.loaded, structures, inputs.recipe, inputs.threads, inputs.singles, ThisMachine.here(), ROUNDS)
    model = inputs.cached("latency model", key, LatencyModel, measure)
    logger.info(
        f"latency model: ratio = {model.intercept:.3f} + per layer {model.coefficients['layers']:.4f}, attention block "
        f"{model.coefficients['attention_blocks']:.4f}, head {model.coefficients['heads']:.5f}, FFN block "
        f"{model.coefficients['ffn_blocks']:.4f}, FFN neuron {model.coefficients['neurons']:.2e} (RMS error "
        f"{model.rms_error:.4f} of the baseline's latency)"
    )
    return model


def sensitivity_of(inputs: SearchInputs, progress: bool) -> Sensitivity:
    def measure() -> Sensitivity:
        return measure_sensitivity(
            inputs.loaded.model, inputs.sensitivity_batches, inputs.heads.array, inputs.neurons.array, progress=progress
        )

    key = (inputs.loaded, inputs.heads, inputs.neurons, inputs.sensitivity_batches)
    return inputs.cached("layer sensitivity", key, Sensitivity, measure)


def budget(model: LatencyModel, target_ratio: float) -> tuple[float, float]:
    """(the layers' share of the planned ratio, the margin): the target less the margin and the intercept,
    rounded down to ``BUDGET_GRID``."""
    margin = model.margin(target_ratio)
    planned = math.floor(target_ratio / margin / BUDGET_GRID) * BUDGET_GRID
    return planned - model.intercept, margin


def propose(
    inputs: SearchInputs, model: LatencyModel, sensitivity: Sensitivity, layers_budget: float
) -> list[Candidate]:
    """With ``inputs.allocation`` "per-layer", the allocations on the ladder (with and without dropped layers);
    with "global", the global attribution ranking at each head keep with the largest FFN keep that fits. (The
    global rankings no longer compete by default: they won one demo run in four, their FFN keep follows the
    timing noise, and each costs a refit and a judgement.)"""
    if inputs.allocation == "per-layer":
        prior = cost_prior(inputs)
        found = {}
        for allow_drop, origin in ((True, "per-layer allocation"), (False, "per-layer allocation, no layer dropped")):
            candidate = on_the_ladder(sensitivity, prior, model, layers_budget, allow_drop)
            if candidate is not None and candidate.structure not in found:
                found[candidate.structure] = replace(candidate, origin=origin)
        return list(found.values())
    width, structures = inputs.shape[2], []
    for keep in HEAD_KEEPS:
        for keep_ffn in FFN_KEEPS:
            plan = plan_pruning(
                inputs.heads.scores, keep, inputs.heads.order, ffn_scores=inputs.neurons.scores, keep_ffn=keep_ffn
            )
            structure = Structure.of_plan(plan, width)
            if model.predict(structure) - model.intercept <= layers_budget:
                structures.append((structure, f"global ranking, keep {keep:g} / keep-ffn {keep_ffn:g}"))
                break
    unique: dict[Structure, str] = {}  # one candidate per structure, the first origin named
    for structure, origin in structures:
        unique.setdefault(structure, origin)
    return [Candidate(s, origin, 1 / model.predict(s)) for s, origin in unique.items()]


def cost_prior(inputs: SearchInputs) -> CostPrior:
    """The allocation's cost shape: multiply-adds at the timed inputs' mean length, and fixed shares."""
    _, heads, width = inputs.shape
    hidden = inputs.loaded.model.get_input_embeddings().embedding_dim
    tokens = float(np.mean([single["input_ids"].shape[-1] for single in inputs.singles])) if inputs.singles else 1.0
    return CostPrior.of(hidden, heads, width, tokens)


def on_the_ladder(
    sensitivity: Sensitivity, prior: CostPrior, model: LatencyModel, layers_budget: float, allow_drop: bool
) -> Candidate | None:
    """The least-loss allocation under the prior at the highest rung (every LADDER_STEP of the full model's prior
    cost) within the budget's share of the full model's measured cost, stepping down while the measured model
    predicts it over the budget. That share is what repeated timings agree on (within a few tenths of a percent)
    while the model's single coefficients trade off against each other, so timing noise moves the choice by one
    rung at most, and only near a rung's edge. Its speed-up is the measured model's prediction."""
    layers, heads = len(sensitivity.dropped), max(sensitivity.head_counts)
    full = model.layer_cost(LayerShape(heads, max(sensitivity.neuron_counts))) * layers
    if full <= 0:
        return None
    for rung in range(math.floor(min(layers_budget / full, 1.0) / LADDER_STEP + 1e-9), 0, -1):
        found = allocate(sensitivity, prior, rung * LADDER_STEP * layers, allow_drop=allow_drop)
        if found is not None and model.predict(found) - model.intercept <= layers_budget:
            return Candidate(found, "", 1 / model.predict(found))
    return None


def judged(inputs: SearchInputs, candidate: Candidate) -> Candidate:
    """The candidate refitted by least squares and compared with the original (cached per structure)."""

    def judge() -> Judgement:
        model = inputs.pruned(candidate.structure)
        collective(recover, inputs.loaded.model, model, inputs.fit_batches, inputs.recovery)
        return inputs.judge.judge(TorchRunner("candidate", model))

    key = (inputs.loaded, inputs.heads, inputs.neurons, candidate.structure, inputs.recovery, inputs.fit_batches)
    verdict = inputs.cached("candidate judgement", (*key, inputs.judge), Judgement, judge)
    logger.info(
        f"latency target: {candidate.origin} ({candidate.structure.label}), predicted "
        f"{candidate.predicted_speedup:.2f}x: disagrees with the original on {verdict.fidelity.disagreement:.2%} of "
        f"{verdict.fidelity.rows} unlabelled rows, {verdict.selection.drop_points:+.2f} points on the selection rows"
    )
    return replace(candidate, judgement=verdict)


def confirm(inputs: SearchInputs, graphs: _Graphs, structure: Structure) -> Confirmation:
    """The structure's int8 graph (after the least-squares refit) timed beside the baseline."""
    model = inputs.pruned(structure)
    collective(recover, inputs.loaded.model, model, inputs.fit_batches, inputs.recovery)
    (timing,) = graphs.time([graphs.runner(model, "confirm")], [structure])
    met = inputs.target.met(timing.p50_ms, timing.speedup)
    return Confirmation(structure, timing.speedup, timing.p50_ms, timing.baseline_p50_ms, met)


@dataclass(frozen=True)
class _Plan:
    """One allocation under the (rescaled) latency model: the candidates, the best, the margin, and the ratio the
    model predicts for the best."""

    margin: float
    candidates: list[Candidate]
    best: Candidate
    predicted_ratio: float


def plan_and_judge(
    inputs: SearchInputs, model: LatencyModel, sensitivity: Sensitivity, target_ratio: float, scale: float
) -> _Plan:
    """Propose and judge the structures the rescaled model admits for the target; the least disagreeing wins."""
    scaled = rescaled(model, scale)
    layers_budget, margin = budget(scaled, target_ratio)
    candidates = [judged(inputs, c) for c in propose(inputs, scaled, sensitivity, layers_budget)]
    if not candidates:
        raise InputError(
            f"no structure is predicted to meet the target ({inputs.target.description}) with a "
            f"{(margin - 1) * 100:.1f}% margin in this machine's latency model (RMS error "
            f"{scaled.rms_error:.3f} of the baseline's latency); lower the target"
        )
    best = min(candidates, key=lambda c: (*c.judgement.key, -c.predicted_speedup))
    return _Plan(margin, candidates, best, 1 / best.predicted_speedup)


def search_target(inputs: SearchInputs, *, progress: bool = False) -> TargetSearch:
    """Plan, judge and confirm a structure for ``inputs.target`` (see the module docstring). A confirmation
    that misses the target, or runs more than OVERSHOOT faster than predicted (speed the accuracy could have
    kept), rescales the model by what was measured and plans again; the last plan that met the target ships."""
    with tempfile.TemporaryDirectory(prefix="attr-compress-target-") as scratch:
        graphs = _Graphs(inputs, Path(scratch))
        model = measure_latency_model(inputs, graphs)
        sensitivity = sensitivity_of(inputs, progress)
        target_ratio = inputs.target.ratio(model.baseline_p50_ms)
        confirmations: list[Confirmation] = []
        shipped, scale = None, 1.0
        for _ in range(REPLANS + 1):
            current = plan_and_judge(inputs, model, sensitivity, target_ratio, scale)
            if confirmations and current.best.structure == confirmations[-1].structure:
                break  # the rescaled model chose what was just measured: nothing new to learn
            confirmation = confirm(inputs, graphs, current.best.structure)
            confirmations.append(confirmation)
            logger.info(
                f"latency target: {current.best.structure.label} measured {confirmation.speedup:.2f}x beside the "
                f"original int8 graph ({'meets' if confirmation.met else 'misses'} the target)"
            )
            if confirmation.met:
                shipped = current
            if shipped is not None and (shipped is not current or not overshot(confirmation, current)):
                break
            scale *= (1 / confirmation.speedup) / current.predicted_ratio
    if shipped is None:
        raise InputError(
            f"the planned structure missed the target ({inputs.target.description}) when measured, "
            f"{len(confirmations)} times ({confirmations[-1].speedup:.2f}x last); lower the target"
        )
    return searched(inputs, model, target_ratio, shipped, confirmations)


def overshot(confirmation: Confirmation, planned: _Plan) -> bool:
    """Whether the structure measured more than OVERSHOOT faster than the model predicted (the model, not the
    judgement, left speed unused)."""
    return confirmation.speedup * planned.predicted_ratio > OVERSHOOT


def searched(
    inputs: SearchInputs, model: LatencyModel, target_ratio: float, shipped: _Plan, confirmations: list[Confirmation]
) -> TargetSearch:
    """The search record: the model, the shipped plan's candidates and why its best won, every confirmation."""
    best = shipped.best
    reason = (
        f"the least disagreement with the original on {best.judgement.fidelity.rows} unlabelled rows "
        f"({best.judgement.fidelity.disagreement:.2%}) of {len(shipped.candidates)} candidates predicted to meet the "
        f"target with a {(shipped.margin - 1) * 100:.1f}% margin: {best.origin}"
    )
    return TargetSearch(
        target=inputs.target.description,
        target_ratio=target_ratio,
        margin=shipped.margin,
        recipe=inputs.recipe.to_dict(),
        threads=inputs.threads,
        latency_model=model,
        candidates=shipped.candidates,
        chosen=best.structure,
        reason=reason,
        confirmations=confirmations,
        reused=list(inputs.reused),
    )


def rescaled(model: LatencyModel, scale: float) -> LatencyModel:
    """The model with every cost multiplied by ``scale`` (a confirmation measured it off by that factor)."""
    if scale == 1.0:
        return model
    return replace(
        model,
        intercept=model.intercept * scale,
        coefficients={name: value * scale for name, value in model.coefficients.items()},
    )
