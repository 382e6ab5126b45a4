"""Latency targets, the latency model that turns a structure into a predicted speed-up, and the record of a
search for the structure that meets a target (``target_search.json``).

The model is fitted to repeated measurements, not trusted from one: each designed structure's int8 graph is
timed side by side with the original's Optimum int8 graph, example by example, in several rounds; the ratio
(structure / baseline) is linear in what a structure keeps (layers, attention blocks, heads, FFN blocks, FFN
neurons) and fitted by least squares, with the coefficients' standard errors and the residual error stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.pruning.structures import LayerShape, Structure
from attr_compress.evaluation.fidelity import Judgement
from scipy import optimize

FEATURES = ("layers", "attention_blocks", "heads", "ffn_blocks", "neurons")
MARGIN = 1.04  # a planned structure must clear the target by 4% in the model's prediction
# what a kept layer, attention block and FFN block cost whatever their width, as shares of a full layer's cost
FIXED_SHARES = {"layers": 1 / 16, "attention_blocks": 1 / 16, "ffn_blocks": 1 / 16}


@dataclass(frozen=True)
class LatencyTarget:
    """--target-speedup (x the original int8 ONNX) or --latency-budget (ms p50 at batch 1)."""

    speedup: float | None = None
    budget_ms: float | None = None

    def __post_init__(self) -> None:
        if (self.speedup is None) == (self.budget_ms is None):
            raise InputError("pass exactly one of --target-speedup and --latency-budget")
        if self.speedup is not None and self.speedup <= 0:
            raise InputError(f"--target-speedup must be above 0, got {self.speedup}")
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise InputError(f"--latency-budget must be above 0 milliseconds, got {self.budget_ms}")

    def met(self, p50_ms: float, speedup: float, margin: float = 1.0) -> bool:
        """Whether a measurement meets the target, with ``margin`` (>= 1) to spare."""
        if self.speedup is not None:
            return speedup >= self.speedup * margin
        return p50_ms * margin <= self.budget_ms

    def ratio(self, baseline_ms: float) -> float:
        """The largest latency relative to the original's int8 graph that meets the target."""
        return 1 / self.speedup if self.speedup is not None else self.budget_ms / baseline_ms

    @property
    def description(self) -> str:
        if self.speedup is not None:
            return f"{self.speedup:g}x faster than the original int8 ONNX at batch 1"
        return f"at most {self.budget_ms:g} ms p50 at batch 1"


@dataclass(frozen=True)
class Timing:
    """One structure's int8 graph timed side by side with the baseline: per round, the median over examples of
    (structure time / baseline time), and the p50s."""

    structure: Structure
    ratios: list[float]
    p50_ms: float
    baseline_p50_ms: float

    @property
    def ratio(self) -> float:
        return float(np.mean(self.ratios))

    @property
    def speedup(self) -> float:
        return 1 / self.ratio


