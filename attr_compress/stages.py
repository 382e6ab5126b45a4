"""One stage from files to a folder, as each `attr-compress <stage>` command runs it: read the inputs from
disk, call the same stage functions the pipeline calls, with the same defaults, and write the outputs into a
staged folder (``staged_folder``: renamed into place only when complete, ``--force`` only over our own folders)."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from attr_compress.compressor.artifacts import write_json
from attr_compress.compressor.data.encoded import encode_data, parity_batches
from attr_compress.compressor.data.files import load_labelled_data, sample_labelled_data
from attr_compress.compressor.data.task import calibration_samples
from attr_compress.compressor.defaults import default
from attr_compress.compressor.errors import InputError, check_counts
from attr_compress.compressor.explain.examples import explain
from attr_compress.compressor.models.loading import (
    USERS_ATTENTION,
    LoadedModel,
    check_device,
    load_model,
    read_model_config,
)
from attr_compress.compressor.outputs import check_output_folder, staged_folder
from attr_compress.compressor.pruning.prune import PrunePlan, check_unpruned, plan_pruning, prune_model, save_pruned
from attr_compress.compressor.recovery.distill import TrainingText
from attr_compress.compressor.recovery.lsq import RecoveryOptions, RecoveryRecord, encode_for_fit
from attr_compress.compressor.scoring.distributed import is_main_process, process_group
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import FFN_IMPORTANCE_FILE, NeuronImportance
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads, score_neurons
from attr_compress.compressor.seeds import Seeds
from attr_compress.evaluation.fidelity import Judge
from attr_compress.evaluation.measure import Measurement, evaluate
from attr_compress.evaluation.report.figures import save_importance
from attr_compress.evaluation.tuning import tune_recipe
from attr_compress.exporters.onnx_export import ONNX_FP32, ONNX_INT8
from attr_compress.exporters.recipes import OPTIMUM_BASELINE
from attr_compress.exporters.runtime import OnnxRunner, Runner, TorchRunner
from attr_compress.exporters.verified import ExportRecord, export_verified, ship_int8
from attr_compress.pipeline.recovering import RecoveryInputs, recover_by_measurement, recovery_methods

logger = logging.getLogger(__name__)

Columns = dict[str, str | None]


def score_folder(
    model: str,
    calib: str,
    out: str,
    options: ScoringOptions,
    *,
    columns: Columns,
    ffn: bool = False,
    force: bool = False,
) -> HeadImportance | None:
    """importance.json/.png (and ffn_importance.json). Under torchrun each rank scores a slice; rank 0 writes
    and gets the head scores back, the other ranks None."""
    check_output_folder(Path(out), force=force)
    loaded = load_model(model)
    check_unpruned(loaded.model)
    data, _ = sample_labelled_data(calib, loaded.label2id, options.examples, options.seed, **columns)
    with process_group():
        heads = score_heads(loaded, data, options)
        neurons = score_neurons(loaded, data, options) if ffn else None
        if not is_main_process():
            return None
        with staged_folder(out, force=force, contents="score") as staging:
            save_importance(heads, staging)
            if neurons is not None:
                neurons.save(staging / FFN_IMPORTANCE_FILE)
    return heads


def prune_folder(
    model: str,
    importance: str,
    keep: float,
    out: str,
    *,
    ffn_importance: str | None = None,
    keep_ffn: float = 1.0,
    calib: str | None = None,
    recovery: RecoveryOptions | None = None,
    fidelity_examples: int = default("fidelity_examples"),
    columns: Columns,
    force: bool = False,
    progress: bool = True,
) -> tuple[PrunePlan, RecoveryRecord | None] | None:
    """The pruned Hugging Face folder, prune_plan.json and (with a recovery) recovery.json. The recovery is
    chosen as a run chooses it (``recovery_methods``, ``recover_by_measurement``): fitted and distilled on the
    calibration file, judged against the original on its held-out fidelity slice. Under torchrun the processes
    share the refit and the distillation; rank 0 writes and gets the result, the other ranks None."""
    heads = HeadImportance.load(importance)
    neurons = NeuronImportance.load(ffn_importance) if ffn_importance else None
    plan = plan_pruning(heads.scores, keep, heads.order, ffn_scores=neurons and neurons.scores, keep_ffn=keep_ffn)
    recovery = recovery or RecoveryOptions()
    fits = calib is not None
    methods = recovery_methods(recovery.method, plan, targeted=False, can_distill=fits, can_fit=fits)
    if not fits and recovery.method == "auto":
        logger.info("--recover auto: no --calib to fit on, so the pruned model is not refitted")
    if methods != ("none",) and calib is None:
        raise InputError(f"--recover {recovery.method} fits on calibration data; pass --calib FILE (or --recover none)")
    check_output_folder(Path(out), force=force)
    check_device(recovery.device)
    loaded = load_model(model)
    pruned, record = prune_model(copy.deepcopy(loaded.model), plan), None
    with process_group():
        if methods != ("none",):
            inputs = recovery_inputs(loaded, calib, recovery, fidelity_examples, columns, progress)
            pruned, record = recover_by_measurement(pruned, methods, recovery, inputs)
        if not is_main_process():
            return None
        with staged_folder(out, force=force, contents="prune") as staging:
            save_pruned(pruned, loaded.tokenizer, staging)
            plan.save(staging / "prune_plan.json")
            if record is not None:
                record.save(staging / "recovery.json")
    return plan, record


def recovery_inputs(
    loaded: LoadedModel,
    calib: str,
    recovery: RecoveryOptions,
    fidelity_examples: int,
    columns: Columns,
    progress: bool,
) -> RecoveryInputs:
    """The calibration file's samples as a run draws them: the fit sample, the training text, and the fidelity
    slice (never fitted or distilled on) that judges the recovery against the original."""
    samples = calibration_samples(
        calib,
        loaded.label2id,
        columns,
        Seeds(recovery.seed),
        examples=1,
        fit_examples=recovery.fit_examples,
        fidelity_examples=fidelity_examples,
    )
    held_out = frozenset(example.content for example in samples.fidelity.examples)
    text = TrainingText(loaded, calib, samples.rows, columns, held_out)
    fidelity = encode_data(loaded, samples.fidelity, singles=0, by_length=True)
    judge = Judge(TorchRunner("original", loaded.model), fidelity, fidelity)
    return RecoveryInputs(loaded.model, encode_for_fit(loaded, samples.fit.examples), text, judge, progress)


def export_folder(
    model: str,
    data: str,
    out: str,
    *,
    columns: Columns,
    tune: bool = True,
    threads: int = default("threads"),
    select_examples: int = default("select_examples"),
    latency_examples: int = default("latency_examples"),
    force: bool = False,
) -> ExportRecord:
    """fp32 and int8 graphs, runtime.json and export_record.json (graph_tuning.json with ``tune``): the model
    exported once and checked on rows of ``data``; its int8 recipe tuned as a run tunes it (``tune_recipe``),
    judged against the model itself on the first ``select_examples`` rows."""
    check_counts(select_examples=select_examples, latency_examples=latency_examples)
    check_output_folder(Path(out), force=force)
    loaded = load_model(model)
    rows = load_labelled_data(data, loaded.label2id, **columns).head(select_examples)
    encoded = encode_data(loaded, rows, singles=latency_examples)
    batches = parity_batches(encoded)
    with staged_folder(out, force=force, contents="export") as staging:
        graphs = export_verified(
            loaded.model, loaded.tokenizer, staging, TorchRunner("pytorch", loaded.model), batches, fuse=tune
        )
        tuning = None
        if tune:
            judge = Judge(TorchRunner("pytorch", loaded.model), encoded, encoded)
            tuning = tune_recipe(graphs, judge, encoded, threads=threads)
            tuning.save(staging / "graph_tuning.json")
            logger.info(f"int8 recipe: {tuning.recipe.name} ({tuning.reason})")
        recipe = tuning.recipe if tuning else OPTIMUM_BASELINE
        record = ship_int8(graphs, recipe, batches, source=str(model), thread_singles=encoded.singles)
        graphs.drop_fused()
    return record


def folder_runners(folders: tuple[str, ...], threads: int) -> tuple[dict[tuple[str, str], Runner], Any]:
    """A runner per model in each folder (ONNX graphs with their runtime.json, or a Hugging Face model), and the
    first Hugging Face folder's loaded model (its tokenizer and labels encode the data)."""
    runners: dict[tuple[str, str], Runner] = {}
    tokenizer_source = None
    for name in folders:
        folder = Path(name)
        graphs = {ONNX_FP32: "onnx-fp32", ONNX_INT8: "onnx-int8"}
        present = [file for file in graphs if (folder / file).is_file()]
        if present:
            for file in present:
                runners[folder.name, graphs[file]] = OnnxRunner(file, folder / file, threads=threads)
        else:
            loaded = load_model(folder, attn_implementation=USERS_ATTENTION)
            tokenizer_source = tokenizer_source or loaded
            runners[folder.name, "pytorch-fp32"] = TorchRunner(folder.name, loaded.model)
    if tokenizer_source is None:
        raise InputError("evaluate needs at least one Hugging Face model folder (for its tokenizer and labels)")
    return runners, tokenizer_source


