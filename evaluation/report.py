"""A human summary (report.md) of a pipeline report: what was pruned, what it costs, what it buys."""

from __future__ import annotations

from typing import Any

VARIANT_LABELS = {
    "pytorch-fp32": "PyTorch fp32",
    "onnx-fp32": "ONNX fp32",
    "onnx-int8": "ONNX int8, Optimum recipe",
    "onnx-int8-tuned": "ONNX int8, chosen recipe",
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
            f"The same keep level ({report['heads']['keep']:g}) with other rankings (PyTorch, heads masked, "
            "no re-training; random is the mean of 3 seeds):",
            "",
            f"| ranking | Spearman with {method} | accuracy |",
            "|---|---|---|",
        ]
        for name, row in why["comparison"].items():
            lines.append(f"| {name} | {row['spearman_with_chosen']:.3f} | {row['accuracy']:.4f} |")
        lines.append("")
    return lines


def ffn_section(report: dict[str, Any]) -> list[str]:
    ffn = report["ffn"]
    lines = ["## FFN neurons", ""]
    if ffn["importance"] is None:
        return [*lines, "Not pruned (--keep-ffn 1).", ""]
    return [
        *lines,
        f"Kept {sum(ffn['kept_per_layer']):,} of {ffn['total']:,} intermediate neurons (keep-ffn {ffn['keep_ffn']:g}), "
        "chosen by one global ranking of FFN neuron attribution (integrated gradients over each layer's "
        f"intermediate activations; {ffn['importance']['aggregation']}; m = {ffn['importance']['steps']}).",
        "",
        "| layer | " + " | ".join(str(i + 1) for i in range(len(ffn["kept_per_layer"]))) + " |",
        "|---|" + "---|" * len(ffn["kept_per_layer"]),
        "| neurons kept | " + " | ".join(str(n) for n in ffn["kept_per_layer"]) + " |",
        "",
    ]


def recovery_section(recovery: dict[str, Any] | None) -> list[str]:
    if recovery is None:
        return ["## Recovery", "", "None (--recover none): the pruned weights are the original's, sliced.", ""]
    lines = [
        "## Recovery",
        "",
        f"`{recovery['method']}`: output projections refitted by ridge least squares (ridge {recovery['ridge']:g}) "
        f"on {recovery['examples']} calibration examples ({recovery['tokens']:,} tokens) so each sub-layer's "
        "residual sum matches the original model's. Relative reconstruction error before -> after:",
        "",
        "| layer | attention output | FFN output |",
        "|---|---|---|",
    ]
    for row in recovery["layers"]:
        attention, ffn = row["attention_output"], row["ffn_output"]
        lines.append(
            f"| {row['layer'] + 1} | {attention['error_before']:.3f} -> {attention['error_after']:.3f} "
            f"| {ffn['error_before']:.3f} -> {ffn['error_after']:.3f} |"
        )
    if recovery["distill"]:
        d = recovery["distill"]
        lines += [
            "",
            f"Then distillation: {d['steps']} steps, lr {d['learning_rate']:g}, temperature {d['temperature']:g}; "
            f"loss {d['loss_first']:.4f} -> {d['loss_last']:.4f}.",
        ]
    return [*lines, ""]


