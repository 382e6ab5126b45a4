"""Per-layer structures: how many heads and FFN neurons each layer keeps, or whether it is dropped whole.

A latency target is met at the least loss by allocating per layer (SPDY, ZipLM, Kwon et al. 2022): each
layer's *sensitivity* is measured once, as the mean KL divergence of the model's class distribution from the
original's when that layer alone is thinned to k heads (or k FFN neurons, or removed), with attribution
choosing which heads and neurons stay inside the layer; a dynamic programme over layers then picks the
per-layer shapes whose summed loss is least while their summed cost, from a latency model measured on this
machine, stays within the budget. Emptying a layer's attention or FFN block is one of the choices: the exported
graph then has no matrix product for it (``without_empty_blocks``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.models.families import (
    classify,
    embed,
    encoder_layers,
    family_of,
    heads_of,
    layer_mask,
    part,
    run_layer,
)
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.pruning.prune import PrunePlan
from attr_compress.compressor.recovery.lsq import DEFAULT_RIDGE


@dataclass(frozen=True)
class LayerShape:
    """One layer of a structure: heads and FFN neurons kept, or the whole layer dropped."""

    heads: int
    neurons: int
    dropped: bool = False


@dataclass(frozen=True)
class Structure:
    """Every layer's shape; ``features`` are what batch-1 latency depends on."""

    layers: tuple[LayerShape, ...]

    @property
    def kept(self) -> list[LayerShape]:
        return [layer for layer in self.layers if not layer.dropped]

    def features(self) -> dict[str, int]:
        kept = self.kept
        return {
            "layers": len(kept),
            "attention_blocks": sum(layer.heads > 0 for layer in kept),
            "heads": sum(layer.heads for layer in kept),
            "ffn_blocks": sum(layer.neurons > 0 for layer in kept),
            "neurons": sum(layer.neurons for layer in kept),
        }

    @property
    def label(self) -> str:
        """For people: heads and FFN neurons per layer, '-' for a dropped layer."""
        heads = ",".join("-" if layer.dropped else str(layer.heads) for layer in self.layers)
        neurons = ",".join("-" if layer.dropped else str(layer.neurons) for layer in self.layers)
        return f"heads {heads} / FFN {neurons}"

    @classmethod
    def uniform(cls, layers: int, heads: int, neurons: int) -> Structure:
        return cls(tuple(LayerShape(heads, neurons) for _ in range(layers)))

    @classmethod
    def of_plan(cls, plan: PrunePlan, width: int) -> Structure:
        neurons = plan.ffn_kept_per_layer or [width] * len(plan.head_mask)
        return cls(
            tuple(
                LayerShape(heads, count, layer in plan.dropped_layers)
                for layer, (heads, count) in enumerate(zip(plan.heads_kept_per_layer, neurons, strict=True))
            )
        )


def _top(scores: np.ndarray, count: int) -> list[int]:
    """1 for the ``count`` highest scores of one layer (ties: the earlier unit), 0 elsewhere."""
    mask = np.zeros(len(scores), dtype=int)
    if count > 0:
        mask[np.argsort(-scores, kind="stable")[:count]] = 1
    return mask.tolist()


