"""Pruning plans (which heads and FFN neurons go) and structural pruning (slicing the weights away).

Mask contract: ``head_mask`` has shape (num_layers, num_heads) and ``ffn_mask`` (num_layers,
intermediate_size); 1 keeps a head or neuron, 0 prunes it.

A layer may lose every head. Plain transformers cannot run a layer with zero heads, so such a layer keeps
one *silent* head whose query, key and value weights and biases and output-projection columns are zero:
its context is exactly zero, so the attention block adds only its output bias to the residual, exactly as
an empty layer would. ``config.pruned_heads`` then lists all but that head, and ``config.attr_compress``
records the true head counts. A layer that loses every FFN neuron likewise keeps one silent neuron.

Whole layers can be dropped (``drop_layers``): a dropped layer's heads and neurons count as pruned, the
layer is removed from the encoder and ``config.num_hidden_layers`` shrinks, so each kept layer now stands in
for the dropped ones after it (its *span*). The kept layer takes the output LayerNorm of the last layer of
its span, so recovery can fit it to that layer's output and the next layer (or the classifier) reads
activations normalised as before. ``config.attr_compress["source_layers"]`` records which original layer
each kept one was.

FFN widths differ per layer after pruning, which a plain transformers config cannot describe. The saved
folder therefore pads every layer to the widest one with zero neurons (GELU(0) = 0, so the output is
unchanged) and the config's FFN width (``intermediate_size``; DistilBERT's ``hidden_dim``) is that width:
plain ``AutoModelForSequenceClassification`` loads it and computes the same logits. ``strip_ffn_padding``
(applied by our loader) removes the padding again, so export and timing see the real, narrower layers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.families import (
    BiasOnly,
    Family,
    encoder_layers,
    family_of,
    ffn_width,
    heads_of,
    part,
    set_encoder_layers,
    set_ffn_width,
    set_part,
)
from attr_compress.compressor.models.loading import save_tokenizer
from torch import nn
from transformers.pytorch_utils import prune_linear_layer


@dataclass(frozen=True)
class PrunePlan(JsonArtifact):
    """Which heads to remove, from a global ranking of importance scores."""

    kind = "prune-plan"

    keep: float
    total_heads: int
    kept_heads: int
    head_mask: list[list[int]]
    order: list[list[int]]
    keep_ffn: float = 1.0
    ffn_mask: list[list[int]] | None = None
    dropped_layers: list[int] = field(default_factory=list)

    @property
    def kept_layers(self) -> list[int]:
        return [layer for layer in range(len(self.head_mask)) if layer not in self.dropped_layers]

    @property
    def ffn_kept_per_layer(self) -> list[int] | None:
        return None if self.ffn_mask is None else [int(sum(row)) for row in self.ffn_mask]

    @property
    def heads_kept_per_layer(self) -> list[int]:
        return [int(sum(row)) for row in self.head_mask]

    @property
    def pruned_heads(self) -> dict[int, list[int]]:
        return {
            layer: [head for head, kept in enumerate(row) if not kept]
            for layer, row in enumerate(self.head_mask)
            if not all(row)
        }


def check_keep(keep: float, option: str = "--keep", what: str = "heads") -> None:
    if not 0 < keep <= 1:
        raise InputError(f"{option} must be in (0, 1] (the fraction of {what} kept), got {keep}")


def _score_table(scores: np.ndarray | list[list[float]], what: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"importance scores must be a non-empty [layers][{what}] table; re-run `attr-compress score`")
    if not np.isfinite(array).all():
        raise InputError("importance scores contain NaN or infinity; re-run `attr-compress score`")
    return array


def _mask(ascending: Sequence[int], total: int, keep: float, excluded: Sequence[int] = ()) -> np.ndarray:
    """1 for the round(keep * total) items last in ``ascending`` (least important first), 0 for the rest;
    ``excluded`` items (those of dropped layers) are always 0, so the count goes to the others."""
    gone = set(excluded)
    ascending = [*sorted(gone), *(item for item in ascending if item not in gone)]
    kept = min(max(1, int(round(keep * total))), total - len(gone))
    mask = np.ones(total, dtype=int)
    mask[np.asarray(ascending[: total - kept], dtype=int)] = 0
    return mask


def _units_of(layers: Sequence[int], width: int) -> list[int]:
    return [layer * width + unit for layer in layers for unit in range(width)]


def global_mask(scores: np.ndarray, keep: float, drop_layers: Sequence[int] = ()) -> np.ndarray:
    """1 for the round(keep * total) highest scores over the whole table (rows ``drop_layers`` excluded), 0
    elsewhere; ties break by position."""
    excluded = _units_of(drop_layers, scores.shape[1])
    return _mask(np.argsort(scores.ravel(), kind="stable"), scores.size, keep, excluded).reshape(scores.shape)


def check_drop_layers(drop_layers: Sequence[int], layers: int) -> list[int]:
    dropped = sorted(set(drop_layers))
    if any(not 0 <= layer < layers for layer in dropped) or len(dropped) >= layers:
        numbers = ",".join(str(layer + 1) for layer in drop_layers)
        raise InputError(f"--drop-layers takes distinct layer numbers 1..{layers}, leaving at least one; got {numbers}")
    return dropped


def plan_pruning(
    scores: np.ndarray | list[list[float]],
    keep: float,
    order: list[list[int]] | None = None,
    *,
    ffn_scores: np.ndarray | list[list[float]] | None = None,
    keep_ffn: float = 1.0,
    drop_layers: Sequence[int] = (),
) -> PrunePlan:
    """Keep the round(keep * total) highest-scoring heads over the whole model; ties break by position.

    An explicit pruning ``order`` ([layer, head] pairs, first pruned first; iterative methods) overrides the
    ranking by score. With ``keep_ffn`` below 1, the highest-scoring FFN neurons (``ffn_scores``) are kept
    the same way, one global ranking over all layers. ``drop_layers`` are removed whole: their heads and
    neurons are pruned first, and the kept counts (fractions of the whole model) go to the other layers.
    """
    check_keep(keep)
    check_keep(keep_ffn, "--keep-ffn", "FFN neurons")
    array = _score_table(scores, "heads")
    dropped = check_drop_layers(drop_layers, array.shape[0])
    ffn_mask = None
    if keep_ffn < 1:
        if ffn_scores is None:
            raise InputError("--keep-ffn below 1 needs FFN neuron scores; run `attr-compress score --ffn` first")
        ffn_mask = global_mask(_score_table(ffn_scores, "neurons"), keep_ffn, dropped).tolist()
    total, heads = array.size, array.shape[1]
    if order is not None:
        ascending = [layer * heads + head for layer, head in order]
        if sorted(ascending) != list(range(total)):
            raise InputError("the pruning order does not list every head once; re-run `attr-compress score`")
    else:
        ascending = np.argsort(array.ravel(), kind="stable").tolist()
    mask = _mask(ascending, total, keep, _units_of(dropped, heads))
    return PrunePlan(
        keep=keep,
        total_heads=total,
        kept_heads=int(mask.sum()),
        head_mask=mask.reshape(array.shape).tolist(),
        order=[[i // heads, i % heads] for i in ascending],
        keep_ffn=keep_ffn,
        ffn_mask=ffn_mask,
        dropped_layers=dropped,
    )


def _silence_head(model: nn.Module, layer: nn.Module) -> None:
    """Zero the only remaining head of a layer so its context is exactly zero."""
    family = family_of(model)
    with torch.no_grad():
        for path in (family.query, family.key, family.value):
            part(layer, path).weight.zero_()
            part(layer, path).bias.zero_()
        part(layer, family.attention_output).weight.zero_()


def prune(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A pruned copy of ``model``: the plan's heads and FFN neurons physically removed (the original untouched)."""
    return prune_model(copy.deepcopy(model), plan)


