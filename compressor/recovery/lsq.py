"""Recovering accuracy after pruning without re-training.

``lsq``: layer by layer, refit the attention output projection and the FFN output projection of the pruned
model by (ridge) least squares, so that each sub-layer's residual sum (the LayerNorm input) on calibration
tokens matches the unpruned model's. This is the layer-wise reconstruction of Kwon et al. 2022 ("A Fast
Post-Training Pruning Framework for Transformers"), folded into the weights so the exported graph stays a
plain model of its family. Inputs come from the pruned model's own earlier layers (already refitted),
targets from the original model, so each layer also corrects the drift of the layers below it.

``distill``: the LSQ fit, then distillation from the original over the task's training file
(``compressor/recovery/distill.py``). ``auto`` (the default) is resolved by the pipeline: it tries the methods and
keeps the one that scores best on held-out selection rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.defaults import RECOVERIES, default
from attr_compress.compressor.errors import InputError, check_counts
from attr_compress.compressor.models.families import (
    Family,
    embed,
    encoder_layers,
    family_of,
    layer_mask,
    part,
    run_layer,
)
from attr_compress.compressor.models.loading import LoadedModel, encode, modules_on
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.pruning.prune import model_layer_spans
from attr_compress.compressor.recovery.distill import DistillOptions, DistillRecord, TrainingText, distill
from attr_compress.compressor.scoring.calibration import length_batches
from attr_compress.compressor.scoring.distributed import all_reduce_sum, local_items, rank_and_size
from attr_compress.compressor.seeds import Seeds
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_RIDGE = 1e-3


@dataclass(frozen=True)
class RecoveryRecord(JsonArtifact):
    """What recovery did: per layer and sub-layer, the relative reconstruction error before and after."""

    kind = "recovery"

    method: str
    examples: int
    tokens: int
    ridge: float
    layers: list[dict[str, Any]]
    distill: DistillRecord | None = None
    # with --recover auto: each method tried against the original (disagreement and KL on the fidelity slice,
    # paired drop in points on the selection rows)
    compared: dict[str, dict[str, float]] | None = None


def encode_for_fit(loaded: LoadedModel, examples: Sequence[Example]) -> list[dict[str, torch.Tensor]]:
    """Calibration examples tokenised for a recovery fit, grouped by length so padding stays small."""
    return [dict(encode(loaded, part)) for part in length_batches(loaded, examples, default("max_batch_tokens"))]


class NormalEquations:
    """Streaming least squares Y ~ X W^T + b: accumulates [X 1]^T [X 1], [X 1]^T Y and |Y|^2 in float64."""

    def __init__(self, inputs: int, outputs: int) -> None:
        self.gram = np.zeros((inputs + 1, inputs + 1))
        self.cross = np.zeros((inputs + 1, outputs))
        self.target_energy = 0.0
        self.rows = 0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.cpu(), y.cpu()  # the sums live in numpy, float64
        augmented = torch.cat([x.double(), x.new_ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
        self.gram += (augmented.T @ augmented).numpy()
        self.cross += (augmented.T @ y.double()).numpy()
        self.target_energy += float((y.double() ** 2).sum())
        self.rows += x.shape[0]

    def all_reduced(self) -> NormalEquations:
        """The sums over every torchrun process (itself when there is one)."""
        if rank_and_size()[1] > 1:
            self.gram, self.cross = all_reduce_sum(self.gram), all_reduce_sum(self.cross)
            self.target_energy, self.rows = all_reduce_sum(np.array([self.target_energy, self.rows])).tolist()
        return self

    def relative_error(self, weight: torch.Tensor, bias: torch.Tensor) -> float:
        """|[X 1] W_aug - Y| / |Y| over all rows, from the accumulated sums."""
        stacked = np.concatenate([weight.double().cpu().numpy().T, bias.double().cpu().numpy()[None]], axis=0)
        squared = self.target_energy - 2 * np.sum(stacked * self.cross) + np.sum(stacked * (self.gram @ stacked))
        return float(np.sqrt(max(squared, 0.0) / max(self.target_energy, 1e-300)))

    def solve(self, ridge: float, prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight [outputs, inputs] and bias minimising |[X 1] W_aug - Y|^2 + lambda |W - prior|^2 (bias not
        penalised; no prior: toward zero); lambda = ``ridge`` x the mean diagonal of X^T X, so the penalty does not
        depend on the activations' scale. Damping toward the weights the layer had keeps the refit from growing
        outlier columns, which int8 quantises badly."""
        inputs = self.gram.shape[0] - 1
        penalty = ridge * max(float(np.trace(self.gram[:inputs, :inputs])) / max(inputs, 1), 1e-12)
        regularised = self.gram + np.diag(np.r_[np.full(inputs, penalty), 0.0])
        target = self.cross
        if prior is not None:
            target = target + penalty * np.vstack([prior.double().cpu().numpy().T, np.zeros((1, self.cross.shape[1]))])
        solution = np.linalg.solve(regularised, target)
        weight = torch.from_numpy(np.ascontiguousarray(solution[:inputs].T)).float()
        return weight, torch.from_numpy(solution[inputs]).float()