@dataclass(frozen=True)
class LatencyModel:
    """Latency relative to the original's Optimum int8 graph: ``intercept`` + the sum over FEATURES of
    coefficient x count, fitted by non-negative least squares; ``errors`` are the coefficients' standard errors
    (of the unconstrained fit), ``rms_error`` the residual."""

    intercept: float
    coefficients: dict[str, float]
    errors: dict[str, float]
    rms_error: float
    baseline_p50_ms: float
    timings: list[Timing]

    @classmethod
    def fit(cls, timings: list[Timing]) -> LatencyModel:
        features = np.array([[1.0, *(t.structure.features()[name] for name in FEATURES)] for t in timings])
        ratios = np.array([t.ratio for t in timings])
        # no part of a model makes it faster by being there: costs are fitted non-negative
        solution, _ = optimize.nnls(features, ratios)
        residuals = ratios - features @ solution
        dof = max(1, len(timings) - features.shape[1])
        variance = float(residuals @ residuals) / dof
        covariance = variance * np.linalg.pinv(features.T @ features)
        errors = np.sqrt(np.clip(np.diag(covariance), 0, None))
        return cls(
            intercept=float(solution[0]),
            coefficients={name: float(value) for name, value in zip(FEATURES, solution[1:], strict=True)},
            errors={name: float(value) for name, value in zip(("intercept", *FEATURES), errors, strict=True)},
            rms_error=float(np.sqrt(np.mean(residuals**2))),
            baseline_p50_ms=float(np.median([t.baseline_p50_ms for t in timings])),
            timings=timings,
        )

    def layer_cost(self, shape: LayerShape) -> float:
        """What one layer adds to the ratio (nothing when dropped)."""
        if shape.dropped:
            return 0.0
        counts = {
            "layers": 1,
            "attention_blocks": int(shape.heads > 0),
            "heads": shape.heads,
            "ffn_blocks": int(shape.neurons > 0),
            "neurons": shape.neurons,
        }
        return sum(self.coefficients[name] * counts[name] for name in FEATURES)

    def predict(self, structure: Structure) -> float:
        """The structure's latency relative to the baseline (never zero: a fit of pure noise can zero every
        coefficient)."""
        return max(self.intercept + sum(self.layer_cost(shape) for shape in structure.layers), 1e-6)

    def margin(self, target_ratio: float) -> float:
        """How far below the target a plan must be predicted: a fixed MARGIN, not the fit's residual (which moves
        with the timing noise, and the budget with it); the confirming measurement catches a model that is off."""
        return MARGIN


@dataclass(frozen=True)
class CostPrior:
    """A layer's cost as a share of a full layer's, in a shape that timing noise cannot move: heads and FFN
    neurons by their multiply-adds at the served length, and the fixed costs of a kept layer, attention block and
    FFN block (operators that run whatever the width: LayerNorm, residual sums, softmax, dispatch) as stated
    shares (FIXED_SHARES). The fitted latency model cannot stand in here: its per-block and per-unit
    coefficients trade off against each other from run to run (the FFN block's share moved 4x across twelve
    simulated runs with 3% noise) while the cost of a whole structure stays put. Allocations are made under this
    prior; the measured model only says how far down the ladder of allocations the target lies."""

    head: float  # one head's multiply-adds over one neuron's
    heads: int
    width: int

    @classmethod
    def of(cls, hidden: int, heads: int, width: int, tokens: float) -> CostPrior:
        head_size = hidden / max(heads, 1)
        head = (4 * hidden * head_size + 2 * tokens * head_size) / (2 * hidden)  # q, k, v, output; scores, context
        return cls(head, heads, width)

    def __call__(self, shape: LayerShape) -> float:
        if shape.dropped:
            return 0.0
        variable = 1.0 - sum(FIXED_SHARES.values())
        units = shape.heads * self.head + shape.neurons
        return (
            FIXED_SHARES["layers"]
            + FIXED_SHARES["attention_blocks"] * (shape.heads > 0)
            + FIXED_SHARES["ffn_blocks"] * (shape.neurons > 0)
            + variable * units / (self.heads * self.head + self.width)
        )


@dataclass(frozen=True)
class Candidate:
    """A structure the search considered: where it came from, its predicted speed-up, and how it did against
    the original after the least-squares refit (None until judged)."""

    structure: Structure
    origin: str
    predicted_speedup: float
    judgement: Judgement | None = None


@dataclass(frozen=True)
class Confirmation:
    """The chosen structure's int8 graph measured side by side with the baseline before it ships."""

    structure: Structure
    speedup: float
    p50_ms: float
    baseline_p50_ms: float
    met: bool


@dataclass(frozen=True)
class TargetSearch(JsonArtifact):
    """How the structure was chosen: the latency model, the candidates and their judgements, the chosen one,
    why, and the confirming measurement."""

    kind = "latency-target-search"
    schema = 2

    target: str
    target_ratio: float
    margin: float
    recipe: dict[str, object]
    threads: int
    latency_model: LatencyModel
    candidates: list[Candidate]
    chosen: Structure
    reason: str
    confirmations: list[Confirmation] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # the search's stages that came from the cache

    @property
    def chosen_candidate(self) -> Candidate:
        return next(candidate for candidate in self.candidates if candidate.structure == self.chosen)
