"""Attribution trees (Hao et al., AAAI 2021, Algorithm 1) as the official code builds them.

A tree shows how information flows between tokens across layers: an edge of layer ``l``
from ``parent`` to ``child`` says that, at layer ``l``, token ``child`` fed token ``parent``
strongly (its normalised attribution score was above the threshold).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure

TREE_KIND = "attribution-tree"
TREE_SCHEMA = 1


@dataclass(frozen=True)
class TreeEdge:
    """Information flowing from token ``child`` into token ``parent`` at ``layer`` (0-based)."""

    parent: int
    child: int
    layer: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, so numpy scalars never reach ``json.dump``."""
        return {
            "parent": int(self.parent),
            "child": int(self.child),
            "layer": int(self.layer),
            "score": float(self.score),
        }


@dataclass(frozen=True)
class AttributionTree:
    """One example's attribution tree; ``edges`` are in the order the algorithm added them."""

    tokens: tuple[str, ...]
    root: int
    edges: tuple[TreeEdge, ...]
    threshold: float
    # Not hashed: a dict is unhashable, and the frozen dataclass must stay hashable.
    meta: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Coerce lists to tuples so equality after a JSON round trip holds, then check that
        # the edges really form a tree rooted at ``root`` (each node has one parent, and a
        # parent is in the tree before its child is added).
        object.__setattr__(self, "tokens", tuple(str(t) for t in self.tokens))
        object.__setattr__(self, "edges", tuple(self.edges))
        object.__setattr__(self, "meta", dict(self.meta) if self.meta is not None else {})
        n = len(self.tokens)
        if not 0 <= self.root < n:
            raise ValueError(f"root {self.root} is outside the {n} tokens")
        seen = {self.root}
        for edge in self.edges:
            if not (0 <= edge.parent < n and 0 <= edge.child < n):
                raise ValueError(f"edge {edge} refers to a token outside the {n} tokens")
            if edge.parent not in seen:
                raise ValueError(f"edge {edge}: parent is not in the tree yet")
            if edge.child in seen:
                raise ValueError(f"edge {edge}: child already has a parent (or is the root)")
            seen.add(edge.child)

    def nodes(self) -> list[int]:
        """Root first, then children in the order they joined the tree."""
        return [self.root] + [edge.child for edge in self.edges]

    def depth(self) -> dict[int, int]:
        """Distance from the root; parents always precede children, so one pass suffices."""
        depths = {self.root: 0}
        for edge in self.edges:
            depths[edge.child] = depths[edge.parent] + 1
        return depths

    def to_dict(self) -> dict[str, Any]:
        """A self-describing JSON document; ``nodes`` is derived, for readers that want depths."""
        depths = self.depth()
        return {
            "kind": TREE_KIND,
            "schema": TREE_SCHEMA,
            "tokens": list(self.tokens),
            "root": int(self.root),
            "threshold": float(self.threshold),
            "nodes": [{"index": i, "token": self.tokens[i], "depth": depths[i]} for i in self.nodes()],
            "edges": [edge.to_dict() for edge in self.edges],
            "meta": _jsonable(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict) -> AttributionTree:
        """Inverse of :meth:`to_dict`; ``nodes`` is ignored since it is derived from the edges."""
        if not isinstance(data, dict):
            raise ValueError("an attribution tree must be a JSON object")
        if data.get("kind") != TREE_KIND:
            raise ValueError(f"not an attribution tree (kind={data.get('kind')!r})")
        if data.get("schema") != TREE_SCHEMA:
            raise ValueError(f"unsupported attribution-tree schema {data.get('schema')!r}")
        try:
            edges = tuple(
                TreeEdge(parent=int(e["parent"]), child=int(e["child"]), layer=int(e["layer"]), score=float(e["score"]))
                for e in data["edges"]
            )
            return cls(
                tokens=tuple(str(t) for t in data["tokens"]),
                root=int(data["root"]),
                edges=edges,
                threshold=float(data["threshold"]),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed attribution tree: {exc!r}") from exc

    def save(self, path: str | Path) -> None:
        """Write JSON (indent 2, sorted keys) so trees diff cleanly between runs."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples inside ``meta`` into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalise(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Divide by |max(reference)|, giving zeros when that max is 0 (or reference is empty)."""
    if reference.size == 0:
        return np.zeros_like(matrix)
    scale = abs(float(reference.max()))
    if scale == 0.0:
        return np.zeros_like(matrix)
    return matrix / scale


def build_tree(
    attributions: np.ndarray,
    tokens: Sequence[str],
    threshold: float = 0.4,
    meta: dict | None = None,
) -> AttributionTree:
    """Build one example's attribution tree from its [L, H, n, n] attribution scores.

    Follows the official implementation rather than the paper's prose where they differ:
    the last layer is skipped (it only propagates gradient into [CLS]'s row), the root is
    never [CLS], and lower layers are scanned query-row by query-row in ascending order.
    """
    att = np.asarray(attributions, dtype=np.float64)
    tokens = [str(t) for t in tokens]
    if att.ndim != 4:
        raise ValueError(f"attributions must be 4-D [layers, heads, n, n], got shape {att.shape}")
    n_layers, _, n_rows, n_cols = att.shape
    if n_rows != n_cols:
        raise ValueError(f"attribution matrices must be square, got {n_rows}x{n_cols}")
    if n_rows != len(tokens):
        raise ValueError(f"attributions cover {n_rows} tokens but {len(tokens)} tokens were given")
    if n_layers < 1 or n_rows < 1:
        raise ValueError(f"attributions need at least one layer and one token, got shape {att.shape}")
    if not np.all(np.isfinite(att)):
        raise ValueError("attributions contain NaN or infinite values")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    n = n_rows

    summed = att.sum(axis=1)  # [L, n, n]
    proportion = np.stack([_normalise(summed[layer], summed[layer][1:, :]) for layer in range(n_layers)])

    combined = summed.sum(axis=0)
    combined = _normalise(combined, combined)
    np.fill_diagonal(combined, 0.0)
    combined[combined < 0] = 0.0
    combined[0, :] = 0.0
    # Stable descending order: ties go to the lowest index, as np.argmax would.
    order = np.argsort(-combined.sum(axis=1), kind="stable")
    root = next((int(i) for i in order if i != 0), 0)

    edges: list[TreeEdge] = []
    in_tree = {root}
    if n_layers >= 2:
        top = n_layers - 2
        for j in range(n):
            score = proportion[top, root, j]
            if j != root and score > threshold:
                edges.append(TreeEdge(parent=root, child=j, layer=top, score=float(score)))
                in_tree.add(j)
        for layer in range(n_layers - 3, -1, -1):
            for i in range(1, n):
                for j in range(n):
                    score = proportion[layer, i, j]
                    if score > threshold and i in in_tree and j not in in_tree:
                        edges.append(TreeEdge(parent=i, child=j, layer=layer, score=float(score)))
                        in_tree.add(j)

    return AttributionTree(
        tokens=tuple(tokens), root=root, edges=tuple(edges), threshold=float(threshold), meta=dict(meta or {})
    )


def render_tree_svg(tree: AttributionTree, path: str | Path) -> None:
    """Draw the tree (x = token position, y = depth) as SVG with selectable text.

    Text is kept as SVG ``<text>`` (not outlines) so the file is searchable and small; the
    whole sentence is repeated faintly underneath so the reader sees which tokens were dropped.
    """
    path = Path(path)
    depths = tree.depth()
    sentence_y = -(max(depths.values()) + 1.1)
    fig, ax = _tree_canvas(tree, depths, sentence_y)
    norm, cmap = _edge_colour_scale(tree)
    if tree.edges:
        # Added before the edges are placed: the colour bar shrinks the axes, which changes
        # the data-to-display transform used below to put labels on the curved arrows.
        _add_score_colourbar(fig, ax, norm, cmap)
    _draw_tree_nodes(ax, tree, depths)
    for edge in tree.edges:
        _draw_tree_edge(ax, edge, depths, norm, cmap)
    _draw_sentence(ax, tree, depths, sentence_y)
    ax.set_title(str(tree.meta.get("title", "")), fontsize=11, parse_math=False)
    _save_tree_svg(fig, path)


def _tree_canvas(tree: AttributionTree, depths: dict[int, int], sentence_y: float) -> tuple[Figure, Axes]:
    """A figure sized so labels do not collide, with bare axes spanning the tokens and the sentence row."""
    n = len(tree.tokens)
    max_depth = max(depths.values())
    # One column per token, wide enough that neighbouring labels at the same depth do not collide.
    longest = max(len(f"{tree.tokens[i]} ({i})") for i in depths)
    width = max(6.0, max(0.9, 0.075 * longest + 0.25) * n + 2.0)
    height = 2.2 + 1.3 * (max_depth + 2)
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_ylim(sentence_y - 1.0, 0.6)
    return fig, ax


def _edge_colour_scale(tree: AttributionTree) -> tuple[Normalize, Colormap]:
    """Map edge scores (never below the threshold) to colours; a valid range even with no edges."""
    scores = [edge.score for edge in tree.edges]
    low = tree.threshold if not scores else min(tree.threshold, min(scores))
    high = max(scores) if scores else low + 1.0
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
    # Skip the palest third of the palette so weak (but above-threshold) edges stay visible.
    cmap = ListedColormap(matplotlib.colormaps["YlGnBu"](np.linspace(0.35, 1.0, 256)))
    return norm, cmap


def _add_score_colourbar(fig: Figure, ax: Axes, norm: Normalize, cmap: Colormap) -> None:
    """A slim colour bar so edge colours can be read as attribution scores."""
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    colourbar = fig.colorbar(mappable, ax=ax, fraction=0.03, pad=0.01)
    colourbar.set_label("attribution score (layer-normalised)", fontsize=8)


def _draw_tree_nodes(ax: Axes, tree: AttributionTree, depths: dict[int, int]) -> None:
    """Boxed "token (index)" labels at each node's depth, the root highlighted so it stands out."""
    node_box = {"boxstyle": "round,pad=0.3", "facecolor": "#f4f4f4", "edgecolor": "#555555"}
    for index in tree.nodes():
        is_root = index == tree.root
        box = dict(node_box, facecolor="#ffe9a8") if is_root else node_box
        ax.text(
            index,
            -depths[index],
            f"{tree.tokens[index]} ({index})",
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold" if is_root else "normal",
            bbox=box,
            zorder=3,
            parse_math=False,
        )


def _draw_tree_edge(ax: Axes, edge: TreeEdge, depths: dict[int, int], norm: Normalize, cmap: Colormap) -> None:
    """A curved arrow from parent to child, coloured and thickened by score, labelled with its layer."""
    start = (edge.parent, -depths[edge.parent])
    end = (edge.child, -depths[edge.child])
    colour = cmap(norm(edge.score))
    strength = float(np.clip(norm(edge.score), 0.0, 1.0))
    # Bow each arrow upwards, less for long spans, so it does not run along the row of
    # nodes at the child's depth; the bend stays a few tenths of an inch whatever the span.
    span = end[0] - start[0]
    rad = -math.copysign(min(0.2, 0.4 / abs(span)), span)
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        zorder=2,
        arrowprops={
            "arrowstyle": "-|>",
            "color": colour,
            "lw": 1.0 + 2.5 * strength,
            "shrinkA": 14,
            "shrinkB": 14,
            "connectionstyle": f"arc3,rad={rad}",
        },
    )
    label_xy = _arc_midpoint(ax, start, end, rad)
    ax.text(
        label_xy[0],
        label_xy[1],
        f"L{edge.layer + 1}",
        ha="center",
        va="center",
        fontsize=7,
        color=colour,
        zorder=4,
        parse_math=False,
        bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
    )


def _arc_midpoint(ax: Axes, start: tuple[float, float], end: tuple[float, float], rad: float) -> np.ndarray:
    """Data coordinates of an arc3 curve's midpoint, so the layer label sits on the arrow itself.

    The midpoint is half-way between the chord's midpoint and arc3's control point, which is
    defined in display coordinates; hence the round trip through ``ax.transData``.
    """
    to_display = ax.transData
    (x1, y1), (x2, y2) = to_display.transform([start, end])
    control = ((x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1))
    return to_display.inverted().transform([((x1 + x2) / 2 + control[0]) / 2, ((y1 + y2) / 2 + control[1]) / 2])


def _draw_sentence(ax: Axes, tree: AttributionTree, depths: dict[int, int], sentence_y: float) -> None:
    """The whole sentence under a rule, tokens outside the tree greyed, so dropped tokens show."""
    in_tree = set(depths)
    for index, token in enumerate(tree.tokens):
        ax.text(
            index,
            sentence_y,
            token,
            ha="right",
            va="top",
            rotation=45,
            rotation_mode="anchor",
            fontsize=8,
            color="#333333" if index in in_tree else "#9a9a9a",
            alpha=0.75 if index in in_tree else 0.45,
            parse_math=False,
        )
    ax.axhline(sentence_y + 0.35, color="#dddddd", lw=0.8, zorder=0)


def _save_tree_svg(fig: Figure, path: Path) -> None:
    """Write SVG with real text, a fixed id salt and no date, so reruns give byte-identical files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "attr-compress"}):
        fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
