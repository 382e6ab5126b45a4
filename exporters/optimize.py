"""onnxruntime's transformer graph optimiser, through Optimum's ORTOptimizer."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from exporters.onnx_export import ONNX_FP32, ONNX_OPTIMIZED, quiet


def optimize_onnx(
    onnx_dir: str | Path, *, level: int = 2, disable_attention_fusion: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Write model_optimized.onnx beside model.onnx and return it with the configuration used.

    ORTOptimizer passes one model-wide head count to the attention fusion; after head pruning the counts
    differ per layer, so the result must pass the parity gate (``disable_attention_fusion`` is the fallback).
    """
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    config = OptimizationConfig(optimization_level=level, disable_attention_fusion=disable_attention_fusion)
    optimizer = ORTOptimizer.from_pretrained(str(onnx_dir), file_names=[ONNX_FP32])
    with quiet():
        optimizer.optimize(config, save_dir=str(onnx_dir), file_suffix="optimized")
    return Path(onnx_dir) / ONNX_OPTIMIZED, {
        "optimization_level": level,
        "disable_attention_fusion": disable_attention_fusion,
        "config": {k: v for k, v in asdict(config).items() if isinstance(v, (bool, int, float, str))},
    }
