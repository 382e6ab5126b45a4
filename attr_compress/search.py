"""Pick --keep and --keep-ffn for a latency target, by measuring candidates on this machine.

A target is a speed-up over the original model's int8 ONNX (Optimum's recipe) or a batch-1 latency
budget. Candidates are (head keep, FFN keep, dropped layers) from a grid. Fewer heads or neurons never
make a model slower, so the search walks the grid's staircase: for each head keep, the largest FFN keep
that meets the target, found from the previous row's answer with about one measurement per step.

Whole layers cost time of their own at batch 1 (LayerNorms, quantisation of activations, attention set-up:
on MiniLM-L6 at 2.5x, removing a layer that had kept 4 heads and no FFN neuron saved 12% of the latency).
So the search can also try dropping the layer whose FFN neurons carry the least attribution (IG in units
of the output, comparable across layers; ``--try-dropping-layers``), with the heads and neurons it held going
to the other layers. Its staircase is walked under a latency model fitted on this machine's measurements
(ms per head, per FFN neuron and per layer, least squares), so each row costs about one confirming
measurement.

Each frontier candidate is then pruned and recovered and scored in PyTorch fp32 on the selection data;
the most accurate are exported with the search's int8 recipe and with the same recipe at the other weight
granularity (per-channel / per-tensor), re-timed and scored again; the fastest int8 graph within
--max-drop wins (else the most accurate in fp32), and its recipe is the one shipped.

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

from compressor.cache import StageCache
from compressor.encoded import EncodedData
from compressor.errors import InputError
from compressor.importance import HeadImportance
from compressor.modeling import LoadedModel
from compressor.neurons import NeuronImportance
from compressor.pruning import PrunePlan, plan_pruning, prune_model
from compressor.recovery import RecoveryOptions, recover
from evaluation.measure import accuracy
from evaluation.target import SEARCH_MARGIN, LatencyModel, LatencyTarget, TargetSearch
from exporters.recipes import Recipe
from exporters.runtime import OnnxRunner, TorchRunner, batch1_latency, torch_threads
from exporters.verified import export_verified, quantize_all

HEAD_KEEPS = (1.0, 0.75, 0.5, 0.4, 0.3, 0.2)
FFN_KEEPS = (1.0, 0.75, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)
INT8_JUDGED = 4  # frontier candidates (best fp32 accuracy first) built in int8 until this many met the target
Log = Callable[[str], None]
Key = tuple[float, float, tuple[int, ...]]  # (keep, keep_ffn, dropped layers)


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
        name = f"keep{plan.keep:g}-ffn{plan.keep_ffn:g}-drop{'-'.join(map(str, plan.dropped_layers))}"
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
    drop_layers: bool = False  # also try dropping the least-attributed layer (--try-dropping-layers)
    cache: StageCache = StageCache(None)  # measured candidates, kept so a repeated or resumed search reuses them
    cache_inputs: tuple[Any, ...] | None = None  # the model, rows, recovery and machine every measurement depends on

    def cached(self, stage: str, parts: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        if self.cache_inputs is None:
            return compute()
        return self.cache.json(stage, (self.cache_inputs, parts), compute)[0]

    def plan(self, key: Key) -> PrunePlan:
        keep, keep_ffn, drops = key
        return plan_pruning(
            self.heads.scores,
            keep,
            self.heads.order,
            ffn_scores=self.neurons.scores,
            keep_ffn=keep_ffn,
            drop_layers=drops,
        )

    def drop_options(self) -> list[tuple[int, ...]]:
        """None; with ``drop_layers``, also the layer whose FFN neurons carry the least attribution (3+ layers).
        Off by default: on the demo model every layer-dropped candidate scored below the whole-depth ones after
        the least-squares refit (best .8647 against .8716 on the selection rows; two layers dropped: 3-15 points
        lower still) and the extra staircase cost about two minutes of the search."""
        mass = self.neurons.array.sum(axis=1)
        if not self.drop_layers or len(mass) < 3:
            return [()]
        order = [int(layer) for layer in np.argsort(mass, kind="stable")]
        return [(), (order[0],)]


def search_target(
    inputs: SearchInputs,
    recipe: Recipe,
    *,
    baseline_graph: Path,
    threads: int = 1,
    timing_examples: int = 100,
    log: Log = lambda message: None,
) -> TargetSearch:
    """Measure the staircases of candidates and choose the fastest within --max-drop that meets the target.

    ``baseline_graph`` is the original model's int8 graph by Optimum's recipe, the reference of every speed-up.
    Latency is measured on the first ``timing_examples`` of ``inputs.selection.singles`` (the pipeline puts the
    evaluation inputs there: latency depends on their lengths); accuracy on ``inputs.selection.batches``.
    """
    measured: dict[Key, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="attr-compress-target-") as scratch:
        singles = inputs.selection.singles[:timing_examples]
        timer = _Timer(inputs.loaded, recipe, singles, threads, Path(scratch), baseline_graph)
        stairs = _Stairs(inputs, timer, measured, log)
        frontier = stairs.walk(())
        for drops in inputs.drop_options()[1:]:  # without an answer to calibrate on, walk the whole staircase
            frontier += stairs.walk_predicted(drops, frontier[0]) if frontier else stairs.walk(drops)
        if not frontier:
            fastest = min(measured.values(), key=lambda row: row["p50_ms"])
            raise InputError(
                f"no candidate meets the target ({inputs.target.description}); the fastest measured, "
                f"{_label((fastest['keep'], fastest['keep_ffn'], tuple(fastest['drop_layers'])))}, ran "
                f"{fastest['p50_ms']:.3f} ms ({fastest['speedup']:.2f}x); lower the target"
            )
        choices = _Judge(inputs, stairs, recipe, log).choices(frontier)
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
        dropped_layers=list(row["drop_layers"]),
        latency_model=stairs.latency_model(),
    )


def _choose(
    choices: list[tuple[dict[str, Any], dict[str, Any]]], inputs: SearchInputs
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The fastest (candidate, recipe) within --max-drop of the original on the selection rows; if none is
    within it yet, the most accurate in fp32 after recovery (then int8): distillation, which comes next, changes
    the weights, and the int8 error of least-squares weights is a noisy guide to the error after it (on the demo
    the two granularities of one refitted model differed by up to 8 points). The run checks the result."""
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
        row, chosen = max(
            choices,
            key=lambda choice: (
                choice[0]["selection_accuracy_fp32"],
                choice[1]["selection_accuracy"],
                choice[1]["speedup"],
            ),
        )
        rule = f"none of {len(choices)} pairs that meet the target stayed {bound}; the most accurate in fp32"
    return (
        row,
        chosen,
        (
            f"{rule}: {_label((row['keep'], row['keep_ffn'], tuple(row['drop_layers'])))}"
            + f", fp32 {row['selection_accuracy_fp32']:.4f}, int8 {chosen['selection_accuracy']:.4f}, "
            f"{chosen['speedup']:.2f}x ({chosen['p50_ms']:.3f} ms) with {chosen['recipe']['name']}"
        ),
    )


