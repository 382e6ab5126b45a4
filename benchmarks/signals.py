"""Which signal predicts the labelled accuracy drop best: fidelity to the original on a large unlabelled slice
(disagreement rate, KL divergence) or the paired drop on the labelled selection rows?

Many candidate compressions of one model (a grid of head / FFN keep fractions, each refitted by least squares,
as PyTorch fp32 and as int8 graphs at both weight granularities) are judged by every signal the run can
compute before it ships: on the fidelity slice of the calibration file and on the selection rows. The truth is
each candidate's paired drop on the evaluation rows that chose nothing. Printed: the rank correlation of each
signal with the truth over all candidates and over those that lose at most ``--relevant`` points (where the
run's decisions are made), and how often the selection rows and the unlabelled slice agree on which of two
candidates is better when the truth says they differ by at least one point.

    python benchmarks/signals.py [--model DIR --data dev.tsv --calib train.tsv] [--out signals.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from attr_compress.compressor.cache import StageCache
from attr_compress.compressor.data.task import DataOptions
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.prune import plan_pruning, prune
from attr_compress.compressor.recovery.lsq import RecoveryOptions, recover
from attr_compress.evaluation.fidelity import Judge, all_logits, paired_drop
from attr_compress.exporters.recipes import Recipe
from attr_compress.exporters.runtime import OnnxRunner, TorchRunner
from attr_compress.exporters.verified import export_verified, quantize_all
from scipy import stats

from attr_compress.pipeline import PipelineOptions, Run, StageTimer, prepare_inputs, score

SHARED = Path(__file__).resolve().parents[2] / "shared"
HEAD_KEEPS = (0.75, 0.5, 0.4, 0.3, 0.2)
FFN_KEEPS = (0.75, 0.5, 0.35, 0.25, 0.15)


def variants(job: Run, model: Any, name: str, scratch: Path, int8: bool) -> list[tuple[str, Any]]:
    """The candidate in PyTorch fp32, and as int8 graphs per-channel and per-tensor."""
    runners: list[tuple[str, Any]] = [(f"{name} fp32", TorchRunner(name, model))]
    if int8:
        graphs = export_verified(
            model, job.loaded.tokenizer, scratch / name, TorchRunner(name, model), job.inputs.parity
        )
        recipes = [Recipe("plain", "onnxruntime", per_channel, "matmul+attention") for per_channel in (True, False)]
        for recipe, path in zip(recipes, quantize_all(graphs, recipes, scratch / name), strict=True):
            granularity = "per-channel" if recipe.per_channel else "per-tensor"
            runners.append((f"{name} int8 {granularity}", OnnxRunner(name, path)))
    return runners


def judge_all(job: Run, scores: Any, scratch: Path, int8: bool) -> list[dict[str, Any]]:
    judge = job.judge
    evaluation = job.inputs.evaluation
    truth_reference = all_logits(TorchRunner("original", job.loaded.model), evaluation)
    rows = []
    for keep, keep_ffn in itertools.product(HEAD_KEEPS, FFN_KEEPS):
        heads, neurons = scores.heads, scores.neurons
        plan = plan_pruning(heads.scores, keep, heads.order, ffn_scores=neurons.scores, keep_ffn=keep_ffn)
        model = prune(job.loaded.model, plan)
        recover(job.loaded.model, model, job.inputs.fit_batches, RecoveryOptions(method="lsq", damped=False))
        for name, runner in variants(job, model, f"{keep:g}-{keep_ffn:g}", scratch, int8):
            verdict = judge.judge(runner)
            predicted = all_logits(runner, evaluation).argmax(-1)
            truth = paired_drop(truth_reference.argmax(-1), predicted, evaluation.labels)
            rows.append(
                {
                    "candidate": name,
                    "disagreement": verdict.fidelity.disagreement,
                    "kl": verdict.fidelity.kl,
                    "selection_drop": verdict.selection.drop_points,
                    "selection_lost": verdict.selection.lost,
                    "selection_gained": verdict.selection.gained,
                    "truth_drop": truth.drop_points,
                    "truth_interval_from_selection": list(
                        (verdict.selection.interval().low, verdict.selection.interval().high)
                    ),
                }
            )
            print(
                f"{name:32s} disagree {verdict.fidelity.disagreement:.4f} kl {verdict.fidelity.kl:.4f} "
                f"selection drop {verdict.selection.drop_points:+.2f} truth drop {truth.drop_points:+.2f}",
                flush=True,
            )
    return rows


def pooled_estimate(rows: list[dict[str, Any]]) -> np.ndarray:
    """disagreement x (2 pi - 1), pi = the share of disagreements the original wins, pooled over candidates."""
    lost = sum(row["selection_lost"] for row in rows)
    gained = sum(row["selection_gained"] for row in rows)
    share = lost / max(1, lost + gained)
    return np.array([100 * row["disagreement"] * (2 * share - 1) for row in rows])


def correlations(rows: list[dict[str, Any]], relevant: float) -> dict[str, dict[str, float]]:
    truth = np.array([row["truth_drop"] for row in rows])
    signals = {
        "unlabelled disagreement": np.array([row["disagreement"] for row in rows]),
        "unlabelled KL": np.array([row["kl"] for row in rows]),
        "selection paired drop": np.array([row["selection_drop"] for row in rows]),
        "pooled estimate (disagreement x selection's win share)": pooled_estimate(rows),
    }
    near = truth <= relevant
    result = {}
    for name, values in signals.items():
        result[name] = {
            "spearman_all": float(stats.spearmanr(values, truth).statistic),
            "spearman_relevant": float(stats.spearmanr(values[near], truth[near]).statistic),
            "pairs_ordered_right": pair_agreement(values, truth),
        }
    result["candidates"] = {"all": len(rows), "relevant": int(near.sum())}
    return result


def pair_agreement(values: np.ndarray, truth: np.ndarray, gap: float = 1.0) -> float:
    """Of the pairs of candidates whose true drops differ by at least ``gap`` points, the share the signal
    orders the same way."""
    right = total = 0
    for i, j in itertools.combinations(range(len(truth)), 2):
        if abs(truth[i] - truth[j]) >= gap:
            total += 1
            right += (values[i] - values[j]) * (truth[i] - truth[j]) > 0
    return right / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data" / "glue" / "SST-2" / "dev.tsv"))
    parser.add_argument("--calib", default=str(SHARED / "data" / "glue" / "SST-2" / "train.tsv"))
    parser.add_argument("--relevant", type=float, default=4.0, help="largest true drop (points) in the near set")
    parser.add_argument("--no-int8", action="store_true", help="judge PyTorch fp32 candidates only")
    parser.add_argument("--out", default="signals.json")
    args = parser.parse_args()
    options = PipelineOptions(
        model=args.model, keep=1.0, keep_ffn=0.5, data=DataOptions(args.data, args.calib), progress=False
    )
    with tempfile.TemporaryDirectory(prefix="signals-") as scratch:
        loaded = load_model(args.model)
        inputs = prepare_inputs(loaded, options)
        judge = Judge(TorchRunner("original", loaded.model), inputs.fidelity, inputs.selection)
        job = Run(options, loaded, inputs, Path(scratch), StageTimer(), StageCache.default(), judge)
        job = replace(job, options=replace(options, progress=True))
        rows = judge_all(job, score(job), Path(scratch), not args.no_int8)
    result = {
        "model": args.model,
        "rows": {
            "fidelity": len(job.inputs.fidelity.labels),
            "selection": len(job.inputs.selection.labels),
            "evaluation": len(job.inputs.evaluation.labels),
        },
        "correlations": correlations(rows, args.relevant),
        "candidates": rows,
    }
    print(json.dumps({key: result[key] for key in ("rows", "correlations")}, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
