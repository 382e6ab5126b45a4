"""The run's report: one ``Report`` object (report.json), rendered to report.md from its fields.

Every measured variant is a ``VariantResult`` row (which model, which runtime, its figures); ratios are
computed from those rows, never stored twice.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

from attr_compress.compressor.artifacts import JsonArtifact, to_plain
from attr_compress.compressor.outputs import REPORT_KIND
from attr_compress.compressor.recovery.lsq import RecoveryRecord
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.evaluation.fidelity import Fidelity, PairedDrop
from attr_compress.evaluation.measure import VariantResult
from attr_compress.evaluation.target import TargetSearch
from attr_compress.evaluation.tuning import TuningResult
from attr_compress.exporters.verified import ExportRecord

VARIANT_LABELS = {
    "pytorch-fp32": "PyTorch fp32",
    "onnx-fp32": "ONNX fp32",
    "onnx-int8": "ONNX int8, Optimum recipe",
    "onnx-int8-tuned": "ONNX int8, chosen recipe",
}


@dataclass(frozen=True)
class DataSummary:
    """Which rows evaluated, which scored, and whether they overlapped."""

    evaluation: str
    evaluation_rows: int
    evaluation_truncated: int
    calibration: str
    calibration_rows_in_file: int
    calibration_examples: int
    calibration_truncated: int
    calibration_shared_with_evaluation: bool
    source: str
    columns: dict[str, str | None]
    selection: str  # which rows chose the recipe, the target's candidate and the recovery
    selection_rows: int
    evaluation_row_numbers: list[int]  # the rows every accuracy in the report is measured on
    selection_row_numbers: list[int]
    excluded: list[str] = field(default_factory=list)  # rows removed so no measured row also chose or trained
    fidelity_rows: int = 0  # unlabelled rows of the calibration text that judge candidates against the original
    # token lengths (mean, quartiles) of the rows measured, the --data file, the calibration file and the judge's text
    lengths: dict[str, list[float]] = field(default_factory=dict)

    @property
    def exclusions_note(self) -> str:
        """One sentence on the rows set aside by content, or nothing."""
        return f" Compared by content: {'; '.join(self.excluded)}." if self.excluded else ""


@dataclass(frozen=True)
class HeadsSummary:
    keep: float
    total: int
    kept: int
    kept_per_layer: list[int]
    pruned: dict[str, list[int]]
    empty_layers: list[int]
    dropped_layers: list[int] = field(default_factory=list)  # removed whole (0-based, original numbering)


@dataclass(frozen=True)
class FfnSummary:
    keep_ffn: float
    total: int
    kept_per_layer: list[int]
    aggregation: str | None = None  # how neurons were scored; None when FFN neurons were not pruned
    steps: int | None = None


@dataclass(frozen=True)
class Comparison:
    """Another ranking at the same keep level: how it correlates with the chosen one, and its accuracy."""

    spearman_with_chosen: float
    accuracy: float
    seconds: float | None


@dataclass(frozen=True)
class WhySummary:
    pruned_per_layer: list[int]
    comparison: dict[str, Comparison] | None = None


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    attention: int
    ffn: int


@dataclass(frozen=True)
class StageTiming:
    stage: str
    seconds: float
    peak_memory_gib: float | None = None  # the process's resident high-water mark when the stage ended

    def describe(self) -> str:
        """'stage: 12.3 s (peak memory so far 1.40 GiB)', without the memory when the run did not record it."""
        memory = "" if self.peak_memory_gib is None else f" (peak memory so far {self.peak_memory_gib:.2f} GiB)"
        return f"{self.stage}: {self.seconds:.1f} s{memory}"


@dataclass(frozen=True)
class Machine:
    platform: str
    processor: str
    cpu_count: int | None
    threads: int

    @classmethod
    def here(cls, threads: int) -> Machine:
        return cls(platform.platform(), platform.processor() or platform.machine(), os.cpu_count(), threads)


@dataclass(frozen=True)
class WeightsInfo:
    file: str
    how: str
    stored_dtype: str
    loaded_as: str = "float32"


@dataclass(frozen=True)
class SelectionCheck:
    """The shipped int8 graph against the original before anything ships: the paired drop on the selection rows
    and the disagreement on the unlabelled fidelity slice. With a latency target, --max-drop refuses a drop the
    selection rows show to exceed it (the lower end of the 95% interval above it)."""

    drop: PairedDrop
    fidelity: Fidelity
    max_drop: float
    enforced: bool

    @property
    def drop_points(self) -> float:
        return self.drop.drop_points

    @property
    def refused(self) -> bool:
        return self.enforced and self.drop.interval().low > self.max_drop

    @property
    def confirmed(self) -> bool:
        """The whole interval within --max-drop: the selection rows show the drop is small enough."""
        return self.drop.interval().high <= self.max_drop


@dataclass(frozen=True)
class Report(JsonArtifact):
    """Everything a run measured and decided; ``report.json`` is ``to_dict()``, report.md ``render_markdown``."""

    kind = REPORT_KIND
    schema = 2

    model: str
    out: str
    options: dict[str, Any]
    data: DataSummary
    importance: HeadImportance
    heads: HeadsSummary
    why: WhySummary
    ffn: FfnSummary
    recovery: RecoveryRecord | None
    target_search: TargetSearch | None
    target_met_in_final_measurement: bool | None
    selection_check: SelectionCheck
    graph_tuning: TuningResult
    tuned_on: str
    parameters: dict[str, ParameterCounts]
    export: dict[str, ExportRecord]
    results: list[VariantResult]
    int8_agreement_with_fp32: dict[str, float]
    trees: list[str]
    timings: list[StageTiming]
    machine: Machine
    weights: WeightsInfo
    versions: dict[str, str]
    drop: PairedDrop  # the shipped int8 graph against the original (PyTorch fp32) on the rows that chose nothing
    drop_fp32: PairedDrop | None = None  # the pruned model's fp32 graph against the same, on the same rows
    reused: list[str] = field(default_factory=list)  # stages whose results came from the cache
    family: str = ""  # the architecture, e.g. "RoBERTa, RobertaForSequenceClassification"

    def result(self, model: str, runtime: str) -> VariantResult:
        return next(row for row in self.results if (row.model, row.runtime) == (model, runtime))

    @property
    def shipped(self) -> VariantResult:
        """The int8 graph users get."""
        return self.result("pruned", "onnx-int8-tuned")

    @property
    def drop_points(self) -> float:
        """Accuracy points the shipped graph lost against the original in PyTorch fp32, on the same rows."""
        return self.drop.drop_points

    @property
    def drop_split(self) -> dict[str, float] | None:
        """Where the points went on the measured rows: pruning and recovery (the fp32 graph), then int8."""
        if self.drop_fp32 is None:
            return None
        fp32 = self.drop_fp32.drop_points
        return {"pruning_and_recovery_fp32_points": fp32, "int8_points": self.drop_points - fp32}

    @property
    def served_disagreement(self) -> Fidelity:
        """How often the shipped graph's class differs from the original's on every --data row no stage trained
        on (the selection rows and the measured rows): text as served. The fidelity slice ranks candidates well
        but is the calibration text, often the original's own training data, on which it is more confident."""
        rows = [self.selection_check.drop, self.drop]
        changed = sum(drop.changed_rows for drop in rows)
        return Fidelity(rows=sum(drop.rows for drop in rows), disagreements=changed, kl=float("nan"))

    @property
    def measured_disagreement(self) -> float:
        """How often the shipped graph's class differs from the original's on the measured rows."""
        return self.drop.disagreement

    @property
    def speedup_spread(self) -> dict[str, list[float]]:
        """The batch-1 speed-ups of the shipped graph round by round (paired: both timed in the same round), least
        and greatest, so a report states how far one more measurement could move them."""
        shipped = self.shipped.round_p50_ms
        spread = {}
        for key, (model, runtime) in (
            ("vs_original_int8", ("original", "onnx-int8")),
            ("vs_original_pytorch_fp32", ("original", "pytorch-fp32")),
        ):
            rounds = self.result(model, runtime).round_p50_ms
            if rounds and len(rounds) == len(shipped):
                ratios = [theirs / ours for theirs, ours in zip(rounds, shipped, strict=True)]
                spread[key] = [min(ratios), max(ratios)]
        return spread

    @property
    def ratios(self) -> dict[str, float]:
        """Speed-ups of the shipped graph, batch-1 p50 and throughput, over the original's baselines."""
        shipped, torch = self.shipped, self.result("original", "pytorch-fp32")
        int8 = self.result("original", "onnx-int8")
        return {
            "speedup_p50_pruned_int8_vs_original_pytorch_fp32": torch.latency_p50_ms / shipped.latency_p50_ms,
            "speedup_p50_pruned_int8_vs_original_int8": int8.latency_p50_ms / shipped.latency_p50_ms,
            "throughput_pruned_int8_vs_original_pytorch_fp32": shipped.throughput_per_s / torch.throughput_per_s,
            "throughput_pruned_int8_vs_original_int8": shipped.throughput_per_s / int8.throughput_per_s,
        }

    def to_dict(self) -> dict[str, Any]:
        interval = self.drop.interval()
        fidelity = self.selection_check.fidelity.interval()
        return {
            **super().to_dict(),
            "ratios": self.ratios,
            "drop_points": self.drop_points,
            "drop_interval": to_plain(interval),
            "disagreement": self.selection_check.fidelity.disagreement,
            "disagreement_interval": to_plain(fidelity),
            "disagreement_on_measured_rows": self.measured_disagreement,
            "disagreement_on_selection_rows": self.selection_check.drop.disagreement,
            "disagreement_on_data_rows": self.served_disagreement.disagreement,
            "disagreement_on_data_rows_interval": to_plain(self.served_disagreement.interval()),
            "drop_split": self.drop_split,
            "speedup_spread": self.speedup_spread,
        }
