"""The report from the run's stage results: every figure the views (markdown, HTML, terminal) read."""

from __future__ import annotations

from typing import Any

from attr_compress.compressor.artifacts import library_versions
from attr_compress.compressor.data.lengths import describe_lengths
from attr_compress.compressor.models.families import family_of, ffn_width
from attr_compress.compressor.models.loading import (
    LoadedModel,
    count_truncated,
    token_lengths,
)
from attr_compress.compressor.pruning.prune import (
    PrunePlan,
    count_parameters,
    ffn_widths,
    heads_per_layer,
    model_layer_spans,
)
from attr_compress.compressor.scoring.neurons import NeuronImportance
from attr_compress.evaluation.fidelity import paired_drop
from attr_compress.evaluation.report.record import (
    DataSummary,
    FfnSummary,
    HeadsSummary,
    Machine,
    ParameterCounts,
    Report,
    WeightsInfo,
    WhySummary,
)
from attr_compress.pipeline.job import Outcome, Run


def build_report(job: Run, outcome: Outcome) -> Report:
    scores, sizes, pruned, shipped = outcome.scores, outcome.sizes, outcome.pruned, outcome.shipped
    original, measurement, check = outcome.original, outcome.measurement, outcome.check
    loaded, plan = job.loaded, pruned.plan
    shipped_row = next(row for row in measurement.results if row.name == "pruned/onnx-int8-tuned")
    baseline_row = next(row for row in measurement.results if row.name == "original/onnx-int8")
    target = job.options.target
    return Report(
        model=loaded.path,
        family=f"{family_of(loaded.model).name}, {type(loaded.model).__name__}",
        out=str(job.options.out_folder),
        options=job.options.record(sizes),
        data=data_summary(job),
        importance=scores.heads,
        heads=heads_summary(plan, sizes.keep, pruned.as_users_load),
        why=WhySummary([len(row) - sum(row) for row in plan.head_mask], outcome.comparison),
        ffn=ffn_summary(loaded, scores.neurons, sizes.keep_ffn, pruned.as_users_load),
        recovery=pruned.recovery,
        target_search=sizes.search,
        target_met_in_final_measurement=None
        if target is None
        else target.met(shipped_row.latency_p50_ms, baseline_row.latency_p50_ms / shipped_row.latency_p50_ms),
        selection_check=check,
        graph_tuning=shipped.tuning,
        tuned_on=shipped.tuned_on,
        parameters={
            "original": ParameterCounts(**count_parameters(loaded.model)),
            "pruned": ParameterCounts(**count_parameters(pruned.as_users_load)),
        },
        export={"pruned": shipped.record, "original": original.record},
        results=measurement.results,
        int8_agreement_with_fp32={
            model: measurement.agreement(f"{model}/{int8}", f"{model}/onnx-fp32")
            for model, int8 in (("original", "onnx-int8"), ("pruned", "onnx-int8-tuned"))
        },
        trees=[f"tree_{index + 1:03d}" for index in range(len(outcome.trees))],
        timings=job.timer.timings,
        machine=Machine.here(job.options.threads),
        weights=WeightsInfo(loaded.weights_file, loaded.weights_note, loaded.stored_dtype),
        versions=library_versions(),
        drop=paired_drop(
            measurement.predictions["original/pytorch-fp32"],
            measurement.predictions["pruned/onnx-int8-tuned"],
            job.inputs.evaluation.labels,
        ),
        drop_fp32=paired_drop(
            measurement.predictions["original/pytorch-fp32"],
            measurement.predictions["pruned/onnx-fp32"],
            job.inputs.evaluation.labels,
        ),
        reused=list(job.reused),
    )


def per_original_layer(model: Any, counts: list[int]) -> list[int]:
    """Per-layer counts of a pruned model, spread back over the original layers (dropped ones: 0)."""
    record = getattr(model.config, "attr_compress", None) or {}
    spread = [0] * record.get("original_layers", len(counts))
    for (first, _), count in zip(model_layer_spans(model), counts, strict=True):
        spread[first] = count
    return spread


def heads_summary(plan: PrunePlan, keep: float, model: Any) -> HeadsSummary:
    kept = per_original_layer(model, heads_per_layer(model))
    return HeadsSummary(
        keep=keep,
        total=plan.total_heads,
        kept=plan.kept_heads,
        kept_per_layer=kept,
        pruned={str(layer): heads for layer, heads in plan.pruned_heads.items()},
        empty_layers=[layer for layer, count in enumerate(kept) if count == 0 and layer not in plan.dropped_layers],
        dropped_layers=plan.dropped_layers,
    )


def ffn_summary(loaded: LoadedModel, neurons: NeuronImportance | None, keep_ffn: float, model: Any) -> FfnSummary:
    return FfnSummary(
        keep_ffn=keep_ffn,
        total=ffn_width(loaded.config) * loaded.config.num_hidden_layers,
        kept_per_layer=per_original_layer(model, ffn_widths(model)),
        aggregation=None if neurons is None else neurons.aggregation,
        steps=None if neurons is None else neurons.steps,
    )


def data_summary(job: Run) -> DataSummary:
    resolved, calibration = job.inputs.resolved, job.inputs.resolved.calibration
    evaluation = resolved.evaluation
    return DataSummary(
        evaluation=evaluation.path,
        evaluation_rows=len(evaluation),
        evaluation_truncated=job.inputs.evaluation.truncated,
        calibration=calibration.path,
        calibration_rows_in_file=resolved.calibration_rows,
        calibration_examples=len(calibration),
        calibration_truncated=count_truncated(job.loaded, calibration.examples),
        calibration_shared_with_evaluation=resolved.shared,
        source=resolved.source,
        columns={
            "text": evaluation.text_column,
            "text_pair": evaluation.text_pair_column,
            "label": evaluation.label_column,
        },
        selection=resolved.selection_how,
        selection_rows=len(resolved.selection),
        evaluation_row_numbers=[example.row for example in evaluation.examples],
        selection_row_numbers=[example.row for example in resolved.selection.examples],
        excluded=list(resolved.excluded),
        fidelity_rows=len(resolved.fidelity),
        lengths=text_lengths(job),
    )


def text_lengths(job: Run) -> dict[str, list[float]]:
    """Token lengths (mean, quartiles) of the rows measured and of the judge's text, and, where the judge's text
    was weighted to follow --data, of the --data file and the calibration file it was drawn from."""
    resolved = job.inputs.resolved
    lengths = {
        "measured rows": list(describe_lengths(token_lengths(job.loaded, resolved.evaluation.examples))),
        "judge (fidelity slice)": list(describe_lengths(token_lengths(job.loaded, resolved.fidelity.examples))),
    }
    if resolved.lengths is not None:
        lengths["--data file"] = list(resolved.lengths.served_lengths)
        lengths["calibration file"] = list(resolved.lengths.available_lengths)
    return lengths
