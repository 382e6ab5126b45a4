"""Every option's command-line name, default, choices and help, in one place and without torch: the options
dataclasses take their defaults from here, the command line builds its options from here, and a test checks the
README's table against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

METHODS = ("attattr", "attattr-paper", "attattr-iterative", "attention", "taylor", "random")
RULES = ("left", "midpoint", "gauss")
RECOVERIES = ("auto", "none", "lsq", "distill")
ALLOCATIONS = ("per-layer", "global")
INT8_CHOICES = ("per-matmul", "uniform")
# "first-token": the last layer's first token (what the classifier reads; the least-squares refit's target),
# "every-token": every layer's every real token (TinyBERT), "none": the logits alone
DISTILL_HIDDEN = ("first-token", "every-token", "none")


@dataclass(frozen=True)
class Option:
    """One option: its flag, default (None: off), help, choices, and its type when the default is None."""

    flag: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    kind: type | None = None

    @property
    def type(self) -> type:
        return self.kind or type(self.default)


OPTIONS: dict[str, Option] = {
    option.flag.lstrip("-").replace("-", "_"): option
    for option in (
        # scoring
        Option(
            "--method",
            "attattr",
            "Head ranking: attattr (the best attribution ranking), attattr-paper (as published), attattr-iterative, "
            "attention, taylor (Michel et al. 2019) or random.",
            METHODS,
        ),
        Option("--examples", 200, "Calibration examples that score heads and FFN neurons, at most (see --settle)."),
        Option("--steps", 3, "Integration points per layer (the paper: 20 with --rule left)."),
        Option(
            "--rule",
            "gauss",
            "Quadrature rule; 'left' is the paper's Riemann sum. Gauss-Legendre with 3 points ranks heads like the "
            "paper's 20-step sum (Spearman 0.999 on the demo and a pair model) at an eighth of the cost.",
            RULES,
        ),
        Option(
            "--settle",
            0.998,
            "Stop scoring once two consecutive rankings (every 32 examples, from 64 on) agree this well (Spearman); "
            "0 scores every example.",
        ),
        Option("--seed", 0, "Seed of the calibration samples (scoring, selection, fit and fidelity rows)."),
        Option("--device", "cpu", "Where to score and distil: cpu, cuda or cuda:N."),
        Option("--max-batch-tokens", 2048, "Bound on examples x points x tokens per attribution batch (memory)."),
        # recovery
        Option(
            "--recover",
            "auto",
            "After pruning: lsq refits output projections by least squares (no training); distill then trains "
            "against the original on the training file; auto keeps whichever agrees best with the original on the "
            "fidelity rows (lsq or distill when FFN neurons are pruned or a target is set, else none or lsq).",
            RECOVERIES,
        ),
        Option("--fit-examples", 1000, "Calibration examples the least-squares refit fits on."),
        Option(
            "--lsq-damping",
            True,
            "The least-squares refit's ridge pulls toward the layer's weights (no outlier columns for int8 to round "
            "badly) rather than toward zero.",
        ),
        Option(
            "--distill-tokens",
            600000,
            "Real tokens the distillation trains on (at most 8 passes over the training rows): a pair task costs "
            "what a single-sentence task costs; with the seed it fixes the result bit for bit, whatever the machine.",
        ),
        Option(
            "--distill-hidden",
            "first-token",
            "Hidden states the distillation matches besides the logits: the last layer's first token (what the "
            "classifier reads), every layer's every token, or none.",
            DISTILL_HIDDEN,
        ),
        Option(
            "--distill-augment",
            0.3,
            "From the second pass over the training rows on, this share of whole words is replaced by a neighbour "
            "in the model's input embeddings, so small training files give new text each pass (0: off).",
        ),
        Option(
            "--distill-steps",
            None,
            "Exact number of distillation batches of 32 (instead of --distill-tokens).",
            kind=int,
        ),
        Option(
            "--distill-int8-aware",
            0.0,
            "The last fraction of the distillation trains through int8-rounded weights (quantisation-aware).",
        ),
        Option(
            "--distill-minutes",
            None,
            "Opt-in time cap: stop distilling when it is up. The result then depends on this machine's speed and "
            "load (the log and recovery.json say when it cut the training short).",
            kind=float,
        ),
        # the run
        Option(
            "--max-drop",
            1.0,
            "With a target: accuracy points the shipped int8 model may lose against the original, checked on the "
            "selection rows (paired, 95% interval): a model shown to lose more (the whole interval above it) is not "
            "shipped (exit 2); one the rows cannot resolve ships, and the report says so.",
        ),
        Option(
            "--allocation",
            "per-layer",
            "With a target: heads and FFN widths allocated per layer under this machine's latency model (global "
            "rankings compete too), or one global attribution ranking only.",
            ALLOCATIONS,
        ),
        Option(
            "--int8",
            "per-matmul",
            "After recovery, each layer's weight granularity and fp32 for the MatMuls that hurt most are chosen by "
            "agreement with the original; or one recipe for every MatMul.",
            INT8_CHOICES,
        ),
        Option(
            "--fidelity-examples",
            4000,
            "Unlabelled rows of --calib held out to judge every candidate, recipe and recovery by agreement with the "
            "original, drawn to follow the token lengths of the --data rows; never scored, fitted or distilled on. "
            "A small file keeps most rows to train on: at most a tenth of it beyond 400 rows.",
        ),
        Option(
            "--select-examples",
            1000,
            "Labelled rows (at most half of --data) held apart from the measured rows to choose on and to check "
            "--max-drop against.",
        ),
        Option(
            "--threads",
            0,
            "Threads for latency measurement; 0 times every graph as a default onnxruntime session runs it (how "
            "users load the shipped folder).",
        ),
        Option("--trees", 5, "Attribution trees for the first N evaluation examples."),
        Option("--latency-examples", 200, "Examples timed one by one at batch 1."),
    )
}


def default(name: str) -> Any:
    """The default of an option by its field name (``steps``, ``max_drop``, ...)."""
    return OPTIONS[name].default
