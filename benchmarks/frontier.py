"""Accuracy at speed: for each speed-up target, the structure the target search chooses, recovered by least
squares and then by distillation, as int8 graphs timed in a default onnxruntime session.

Runs the pipeline's own stages (``attr_compress.pipeline``): load and hold apart the selection rows, score heads
and neurons once, export the original once; then per target: search (candidates judged after LSQ on the
selection rows), prune, LSQ, export int8 (the search's recipe), distil a copy of the LSQ model, export it, and
time both graphs round-robin beside the original's Optimum int8 graph and the original in PyTorch fp32 (batch 1,
1 thread). Accuracy is measured on the evaluation rows that chose nothing.

Usage: python benchmarks/frontier.py [--targets 1.5 2 2.5 3] [--distill-minutes 5] [--out frontier.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from attr_compress.pipeline import (
    PipelineOptions,
    Run,
    StageTimer,
    choose_sizes,
    export_original,
    prepare_inputs,
    score,
)
from compressor.distill import DistillOptions, distill
from compressor.modeling import load_model
from compressor.pruning import plan_pruning, prune
from compressor.recovery import RecoveryOptions, recover
from compressor.task_data import DataOptions
from evaluation.measure import accuracy
from exporters.onnx_export import ONNX_INT8
from exporters.recipes import Recipe
from exporters.runtime import OnnxRunner, TorchRunner, batch1_latency, torch_threads
from exporters.verified import export_verified, ship_int8

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shipped_graph(job: Run, model: Any, recipe: Recipe, folder: Path) -> Path:
    graphs = export_verified(model, job.loaded.tokenizer, folder, TorchRunner("pruned", model), job.inputs.parity)
    ship_int8(graphs, recipe, job.inputs.parity)
    return folder / ONNX_INT8


def one_target(job: Run, scores: Any, original: Any, speedup: float, minutes: float, scratch: Path) -> dict:
    """Search, LSQ, distil, export and measure at one speed-up target."""
    started = time.perf_counter()
    sized = replace(job, options=replace(job.options, target_speedup=speedup))
    sizes = choose_sizes(sized, scores, original)
    searched = time.perf_counter() - started
    heads, neurons = scores.heads, scores.neurons
    plan = plan_pruning(heads.scores, sizes.keep, heads.order, ffn_scores=neurons.scores, keep_ffn=sizes.keep_ffn)
    lsq = prune(job.loaded.model, plan)
    recover(job.loaded.model, lsq, job.inputs.fit_batches, RecoveryOptions("lsq"))
    distilled, started = copy.deepcopy(lsq), time.perf_counter()
    text = job.inputs.training
    record = distill(
        job.loaded.model, distilled, text.loaded, text.path, DistillOptions(minutes=minutes), progress=True
    )
    distill_seconds = time.perf_counter() - started
    recipe = Recipe.from_dict(sizes.search.recipe)
    graphs = {
        name: shipped_graph(job, model, recipe, scratch / f"{speedup:g}-{name}")
        for name, model in (("lsq", lsq), ("distill", distilled))
    }
    runners = [OnnxRunner(name, path) for name, path in graphs.items()]
    return {
        "target": speedup,
        "keep": sizes.keep,
        "keep_ffn": sizes.keep_ffn,
        "recipe": recipe.name,
        "search_seconds": round(searched, 1),
        "distill_seconds": round(distill_seconds, 1),
        "distill_steps": record.steps,
        "runners": runners,
        "accuracy": {runner.name: accuracy(runner, job.inputs.evaluation) for runner in runners},
    }


def time_all(job: Run, original: Any, rows: list[dict]) -> dict[str, float]:
    """Batch-1 p50 of every graph and of the originals, round-robin, 1 thread."""
    runners = [
        OnnxRunner("original int8 (Optimum)", original.baseline_int8),
        TorchRunner("original PyTorch fp32", load_model(job.options.model, attn_implementation="sdpa").model),
        *[OnnxRunner(f"{row['target']:g}x {r.name}", r.path) for row in rows for r in row["runners"]],
    ]
    with torch_threads(1):
        latency = batch1_latency(runners, job.inputs.evaluation.singles)
    return {name: value["latency_p50_ms"] for name, value in latency.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data" / "glue" / "SST-2" / "dev.tsv"))
    parser.add_argument("--calib", default=str(SHARED / "data" / "glue" / "SST-2" / "train.tsv"))
    parser.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--distill-minutes", type=float, default=5.0)
    parser.add_argument("--out", default="frontier.json")
    args = parser.parse_args()
    options = PipelineOptions(model=args.model, keep=1.0, data=DataOptions(args.data, args.calib), progress=False)
    with tempfile.TemporaryDirectory(prefix="frontier-") as scratch:
        loaded = load_model(args.model)
        job = Run(options, loaded, prepare_inputs(loaded, options), Path(scratch), StageTimer(print), print)
        job = replace(job, options=replace(options, keep=None, target_speedup=1.0))
        scores, original = score(job), export_original(job)
        original_fp32 = accuracy(TorchRunner("original", loaded.model), job.inputs.evaluation)
        rows = [
            one_target(job, scores, original, target, args.distill_minutes, Path(scratch)) for target in args.targets
        ]
        p50 = time_all(job, original, rows)
    print_table(rows, p50, original_fp32, len(job.inputs.evaluation.labels))
    for row in rows:
        del row["runners"]
    Path(args.out).write_text(json.dumps({"rows": rows, "p50_ms": p50, "original_fp32": original_fp32}, indent=2))


def print_table(rows: list[dict], p50: dict[str, float], original_fp32: float, count: int) -> None:
    baseline, torch_fp32 = p50["original int8 (Optimum)"], p50["original PyTorch fp32"]
    print(
        f"\noriginal PyTorch fp32 accuracy {original_fp32:.4f} on {count} evaluation rows; "
        f"original Optimum int8 {baseline:.3f} ms, PyTorch fp32 {torch_fp32:.3f} ms (batch 1, 1 thread)\n"
    )
    print(
        "| target | keep / keep-ffn | recovery | int8 accuracy | drop (points) | p50 ms | vs Optimum int8 "
        "| vs PyTorch fp32 | search s | distill s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for name in ("lsq", "distill"):
            ms = p50[f"{row['target']:g}x {name}"]
            acc = row["accuracy"][name]
            print(
                f"| {row['target']:g}x | {row['keep']:g} / {row['keep_ffn']:g} | {name} | {acc:.4f} | "
                f"{(original_fp32 - acc) * 100:.2f} | {ms:.3f} | {baseline / ms:.2f}x | {torch_fp32 / ms:.2f}x | "
                f"{row['search_seconds']:.0f} | {row['distill_seconds'] if name == 'distill' else 0:.0f} |"
            )


if __name__ == "__main__":
    main()
