"""Keep-level sweeps: accuracy of every ranking method at every keep level, and the latency frontier.

Each method scores the heads once (``score_heads``); every keep level reuses those scores (an iterative
method's keep levels are prefixes of its pruning order). Accuracy uses head masks on the PyTorch model
(equal to structural pruning, tested); the chosen method's keep levels are also planned, pruned, exported
and verified (``export_verified``, ``ship_int8``) and timed as ONNX int8.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from compressor.artifacts import write_json
from compressor.data import LabelledData, load_labelled_data, sample_labelled_data
from compressor.encoded import EncodedData, encode_data, parity_batches
from compressor.errors import InputError, check_counts
from compressor.importance import HeadImportance
from compressor.modeling import USERS_ATTENTION, LoadedModel, load_model, read_model_config
from compressor.outputs import staged_folder
from compressor.pruning import plan_pruning, prune_model
from compressor.ranking import DEFAULT_KEEPS
from compressor.scoring import ScoringOptions, score_heads
from evaluation.curves import accuracy_curves, area_under_curve
from evaluation.masked import masked_metrics
from evaluation.measure import evaluate_runners
from evaluation.page import render_sweep_html
from evaluation.plots import plot_sweep_accuracy, plot_sweep_frontier
from evaluation.report import Comparison, sweep_markdown
from exporters.onnx_export import ONNX_INT8
from exporters.recipes import OPTIMUM_BASELINE
from exporters.runtime import OnnxRunner, TorchRunner
from exporters.verified import export_verified, ship_int8

Log = Callable[[str], None]


@dataclass(frozen=True)
class SweepOptions:
    """Which methods and keep levels to sweep; ``scoring`` says how each method scores (its method is replaced)."""

    methods: tuple[str, ...] = ("attattr", "attattr-paper", "taylor", "attention", "random")
    keeps: tuple[float, ...] = DEFAULT_KEEPS
    random_seeds: tuple[int, ...] = (0, 1, 2)
    latency_method: str | None = "attattr"
    threads: int = 1
    latency_examples: int = 200
    scoring: ScoringOptions = field(default_factory=ScoringOptions)

    def __post_init__(self) -> None:
        check_counts(threads=self.threads, latency_examples=self.latency_examples)
        for method in self.methods:
            replace(self.scoring, method=method)  # validates the name
        if self.latency_method is not None and self.latency_method not in self.methods:
            raise InputError(
                f"--latency-method {self.latency_method} is not among --methods {','.join(self.methods)}; "
                "add it or pass none"
            )
        if not all(0 < keep <= 1 for keep in self.keeps):
            raise InputError(f"every keep level must be in (0, 1], got {self.keeps}")


def score_methods(
    loaded: LoadedModel, calibration: LabelledData, options: SweepOptions, log: Log
) -> tuple[dict[str, list[HeadImportance]], dict[str, float]]:
    """Each method's importance (one per seed for random), and the seconds each method took."""
    importances: dict[str, list[HeadImportance]] = {}
    seconds: dict[str, float] = {}
    for method in options.methods:
        seeds = options.random_seeds if method == "random" else (options.scoring.seed,)
        log(f"scoring heads with {method}")
        started = time.perf_counter()
        importances[method] = [
            score_heads(loaded, calibration, replace(options.scoring, method=method, seed=seed)) for seed in seeds
        ]
        seconds[method] = round((time.perf_counter() - started) / len(seeds), 3)
    return importances, seconds


def latency_frontier(
    loaded: LoadedModel, encoded: EncodedData, importance: HeadImportance, options: SweepOptions, log: Log
) -> dict[str, dict[str, Any]]:
    """Prune, export (with the parity gate) and time ONNX int8 at every keep level, beside the original."""
    batches = parity_batches(encoded)
    with tempfile.TemporaryDirectory(prefix="attr-compress-sweep-") as work:
        root = Path(work)
        models = {"original": loaded.model}
        for keep in options.keeps:
            models[f"keep-{keep:g}"] = prune_model(
                copy.deepcopy(loaded.model), plan_pruning(importance.scores, keep, importance.order)
            )
        graphs = {}
        for name, model in models.items():
            log(f"exporting {name}")
            graphs[name] = export_verified(
                model, loaded.tokenizer, root / name, TorchRunner(name, model), batches, fuse=False
            )
            ship_int8(graphs[name], OPTIMUM_BASELINE, batches, source=name)
        runners: list[Any] = [
            TorchRunner("original/pytorch-fp32", load_model(loaded.path, attn_implementation=USERS_ATTENTION).model),
            OnnxRunner("original/onnx-fp32", graphs["original"].fp32, threads=options.threads),
            *[OnnxRunner(f"{name}/onnx-int8", root / name / ONNX_INT8, threads=options.threads) for name in graphs],
        ]
        log("timing every variant")
        results, _ = evaluate_runners(
            runners,
            encoded,
            threads=options.threads,
            num_labels=loaded.config.num_labels,
            progress=options.scoring.progress,
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
) -> dict[str, Comparison]:
    """Compare the chosen ranking with other methods at one keep level: Spearman rank correlation of the
    scores, and the accuracy each ranking would have given (masked PyTorch model, no re-training)."""
    from scipy.stats import spearmanr

    others = tuple(method for method in options.methods if method != chosen.method)
    importances, seconds = score_methods(loaded, calibration, replace(options, methods=others), log)
    importances[chosen.method] = [chosen]
    curves = accuracy_curves(loaded, encoded, importances, [keep])
    return {
        method: Comparison(
            spearman_with_chosen=float(
                np.mean([spearmanr(np.ravel(chosen.scores), np.ravel(run.scores)).statistic for run in runs])
            ),
            accuracy=curves[method]["accuracy"][0],
            seconds=seconds.get(method),
        )
        for method, runs in importances.items()
    }


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
        latency = latency_frontier(loaded, encoded, importances[options.latency_method][0], options, log)
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
        "steps": options.scoring.steps,
        "rule": options.scoring.rule,
        "seed": options.scoring.seed,
    }


def sweep(
    model: str,
    data: str,
    calib: str,
    out: str | Path,
    options: SweepOptions,
    *,
    columns: dict[str, str | None],
    force: bool = False,
    log: Log = lambda message: None,
) -> dict[str, Any]:
    """`attr-compress sweep`: load, score every method once, measure every keep level, write a staged folder."""
    read_model_config(model)
    with staged_folder(out, force=force, contents="sweep", log=log) as staging:
        loaded = load_model(model)
        evaluation = load_labelled_data(data, loaded.label2id, **columns)
        calibration, _ = sample_labelled_data(
            calib, loaded.label2id, options.scoring.examples, options.scoring.seed, **columns
        )
        result = run_sweep(loaded, evaluation, calibration, options, log)
        write_json(result, staging / "sweep.json")
        (staging / "sweep.md").write_text(sweep_markdown(result), encoding="utf-8")
        (staging / "sweep.html").write_text(render_sweep_html(result), encoding="utf-8")
        plot_sweep_accuracy(result, staging / "sweep_accuracy.png")
        if result["latency"]:
            plot_sweep_frontier(result, staging / "sweep_frontier.png")
    return result
