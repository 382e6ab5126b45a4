"""Evaluate stage: the original and the shipped graphs measured side by side; the other rankings compared at the
same keep level; the attribution trees drawn."""

from __future__ import annotations

import shutil
from dataclasses import replace

from attr_compress.compressor.explain.examples import explain
from attr_compress.compressor.explain.trees import AttributionTree
from attr_compress.compressor.models.loading import (
    USERS_ATTENTION,
    load_model,
)
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.evaluation.measure import Measurement, evaluate
from attr_compress.evaluation.report.record import Comparison
from attr_compress.exporters.onnx_export import ONNX_FP32, ONNX_INT8
from attr_compress.exporters.runtime import OnnxRunner, TorchRunner
from attr_compress.pipeline.job import OriginalGraphs, Pruned, Run, Shipped


def measure(job: Run, pruned: Pruned, shipped: Shipped, original: OriginalGraphs) -> Measurement:
    """Every variant side by side; the original's scratch graphs are deleted afterwards."""
    with job.timer.stage("evaluate accuracy and latency"):
        threads = job.options.threads
        onnx = job.staging / "onnx"
        variants = {
            ("original", "pytorch-fp32"): TorchRunner(
                "", load_model(job.options.model, attn_implementation=USERS_ATTENTION).model
            ),
            ("original", "onnx-fp32"): OnnxRunner("", original.graphs.fp32, threads=threads),
            ("original", "onnx-int8"): OnnxRunner("", original.baseline_int8, threads=threads),
            ("original", "onnx-int8-tuned"): OnnxRunner("", shipped.original_tuned_int8, threads=threads),
            ("pruned", "pytorch-fp32"): TorchRunner("", pruned.as_users_load),
            ("pruned", "onnx-fp32"): OnnxRunner("", onnx / ONNX_FP32, threads=threads),
            ("pruned", "onnx-int8-tuned"): OnnxRunner("", onnx / ONNX_INT8, threads=threads),
        }
        measurement = evaluate(
            variants, job.inputs.evaluation, threads=threads, num_labels=job.num_labels, progress=job.options.progress
        )
        del variants  # close the original's sessions before deleting its graphs
        shutil.rmtree(original.graphs.folder)
    return measurement


def compare(job: Run, heads: HeadImportance, keep: float) -> dict[str, Comparison]:
    """Other rankings at the same keep level (why these heads)."""
    from attr_compress.sweep import SweepOptions, why_these_heads

    with job.timer.stage("compare with other rankings"):
        scoring = replace(job.options.scoring, progress=job.options.progress)
        options = SweepOptions(
            ("attention", "random", "taylor"), random_seeds=(0, 1, 2), latency_method=None, scoring=scoring
        )
        return why_these_heads(job.loaded, job.inputs.resolved.calibration, job.inputs.evaluation, heads, keep, options)


def explain_examples(job: Run) -> list[AttributionTree]:
    evaluation, options = job.inputs.resolved.evaluation, job.options
    with job.timer.stage(f"attribution trees ({min(options.trees, len(evaluation))} examples)"):
        return explain(
            job.loaded,
            evaluation,
            options.trees,
            job.staging / "trees",
            steps=options.scoring.steps,
            rule=options.scoring.rule,
            progress=options.progress,
        )