@contextmanager
def _capture_inputs(module: nn.Module) -> Iterator[list[tuple]]:
    """Record the positional inputs of every call to ``module``."""
    calls: list[tuple] = []
    handle = module.register_forward_pre_hook(lambda _module, args: calls.append(args))
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def _capture_outputs(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the output of every call to ``module``."""
    calls: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _module, _args, output: calls.append(output))
    try:
        yield calls
    finally:
        handle.remove()


@torch.no_grad()
def _refit(linear: nn.Linear, equations: NormalEquations, ridge: float, damped: bool) -> dict[str, float]:
    before = equations.relative_error(linear.weight, linear.bias)
    weight, bias = equations.solve(ridge, linear.weight.detach() if damped else None)
    after = equations.relative_error(weight, bias)
    if after < before:  # a refit can only help on the data it saw; keep the old weights otherwise
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
    return {"error_before": before, "error_after": min(after, before)}


@dataclass
class _FitState:
    """This process's share of the fit, per batch: masks, real tokens, the first token only, and the original's
    (reference) and the pruned model's (current) hidden states at the layer being fitted. Only these are held
    between layers; every sub-layer's activations are streamed into the normal equations a batch at a time."""

    masks: list[torch.Tensor]
    tokens: list[torch.Tensor]
    first_only: list[torch.Tensor]
    reference: list[torch.Tensor]
    current: list[torch.Tensor]

    def real(self, last: bool) -> list[torch.Tensor]:
        """The tokens fitted: every real token, in the last layer only the first (the one the classifier reads)."""
        return self.first_only if last else self.tokens


@torch.no_grad()
def _fit_start(
    original: nn.Module, pruned: nn.Module, batches: Sequence[dict[str, torch.Tensor]], first_kept: int
) -> _FitState:
    """Per batch: the layers' attention masks, the real tokens, the first token only (all that leaves the last
    layer for the classifier), the original's hidden states before the first kept layer, the pruned model's
    embeddings."""
    masks = [layer_mask(original, batch["attention_mask"]) for batch in batches]
    tokens = [batch["attention_mask"].bool() for batch in batches]
    first_only = [torch.zeros_like(mask).index_fill_(1, torch.tensor([0], device=mask.device), True) for mask in tokens]
    reference = [embed(original, batch) for batch in batches]
    for layer in encoder_layers(original)[:first_kept]:  # dropped layers before the first kept one
        reference = [run_layer(layer, h, m) for h, m in zip(reference, masks, strict=True)]
    current = [embed(pruned, batch) for batch in batches]
    return _FitState(masks, tokens, first_only, reference, current)


@torch.no_grad()
def _attention_equations(
    family: Family,
    original_layers: Sequence[nn.Module],
    target: nn.Module,
    span: tuple[int, int],
    state: _FitState,
    last: bool,
) -> tuple[NormalEquations, list[torch.Tensor]]:
    """Advance the reference through the original layers of ``span`` and stream the attention output projection's
    equations (context -> original residual sum - the layer's input); returns them and, per batch, the FFN
    block's targets (the original's sum at its output LayerNorm)."""
    first, final = span
    projection = part(target, family.attention_output)
    equations = NormalEquations(projection.in_features, projection.out_features)
    ffn_targets = []
    for index, (h, m, rows) in enumerate(zip(state.current, state.masks, state.real(last), strict=True)):
        with (
            _capture_inputs(part(original_layers[first], family.attention_norm)) as attention_sums,
            _capture_inputs(part(original_layers[final], family.output_norm)) as ffn_sums,
        ):
            for source in original_layers[first : final + 1]:
                state.reference[index] = run_layer(source, state.reference[index], m)
        with _capture_inputs(projection) as contexts:
            run_layer(target, h, m)
        equations.add(contexts[0][0][rows], attention_sums[0][0][rows] - h[rows])
        ffn_targets.append(ffn_sums[0][0])
    return equations.all_reduced(), ffn_targets


@torch.no_grad()
def _ffn_equations(
    family: Family, target: nn.Module, ffn_targets: Sequence[torch.Tensor], state: _FitState, last: bool
) -> NormalEquations:
    """The FFN output projection's equations (activations -> original residual sum - the attention block's
    output), streamed with the attention output already refitted."""
    projection = part(target, family.ffn_output)
    equations = NormalEquations(projection.in_features, projection.out_features)
    for h, m, y, rows in zip(state.current, state.masks, ffn_targets, state.real(last), strict=True):
        with (
            _capture_inputs(projection) as activations,
            _capture_outputs(part(target, family.attention_norm)) as residuals,
        ):
            run_layer(target, h, m)
        equations.add(activations[0][0][rows], y[rows] - residuals[0][rows])
    return equations.all_reduced()


def recover_lsq(
    original: nn.Module,
    pruned: nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    *,
    ridge: float = DEFAULT_RIDGE,
    damped: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Refit, in place, every layer's attention output and FFN output projection of ``pruned``.

    ``batches`` are tokenised calibration inputs (input_ids, attention_mask, token_type_ids); only real
    tokens enter the fit, and in the last layer only the first token, the one the classifier reads (on
    held-out calibration data this kept 0.7-1.0 point more accuracy than fitting every token there). The
    attention block's residual is the layer's input, the FFN block's the attention LayerNorm's output (every
    family is post-LayerNorm). Under torchrun each process streams its share of the batches and the normal
    equations are summed over processes, so every process solves the same system. Returns, per layer, the
    relative errors before and after each refit.
    """
    family = family_of(original)
    original_layers, pruned_layers = encoder_layers(original), encoder_layers(pruned)
    spans = model_layer_spans(pruned)  # with dropped layers, a kept layer is fitted to its span's output
    state = _fit_start(original, pruned, local_items(batches), spans[0][0])
    report = []
    for index in progress_bar(range(len(pruned_layers)), desc="LSQ recovery", unit="layer", enabled=progress):
        target, last = pruned_layers[index], index == len(pruned_layers) - 1
        equations, ffn_targets = _attention_equations(family, original_layers, target, spans[index], state, last)
        attention = _refit(part(target, family.attention_output), equations, ridge, damped)
        equations = _ffn_equations(family, target, ffn_targets, state, last)
        ffn = _refit(part(target, family.ffn_output), equations, ridge, damped)
        with torch.no_grad():
            state.current = [run_layer(target, h, m) for h, m in zip(state.current, state.masks, strict=True)]
        report.append({"layer": spans[index][0], "attention_output": attention, "ffn_output": ffn})
    return report


@dataclass(frozen=True)
class RecoveryOptions:
    """``method`` (one of ``defaults.RECOVERIES``), the calibration examples LSQ fits on (``fit_examples``, sampled with
    ``fit_seed``), the distillation's settings, and the LSQ ridge."""

    method: str = default("recover")
    fit_examples: int = default("fit_examples")
    distill: DistillOptions = field(default_factory=DistillOptions)
    seed: int = default("seed")
    ridge: float = DEFAULT_RIDGE
    damped: bool = default("lsq_damping")

    def __post_init__(self) -> None:
        if self.method not in RECOVERIES:
            raise InputError(f"--recover must be one of {', '.join(RECOVERIES)}, got {self.method!r}")
        check_counts(fit_examples=self.fit_examples)
        if self.ridge < 0:
            raise InputError(f"the ridge must be 0 or more, got {self.ridge}")

    @property
    def device(self) -> str:
        """Where the refit and the distillation run (``--device``)."""
        return self.distill.device

    @property
    def fit_seed(self) -> int:
        """The fit sample's seed (``Seeds.fit``): apart from scoring's and selection's."""
        return Seeds(self.seed).fit


def recover(
    original: nn.Module,
    pruned: nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    options: RecoveryOptions,
    *,
    text: TrainingText | None = None,
    progress: bool = False,
) -> RecoveryRecord | None:
    """Apply ``options.method`` to ``pruned`` in place: LSQ fitted on ``batches`` (``encode_for_fit``), then for
    "distill" a distillation over ``text``; None for "none". "auto" is chosen by measurement in the pipeline."""
    if options.method == "none":
        return None
    if options.method == "auto":
        raise InputError("--recover auto is chosen by measurement inside a run; call recover with lsq or distill")
    if options.method == "distill" and text is None:
        raise InputError("--recover distill trains on the task's training file; pass --calib FILE")
    tokens = int(sum(int(batch["attention_mask"].sum()) for batch in batches))
    examples = sum(int(batch["input_ids"].shape[0]) for batch in batches)
    logger.info(f"refitting output projections by least squares on {examples} examples ({tokens} tokens)")
    with modules_on(options.device, original, pruned):
        on_device = [{key: value.to(original.device) for key, value in batch.items()} for batch in batches]
        layers = recover_lsq(original, pruned, on_device, ridge=options.ridge, damped=options.damped, progress=progress)
    distilled = None
    if options.method == "distill":
        logger.info(f"distilling from the original model on {text.path}")
        distilled = distill(original, pruned, text, options.distill, progress=progress)
    return RecoveryRecord(
        method=options.method, examples=examples, tokens=tokens, ridge=options.ridge, layers=layers, distill=distilled
    )
