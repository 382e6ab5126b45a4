"""report.html: the whole run on one self-contained page (inline SVG and CSS, no script, no network).

Rendered from the same ``Report`` object as report.md, plus the attribution trees themselves. Order follows
the decision a reader makes: the verdict, what the speed cost (accuracy against latency, every variant and
every target-search candidate), which heads and neurons went and how recovery closed the gap, why the model
still answers (trees), then the int8 recipe, the parity checks and the provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
from attr_compress.compressor.explain.drawing import token_strength, token_tint, tree_svg
from attr_compress.compressor.explain.trees import AttributionTree
from attr_compress.evaluation.report.record import VARIANT_LABELS, Report
from attr_compress.evaluation.report.svg import PALETTE, Point, grouped_columns, scatter, svg_open
from attr_compress.evaluation.report.verdict import (
    change_text,
    drop_sentence,
    fidelity_sentence,
    selection_line,
    served_sentence,
    spread_text,
)

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
main{max-width:1040px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
.verdict{font-size:1.1em;background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px}
.verdict b.drop{color:#b00020}.verdict b.gain{color:#1a7f37}
figure{margin:8px 0 16px;background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:8px}
figcaption{font-size:.9em;color:#555;margin-top:4px}
svg.chart{width:100%;max-width:760px;height:auto;display:block;margin:0 auto}
svg.tree-svg{max-width:100%;height:auto}
.bar-row{display:flex;flex-wrap:wrap;align-items:center;gap:2px 8px;margin:6px 0}
.bar-name{flex:0 0 15em;text-align:right}.bar{display:inline-block;height:18px;background:#7f7f7f}
.bar.pruned{background:#1f77b4}.bar-text{white-space:nowrap}
@media (max-width:600px){.bar-name{flex-basis:100%;text-align:left}}
svg text{font-family:system-ui,sans-serif;fill:#222}
.grid{stroke:#e6e6e6}.tick{font-size:13px;fill:#555}.axis{font-size:14px}
.mark-label{font-size:14px;font-weight:600}.bar-label,.bar-value{font-size:13px}
.mark:hover circle,.mark:hover rect{stroke:#000;stroke-width:2}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9em;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
.tree{margin:10px 0 18px}.tree p{margin:2px 0;overflow-wrap:anywhere}
.legend{font-size:.85em;color:#555}
.chips{line-height:2}.chip{display:inline-block;padding:0 6px;margin:0 3px 3px 0;border-radius:4px;font-size:.9em}
.chip.out{background:#eee;color:#999}.edge-label{font-size:11px;fill:#a00}
svg.heads{max-width:100%;height:auto;display:block;margin:0 auto}
"""


def render_html(report: Report, trees: Sequence[AttributionTree]) -> str:
    sections = [
        verdict_section(report),
        frontier_section(report),
        heads_map_section(report),
        ffn_and_recovery_section(report),
        trees_section(trees),
        recipe_section(report),
        checks_section(report),
        provenance_section(report),
    ]
    return page(f"attr-compress: {report.model}", "".join(sections))


