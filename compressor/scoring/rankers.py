"""Head-ranking methods behind one interface: ``Ranker(loaded, ...).rank(calibration) -> HeadImportance``.

A new method is one small class registered in ``RANKERS``. Higher scores mean more important heads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from attr_compress.compressor.data.rows import Example, LabelledData
from attr_compress.compressor.defaults import default
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import LoadedModel
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.scoring.calibration import calibration_batches, real_token_pairs, until_settled
from attr_compress.compressor.scoring.distributed import all_reduce_sum, local_items
from attr_compress.compressor.scoring.heads import HeadImportance, attribution_statistics

DEFAULT_KEEPS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


class Ranker(ABC):
    """One ranking method. The model goes into ``__init__``, the calibration data into ``rank``."""

    name: ClassVar[str]
    objective: ClassVar[str] = "gold"
    aggregation: ClassVar[str]

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        steps: int = 20,
        rule: str = "left",
        seed: int = 0,
        max_batch_tokens: int = default("max_batch_tokens"),
        settle: float = 0.0,
        progress: bool = False,
    ) -> None:
        self.loaded = loaded
        self.steps = steps
        self.rule = rule
        self.seed = seed
        self.max_batch_tokens = max_batch_tokens
        self.settle = settle
        self.progress = progress
        self.used: int | None = None  # examples scored, when a method stops once its ranking settled

    @property
    def shape(self) -> tuple[int, int]:
        return self.loaded.config.num_hidden_layers, self.loaded.config.num_attention_heads

    @abstractmethod
    def scores(self, data: LabelledData) -> tuple[np.ndarray, list[list[int]] | None]:
        """[layers, heads] scores, and a pruning order for iterative methods (else None)."""

    def rank(self, data: LabelledData) -> HeadImportance:
        if len(data) == 0:
            raise InputError(f"no calibration examples in '{data.path}'; pass a --calib file with rows")
        scores, order = self.scores(data)
        return HeadImportance(
            scores=np.asarray(scores, dtype=np.float64).tolist(),
            method=self.name,
            objective=self.objective,
            aggregation=self.aggregation,
            steps=self.steps,
            rule=self.rule,
            examples=self.used or len(data),
            seed=self.seed,
            calibration=data.path,
            model=self.loaded.path,
            order=order,
        )

    def _attribution(
        self, examples: Sequence[Example], head_mask: torch.Tensor | None = None, bar: Any = None
    ) -> dict[str, np.ndarray]:
        return attribution_statistics(
            self.loaded,
            examples,
            objective=self.objective,
            steps=self.steps,
            rule=self.rule,
            max_batch_tokens=self.max_batch_tokens,
            head_mask=head_mask,
            progress=self.progress,
            bar=bar,
        )


class AttAttr(Ranker):
    """The default attribution ranking: the variant that pruned best on held-out *calibration* data
    (benchmarks/ranking_search.py; the dev set was never used to choose). F is the log-probability of the
    gold label, a head's per-example score is the sum of |Attr_h| over real token pairs, scores are averaged
    over examples and L2-normalised per layer (so heads compare across layers). Same cost as the paper's."""

    name = "attattr"
    objective = "gold-log"
    statistic: ClassVar[str] = "abssum"
    layer_normalised: ClassVar[bool] = True
    aggregation = "mean over examples of the sum of |Attr_h| over real tokens, L2-normalised per layer"

    def _aggregate(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        return self._normalised(stats[self.statistic].mean(axis=0))

    def _normalised(self, values: np.ndarray) -> np.ndarray:
        return layer_l2_normalised(values) if self.layer_normalised else values

    def scores(self, data: LabelledData) -> tuple[np.ndarray, list[list[int]] | None]:
        """Scored round by round until the ranking settles (``settle``; see ``until_settled``)."""
        bar = progress_bar(total=len(data), desc="attribution", unit="ex", enabled=self.progress)

        def score_round(part: list[Example]) -> np.ndarray:
            return self._attribution(part, bar=bar)[self.statistic].sum(axis=0)

        total, self.used = until_settled(data.examples, self.seed, score_round, self.settle, self._normalised)
        bar.close()
        return self._normalised(total / self.used), None


class AttAttrPaper(AttAttr):
    """Hao et al. 2021 as published: mean over examples of the signed max of Attr_h, F = gold probability."""

    name = "attattr-paper"
    objective = "gold"
    statistic = "max"
    layer_normalised = False
    aggregation = "mean over examples of the signed max of Attr_h over real tokens"


def sweep_boundaries(total: int, keeps: Sequence[float] = DEFAULT_KEEPS) -> list[int]:
    """Numbers of pruned heads at which an iterative method re-scores, so each keep level is a prefix."""
    return sorted({total - max(1, round(keep * total)) for keep in keeps} - {0})


class AttAttrIterative(AttAttr):
    """The default ranking, re-scored on the partly pruned model after each pruning step (as Michel et al.
    iterate): heads are masked in rounds that end exactly at the sweep's keep levels, and after each round
    the remaining heads are scored again with the pruned heads masked out. About 9x the cost of ``attattr``;
    on the demo model it did not prune better (see the README)."""

    name = "attattr-iterative"
    aggregation = "iterative, re-scored after each keep level: " + AttAttr.aggregation

    def scores(self, data: LabelledData) -> tuple[np.ndarray, list[list[int]]]:
        layers, heads = self.shape
        total = layers * heads
        mask = torch.ones(layers, heads, device=self.loaded.model.device)
        order: list[int] = []

        def remaining_lowest_first(current: np.ndarray) -> list[int]:
            pruned = set(order)
            return sorted((i for i in range(total) if i not in pruned), key=lambda i: (current[i], i))

        current = np.zeros(total)
        for boundary in sweep_boundaries(total):
            current = self._aggregate(self._attribution(data.examples, head_mask=mask)).ravel()
            order += remaining_lowest_first(current)[: boundary - len(order)]
            mask.view(-1)[order] = 0.0
        order += remaining_lowest_first(current)  # the heads every keep level keeps, by their last scores
        scores = np.empty(total)
        scores[order] = (np.arange(total) + 1) / total  # later pruned = more important
        return scores.reshape(layers, heads), [[i // heads, i % heads] for i in order]


def layer_l2_normalised(scores: np.ndarray) -> np.ndarray:
    """Divide each layer's scores by their L2 norm (Michel et al.'s normalisation), so layers compare."""
    norms = np.linalg.norm(scores, axis=1, keepdims=True)
    return scores / np.where(norms > 0, norms, 1.0)


class Attention(Ranker):
    """Baseline: mean over examples of each head's largest attention weight (real tokens)."""

    name = "attention"
    aggregation = "mean over examples of the max attention probability over real tokens"

    def scores(self, data: LabelledData) -> tuple[np.ndarray, None]:
        model = self.loaded.model
        totals = np.zeros(self.shape)
        bar = progress_bar(total=len(local_items(data.examples)), desc="attention", unit="ex", enabled=self.progress)
        for _, inputs in calibration_batches(self.loaded, data.examples, self.max_batch_tokens, bar):
            pairs = real_token_pairs(inputs["attention_mask"])
            with torch.no_grad():
                attentions = model(**inputs, output_attentions=True).attentions
            for layer, attention in enumerate(attentions):
                totals[layer] += attention.masked_fill(~pairs, 0.0).amax(dim=(-2, -1)).sum(dim=0).double().cpu().numpy()
        bar.close()
        return all_reduce_sum(totals) / len(data), None


class Taylor(Ranker):
    """Michel et al. 2019: |dL/d xi_h| per example (cross-entropy on the gold label, head mask xi = 1),
    summed over examples, then L2-normalised per layer."""

    name = "taylor"
    aggregation = "sum over examples of |d cross-entropy / d head mask|, L2-normalised per layer"

    def gradients(self, data: LabelledData) -> np.ndarray:
        """Sum over examples of |dL/d xi| (before normalisation), [layers, heads]."""
        model = self.loaded.model
        layers, heads = self.shape
        totals = np.zeros(self.shape)
        bar = progress_bar(total=len(local_items(data.examples)), desc="taylor", unit="ex", enabled=self.progress)
        for batch, inputs in calibration_batches(self.loaded, data.examples, self.max_batch_tokens, bar):
            device = inputs["input_ids"].device
            labels = torch.tensor([e.label for e in batch], device=device)
            mask = torch.ones(layers, len(batch), heads, 1, 1, device=device, requires_grad=True)
            with torch.enable_grad():
                logits = model(**inputs, head_mask=mask).logits
                loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
                (grad,) = torch.autograd.grad(loss, mask)
            totals += grad.abs().sum(dim=1)[..., 0, 0].double().cpu().numpy()
        bar.close()
        return all_reduce_sum(totals)

    def scores(self, data: LabelledData) -> tuple[np.ndarray, None]:
        return layer_l2_normalised(self.gradients(data)), None


class Random(Ranker):
    """Baseline: seeded random scores (sweeps average several seeds)."""

    name = "random"
    aggregation = "uniform random scores (seeded)"

    def scores(self, data: LabelledData) -> tuple[np.ndarray, None]:
        return np.random.default_rng(self.seed).random(self.shape), None


RANKERS: dict[str, type[Ranker]] = {
    ranker.name: ranker for ranker in (AttAttr, AttAttrPaper, AttAttrIterative, Attention, Taylor, Random)
}


def make_ranker(name: str, loaded: LoadedModel, **options: Any) -> Ranker:
    if name not in RANKERS:
        raise InputError(f"unknown ranking method '{name}'; choose one of {', '.join(sorted(RANKERS))}")
    return RANKERS[name](loaded, **options)
