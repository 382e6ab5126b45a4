"""Keep-level sweeps: accuracy of every ranking method at every keep level, and the latency frontier.

Each method scores the heads once (``score_heads``); every keep level reuses those scores (an iterative
method's keep levels are prefixes of its pruning order). Accuracy uses head masks on the PyTorch model
(equal to structural pruning, tested); the chosen method's keep levels are also planned, pruned, exported
and verified (``export_verified``, ``ship_int8``) and timed as ONNX int8.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from attr_compress.compressor.data.encoded import EncodedData, encode_data, parity_batches
from attr_compress.compressor.data.files import load_labelled_data, sample_labelled_data
from attr_compress.compressor.data.rows import LabelledData
from attr_compress.compressor.defaults import default
from attr_compress.compressor.errors import InputError, check_counts
from attr_compress.compressor.models.loading import USERS_ATTENTION, LoadedModel, load_model, read_model_config
from attr_compress.compressor.outputs import staged_folder
from attr_compress.compressor.pruning.prune import plan_pruning, prune_model
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads
from attr_compress.compressor.scoring.rankers import DEFAULT_KEEPS
from attr_compress.evaluation.curves import Metrics, SweepResult, SweptMethod, accuracy_curves, area_under_curve
from attr_compress.evaluation.masked import masked_metrics
from attr_compress.evaluation.measure import VariantResult, evaluate
from attr_compress.evaluation.report.figures import plot_sweep_accuracy, plot_sweep_frontier
from attr_compress.evaluation.report.record import Comparison
from attr_compress.evaluation.report.sweep import render_sweep_html, sweep_markdown
from attr_compress.exporters.onnx_export import ONNX_FP32, ONNX_INT8
from attr_compress.exporters.recipes import OPTIMUM_BASELINE
from attr_compress.exporters.runtime import OnnxRunner, Runner, TorchRunner
from attr_compress.exporters.verified import export_verified, ship_int8

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepOptions:
    """Which methods and keep levels to sweep; ``scoring`` says how each method scores (its method is replaced)."""

    methods: tuple[str, ...] = ("attattr", "attattr-paper", "taylor", "attention", "random")
    keeps: tuple[float, ...] = DEFAULT_KEEPS
    random_seeds: tuple[int, ...] = (0, 1, 2)
    latency_method: str | None = "attattr"
    threads: int = default("threads")
    latency_examples: int = default("latency_examples")
    scoring: ScoringOptions = field(default_factory=ScoringOptions)

    def __post_init__(self) -> None:
        check_counts(latency_examples=self.latency_examples)
        if self.threads < 0:
            raise InputError(f"--threads must be 0 (as a default session runs) or more, got {self.threads}")
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
    loaded: LoadedModel, calibration: LabelledData, options: SweepOptions
) -> tuple[dict[str, list[HeadImportance]], dict[str, float]]:
    """Each method's importance (one per seed for random), and the seconds each method took."""
    importances: dict[str, list[HeadImportance]] = {}
    seconds: dict[str, float] = {}
    for method in options.methods:
        seeds = options.random_seeds if method == "random" else (options.scoring.seed,)
        logger.info(f"scoring heads with {method}")
        started = time.perf_counter()
        importances[method] = [
            score_heads(loaded, calibration, replace(options.scoring, method=method, seed=seed)) for seed in seeds
        ]
        seconds[method] = round((time.perf_counter() - started) / len(seeds), 3)
    return importances, seconds


def latency_frontier(
    loaded: LoadedModel, encoded: EncodedData, importance: HeadImportance, options: SweepOptions
) -> list[VariantResult]:
    """Prune, export (with the parity gate) and time ONNX int8 at every keep level, beside the original."""
    batches = parity_batches(encoded)
    with tempfile.TemporaryDirectory(prefix="attr-compress-sweep-") as work:
        root = Path(work)
        models = {"original": loaded.model}
        for keep in options.keeps:
            models[f"keep-{keep:g}"] = prune_model(
                copy.deepcopy(loaded.model), plan_pruning(importance.scores, keep, importance.order)
            )
        for name, model in models.items():
            logger.info(f"exporting {name}")
            graphs = export_verified(
                model, loaded.tokenizer, root / name, TorchRunner(name, model), batches, fuse=False
            )
            ship_int8(graphs, OPTIMUM_BASELINE, batches, source=name)
        variants: dict[tuple[str, str], Runner] = {
            ("original", "pytorch-fp32"): TorchRunner(
                "original", load_model(loaded.path, attn_implementation=USERS_ATTENTION).model
            ),
            ("original", "onnx-fp32"): OnnxRunner("original", root / "original" / ONNX_FP32, threads=options.threads),
            **{
                (name, "onnx-int8"): OnnxRunner(name, root / name / ONNX_INT8, threads=options.threads)
                for name in models
            },
        }
        logger.info("timing every variant")
        measured = evaluate(
            variants,
            encoded,
            threads=options.threads,
            num_labels=loaded.config.num_labels,
            progress=options.scoring.progress,
        )
    return measured.results


