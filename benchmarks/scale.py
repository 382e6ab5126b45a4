"""Cost you can predict: wall time and peak memory of each heavy stage, by model shape, and how each grows.

Models: the demo model (MiniLM-L6-H384, trained weights) and classifiers of BERT-base shape (12 layers x 768,
12 heads, FFN 3072) and BERT-large shape (24 x 1024, 16 heads, FFN 4096) with *random* weights and the demo's
tokenizer: random weights cost the same time and memory as trained ones; their accuracy means nothing.

Each measurement runs in a fresh child process (so the peak resident memory, ru_maxrss, is that stage's own,
model included) on synthetic sentences of exactly --tokens tokens:

  shapes  every stage on the demo model and the BERT-base and BERT-large shapes (--large: fewer on BERT-large);
  growth  every stage on a small BERT (4 layers x 256, 32 tokens, 32 examples) while one of layers, width,
          tokens and examples doubles twice: the fitted exponent b of time ~ factor^b, per stage and variable.

    python benchmarks/scale.py [--out scale.json] [--threads 2] [--large head-scoring,refit] [--skip-growth]

Stages: head scoring and FFN neuron scoring (the default quadrature, every example), the least-squares refit
(half the heads and FFN neurons pruned), distillation (seconds per 1,000 examples, batches of 32), ONNX export,
int8 quantisation, and measurement (batch-1 latency of the int8 graph, per example). The latency-target search
is a loop of these stages (refits, exports, quantisations, timings) and is not timed on its own here.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEMO = SHARED / "models/minilm-l6-sst2"
SHAPES = {  # layers, width, heads, FFN width
    "bert-base": (12, 768, 12, 3072),
    "bert-large": (24, 1024, 16, 4096),
    "small": (4, 256, 4, 1024),
}
STAGES = ("head-scoring", "neuron-scoring", "refit", "distillation", "export", "quantise", "measure")
WORDS = ["the", "film", "was", "good", "and", "the", "actors", "were", "fine", "but", "the", "story", "felt", "long"]
BASE = {"layers": 4, "width": 256, "tokens": 32, "examples": 32}


def model_folder(shape: str, folder: Path, layers: int | None = None, width: int | None = None) -> Path:
    """The demo model's folder, or a random classifier of ``shape`` (layers/width overridden) with its tokenizer."""
    if shape == "demo":
        return DEMO
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    depth, hidden, heads, ffn = SHAPES[shape]
    depth, scale = layers or depth, (width or hidden) / hidden
    hidden, ffn = int(hidden * scale), int(ffn * scale)
    config = BertConfig(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=max(1, hidden // 64), intermediate_size=ffn,
        num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}, attn_implementation="eager",
    )  # fmt: skip
    target = folder / f"{shape}-{depth}x{hidden}"
    if not target.exists():
        BertForSequenceClassification(config).save_pretrained(target)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy(DEMO / name, target / name)
    return target


def sentences(path: Path, examples: int, tokens: int) -> Path:
    """A labelled TSV of ``examples`` sentences of exactly ``tokens`` tokens ([CLS] and [SEP] included)."""
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, size=tokens - 2)) + f"\t{index % 2}" for index in range(examples)]
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return path


def run_stage(stage: str, model: str, data: str, scratch: str) -> float:
    """Seconds ``stage`` takes on the model and data (setup not timed); per example for distil and measure."""
    from attr_compress.compressor.data.files import load_labelled_data
    from attr_compress.compressor.models.loading import load_model
    from attr_compress.compressor.pruning.prune import plan_pruning, prune
    from attr_compress.compressor.recovery.lsq import encode_for_fit, recover_lsq
    from attr_compress.compressor.scoring.options import ScoringOptions, score_heads, score_neurons

    loaded = load_model(model)
    calibration = load_labelled_data(data, loaded.label2id)
    config = loaded.config
    shape = (config.num_hidden_layers, config.num_attention_heads)
    ffn = (config.num_hidden_layers, config.intermediate_size)
    rng = np.random.default_rng(0)
    plan = plan_pruning(rng.random(shape).tolist(), 0.5, ffn_scores=rng.random(ffn).tolist(), keep_ffn=0.5)
    pruned = prune(copy.deepcopy(loaded.model), plan)
    started = time.perf_counter()
    if stage in ("head-scoring", "neuron-scoring"):
        scorer = score_heads if stage == "head-scoring" else score_neurons
        scorer(loaded, calibration, ScoringOptions(examples=len(calibration), settle=0.0))
    elif stage == "refit":
        batches = encode_for_fit(loaded, calibration.examples)
        started = time.perf_counter()
        recover_lsq(loaded.model, pruned, batches)
    elif stage == "distillation":
        return distillation_seconds(loaded, pruned, data, len(calibration))
    else:
        return onnx_seconds(stage, loaded, pruned, calibration, Path(scratch))
    return time.perf_counter() - started


def distillation_seconds(loaded, pruned, data: str, rows: int) -> float:
    """Seconds per 1,000 training examples (8 steps of 32 after the timing probe)."""
    from attr_compress.compressor.recovery.distill import DistillOptions, TrainingText, distill

    record = distill(loaded.model, pruned, TrainingText(loaded, data, rows), DistillOptions(steps=8))
    return record.seconds / record.examples * 1000


