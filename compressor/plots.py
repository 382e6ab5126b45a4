"""Figures for reports: a per-head importance heatmap with the pruned heads marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
    values = _as_matrix(scores, "scores", float)
    mask = None
    if pruned is not None:
        mask = _as_matrix(pruned, "pruned", bool)
        if mask.shape != values.shape:
            raise ValueError(f"pruned has shape {mask.shape} but scores has shape {values.shape}")
    n_layers, n_heads = values.shape

    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    if limit == 0.0:
        limit = 1.0
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

    if mask is not None:
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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
