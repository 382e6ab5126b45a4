"""The same command, run again and again: does it choose the same structure, ship the same weights, keep the
accuracy, and say honestly how sure it is?

Each run is the command line as users run it (``attr-compress MODEL --target-speedup X`` with default options),
cold: a fresh cache folder every time. ``--data`` is the half of a dev set the tool sees (it holds apart its
own selection rows and measures on the rest); the other half, ``--unseen``, is never given to it. After each
run: the chosen structure and a hash of the shipped weights; the drop the report states on the rows that chose
nothing, with its interval; the drop of the shipped int8 graph on the unseen half (paired against the original
in PyTorch fp32), and whether the stated interval contains it; the speed-up over the original's Optimum int8
graph loaded as users load it (``InferenceSession(path)`` and ``ORTModelForSequenceClassification``) and over
PyTorch fp32 (the run's own side-by-side measurement); the wall time.

    python benchmarks/repeat_runs.py MODEL --data dev-a.tsv --unseen dev-b.tsv --calib train.tsv \\
        [--runs 3] [--target 2.5] [--out runs.json] [-- extra attr-compress options]
    python benchmarks/repeat_runs.py --split dev.tsv --into /tmp/halves   # writes dev-a.tsv and dev-b.tsv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from attr_compress.compressor.data.encoded import encode_data
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.models.loading import encode, load_model
from attr_compress.evaluation.fidelity import paired_drop
from attr_compress.evaluation.measure import predict
from attr_compress.exporters.onnx_export import ONNX_FP32, ONNX_INT8, export_onnx
from attr_compress.exporters.quantize import quantize_dynamic
from attr_compress.exporters.runtime import OnnxRunner, TorchRunner

from benchmarks.default_session import optimum_model, p50_round_robin, plain_session


def split(path: Path, into: Path, seed: int = 0) -> None:
    """The data rows of a TSV in two seeded halves, each with the header (GLUE files keep their layout)."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header, rows = lines[0], lines[1:]
    order = np.random.default_rng(seed).permutation(len(rows))
    half = len(rows) // 2
    into.mkdir(parents=True, exist_ok=True)
    for name, part in (("a", order[:half]), ("b", order[half:])):
        target = into / f"{path.stem}-{name}{path.suffix}"
        target.write_text("\n".join([header, *(rows[i] for i in sorted(part))]) + "\n", encoding="utf-8")
        print(f"wrote {target} ({len(part)} rows)")


def users_speedups(model: str, shipped: Path, rows: list, examples: int = 200) -> dict[str, float]:
    """The shipped int8 graph against the original's Optimum int8 graph, both as users load them, batch 1."""
    loaded = load_model(model)
    inputs = [
        {key: value.astype(np.int64) for key, value in encode(loaded, [row], return_tensors="np").items()}
        for row in rows[:examples]
    ]
    with tempfile.TemporaryDirectory(prefix="baseline-") as scratch:
        baseline = Path(scratch)
        export_onnx(loaded.model, loaded.tokenizer, baseline)
        quantize_dynamic(baseline)  # Optimum's recipe: model_quantized.onnx
        runs = {
            "baseline session": plain_session(baseline / ONNX_INT8),
            "shipped session": plain_session(shipped / ONNX_INT8),
            "baseline ORTModel": optimum_model(baseline, ONNX_INT8),
            "shipped ORTModel": optimum_model(shipped, ONNX_INT8),
        }
        p50 = p50_round_robin(runs, inputs)
    return {
        "InferenceSession(path)": p50["baseline session"] / p50["shipped session"],
        "ORTModelForSequenceClassification": p50["baseline ORTModel"] / p50["shipped ORTModel"],
    }


def unseen_drop(model: str, shipped: Path, unseen: str) -> dict[str, float]:
    """The shipped int8 graph and the pruned fp32 graph against the original (PyTorch fp32) on the unseen rows:
    the paired drop with its interval, the fp32 part of it, and how often the shipped class differs."""
    loaded = load_model(model)
    data = encode_data(loaded, load_labelled_data(unseen, loaded.label2id), singles=0)
    original = predict(TorchRunner("original", loaded.model), data)
    ours = predict(OnnxRunner("shipped", shipped / ONNX_INT8, threads=0), data)
    fp32 = predict(OnnxRunner("fp32", shipped / ONNX_FP32, threads=0), data)
    drop = paired_drop(original, ours, data.labels)
    interval = drop.interval()
    return {
        "drop_points": drop.drop_points,
        "rows": drop.rows,
        "low": interval.low,
        "high": interval.high,
        "fp32_drop_points": paired_drop(original, fp32, data.labels).drop_points,
        "disagreement": drop.disagreement,
    }


