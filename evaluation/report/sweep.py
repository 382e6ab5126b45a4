"""The sweep's views (`attr-compress sweep`): sweep.md, a table per metric, and sweep.html, one accuracy line per
ranking method; both read the one ``SweepResult``."""

from __future__ import annotations

from html import escape

from attr_compress.evaluation.curves import SweepResult
from attr_compress.evaluation.report.html import figure, page, table
from attr_compress.evaluation.report.svg import lines


def sweep_markdown(sweep: SweepResult) -> str:
    """Accuracy per method and keep level, the area under each curve and each method's cost."""
    keeps = sweep.keeps
    lines = [
        "# attr-compress sweep",
        "",
        f"Model `{sweep.model}`; accuracy on `{sweep.evaluation}` ({sweep.evaluation_rows} examples) with "
        f"the lowest-ranked heads masked, no re-training; heads scored on {sweep.calibration_examples} examples "
        f"of `{sweep.calibration}`. Unpruned accuracy {sweep.unpruned.accuracy:.4f}.",
        "",
        "| method | " + " | ".join(f"{1 - keep:.0%}" for keep in keeps) + " | AUC | seconds |",
        "|---|" + "---|" * (len(keeps) + 2),
    ]
    for method, curve in sweep.methods.items():
        cells = [f"{value:.4f}" for value in curve.accuracy]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {curve.auc:.4f} | {curve.seconds:.1f} |")
    lines += ["", "Columns: fraction of heads pruned. AUC: mean accuracy from 0% to the largest fraction pruned."]
    if sweep.unpruned.f1 is not None:
        lines += [
            "",
            f"F1 (unpruned {sweep.unpruned.f1:.4f}):",
            "",
            "| method | " + " | ".join(f"{1 - keep:.0%}" for keep in keeps) + " |",
            "|---|" + "---|" * len(keeps),
        ]
        for method, curve in sweep.methods.items():
            lines.append(f"| {method} | " + " | ".join(f"{value:.4f}" for value in curve.f1 or []) + " |")
    if sweep.latency:
        lines += [
            "",
            f"## Latency of `{sweep.latency_method}` keep levels (ONNX int8, batch 1, {sweep.threads} thread(s))",
            "",
            "| variant | accuracy | p50 ms | p90 ms | throughput/s |",
            "|---|---|---|---|---|",
        ]
        for row in sweep.latency:
            lines.append(
                f"| {row.name} | {row.accuracy:.4f} | {row.latency_p50_ms:.2f} | {row.latency_p90_ms:.2f} "
                f"| {row.throughput_per_s:.1f} |"
            )
    return "\n".join(lines) + "\n"


SERIES_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def render_sweep_html(sweep: SweepResult) -> str:
    """sweep.html: accuracy against the fraction of heads pruned, one line per ranking method, and the table."""
    pruned = [1 - keep for keep in sweep.keeps]
    series = {method: curve.accuracy for method, curve in sweep.methods.items()}
    chart = lines(
        pruned, series, SERIES_COLOURS, "accuracy per method", "fraction of heads pruned (masked)", "accuracy"
    )
    header = ["method", *[f"{fraction:.0%}" for fraction in pruned], "AUC", "seconds"]
    rows = [
        [escape(method), *[f"{value:.4f}" for value in curve.accuracy], f"{curve.auc:.4f}", f"{curve.seconds:.1f}"]
        for method, curve in sweep.methods.items()
    ]
    intro = (
        f"<p>Model {escape(sweep.model)}; accuracy on {escape(sweep.evaluation)} ({sweep.evaluation_rows} "
        f"rows) with the lowest-ranked heads masked, no re-training; heads scored on {sweep.calibration_examples} "
        f"examples of {escape(sweep.calibration)}. Unpruned accuracy {sweep.unpruned.accuracy:.4f}.</p>"
    )
    caption = "Accuracy as heads are masked in each method's order of importance. Hover a point for its value."
    return page(
        f"attr-compress sweep: {sweep.model}",
        "<h1>attr-compress sweep</h1>"
        + intro
        + f'<div id="sweep">{figure(chart, caption)}</div>'
        + table(header, rows),
    )
