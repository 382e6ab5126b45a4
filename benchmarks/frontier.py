"""Accuracy at speed, and what each ingredient buys.

Runs the command line as users run it (one cache shared by the runs, so scores are computed once) at each
speed-up target, with default options; then, at ``--ablate-at``, once with each ingredient switched off on its
own (``--allocation global``: one attribution ranking over the whole model instead of per-layer allocation;
``--int8 uniform``: one int8 recipe for every MatMul; ``--no-lsq-damping``: the refit's ridge toward zero) and
once with one added (``--distill-int8-aware 0.2``: the last fifth of the distillation trains through
int8-rounded weights). Every run is measured like ``benchmarks/repeat_runs.py``: the drop on the rows that chose
nothing with its interval, the drop on the half of the dev set the tool never saw, the speed-ups as users load
the graph, the wall time.

    python benchmarks/frontier.py MODEL --data dev-a.tsv --unseen dev-b.tsv --calib train.tsv \\
        [--targets 1.5 2 2.5 3] [--ablate-at 2.5] [--out frontier.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.repeat_runs import measured_run

ABLATIONS = {
    "per-layer allocation off (--allocation global)": ["--allocation", "global"],
    "per-MatMul int8 off (--int8 uniform)": ["--int8", "uniform"],
    "refit damping off (--no-lsq-damping)": ["--no-lsq-damping"],
    "quantisation-aware end of the distillation (--distill-int8-aware 0.2)": ["--distill-int8-aware", "0.2"],
}


def row(name: str, result: dict) -> str:
    if result["exit"] != 0:
        return f"| {name} | exit {result['exit']}: {result['error'][-120:]} | | | | | |"
    users = result["speedup_as_users_load_it"]
    stated, unseen = result["stated_interval"], result["unseen"]
    return (
        f"| {name} | {-result['stated_drop_points'] + 0.0:+.2f} ({-stated[1] + 0.0:+.2f} to {-stated[0] + 0.0:+.2f}) "
        f"| {-unseen['drop_points'] + 0.0:+.2f} | {result['disagreement']:.2%} | {users['InferenceSession(path)']:.2f}x"
        f" / {users['ORTModelForSequenceClassification']:.2f}x | {result['speedup_vs_pytorch_fp32_in_run']:.2f}x "
        f"| {result['wall_s'] / 60:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--unseen", required=True)
    parser.add_argument("--calib", required=True)
    parser.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--ablate-at", type=float, default=2.5)
    parser.add_argument("--out", default="frontier.json")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="frontier-cache-") as cache:
        runs = [(f"{target:g}x, defaults", target, []) for target in args.targets]
        runs += [(f"{args.ablate_at:g}x, {name}", args.ablate_at, extra) for name, extra in ABLATIONS.items()]
        for name, target, extra in runs:
            results[name] = measured_run(args, target, extra, cache=Path(cache))
            print(json.dumps({name: results[name]}), flush=True)
            Path(args.out).write_text(json.dumps({"model": args.model, "runs": results}, indent=2) + "\n")
    print(
        "| run | drop on rows that chose nothing (95% interval) | drop on the unseen half | disagreement "
        "| vs Optimum int8: session / ORTModel | vs PyTorch fp32 | minutes |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        print(row(name, result))


if __name__ == "__main__":
    main()