def target_section(search: dict[str, Any] | None) -> list[str]:
    if search is None:
        return []
    lines = [
        "## Latency target",
        "",
        f"Target: {search['target']}. Candidates measured on this machine ({search['threads']} thread(s), "
        f"recipe {search['search_recipe']['name']}), each timed side by side with the original int8 graph:",
        "",
        "| keep | keep-ffn | p50 ms | speed-up vs original int8 | meets |",
        "|---|---|---|---|---|",
    ]
    for row in search["candidates"]:
        lines.append(
            f"| {row['keep']:g} | {row['keep_ffn']:g} | {row['p50_ms']:.3f} | {row['speedup']:.2f}x | "
            f"{'yes' if row['meets_target'] else 'no'} |"
        )
    lines += [
        "",
        "Frontier candidates after recovery (selection accuracy: PyTorch fp32, then each int8 graph, re-timed):",
        "",
        "| keep | keep-ffn | fp32 | int8 recipe | int8 accuracy | speed-up | meets |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in search["candidates"]:
        for result in row.get("int8", []):
            lines.append(
                f"| {row['keep']:g} | {row['keep_ffn']:g} | {row['selection_accuracy_fp32']:.4f} | "
                f"{result['recipe']['name']} | {result['selection_accuracy']:.4f} | {result['speedup']:.2f}x | "
                f"{'yes' if result['meets_target'] else 'no'} |"
            )
    verdict = "met" if search["met_in_final_measurement"] else "**NOT met**"
    return [
        *lines,
        "",
        f"Chosen: keep {search['keep']:g}, keep-ffn {search['keep_ffn']:g}: {search['reason']}. Candidates had to "
        f"clear the target by {(search['margin'] - 1) * 100:.0f}% in the search. In the final side-by-side "
        f"measurement (the accuracy and speed table) the target was {verdict}.",
        "",
    ]


def tuning_section(tuning: dict[str, Any], export: dict[str, Any], by_search: bool) -> list[str]:
    shipped = export["recipe"]["name"]
    lines = [
        "## int8 recipe (chosen by measurement)",
        "",
        f"Shipped: **{shipped}**. Tuned on the {tuning['tuned_on']} model"
        + (" (the latency-target search then judged each frontier candidate as an int8 graph)" if by_search else "")
        + f". Tuning chose **{tuning['chosen']['name']}**: {tuning['reason']}. {tuning['fusion_note']}. The session "
        "settings are in `onnx/runtime.json`; `exporters.runtime.load_session('onnx')` applies them.",
        "",
        "| recipe | selection accuracy | p50 ms | throughput/s | eligible |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(tuning["candidates"], key=lambda row: row["latency_p50_ms"]):
        lines.append(
            f"| {row['name']} | {row['accuracy']:.4f} | {row['latency_p50_ms']:.3f} | {row['throughput_per_s']:.1f} "
            f"| {'yes' if row['eligible'] else 'no'} |"
        )
    if export.get("thread_latency_ms"):
        timings = ", ".join(f"{count} thread(s) {ms:.3f} ms" for count, ms in export["thread_latency_ms"].items())
        lines += [
            "",
            f"Threads, shipped int8 graph, batch-1 p50: {timings}; runtime.json sets the fastest (the tables "
            f"above use --threads {tuning['threads']}).",
        ]
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    data, heads = report["data"], report["heads"]
    importance = report["importance"]
    params = report["parameters"]
    first = next(iter(report["results"].values()))
    ratios = report["ratios"]
    lines = [
        "# attr-compress report",
        "",
        f"Model: `{report['model']}`; kept **{heads['kept']} of {heads['total']} heads** "
        f"(keep {report['heads']['keep']:g}) and **{sum(report['ffn']['kept_per_layer']):,} of "
        f"{report['ffn']['total']:,} FFN neurons** (keep-ffn {report['ffn']['keep_ffn']:g}).",
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
        "`original` int8 uses Optimum's dynamic per-channel recipe (the baseline); `pruned` int8 and "
        "`original` int8 with the chosen recipe use the recipe chosen by measurement below, so the two original "
        "int8 rows separate what the recipe buys from what pruning buys.",
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
        f"(attention: {params['original']['attention']:,} -> {params['pruned']['attention']:,}; "
        f"FFN: {params['original']['ffn']:,} -> {params['pruned']['ffn']:,}).",
        "",
        *ffn_section(report),
        *recovery_section(report.get("recovery")),
        *target_section(report.get("target_search")),
        *tuning_section(
            report["graph_tuning"],
            report["export"]["pruned"],
            report.get("target_search") is not None,
        ),
        "## How heads were scored",
        "",
        f"Ranking `{importance['method']}`: {scoring_text(importance)}, "
        f"over {data['calibration_examples']} calibration examples from `{data['calibration']}` "
        f"({data['calibration_rows_in_file']} rows, seed {importance['seed']}). See `importance.png`.",
        "",
    ]
    if data["calibration_shared_with_evaluation"]:
        lines += [
            "**Note: scoring and evaluation shared data** (no separate calibration set was found): heads and "
            "neurons were scored, the recovery fitted and the int8 recipe / target candidate chosen on the first "
            "evaluation rows, so the pruned accuracy is optimistic.",
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
    if "rejected" in pruned_export["fusion"]:
        lines.append(f"- fusion: {pruned_export['fusion']['rejected']}; rebuilt without attention fusion")
    lines += [
        "- int8 predictions agree with fp32 on {:.1%} of the evaluation data (original model: {:.1%})".format(
            report["int8_agreement_with_fp32"]["pruned"], report["int8_agreement_with_fp32"]["original"]
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
