"""The run's shared state and the typed results the stages hand each other (inputs, scores, sizes, pruned and
shipped models), and the stage timer."""

from __future__ import annotations

import functools
import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attr_compress.compressor.cache import StageCache
from attr_compress.compressor.data.encoded import EncodedData, encode_data, parity_batches
from attr_compress.compressor.data.task import ResolvedData, resolve_data
from attr_compress.compressor.explain.trees import AttributionTree
from attr_compress.compressor.models.loading import LoadedModel, token_lengths
from attr_compress.compressor.pruning.prune import (
    PrunePlan,
)
from attr_compress.compressor.recovery.distill import TrainingText
from attr_compress.compressor.recovery.lsq import RecoveryRecord, encode_for_fit
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import NeuronImportance
from attr_compress.evaluation.fidelity import Judge
from attr_compress.evaluation.measure import Measurement
from attr_compress.evaluation.report.record import (
    Comparison,
    SelectionCheck,
    StageTiming,
)
from attr_compress.evaluation.target import TargetSearch
from attr_compress.evaluation.tuning import TuningResult
from attr_compress.exporters.onnx_export import ONNX_INT8
from attr_compress.exporters.verified import ExportRecord, VerifiedGraphs
from attr_compress.pipeline.options import PipelineOptions

logger = logging.getLogger(__name__)


class StageTimer:
    """Wall time of each named stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # insertion order is the run order
        self.peak_gib: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info(f"[{len(self.seconds) + 1}] {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)
            self.peak_gib[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)  # KiB

    @property
    def timings(self) -> list[StageTiming]:
        return [StageTiming(name, seconds, self.peak_gib[name]) for name, seconds in self.seconds.items()]


@dataclass(frozen=True)
class RunInputs:
    """The run's data, tokenised once: evaluation (accuracy, latency), parity batches (real inputs at shapes the
    export never saw), selection (choices; timed on the evaluation inputs' lengths) and the recovery's fit."""

    resolved: ResolvedData
    evaluation: EncodedData
    parity: list[dict[str, np.ndarray]]
    selection: EncodedData
    fit_batches: list[dict[str, torch.Tensor]]
    training: TrainingText | None  # the calibration file, streamed by distillation (None when data is shared)
    fidelity: EncodedData  # the unlabelled slice every candidate is judged on against the original


def prepare_inputs(loaded: LoadedModel, options: PipelineOptions) -> RunInputs:
    resolved = resolve_data(
        loaded.config.to_dict(),
        options.data,
        loaded.label2id,
        examples=options.scoring.examples,
        seed=options.scoring.seed,
        select_examples=options.select_examples,
        fit_examples=options.recovery.fit_examples,
        fidelity_examples=options.fidelity_examples,
        lengths=functools.partial(token_lengths, loaded),
    )
    evaluation = encode_data(loaded, resolved.evaluation, singles=options.latency_examples)
    # choices are scored on calibration labels (selection) but timed on the inputs the model will serve
    selection = replace(encode_data(loaded, resolved.selection, singles=0, by_length=True), singles=evaluation.singles)
    fit = encode_for_fit(loaded, resolved.fit.examples) if options.recovery.method != "none" else []
    training = None
    if not resolved.shared:
        held_out = frozenset(example.content for example in resolved.fidelity.examples)
        path, rows = resolved.calibration.path, resolved.calibration_rows
        training = TrainingText(loaded, path, rows, options.data.columns, held_out, resolved.lengths)
    fidelity = encode_data(loaded, resolved.fidelity, singles=0, by_length=True)
    if resolved.lengths is not None:
        match = resolved.lengths
        logger.info(
            f"text like what is served: --data rows average {match.served_lengths[0]:.1f} tokens, --calib rows "
            f"{match.available_lengths[0]:.1f}; the judge's {len(resolved.fidelity):,} rows, the fit rows and the "
            f"distillation stream are drawn to follow --data's lengths ({match.covered:.0%} of them covered)"
        )
    return RunInputs(resolved, evaluation, parity_batches(evaluation), selection, fit, training, fidelity)


@dataclass(frozen=True)
class Scores:
    heads: HeadImportance
    neurons: NeuronImportance | None


@dataclass(frozen=True)
class OriginalGraphs:
    """The original model exported once: its verified fp32 graphs and its int8 graph by Optimum's recipe
    (the reference of every speed-up)."""

    graphs: VerifiedGraphs
    record: ExportRecord

    @property
    def baseline_int8(self) -> Path:
        return self.graphs.folder / ONNX_INT8


@dataclass(frozen=True)
class Sizes:
    """The plan (from the options' keep fractions, or the latency target's search) and, with a target, the
    search and the recipe tuning that chose it."""

    plan: PrunePlan
    search: TargetSearch | None = None
    tuning: TuningResult | None = None

    @property
    def keep(self) -> float:
        return self.plan.keep

    @property
    def keep_ffn(self) -> float:
        return self.plan.keep_ffn

    @property
    def drop_layers(self) -> tuple[int, ...]:
        return tuple(self.plan.dropped_layers)


@dataclass(frozen=True)
class Pruned:
    plan: PrunePlan
    recovery: RecoveryRecord | None
    eager: Any  # the saved folder reloaded: eager attention, for export
    as_users_load: Any  # the same with transformers' default attention, timed as users run it


@dataclass(frozen=True)
class Shipped:
    record: ExportRecord
    tuning: TuningResult
    tuned_on: str
    original_tuned_int8: Path  # the original quantised by the shipped recipe: what the recipe alone buys


@dataclass
class Run:
    """What every stage of one run reads: options, model, data, staging folder, timer, cache and judge."""

    options: PipelineOptions
    loaded: LoadedModel
    inputs: RunInputs
    staging: Path
    timer: StageTimer
    cache: StageCache
    judge: Judge  # the original's outputs on the fidelity slice and the selection rows, to compare candidates with
    reused: list[str] = field(default_factory=list)  # stages whose results came from the cache

    @property
    def num_labels(self) -> int:
        return self.loaded.config.num_labels


@dataclass(frozen=True)
class Outcome:
    """What the stages of one run produced, for its report."""

    scores: Scores
    sizes: Sizes
    pruned: Pruned
    shipped: Shipped
    original: OriginalGraphs
    check: SelectionCheck
    measurement: Measurement
    comparison: dict[str, Comparison] | None
    trees: list[AttributionTree]
