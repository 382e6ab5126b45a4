"""A human summary (report.md) of a pipeline report: what was pruned, what it costs, what it buys."""

from __future__ import annotations

from typing import Any

VARIANT_LABELS = {
    "pytorch-fp32": "PyTorch fp32",
    "onnx-fp32": "ONNX fp32",
    "onnx-fp32-optimized": "ONNX fp32, ORT-optimised",
    "onnx-int8": "ONNX int8 (dynamic)",
}


def results_table(results: dict[str, dict[str, Any]], *, reference: str = "original/pytorch-fp32") -> list[str]:
    """Markdown rows: metrics, latency and throughput per variant, speed relative to ``reference``."""
    has_f1 = any("f1" in row for row in results.values())
    header = "| model | runtime | accuracy |" + (" F1 |" if has_f1 else "")
    header += " p50 ms | p90 ms | speed-up (p50) | throughput/s |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    base = results[reference]["latency_p50_ms"] if reference in results else None
    for name, row in results.items():
        model, _, runtime = name.partition("/")
        cells = [model, VARIANT_LABELS.get(runtime, runtime), f"{row['accuracy']:.4f}"]
        if has_f1:
            cells.append(f"{row['f1']:.4f}" if "f1" in row else "")
        cells += [
            f"{row['latency_p50_ms']:.2f}",
            f"{row['latency_p90_ms']:.2f}",
            f"{base / row['latency_p50_ms']:.2f}x" if base else "",
            f"{row['throughput_per_s']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


TARGETS = {
    "gold": "the probability of the gold label",
    "gold-log": "the log-probability of the gold label",
    "predicted": "the probability of the predicted label",
}


def scoring_text(importance: dict[str, Any]) -> str:
    """How the heads were scored, in words; the integration details only for attribution methods."""
    if not importance["method"].startswith("attattr"):
        return importance["aggregation"]
    return (
        f"self-attention attribution with F = {TARGETS[importance['target']]}, {importance['rule']} quadrature with "
        f"m = {importance['steps']} steps; I_h = {importance['aggregation']}"
    )


def why_section(report: dict[str, Any]) -> list[str]:
    """Which layers lost most heads and, with --compare, how other rankings would have done."""
    why = report["why"]
    heads = report["heads"]["total"] // len(why["pruned_per_layer"])
    ranked = sorted(range(len(why["pruned_per_layer"])), key=lambda layer: -why["pruned_per_layer"][layer])
    lines = [
        "## Why these heads",
        "",
        "Layers that lost most heads: "
        + ", ".join(f"layer {layer + 1} ({why['pruned_per_layer'][layer]} of {heads})" for layer in ranked[:3])
        + ".",
        "",
    ]
    if "comparison" in why:
        method = report["importance"]["method"]
        lines += [
            f"The same keep level ({report['options']['keep']:g}) with other rankings (PyTorch, heads masked, "
            "no re-training; random is the mean of 3 seeds):",
            "",
            f"| ranking | Spearman with {method} | accuracy |",
            "|---|---|---|",
        ]
        for name, row in why["comparison"].items():
            lines.append(f"| {name} | {row['spearman_with_chosen']:.3f} | {row['accuracy']:.4f} |")
        lines.append("")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    data, heads, options = report["data"], report["heads"], report["options"]
    importance = report["importance"]
    params = report["parameters"]
    first = next(iter(report["results"].values()))
    ratios = report["ratios"]
    lines = [
        "# attr-compress report",
        "",
        f"Model: `{report['model']}`; kept **{heads['kept']} of {heads['total']} heads** (keep {options['keep']:g}).",
        "",
        "## Accuracy and speed",
        "",
        f"Evaluation data: `{data['evaluation']}` ({data['evaluation_rows']} examples). Latency: batch 1, "
        f"{report['machine']['threads']} thread(s), median and p90 over {first['latency_examples']} examples after "
        f"warm-up, model time only (tokenisation excluded); throughput at batch {first['batch_size']}. All variants "
        "were measured in one process, round-robin, so the ratios compare.",
        "",
        *results_table(report["results"]),
        "",
        "Speed-ups of the pruned int8 model (batch-1 p50): "
        f"{ratios['speedup_p50_pruned_int8_vs_original_pytorch_fp32']:.2f}x over the original in PyTorch fp32, "
        f"{ratios['speedup_p50_pruned_int8_vs_original_int8']:.2f}x over the original int8 ONNX.",
        "",
        "## Heads",
        "",
        "| layer | " + " | ".join(str(i + 1) for i in range(len(heads["kept_per_layer"]))) + " |",
        "|---|" + "---|" * len(heads["kept_per_layer"]),
        "| heads kept | " + " | ".join(str(n) for n in heads["kept_per_layer"]) + " |",
        "",
    ]
    if heads["empty_layers"]:
        layers = ", ".join(str(layer + 1) for layer in heads["empty_layers"])
        lines += [
            f"Layer(s) {layers} lost every head: their attention block now adds only its output bias "
            "(stored as one silent, all-zero head so plain transformers can load the model).",
            "",
        ]
    lines += why_section(report)
    lines += [
        f"Parameters: {params['original']['total']:,} -> {params['pruned']['total']:,} "
        f"(attention: {params['original']['attention']:,} -> {params['pruned']['attention']:,}).",
        "",
        "## How heads were scored",
        "",
        f"Ranking `{importance['method']}`: {scoring_text(importance)}, "
        f"over {data['calibration_examples']} calibration examples from `{data['calibration']}` "
        f"({data['calibration_rows_in_file']} rows, seed {importance['seed']}). See `importance.png`.",
        "",
    ]
    if data["calibration_shared_with_evaluation"]:
        lines += [
            "**Note: scoring and evaluation shared data** (no separate calibration set was found): the pruned "
            "accuracy is optimistic.",
            "",
        ]
    truncated = data["evaluation_truncated"] + data["calibration_truncated"]
    if truncated:
        lines += [f"{truncated} input(s) were longer than the model's maximum and were truncated.", ""]
    pruned_export = report["export"]["pruned"]
    lines += ["## Export checks", ""]
    for check in pruned_export["parity"]:
        verdict = "passed" if check["passed"] else "FAILED"
        lines.append(
            f"- {check['candidate']} vs PyTorch: max |logit diff| {check['max_abs_diff']:.2e} "
            f"(allowed {check['atol']:g}) {verdict}"
        )
    if "rejected" in pruned_export["optimization"]:
        lines.append(f"- optimiser: {pruned_export['optimization']['rejected']}; rebuilt without attention fusion")
    lines += [
        "- int8 predictions agree with fp32 on {:.1%} of the evaluation data (original model: {:.1%}); "
        "preset {}, per-channel {}".format(
            report["int8_agreement_with_fp32"]["pruned"],
            report["int8_agreement_with_fp32"]["original"],
            pruned_export["quantization"]["preset"],
            pruned_export["quantization"]["per_channel"],
        ),
        "",
        f"Weights: `{report['weights']['file']}`, {report['weights']['how']}; stored as "
        f"{report['weights']['stored_dtype']}, run as {report['weights']['loaded_as']}.",
        "",
        "## Stage timings",
        "",
        *[f"- {timing['stage']}: {timing['seconds']:.1f} s" for timing in report["timings"]],
        "",
        f"Attribution trees: {len(report['trees'])} in `trees/` (JSON + SVG).",
        "",
    ]
    return "\n".join(lines)
