"""Export, fuse and quantise a model following a recipe, checking every fp32 graph against PyTorch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.artifacts import JsonArtifact, library_versions, write_json
from compressor.errors import VerificationError
from evaluation.measure import batch1_latency
from exporters.onnx_export import ONNX_INT8, export_onnx
from exporters.parity import compare_logits, prediction_agreement, require_parity
from exporters.recipes import FUSED_FP32, OPTIMUM_BASELINE, Recipe, fuse_graph, quantize_graph
from exporters.runtime import RUNTIME_FILE, OnnxRunner, Runner

EXPORT_RECORD = "export_record.json"


@dataclass(frozen=True)
class ExportRecord(JsonArtifact):
    """How an ``onnx/`` folder was made and verified; saved beside the graphs."""

    kind = "onnx-export"
    schema = 2

    source: str
    files: dict[str, str]
    parity: list[dict[str, Any]]
    recipe: dict[str, Any]
    fusion: dict[str, Any]
    quantization: dict[str, Any]
    int8_agreement: float
    versions: dict[str, str]
    thread_latency_ms: dict[str, float] | None = None


def export_verified(
    model: Any,
    tokenizer: Any,
    onnx_dir: str | Path,
    reference: Runner,
    batches: Sequence[dict[str, np.ndarray]],
    *,
    recipe: Recipe = OPTIMUM_BASELINE,
    threads: int = 1,
    atol: float = 1e-4,
    source: str = "",
    thread_singles: Sequence[dict[str, np.ndarray]] = (),
    log: Callable[[str], None] = lambda message: None,
) -> ExportRecord:
    """model.onnx (plain export, fp32) and model_quantized.onnx (int8 by ``recipe``) in ``onnx_dir``, plus
    runtime.json with the session settings the int8 graph is meant to run with: ``threads``, or, given
    ``thread_singles``, the thread count (1 to min(4, CPUs)) that ran them fastest at batch 1.

    Raises VerificationError when an fp32 graph does not match ``reference`` within ``atol``; a fused graph
    that fails is rebuilt once without attention fusion (the known per-layer head-count trap).
    """
    onnx_dir = Path(onnx_dir)
    log("exporting to ONNX")
    fp32_path = export_onnx(model, tokenizer, onnx_dir)
    fp32 = OnnxRunner("onnx-fp32", fp32_path)
    parity = [require_parity(compare_logits(reference, fp32, batches, atol=atol)).to_dict()]
    quantize_source = fp32_path
    fusion: dict[str, Any] = {"skipped": True}
    if recipe.graph == "fused":
        log("fusing the ONNX graph")
        quantize_source = onnx_dir / FUSED_FP32
        fusion = _fuse_with_parity(fp32_path, quantize_source, reference, batches, atol, parity)
    log(f"quantising to int8 ({recipe.name})")
    int8_path = onnx_dir / ONNX_INT8
    quantization = quantize_graph(quantize_source, int8_path, recipe)
    int8 = OnnxRunner("onnx-int8", int8_path, disabled_optimizers=recipe.disabled_optimizers)
    agreement = prediction_agreement(fp32, int8, batches)
    del int8
    if not np.isfinite(agreement):
        raise VerificationError("int8 agreement could not be measured: no parity batches were given")
    if quantize_source != fp32_path:
        quantize_source.unlink()
    thread_latency = None
    if thread_singles:
        log("timing the int8 graph at each thread count")
        thread_latency = _thread_latency(int8_path, recipe, thread_singles)
        threads = int(min(thread_latency, key=lambda count: thread_latency[count]))
    write_json(
        {
            "file": ONNX_INT8,
            "intra_op_num_threads": threads,
            "disabled_optimizers": list(recipe.disabled_optimizers),
            "recipe": recipe.to_dict(),
        },
        onnx_dir / RUNTIME_FILE,
    )
    record = ExportRecord(
        source=source,
        files={"fp32": fp32_path.name, "int8": int8_path.name, "runtime": RUNTIME_FILE},
        parity=parity,
        recipe=recipe.to_dict(),
        fusion=fusion,
        quantization=quantization,
        int8_agreement=agreement,
        versions=library_versions(),
        thread_latency_ms=thread_latency,
    )
    record.save(onnx_dir / EXPORT_RECORD)
    return record


def _fuse_with_parity(
    source: Path,
    target: Path,
    reference: Runner,
    batches: Sequence[dict[str, np.ndarray]],
    atol: float,
    parity: list[dict[str, Any]],
) -> dict[str, Any]:
    """A fused fp32 graph that matches ``reference``; rebuilt without attention fusion if it does not."""
    fusion: dict[str, Any] = {"operators": fuse_graph(source, target), "attention_fusion": True}
    result = compare_logits(reference, OnnxRunner("onnx-fp32-fused", target), batches, atol=atol)
    parity.append(result.to_dict())
    if not result.passed:
        fusion = {
            "operators": fuse_graph(source, target, attention=False),
            "attention_fusion": False,
            "rejected": f"attention fusion broke parity (max abs diff {result.max_abs_diff:.3g})",
        }
        result = compare_logits(reference, OnnxRunner("onnx-fp32-fused", target), batches, atol=atol)
        parity.append(result.to_dict())
        require_parity(result)
    return fusion


def _thread_latency(graph: Path, recipe: Recipe, singles: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """Batch-1 p50 of one graph at 1 .. min(4, CPUs) onnxruntime threads, measured side by side."""
    counts = range(1, min(4, os.cpu_count() or 1) + 1)
    runners = [
        OnnxRunner(f"{count}", graph, threads=count, disabled_optimizers=recipe.disabled_optimizers) for count in counts
    ]
    return {name: row["latency_p50_ms"] for name, row in batch1_latency(runners, singles).items()}
