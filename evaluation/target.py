"""Pick --keep and --keep-ffn for a latency target, by measuring candidates on this machine.

A target is a speed-up over the original model's int8 ONNX (Optimum's recipe) or a batch-1 latency
budget. Candidates are (head keep, FFN keep) pairs from a grid. Fewer heads or neurons never make a
model slower, so the search walks the grid's staircase: for each head keep, the largest FFN keep that
meets the target, found from the previous row's answer with about one measurement per step. Each
frontier candidate is then pruned, recovered, exported with the search's int8 recipe and with the same
recipe at the other weight granularity (per-channel / per-tensor), re-timed and scored on the selection
data; the most accurate int8 graph that meets the target wins, and its recipe is the one shipped.
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

from compressor.artifacts import JsonArtifact
from compressor.errors import InputError
from compressor.importance import HeadImportance
from compressor.modeling import LoadedModel
from compressor.neurons import NeuronImportance
from compressor.pruning import PrunePlan, plan_pruning, prune_model
from compressor.recovery import recover
from evaluation.encoded import EncodedData
from evaluation.measure import batch1_latency, torch_threads
from exporters.onnx_export import export_onnx
from exporters.recipes import Recipe, quantize_all
from exporters.runtime import OnnxRunner, Runner, TorchRunner

HEAD_KEEPS = (1.0, 0.75, 0.5, 0.4, 0.3, 0.2)
# The search times a candidate beside the baseline alone; the final report times seven variants in turn,
# which measured up to ~4% less favourably on our 2-core machine. Candidates must clear the target by 3%.
SEARCH_MARGIN = 1.03
FFN_KEEPS = (1.0, 0.75, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)


@dataclass(frozen=True)
class LatencyTarget:
    """--target-speedup (x the original int8 ONNX) or --latency-budget (ms p50 at batch 1)."""

    speedup: float | None = None
    budget_ms: float | None = None

    def __post_init__(self) -> None:
        if (self.speedup is None) == (self.budget_ms is None):
            raise InputError("pass exactly one of --target-speedup and --latency-budget")
        if self.speedup is not None and self.speedup <= 0:
            raise InputError(f"--target-speedup must be above 0, got {self.speedup}")
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise InputError(f"--latency-budget must be above 0 milliseconds, got {self.budget_ms}")

    def met(self, p50_ms: float, speedup: float, margin: float = 1.0) -> bool:
        """Whether a measurement meets the target, with ``margin`` (>= 1) to spare."""
        if self.speedup is not None:
            return speedup >= self.speedup * margin
        return p50_ms * margin <= self.budget_ms

    @property
    def description(self) -> str:
        if self.speedup is not None:
            return f"{self.speedup:g}x faster than the original int8 ONNX at batch 1"
        return f"at most {self.budget_ms:g} ms p50 at batch 1"


@dataclass(frozen=True)
class TargetSearch(JsonArtifact):
    """Every candidate measured, and the chosen (keep, keep_ffn)."""

    kind = "latency-target-search"

    target: str
    margin: float
    search_recipe: dict[str, Any]
    recipe: dict[str, Any]
    threads: int
    baseline_p50_ms: float
    candidates: list[dict[str, Any]]
    keep: float
    keep_ffn: float
    reason: str


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
        """One int8 graph per recipe, from one export (and one fusion) of ``model``, in folder ``name``."""
        folder = self.folder / name
        return quantize_all(export_onnx(model, self.loaded.tokenizer, folder), recipes, folder)

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
        return OnnxRunner(name, graph, threads=self.threads, disabled_optimizers=recipe.disabled_optimizers)

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


def _accuracy(runner: Runner, selection: EncodedData) -> float:
    predicted = np.concatenate([runner.logits(batch).argmax(-1) for batch in selection.batches])
    return float((predicted == selection.labels).mean())


def search_target(
    loaded: LoadedModel,
    heads: HeadImportance,
    neurons: NeuronImportance,
    target: LatencyTarget,
    recipe: Recipe,
    selection: EncodedData,
    fit_batches: Sequence[dict[str, torch.Tensor]],
    *,
    baseline_graph: Path,
    recovery: str,
    fit_examples: int,
    distill_steps: int = 200,
    seed: int = 0,
    threads: int = 1,
    timing_examples: int = 100,
    log: Callable[[str], None] = lambda message: None,
) -> TargetSearch:
    """Measure the staircase of (keep, keep_ffn) candidates and choose the most accurate that meets ``target``.

    ``baseline_graph`` is the original model's int8 graph by Optimum's recipe, the reference of every speed-up.
    Latency is measured on the first ``timing_examples`` of ``selection.singles`` (the pipeline puts the
    evaluation inputs there: latency depends on their lengths); accuracy on ``selection.batches`` after
    pruning and ``recovery`` (fitted on ``fit_batches``).
    """
    measured: dict[tuple[float, float], dict[str, Any]] = {}

    def plan_for(keep: float, keep_ffn: float) -> PrunePlan:
        return plan_pruning(heads.scores, keep, heads.order, ffn_scores=neurons.scores, keep_ffn=keep_ffn)

    with tempfile.TemporaryDirectory(prefix="attr-compress-target-") as scratch:
        timer = _Timer(loaded, recipe, selection.singles[:timing_examples], threads, Path(scratch), baseline_graph)

        def meets(keep: float, keep_ffn: float) -> bool:
            if (keep, keep_ffn) not in measured:
                row = {"keep": keep, "keep_ffn": keep_ffn, **timer.measure(plan_for(keep, keep_ffn))}
                row["meets_target"] = target.met(row["p50_ms"], row["speedup"], SEARCH_MARGIN)
                measured[keep, keep_ffn] = row
                log(
                    f"latency target: keep {keep:g} / keep-ffn {keep_ffn:g}: {row['p50_ms']:.3f} ms, "
                    f"{row['speedup']:.2f}x the original int8 ({'meets' if row['meets_target'] else 'misses'} "
                    "the target)"
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
                f"no candidate meets the target ({target.description}); the fastest measured, keep "
                f"{fastest['keep']:g} / keep-ffn {fastest['keep_ffn']:g}, ran {fastest['p50_ms']:.3f} ms "
                f"({fastest['speedup']:.2f}x); lower the target"
            )
        choices = []
        for keep, keep_ffn in frontier:
            log(f"latency target: accuracy of keep {keep:g} / keep-ffn {keep_ffn:g} after {recovery} recovery")
            model = prune_model(copy.deepcopy(loaded.model), plan_for(keep, keep_ffn))
            recover(
                recovery,
                loaded.model,
                model,
                fit_batches,
                examples=fit_examples,
                distill_steps=distill_steps,
                seed=seed,
            )
            row = measured[keep, keep_ffn]
            row["selection_accuracy_fp32"] = _accuracy(TorchRunner("fp32", model), selection)
            row["int8"] = []
            # refitted weights can quantise worse than the original's: try both weight granularities
            variants = (recipe, replace(recipe, per_channel=not recipe.per_channel))
            name = f"recovered-{keep:g}-{keep_ffn:g}"
            for variant, graph in zip(variants, timer.build(model, variants, name), strict=True):
                runner = timer.runner(graph, variant, f"{name}-{variant.name}")
                timing = timer.time(runner)
                result = {
                    "recipe": variant.to_dict(),
                    **timing,
                    "meets_target": target.met(timing["p50_ms"], timing["speedup"], SEARCH_MARGIN),
                    "selection_accuracy": _accuracy(runner, selection),
                }
                row["int8"].append(result)
                if result["meets_target"]:
                    choices.append((keep, keep_ffn, result))
            timer.discard(name)
    if not choices:
        raise InputError(
            f"no candidate met the target ({target.description}) once refitted and re-timed; lower the target"
        )
    keep, keep_ffn, chosen = max(choices, key=lambda choice: (choice[2]["selection_accuracy"], choice[2]["speedup"]))
    return TargetSearch(
        target=target.description,
        margin=SEARCH_MARGIN,
        search_recipe=recipe.to_dict(),
        recipe=chosen["recipe"],
        threads=threads,
        baseline_p50_ms=float(np.median([row["baseline_p50_ms"] for row in measured.values()])),
        candidates=list(measured.values()),
        keep=keep,
        keep_ffn=keep_ffn,
        reason=(
            f"most accurate int8 graph on the selection data ({chosen['selection_accuracy']:.4f}) among "
            f"{len(choices)} (candidate, recipe) pairs on the frontier that meet the target; measured "
            f"{chosen['speedup']:.2f}x ({chosen['p50_ms']:.3f} ms) with {chosen['recipe']['name']}"
        ),
    )
