"""The data a run works on: the evaluation file, and the calibration samples that score, select and fit.

Files come from the options, else from the model's GLUE task (``$GLUE_DIR/<TASK>/`` or the ``datasets``
library when installed and reachable).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.data import LabelledData, find_glue_split, load_labelled_data, sample_labelled_data
from compressor.errors import InputError

GLUE_DATASETS = {"sst2": "sst2", "mrpc": "mrpc", "cola": "cola", "qnli": "qnli", "qqp": "qqp", "rte": "rte"}


@dataclass(frozen=True)
class DataOptions:
    """Where the labelled data comes from and which columns hold what."""

    data: str | None = None
    calib: str | None = None
    select_data: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None

    @property
    def columns(self) -> dict[str, str | None]:
        return {
            "text_column": self.text_column,
            "text_pair_column": self.text_pair_column,
            "label_column": self.label_column,
        }


def _datasets_split(task: str, split: str) -> Path | None:
    """The GLUE split through the ``datasets`` library, when installed and reachable, as a JSON Lines file."""
    name = GLUE_DATASETS.get("".join(ch for ch in task.lower() if ch.isalnum()))
    if name is None:
        return None
    try:
        import datasets
    except ImportError:
        return None
    try:
        rows = datasets.load_dataset("glue", name, split="validation" if split == "dev" else "train")
    except Exception:  # noqa: BLE001 - any failure here (offline, no such config) means "not available"
        return None
    path = Path(tempfile.mkdtemp(prefix="attr-compress-glue-")) / f"{name}-{split}.jsonl"
    rows.to_json(str(path), lines=True)
    return path


@dataclass(frozen=True)
class ResolvedData:
    """The rows a run measures (``evaluation``), the held-out rows it chooses on (``selection``: recipes,
    the target's candidate, the recovery; never rows the model was trained on) and two samples of the
    calibration file: scoring (``calibration``) and fitting the recovery (``fit``, another seed). Without a
    calibration file those two come from the head of the evaluation rows (``shared``)."""

    evaluation: LabelledData
    calibration: LabelledData
    calibration_rows: int
    shared: bool
    source: str
    selection: LabelledData
    selection_how: str
    fit: LabelledData


def hold_out_selection(
    evaluation: LabelledData, options: DataOptions, label2id: dict[str, int], size: int, seed: int
) -> tuple[LabelledData, LabelledData, str]:
    """(rows that measure, rows that choose, how they were chosen): ``--select-data`` when given, else a seeded
    part of the evaluation file (at most half of it), held apart from the rows the report measures on."""
    if options.select_data is not None:
        selection = load_labelled_data(options.select_data, label2id, **options.columns).sample(size, seed)
        return evaluation, selection, f"{len(selection)} rows of --select-data {options.select_data} (seed {seed})"
    count = min(size, len(evaluation) // 2)
    if count < 1:
        raise InputError(
            f"'{evaluation.path}' has {len(evaluation)} row(s): too few to hold some apart for choosing; "
            "pass --select-data FILE or more --data rows"
        )
    selection, rest = evaluation.split(count, seed)
    how = f"{count} rows of {evaluation.path} (seed {seed}), held apart from the {len(rest)} rows measured"
    return rest, selection, how


def resolve_data(
    config: dict[str, Any],
    options: DataOptions,
    label2id: dict[str, int],
    *,
    examples: int,
    seed: int,
    select_examples: int = 1000,
    fit_examples: int = 1000,
) -> ResolvedData:
    """Evaluation and calibration sets: the options, else the model's GLUE task from $GLUE_DIR or ``datasets``."""
    task = config.get("finetuning_task")
    glue_dir = os.environ.get("GLUE_DIR")
    data_path, calib_path, source = options.data, options.calib, "options"
    if data_path is None:
        if not task:
            raise InputError("no --data given and the model's config names no finetuning_task; pass --data FILE")
        found = find_glue_split(task, "dev", glue_dir) or _datasets_split(task, "dev")
        if found is None:
            where = f"$GLUE_DIR ({glue_dir})" if glue_dir else "$GLUE_DIR (not set)"
            raise InputError(f"no dev split for task '{task}' in {where} or via datasets; pass --data FILE")
        data_path, source = str(found), f"task '{task}'"
    if calib_path is None and task:
        found = find_glue_split(task, "train", glue_dir) or (
            _datasets_split(task, "train") if options.data is None else None
        )
        calib_path = str(found) if found else None
    columns = options.columns
    evaluation = load_labelled_data(data_path, label2id, **columns)
    evaluation, selection, how = hold_out_selection(evaluation, options, label2id, select_examples, seed + 1)
    if calib_path is None or Path(calib_path).resolve() == Path(data_path).resolve():
        head = evaluation.head
        return ResolvedData(
            evaluation, head(examples), len(evaluation), True, source, selection, how, head(fit_examples)
        )
    # each sample streams the file once: memory bounded by the sample, not the file
    sample, rows = sample_labelled_data(calib_path, label2id, examples, seed, **columns)
    fit, _ = sample_labelled_data(calib_path, label2id, fit_examples, seed + 2, **columns)
    return ResolvedData(evaluation, sample, rows, False, source, selection, how, fit)