def plan_structure(structure: Structure, head_scores: np.ndarray, ffn_scores: np.ndarray) -> PrunePlan:
    """The plan that gives each layer its shape, keeping the heads and neurons attribution ranks highest inside
    it (a dropped layer keeps nothing)."""
    heads, neurons = np.asarray(head_scores, dtype=float), np.asarray(ffn_scores, dtype=float)
    head_mask = [_top(heads[i], 0 if s.dropped else s.heads) for i, s in enumerate(structure.layers)]
    ffn_mask = [_top(neurons[i], 0 if s.dropped else s.neurons) for i, s in enumerate(structure.layers)]
    kept = int(np.sum(head_mask))
    kept_neurons = int(np.sum(ffn_mask))
    order = np.argsort(heads.ravel(), kind="stable")
    return PrunePlan(
        keep=kept / heads.size,
        total_heads=heads.size,
        kept_heads=kept,
        head_mask=head_mask,
        order=[[int(i) // heads.shape[1], int(i) % heads.shape[1]] for i in order],
        keep_ffn=kept_neurons / neurons.size,
        ffn_mask=ffn_mask,
        dropped_layers=[i for i, shape in enumerate(structure.layers) if shape.dropped],
    )


def neuron_grid(width: int, steps: int = 16) -> list[int]:
    """FFN widths a layer may keep: 0, width/steps, ..., width."""
    return sorted({round(width * k / steps) for k in range(steps + 1)})


@dataclass(frozen=True)
class Sensitivity(JsonArtifact):
    """Per layer, the mean KL(original || thinned) in nats when only that layer is thinned: to each head count
    (``attention[layer][i]`` for ``head_counts[i]``), to each FFN width (``ffn``), or dropped whole."""

    kind = "layer-sensitivity"

    head_counts: list[int]
    neuron_counts: list[int]
    attention: list[list[float]]
    ffn: list[list[float]]
    dropped: list[float]
    rows: int


class _Thinning:
    """Forward passes of the original with one layer thinned by masks (equal to pruning: a masked head's context
    and a masked neuron's activation are zero), from that layer's cached input upwards. The thinned block's
    output projection is refitted first, by the damped least squares the candidates get (``recover_lsq``), on
    the kept units only: what a layer loses is measured as it will be after the refit."""

    def __init__(self, model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]], ridge: float) -> None:
        self.model, self.family, self.layers, self.ridge = model, family_of(model), encoder_layers(model), ridge
        self.masks = [layer_mask(model, batch["attention_mask"]) for batch in batches]
        self.tokens = [batch["attention_mask"].bool() for batch in batches]
        with torch.no_grad():
            states = [embed(model, batch) for batch in batches]
            self.inputs: list[list[torch.Tensor]] = []  # [layer][batch]
            for layer in self.layers:
                self.inputs.append(states)
                states = [run_layer(layer, h, m) for h, m in zip(states, self.masks, strict=True)]
            self.reference = [torch.log_softmax(classify(model, h), dim=-1) for h in states]

    def gram(self, start: int, projection: str) -> np.ndarray:
        """[X 1]^T [X 1] of the projection's inputs on the real tokens (the classifier's token in the last layer)."""
        module = part(self.layers[start], projection)
        captured: list[torch.Tensor] = []
        handle = module.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            with torch.no_grad():
                for states, mask in zip(self.inputs[start], self.masks, strict=True):
                    run_layer(self.layers[start], states, mask)
        finally:
            handle.remove()
        last = start == len(self.layers) - 1
        rows = [x[:, :1] if last else x[real] for x, real in zip(captured, self.tokens, strict=True)]
        x = torch.cat([row.reshape(-1, row.shape[-1]) for row in rows]).double()
        x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        return (x.T @ x).numpy()

    def refitted(self, start: int, projection: str, kept: np.ndarray, gram: np.ndarray) -> tuple[Any, Any]:
        """The projection's weight and bias refitted on the ``kept`` inputs to give the original's outputs
        (ridge toward its weights), the other inputs' columns zero."""
        linear = part(self.layers[start], projection)
        weight, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
        full = np.vstack([weight.T, bias[None]])  # [inputs + 1, outputs]: the original's map
        index = np.r_[np.flatnonzero(kept), gram.shape[0] - 1]
        sub = gram[np.ix_(index, index)]
        penalty = self.ridge * max(float(np.trace(gram[:-1, :-1])) / max(gram.shape[0] - 1, 1), 1e-12)
        damping = np.r_[np.full(len(index) - 1, penalty), 0.0]
        solution = np.linalg.solve(sub + np.diag(damping), gram[index] @ full + damping[:, None] * full[index])
        new_weight = np.zeros_like(weight)
        new_weight[:, index[:-1]] = solution[:-1].T
        return torch.from_numpy(new_weight).float(), torch.from_numpy(solution[-1]).float()

    def kl(
        self,
        start: int,
        grams: dict[str, np.ndarray],
        heads: torch.Tensor | None = None,
        neurons: torch.Tensor | None = None,
    ) -> float:
        """Mean KL over the rows with layer ``start`` thinned (``heads`` / ``neurons`` masks, the block's output
        projection refitted with the layer's ``grams``; both None: the layer dropped)."""
        dropped = heads is None and neurons is None
        layer = self.layers[start]
        hook, saved = None, None
        if neurons is not None:
            hook = part(layer, self.family.ffn_activation).register_forward_hook(
                lambda _module, _args, output: output * neurons
            )
        if not dropped:
            projection = self.family.ffn_output if neurons is not None else self.family.attention_output
            kept = neurons.numpy() if neurons is not None else np.repeat(heads.numpy(), self.head_size(start))
            saved = self.swap(start, projection, self.refitted(start, projection, kept > 0, grams[projection]))
        try:
            return self.divergence(start, heads, dropped)
        finally:
            if hook is not None:
                hook.remove()
            if saved is not None:
                self.swap(start, projection, saved)

    def divergence(self, start: int, heads: torch.Tensor | None, dropped: bool) -> float:
        total, rows = 0.0, 0
        with torch.no_grad():
            for states, mask, reference in zip(self.inputs[start], self.masks, self.reference, strict=True):
                hidden = states
                for index in range(start, len(self.layers)):
                    if index == start and dropped:
                        continue
                    head_mask = heads.view(1, -1, 1, 1) if index == start and heads is not None else None
                    hidden = run_layer(self.layers[index], hidden, mask, head_mask)
                thinned = torch.log_softmax(classify(self.model, hidden), dim=-1)
                total += float((reference.exp() * (reference - thinned)).sum())
                rows += hidden.shape[0]
        return total / max(rows, 1)

    def head_size(self, start: int) -> int:
        return part(self.layers[start], self.family.attention_output).in_features // heads_of(
            self.layers[start], self.family
        )

    def grams(self, start: int) -> dict[str, np.ndarray]:
        """Both projections' input Gram matrices for one layer."""
        return {path: self.gram(start, path) for path in (self.family.attention_output, self.family.ffn_output)}

    def swap(self, start: int, projection: str, weights: tuple[Any, Any]) -> tuple[Any, Any]:
        """Put (weight, bias) into the projection; returns the ones it had."""
        linear = part(self.layers[start], projection)
        old = (linear.weight.detach().clone(), linear.bias.detach().clone())
        with torch.no_grad():
            linear.weight.copy_(weights[0])
            linear.bias.copy_(weights[1])
        return old


