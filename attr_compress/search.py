"""Pick --keep and --keep-ffn for a latency target, by measuring candidates on this machine.

A target is a speed-up over the original model's int8 ONNX (Optimum's recipe) or a batch-1 latency
budget. Candidates are (head keep, FFN keep) pairs from a grid. Fewer heads or neurons never make a
model slower, so the search walks the grid's staircase: for each head keep, the largest FFN keep that
meets the target, found from the previous row's answer with about one measurement per step. Each
frontier candidate is then pruned, recovered, exported with the search's int8 recipe and with the same
recipe at the other weight granularity (per-channel / per-tensor), re-timed and scored on the selection
data; the most accurate int8 graph that meets the target wins, and its recipe is the one shipped.

Every step is a stage call: ``plan_pruning`` -> ``prune_model`` -> ``recover`` -> ``export_verified`` ->
``quantize_all`` -> timing and accuracy.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressor.encoded import EncodedData
from compressor.errors import InputError
from compressor.importance import HeadImportance
from compressor.modeling import LoadedModel
from compressor.neurons import NeuronImportance
from compressor.pruning import PrunePlan, plan_pruning, prune_model
from compressor.recovery import RecoveryOptions, recover
from evaluation.measure import accuracy
from evaluation.target import SEARCH_MARGIN, LatencyTarget, TargetSearch
from exporters.recipes import Recipe
from exporters.runtime import OnnxRunner, TorchRunner, batch1_latency, torch_threads
from exporters.verified import export_verified, quantize_all

HEAD_KEEPS = (1.0, 0.75, 0.5, 0.4, 0.3, 0.2)
FFN_KEEPS = (1.0, 0.75, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)
Log = Callable[[str], None]


class _Timer:
    """Builds candidate int8 graphs and times them round-robin against the original int8 graph (Optimum's
    recipe, ``baseline_graph``)."""

    def __init__(
        self,
        loaded: LoadedModel,
        recipe: Recipe,
        singles: Sequence[dict[str, np.ndarray]],
        threads: int,
        folder: Path,
        baseline_graph: Path,
    ) -> None:
        self.loaded, self.recipe, self.singles, self.threads, self.folder = loaded, recipe, singles, threads, folder
        self.baseline = OnnxRunner("original int8", baseline_graph, threads=threads)

    def build(self, model: Any, recipes: Sequence[Recipe], name: str) -> list[Path]:
        """One int8 graph per recipe, from one verified export (and one fusion) of ``model``, in folder ``name``."""
        parity = [{key: value[:1] for key, value in single.items()} for single in self.singles[:2]]
        fuse = any(recipe.graph == "fused" for recipe in recipes)
        graphs = export_verified(
            model, self.loaded.tokenizer, self.folder / name, TorchRunner(name, model), parity, fuse=fuse
        )
        return quantize_all(graphs, recipes, self.folder / name)

    def measure(self, plan: PrunePlan) -> dict[str, float]:
        """Prune by ``plan``, build the int8 graph with the search's recipe and time it (``time``)."""
        name = f"keep{plan.keep:g}-ffn{plan.keep_ffn:g}"
        model = prune_model(copy.deepcopy(self.loaded.model), plan)
        (graph,) = self.build(model, [self.recipe], name)
        timing = self.time(self.runner(graph, self.recipe, name))
        self.discard(name)
        return timing

    def discard(self, name: str) -> None:
        """Delete a candidate's graphs once its sessions exist (they hold the graph in memory): scratch stays small."""
        shutil.rmtree(self.folder / name)

    def runner(self, graph: Path, recipe: Recipe, name: str) -> OnnxRunner:
        return OnnxRunner(name, graph, threads=self.threads)

    def time(self, candidate: OnnxRunner) -> dict[str, float]:
        """Candidate p50 ms, baseline p50 ms and the speed-up at batch 1, measured side by side; the speed-up
        is the median over examples of baseline time / candidate time (paired, so load drift cancels)."""
        with torch_threads(self.threads):
            latency = batch1_latency([self.baseline, candidate], self.singles, keep_samples=True)
        ours, theirs = latency[candidate.name], latency[self.baseline.name]
        return {
            "p50_ms": ours["latency_p50_ms"],
            "baseline_p50_ms": theirs["latency_p50_ms"],
            "speedup": float(np.median(theirs["samples_ms"] / ours["samples_ms"])),
        }


