"""Keep-level sweeps: accuracy of every ranking method at every keep level, and the latency frontier.

Each method scores the heads once; every keep level reuses those scores (an iterative method's keep levels
are prefixes of its pruning order). Accuracy uses head masks on the PyTorch model (equal to structural
pruning, tested); the chosen method's keep levels are also pruned, exported and timed as ONNX int8.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from compressor.data import LabelledData
from compressor.importance import DEFAULT_MAX_BATCH_TOKENS, HeadImportance
from compressor.modeling import LoadedModel, load_model
from compressor.pruning import plan_pruning, prune_model
from compressor.ranking import DEFAULT_KEEPS, make_ranker
from evaluation.encoded import EncodedData, encode_data, parity_batches
from evaluation.masked import masked_metrics
from evaluation.measure import evaluate_runners

Log = Callable[[str], None]


@dataclass(frozen=True)
class SweepOptions:
    methods: tuple[str, ...] = ("attattr", "attattr-paper", "taylor", "attention", "random")
    keeps: tuple[float, ...] = DEFAULT_KEEPS
    random_seeds: tuple[int, ...] = (0, 1, 2)
    latency_method: str | None = "attattr"
    threads: int = 1
    latency_examples: int = 200
    steps: int = 20
    rule: str = "left"
    seed: int = 0
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    progress: bool = False


def area_under_curve(keeps: Sequence[float], accuracies: Sequence[float], full: float) -> float:
    """Mean accuracy over the fraction pruned, from 0 (the full model) to the largest fraction swept."""
    pruned = np.array([0.0, *[1 - keep for keep in keeps]])
    values = np.array([full, *accuracies])
    order = np.argsort(pruned)
    return float(np.trapezoid(values[order], pruned[order]) / (pruned.max() - pruned.min()))


def score_methods(
    loaded: LoadedModel, calibration: LabelledData, options: SweepOptions, log: Log
) -> tuple[dict[str, list[HeadImportance]], dict[str, float]]:
    """Each method's importance (one per seed for random), and the seconds each method took."""
    importances: dict[str, list[HeadImportance]] = {}
    seconds: dict[str, float] = {}
    for method in options.methods:
        seeds = options.random_seeds if method == "random" else (options.seed,)
        log(f"scoring heads with {method}")
        started = time.perf_counter()
        importances[method] = [
            make_ranker(
                method,
                loaded,
                steps=options.steps,
                rule=options.rule,
                seed=seed,
                max_batch_tokens=options.max_batch_tokens,
                progress=options.progress,
            ).rank(calibration)
            for seed in seeds
        ]
        seconds[method] = round((time.perf_counter() - started) / len(seeds), 3)
    return importances, seconds


