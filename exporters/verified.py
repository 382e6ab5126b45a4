"""Export a model once, verified: the fp32 graph and its fused form, each checked against PyTorch; then the
int8 graph a recipe asks for, quantised from those checked graphs, with the settings it runs with.

``export_verified`` is the only place a model is exported in a run; tuning, shipping and measuring all
quantise from the ``VerifiedGraphs`` it returns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from attr_compress.compressor.artifacts import JsonArtifact, library_versions, write_json
from attr_compress.compressor.errors import VerificationError
from attr_compress.exporters.onnx_export import ONNX_INT8, export_onnx
from attr_compress.exporters.parity import compare_logits, prediction_agreement, require_parity
from attr_compress.exporters.recipes import FUSED_FP32, Recipe, fuse_graph, quantize_graph
from attr_compress.exporters.runtime import RUNTIME_FILE, OnnxRunner, Runner, batch1_latency, default_session_operators

logger = logging.getLogger(__name__)

EXPORT_RECORD = "export_record.json"


@dataclass(frozen=True)
class VerifiedGraphs:
    """An exported model's fp32 graphs that passed the parity gate.

    ``fused`` is None when no fused graph matched PyTorch (its recipes are then not offered); ``parity``
    lists every check, ``fusion`` what the fusion did or why it was rejected.
    """

    folder: Path
    fp32: Path
    fused: Path | None
    parity: list[dict[str, Any]]
    fusion: dict[str, Any]

    def drop_fused(self) -> None:
        """Delete the fused fp32 graph: only a step towards int8 graphs, never shipped."""
        if self.fused is not None:
            self.fused.unlink(missing_ok=True)

    def source(self, recipe: Recipe) -> Path:
        """The fp32 graph ``recipe`` quantises."""
        if recipe.graph == "plain":
            return self.fp32
        if self.fused is None:
            raise VerificationError(f"recipe '{recipe.name}' needs the fused graph, which failed parity")
        return self.fused


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
    default_session_operators: dict[str, int] | None = None  # what a plain InferenceSession runs


def export_verified(
    model: Any,
    tokenizer: Any,
    onnx_dir: str | Path,
    reference: Runner,
    batches: Sequence[dict[str, np.ndarray]],
    *,
    fuse: bool = True,
    atol: float = 1e-4,
) -> VerifiedGraphs:
    """model.onnx (Optimum's export) and, with ``fuse``, model_fused.onnx (onnxruntime's BERT fusions) in
    ``onnx_dir``, both checked against ``reference`` on ``batches`` within ``atol``.

    Raises VerificationError when the fp32 graph does not match. A fused graph that fails is rebuilt once
    without attention fusion (the per-layer head-count trap); if that fails too it is dropped.
    """
    onnx_dir = Path(onnx_dir)
    logger.info("exporting to ONNX")
    fp32_path = export_onnx(model, tokenizer, onnx_dir)
    parity = [require_parity(compare_logits(reference, OnnxRunner("onnx-fp32", fp32_path), batches, atol=atol))]
    fused, fusion = None, {"skipped": True}
    if fuse:
        logger.info("fusing the ONNX graph")
        fused, fusion = _fuse_with_parity(fp32_path, onnx_dir / FUSED_FP32, reference, batches, atol, parity)
    return VerifiedGraphs(onnx_dir, fp32_path, fused, [check.to_dict() for check in parity], fusion)


def _fuse_with_parity(
    source: Path, target: Path, reference: Runner, batches: Sequence[dict[str, np.ndarray]], atol: float, parity: list
) -> tuple[Path | None, dict[str, Any]]:
    """A fused fp32 graph that matches ``reference``: with attention fusion, else without, else none."""
    rejected = None
    for attention in (True, False):
        operators = fuse_graph(source, target, attention=attention)
        result = compare_logits(reference, OnnxRunner("onnx-fp32-fused", target), batches, atol=atol)
        parity.append(result)
        if result.passed:
            fusion = {"operators": operators, "attention_fusion": attention}
            return target, fusion if rejected is None else {**fusion, "rejected": rejected}
        rejected = f"attention fusion broke parity (max abs diff {result.max_abs_diff:.3g})"
    target.unlink()
    return None, {"operators": {}, "attention_fusion": False, "rejected": f"{rejected}; no fused graph"}


def quantize_all(graphs: VerifiedGraphs, recipes: Sequence[Recipe], folder: Path) -> list[Path]:
    """One int8 graph per recipe, in recipe order, each distinct quantisation done once, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[Recipe, Path] = {}
    for recipe in recipes:
        if recipe not in made:
            made[recipe] = folder / f"int8_{len(made)}.onnx"
            quantize_graph(graphs.source(recipe), made[recipe], recipe)
    return [made[recipe] for recipe in recipes]


def ship_int8(
    graphs: VerifiedGraphs,
    recipe: Recipe,
    batches: Sequence[dict[str, np.ndarray]],
    *,
    source: str = "",
    threads: int = 1,
    thread_singles: Sequence[dict[str, np.ndarray]] = (),
) -> ExportRecord:
    """model_quantized.onnx (int8 by ``recipe``) beside the verified graphs, runtime.json with the session
    settings it runs with (``threads``, or, given ``thread_singles``, the thread count from 1 to
    min(4, CPUs) that ran them fastest at batch 1) and export_record.json; ``batches`` measure how often int8
    and fp32 agree. The fused fp32 graph stays (other recipes may quantise it); shipped folders drop it."""
    logger.info(f"quantising to int8 ({recipe.name})")
    int8_path = graphs.folder / ONNX_INT8
    quantization = quantize_graph(graphs.source(recipe), int8_path, recipe)
    fp32 = OnnxRunner("onnx-fp32", graphs.fp32)
    int8 = OnnxRunner("onnx-int8", int8_path)
    agreement = prediction_agreement(fp32, int8, batches)
    del int8, fp32
    if not np.isfinite(agreement):
        raise VerificationError("int8 agreement could not be measured: no parity batches were given")
    thread_latency = None
    if thread_singles:
        logger.info("timing the int8 graph at each thread count")
        thread_latency = _thread_latency(int8_path, recipe, thread_singles)
        threads = int(min(thread_latency, key=lambda count: thread_latency[count]))
    settings = {
        "file": ONNX_INT8,
        "intra_op_num_threads": threads,
        "recipe": recipe.to_dict(),
    }
    write_json(settings, graphs.folder / RUNTIME_FILE)
    record = ExportRecord(
        source=source,
        files={"fp32": graphs.fp32.name, "int8": int8_path.name, "runtime": RUNTIME_FILE},
        parity=graphs.parity,
        recipe=recipe.to_dict(),
        fusion=graphs.fusion,
        quantization=quantization,
        int8_agreement=agreement,
        versions=library_versions(),
        thread_latency_ms=thread_latency,
        default_session_operators=default_session_operators(int8_path),
    )
    record.save(graphs.folder / EXPORT_RECORD)
    return record


def _thread_latency(graph: Path, recipe: Recipe, singles: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """Batch-1 p50 of one graph at 1 .. min(4, CPUs) onnxruntime threads, measured side by side."""
    counts = range(1, min(4, os.cpu_count() or 1) + 1)
    runners = [OnnxRunner(f"{count}", graph, threads=count) for count in counts]
    return {name: row["latency_p50_ms"] for name, row in batch1_latency(runners, singles).items()}