EVALUATION_KIND = "evaluation"


def check_result_file(path: Path, *, force: bool) -> None:
    """An existing results file is replaced only with ``force`` and only when an earlier evaluate wrote it."""
    if not path.exists():
        return
    try:
        ours = json.loads(path.read_text(encoding="utf-8")).get("kind") == EVALUATION_KIND
    except (OSError, ValueError, AttributeError):
        ours = False
    if not force or not ours:
        remedy = "pass --force to replace it" if ours else "it was not written by attr-compress evaluate"
        raise InputError(f"'{path}' already exists; {remedy}, or choose another --out")


def evaluate_folders(
    folders: tuple[str, ...],
    data: str,
    *,
    columns: Columns,
    threads: int = default("threads"),
    latency_examples: int = default("latency_examples"),
    out: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Measurement:
    """Accuracy and latency of model folders side by side; with ``out``, also written as JSON."""
    check_counts(latency_examples=latency_examples)
    if out is not None:
        check_result_file(Path(out), force=force)
    runners, source = folder_runners(folders, threads)
    rows = load_labelled_data(data, source.label2id, **columns)
    encoded = encode_data(source, rows, singles=latency_examples)
    measurement = evaluate(runners, encoded, threads=threads, num_labels=source.config.num_labels, progress=progress)
    if out is not None:
        results = [asdict(row) for row in measurement.results]
        write_json({"kind": EVALUATION_KIND, "schema": 2, "data": data, "results": results}, out)
    return measurement


def explain_folder(
    model: str,
    data: str,
    out: str,
    scoring: ScoringOptions,
    *,
    columns: Columns,
    trees: int = default("trees"),
    force: bool = False,
) -> int:
    """tree_NNN.json/.svg for the first ``trees`` rows of ``data``, integrated as scoring integrates (``scoring``:
    steps, rule, device); returns how many were written."""
    check_counts(trees=trees)
    read_model_config(model)
    check_output_folder(Path(out), force=force)
    loaded = load_model(model)
    rows = load_labelled_data(data, loaded.label2id, **columns)
    with staged_folder(out, force=force, contents="tree") as staging:
        written = explain(
            loaded, rows, trees, staging, steps=scoring.steps, rule=scoring.rule, progress=scoring.progress
        )
    return len(written)
