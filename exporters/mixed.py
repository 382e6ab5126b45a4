"""int8 chosen per MatMul: every weight's granularity (per-channel or per-tensor), and fp32 for the few that
hurt most (the accuracy-aware idea of Intel Neural Compressor's and OpenVINO's tuning).

onnxruntime's ``quantize_dynamic`` has one granularity switch for the whole graph. Per-tensor weights are made
inside a per-channel run by giving every channel of that weight the whole tensor's range (its
``TensorQuantOverrides``): the int8 values and the scale are then exactly what a per-tensor run writes, the scale
stored once per channel. Nodes left in fp32 are excluded from quantisation. On CPUs without VNNI, weights are
quantised to 7 bits (``reduce_range``), as onnxruntime documents for per-channel weights there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from attr_compress.exporters.onnx_export import quiet
from attr_compress.exporters.quantize import cpu_flags
from attr_compress.exporters.recipes import OPERATOR_SETS, Recipe, guard_layer_norm_adds

WEIGHTED = ("MatMul", "Attention")  # the operators whose constant weight is quantised


def has_vnni() -> bool:
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


def weighted_nodes(graph: Any) -> dict[str, str]:
    """Node name -> weight initializer of every MatMul / Attention node whose weight is a constant."""
    constants = {initializer.name for initializer in graph.initializer}
    return {
        node.name: node.input[1]
        for node in graph.node
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in constants
    }


def flops(graph: Any) -> dict[str, int]:
    """Multiply-adds per token of each weighted node (its weight's size): what fp32 costs it more than int8."""
    sizes = {initializer.name: int(np.prod(initializer.dims)) for initializer in graph.initializer}
    return {name: sizes[weight] for name, weight in weighted_nodes(graph).items()}


def quantize_mixed(source: str | Path, target: str | Path, recipe: Recipe) -> dict[str, Any]:
    """The int8 graph of an onnxruntime ``recipe`` with its per-node exceptions (``Recipe.flipped`` weights take
    the other granularity, ``Recipe.fp32`` nodes stay fp32): one ``quantize_dynamic`` pass, Adds before
    LayerNorms guarded."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    weights = {initializer.name: initializer for initializer in model.graph.initializer}
    nodes = weighted_nodes(model.graph)
    per_tensor = set(recipe.flipped) if recipe.per_channel else set(nodes) - set(recipe.flipped) - set(recipe.fp32)
    overrides = {}
    for name in per_tensor:
        weight = numpy_helper.to_array(weights[nodes[name]])
        overrides[nodes[name]] = [{"axis": 1, "rmin": np.float32(weight.min()), "rmax": np.float32(weight.max())}]
    reduce_range = not has_vnni()
    with quiet():
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(OPERATOR_SETS[recipe.operators]),
            nodes_to_exclude=list(recipe.fp32),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "TensorQuantOverrides": overrides},
        )
    quantized = onnx.load(str(target))
    if guard_layer_norm_adds(quantized):
        onnx.save(quantized, str(target))
    return {
        "quantizer": "onnxruntime.quantization.quantize_dynamic, per MatMul",
        "per_channel": recipe.per_channel,
        "flipped": list(recipe.flipped),
        "fp32": list(recipe.fp32),
        "operators": list(OPERATOR_SETS[recipe.operators]),
        "reduce_range": reduce_range,
        "dynamic": True,
    }
