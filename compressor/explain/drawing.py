"""The one drawing of an attribution tree, as SVG text: inline in report.html and, as a standalone document with
its title and the whole sentence beneath, each ``trees/tree_NNN.svg``.

Tokens of the tree stand left to right in sentence order, each at its depth; arcs run parent -> child, each
labelled at the child with the layer it flows through (one incoming edge per child, so labels never collide);
colour and width follow the attribution score.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from attr_compress.compressor.explain.trees import AttributionTree, TreeEdge

ROW, TOP = 64, 20
FONT = 'font-family="system-ui,sans-serif"'


def tree_svg(tree: AttributionTree, *, standalone: bool = False) -> str:
    """The tree as an ``<svg>`` element; ``standalone`` adds the title above and the whole sentence below (tokens
    outside the tree in grey), for a file opened on its own."""
    depths = tree.depth()
    order = sorted(depths)
    widths = {index: max(40, 8 * len(tree.tokens[index]) + 14) for index in order}
    centres, x = {}, 10.0
    for index in order:
        centres[index] = x + widths[index] / 2
        x += widths[index] + 8
    top = TOP + (24 if standalone else 0)
    tree_bottom = top + max(depths.values()) * ROW + 20
    sentence = _sentence_row(tree, tree_bottom + 10) if standalone else ("", 0.0)
    width = int(max(x + 2, sentence[1] + 10))
    height = int(tree_bottom + (40 if standalone else 0))
    parts = [
        f'<svg class="tree-svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT} '
        f'role="img" aria-label="attribution tree" xmlns="http://www.w3.org/2000/svg">'
    ]
    if standalone:
        parts.append(f'<text x="10" y="18" font-size="14">{escape(str(tree.meta.get("title", "")))}</text>')
    parts += [_edge(edge, centres, depths, top) for edge in tree.edges]
    parts += [
        _node(tree.tokens[index], centres[index], top + depths[index] * ROW, index == tree.root) for index in order
    ]
    parts += [sentence[0], "</svg>"]
    return "".join(parts)


def write_tree_svg(tree: AttributionTree, path: str | Path) -> None:
    """``tree_svg`` as a standalone SVG file (text stays selectable and searchable)."""
    document = '<?xml version="1.0" encoding="UTF-8"?>\n' + tree_svg(tree, standalone=True) + "\n"
    Path(path).write_text(document, encoding="utf-8")


def token_strength(tree: AttributionTree) -> dict[int, float]:
    """Each token in the tree by its strongest edge (the root 1), for tinting the sentence."""
    strength = {tree.root: 1.0}
    for edge in tree.edges:
        for token in (edge.parent, edge.child):
            strength[token] = max(strength.get(token, 0.0), edge.score)
    return strength


def token_tint(strength: float) -> str:
    """A token's background by its strongest edge (the sentence row here, the chips of report.html)."""
    return f"rgba(214,39,40,{0.15 + 0.6 * strength:.2f})"


def _sentence_row(tree: AttributionTree, y: float) -> tuple[str, float]:
    """The whole sentence on one line, tokens in the tree tinted by strength, the others grey; and its width."""
    strength = token_strength(tree)
    parts, x = [], 10.0
    for index, token in enumerate(tree.tokens):
        width = 8 * len(token) + 10
        tint = strength.get(index)
        fill = "#eee" if tint is None else token_tint(tint)
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width}" height="20" rx="4" fill="{fill}"/>'
            f'<text x="{x + width / 2:.1f}" y="{y + 14:.1f}" font-size="12" text-anchor="middle" '
            f'fill="{"#999" if tint is None else "#222"}">{escape(token)}</text>'
        )
        x += width + 4
    return "".join(parts), x


def _edge(edge: TreeEdge, centres: dict[int, float], depths: dict[int, int], top: int) -> str:
    x1, y1 = centres[edge.parent], top + depths[edge.parent] * ROW + 10
    x2, y2 = centres[edge.child], top + depths[edge.child] * ROW - 12
    colour = f"rgba(214,39,40,{0.35 + 0.65 * min(1.0, edge.score):.2f})"
    hover = f"{escape(str(edge.child))} -> {escape(str(edge.parent))} at layer {edge.layer + 1}: score {edge.score:.3f}"
    return (
        f'<g class="mark"><title>{hover}</title><path d="M{x1:.1f} {y1:.1f}C{x1:.1f} {y1 + 30:.1f} '
        f'{x2:.1f} {y2 - 30:.1f} {x2:.1f} {y2:.1f}" fill="none" stroke="{colour}" '
        f'stroke-width="{1 + 3 * edge.score:.2f}"/><text class="edge-label" x="{x2 + 4:.1f}" y="{y2 - 4:.1f}" '
        f'font-size="11" fill="#a00">L{edge.layer + 1}</text></g>'
    )


def _node(token: str, x: float, y: float, root: bool) -> str:
    width = max(36, 8 * len(token) + 10)
    fill, stroke = ("#ffe8a3", "#b8860b") if root else ("#f4f4f4", "#666")
    return (
        f'<rect x="{x - width / 2:.1f}" y="{y - 12:.1f}" width="{width}" height="22" rx="5" fill="{fill}" '
        f'stroke="{stroke}"/><text x="{x:.1f}" y="{y + 4:.1f}" font-size="13" text-anchor="middle">'
        f"{escape(token)}</text>"
    )
