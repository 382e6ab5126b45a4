"""Figures for reports: the head-importance heatmap (pruned heads marked) and the sweep's curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from attr_compress.compressor.pruning.prune import PrunePlan
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.evaluation.curves import SweepResult
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.patheffects import withStroke


def _as_matrix(values: Sequence[Sequence[float]] | np.ndarray, name: str, dtype: type) -> np.ndarray:
    """A non-empty 2-D array, or ValueError naming the argument (ragged lists included)."""
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a rectangular [layers][heads] table: {exc}") from exc
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [layers][heads] table, got shape {array.shape}")
    return array


def plot_head_importance(
    scores: Sequence[Sequence[float]],
    path: str | Path,
    *,
    title: str,
    pruned: Sequence[Sequence[bool]] | None = None,
) -> None:
    """Save a layers x heads heatmap of importance scores (PNG, or SVG by extension, dpi 120).

    The colour scale is symmetric around 0 because attribution-based scores can be negative,
    and a negative head is as informative as a strongly positive one. Pruned heads are hatched
    so the plan can be checked against the scores at a glance.
    """
    values, mask = _heatmap_inputs(scores, pruned)
    limit = _symmetric_limit(values)
    fig, ax = _draw_heatmap(values, limit, title)
    _annotate_cells(ax, values, limit)
    if mask is not None:
        _hatch_pruned_heads(fig, ax, mask)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def _heatmap_inputs(
    scores: Sequence[Sequence[float]], pruned: Sequence[Sequence[bool]] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores and optional pruned mask as same-shape matrices, so bad input fails before drawing."""
    values = _as_matrix(scores, "scores", float)
    mask = None
    if pruned is not None:
        mask = _as_matrix(pruned, "pruned", bool)
        if mask.shape != values.shape:
            raise ValueError(f"pruned has shape {mask.shape} but scores has shape {values.shape}")
    return values, mask


def _symmetric_limit(values: np.ndarray) -> float:
    """Largest finite |score|, or 1.0 when there is none, so the colour scale is never empty."""
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    if limit == 0.0:
        limit = 1.0
    return limit


def _draw_heatmap(values: np.ndarray, limit: float, title: str) -> tuple[Figure, Axes]:
    """The coloured grid with colour bar, 1-based head/layer ticks and title, on a figure sized to the grid."""
    n_layers, n_heads = values.shape
    norm = Normalize(vmin=-limit, vmax=limit)
    size = (max(5.0, 0.6 * n_heads + 2.8), max(3.0, 0.42 * n_layers + 2.0))
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    colourbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    colourbar.set_label("importance", fontsize=9)

    ax.set_xticks(range(n_heads), [str(h + 1) for h in range(n_heads)], fontsize=8)
    ax.set_yticks(range(n_layers), [f"layer {layer + 1}" for layer in range(n_layers)], fontsize=8)
    ax.set_xlabel("head", fontsize=9)
    ax.set_title(title, fontsize=11, parse_math=False)
    return fig, ax


def _annotate_cells(ax: Axes, values: np.ndarray, limit: float) -> None:
    """Print each score in its cell so exact values can be read, legible on any cell colour."""
    n_layers, n_heads = values.shape
    font_size = 7 if n_heads <= 16 else 5
    for layer in range(n_layers):
        for head in range(n_heads):
            value = values[layer, head]
            # Dark cells (far from 0) get white text to stay legible.
            dark = np.isfinite(value) and abs(value) / limit > 0.6
            # A thin halo keeps the number readable over the hatching of pruned heads.
            ax.text(
                head,
                layer,
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=font_size,
                color="white" if dark else "black",
                zorder=3,
                path_effects=[withStroke(linewidth=1.5, foreground="black" if dark else "white")],
            )


def _hatch_pruned_heads(fig: Figure, ax: Axes, mask: np.ndarray) -> None:
    """Hatch the pruned cells and add a legend with the count, so the plan reads against the scores."""
    for layer, head in zip(*np.nonzero(mask), strict=True):
        ax.add_patch(
            Rectangle(
                (head - 0.5, layer - 0.5),
                1.0,
                1.0,
                fill=False,
                hatch="///",
                edgecolor="#333333",
                linewidth=0.0,
                alpha=0.45,
                zorder=2,
            )
        )
    handle = Patch(
        facecolor="white",
        edgecolor="#333333",
        hatch="///",
        label=f"pruned ({int(mask.sum())} of {mask.size} heads)",
    )
    fig.legend(handles=[handle], loc="outside lower center", frameon=False, fontsize=8)


def save_importance(importance: HeadImportance, folder: Path, plan: PrunePlan | None = None) -> None:
    """importance.json and its heatmap importance.png (with ``plan``, the pruned heads hatched)."""
    importance.save(folder / "importance.json")
    plot_head_importance(
        importance.scores,
        folder / "importance.png",
        title=f"Head importance ({importance.method}, {importance.examples} examples, m={importance.steps})",
        pruned=None if plan is None else [[not kept for kept in row] for row in plan.head_mask],
    )


def plot_sweep_accuracy(sweep: SweepResult, path: str | Path) -> None:
    """Accuracy against fraction of heads pruned, one line per method, the unpruned model as reference."""
    figure = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    pruned = [1 - keep for keep in sweep.keeps]
    for method, curve in sweep.methods.items():
        axes.plot(pruned, curve.accuracy, marker="o", label=f"{method} (AUC {curve.auc:.3f})")
    axes.axhline(sweep.unpruned.accuracy, color="black", linestyle="--", linewidth=1, label="unpruned")
    _save(figure, axes, path, "fraction of attention heads pruned", "Accuracy after pruning, no re-training")


def plot_sweep_frontier(sweep: SweepResult, path: str | Path) -> None:
    """Accuracy against batch-1 latency: every keep level as int8 ONNX, and the original model's points."""
    figure = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    rows = sweep.latency or []
    pruned = [row for row in rows if row.model.startswith("keep-")]
    axes.plot(
        [row.latency_p50_ms for row in pruned],
        [row.accuracy for row in pruned],
        marker="o",
        label=f"{sweep.latency_method}, ONNX int8",
    )
    for row in pruned:
        axes.annotate(
            row.model.replace("keep-", "keep "),
            (row.latency_p50_ms, row.accuracy),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    for row in rows:
        if row.model == "original":
            axes.scatter(row.latency_p50_ms, row.accuracy, marker="s", s=50, label=row.name)
    axes.set_xscale("log")  # the original PyTorch point is several times slower than the int8 cluster
    _save(figure, axes, path, f"batch-1 latency, p50 ms ({sweep.threads} thread(s))", "Accuracy / latency frontier")


def _save(figure: Figure, axes: Any, path: str | Path, xlabel: str, title: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