def page(title: str, body: str) -> str:
    """A standalone document: inline style, and a content policy that forbids every request."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n"
    )


def verdict_section(report: Report) -> str:
    shipped, original = report.shipped, report.result("original", "pytorch-fp32")
    optimum = report.result("original", "onnx-int8")
    ratios, drop, interval = report.ratios, report.drop_points, report.drop.interval()
    params = report.parameters
    line = (
        f'<p class="verdict" id="verdict">Accuracy <b class="{"drop" if drop > 0 else "gain"}">'
        f"{change_text(drop)} points</b> ({interval.level:.0%} interval {change_text(interval.high)} to "
        f"{change_text(interval.low)}; {shipped.accuracy:.4f} against the original's {original.accuracy:.4f}), "
        f"<b>{ratios['speedup_p50_pruned_int8_vs_original_int8']:.2f}x</b> faster than the original's Optimum int8 "
        f"ONNX and <b>{ratios['speedup_p50_pruned_int8_vs_original_pytorch_fp32']:.2f}x</b> faster than PyTorch fp32 "
        f"(batch 1, p50{f'; {escape(spread)}' if (spread := spread_text(report.speedup_spread)) else ''}), "
        f"{_count(params['pruned'].total)} parameters instead of "
        f"{_count(params['original'].total)}. Measured on {report.data.evaluation_rows} rows that chose nothing."
        f"{escape(report.data.exclusions_note)}</p>"
        f"<p>{escape(drop_sentence(report.drop, 'the rows that chose nothing'))} "
        f"{escape(served_sentence(report))} {escape(fidelity_sentence(report.selection_check.fidelity))}</p>"
    )
    rows = [(original, "PyTorch fp32 (original)"), (optimum, "Optimum int8 ONNX (original)"), (shipped, "shipped int8")]
    longest = max(row.latency_p50_ms for row, _ in rows)
    bars = "".join(
        f'<div class="bar-row" title="{escape(row.name)}: p50 {row.latency_p50_ms:.3f} ms, p90 '
        f'{row.latency_p90_ms:.3f} ms, accuracy {row.accuracy:.4f}"><span class="bar-name">{label}</span>'
        f'<span class="bar {row.model}" style="width:{max(1.0, 45 * row.latency_p50_ms / longest):.1f}%"></span>'
        f'<span class="bar-text">{row.latency_p50_ms:.2f} ms, accuracy {row.accuracy:.4f}</span></div>'
        for row, label in rows
    )
    chart = figure(f'<div class="bars">{bars}</div>', "Batch-1 p50 latency on this machine (shorter is faster).")
    return f"<h1>attr-compress report</h1><p>{escape(report.model)}</p>{line}{chart}"


def frontier_section(report: Report) -> str:
    points = [
        Point(
            row.latency_p50_ms,
            row.accuracy,
            str(number),
            f"{row.name}: accuracy {row.accuracy:.4f}, p50 {row.latency_p50_ms:.3f} ms (evaluation rows)",
            PALETTE[row.model],
            ring=row.name == "pruned/onnx-int8-tuned",
        )
        for number, row in enumerate(report.results, 1)
    ]
    legend = table(
        ["#", "model", "runtime", "accuracy", "p50 ms"],
        [
            [
                str(number),
                row.model,
                escape(VARIANT_LABELS[row.runtime]),
                f"{row.accuracy:.4f}",
                f"{row.latency_p50_ms:.3f}",
            ]
            for number, row in enumerate(report.results, 1)
        ],
    )
    caption = (
        "Filled, numbered: every variant measured on the evaluation rows (grey original, blue pruned). Hollow orange: "
        "target-search candidates after the least-squares refit, at their predicted latency and their accuracy on "
        "the selection rows. Ringed: "
        "shipped / chosen. Latency on a log scale. Hover a mark for its figures."
    )
    chart = scatter(
        points + _candidate_points(report), "batch-1 p50 latency, ms (log)", "accuracy", "accuracy against latency"
    )
    return f'<h2>Accuracy against latency</h2><div id="frontier">{figure(chart, caption)}{legend}</div>'


def _candidate_points(report: Report) -> list[Point]:
    """The search's candidates at their predicted latency and their accuracy on the selection rows."""
    search = report.target_search
    if search is None:
        return []
    points = []
    for candidate in search.candidates:
        selection = candidate.judgement.selection
        p50 = search.latency_model.baseline_p50_ms / candidate.predicted_speedup
        chosen = candidate.structure == search.chosen
        hover = (
            f"{candidate.origin}: {candidate.structure.label}; predicted {candidate.predicted_speedup:.2f}x; "
            f"disagreement {candidate.judgement.fidelity.disagreement:.2%}; selection accuracy "
            f"{selection.candidate_correct / selection.rows:.4f}" + (" (chosen)" if chosen else "")
        )
        points.append(
            Point(
                p50,
                selection.candidate_correct / selection.rows,
                "",
                hover,
                PALETTE["candidate"],
                hollow=True,
                ring=chosen,
            )
        )
    return points