@dataclass(frozen=True)
class SearchInputs:
    """What the search prunes and judges with: the scores, the target, the data and the recovery."""

    loaded: LoadedModel
    heads: HeadImportance
    neurons: NeuronImportance
    target: LatencyTarget
    selection: EncodedData
    fit_batches: Sequence[dict[str, torch.Tensor]]
    recovery: RecoveryOptions  # how candidates are judged: lsq (distillation comes after the search)
    reference_accuracy: float  # the original's (PyTorch fp32) on the selection rows
    max_drop: float  # accuracy points a candidate may lose against it

    def plan(self, keep: float, keep_ffn: float) -> PrunePlan:
        return plan_pruning(
            self.heads.scores, keep, self.heads.order, ffn_scores=self.neurons.scores, keep_ffn=keep_ffn
        )


def search_target(
    inputs: SearchInputs,
    recipe: Recipe,
    *,
    baseline_graph: Path,
    threads: int = 1,
    timing_examples: int = 100,
    log: Log = lambda message: None,
) -> TargetSearch:
    """Measure the staircase of (keep, keep_ffn) candidates and choose the most accurate that meets the target.

    ``baseline_graph`` is the original model's int8 graph by Optimum's recipe, the reference of every speed-up.
    Latency is measured on the first ``timing_examples`` of ``inputs.selection.singles`` (the pipeline puts the
    evaluation inputs there: latency depends on their lengths); accuracy on ``inputs.selection.batches``.
    """
    measured: dict[tuple[float, float], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="attr-compress-target-") as scratch:
        singles = inputs.selection.singles[:timing_examples]
        timer = _Timer(inputs.loaded, recipe, singles, threads, Path(scratch), baseline_graph)
        frontier = _staircase(inputs, timer, measured, log)
        choices = [
            choice
            for keep, keep_ffn in frontier
            for choice in _judge(inputs, timer, measured[keep, keep_ffn], recipe, log)
        ]
    if not choices:
        raise InputError(
            f"no candidate met the target ({inputs.target.description}) once refitted and re-timed; lower the target"
        )
    row, chosen, reason = _choose(choices, inputs)
    return TargetSearch(
        target=inputs.target.description,
        margin=SEARCH_MARGIN,
        search_recipe=recipe.to_dict(),
        recipe=chosen["recipe"],
        threads=threads,
        baseline_p50_ms=float(np.median([row["baseline_p50_ms"] for row in measured.values()])),
        candidates=list(measured.values()),
        keep=row["keep"],
        keep_ffn=row["keep_ffn"],
        reason=reason,
        reference_accuracy=inputs.reference_accuracy,
        max_drop=inputs.max_drop,
    )


