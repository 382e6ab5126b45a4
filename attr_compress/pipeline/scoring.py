"""Score stage: head and FFN-neuron importance, cached by the model, rows and options."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from attr_compress.compressor.scoring.distributed import collective
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import FFN_IMPORTANCE_FILE, NeuronImportance
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads, score_neurons
from attr_compress.pipeline.job import Run, Scores

logger = logging.getLogger(__name__)


def score(job: Run) -> Scores:
    """Head scores (and FFN neuron scores when neurons are pruned or a target is searched)."""
    calibration, scoring = job.inputs.resolved.calibration, replace(job.options.scoring, progress=job.options.progress)
    work = f"{len(calibration)} examples x {scoring.steps} steps"
    inputs = (job.loaded, calibration, scoring)
    with job.timer.stage(f"score heads with {scoring.method} ({work})"):
        heads = cached_artifact(job, "head scores", inputs, HeadImportance, partial(collective, score_heads, *inputs))
        logger.info(
            f"head ranking from {heads.examples} of {len(calibration)} examples"
            + settled(scoring, heads, len(calibration))
        )
    neurons = None
    if job.options.scores_neurons:
        with job.timer.stage(f"score FFN neurons ({work})"):
            compute = partial(collective, score_neurons, *inputs)
            neurons = cached_artifact(job, "neuron scores", inputs, NeuronImportance, compute)
            logger.info(
                f"FFN neuron ranking from {neurons.examples} of {len(calibration)} examples"
                + settled(scoring, neurons, len(calibration))
            )
            neurons.save(job.staging / FFN_IMPORTANCE_FILE)
    return Scores(heads, neurons)


def settled(scoring: ScoringOptions, scores: Any, available: int) -> str:
    """Why scoring stopped where it did, for the log."""
    if scoring.settle and scores.examples < available:
        return f" (it settled: Spearman >= {scoring.settle:g} between consecutive rankings)"
    return ""


def cached_artifact(job: Run, stage: str, inputs: tuple[Any, ...], kind: type[Any], compute: Callable[[], Any]) -> Any:
    """A JSON artifact from the cache when this code made it before from the same inputs (model, rows, options)."""
    stored, hit = job.cache.record(stage, inputs, kind, compute)
    if hit:
        job.reused.append(stage)
        logger.info(f"{stage}: reused from the cache (same model, rows and options)")
    return stored
