"""Accuracy, batch-1 latency and batch throughput of several runners, in one process so ratios compare."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from evaluation.encoded import EncodedData
from evaluation.metrics import classification_metrics
from exporters.runtime import Runner


@contextmanager
def torch_threads(threads: int):
    """Pin PyTorch's intra-op threads for the measurement, then restore them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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

    Batch-1 timing: ``batch1_latency``.
    """
    results: dict[str, dict[str, Any]] = {}
    predictions: dict[str, np.ndarray] = {}
    with_f1 = encoded.is_pair and num_labels == 2
    examples = sum(batch["input_ids"].shape[0] for batch in encoded.batches)
    with torch_threads(threads):
        for runner in tqdm(runners, desc="accuracy", unit="model", disable=not progress):
            runner.logits(encoded.batches[0])
            started = time.perf_counter()
            predicted = np.concatenate([runner.logits(batch).argmax(-1) for batch in encoded.batches])
            elapsed = time.perf_counter() - started
            predictions[runner.name] = predicted
            results[runner.name] = {
                **classification_metrics(predicted, encoded.labels, with_f1=with_f1),
                "throughput_per_s": examples / elapsed,
                "batch_size": int(encoded.batches[0]["input_ids"].shape[0]),
            }
        for name, latency in batch1_latency(runners, encoded.singles, warmup=warmup, progress=progress).items():
            results[name].update(latency)
    return results, predictions


def batch1_latency(
    runners: Sequence[Runner],
    singles: Sequence[dict[str, np.ndarray]],
    *,
    warmup: int = 10,
    progress: bool = False,
    keep_samples: bool = False,
) -> dict[str, dict[str, Any]]:
    """p50/p90 batch-1 latency per runner, timed round-robin (each example goes through every runner before
    the next), so drift in machine load touches all runners alike; the first ``warmup`` examples (at most
    half) are not counted. ``keep_samples`` adds the per-example times (``samples_ms``, in example order)
    for paired comparisons. Call it inside ``torch_threads`` to fix PyTorch's thread count."""
    times: dict[str, list[float]] = {runner.name: [] for runner in runners}
    for index, inputs in enumerate(tqdm(singles, desc="latency", unit="ex", disable=not progress)):
        for runner in runners:
            started = time.perf_counter()
            runner.logits(inputs)
            if index >= min(warmup, len(singles) // 2):
                times[runner.name].append(time.perf_counter() - started)
    latency = {}
    for name, samples in times.items():
        milliseconds = np.array(samples) * 1000
        latency[name] = {
            "latency_p50_ms": float(np.percentile(milliseconds, 50)),
            "latency_p90_ms": float(np.percentile(milliseconds, 90)),
            "latency_examples": int(milliseconds.size),
        }
        if keep_samples:
            latency[name]["samples_ms"] = milliseconds
    return latency
