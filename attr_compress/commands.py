"""One stage from files to a folder, as each `attr-compress <stage>` command runs it: read the inputs from
disk, call the stage, write the outputs into a staged folder (``staged_folder``: renamed into place only
when complete, ``--force`` only over our own folders)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from compressor.artifacts import write_json
from compressor.data import load_labelled_data, sample_labelled_data
from compressor.distill import TrainingText
from compressor.distributed import is_main_process, process_group
from compressor.encoded import encode_data, parity_batches
from compressor.errors import InputError, check_counts
from compressor.explain import explain
from compressor.importance import HeadImportance
from compressor.modeling import USERS_ATTENTION, load_model, read_model_config, to_device
from compressor.neurons import FFN_IMPORTANCE_FILE, NeuronImportance
from compressor.outputs import check_output_folder, staged_folder
from compressor.pruning import PrunePlan, check_unpruned, plan_pruning, prune_model, save_pruned
from compressor.recovery import RecoveryOptions, RecoveryRecord, encode_for_fit, recover
from compressor.scoring import ScoringOptions, score_heads, score_neurons
from evaluation.fidelity import Judge
from evaluation.measure import Measurement, evaluate
from evaluation.plots import save_importance
from evaluation.tuning import tune_recipe
from exporters.onnx_export import ONNX_FP32, ONNX_INT8
from exporters.recipes import OPTIMUM_BASELINE
from exporters.runtime import OnnxRunner, Runner, TorchRunner
from exporters.verified import ExportRecord, export_verified, ship_int8

Log = Callable[[str], None]
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
        to_device(loaded, options.device)
        main = is_main_process()
        scoring = replace(options, progress=options.progress and main)
        heads = score_heads(loaded, data, scoring)
        neurons = score_neurons(loaded, data, scoring) if ffn else None
        if not main:
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
    columns: Columns,
    force: bool = False,
    log: Log = lambda message: None,
) -> tuple[PrunePlan, RecoveryRecord | None]:
    """The pruned Hugging Face folder, prune_plan.json and (with a recovery) recovery.json. Here ``auto`` (no
    held-out rows to measure on) means lsq given --calib, else no recovery for heads alone."""
    heads = HeadImportance.load(importance)
    neurons = NeuronImportance.load(ffn_importance) if ffn_importance else None
    plan = plan_pruning(heads.scores, keep, heads.order, ffn_scores=neurons and neurons.scores, keep_ffn=keep_ffn)
    recovery = recovery or RecoveryOptions()
    if recovery.method == "auto":
        recovery = replace(recovery, method="lsq" if calib is not None or keep_ffn < 1 else "none")
    if recovery.method != "none" and calib is None:
        raise InputError(f"--recover {recovery.method} fits on calibration data; pass --calib FILE (or --recover none)")
    check_output_folder(Path(out), force=force)
    loaded = load_model(model)
    pruned = prune_model(copy.deepcopy(loaded.model), plan)
    record = None
    if recovery.method != "none":
        fit, rows = sample_labelled_data(calib, loaded.label2id, recovery.fit_examples, recovery.fit_seed, **columns)
        text = TrainingText(loaded, calib, rows, columns)
        batches = encode_for_fit(loaded, fit.examples)
        record = recover(loaded.model, pruned, batches, recovery, text=text, progress=True, log=log)
    with staged_folder(out, force=force, contents="prune", log=log) as staging:
        save_pruned(pruned, loaded.tokenizer, staging)
        plan.save(staging / "prune_plan.json")
        if record is not None:
            record.save(staging / "recovery.json")
    return plan, record


def export_folder(
    model: str,
    data: str,
    out: str,
    *,
    columns: Columns,
    tune: bool = True,
    threads: int = 1,
    examples: int = 300,
    latency_examples: int = 100,
    force: bool = False,
    log: Log = lambda message: None,
) -> ExportRecord:
    """fp32 and int8 graphs, runtime.json and export_record.json (graph_tuning.json with ``tune``): the model
    exported once, checked on the first ``examples`` rows of ``data``, its int8 recipe tuned on them."""
    check_counts(threads=threads, examples=examples, latency_examples=latency_examples)
    check_output_folder(Path(out), force=force)
    loaded = load_model(model)
    rows = load_labelled_data(data, loaded.label2id, **columns).head(examples)
    encoded = encode_data(loaded, rows, singles=latency_examples)
    batches = parity_batches(encoded)
    with staged_folder(out, force=force, contents="export", log=log) as staging:
        graphs = export_verified(
            loaded.model, loaded.tokenizer, staging, TorchRunner("pytorch", loaded.model), batches, fuse=tune, log=log
        )
        tuning = None
        if tune:
            judge = Judge(TorchRunner("pytorch", loaded.model), encoded, encoded)
            tuning = tune_recipe(graphs, judge, encoded, threads=threads, log=log)
            tuning.save(staging / "graph_tuning.json")
            log(f"int8 recipe: {tuning.recipe.name} ({tuning.reason})")
        recipe = tuning.recipe if tuning else OPTIMUM_BASELINE
        record = ship_int8(graphs, recipe, batches, source=str(model), thread_singles=encoded.singles, log=log)
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
    threads: int = 1,
    latency_examples: int = 200,
    out: str | None = None,
    force: bool = False,
) -> Measurement:
    """Accuracy and latency of model folders side by side; with ``out``, also written as JSON."""
    check_counts(threads=threads, latency_examples=latency_examples)
    if out is not None:
        check_result_file(Path(out), force=force)
    runners, source = folder_runners(folders, threads)
    rows = load_labelled_data(data, source.label2id, **columns)
    encoded = encode_data(source, rows, singles=latency_examples)
    measurement = evaluate(runners, encoded, threads=threads, num_labels=source.config.num_labels, progress=True)
    if out is not None:
        results = [asdict(row) for row in measurement.results]
        write_json({"kind": EVALUATION_KIND, "schema": 2, "data": data, "results": results}, out)
    return measurement


def explain_folder(
    model: str,
    data: str,
    out: str,
    *,
    columns: Columns,
    trees: int = 5,
    steps: int = 20,
    rule: str = "left",
    force: bool = False,
) -> int:
    """tree_NNN.json/.svg for the first ``trees`` rows of ``data``; returns how many were written."""
    check_counts(trees=trees, steps=steps)
    read_model_config(model)
    check_output_folder(Path(out), force=force)
    loaded = load_model(model)
    rows = load_labelled_data(data, loaded.label2id, **columns)
    with staged_folder(out, force=force, contents="tree") as staging:
        written = explain(loaded, rows, trees, staging, steps=steps, rule=rule, progress=True)
    return len(written)