def heads_map_section(report: Report) -> str:
    scores = report.importance.array
    layers, heads = scores.shape
    rank = np.empty(scores.size, dtype=int)
    rank[np.argsort(-scores.ravel(), kind="stable")] = np.arange(1, scores.size + 1)
    pruned = {(int(layer), head) for layer, row in report.heads.pruned.items() for head in row}
    cell, left, top = 40, 130 if report.heads.dropped_layers else 70, 24
    width, height = left + heads * cell + 10, top + layers * cell + 10
    parts = [svg_open(width, height, "head importance map", "heads").replace("<svg ", f'<svg width="{width}" ', 1)]
    parts += [
        f'<text class="tick" x="{left + (h + 0.5) * cell:.0f}" y="16" text-anchor="middle">h{h + 1}</text>'
        for h in range(heads)
    ]
    peak = scores.max() or 1.0
    for layer in range(layers):
        dropped = " (dropped)" if layer in report.heads.dropped_layers else ""
        parts.append(
            f'<text class="tick" x="{left - 8}" y="{top + (layer + 0.6) * cell:.0f}" '
            f'text-anchor="end">layer {layer + 1}{dropped}</text>'
        )
        for head in range(heads):
            kept = (layer, head) not in pruned
            parts.append(
                _head_cell(
                    layer,
                    head,
                    scores[layer, head],
                    peak,
                    int(rank[layer * heads + head]),
                    scores.size,
                    kept,
                    left + head * cell,
                    top + layer * cell,
                    cell,
                )
            )
    parts.append("</svg>")
    caption = (
        f"{report.heads.kept} of {report.heads.total} heads kept (coloured by importance, "
        f"{escape(report.importance.method)}); pruned heads are grey with a cross. Hover: score and global rank."
    )
    return f'<h2>Which heads went</h2><div id="heads">{figure("".join(parts), caption)}</div>'


def _head_cell(
    layer: int, head: int, score: float, peak: float, rank: int, total: int, kept: bool, x: float, y: float, size: int
) -> str:
    shade = max(0.08, score / peak)
    fill = f"rgba(31,119,180,{shade:.3f})" if kept else "#d9d9d9"
    cross = (
        ""
        if kept
        else (
            f'<path d="M{x + 10} {y + 10}L{x + size - 12} {y + size - 12}M{x + size - 12} {y + 10}'
            f'L{x + 10} {y + size - 12}" stroke="#888" stroke-width="1.5"/>'
        )
    )
    hover = (
        f"layer {layer + 1}, head {head + 1}: score {score:.4f}, rank {rank} of {total}, {'kept' if kept else 'pruned'}"
    )
    return (
        f'<g class="mark head-cell" data-kept="{int(kept)}"><title>{hover}</title>'
        f'<rect x="{x + 1}" y="{y + 1}" width="{size - 2}" height="{size - 2}" rx="3" fill="{fill}" '
        f'stroke="#fff"/>{cross}</g>'
    )


def ffn_and_recovery_section(report: Report) -> str:
    ffn = report.ffn
    layers = [f"layer {i + 1}" for i in range(len(ffn.kept_per_layer))]
    width = ffn.total // len(ffn.kept_per_layer)
    parts = [
        figure(
            grouped_columns(
                layers, {"FFN neurons kept": ffn.kept_per_layer}, [PALETTE["pruned"]], "FFN width per layer", "neurons"
            ),
            f"FFN neurons kept per layer, of {width} (keep-ffn {ffn.keep_ffn:g}).",
        )
    ]
    if report.recovery is not None and report.recovery.layers:
        parts.append(_recovery_figure(report))
    return f'<h2>FFN widths and recovery</h2><div id="recovery">{"".join(parts)}</div>'


def _recovery_figure(report: Report) -> str:
    recovery = report.recovery
    categories = [f"layer {row['layer'] + 1}" for row in recovery.layers]
    series = {
        f"{part} {when}": [row[f"{part}_output"][f"error_{when}"] for row in recovery.layers]
        for part in ("attention", "ffn")
        for when in ("before", "after")
    }
    colours = ["#c6dbef", "#2171b5", "#fdd0a2", "#d94801"]
    chart = grouped_columns(categories, series, colours, "recovery error per layer", "relative error")
    chosen = ""
    if recovery.compared:
        tried = ", ".join(f"{name} {values['disagreement']:.2%}" for name, values in recovery.compared.items())
        chosen = (
            f" Methods tried, disagreement with the original on the unlabelled rows: {escape(tried)}; kept: "
            f"{escape(recovery.method)}."
        )
    return figure(
        chart,
        "Relative reconstruction error of each sub-layer's output against the original, before and "
        f"after the least-squares refit.{chosen}",
    )


def trees_section(trees: Sequence[AttributionTree]) -> str:
    if not trees:
        return "<h2>Attribution trees</h2><p>No trees were requested (--trees 0).</p>"
    body = "".join(_tree_block(tree) for tree in trees)
    legend = (
        '<p class="legend">How information flows to the root token through the layers (Hao et al., '
        "Algorithm 1): an arrow child to parent at layer L, its colour and width the attribution score; "
        "the sentence's tokens below are tinted by their strongest edge, grey when outside the tree.</p>"
    )
    return f'<h2>Why it still answers: attribution trees</h2>{legend}<div id="trees">{body}</div>'