def prune_model(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """Physically remove the plan's heads (and FFN neurons, and layers) from a classifier, in place."""
    layers = encoder_layers(model)
    if len(plan.head_mask) != len(layers) or any(
        len(row) != model.config.num_attention_heads for row in plan.head_mask
    ):
        raise InputError(
            f"the prune plan is for {len(plan.head_mask)} layers x {len(plan.head_mask[0])} heads but the model has "
            f"{len(layers)} x {model.config.num_attention_heads}; score this model first"
        )
    check_unpruned(model)
    order = {tuple(pair): rank for rank, pair in enumerate(plan.order)}
    to_prune: dict[int, list[int]] = {}
    empty_layers = []
    for layer, heads in plan.pruned_heads.items():
        if len(heads) == len(plan.head_mask[layer]):
            survivor = max(heads, key=lambda head: order.get((layer, head), -1))
            heads = [head for head in heads if head != survivor]
            empty_layers.append(layer)
        to_prune[layer] = heads
    model.prune_heads(to_prune)
    for layer in empty_layers:
        _silence_head(model, layers[layer])
    model.config.attr_compress = {
        "heads_kept_per_layer": plan.heads_kept_per_layer,
        "silent_head_layers": empty_layers,
        "keep": plan.keep,
        "dropped_layers": plan.dropped_layers,
    }
    if plan.ffn_mask is not None:
        _prune_ffn(model, plan.ffn_mask)
        model.config.attr_compress.update(keep_ffn=plan.keep_ffn, ffn_kept_per_layer=plan.ffn_kept_per_layer)
    if plan.dropped_layers:
        _drop_layers(model, plan.kept_layers)
    return model


def _drop_layers(model: nn.Module, kept: list[int]) -> None:
    """Remove every layer not in ``kept``; each kept layer takes the output LayerNorm of its span's last layer,
    and the per-layer records and ``config.pruned_heads`` are renumbered to the layers that remain."""
    layers, record, norm = encoder_layers(model), model.config.attr_compress, family_of(model).output_norm
    spans = layer_spans(kept, len(layers))
    for source, end in spans:
        if end != source:
            set_part(layers[source], norm, copy.deepcopy(part(layers[end], norm)))
    set_encoder_layers(model, nn.ModuleList([layers[index] for index in kept]))
    model.config.num_hidden_layers = len(kept)
    model.config.pruned_heads = {
        new: model.config.pruned_heads[old] for new, old in enumerate(kept) if old in model.config.pruned_heads
    }
    for key in ("heads_kept_per_layer", "ffn_kept_per_layer", "ffn_layer_widths"):
        if key in record:
            record[key] = [record[key][index] for index in kept]
    record["silent_head_layers"] = [kept.index(layer) for layer in record["silent_head_layers"] if layer in kept]
    record.update(source_layers=kept, original_layers=len(layers))


def layer_spans(kept: Sequence[int], total: int) -> list[tuple[int, int]]:
    """(first, last) original layer each kept layer stands for: itself and the dropped layers after it."""
    ends = [*(next_kept - 1 for next_kept in kept[1:]), total - 1]
    return list(zip(kept, ends, strict=True))


def model_layer_spans(model: nn.Module) -> list[tuple[int, int]]:
    """The spans of a (possibly layer-dropped) pruned model, from its config; one per layer it has."""
    record = getattr(model.config, "attr_compress", None) or {}
    count = len(encoder_layers(model))
    return layer_spans(record.get("source_layers", list(range(count))), record.get("original_layers", count))


def check_unpruned(model: nn.Module) -> None:
    """Scores and plans are per head and neuron of the original model; a pruned one cannot take them."""
    if model.config.pruned_heads or getattr(model.config, "attr_compress", None):
        raise InputError("this model is already pruned; score and prune the original, unpruned model")


def _prune_ffn(model: nn.Module, ffn_mask: list[list[int]]) -> None:
    """Slice each layer's FFN input (rows) and output (columns) dense layers down to the kept neurons."""
    layers, family, width = encoder_layers(model), family_of(model), ffn_width(model.config)
    if len(ffn_mask) != len(layers) or any(len(row) != width for row in ffn_mask):
        raise InputError(
            f"the prune plan's FFN mask is for {len(ffn_mask)} layers x {len(ffn_mask[0])} neurons but the model "
            f"has {len(layers)} x {width}; score this model first"
        )
    widths = []
    for layer, row in zip(layers, ffn_mask, strict=True):
        kept = [index for index, keep in enumerate(row) if keep]
        _slice_ffn(layer, family, torch.tensor(kept or [0]))
        if not kept:  # GELU(0) = 0: the neuron contributes nothing, exactly as an empty FFN would
            with torch.no_grad():
                part(layer, family.ffn_input).weight.zero_()
                part(layer, family.ffn_input).bias.zero_()
                part(layer, family.ffn_output).weight.zero_()
        widths.append(len(kept or [0]))
    set_ffn_width(model.config, max(widths))
    model.config.attr_compress["ffn_layer_widths"] = widths


def _slice_ffn(layer: nn.Module, family: Family, index: torch.Tensor) -> None:
    """Keep the FFN neurons ``index``: rows of the input projection, columns of the output projection."""
    set_part(layer, family.ffn_input, prune_linear_layer(part(layer, family.ffn_input), index, dim=0))
    set_part(layer, family.ffn_output, prune_linear_layer(part(layer, family.ffn_output), index, dim=1))


def ffn_widths(model: nn.Module) -> list[int]:
    """Real FFN neuron counts per layer, counting a silenced layer as zero."""
    kept = (getattr(model.config, "attr_compress", None) or {}).get("ffn_kept_per_layer")
    path = family_of(model).ffn_input
    return list(kept) if kept else [part(layer, path).out_features for layer in encoder_layers(model)]


def strip_ffn_padding(model: nn.Module) -> nn.Module:
    """Drop the zero neurons ``save_pruned`` padded each FFN with, so the layers have their real widths."""
    widths = (getattr(model.config, "attr_compress", None) or {}).get("ffn_layer_widths")
    if widths:
        family = family_of(model)
        for layer, width in zip(encoder_layers(model), widths, strict=True):
            if part(layer, family.ffn_input).out_features != width:
                _slice_ffn(layer, family, torch.arange(width))
    return model


def heads_per_layer(model: nn.Module) -> list[int]:
    """Real head counts, counting a silenced layer as zero."""
    family = family_of(model)
    counts = [heads_of(layer, family) for layer in encoder_layers(model)]
    for layer in (getattr(model.config, "attr_compress", None) or {}).get("silent_head_layers", []):
        counts[layer] = 0
    return counts


def without_empty_blocks(model: nn.Module) -> nn.Module:
    """``model``, or a copy whose emptied blocks (a layer with no head, or no FFN neuron, left) are replaced by
    their output bias (``BiasOnly``): the same function (the silent head's context and the silent neuron's
    output are exactly zero), without the block's matrix products, for the exported graph."""
    family = family_of(model)
    empty = [
        (index, block)
        for counts, block in ((heads_per_layer(model), family.attention_block), (ffn_widths(model), family.ffn_block))
        for index, count in enumerate(counts)
        if count == 0
    ]
    if not empty:
        return model
    model = copy.deepcopy(model)
    layers = encoder_layers(model)
    for index, block in empty:
        set_part(layers[index], block.module, BiasOnly(block, layers[index]))
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters in total and in the encoder's attention and FFN blocks (what pruning removes)."""
    layers, family = encoder_layers(model), family_of(model)
    attention = sum(p.numel() for layer in layers for p in part(layer, family.attention).parameters())
    ffn = sum(
        p.numel()
        for layer in layers
        for path in (family.ffn_input, family.ffn_output)
        for p in part(layer, path).parameters()
    )
    return {"total": sum(p.numel() for p in model.parameters()), "attention": attention, "ffn": ffn}


def save_pruned(model: nn.Module, tokenizer: Any, folder: str | Path) -> None:
    """A folder plain ``AutoModelForSequenceClassification.from_pretrained`` loads with the right head counts
    and FFN layers zero-padded to the config's FFN width (see the module docstring)."""
    family, width = family_of(model), ffn_width(model.config)
    state = model.state_dict()
    for index, layer in enumerate(encoder_layers(model)):
        missing = width - part(layer, family.ffn_input).out_features
        if missing:
            prefix = f"{family.layers}.{index}"
            for name, dim in (
                (f"{family.ffn_input}.weight", 0),
                (f"{family.ffn_input}.bias", 0),
                (f"{family.ffn_output}.weight", 1),
            ):
                tensor = state[f"{prefix}.{name}"]
                shape = list(tensor.shape)
                shape[dim] = missing
                state[f"{prefix}.{name}"] = torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    save_tokenizer(tokenizer, folder)
