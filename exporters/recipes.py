"""How an fp32 ONNX graph becomes the int8 graph we ship: graph fusion, quantisation, session options.

A ``Recipe`` names each choice; ``fuse_graph`` and ``quantize_graph`` apply one. The choices are made by measurement
(``evaluation/tuning.py``), because what is fastest depends on the CPU, the sequence lengths and the
model's shape: on the 2-core AVX-512 VNNI machine we develop on, onnxruntime's fused SkipLayerNormalization
kernel was several times slower than the Add + LayerNormalization it replaces, so disabling that session
fusion is one of the candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from attr_compress.exporters.onnx_export import quiet
from attr_compress.exporters.quantize import quantize_dynamic

FUSED_FP32 = "model_fused.onnx"
# onnxruntime's dynamic quantisation defaults, and the same without embeddings (kept fp32 for accuracy)
OPERATOR_SETS = {
    "matmul+attention+embeddings": ("MatMul", "Attention", "Gather", "EmbedLayerNormalization"),
    "matmul+attention": ("MatMul", "Attention"),
}


@dataclass(frozen=True)
class Recipe:
    """One way to make and run the int8 graph.

    ``graph``: "plain" (Optimum's export as is) or "fused" (onnxruntime's transformer optimiser: fused
    attention, GELU and embedding LayerNorm; Add + LayerNorm left unfused). ``quantizer``: "optimum"
    (Optimum's ORTQuantizer preset for this CPU, our baseline) or "onnxruntime" (quantize_dynamic with
    ``operators``; the only path that handles fused graphs). Every recipe runs in a default onnxruntime session:
    no session flags are needed (see ``guard_layer_norm_adds``).
    """

    graph: str = "plain"
    quantizer: str = "optimum"
    per_channel: bool = True
    operators: str = "matmul+attention+embeddings"
    flipped: tuple[str, ...] = ()  # weighted nodes quantised at the other granularity (onnxruntime quantizer)
    fp32: tuple[str, ...] = ()  # weighted nodes left in fp32 (onnxruntime quantizer)

    def __post_init__(self) -> None:  # JSON gives lists
        object.__setattr__(self, "flipped", tuple(self.flipped))
        object.__setattr__(self, "fp32", tuple(self.fp32))

    @property
    def name(self) -> str:
        parts = [self.graph, self.quantizer, "per-channel" if self.per_channel else "per-tensor"]
        if self.quantizer == "onnxruntime":
            parts.append(self.operators)
        name = " / ".join(parts)
        if self.flipped:
            name += f" + {len(self.flipped)} weight(s) {'per-tensor' if self.per_channel else 'per-channel'}"
        if self.fp32:
            name += f" + {len(self.fp32)} MatMul(s) in fp32"
        return name

    @property
    def uniform(self) -> Recipe:
        """The recipe without its per-node exceptions."""
        return replace(self, flipped=(), fp32=())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flipped": list(self.flipped), "fp32": list(self.fp32), "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        fields = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**fields)


OPTIMUM_BASELINE = Recipe()  # Optimum's documented dynamic int8 recipe: plain graph, per-channel preset


def guard_layer_norm_adds(model: Any) -> int:
    """Turn every two-input Add that feeds only LayerNormalization (input 0) into a Sum, in place; returns how
    many. The sum is the same, bit for bit, but onnxruntime's session fusion matches only "Add" before a
    LayerNorm, so a default session keeps Add + LayerNormalization instead of fusing SkipLayerNormalization:
    in onnxruntime 1.32 LayerNormalization has a vectorised kernel while SkipLayerNormalization is a scalar
    loop, about 1.5 us against 0.13 us per row of 384 on our CPU (12 fused nodes cost 0.49 ms of a 1 ms run)."""
    graph = model.graph
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    outputs = {output.name for output in graph.output}
    guarded = 0
    for node in graph.node:
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        users = consumers.get(node.output[0], [])
        if node.output[0] in outputs or not users:
            continue
        if all(user.op_type == "LayerNormalization" and index == 0 for user, index in users):
            node.op_type = "Sum"  # Sum (opset 8+) broadcasts like Add: same inputs, same output
            guarded += 1
    return guarded


def fuse_graph(source: str | Path, target: str | Path, *, attention: bool = True) -> dict[str, int]:
    """onnxruntime's BERT fusions, head counts detected per layer from each graph's reshapes (num_heads=0),
    because pruned layers differ. Add + LayerNorm stays unfused and guarded (``guard_layer_norm_adds``) so a
    default session does not fuse it either."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_attention = attention
    with quiet():
        optimized = optimize_model(
            str(source), model_type="bert", num_heads=0, hidden_size=0, opt_level=0, optimization_options=options
        )
        guard_layer_norm_adds(optimized.model)
        optimized.save_model_to_file(str(target))
    return {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}


def quantize_graph(source: str | Path, target: str | Path, recipe: Recipe) -> dict[str, Any]:
    """Dynamic int8 quantisation of ``source`` into ``target`` following ``recipe``. Our own quantisations are
    guarded (``guard_layer_norm_adds``); Optimum's recipe is left exactly as Optimum makes it (the baseline)."""
    source, target = Path(source), Path(target)
    if recipe.quantizer == "optimum":
        return quantize_dynamic(source.parent, per_channel=recipe.per_channel, source=source.name, target=target)[1]
    from attr_compress.exporters.mixed import quantize_mixed

    return quantize_mixed(source, target, recipe)
