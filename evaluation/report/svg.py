"""Small inline-SVG charts for report.html: no plotting library, no network, hover text from ``<title>``.

Every chart is a ``viewBox``-scaled ``<svg>`` so it shrinks with the page (phone widths) without cutting
text; hovering a mark shows its figures through the browser's native ``<title>`` tooltip (no script).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = {"original": "#7f7f7f", "pruned": "#1f77b4", "candidate": "#ff7f0e", "chosen": "#d62728"}


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    hover: str
    colour: str
    hollow: bool = False
    ring: bool = False  # the chosen point


def svg_open(width: float, height: float, label: str, css_class: str = "chart") -> str:
    return (
        f'<svg class="{css_class}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1e-9 + abs(low) * 0.1
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= step * m)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int(math.ceil((high - first) / step)) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def scatter(points: Sequence[Point], x_label: str, y_label: str, title: str, width: int = 640) -> str:
    """Points on a log-latency x axis and a linear y axis; short labels beside points, hover text on each."""
    height, left, right, top, bottom = 360, 64, 24, 16, 46
    xs, ys = [math.log10(p.x) for p in points], [p.y for p in points]
    x_ticks = [
        tick
        for tick in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
        if min(xs) - 0.35 <= math.log10(tick) <= max(xs) + 0.35
    ]
    x_low, x_high = min(xs + [math.log10(x_ticks[0])]) - 0.05, max(xs + [math.log10(x_ticks[-1])]) + 0.05
    y_ticks = nice_ticks(min(ys) - 0.005, max(ys) + 0.005)
    edges = (left, top, width - right, height - bottom)
    frame = Frame(*edges, (10**x_low, 10**x_high), (y_ticks[0], y_ticks[-1]), log_x=True)
    sx, sy = frame.sx, frame.sy
    parts = [svg_open(width, height, title), _axes(frame, x_ticks, y_ticks, x_label, y_label, height)]
    parts += [_marker(point, sx(point.x), sy(point.y)) for point in sorted(points, key=lambda p: p.ring)]
    parts += [
        f'<text class="mark-label" x="{sx(point.x) + 9:.1f}" y="{sy(point.y) - 7:.1f}">{escape(point.label)}</text>'
        for point in points
        if point.label
    ]
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Frame:
    """The plot area's pixel edges and the data range it spans (x on a log scale with ``log_x``)."""

    left: float
    top: float
    right: float
    bottom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool = False

    def sx(self, x: float) -> float:
        scale = math.log10 if self.log_x else float
        low, high = (scale(value) for value in self.x_range)
        return self.left + (scale(x) - low) / (high - low) * (self.right - self.left)

    def sy(self, y: float) -> float:
        low, high = self.y_range
        return self.top + (high - y) / (high - low) * (self.bottom - self.top)


def _axes(
    frame: Frame, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str, height: int
) -> str:
    sx, sy = frame.sx, frame.sy
    (x0, x1), (y0, y1) = frame.x_range, frame.y_range
    lines = []
    for x in x_ticks:
        lines.append(
            f'<line class="grid" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{sy(y0):.1f}" y2="{sy(y1):.1f}"/>'
            f'<text class="tick" x="{sx(x):.1f}" y="{sy(y0) + 18:.1f}" text-anchor="middle">{_fmt(x)}</text>'
        )
    for y in y_ticks:
        lines.append(
            f'<line class="grid" x1="{sx(x0):.1f}" x2="{sx(x1):.1f}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
            f'<text class="tick" x="{sx(x0) - 6:.1f}" y="{sy(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>'
        )
    middle_x, middle_y = (sx(x0) + sx(x1)) / 2, (sy(y0) + sy(y1)) / 2
    lines.append(
        f'<text class="axis" x="{middle_x:.1f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="axis" transform="translate(14 {middle_y:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return "".join(lines)


def _marker(point: Point, x: float, y: float) -> str:
    fill = "white" if point.hollow else point.colour
    ring = (
        (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="11" fill="none" stroke="{PALETTE["chosen"]}" stroke-width="2.5"/>')
        if point.ring
        else ""
    )
    return (
        f'<g class="mark"><title>{escape(point.hover)}</title>{ring}'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{fill}" stroke="{point.colour}" stroke-width="2"/>'
        "</g>"
    )


def grouped_columns(
    categories: Sequence[str], series: dict[str, Sequence[float]], colours: Sequence[str], title: str, y_label: str
) -> str:
    """Vertical columns per category, one per series, with a legend; hover gives each value."""
    width, height, left, top, bottom = 640, 260, 64, 30, 40
    peak = max((value for values in series.values() for value in values), default=1) or 1
    ticks = nice_ticks(0, peak)
    plot_height = height - top - bottom
    slot = (width - left - 10) / max(1, len(categories))
    column = slot * 0.8 / max(1, len(series))
    parts = [svg_open(width, height, title)]
    for tick in ticks:
        y = top + plot_height * (1 - tick / ticks[-1])
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    for s, ((name, values), colour) in enumerate(zip(series.items(), colours, strict=True)):
        parts.append(
            f'<rect x="{left + 10 + s * 150}" y="6" width="12" height="12" fill="{colour}"/>'
            f'<text class="tick" x="{left + 28 + s * 150}" y="16">{escape(name)}</text>'
        )
        for c, (category, value) in enumerate(zip(categories, values, strict=True)):
            x = left + c * slot + slot * 0.1 + s * column
            h = plot_height * value / ticks[-1]
            parts.append(
                f'<g class="mark"><title>{escape(f"{category}, {name}: {value:.4g}")}</title>'
                f'<rect x="{x:.1f}" y="{top + plot_height - h:.1f}" width="{column:.1f}" height="{h:.1f}" '
                f'fill="{colour}"/></g>'
            )
    for c, category in enumerate(categories):
        parts.append(
            f'<text class="tick" x="{left + (c + 0.5) * slot:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{escape(category)}</text>'
        )
    parts.append(
        f'<text class="axis" transform="translate(14 {top + plot_height / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text></svg>'
    )
    return "".join(parts)


def lines(
    xs: Sequence[float],
    series: dict[str, Sequence[float]],
    colours: Sequence[str],
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """One polyline per series over shared x values, a legend on top; hover gives each point's value."""
    width, height, left, right, top, bottom = 640, 340, 64, 24, 20 + 18 * ((len(series) + 2) // 3), 46
    values = [value for points in series.values() for value in points]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(values), max(values))
    frame = Frame(left, top, width - right, height - bottom, (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]))
    sx, sy = frame.sx, frame.sy
    parts = [svg_open(width, height, title), _axes(frame, x_ticks, y_ticks, x_label, y_label, height)]
    for index, ((name, points), colour) in enumerate(zip(series.items(), colours, strict=False)):
        legend_x, legend_y = left + (index % 3) * 190, 14 + 18 * (index // 3)
        parts.append(
            f'<rect x="{legend_x}" y="{legend_y - 9}" width="14" height="4" fill="{colour}"/>'
            f'<text class="tick" x="{legend_x + 20}" y="{legend_y}">{escape(name)}</text>'
        )
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, points, strict=True))
        parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [
            f'<g class="mark"><title>{escape(f"{name}: {y:.4f} at {x:.4g}")}</title>'
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/></g>'
            for x, y in zip(xs, points, strict=True)
        ]
    parts.append("</svg>")
    return "".join(parts)