def why_these_heads(
    loaded: LoadedModel,
    calibration: LabelledData,
    encoded: EncodedData,
    chosen: HeadImportance,
    keep: float,
    options: SweepOptions,
) -> dict[str, Comparison]:
    """Compare the chosen ranking with other methods at one keep level: Spearman rank correlation of the
    scores, and the accuracy each ranking would have given (masked PyTorch model, no re-training)."""
    from scipy.stats import spearmanr

    others = tuple(method for method in options.methods if method != chosen.method)
    importances, seconds = score_methods(loaded, calibration, replace(options, methods=others))
    importances[chosen.method] = [chosen]
    curves = accuracy_curves(loaded, encoded, importances, [keep])
    return {
        method: Comparison(
            spearman_with_chosen=float(
                np.mean([spearmanr(np.ravel(chosen.scores), np.ravel(run.scores)).statistic for run in runs])
            ),
            accuracy=curves[method].accuracy[0],
            seconds=seconds.get(method),
        )
        for method, runs in importances.items()
    }


def run_sweep(
    loaded: LoadedModel,
    evaluation: LabelledData,
    calibration: LabelledData,
    options: SweepOptions,
) -> SweepResult:
    """Everything `attr-compress sweep` writes to sweep.json."""
    keeps = list(options.keeps)
    encoded = encode_data(loaded, evaluation, singles=options.latency_examples)
    importances, seconds = score_methods(loaded, calibration, options)
    logger.info("measuring accuracy at every keep level")
    with_f1 = encoded.is_pair and loaded.config.num_labels == 2
    unpruned = Metrics(**masked_metrics(loaded.model, encoded, [None], with_f1=with_f1)[0])
    methods = {
        method: SweptMethod(
            auc=area_under_curve(keeps, curve.accuracy, unpruned.accuracy), seconds=seconds[method], **asdict(curve)
        )
        for method, curve in accuracy_curves(loaded, encoded, importances, keeps).items()
    }
    latency = None
    if options.latency_method:
        latency = latency_frontier(loaded, encoded, importances[options.latency_method][0], options)
    return SweepResult(
        model=loaded.path,
        evaluation=evaluation.path,
        evaluation_rows=len(evaluation),
        calibration=calibration.path,
        calibration_examples=len(calibration),
        keeps=keeps,
        unpruned=unpruned,
        methods=methods,
        random_seeds=list(options.random_seeds),
        latency_method=options.latency_method,
        latency=latency,
        threads=options.threads,
        steps=options.scoring.steps,
        rule=options.scoring.rule,
        seed=options.scoring.seed,
    )


def sweep(
    model: str,
    data: str,
    calib: str,
    out: str | Path,
    options: SweepOptions,
    *,
    columns: dict[str, str | None],
    force: bool = False,
) -> SweepResult:
    """`attr-compress sweep`: load, score every method once, measure every keep level, write a staged folder."""
    read_model_config(model)
    with staged_folder(out, force=force, contents="sweep") as staging:
        loaded = load_model(model)
        evaluation = load_labelled_data(data, loaded.label2id, **columns)
        calibration, _ = sample_labelled_data(
            calib, loaded.label2id, options.scoring.examples, options.scoring.seed, **columns
        )
        result = run_sweep(loaded, evaluation, calibration, options)
        result.save(staging / "sweep.json")
        (staging / "sweep.md").write_text(sweep_markdown(result), encoding="utf-8")
        (staging / "sweep.html").write_text(render_sweep_html(result), encoding="utf-8")
        plot_sweep_accuracy(result, staging / "sweep_accuracy.png")
        if result.latency:
            plot_sweep_frontier(result, staging / "sweep_frontier.png")
    return result