def accuracy_curves(
    loaded: LoadedModel, encoded: EncodedData, importances: dict[str, list[HeadImportance]], keeps: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """Per method and keep level: metrics averaged over the method's seeds (masked PyTorch model)."""
    with_f1 = encoded.is_pair and loaded.config.num_labels == 2
    curves: dict[str, dict[str, Any]] = {}
    for method, runs in importances.items():
        per_run = [
            masked_metrics(
                loaded.model,
                encoded,
                [plan_pruning(run.scores, keep, run.order).head_mask for keep in keeps],
                with_f1=with_f1,
            )
            for run in runs
        ]
        curves[method] = {
            metric: [float(np.mean([run[i][metric] for run in per_run])) for i in range(len(keeps))]
            for metric in per_run[0][0]
        }
        if len(per_run) > 1:
            curves[method]["accuracy_per_seed"] = [[row["accuracy"] for row in run] for run in per_run]
    return curves


def latency_frontier(
    loaded: LoadedModel,
    encoded: EncodedData,
    importance: HeadImportance,
    keeps: Sequence[float],
    options: SweepOptions,
    log: Log,
) -> dict[str, dict[str, Any]]:
    """Prune, export (with the parity gate) and time ONNX int8 at every keep level, beside the original."""
    from exporters.onnx_export import ONNX_FP32, ONNX_INT8
    from exporters.runtime import OnnxRunner, TorchRunner
    from exporters.verified import export_verified

    batches = parity_batches(encoded)
    with tempfile.TemporaryDirectory(prefix="attr-compress-sweep-") as work:
        root = Path(work)
        log("exporting the original model")
        export_verified(
            loaded.model, loaded.tokenizer, root / "original", TorchRunner("original", loaded.model), batches
        )
        runners: list[Any] = [
            TorchRunner("original/pytorch-fp32", load_model(loaded.path, attn_implementation="sdpa").model),
            OnnxRunner("original/onnx-fp32", root / "original" / ONNX_FP32, threads=options.threads),
            OnnxRunner("original/onnx-int8", root / "original" / ONNX_INT8, threads=options.threads),
        ]
        for keep in keeps:
            log(f"pruning and exporting keep {keep:g}")
            folder = root / f"keep-{keep:g}"
            plan = plan_pruning(importance.scores, keep, importance.order)
            pruned = prune_model(copy.deepcopy(loaded.model), plan)
            export_verified(pruned, loaded.tokenizer, folder, TorchRunner(f"keep {keep:g}", pruned), batches)
            runners.append(OnnxRunner(f"keep-{keep:g}/onnx-int8", folder / ONNX_INT8, threads=options.threads))
        log("timing every variant")
        results, _ = evaluate_runners(
            runners, encoded, threads=options.threads, num_labels=loaded.config.num_labels, progress=options.progress
        )
    return results


def why_these_heads(
    loaded: LoadedModel,
    calibration: LabelledData,
    encoded: EncodedData,
    chosen: HeadImportance,
    keep: float,
    options: SweepOptions,
    log: Log,
) -> dict[str, Any]:
    """Compare the chosen ranking with other methods at one keep level: Spearman rank correlation of the
    scores, and the accuracy each ranking would have given (masked PyTorch model, no re-training)."""
    from scipy.stats import spearmanr

    others = [method for method in options.methods if method != chosen.method]
    importances, seconds = score_methods(loaded, calibration, replace(options, methods=tuple(others)), log)
    importances[chosen.method] = [chosen]
    curves = accuracy_curves(loaded, encoded, importances, [keep])
    comparison = {}
    for method, runs in importances.items():
        correlations = [spearmanr(np.ravel(chosen.scores), np.ravel(run.scores)).statistic for run in runs]
        comparison[method] = {
            "spearman_with_chosen": float(np.mean(correlations)),
            "accuracy": curves[method]["accuracy"][0],
            "seconds": seconds.get(method),
        }
    return comparison


def run_sweep(
    loaded: LoadedModel,
    evaluation: LabelledData,
    calibration: LabelledData,
    options: SweepOptions,
    log: Log = lambda message: None,
) -> dict[str, Any]:
    """Everything `attr-compress sweep` writes to sweep.json."""
    keeps = list(options.keeps)
    encoded = encode_data(loaded, evaluation, singles=options.latency_examples)
    importances, seconds = score_methods(loaded, calibration, options, log)
    log("measuring accuracy at every keep level")
    with_f1 = encoded.is_pair and loaded.config.num_labels == 2
    unpruned = masked_metrics(loaded.model, encoded, [None], with_f1=with_f1)[0]
    curves = accuracy_curves(loaded, encoded, importances, keeps)
    for method, curve in curves.items():
        curve["auc"] = area_under_curve(keeps, curve["accuracy"], unpruned["accuracy"])
        curve["seconds"] = seconds[method]
    latency = None
    if options.latency_method:
        latency = latency_frontier(loaded, encoded, importances[options.latency_method][0], keeps, options, log)
    return {
        "kind": "sweep",
        "schema": 1,
        "model": loaded.path,
        "evaluation": evaluation.path,
        "evaluation_rows": len(evaluation),
        "calibration": calibration.path,
        "calibration_examples": len(calibration),
        "keeps": keeps,
        "unpruned": unpruned,
        "methods": curves,
        "random_seeds": list(options.random_seeds),
        "latency_method": options.latency_method,
        "latency": latency,
        "threads": options.threads,
        "steps": options.steps,
        "rule": options.rule,
        "seed": options.seed,
    }


def sweep_markdown(sweep: dict[str, Any]) -> str:
    """Accuracy per method and keep level, the area under each curve and each method's cost."""
    keeps = sweep["keeps"]
    lines = [
        "# attr-compress sweep",
        "",
        f"Model `{sweep['model']}`; accuracy on `{sweep['evaluation']}` ({sweep['evaluation_rows']} examples) with "
        f"the lowest-ranked heads masked, no re-training; heads scored on {sweep['calibration_examples']} examples "
        f"of `{sweep['calibration']}`. Unpruned accuracy {sweep['unpruned']['accuracy']:.4f}.",
        "",
        "| method | " + " | ".join(f"{1 - keep:.0%}" for keep in keeps) + " | AUC | seconds |",
        "|---|" + "---|" * (len(keeps) + 2),
    ]
    for method, curve in sweep["methods"].items():
        cells = [f"{value:.4f}" for value in curve["accuracy"]]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {curve['auc']:.4f} | {curve['seconds']:.1f} |")
    lines += ["", "Columns: fraction of heads pruned. AUC: mean accuracy from 0% to the largest fraction pruned."]
    if all("f1" in curve for curve in sweep["methods"].values()):
        lines += [
            "",
            f"F1 (unpruned {sweep['unpruned']['f1']:.4f}):",
            "",
            "| method | " + " | ".join(f"{1 - keep:.0%}" for keep in keeps) + " |",
            "|---|" + "---|" * len(keeps),
        ]
        for method, curve in sweep["methods"].items():
            lines.append(f"| {method} | " + " | ".join(f"{value:.4f}" for value in curve["f1"]) + " |")
    if sweep["latency"]:
        latency = sweep["latency"]
        lines += [
            "",
            f"## Latency of `{sweep['latency_method']}` keep levels (ONNX int8, batch 1, {sweep['threads']} thread(s))",
            "",
            "| variant | accuracy | p50 ms | p90 ms | throughput/s |",
            "|---|---|---|---|---|",
        ]
        for name, row in latency.items():
            lines.append(
                f"| {name} | {row['accuracy']:.4f} | {row['latency_p50_ms']:.2f} | {row['latency_p90_ms']:.2f} "
                f"| {row['throughput_per_s']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def plot_sweep_accuracy(sweep: dict[str, Any], path: str | Path) -> None:
    """Accuracy against fraction of heads pruned, one line per method, the unpruned model as reference."""
    figure = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    pruned = [1 - keep for keep in sweep["keeps"]]
    for method, curve in sweep["methods"].items():
        axes.plot(pruned, curve["accuracy"], marker="o", label=f"{method} (AUC {curve['auc']:.3f})")
    axes.axhline(sweep["unpruned"]["accuracy"], color="black", linestyle="--", linewidth=1, label="unpruned")
    _save(figure, axes, path, "fraction of attention heads pruned", "Accuracy after pruning, no re-training")


def plot_sweep_frontier(sweep: dict[str, Any], path: str | Path) -> None:
    """Accuracy against batch-1 latency: every keep level as int8 ONNX, and the original model's points."""
    figure = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    latency = sweep["latency"]
    pruned = [(name, row) for name, row in latency.items() if name.startswith("keep-")]
    axes.plot(
        [row["latency_p50_ms"] for _, row in pruned],
        [row["accuracy"] for _, row in pruned],
        marker="o",
        label=f"{sweep['latency_method']}, ONNX int8",
    )
    for name, row in pruned:
        axes.annotate(
            name.split("/")[0].replace("keep-", "keep "),
            (row["latency_p50_ms"], row["accuracy"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    for name, row in latency.items():
        if name.startswith("original/"):
            axes.scatter(row["latency_p50_ms"], row["accuracy"], marker="s", s=50, label=name)
    axes.set_xscale("log")  # the original PyTorch point is several times slower than the int8 cluster
    _save(figure, axes, path, f"batch-1 latency, p50 ms ({sweep['threads']} thread(s))", "Accuracy / latency frontier")


def _save(figure: Figure, axes: Any, path: str | Path, xlabel: str, title: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
