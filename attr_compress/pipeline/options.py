"""The options of a whole run (``PipelineOptions``): defaults from ``compressor.defaults``, checked when made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attr_compress.compressor.data.task import DataOptions
from attr_compress.compressor.defaults import ALLOCATIONS, INT8_CHOICES, default
from attr_compress.compressor.errors import InputError, check_counts, check_finite
from attr_compress.compressor.pruning.prune import (
    check_keep,
)
from attr_compress.compressor.recovery.lsq import RecoveryOptions
from attr_compress.compressor.scoring.options import ScoringOptions
from attr_compress.evaluation.target import LatencyTarget

if TYPE_CHECKING:
    from attr_compress.pipeline.job import Sizes


@dataclass(frozen=True)
class PipelineOptions:
    """Every option of a run, checked when made. Pass ``keep`` (and ``keep_ffn``) or a latency target."""

    model: str
    keep: float | None = None
    keep_ffn: float | None = None
    target_speedup: float | None = None
    latency_budget: float | None = None
    drop_layers: tuple[int, ...] = ()  # whole layers removed (0-based)
    max_drop: float = default("max_drop")
    allocation: str = default("allocation")
    int8: str = default("int8")
    out: str | None = None
    data: DataOptions = field(default_factory=DataOptions)
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    recovery: RecoveryOptions = field(default_factory=RecoveryOptions)
    compare: bool = False
    threads: int = default("threads")
    trees: int = default("trees")
    latency_examples: int = default("latency_examples")
    select_examples: int = default("select_examples")
    fidelity_examples: int = default("fidelity_examples")
    force: bool = False
    cache: bool = True  # reuse stage results cached by content ($XDG_CACHE_HOME/attr-compress)
    progress: bool = True

    def __post_init__(self) -> None:
        check_finite(self)
        if self.target is not None and (self.keep is not None or self.keep_ffn is not None or self.drop_layers):
            raise InputError(
                "a latency target chooses --keep, --keep-ffn and --drop-layers; pass either them or the target"
            )
        if self.target is None and self.keep is None:
            raise InputError(
                "pass --keep (fraction of heads kept) or a latency target (--target-speedup/--latency-budget)"
            )
        if self.keep is not None:
            check_keep(self.keep)
        if self.keep_ffn is not None:
            check_keep(self.keep_ffn, "--keep-ffn", "FFN neurons")
        check_counts(
            latency_examples=self.latency_examples,
            select_examples=self.select_examples,
            fidelity_examples=self.fidelity_examples,
        )
        if self.allocation not in ALLOCATIONS or self.int8 not in INT8_CHOICES:
            raise InputError(
                f"--allocation must be one of {', '.join(ALLOCATIONS)} and --int8 one of {', '.join(INT8_CHOICES)}"
            )
        if self.trees < 0 or self.threads < 0:
            raise InputError(f"--trees and --threads must be 0 or more, got {self.trees} and {self.threads}")
        if not self.max_drop >= 0:
            raise InputError(f"--max-drop must be 0 or more accuracy points, got {self.max_drop}")

    @property
    def target(self) -> LatencyTarget | None:
        if self.target_speedup is None and self.latency_budget is None:
            return None
        return LatencyTarget(speedup=self.target_speedup, budget_ms=self.latency_budget)

    @property
    def scores_neurons(self) -> bool:
        return (self.keep_ffn or 1.0) < 1 or self.target is not None

    @property
    def out_folder(self) -> Path:
        if self.out:
            return Path(self.out)
        label = "target" if self.target else f"keep{self.keep:g}-ffn{self.keep_ffn or 1.0:g}"
        model = Path(self.model).resolve()
        return model.parent / f"{model.name}-attr-{label}"

    def record(self, sizes: Sizes) -> dict[str, Any]:
        """The options as the report lists them, with the keep values used (a target chooses them)."""
        scoring = {key: value for key, value in asdict(self.scoring).items() if key != "progress"}
        recovery = asdict(self.recovery)
        recovery["recover"] = recovery.pop("method")
        top = {
            key: value for key, value in asdict(self).items() if key not in ("data", "scoring", "recovery", "progress")
        }
        chosen = {"keep": sizes.keep, "keep_ffn": sizes.keep_ffn, "drop_layers": list(sizes.drop_layers)}
        return {**top, **scoring, **recovery, **chosen}
