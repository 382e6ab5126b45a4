"""report.md: the run for people, in markdown (and the sweep's sweep.md)."""

from __future__ import annotations

from attr_compress.compressor.recovery.lsq import RecoveryRecord
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.evaluation.measure import VariantResult
from attr_compress.evaluation.report.record import VARIANT_LABELS, FfnSummary, Report
from attr_compress.evaluation.report.verdict import (
    change_text,
    drop_sentence,
    fidelity_sentence,
    headline,
    selection_line,
    served_sentence,
    spread_text,
)
from attr_compress.evaluation.target import TargetSearch


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


OBJECTIVES = {
    "gold": "the probability of the gold label",
    "gold-log": "the log-probability of the gold label",
    "predicted": "the probability of the predicted label",
}


def scoring_text(importance: HeadImportance) -> str:
    """How the heads were scored, in words; the integration details only for attribution methods."""
    if not importance.method.startswith("attattr"):
        return importance.aggregation
    return (
        f"self-attention attribution with F = {OBJECTIVES[importance.objective]}, {importance.rule} quadrature with "
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


def accuracy_section(report: Report) -> list[str]:
    first, ratios = report.results[0], report.ratios
    return [
        "## Accuracy and speed",
        "",
        f"Evaluation data: `{report.data.evaluation}` ({report.data.evaluation_rows} examples). Latency: batch 1, "
        f"{report.machine.threads or 'default'} thread(s), median and p90 over {first.latency_examples} examples after "
        f"warm-up, model time only (tokenisation excluded); throughput at batch {first.batch_size}. All variants "
        "were measured in one process, each on its own over the same inputs, in three rounds (order reversed in the "
        "second), so the ratios compare.",
        "",
        *results_table(report.results),
        "",
        "`original` int8 uses Optimum's dynamic per-channel recipe (the baseline); `pruned` int8 and "
        "`original` int8 with the chosen recipe use the recipe chosen by measurement below, so the two original "
        "int8 rows separate what the recipe buys from what pruning buys.",
        "",
        "Speed-ups of the pruned int8 model (batch-1 p50): "
        f"{ratios['speedup_p50_pruned_int8_vs_original_pytorch_fp32']:.2f}x over the original in PyTorch fp32, "
        f"{ratios['speedup_p50_pruned_int8_vs_original_int8']:.2f}x over the original int8 ONNX"
        + (f" ({spread})" if (spread := spread_text(report.speedup_spread)) else "")
        + ".",
        "",
        drop_sentence(report.drop, f"the {report.drop.rows} rows that chose nothing"),
        "",
        served_sentence(report),
        "",
        fidelity_sentence(report.selection_check.fidelity),
        "",
        *lengths_lines(report),
        selection_line(report.selection_check),
        "",
    ]


def lengths_lines(report: Report) -> list[str]:
    """The judge's text against the measured rows' text, in tokens (mean, quartiles)."""
    if not report.data.lengths:
        return []
    rows = [
        f"| {name} | {values[0]:.1f} | {values[1]:g} / {values[2]:g} / {values[3]:g} |"
        for name, values in report.data.lengths.items()
    ]
    return [
        "Text lengths in tokens: the judge's text is drawn from the calibration file to follow the token lengths of "
        "the --data rows (their text only), so choices are made on text like what will be served.",
        "",
        "| text | mean tokens | quartiles |",
        "|---|---|---|",
        *rows,
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
        *[f"- {timing.describe()}" for timing in report.timings],
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
