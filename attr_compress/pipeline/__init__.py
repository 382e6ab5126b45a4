"""The whole job as a short list of stage calls: load -> score -> (search the sizes) -> plan, prune, recover ->
export and verify -> evaluate -> compare -> explain -> report, inside one staged output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attr_compress.compressor.cache import StageCache
from attr_compress.compressor.data.task import DataOptions
from attr_compress.compressor.models.loading import (
    load_model,
    read_model_config,
)
from attr_compress.compressor.outputs import REPORT_FILE, staged_folder
from attr_compress.compressor.pruning.prune import (
    check_drop_layers,
    check_unpruned,
)
from attr_compress.evaluation.fidelity import Judge
from attr_compress.evaluation.report.html import render_html
from attr_compress.evaluation.report.markdown import render_markdown
from attr_compress.evaluation.report.record import Report
from attr_compress.exporters.runtime import TorchRunner
from attr_compress.pipeline.assemble import build_report
from attr_compress.pipeline.job import Outcome, Run, StageTimer, prepare_inputs
from attr_compress.pipeline.measuring import compare, explain_examples, measure
from attr_compress.pipeline.options import PipelineOptions
from attr_compress.pipeline.recovering import prune_and_recover
from attr_compress.pipeline.scoring import score
from attr_compress.pipeline.shipping import check_selection, export_pruned
from attr_compress.pipeline.sizing import choose_sizes, export_original


def compress(model: str | Path, keep: float | None = None, **options: Any) -> Report:
    """Compress a model folder in one call: ``compress("model/", keep=0.5, data="dev.tsv", out="slim/")``.

    Keyword options are PipelineOptions fields; ``data``/``calib`` (file paths) go to DataOptions, and
    ``scoring``/``recovery`` take ScoringOptions/RecoveryOptions. Returns the run's Report (figures, paths).
    """
    data = DataOptions(**{key: options.pop(key) for key in ("data", "calib", "select_data") if key in options})
    return run(PipelineOptions(model=str(model), keep=keep, data=data, **{"progress": False, **options}))


def run(options: PipelineOptions) -> Report:
    """Every stage, in a staged folder renamed to ``options.out_folder`` only when all checks passed."""
    read_model_config(options.model)
    timer = StageTimer()
    with staged_folder(options.out_folder, force=options.force) as staging:
        with timer.stage("load model and data"):
            loaded = load_model(options.model)
            check_unpruned(loaded.model)
            check_drop_layers(options.drop_layers, loaded.config.num_hidden_layers)
            cache = StageCache.default(options.cache)
            inputs = prepare_inputs(loaded, options)
            judge = Judge(TorchRunner("original", loaded.model), inputs.fidelity, inputs.selection)
            job = Run(options, loaded, inputs, staging, timer, cache, judge)
        scores = score(job)
        original = export_original(job)
        sizes = choose_sizes(job, scores, original)
        pruned = prune_and_recover(job, scores, sizes)
        shipped = export_pruned(job, sizes, pruned, original)
        check = check_selection(job, sizes)
        measurement = measure(job, pruned, shipped, original)
        comparison = compare(job, scores.heads, sizes.keep) if options.compare else None
        trees = explain_examples(job)
        outcome = Outcome(scores, sizes, pruned, shipped, original, check, measurement, comparison, trees)
        report = build_report(job, outcome)
        report.save(staging / REPORT_FILE)
        (staging / "report.md").write_text(render_markdown(report), encoding="utf-8")
        (staging / "report.html").write_text(render_html(report, trees), encoding="utf-8")
    return report