def onnx_seconds(stage: str, loaded, pruned, calibration, scratch: Path) -> float:
    """Export, quantise, or batch-1 latency per example of the pruned model's int8 graph."""
    from attr_compress.compressor.models.loading import encode
    from attr_compress.exporters.onnx_export import export_onnx
    from attr_compress.exporters.quantize import quantize_dynamic
    from attr_compress.exporters.runtime import OnnxRunner, batch1_latency

    started = time.perf_counter()
    export_onnx(pruned, loaded.tokenizer, scratch)
    if stage == "export":
        return time.perf_counter() - started
    started = time.perf_counter()
    path, _ = quantize_dynamic(scratch)
    if stage == "quantise":
        return time.perf_counter() - started
    singles = [{k: v.numpy() for k, v in encode(loaded, [e]).items()} for e in calibration.examples]
    timing = batch1_latency([OnnxRunner("int8", path)], singles)["int8"]
    return timing["latency_p50_ms"] / 1000


def measure(stage: str, model: Path, data: Path, threads: int) -> dict[str, float]:
    """One stage in a fresh process: its seconds and the process's peak resident memory."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable,
            __file__,
            "--child",
            stage,
            str(model),
            str(data),
            scratch,
            "--threads",
            str(threads),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if result.returncode != 0:
        raise SystemExit(f"{stage} on {model} failed: {result.stderr[-1500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


PER_EXAMPLE = ("distillation", "measure")  # timed per example: the calibration set's size does not enter


def growth(folder: Path, threads: int) -> dict[str, dict[str, float | None]]:
    """Per stage and variable, the exponent b of seconds ~ factor^b over factors 1, 2, 4 from BASE (None: the
    stage's cost is per example, so the number of calibration examples does not enter)."""
    exponents: dict[str, dict[str, float | None]] = {stage: {} for stage in STAGES}
    for variable in BASE:
        stages = [stage for stage in STAGES if not (variable == "examples" and stage in PER_EXAMPLE)]
        seconds: dict[str, list[float]] = {stage: [] for stage in stages}
        for factor in (1, 2, 4):
            point = {**BASE, variable: BASE[variable] * factor}
            model = model_folder("small", folder, point["layers"], point["width"])
            data = sentences(folder / f"{point['examples']}x{point['tokens']}.tsv", point["examples"], point["tokens"])
            for stage in stages:
                seconds[stage].append(measure(stage, model, data, threads)["seconds"])
                print(f"growth {variable} x{factor} {stage}: {seconds[stage][-1]:.4f} s", flush=True)
        for stage in STAGES:
            fitted = stage in seconds and np.polyfit(np.log([1, 2, 4]), np.log(seconds[stage]), 1)[0]
            exponents[stage][variable] = round(float(fitted), 2) if stage in seconds else None
    return exponents


UNITS = {"distillation": "s / 1,000 ex", "measure": "ms / ex"}


def markdown(results: dict) -> str:
    """The shapes table (seconds and peak GiB per stage) and the growth exponents, as markdown."""
    shapes = results["shapes"]
    lines = [
        "| stage | " + " | ".join(f"{shape}: time | peak" for shape in shapes) + " |",
        "|---|" + "---|---|" * len(shapes),
    ]
    for stage in STAGES:
        cells = []
        for shape in shapes:
            found = shapes[shape].get(stage)
            scale = 1000 if stage == "measure" else 1
            unit = UNITS.get(stage, "s")
            cells += (
                ["not run", ""]
                if found is None
                else [f"{found['seconds'] * scale:.3g} {unit}", f"{found['peak_gib']:.2f} GiB"]
            )
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    if "growth" in results:
        lines += ["", "| stage | " + " | ".join(BASE) + " |", "|---|" + "---|" * len(BASE)]
        for stage, exponents in results["growth"].items():
            values = ["-" if exponents[name] is None else f"{exponents[name]:.2f}" for name in BASE]
            lines.append(f"| {stage} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=4, metavar=("STAGE", "MODEL", "DATA", "SCRATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--examples", type=int, default=32, help="examples per measurement on the named shapes")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per example on the named shapes")
    parser.add_argument("--large", default=",".join(STAGES), help="comma-separated stages to run on BERT-large")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--out", default="scale.json")
    parser.add_argument("--render", metavar="JSON", help="print the tables of an earlier run's JSON and stop")
    args = parser.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        seconds = run_stage(*args.child)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps({"seconds": seconds, "peak_gib": round(peak, 3)}))
        return
    results: dict[str, object] = {"threads": args.threads, "examples": args.examples, "tokens": args.tokens}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        data = sentences(folder / "shapes.tsv", args.examples, args.tokens)
        shapes: dict[str, dict[str, dict[str, float]]] = {}
        large = [stage for stage in args.large.split(",") if stage]
        for shape, stages in (("demo", STAGES), ("bert-base", STAGES), ("bert-large", large)):
            for stage in stages:
                shapes.setdefault(shape, {})[stage] = measure(stage, model_folder(shape, folder), data, args.threads)
                print(f"{shape} {stage}: {shapes[shape][stage]}", flush=True)
        results["shapes"] = shapes
        if not args.skip_growth:
            results["growth"] = growth(folder, args.threads)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