class _Stairs:
    """Measures candidates (each lands in ``measured``) and walks the staircase of one drop option."""

    def __init__(self, inputs: SearchInputs, timer: _Timer, measured: dict[Key, dict[str, Any]], log: Log) -> None:
        self.inputs, self.timer, self.measured, self.log = inputs, timer, measured, log
        self.width = inputs.neurons.array.shape[1]

    def meets(self, key: Key) -> bool:
        if key not in self.measured:
            plan = self.inputs.plan(key)
            keep, keep_ffn, drops = key
            timing = self.inputs.cached(
                "candidate timing", (key, self.timer.recipe.to_dict()), lambda: self.timer.measure(plan)
            )
            row: dict[str, Any] = {"keep": keep, "keep_ffn": keep_ffn, "drop_layers": list(drops), **timing}
            row.update(structure_counts(plan, self.width))
            row["meets_target"] = self.inputs.target.met(row["p50_ms"], row["speedup"], SEARCH_MARGIN)
            self.measured[key] = row
            self.log(
                f"latency target: {_label(key)}: {row['p50_ms']:.3f} ms, "
                f"{row['speedup']:.2f}x the original int8 ({'meets' if row['meets_target'] else 'misses'} the target)"
            )
        return self.measured[key]["meets_target"]

    def walk(self, drops: tuple[int, ...]) -> list[Key]:
        """For each head keep, the largest FFN keep that meets the target. A row starts from the previous row's
        answer (fewer heads only run faster), the first row from the smallest FFN keep: a row that misses
        there has no answer, at the cost of one measurement."""
        frontier: list[Key] = []
        step: int | None = None  # index in FFN_KEEPS of the previous row's answer
        for keep in HEAD_KEEPS:
            start = len(FFN_KEEPS) - 1 if step is None else step
            if not self.meets((keep, FFN_KEEPS[start], drops)):
                continue  # too slow even so (or noise against monotonicity): no confirmed answer in this row
            step = start
            while step > 0 and self.meets((keep, FFN_KEEPS[step - 1], drops)):
                step -= 1
            frontier.append((keep, FFN_KEEPS[step], drops))
        return frontier

    def walk_predicted(self, drops: tuple[int, ...], calibration: Key) -> list[Key]:
        """The staircase with ``drops``: one calibrating measurement (a known answer with the layers dropped),
        then per head keep the largest FFN keep the fitted latency model says meets the target, confirmed by
        measurement (stepping to smaller FFN keeps while it misses)."""
        self.meets((calibration[0], calibration[1], drops))
        frontier: list[Key] = []
        for keep in HEAD_KEEPS:
            model = self.latency_model()
            step = next(
                (i for i, keep_ffn in enumerate(FFN_KEEPS) if self._predicted_to_meet(model, (keep, keep_ffn, drops))),
                None,
            )
            while step is not None and step < len(FFN_KEEPS) and not self.meets((keep, FFN_KEEPS[step], drops)):
                step += 1
            if step is not None and step < len(FFN_KEEPS):
                frontier.append((keep, FFN_KEEPS[step], drops))
        return frontier

    def _predicted_to_meet(self, model: LatencyModel, key: Key) -> bool:
        p50 = model.predict(**structure_counts(self.inputs.plan(key), self.width))
        baseline = float(np.median([row["baseline_p50_ms"] for row in self.measured.values()]))
        return self.inputs.target.met(p50, baseline / p50, SEARCH_MARGIN)

    def latency_model(self) -> LatencyModel:
        return LatencyModel.fit(list(self.measured.values()))