def _choose(
    choices: list[tuple[dict[str, Any], dict[str, Any]]], inputs: SearchInputs
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The fastest (candidate, recipe) within --max-drop of the original on the selection rows; if none is
    within it yet, the most accurate (the final recovery may still bring it there; the run checks)."""
    floor = inputs.reference_accuracy - inputs.max_drop / 100
    within = [choice for choice in choices if choice[1]["selection_accuracy"] >= floor]
    bound = (
        f"within --max-drop {inputs.max_drop:g} of the original's {inputs.reference_accuracy:.4f} on the selection "
        f"rows (after {inputs.recovery.method} recovery)"
    )
    if within:
        row, chosen = max(within, key=lambda choice: (choice[1]["speedup"], choice[1]["selection_accuracy"]))
        rule = f"the fastest of {len(within)} (candidate, recipe) pairs that meet the target and stay {bound}"
    else:
        row, chosen = max(choices, key=lambda choice: (choice[1]["selection_accuracy"], choice[1]["speedup"]))
        rule = f"none of {len(choices)} pairs that meet the target stayed {bound}; the most accurate"
    return (
        row,
        chosen,
        (
            f"{rule}: int8 {chosen['selection_accuracy']:.4f}, {chosen['speedup']:.2f}x ({chosen['p50_ms']:.3f} ms) "
            f"with {chosen['recipe']['name']}"
        ),
    )


def _staircase(
    inputs: SearchInputs, timer: _Timer, measured: dict[tuple[float, float], dict[str, Any]], log: Log
) -> list[tuple[float, float]]:
    """For each head keep, the largest FFN keep that meets the target (every measurement lands in ``measured``)."""

    def meets(keep: float, keep_ffn: float) -> bool:
        if (keep, keep_ffn) not in measured:
            row = {"keep": keep, "keep_ffn": keep_ffn, **timer.measure(inputs.plan(keep, keep_ffn))}
            row["meets_target"] = inputs.target.met(row["p50_ms"], row["speedup"], SEARCH_MARGIN)
            measured[keep, keep_ffn] = row
            verdict = "meets" if row["meets_target"] else "misses"
            log(
                f"latency target: keep {keep:g} / keep-ffn {keep_ffn:g}: {row['p50_ms']:.3f} ms, "
                f"{row['speedup']:.2f}x the original int8 ({verdict} the target)"
            )
        return measured[keep, keep_ffn]["meets_target"]

    frontier: list[tuple[float, float]] = []
    step: int | None = None  # index in FFN_KEEPS of the previous row's answer
    for keep in HEAD_KEEPS:
        if step is None:
            step = next((index for index, keep_ffn in enumerate(FFN_KEEPS) if meets(keep, keep_ffn)), None)
            if step is None:
                continue
        elif not meets(keep, FFN_KEEPS[step]):
            continue  # noise against monotonicity: this row has no confirmed answer
        while step > 0 and meets(keep, FFN_KEEPS[step - 1]):
            step -= 1
        frontier.append((keep, FFN_KEEPS[step]))
    if not frontier:
        fastest = min(measured.values(), key=lambda row: row["p50_ms"])
        raise InputError(
            f"no candidate meets the target ({inputs.target.description}); the fastest measured, keep "
            f"{fastest['keep']:g} / keep-ffn {fastest['keep_ffn']:g}, ran {fastest['p50_ms']:.3f} ms "
            f"({fastest['speedup']:.2f}x); lower the target"
        )
    return frontier


def _judge(
    inputs: SearchInputs, timer: _Timer, row: dict[str, Any], recipe: Recipe, log: Log
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Prune and recover one frontier candidate, build its int8 graphs at both weight granularities (refitted
    weights can quantise worse than the original's), re-time and score them; the (row, result) pairs that
    meet the target."""
    keep, keep_ffn = row["keep"], row["keep_ffn"]
    log(f"latency target: accuracy of keep {keep:g} / keep-ffn {keep_ffn:g} after {inputs.recovery.method} recovery")
    model = prune_model(copy.deepcopy(inputs.loaded.model), inputs.plan(keep, keep_ffn))
    recover(inputs.loaded.model, model, inputs.fit_batches, inputs.recovery)
    row["selection_accuracy_fp32"] = accuracy(TorchRunner("fp32", model), inputs.selection)
    row["int8"] = []
    variants = (recipe, replace(recipe, per_channel=not recipe.per_channel))
    name = f"recovered-{keep:g}-{keep_ffn:g}"
    for variant, graph in zip(variants, timer.build(model, variants, name), strict=True):
        runner = timer.runner(graph, variant, f"{name}-{variant.name}")
        timing = timer.time(runner)
        met = inputs.target.met(timing["p50_ms"], timing["speedup"], SEARCH_MARGIN)
        row["int8"].append(
            {
                "recipe": variant.to_dict(),
                **timing,
                "meets_target": met,
                "selection_accuracy": accuracy(runner, inputs.selection),
            }
        )
    timer.discard(name)
    return [(row, result) for result in row["int8"] if result["meets_target"]]