def measured_run(args: argparse.Namespace, target: float, extra: list[str], cache: Path | None = None) -> dict:
    """One command-line run (cold unless ``cache`` is given), measured as the module docstring says."""
    with tempfile.TemporaryDirectory(prefix="repeat-") as scratch:
        out = Path(scratch) / "slim"
        environment = {**os.environ, "XDG_CACHE_HOME": str(cache or Path(scratch) / "cache")}
        command = [
            sys.executable, "-m", "attr_compress.cli", args.model, "--target-speedup", str(target),
            "--data", args.data, "--calib", args.calib, "--out", str(out), "--quiet", *extra,
        ]  # fmt: skip
        started = time.perf_counter()
        finished = subprocess.run(command, env=environment, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if finished.returncode != 0:
            return {
                "target": target,
                "exit": finished.returncode,
                "error": finished.stderr.strip()[-500:],
                "wall_s": wall,
            }
        if getattr(args, "keep", None):
            kept = Path(args.keep) / f"{target:g}x-{time.strftime('%H%M%S')}"
            kept.mkdir(parents=True, exist_ok=True)
            for name in ("report.json", "report.md", "target_search.json", "graph_tuning.json", "recovery.json"):
                if (out / name).is_file():
                    shutil.copy(out / name, kept / name)
        report = json.loads((out / "report.json").read_text())
        search = json.loads((out / "target_search.json").read_text())
        weights = hashlib.sha256((out / "pruned" / "model.safetensors").read_bytes()).hexdigest()[:16]
        unseen = unseen_drop(args.model, out / "onnx", args.unseen)
        rows = load_labelled_data(args.unseen, load_model(args.model).label2id).examples
        stated = report["drop_interval"]
        return {
            "target": target,
            "options": extra,
            "exit": 0,
            "wall_s": wall,
            "structure": search["chosen"],
            "weights_sha256": weights,
            "recipe": report["export"]["pruned"]["recipe"]["name"],
            "stated_drop_points": report["drop_points"],
            "stated_interval": [stated["low"], stated["high"]],
            "measured_rows": report["data"]["evaluation_rows"],
            "selection_check": report["selection_check"]["drop"],
            "disagreement": report["disagreement"],
            "disagreement_on_measured_rows": report["disagreement_on_measured_rows"],
            "disagreement_on_selection_rows": report["disagreement_on_selection_rows"],
            "drop_split": report["drop_split"],
            "speedup_spread": report["speedup_spread"],
            "judge_lengths": report["data"]["lengths"],
            "unseen": unseen,
            "unseen_inside_stated_interval": stated["low"] <= unseen["drop_points"] <= stated["high"],
            "speedup_vs_optimum_int8_in_run": report["ratios"]["speedup_p50_pruned_int8_vs_original_int8"],
            "speedup_vs_pytorch_fp32_in_run": report["ratios"]["speedup_p50_pruned_int8_vs_original_pytorch_fp32"],
            "speedup_as_users_load_it": users_speedups(args.model, out / "onnx", rows),
            "timings": {t["stage"]: t["seconds"] for t in report["timings"]},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--data")
    parser.add_argument("--unseen")
    parser.add_argument("--calib")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", type=float, default=2.5)
    parser.add_argument("--out", default="runs.json")
    parser.add_argument("--keep", help="copy each run's report and search records into this folder")
    parser.add_argument("--split", type=Path, help="write the two halves of this TSV (with --into) and stop")
    parser.add_argument("--into", type=Path)
    args, extra = parser.parse_known_args()
    if args.split:
        split(args.split, args.into)
        return
    results = []
    for index in range(1, args.runs + 1):
        result = {"run": index, **measured_run(args, args.target, [item for item in extra if item != "--"])}
        print(json.dumps(result), flush=True)
        results.append(result)
        Path(args.out).write_text(json.dumps({"model": args.model, "runs": results}, indent=2) + "\n")
    shipped = [result for result in results if result["exit"] == 0]
    print(
        f"{len(shipped)} of {len(results)} runs shipped; structures alike: "
        f"{len({json.dumps(r['structure'], sort_keys=True) for r in shipped}) <= 1}; weights alike: "
        f"{len({r['weights_sha256'] for r in shipped}) <= 1}; unseen drops inside the stated interval: "
        f"{sum(r['unseen_inside_stated_interval'] for r in shipped)} of {len(shipped)}"
    )


if __name__ == "__main__":
    main()
