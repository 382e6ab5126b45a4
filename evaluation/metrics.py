"""Classification metrics: accuracy, and F1 of the positive class for two-class tasks (GLUE's MRPC/QQP)."""

from __future__ import annotations

import numpy as np


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, *, with_f1: bool) -> dict[str, float]:
    if predictions.shape != labels.shape or labels.size == 0:
        raise ValueError("predictions and labels must be non-empty and of the same shape")
    metrics = {"accuracy": float(np.mean(predictions == labels))}
    if with_f1:
        true_positive = float(np.sum((predictions == 1) & (labels == 1)))
        predicted = float(np.sum(predictions == 1))
        actual = float(np.sum(labels == 1))
        metrics["f1"] = 2 * true_positive / (predicted + actual) if predicted + actual else 0.0
    return metrics
