"""The shipped int8 graph against the original's Optimum int8 graph, both loaded the way users load them: a
plain ``onnxruntime.InferenceSession(path)`` (no options at all: default threads, every optimisation) and
Optimum's ``ORTModelForSequenceClassification``. Batch 1, each way timed on its own over SST-2 dev sentences
(three rounds), one process.

Usage: python benchmarks/default_session.py SHIPPED_ONNX_DIR [--examples 200] [--threads 1]
(--threads sets intra_op_num_threads for the plain sessions' second pass; 0 = only the default.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.models.loading import load_model
from attr_compress.exporters.onnx_export import ONNX_INT8, export_onnx
from attr_compress.exporters.quantize import quantize_dynamic
from attr_compress.exporters.runtime import default_session_operators

SHARED = Path(__file__).resolve().parents[2] / "shared"


def p50_round_robin(runs: dict[str, Callable[[dict], object]], inputs: list, warmup: int = 10) -> dict[str, float]:
    """Median batch-1 latency per way of running, each on its own over every input (as a deployed session
    runs), three rounds with the order reversed in the second, the median of the rounds' medians."""
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(3):
        for name, run in runs.items() if index % 2 == 0 else reversed(list(runs.items())):
            times = []
            for position, example in enumerate(inputs):
                started = time.perf_counter()
                run(example)
                if position >= warmup:
                    times.append((time.perf_counter() - started) * 1000)
            rounds[name].append(float(np.median(times)))
    return {name: float(np.median(values)) for name, values in rounds.items()}


def plain_session(path: Path, threads: int | None = None):
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options if threads else None, providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    return lambda example: session.run(None, {name: example[name] for name in names})


def optimum_model(folder: Path, file_name: str):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    model = ORTModelForSequenceClassification.from_pretrained(folder, file_name=file_name)
    return lambda example: model(**{key: torch.from_numpy(value) for key, value in example.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shipped", type=Path, help="the run's onnx/ folder")
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data" / "glue" / "SST-2" / "dev.tsv"))
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    loaded = load_model(args.model)
    rows = load_labelled_data(args.data, loaded.label2id).examples[: args.examples]
    inputs = [dict(loaded.tokenizer([row.text], return_tensors="np")) for row in rows]
    inputs = [{key: value.astype(np.int64) for key, value in example.items()} for example in inputs]
    with tempfile.TemporaryDirectory(prefix="baseline-") as scratch:
        baseline_dir = Path(scratch)
        export_onnx(loaded.model, loaded.tokenizer, baseline_dir)
        quantize_dynamic(baseline_dir)  # Optimum's recipe: model_quantized.onnx
        for label, path in (
            ("original, Optimum int8", baseline_dir / ONNX_INT8),
            ("shipped", args.shipped / ONNX_INT8),
        ):
            operators = default_session_operators(path)
            print(
                f"{label}: a default session runs {operators.get('SkipLayerNormalization', 0)} "
                f"SkipLayerNormalization, {operators.get('LayerNormalization', 0)} LayerNormalization"
            )
        runs = {
            "baseline InferenceSession(path)": plain_session(baseline_dir / ONNX_INT8),
            "shipped InferenceSession(path)": plain_session(args.shipped / ONNX_INT8),
            "baseline ORTModel": optimum_model(baseline_dir, ONNX_INT8),
            "shipped ORTModel": optimum_model(args.shipped, ONNX_INT8),
        }
        if args.threads:
            runs[f"baseline session, {args.threads} thread(s)"] = plain_session(baseline_dir / ONNX_INT8, args.threads)
            runs[f"shipped session, {args.threads} thread(s)"] = plain_session(args.shipped / ONNX_INT8, args.threads)
        p50 = p50_round_robin(runs, inputs)
    print("| loaded as | baseline p50 ms | shipped p50 ms | speed-up |\n|---|---|---|---|")
    for way in ("InferenceSession(path)", "ORTModel", f"session, {args.threads} thread(s)"):
        base, ours = p50.get(f"baseline {way}"), p50.get(f"shipped {way}")
        if base and ours:
            print(f"| {way} | {base:.3f} | {ours:.3f} | {base / ours:.2f}x |")


if __name__ == "__main__":
    main()
