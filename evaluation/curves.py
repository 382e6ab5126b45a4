"""Accuracy as heads are pruned: per ranking method and keep level, with heads masked (equal to structural
pruning, tested), and the area under each curve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compressor.encoded import EncodedData
from compressor.importance import HeadImportance
from compressor.modeling import LoadedModel
from compressor.pruning import plan_pruning
from evaluation.masked import masked_metrics


def area_under_curve(keeps: Sequence[float], accuracies: Sequence[float], full: float) -> float:
    """Mean accuracy over the fraction pruned, from 0 (the full model) to the largest fraction swept."""
    pruned = np.array([0.0, *[1 - keep for keep in keeps]])
    values = np.array([full, *accuracies])
    order = np.argsort(pruned)
    return float(np.trapezoid(values[order], pruned[order]) / (pruned.max() - pruned.min()))


def accuracy_curves(
    loaded: LoadedModel, encoded: EncodedData, importances: dict[str, list[HeadImportance]], keeps: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """Per method and keep level: metrics averaged over the method's seeds (masked PyTorch model)."""
    with_f1 = encoded.is_pair and loaded.config.num_labels == 2
    curves: dict[str, dict[str, Any]] = {}
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
        curves[method] = {
            metric: [float(np.mean([run[i][metric] for run in per_run])) for i in range(len(keeps))]
            for metric in per_run[0][0]
        }
        if len(per_run) > 1:
            curves[method]["accuracy_per_seed"] = [[row["accuracy"] for row in run] for run in per_run]
    return curves
