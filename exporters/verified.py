"""Export, optimise and quantise a model folder, checking every fp32 graph against PyTorch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.artifacts import JsonArtifact, library_versions
from compressor.errors import VerificationError
from exporters.onnx_export import ONNX_FP32, export_onnx
from exporters.optimize import optimize_onnx
from exporters.parity import compare_logits, prediction_agreement, require_parity
from exporters.quantize import quantize_dynamic
from exporters.runtime import OnnxRunner, Runner

EXPORT_RECORD = "export_record.json"


@dataclass(frozen=True)
class ExportRecord(JsonArtifact):
    """How an ``onnx/`` folder was made and verified; saved beside the graphs."""

    kind = "onnx-export"

    source: str
    files: dict[str, str]
    parity: list[dict[str, Any]]
    optimization: dict[str, Any]
    quantization: dict[str, Any]
    int8_agreement: float
    versions: dict[str, str]


def export_verified(
    model_dir: str | Path,
    onnx_dir: str | Path,
    reference: Runner,
    batches: Sequence[dict[str, np.ndarray]],
    *,
    atol: float = 1e-4,
    per_channel: bool = True,
    optimize: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> ExportRecord:
    """model.onnx (plain export), model_optimized.onnx and model_quantized.onnx in ``onnx_dir``.

    Raises VerificationError when an fp32 graph does not match ``reference`` within ``atol``; an optimised
    graph that fails is rebuilt once without attention fusion (the known per-layer head-count trap).
    """
    onnx_dir = Path(onnx_dir)
    log("exporting to ONNX")
    fp32_path = export_onnx(model_dir, onnx_dir)
    fp32 = OnnxRunner("onnx-fp32", fp32_path)
    parity = [require_parity(compare_logits(reference, fp32, batches, atol=atol)).to_dict()]

    files = {"fp32": fp32_path.name}
    optimization: dict[str, Any] = {"skipped": True}
    if optimize:
        files["fp32_optimized"], optimization = _optimize_with_parity(onnx_dir, reference, batches, atol, parity, log)

    log("quantising to int8")
    int8_path, quantization = quantize_dynamic(onnx_dir, per_channel=per_channel, source=ONNX_FP32)
    files["int8"] = int8_path.name
    agreement = prediction_agreement(fp32, OnnxRunner("onnx-int8", int8_path), batches)
    if not np.isfinite(agreement):
        raise VerificationError("int8 agreement could not be measured: no parity batches were given")
    record = ExportRecord(
        source=str(model_dir),
        files=files,
        parity=parity,
        optimization=optimization,
        quantization=quantization,
        int8_agreement=agreement,
        versions=library_versions(),
    )
    record.save(onnx_dir / EXPORT_RECORD)
    return record


def _optimize_with_parity(
    onnx_dir: Path,
    reference: Runner,
    batches: Sequence[dict[str, np.ndarray]],
    atol: float,
    parity: list[dict[str, Any]],
    log: Callable[[str], None],
) -> tuple[str, dict[str, Any]]:
    """model_optimized.onnx, checked; rebuilt without attention fusion if the fused graph breaks parity."""
    log("optimising the ONNX graph")
    optimized_path, optimization = optimize_onnx(onnx_dir)
    result = compare_logits(reference, OnnxRunner("onnx-fp32-optimized", optimized_path), batches, atol=atol)
    parity.append(result.to_dict())
    if not result.passed:
        optimization["rejected"] = f"attention fusion broke parity (max abs diff {result.max_abs_diff:.3g})"
        optimized_path, retry = optimize_onnx(onnx_dir, disable_attention_fusion=True)
        optimization.update({key: value for key, value in retry.items() if key != "rejected"})
        result = compare_logits(reference, OnnxRunner("onnx-fp32-optimized", optimized_path), batches, atol=atol)
        parity.append(result.to_dict())
        require_parity(result)
    return optimized_path.name, optimization