def structure_counts(plan: PrunePlan, width: int) -> dict[str, int]:
    """What batch-1 latency depends on: heads, FFN neurons (``width`` per layer when unpruned), layers kept."""
    neurons = plan.ffn_kept_per_layer
    layers = len(plan.kept_layers)
    return {
        "heads": plan.kept_heads,
        "neurons": sum(neurons) if neurons is not None else layers * width,
        "layers": layers,
    }


class _Judge:
    """Candidates after recovery: every one scored in fp32 on the selection rows; then, most accurate first,
    int8 graphs built, re-timed and scored until ``INT8_JUDGED`` of them met the target again. A candidate at
    the target's edge can miss it when re-timed: the next smaller FFN keep of its row then takes its turn."""

    def __init__(self, inputs: SearchInputs, stairs: _Stairs, recipe: Recipe, log: Log) -> None:
        self.inputs, self.stairs, self.recipe, self.log = inputs, stairs, recipe, log
        self.models: dict[Key, Any] = {}

    def recovered(self, key: Key) -> Any:
        if key not in self.models:
            self.models[key] = prune_model(copy.deepcopy(self.inputs.loaded.model), self.inputs.plan(key))
            recover(self.inputs.loaded.model, self.models[key], self.inputs.fit_batches, self.inputs.recovery)
        return self.models[key]

    def fp32(self, key: Key) -> float:
        self.log(f"latency target: accuracy of {_label(key)} after {self.inputs.recovery.method} recovery")
        row = self.stairs.measured[key]
        row["selection_accuracy_fp32"] = self.inputs.cached(
            "candidate accuracy",
            (key,),
            lambda: accuracy(TorchRunner("fp32", self.recovered(key)), self.inputs.selection),
        )
        return row["selection_accuracy_fp32"]

    def int8(self, key: Key) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The (row, result) pairs of the candidate's int8 graphs that met the target when re-timed."""
        row = self.stairs.measured[key]
        row["int8"] = self.inputs.cached(
            "candidate int8",
            (key, self.recipe.to_dict()),
            lambda: _judge_int8(self.inputs, self.stairs.timer, row, self.recovered(key), self.recipe),
        )
        for result in row["int8"]:  # the target may differ from the run that cached it
            result["meets_target"] = self.inputs.target.met(result["p50_ms"], result["speedup"], SEARCH_MARGIN)
        return [(row, result) for result in row["int8"] if result["meets_target"]]

    def choices(self, frontier: list[Key]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        accuracy_of = {key: self.fp32(key) for key in frontier}
        queue = sorted(frontier, key=lambda key: -accuracy_of[key])
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        meeting = 0
        while queue and meeting < INT8_JUDGED:
            key = queue.pop(0)
            met = self.int8(key)
            meeting += bool(met)
            pairs += met
            smaller = _smaller_ffn(key)
            if not met and smaller is not None and smaller not in accuracy_of and self.stairs.meets(smaller):
                accuracy_of[smaller] = self.fp32(smaller)
                queue = sorted([*queue, smaller], key=lambda key: -accuracy_of[key])
        return pairs


def _smaller_ffn(key: Key) -> Key | None:
    keep, keep_ffn, drops = key
    index = FFN_KEEPS.index(keep_ffn)
    return (keep, FFN_KEEPS[index + 1], drops) if index + 1 < len(FFN_KEEPS) else None


def _judge_int8(
    inputs: SearchInputs, timer: _Timer, row: dict[str, Any], model: Any, recipe: Recipe
) -> list[dict[str, Any]]:
    """The candidate's int8 graphs at both weight granularities (refitted weights can quantise worse than the
    original's), re-timed and scored on the selection rows."""
    results = []
    variants = (recipe, replace(recipe, per_channel=not recipe.per_channel))
    name = f"recovered-{row['keep']:g}-{row['keep_ffn']:g}-{'-'.join(map(str, row['drop_layers']))}"
    for variant, graph in zip(variants, timer.build(model, variants, name), strict=True):
        runner = timer.runner(graph, variant, f"{name}-{variant.name}")
        results.append(
            {
                "recipe": variant.to_dict(),
                **timer.time(runner),
                "selection_accuracy": accuracy(runner, inputs.selection),
            }
        )
    timer.discard(name)
    return results


def _label(key: Key) -> str:
    return TargetSearch.label(*key)
