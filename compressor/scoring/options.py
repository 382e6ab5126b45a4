"""The scoring stage: every attention head, and optionally every FFN neuron, scored on calibration data.

``ScoringOptions`` holds every knob and is checked when it is made; ``score_heads`` and ``score_neurons``
take an in-memory ``LoadedModel`` (see ``LoadedModel.wrap`` for a model and tokenizer you already have).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attr_compress.compressor.cache import NOT_IN_KEY
from attr_compress.compressor.data.rows import LabelledData
from attr_compress.compressor.defaults import RULES, default
from attr_compress.compressor.errors import InputError, check_counts
from attr_compress.compressor.models.loading import LoadedModel, check_device, on_device
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import NeuronImportance
from attr_compress.compressor.scoring.neurons import score_neurons as _score_neurons
from attr_compress.compressor.scoring.rankers import RANKERS, make_ranker


@dataclass(frozen=True)
class ScoringOptions:
    """How heads and neurons are scored: ranking ``method`` (heads), integration ``steps`` and ``rule``,
    the calibration sample size ``examples`` and its ``seed``, the attribution batch bound and the device."""

    method: str = default("method")
    examples: int = default("examples")
    steps: int = default("steps")
    rule: str = default("rule")
    settle: float = default("settle")
    seed: int = default("seed")
    max_batch_tokens: int = default("max_batch_tokens")
    device: str = default("device")
    progress: bool = field(default=False, metadata=NOT_IN_KEY)

    def __post_init__(self) -> None:
        if self.method not in RANKERS:
            raise InputError(f"unknown ranking method '{self.method}'; choose one of {', '.join(sorted(RANKERS))}")
        if self.rule not in RULES:
            raise InputError(f"--rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        check_counts(examples=self.examples, steps=self.steps, max_batch_tokens=self.max_batch_tokens)
        if not 0 <= self.settle <= 1:
            raise InputError(f"--settle must be in [0, 1] (0: score every example), got {self.settle}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise InputError(f"--device must be cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def engine(self) -> dict[str, Any]:
        """The keyword arguments every attribution engine takes."""
        return {
            "steps": self.steps,
            "rule": self.rule,
            "seed": self.seed,
            "max_batch_tokens": self.max_batch_tokens,
            "settle": self.settle,
            "progress": self.progress,
        }


def score_heads(loaded: LoadedModel, data: LabelledData, options: ScoringOptions = ScoringOptions()) -> HeadImportance:
    """Importance of every attention head on ``data`` by ``options.method`` (attention attribution by default)."""
    check_device(options.device)
    with on_device(loaded, options.device):
        return make_ranker(options.method, loaded, **options.engine).rank(data)


def score_neurons(
    loaded: LoadedModel, data: LabelledData, options: ScoringOptions = ScoringOptions()
) -> NeuronImportance:
    """Importance of every FFN intermediate neuron on ``data`` (integrated gradients over the activations)."""
    check_device(options.device)
    with on_device(loaded, options.device):
        return _score_neurons(loaded, data, **options.engine)
