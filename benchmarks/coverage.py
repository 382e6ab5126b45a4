"""Are the stated intervals honest? The drop interval (Newcombe's paired score interval, 95%) computed on a sample
of labelled rows, against the drop on the whole population the sample came from.

Compressed candidates of a model (a few structures, refitted by least squares, as int8 graphs) are run once
over a large labelled file (the population; its true drop is known exactly there). Then, many times over,
``--rows`` rows are drawn at random, the interval is computed on them as a run would, and we count how often
it contains the population's drop. A 95% interval should contain it about 95% of the time. The exact
binomial interval conditional on the discordant rows is shown beside it for comparison.

The population may be rows the model was trained on (SST-2 train for the demo model): coverage is a property
of the interval for any fixed population, and a large labelled file is what makes the truth exact.

    python benchmarks/coverage.py [--model DIR --population train.tsv] [--rows 218 436] [--draws 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from attr_compress.compressor.data.encoded import encode_data
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.prune import plan_pruning, prune
from attr_compress.compressor.recovery.lsq import RecoveryOptions, encode_for_fit, recover
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads, score_neurons
from attr_compress.evaluation.fidelity import PairedDrop, clopper_pearson, paired_drop
from attr_compress.evaluation.measure import predict
from attr_compress.exporters.runtime import TorchRunner

SHARED = Path(__file__).resolve().parents[2] / "shared"
STRUCTURES = ((0.75, 0.5), (0.5, 0.35), (0.4, 0.25), (0.3, 0.2))


def conditional_exact(drop: PairedDrop, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson on the lost share of the discordant rows, mapped to points (0 discordant: [0, 0])."""
    discordant = drop.lost + drop.gained
    if discordant == 0:
        return 0.0, 0.0
    low, high = clopper_pearson(drop.lost, discordant, level)
    scale = 100 * discordant / drop.rows
    return scale * (2 * low - 1), scale * (2 * high - 1)


def coverage(original: np.ndarray, candidate: np.ndarray, labels: np.ndarray, rows: int, draws: int) -> dict:
    truth = paired_drop(original, candidate, labels).drop_points
    rng = np.random.default_rng(0)
    inside = {"newcombe": 0, "conditional exact": 0}
    widths = []
    for _ in range(draws):
        sample = rng.choice(len(labels), size=rows, replace=False)
        drop = paired_drop(original[sample], candidate[sample], labels[sample])
        interval = drop.interval()
        inside["newcombe"] += interval.low <= truth <= interval.high
        low, high = conditional_exact(drop)
        inside["conditional exact"] += low <= truth <= high
        widths.append(interval.high - interval.low)
    return {
        "population_drop_points": truth,
        "rows": rows,
        "coverage": {name: count / draws for name, count in inside.items()},
        "mean_width_points": float(np.mean(widths)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"))
    parser.add_argument("--population", default=str(SHARED / "data" / "glue" / "SST-2" / "train.tsv"))
    parser.add_argument("--rows", type=int, nargs="+", default=[218, 436])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--out", default="coverage.json")
    args = parser.parse_args()
    loaded = load_model(args.model)
    population = load_labelled_data(args.population, loaded.label2id)
    calibration = population.sample(200, 11)
    encoded = encode_data(loaded, population, singles=0)
    original = predict(TorchRunner("original", loaded.model), encoded)
    scoring = ScoringOptions(rule="gauss", steps=6)
    heads, neurons = score_heads(loaded, calibration, scoring), score_neurons(loaded, calibration, scoring)
    fit = encode_for_fit(loaded, population.sample(1000, 12).examples)
    results = []
    for keep, keep_ffn in STRUCTURES:
        plan = plan_pruning(heads.scores, keep, heads.order, ffn_scores=neurons.scores, keep_ffn=keep_ffn)
        model = prune(loaded.model, plan)
        recover(loaded.model, model, fit, RecoveryOptions(method="lsq"))
        candidate = predict(TorchRunner("candidate", model), encoded)
        for rows in args.rows:
            result = {
                "keep": keep,
                "keep_ffn": keep_ffn,
                **coverage(original, candidate, encoded.labels, rows, args.draws),
            }
            print(json.dumps(result), flush=True)
            results.append(result)
    Path(args.out).write_text(json.dumps({"population": args.population, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
