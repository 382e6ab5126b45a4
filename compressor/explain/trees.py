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

import numpy as np

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


def _check_attributions(att: np.ndarray, tokens: Sequence[str], threshold: float) -> None:
    """[L, H, n, n] finite scores over the given tokens, at least one layer and token, a finite threshold."""
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
    _check_attributions(att, tokens, threshold)
    n_layers, n = att.shape[0], att.shape[2]

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
