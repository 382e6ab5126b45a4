"""Pruning plans (which heads go) and structural pruning (slicing the weights away).

Mask contract: ``head_mask`` has shape (num_layers, num_heads); 1 keeps a head, 0 prunes it.

A layer may lose every head. Plain transformers cannot run a layer with zero heads, so such a layer keeps
one *silent* head whose query, key and value weights and biases and output-projection columns are zero:
its context is exactly zero, so the attention block adds only its output bias to the residual, exactly as
an empty layer would. ``config.pruned_heads`` then lists all but that head, and ``config.attr_compress``
records the true head counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compressor.artifacts import JsonArtifact
from compressor.errors import InputError


@dataclass(frozen=True)
class PrunePlan(JsonArtifact):
    """Which heads to remove, from a global ranking of importance scores."""

    kind = "prune-plan"

    keep: float
    total_heads: int
    kept_heads: int
    head_mask: list[list[int]]
    order: list[list[int]]

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


def check_keep(keep: float) -> None:
    if not 0 < keep <= 1:
        raise InputError(f"--keep must be in (0, 1] (the fraction of heads kept), got {keep}")


def plan_pruning(
    scores: np.ndarray | list[list[float]], keep: float, order: list[list[int]] | None = None
) -> PrunePlan:
    """Keep the round(keep * total) highest-scoring heads over the whole model; ties break by position.

    An explicit pruning ``order`` ([layer, head] pairs, first pruned first; iterative methods) overrides the
    ranking by score.
    """
    check_keep(keep)
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise InputError("importance scores must be a non-empty [layers][heads] table; re-run `attr-compress score`")
    if not np.isfinite(array).all():
        raise InputError("importance scores contain NaN or infinity; re-run `attr-compress score`")
    total = array.size
    kept = max(1, int(round(keep * total)))
    flat = array.ravel()
    heads = array.shape[1]
    if order is not None:
        ascending = [layer * heads + head for layer, head in order]
        if sorted(ascending) != list(range(total)):
            raise InputError("the pruning order does not list every head once; re-run `attr-compress score`")
    else:
        ascending = sorted(range(total), key=lambda i: (flat[i], i))
    mask = np.ones(total, dtype=int)
    mask[ascending[: total - kept]] = 0
    return PrunePlan(
        keep=keep,
        total_heads=total,
        kept_heads=kept,
        head_mask=mask.reshape(array.shape).tolist(),
        order=[[i // heads, i % heads] for i in ascending],
    )


def _silence_head(layer: nn.Module) -> None:
    """Zero the only remaining head of a layer so its context is exactly zero."""
    attention = layer.attention
    with torch.no_grad():
        for linear in (attention.self.query, attention.self.key, attention.self.value):
            linear.weight.zero_()
            linear.bias.zero_()
        attention.output.dense.weight.zero_()


def prune_model(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """Physically remove the plan's heads from a BertForSequenceClassification (in place) and return it."""
    layers = model.bert.encoder.layer
    if len(plan.head_mask) != len(layers) or any(
        len(row) != model.config.num_attention_heads for row in plan.head_mask
    ):
        raise InputError(
            f"the prune plan is for {len(plan.head_mask)} layers x {len(plan.head_mask[0])} heads but the model has "
            f"{len(layers)} x {model.config.num_attention_heads}; score this model first"
        )
    if model.config.pruned_heads:
        raise InputError("this model already has pruned heads; prune the original, unpruned model")
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
        _silence_head(layers[layer])
    model.config.attr_compress = {
        "heads_kept_per_layer": plan.heads_kept_per_layer,
        "silent_head_layers": empty_layers,
        "keep": plan.keep,
    }
    return model


def heads_per_layer(model: nn.Module) -> list[int]:
    """Real head counts, counting a silenced layer as zero."""
    counts = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    for layer in (getattr(model.config, "attr_compress", None) or {}).get("silent_head_layers", []):
        counts[layer] = 0
    return counts


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters in total and in the encoder's attention blocks (what head pruning removes)."""
    attention = sum(p.numel() for layer in model.bert.encoder.layer for p in layer.attention.parameters())
    return {"total": sum(p.numel() for p in model.parameters()), "attention": attention}


def save_pruned(model: nn.Module, tokenizer: Any, folder: str | Path) -> None:
    """A folder plain ``AutoModelForSequenceClassification.from_pretrained`` loads with the right head counts."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
