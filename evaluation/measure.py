"""Accuracy, batch-1 latency and batch throughput of several runners, in one process so ratios compare."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from attr_compress.compressor.data.encoded import EncodedData
from attr_compress.compressor.progress import progress_bar
from attr_compress.evaluation.metrics import classification_metrics
from attr_compress.exporters.runtime import Runner, batch1_latency, torch_threads


@dataclass(frozen=True)
class VariantResult:
    """One model in one runtime, measured: accuracy on the evaluation data, batch-1 latency, throughput."""

    model: str  # "original" or "pruned"
    runtime: str  # a key of VARIANT_LABELS
    accuracy: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_examples: int
    throughput_per_s: float
    batch_size: int
    f1: float | None = None
    round_p50_ms: list[float] = field(default_factory=list)  # each timing round's median, for paired ratios

    @property
    def name(self) -> str:
        return f"{self.model}/{self.runtime}"


def predict(runner: Runner, encoded: EncodedData) -> np.ndarray:
    """Predicted classes over every padded batch, in example order."""
    return np.concatenate([runner.logits(batch).argmax(-1) for batch in encoded.batches])


def accuracy(runner: Runner, encoded: EncodedData) -> float:
    return float((predict(runner, encoded) == encoded.labels).mean())


@dataclass(frozen=True)
class _Named:
    """A runner under the variant's name, without renaming the runner itself."""

    name: str
    runner: Runner

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.logits(inputs)


@dataclass(frozen=True)
class Measurement:
    """The evaluate stage's result: one row per variant, and each variant's predictions (for agreement)."""

    results: list[VariantResult]
    predictions: dict[str, np.ndarray]

    def agreement(self, first: str, second: str) -> float:
        """Fraction of examples on which two variants (by name, "model/runtime") predict the same class."""
        return float((self.predictions[first] == self.predictions[second]).mean())


def evaluate(
    variants: dict[tuple[str, str], Runner],
    encoded: EncodedData,
    *,
    threads: int = 1,
    num_labels: int = 2,
    progress: bool = False,
) -> Measurement:
    """Measure every (model, runtime) variant side by side: accuracy, throughput, batch-1 latency."""
    named = [_Named(f"{model}/{runtime}", runner) for (model, runtime), runner in variants.items()]
    results, predictions = evaluate_runners(named, encoded, threads=threads, num_labels=num_labels, progress=progress)
    rows = [VariantResult(model, runtime, **results[f"{model}/{runtime}"]) for model, runtime in variants]
    return Measurement(rows, predictions)


def evaluate_runners(
    runners: Sequence[Runner],
    encoded: EncodedData,
    *,
    threads: int = 1,
    warmup: int = 10,
    num_labels: int = 2,
    progress: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Per runner: metrics on all data, throughput over the padded batches, batch-1 latency percentiles;
    and each runner's predictions (for agreement between runtimes).

    Batch-1 timing: ``batch1_latency``, each runner on its own, three rounds.
    """
    results: dict[str, dict[str, Any]] = {}
    predictions: dict[str, np.ndarray] = {}
    with_f1 = encoded.is_pair and num_labels == 2
    examples = sum(batch["input_ids"].shape[0] for batch in encoded.batches)
    with torch_threads(threads):
        for runner in progress_bar(runners, desc="accuracy", unit="model", enabled=progress):
            runner.logits(encoded.batches[0])
            started = time.perf_counter()
            predicted = predict(runner, encoded)
            elapsed = time.perf_counter() - started
            predictions[runner.name] = predicted
            results[runner.name] = {
                **classification_metrics(predicted, encoded.labels, with_f1=with_f1),
                "throughput_per_s": examples / elapsed,
                "batch_size": int(encoded.batches[0]["input_ids"].shape[0]),
            }
        latency = batch1_latency(runners, encoded.singles, warmup=warmup, rounds=3, progress=progress)
        for name, row in latency.items():
            keys = ("latency_p50_ms", "latency_p90_ms", "latency_examples", "round_p50_ms")
            results[name].update({key: row[key] for key in keys})
    return results, predictions