def _tree_block(tree: AttributionTree) -> str:
    meta = tree.meta
    pair = f" <i>[pair]</i> {escape(str(meta['text_pair']))}" if meta.get("text_pair") else ""
    verdict = (
        f"row {meta.get('row', '?')}: predicted <b>{escape(str(meta.get('predicted')))}</b> "
        f"(p={float(meta.get('probability', 0)):.3f}), gold {escape(str(meta.get('gold')))}"
    )
    strength = token_strength(tree)
    chips = "".join(_token_chip(token, strength.get(index)) for index, token in enumerate(tree.tokens))
    return (
        f'<figure class="tree"><p>{verdict}</p><p>{escape(str(meta.get("text", "")))}{pair}</p>'
        f'<div class="scroll">{tree_svg(tree)}</div><p class="chips">{chips}</p></figure>'
    )


def _token_chip(token: str, strength: float | None) -> str:
    if strength is None:
        return f'<span class="chip out" title="outside the tree">{escape(token)}</span>'
    return (
        f'<span class="chip" style="background:{token_tint(strength)}" '
        f'title="strongest attribution {strength:.3f}">{escape(token)}</span>'
    )


def recipe_section(report: Report) -> str:
    tuning = report.graph_tuning
    header = ["recipe", "eligible", "disagreement", "p50 ms", "throughput/s"]
    rows = [
        [
            ("<b>" if trial.recipe == tuning.chosen else "") + escape(trial.recipe.name),
            "yes" if trial.eligible else "no",
            f"{trial.judgement.fidelity.disagreement:.2%}",
            f"{trial.latency_p50_ms:.3f}",
            f"{trial.throughput_per_s:.0f}",
        ]
        for trial in tuning.trials
    ]
    shipped = report.export["pruned"].recipe["name"]
    again = " (the weight granularity chosen again after recovery)" if shipped != tuning.chosen.name else ""
    intro = (
        f"<p>Tuned on the {escape(report.tuned_on)} model: {escape(tuning.reason)} (bold). Shipped: "
        f"<b>{escape(shipped)}</b>{again}.</p>"
    )
    return "<h2>int8 recipe</h2>" + intro + table(header, rows)


def checks_section(report: Report) -> str:
    rows = [
        [
            model,
            escape(check["candidate"]),
            escape(check["reference"]),
            f"{check['max_abs_diff']:.2e}",
            f"{check['atol']:g}",
            "passed" if check["passed"] else "FAILED",
        ]
        for model, record in sorted(report.export.items())
        for check in record.parity
    ]
    selection = f"<p>{escape(selection_line(report.selection_check).replace('**', ''))}</p>"
    header = ["model", "graph", "against", "max |diff|", "tolerance", "result"]
    return "<h2>Parity checks</h2>" + selection + table(header, rows)


def provenance_section(report: Report) -> str:
    options = {key: value for key, value in sorted(report.options.items()) if not isinstance(value, dict)}
    items = [
        ("model", report.model),
        ("architecture", report.family),
        ("evaluation rows", f"{report.data.evaluation_rows} of {report.data.evaluation}"),
        ("selection rows", report.data.selection),
        ("calibration", f"{report.data.calibration_examples} examples of {report.data.calibration}"),
        ("rows set aside", "; ".join(report.data.excluded) or "none: no measured row also chose or trained"),
        ("machine", f"{report.machine.processor}, {report.machine.cpu_count} CPUs, {report.machine.threads} thread(s)"),
        ("versions", ", ".join(f"{name} {version}" for name, version in sorted(report.versions.items()))),
        ("options", ", ".join(f"{name}={value}" for name, value in options.items())),
        ("stage timings", "; ".join(t.describe() for t in report.timings)),
        ("reused from the cache", ", ".join(report.reused) or "nothing"),
    ]
    rows = [[escape(name), f'<span style="white-space:normal">{escape(str(value))}</span>'] for name, value in items]
    return "<h2>Provenance</h2>" + table(["what", "value"], rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _count(number: int) -> str:
    return f"{number / 1e6:.1f}M" if number >= 1e6 else f"{number / 1e3:.1f}k"


def figure(content: str, caption: str) -> str:
    return f"<figure>{content}<figcaption>{caption}</figcaption></figure>"
