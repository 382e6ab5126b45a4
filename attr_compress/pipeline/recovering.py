"""Prune and recover stages: the plan applied, then the recovery chosen by agreement with the original
(least squares, distillation), cached as one entry."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from attr_compress.compressor.errors import InputError, VerificationError
from attr_compress.compressor.models.loading import (
    USERS_ATTENTION,
    load_model,
)
from attr_compress.compressor.pruning.prune import (
    PrunePlan,
    prune_model,
    save_pruned,
)
from attr_compress.compressor.recovery.distill import TrainingText, distill
from attr_compress.compressor.recovery.lsq import RecoveryOptions, RecoveryRecord, recover
from attr_compress.compressor.scoring.distributed import collective
from attr_compress.evaluation.fidelity import Judge
from attr_compress.evaluation.report.figures import save_importance
from attr_compress.exporters.runtime import TorchRunner
from attr_compress.pipeline.job import Pruned, Run, Scores, Sizes

logger = logging.getLogger(__name__)


def prune_and_recover(job: Run, scores: Scores, sizes: Sizes) -> Pruned:
    with job.timer.stage("plan, prune and recover"):
        plan = sizes.plan
        plan.save(job.staging / "prune_plan.json")
        save_importance(scores.heads, job.staging, plan)
        recovery = recovered_folder(job, plan)
        if recovery is not None:
            recovery.save(job.staging / "recovery.json")
        eager, as_users_load = reload_pruned(job, "recovered weights" in job.reused)
    return Pruned(plan, recovery, eager, as_users_load)


def reload_pruned(job: Run, from_cache: bool) -> tuple[Any, Any]:
    """What users get from ``pruned/``, reloaded: eager attention for export (the exporter switches to the
    family's traced attention itself), transformers' default attention for timing like the original. A folder
    that does not load is this run's fault or its cache's, never the user's model: the error says which."""
    folder = job.staging / "pruned"
    try:
        return load_model(folder).model, load_model(folder, attn_implementation=USERS_ATTENTION).model
    except InputError as err:
        reason = getattr(err, "reason", str(err))
        if from_cache:
            raise VerificationError(
                f"the recovered weights reused from the cache ({job.cache.root}) do not load ({reason}); re-run with "
                "--no-cache, or delete the cache folder"
            ) from None
        raise VerificationError(f"the pruned model this run wrote does not load back ({reason})") from None


def recovered_folder(job: Run, plan: PrunePlan) -> RecoveryRecord | None:
    """Prune, recover and save ``pruned/``, or copy the folder (and its record) a run with the same model,
    plan, data rows and recovery options cached (checked against the entry's manifest where it lands)."""
    inputs = job.inputs
    targeted, can_distill = job.options.target is not None, inputs.training is not None
    methods = recovery_methods(job.options.recovery.method, plan, targeted, can_distill)
    key = (job.loaded, plan, methods, job.options.recovery, inputs.resolved.fit, inputs.selection, inputs.training)
    fitting = RecoveryInputs(job.loaded.model, inputs.fit_batches, inputs.training, job.judge, job.options.progress)

    def build(folder: Path) -> RecoveryRecord | None:
        model = prune_model(copy.deepcopy(job.loaded.model), plan)
        model, recovery = recover_by_measurement(model, methods, job.options.recovery, fitting)
        save_pruned(model, job.loaded.tokenizer, folder)
        return recovery

    stored, hit = job.cache.folder("recovered weights", key, job.staging / "pruned", RecoveryRecord | None, build)
    if hit:
        job.reused.append("recovered weights")
        logger.info("recovered weights: reused from the cache (same model, plan, rows and options)")
    return stored


@dataclass(frozen=True)
class RecoveryInputs:
    """What a recovery fits on (``fit_batches``), trains on (``training``, None: no distillation) and is judged
    against the ``original`` with."""

    original: Any
    fit_batches: list[dict[str, torch.Tensor]]
    training: TrainingText | None
    judge: Judge
    progress: bool = False


def recovery_methods(
    method: str, plan: PrunePlan, targeted: bool, can_distill: bool, can_fit: bool = True
) -> tuple[str, ...]:
    """The methods to try: the one asked for, or with auto the ones worth measuring. FFN pruning and latency
    targets always recover (lsq, and distill when there is a training file); heads alone may not need to; with
    nothing to fit on (``can_fit`` False), auto is none."""
    if method != "auto":
        return (method,)
    if not can_fit:
        return ("none",)
    if plan.keep_ffn < 1 or plan.dropped_layers or targeted:
        return ("lsq", "distill") if can_distill else ("lsq",)
    return ("none", "lsq")


def recover_by_measurement(
    model: Any, methods: tuple[str, ...], options: RecoveryOptions, inputs: RecoveryInputs
) -> tuple[Any, RecoveryRecord | None]:
    """Each method in turn on a copy (distill continues from lsq's weights when both run); the one closest to the
    original on the fidelity slice wins (least disagreement, then KL; ties: the cheaper, earlier one)."""
    tried = {}
    for method in methods:
        if method == "distill" and "lsq" in tried:
            candidate, record = copy.deepcopy(tried["lsq"][0]), tried["lsq"][1]
            logger.info(f"distilling from the original model on {inputs.training.path}")
            trained = collective(
                distill, inputs.original, candidate, inputs.training, options.distill, progress=inputs.progress
            )
            record = replace(record, method="distill", distill=trained)
        else:
            candidate = copy.deepcopy(model)
            record = collective(
                recover,
                inputs.original,
                candidate,
                inputs.fit_batches,
                replace(options, method=method),
                text=inputs.training,
                progress=inputs.progress,
            )
        tried[method] = (candidate, record, inputs.judge.judge(TorchRunner("candidate", candidate)))
    best = min(tried, key=lambda method: (*tried[method][2].key, methods.index(method)))
    chosen, record, _ = tried[best]
    judgements = {method: judgement for method, (_, _, judgement) in tried.items()}
    logger.info(
        "recovery against the original: "
        + ", ".join(f"{m} disagrees on {j.fidelity.disagreement:.2%}" for m, j in judgements.items())
        + f" of {inputs.judge.rows} unlabelled rows; kept {best}"
    )
    compared = {method: judgement.summary for method, judgement in judgements.items()}
    return chosen, None if record is None else replace(record, compared=compared)
