"""Where an onnxruntime graph spends its time: onnxruntime's profiler at batch 1 and 1 thread, summed per operator
type (``benchmarks/latency.py`` prints it for the final int8 graph)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def profiled_events(path: Path, singles: Sequence[dict[str, np.ndarray]], folder: Path) -> list[dict[str, Any]]:
    """onnxruntime's profiler events for every example of ``singles`` at batch 1 and 1 thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    for inputs in singles:
        session.run(None, {name: inputs[name].astype(np.int64) for name in names})
    return json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))


def profile_operators(
    path: Path, singles: Sequence[dict[str, np.ndarray]], folder: Path, warmup: int
) -> dict[str, Any]:
    """Time per run by operator type, and its share of model_run; the first ``warmup`` runs are left out."""
    events = profiled_events(path, singles, folder)
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=_ts)
    runs = runs[min(warmup, len(runs) // 2) :]
    start = _ts(runs[0])
    run_us = sum(float(e["dur"]) for e in runs)
    per_op: dict[str, dict[str, float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if _ts(event) < start:
            continue
        entry = per_op.setdefault(event.get("args", {}).get("op_name", "?"), {"us": 0.0, "count": 0.0})
        entry["us"] += float(event["dur"])
        entry["count"] += 1
    operators = sorted(
        (
            {
                "op": op,
                "us_per_run": entry["us"] / len(runs),
                "count_per_run": entry["count"] / len(runs),
                "share_of_run": entry["us"] / run_us,
            }
            for op, entry in per_op.items()
        ),
        key=lambda row: -row["us_per_run"],
    )
    return {
        "graph": path.name,
        "runs": len(runs),
        "warmup_runs_left_out": len(singles) - len(runs),
        "model_run_us_per_run": run_us / len(runs),
        "kernels_us_per_run": sum(row["us_per_run"] for row in operators),
        "operators": operators,
    }


def _ts(event: dict[str, Any]) -> float:
    return float(event.get("ts", 0))


def print_profile(profile: dict[str, Any], top: int) -> None:
    """The operator profile: model_run and kernel time per run, then the ``top`` operator types by time."""
    print(
        f"\n### Operator profile: {profile['variant']}, batch 1, 1 thread, {profile['runs']} runs "
        "(profiling overhead inflates absolute times)\n"
    )
    run_us, kernel_us = profile["model_run_us_per_run"], profile["kernels_us_per_run"]
    print(f"model_run {run_us:.0f} us per run, of which kernels {kernel_us:.0f} us ({kernel_us / run_us:.0%})\n")
    print("| op type | us per run | count per run | share of model_run |")
    print("|---|---:|---:|---:|")
    for row in profile["operators"][:top]:
        print(f"| {row['op']} | {row['us_per_run']:.1f} | {row['count_per_run']:.0f} | {row['share_of_run']:.1%} |")
