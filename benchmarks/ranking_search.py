"""Which attribution-based head ranking prunes best? Chosen on calibration data only (never the dev set).

Scores heads on calibration set A (SST-2 train sample), measures accuracy with the lowest heads masked on a
disjoint held-out set B (also SST-2 train) for keep 0.9 ... 0.1, and prints each candidate's curve, its mean,
and its margin against Taylor. Usage: python benchmarks/ranking_search.py [--examples 200] [--holdout 600]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from attr_compress.compressor.data.encoded import encode_data
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.prune import plan_pruning
from attr_compress.compressor.scoring.heads import attribution_statistics
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads
from attr_compress.compressor.scoring.rankers import AttAttrIterative, layer_l2_normalised
from attr_compress.evaluation.masked import masked_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared"
KEEPS = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--holdout", type=int, default=600)
    parser.add_argument("--out", default="ranking_search.json")
    parser.add_argument(
        "--iterative", default="", help="comma-separated target/statistic pairs to also try iteratively, e.g. gold/max"
    )
    parser.add_argument("--skip-one-shot", action="store_true", help="only Taylor and the iterative candidates")
    parser.add_argument(
        "--targets", default="gold,predicted", help="F for one-shot candidates: gold, gold-log, predicted"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(SHARED / "models/minilm-l6-sst2")
    train = load_labelled_data(SHARED / "data/glue/SST-2/train.tsv", loaded.label2id)
    calibration = train.sample(args.examples, 0)
    chosen = {e.row for e in calibration.examples}
    rest = replace(train, examples=tuple(e for e in train.examples if e.row not in chosen))
    holdout = rest.sample(args.holdout, 1)
    encoded = encode_data(loaded, holdout, singles=0)

    candidates: dict[str, np.ndarray] = {}
    costs: dict[str, float] = {}
    targets = [] if args.skip_one_shot else args.targets.split(",")
    for target in targets:
        started = time.perf_counter()
        stats = attribution_statistics(loaded, calibration.examples, objective=target, progress=True)
        costs[f"attribution-{target}"] = time.perf_counter() - started
        stats["|sum|"] = np.abs(stats["sum"])  # per example, the size of the head's share of F(A) - F(0)
        for name, values in stats.items():
            candidates[f"{target}/{name}"] = values.mean(axis=0)
            candidates[f"{target}/{name}/layer-l2"] = layer_l2_normalised(values.mean(axis=0))
    orders: dict[str, list[list[int]]] = {}
    for pair in filter(None, args.iterative.split(",")):
        target, statistic, *normalised = pair.split("/")
        attributes = {"objective": target, "statistic": statistic, "layer_normalised": normalised == ["layer-l2"]}
        variant = type("Variant", (AttAttrIterative,), attributes)  # the iterative recipe with other F/statistic
        started = time.perf_counter()
        importance = variant(loaded, progress=True).rank(calibration)
        costs[f"iterative/{pair}"] = time.perf_counter() - started
        candidates[f"iterative/{pair}"] = importance.array
        orders[f"iterative/{pair}"] = importance.order
    started = time.perf_counter()
    candidates["taylor"] = score_heads(loaded, calibration, ScoringOptions(method="taylor")).array
    costs["taylor"] = time.perf_counter() - started

    full = masked_metrics(loaded.model, encoded, [None], with_f1=False)[0]["accuracy"]
    curves = {}
    for name, scores in candidates.items():
        masks = [plan_pruning(scores, keep, orders.get(name)).head_mask for keep in KEEPS]
        curves[name] = [m["accuracy"] for m in masked_metrics(loaded.model, encoded, masks, with_f1=False)]
    print(f"held-out calibration accuracy, unpruned: {full:.4f}; costs (s): {costs}")
    print("candidate".ljust(34) + " ".join(f"{k:>6}" for k in KEEPS) + "   mean  min-vs-taylor")
    for name, curve in sorted(curves.items(), key=lambda item: -np.mean(item[1])):
        margin = min(a - b for a, b in zip(curve, curves["taylor"], strict=True))
        print(name.ljust(34) + " ".join(f"{a:6.3f}" for a in curve) + f" {np.mean(curve):6.4f} {margin:+.3f}")
    Path(args.out).write_text(json.dumps({"full": full, "keeps": KEEPS, "curves": curves, "costs": costs}, indent=1))


if __name__ == "__main__":
    main()