def measure_sensitivity(
    model: torch.nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    head_scores: np.ndarray,
    ffn_scores: np.ndarray,
    *,
    ridge: float = DEFAULT_RIDGE,
    progress: bool = False,
) -> Sensitivity:
    """Each layer thinned alone (its output projection refitted) to every head count, every FFN width of
    ``neuron_grid``, and dropped."""
    heads, neurons = np.asarray(head_scores, dtype=float), np.asarray(ffn_scores, dtype=float)
    thinning = _Thinning(model, batches, ridge)
    head_counts, neuron_counts = list(range(heads.shape[1] + 1)), neuron_grid(neurons.shape[1])
    attention, ffn, dropped = [], [], []
    for layer in progress_bar(range(heads.shape[0]), desc="layer sensitivity", unit="layer", enabled=progress):
        grams = thinning.grams(layer)
        attention.append(
            [
                thinning.kl(layer, grams, heads=torch.tensor(_top(heads[layer], k), dtype=torch.float32))
                for k in head_counts
            ]
        )
        ffn.append(
            [
                thinning.kl(layer, grams, neurons=torch.tensor(_top(neurons[layer], k), dtype=torch.float32))
                for k in neuron_counts
            ]
        )
        dropped.append(thinning.kl(layer, grams))
    rows = sum(int(batch["input_ids"].shape[0]) for batch in batches)
    return Sensitivity(head_counts, neuron_counts, attention, ffn, dropped, rows)


LayerCost = Callable[[LayerShape], float]


def allocate(
    sensitivity: Sensitivity, cost: LayerCost, budget: float, *, allow_drop: bool = True, resolution: int = 2000
) -> Structure | None:
    """The structure whose summed sensitivity is least with summed layer cost within ``budget`` (a dynamic
    programme over layers on a cost grid of ``resolution`` steps); None when even the cheapest does not fit."""
    layers = len(sensitivity.dropped)
    options: list[list[tuple[LayerShape, float, float]]] = []
    for layer in range(layers):
        choices = [
            (LayerShape(h, n), sensitivity.attention[layer][i] + sensitivity.ffn[layer][j], 0.0)
            for i, h in enumerate(sensitivity.head_counts)
            for j, n in enumerate(sensitivity.neuron_counts)
        ]
        if allow_drop and layer > 0:  # the first layer always stays: some layer must
            choices.append((LayerShape(0, 0, True), sensitivity.dropped[layer], 0.0))
        options.append([(shape, loss, cost(shape)) for shape, loss, _ in choices])
    if budget <= 0:
        return None
    unit = budget / resolution
    best = np.full(resolution + 1, np.inf)  # best[c]: least loss of the layers so far at cost c units
    best[0] = 0.0
    picks: list[np.ndarray] = []
    for choices in options:
        following = np.full(resolution + 1, np.inf)
        pick = np.full(resolution + 1, -1, dtype=int)
        for index, (_, loss, spend) in enumerate(choices):
            steps = int(np.ceil(max(spend, 0.0) / unit - 1e-9))
            if steps > resolution:
                continue
            shifted = np.full(resolution + 1, np.inf)
            shifted[steps:] = best[: resolution + 1 - steps] + loss
            better = shifted < following
            following[better], pick[better] = shifted[better], index
        best = following
        picks.append(pick)
    end = int(np.argmin(best))
    if not np.isfinite(best[end]):
        return None
    shapes = []
    for layer in reversed(range(layers)):
        index = int(picks[layer][end])
        shape, _, spend = options[layer][index]
        shapes.append(shape)
        end -= int(np.ceil(max(spend, 0.0) / unit - 1e-9))
    return Structure(tuple(reversed(shapes)))
