"""The run's report: one ``Report`` object (report.json), rendered to report.md from its fields.

Every measured variant is a ``VariantResult`` row (which model, which runtime, its figures); ratios are
computed from those rows, never stored twice.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

from compressor.artifacts import JsonArtifact, to_plain
from compressor.importance import HeadImportance
from compressor.outputs import REPORT_KIND
from compressor.recovery import RecoveryRecord
from evaluation.fidelity import Fidelity, PairedDrop
from evaluation.measure import VariantResult
from evaluation.target import TargetSearch
from evaluation.tuning import TuningResult
from exporters.verified import ExportRecord

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
        }


def change_text(drop_points: float) -> str:
    """An accuracy change in points, signed as the reader expects: -0.46 is a loss."""
    return f"{-drop_points + 0.0:+.2f}"  # + 0.0: no "-0.00"


def drop_sentence(drop: PairedDrop, where: str) -> str:
    """The drop against the original with its interval, the level and the method, in one sentence."""
    interval = drop.interval()
    return (
        f"Against the original (PyTorch fp32) on {where}: {change_text(drop.drop_points)} points, "
        f"{interval.level:.0%} interval {change_text(interval.high)} to {change_text(interval.low)} "
        f"({interval.method}; {drop.lost} of {drop.rows} rows lost, {drop.gained} gained)."
    )


def fidelity_sentence(fidelity: Fidelity) -> str:
    interval = fidelity.interval()
    return (
        f"On {fidelity.rows:,} unlabelled rows of the calibration text that chose only, never trained, the shipped "
        f"model disagrees with the original on {fidelity.disagreement:.2%} of them ({interval.level:.0%} interval "
        f"{interval.low:.2%} to {interval.high:.2%}, {interval.method}); mean KL {fidelity.kl:.4f} nats."
    )


def results_table(results: list[VariantResult], *, reference: str = "original/pytorch-fp32") -> list[str]:
    """Markdown rows: metrics, latency and throughput per variant, speed relative to ``reference``."""
    has_f1 = any(row.f1 is not None for row in results)
    header = "| model | runtime | accuracy |" + (" F1 |" if has_f1 else "")
    header += " p50 ms | p90 ms | speed-up (p50) | throughput/s |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    base = next((row.latency_p50_ms for row in results if row.name == reference), None)
    for row in results:
        cells = [row.model, VARIANT_LABELS.get(row.runtime, row.runtime), f"{row.accuracy:.4f}"]
        if has_f1:
            cells.append("" if row.f1 is None else f"{row.f1:.4f}")
        cells += [
            f"{row.latency_p50_ms:.2f}",
            f"{row.latency_p90_ms:.2f}",
            f"{base / row.latency_p50_ms:.2f}x" if base else "",
            f"{row.throughput_per_s:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


TARGETS = {
    "gold": "the probability of the gold label",
    "gold-log": "the log-probability of the gold label",
    "predicted": "the probability of the predicted label",
}


def scoring_text(importance: HeadImportance) -> str:
    """How the heads were scored, in words; the integration details only for attribution methods."""
    if not importance.method.startswith("attattr"):
        return importance.aggregation
    return (
        f"self-attention attribution with F = {TARGETS[importance.target]}, {importance.rule} quadrature with "
        f"m = {importance.steps} steps; I_h = {importance.aggregation}"
    )


def why_section(report: Report) -> list[str]:
    """Which layers lost most heads and, with --compare, how other rankings would have done."""
    pruned = report.why.pruned_per_layer
    heads = report.heads.total // len(pruned)
    ranked = sorted(range(len(pruned)), key=lambda layer: -pruned[layer])
    lines = [
        "## Why these heads",
        "",
        "Layers that lost most heads: "
        + ", ".join(f"layer {layer + 1} ({pruned[layer]} of {heads})" for layer in ranked[:3])
        + ".",
        "",
    ]
    if report.why.comparison:
        lines += [
            f"The same keep level ({report.heads.keep:g}) with other rankings (PyTorch, heads masked, "
            "no re-training; random is the mean of 3 seeds):",
            "",
            f"| ranking | Spearman with {report.importance.method} | accuracy |",
            "|---|---|---|",
        ]
        for name, row in report.why.comparison.items():
            lines.append(f"| {name} | {row.spearman_with_chosen:.3f} | {row.accuracy:.4f} |")
        lines.append("")
    return lines


def layer_table(label: str, counts: list[int]) -> list[str]:
    return [
        "| layer | " + " | ".join(str(i + 1) for i in range(len(counts))) + " |",
        "|---|" + "---|" * len(counts),
        f"| {label} | " + " | ".join(str(n) for n in counts) + " |",
        "",
    ]


def ffn_section(ffn: FfnSummary) -> list[str]:
    lines = ["## FFN neurons", ""]
    if ffn.aggregation is None:
        return [*lines, "Not pruned (--keep-ffn 1).", ""]
    return [
        *lines,
        f"Kept {sum(ffn.kept_per_layer):,} of {ffn.total:,} intermediate neurons (keep-ffn {ffn.keep_ffn:g}), "
        "chosen by one global ranking of FFN neuron attribution (integrated gradients over each layer's "
        f"intermediate activations; {ffn.aggregation}; m = {ffn.steps}).",
        "",
        *layer_table("neurons kept", ffn.kept_per_layer),
    ]


def recovery_section(recovery: RecoveryRecord | None) -> list[str]:
    if recovery is None:
        return ["## Recovery", "", "None (--recover none): the pruned weights are the original's, sliced.", ""]
    lines = [
        "## Recovery",
        "",
        f"`{recovery.method}`: output projections refitted by ridge least squares (ridge {recovery.ridge:g}) "
        f"on {recovery.examples} calibration examples ({recovery.tokens:,} tokens) so each sub-layer's "
        "residual sum matches the original model's. Relative reconstruction error before -> after:",
        "",
        "| layer | attention output | FFN output |",
        "|---|---|---|",
    ]
    for row in recovery.layers:
        attention, ffn = row["attention_output"], row["ffn_output"]
        lines.append(
            f"| {row['layer'] + 1} | {attention['error_before']:.3f} -> {attention['error_after']:.3f} "
            f"| {ffn['error_before']:.3f} -> {ffn['error_after']:.3f} |"
        )
    if recovery.distill:
        d = recovery.distill
        lines += [
            "",
            f"Then distillation from the original on `{d.data}`: {d.steps:,} steps of {d.batch_size} "
            f"({d.examples:,} examples, {d.seconds:.0f} s on {d.threads} threads; step count from "
            f"--distill-{d.planned_from}), logits at temperature {d.temperature:g} plus every layer's hidden states "
            f"(weight {d.hidden_weight:g}), lr {d.learning_rate:g}, seed {d.seed}; loss {d.loss_first:.4f} -> "
            f"{d.loss_last:.4f}.",
        ]
    if recovery.compared:
        tried = ", ".join(
            f"{method} {values['disagreement']:.2%} ({change_text(values['selection_drop_points'])} points on the "
            "selection rows)"
            for method, values in recovery.compared.items()
        )
        lines += [
            "",
            f"Chosen by fidelity to the original on the unlabelled rows (PyTorch fp32, disagreement): {tried}; "
            f"kept `{recovery.method}`.",
        ]
    return [*lines, ""]


def target_section(search: TargetSearch | None, met: bool | None) -> list[str]:
    if search is None:
        return []
    model = search.latency_model
    terms = ", ".join(
        f"{name.replace('_', ' ')} {value:.2e} (± {model.errors[name]:.1e})"
        for name, value in model.coefficients.items()
    )
    lines = [
        "## Latency target",
        "",
        f"Target: {search.target}. Latency model of this machine ({search.threads or 'default'} thread(s), recipe "
        f"{search.recipe['name']}): {len(model.timings)} structures, each timed beside the original's int8 graph "
        f"example by example in {len(model.timings[0].ratios)} rounds; latency relative to the baseline = "
        f"{model.intercept:.3f} + per {terms}; RMS error {model.rms_error:.4f}. Plans had to be predicted to clear "
        f"the target by {(search.margin - 1) * 100:.1f}%.",
        "",
        "| candidate | heads per layer / FFN neurons per layer | predicted speed-up | disagreement | KL | "
        "selection rows |",
        "|---|---|---|---|---|---|",
    ]
    for candidate in search.candidates:
        verdict = candidate.judgement
        chosen = " (chosen)" if candidate.structure == search.chosen else ""
        lines.append(
            f"| {candidate.origin}{chosen} | {candidate.structure.label} | {candidate.predicted_speedup:.2f}x | "
            f"{verdict.fidelity.disagreement:.2%} | {verdict.fidelity.kl:.4f} | "
            f"{change_text(verdict.selection.drop_points)} points |"
        )
    confirmed = "; ".join(
        f"{c.structure.label}: {c.speedup:.2f}x ({'met' if c.met else 'missed'})" for c in search.confirmations
    )
    verdict = "met" if met else "**NOT met**"
    return [
        *lines,
        "",
        f"Candidates were refitted by least squares and judged against the original. Chosen: {search.reason}. "
        f"Measured beside the baseline before shipping: {confirmed}. In the final side-by-side measurement (the "
        f"accuracy and speed table) the target was {verdict}.",
        "",
    ]


def tuning_section(report: Report) -> list[str]:
    tuning, export = report.graph_tuning, report.export["pruned"]
    by_search = report.target_search is not None
    lines = [
        "## int8 recipe (chosen by measurement)",
        "",
        f"Shipped: **{export.recipe['name']}**. Tuned on the {report.tuned_on} model"
        + (" (the latency-target search timed every structure with it)" if by_search else "")
        + f". Tuning chose **{tuning.chosen.name}**: {tuning.reason}. {tuning.fusion_note}. Every graph was "
        "timed in an onnxruntime session with no flags but the thread count; `onnx/runtime.json` suggests one.",
        "",
        "| recipe | disagreement with the original | p50 ms | throughput/s | eligible |",
        "|---|---|---|---|---|",
    ]
    for trial in sorted(tuning.trials, key=lambda trial: trial.latency_p50_ms):
        lines.append(
            f"| {trial.recipe.name} | {trial.judgement.fidelity.disagreement:.2%} | {trial.latency_p50_ms:.3f} | "
            f"{trial.throughput_per_s:.1f} | {'yes' if trial.eligible else 'no'} |"
        )
    if tuning.per_matmul is not None and tuning.per_matmul.trials:
        choice = tuning.per_matmul
        lines += [
            "",
            f"Per MatMul after recovery: {choice.reason}. Graphs judged: "
            + "; ".join(
                f"{trial.recipe.name}: {trial.judgement.fidelity.disagreement:.2%} disagreement, estimated "
                f"{trial.estimated_slowdown:.1%} slower"
                for trial in choice.trials
            )
            + ".",
        ]
    if export.thread_latency_ms:
        timings = ", ".join(f"{count} thread(s) {ms:.3f} ms" for count, ms in export.thread_latency_ms.items())
        lines += [
            "",
            f"Threads, shipped int8 graph, batch-1 p50: {timings}; runtime.json sets the fastest (the tables "
            f"above use --threads {tuning.threads}).",
        ]
    return [*lines, ""]


def selection_line(check: SelectionCheck) -> str:
    """What --max-drop was checked against, and what it said."""
    interval = check.drop.interval()
    if not check.enforced:
        verdict = "for information (--max-drop applies to latency targets)"
    elif check.confirmed:
        verdict = f"the whole interval is within --max-drop {check.max_drop:g}"
    else:
        verdict = (
            f"**not confirmed within --max-drop {check.max_drop:g}**: the selection rows allow a drop up to "
            f"{interval.high:.2f} points (the run refuses only a model whose interval lies wholly beyond it)"
        )
    return (
        f"--max-drop is checked before shipping against the paired drop on the {check.drop.rows} selection rows: "
        f"{change_text(check.drop_points)} points ({interval.level:.0%} interval {change_text(interval.high)} to "
        f"{change_text(interval.low)}); {verdict}."
    )


def accuracy_section(report: Report) -> list[str]:
    first, ratios = report.results[0], report.ratios
    return [
        "## Accuracy and speed",
        "",
        f"Evaluation data: `{report.data.evaluation}` ({report.data.evaluation_rows} examples). Latency: batch 1, "
        f"{report.machine.threads or 'default'} thread(s), median and p90 over {first.latency_examples} examples after "
        f"warm-up, model time only (tokenisation excluded); throughput at batch {first.batch_size}. All variants "
        "were measured in one process, round-robin, so the ratios compare.",
        "",
        *results_table(report.results),
        "",
        "`original` int8 uses Optimum's dynamic per-channel recipe (the baseline); `pruned` int8 and "
        "`original` int8 with the chosen recipe use the recipe chosen by measurement below, so the two original "
        "int8 rows separate what the recipe buys from what pruning buys.",
        "",
        "Speed-ups of the pruned int8 model (batch-1 p50): "
        f"{ratios['speedup_p50_pruned_int8_vs_original_pytorch_fp32']:.2f}x over the original in PyTorch fp32, "
        f"{ratios['speedup_p50_pruned_int8_vs_original_int8']:.2f}x over the original int8 ONNX.",
        "",
        drop_sentence(report.drop, f"the {report.drop.rows} rows that chose nothing"),
        "",
        fidelity_sentence(report.selection_check.fidelity),
        "",
        selection_line(report.selection_check),
        "",
    ]


def _layers_note(layers: list[int], sentence: str) -> list[str]:
    return [f"Layer(s) {', '.join(str(layer + 1) for layer in layers)} {sentence}", ""] if layers else []


def heads_section(report: Report) -> list[str]:
    heads, params = report.heads, report.parameters
    lines = [
        "## Heads",
        "",
        *layer_table("heads kept", heads.kept_per_layer),
        *_layers_note(
            heads.empty_layers,
            "lost every head: their attention block now adds only its output bias (stored as one silent, "
            "all-zero head so plain transformers can load the model).",
        ),
        *_layers_note(
            heads.dropped_layers,
            "were dropped whole (attention and FFN): the layer before each stands in for it, recovered against "
            "its output.",
        ),
    ]
    return [
        *lines,
        *why_section(report),
        f"Parameters: {params['original'].total:,} -> {params['pruned'].total:,} "
        f"(attention: {params['original'].attention:,} -> {params['pruned'].attention:,}; "
        f"FFN: {params['original'].ffn:,} -> {params['pruned'].ffn:,}).",
        "",
    ]


def scoring_section(report: Report) -> list[str]:
    data, importance = report.data, report.importance
    lines = [
        "## How heads were scored",
        "",
        f"Ranking `{importance.method}`: {scoring_text(importance)}, "
        f"over {data.calibration_examples} calibration examples from `{data.calibration}` "
        f"({data.calibration_rows_in_file} rows, seed {importance.seed}). See `importance.png`.",
        "",
    ]
    if data.calibration_shared_with_evaluation:
        lines += [
            f"No separate calibration file was given: heads and neurons were scored and the recovery fitted on "
            f"{data.calibration_rows_in_file} rows of the evaluation file held apart from the rows measured (and "
            "from the rows that choose), so no distillation ran.",
            "",
        ]
    truncated = data.evaluation_truncated + data.calibration_truncated
    if truncated:
        lines += [f"{truncated} input(s) were longer than the model's maximum and were truncated.", ""]
    return lines


def checks_section(report: Report) -> list[str]:
    pruned = report.export["pruned"]
    lines = ["## Export checks", ""]
    for check in pruned.parity:
        verdict = "passed" if check["passed"] else "FAILED"
        lines.append(
            f"- {check['candidate']} vs PyTorch: max |logit diff| {check['max_abs_diff']:.2e} "
            f"(allowed {check['atol']:g}) {verdict}"
        )
    if "rejected" in pruned.fusion:
        lines.append(f"- fusion: {pruned.fusion['rejected']}")
    if pruned.default_session_operators is not None:
        operators = pruned.default_session_operators
        fused = operators.get("SkipLayerNormalization", 0)
        lines.append(
            f"- a default onnxruntime session runs the int8 graph with {operators.get('LayerNormalization', 0)} "
            f"LayerNormalization and {fused} SkipLayerNormalization node(s)"
            + ("" if fused else " (no session flags needed for speed)")
        )
    agreement = report.int8_agreement_with_fp32
    weights = report.weights
    return [
        *lines,
        f"- int8 predictions agree with fp32 on {agreement['pruned']:.1%} of the evaluation data "
        f"(original model: {agreement['original']:.1%})",
        "",
        f"Weights: `{weights.file}`, {weights.how}; stored as {weights.stored_dtype}, run as {weights.loaded_as}.",
        "",
    ]


def headline(report: Report) -> str:
    """The verdict in one line: the accuracy drop (bold) and what it bought."""
    speedup, interval = report.ratios["speedup_p50_pruned_int8_vs_original_int8"], report.drop.interval()
    return (
        f"# attr-compress: **{change_text(report.drop_points)} points** accuracy against the original "
        f"({interval.level:.0%} interval {change_text(interval.high)} to {change_text(interval.low)}), "
        f"{speedup:.2f}x faster than its int8 ONNX"
    )


def render_markdown(report: Report) -> str:
    heads, ffn, shipped = report.heads, report.ffn, report.shipped
    original = report.result("original", "pytorch-fp32")
    family = f" ({report.family})" if report.family else ""
    lines = [
        headline(report),
        "",
        f"The shipped int8 graph scores {shipped.accuracy:.4f} on {report.data.evaluation_rows} rows of "
        f"`{report.data.evaluation}` that chose nothing; the original in PyTorch fp32 scores {original.accuracy:.4f} "
        f"on the same rows. Choices (int8 recipe, target candidate, recovery) were made by agreement with the "
        f"original on {report.data.fidelity_rows:,} unlabelled rows of `{report.data.calibration}` (never scored, "
        f"fitted or distilled on), beside the labelled {report.data.selection}." + report.data.exclusions_note,
        "",
        f"Model: `{report.model}`{family}; kept **{heads.kept} of {heads.total} heads** (keep {heads.keep:g}) and "
        f"**{sum(ffn.kept_per_layer):,} of {ffn.total:,} FFN neurons** (keep-ffn {ffn.keep_ffn:g}).",
        "",
        *accuracy_section(report),
        *heads_section(report),
        *ffn_section(ffn),
        *recovery_section(report.recovery),
        *target_section(report.target_search, report.target_met_in_final_measurement),
        *tuning_section(report),
        *scoring_section(report),
        *checks_section(report),
        "## Stage timings",
        "",
        *[f"- {timing.stage}: {timing.seconds:.1f} s" for timing in report.timings],
        "",
        f"Attribution trees: {len(report.trees)} in `trees/` (JSON + SVG).",
        "",
        *(
            [
                "Reused from the cache (same model, rows and options; `--no-cache` to recompute): "
                f"{', '.join(report.reused)}.",
                "",
            ]
            if report.reused
            else []
        ),
    ]
    return "\n".join(lines)


def sweep_markdown(sweep: dict[str, Any]) -> str:
    """Accuracy per method and keep level, the area under each curve and each method's cost."""
    keeps = sweep["keeps"]
    lines = [
        "# attr-compress sweep",
        "",
        f"Model `{sweep['model']}`; accuracy on `{sweep['evaluation']}` ({sweep['evaluation_rows']} examples) with "
        f"the lowest-ranked heads masked, no re-training; heads scored on {sweep['calibration_examples']} examples "
        f"of `{sweep['calibration']}`. Unpruned accuracy {sweep['unpruned']['accuracy']:.4f}.",
        "",
        "| method | " + " | ".join(f"{1 - keep:.0%}" for keep in keeps) + " | AUC | seconds |",
        "|---|" + "---|" * (len(keeps) + 2),
    ]
    for method, curve in sweep["methods"].items():
        cells = [f"{value:.4f}" for value in curve["accuracy"]]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {curve['auc']:.4f} | {curve['seconds']:.1f} |")
    lines += ["", "Columns: fraction of heads pruned. AUC: mean accuracy from 0% to the largest fraction pruned."]
    if all("f1" in curve for curve in sweep["methods"].values()):
        lines += [
            "",
            f"F1 (unpruned {sweep['unpruned']['f1']:.4f}):",
            "",
            "| method | " + " | ".join(f"{1 - keep:.0%}" for keep in keeps) + " |",
            "|---|" + "---|" * len(keeps),
        ]
        for method, curve in sweep["methods"].items():
            lines.append(f"| {method} | " + " | ".join(f"{value:.4f}" for value in curve["f1"]) + " |")
    if sweep["latency"]:
        latency = sweep["latency"]
        lines += [
            "",
            f"## Latency of `{sweep['latency_method']}` keep levels (ONNX int8, batch 1, {sweep['threads']} thread(s))",
            "",
            "| variant | accuracy | p50 ms | p90 ms | throughput/s |",
            "|---|---|---|---|---|",
        ]
        for name, row in latency.items():
            lines.append(
                f"| {name} | {row['accuracy']:.4f} | {row['latency_p50_ms']:.2f} | {row['latency_p90_ms']:.2f} "
                f"| {row['throughput_per_s']:.1f} |"
            )
    return "\n".join(lines) + "\n"
