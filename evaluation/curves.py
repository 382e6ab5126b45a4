"""Accuracy as heads are pruned: per ranking method and keep level, with heads masked (equal to structural
pruning, tested), and the area under each curve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.data.encoded import EncodedData
from attr_compress.compressor.models.loading import LoadedModel
from attr_compress.compressor.pruning.prune import plan_pruning
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.evaluation.masked import masked_metrics
from attr_compress.evaluation.measure import VariantResult


@dataclass(frozen=True)
class Curve:
    """One method's metrics at each keep level, averaged over its seeds (and accuracy per seed when several)."""

    accuracy: list[float]
    f1: list[float] | None = None
    accuracy_per_seed: list[list[float]] | None = None


@dataclass(frozen=True)
class SweptMethod:
    """A method's curve in a sweep, its area under the curve and the seconds its scoring took."""

    accuracy: list[float]
    auc: float
    seconds: float
    f1: list[float] | None = None
    accuracy_per_seed: list[list[float]] | None = None


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    f1: float | None = None


@dataclass(frozen=True)
class SweepResult(JsonArtifact):
    """Everything `attr-compress sweep` writes to sweep.json, and what its markdown, page and figures read."""

    kind = "sweep"

    model: str
    evaluation: str
    evaluation_rows: int
    calibration: str
    calibration_examples: int
    keeps: list[float]
    unpruned: Metrics
    methods: dict[str, SweptMethod]
    random_seeds: list[int]
    latency_method: str | None
    latency: list[VariantResult] | None
    threads: int
    steps: int
    rule: str
    seed: int


def area_under_curve(keeps: Sequence[float], accuracies: Sequence[float], full: float) -> float:
    """Mean accuracy over the fraction pruned, from 0 (the full model) to the largest fraction swept."""
    pruned = np.array([0.0, *[1 - keep for keep in keeps]])
    values = np.array([full, *accuracies])
    order = np.argsort(pruned)
    return float(np.trapezoid(values[order], pruned[order]) / (pruned.max() - pruned.min()))


def _mean_over_runs(per_run: list[list[dict[str, float]]], metric: str) -> list[float]:
    return [float(np.mean([run[level][metric] for run in per_run])) for level in range(len(per_run[0]))]


def accuracy_curves(
    loaded: LoadedModel, encoded: EncodedData, importances: dict[str, list[HeadImportance]], keeps: Sequence[float]
) -> dict[str, Curve]:
    """Per method and keep level: metrics averaged over the method's seeds (masked PyTorch model)."""
    with_f1 = encoded.is_pair and loaded.config.num_labels == 2
    curves: dict[str, Curve] = {}
    for method, runs in importances.items():
        per_run = [
            masked_metrics(
                loaded.model,
                encoded,
                [plan_pruning(run.scores, keep, run.order).head_mask for keep in keeps],
                with_f1=with_f1,
            )
            for run in runs
        ]
        curves[method] = Curve(
            accuracy=_mean_over_runs(per_run, "accuracy"),
            f1=_mean_over_runs(per_run, "f1") if with_f1 else None,
            accuracy_per_seed=[[row["accuracy"] for row in run] for run in per_run] if len(per_run) > 1 else None,
        )
    return curves
