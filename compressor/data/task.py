"""The data a run works on: the evaluation file, and the calibration samples that score, select and fit.

Files come from the options, else from the model's GLUE task (``$GLUE_DIR/<TASK>/`` or the ``datasets``
library when installed and reachable).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from attr_compress.compressor.data.files import (
    LabelledData,
    find_glue_split,
    hashed_sample,
    load_labelled_data,
    sample_labelled_data,
    stream_examples,
)
from attr_compress.compressor.data.lengths import LengthMatch, Lengths, measured
from attr_compress.compressor.defaults import default
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.seeds import Seeds

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
    """The rows a run measures (``evaluation``), the rows it chooses on (``selection``: recipes, the target's
    candidate, the recovery) and two samples of the calibration file: scoring (``calibration``) and fitting the
    recovery (``fit``, another seed). Without a calibration file (``shared``) those two come from a seeded part
    of the evaluation file held apart from the rest. ``fidelity`` is a large slice of the calibration file
    (chosen by content hash, never scored, fitted or distilled on) whose text judges every candidate by its
    agreement with the original; without a calibration file, the selection rows' text.

    No measured row is also a row that chose, scored, fitted or trained (compared by content: ``Example.content``),
    and no row that chooses was trained on: such rows are removed, and ``excluded`` says how many, one line each,
    so a report never calls a row held out that was not."""

    evaluation: LabelledData
    calibration: LabelledData
    calibration_rows: int
    shared: bool
    source: str
    selection: LabelledData
    selection_how: str
    fit: LabelledData
    fidelity: LabelledData  # unlabelled use: candidates are judged by agreement with the original here
    excluded: tuple[str, ...] = ()
    lengths: LengthMatch | None = None  # how the fidelity and fit samples were weighted to follow --data's lengths


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
    how = f"{count} rows of {evaluation.path} (seed {seed}), held apart from the rows measured"
    return rest, selection, how


def without(
    data: LabelledData, contents: AbstractSet[tuple[str, str | None]], note: str
) -> tuple[LabelledData, list[str]]:
    """``data`` less its rows whose content is in ``contents``, and a one-line note when any were removed
    (``note`` says {count} {rows} ... {were})."""
    kept = tuple(example for example in data.examples if example.content not in contents)
    removed = len(data) - len(kept)
    one = removed == 1
    notes = (
        [note.format(count=removed, rows="row" if one else "rows", were="was" if one else "were")] if removed else []
    )
    return replace(data, examples=kept), notes


def calibration_contents(path: str, label2id: dict[str, int], columns: dict[str, str | None]) -> set[Any]:
    """The content of every row of the calibration file (the distillation trains on all of it), in one pass."""
    return {example.content for example in stream_examples(path, label2id, **columns)}


def keep_claims(
    evaluation: LabelledData,
    selection: LabelledData,
    trained: AbstractSet[tuple[str, str | None]],
    options: DataOptions,
    shared: bool,
) -> tuple[LabelledData, LabelledData, list[str]]:
    """Measured rows that also trained, and choosing rows that also trained, removed (see ResolvedData)."""
    trainer = "the rows that scored heads and fitted the recovery" if shared else "--calib"
    evaluation, measured = without(
        evaluation, trained, f"{{count}} {{rows}} of --data also in {trainer} {{were}} not measured"
    )
    selection, chose = without(
        selection,
        trained,
        f"{{count}} {{rows}} of {chooser_name(options)} also in {trainer} {{were}} not used to choose",
    )
    if not evaluation.examples:
        raise InputError(
            f"every row of --data '{evaluation.path}' is also a row that chooses or trains ({chooser_name(options)}, "
            f"{trainer}); pass --data rows the run does not otherwise use"
        )
    if not selection.examples:
        raise InputError(
            f"every row of {chooser_name(options)} is also in {trainer}; pass --select-data rows apart from --calib"
        )
    return evaluation, selection, [*measured, *chose]


def chooser_name(options: DataOptions) -> str:
    return "--select-data" if options.select_data else "the selection rows"


FIDELITY_FLOOR = 400  # rows a fidelity slice may keep however small the file (paired comparisons need few)
FIDELITY_SHARE = 0.1  # beyond the floor, at most this share of the calibration file is held out to judge


@dataclass(frozen=True)
class CalibrationSamples:
    """The samples of a calibration file: the unlabelled slice that judges (``fidelity``, chosen by content
    hash), and apart from it the examples that score and those that fit; ``rows`` in the file; ``match``: how the
    judging and fitting samples were weighted to follow the served lengths (None: uniform)."""

    fidelity: LabelledData
    scoring: LabelledData
    fit: LabelledData
    rows: int
    match: LengthMatch | None = None


def fidelity_size(requested: int, rows: int) -> int:
    """The fidelity slice's size for a file of ``rows`` rows: as requested, but at most a tenth of a large file
    beyond FIDELITY_FLOOR rows and a third of any file, so small tasks keep most rows to train on."""
    return min(requested, max(FIDELITY_FLOOR, int(rows * FIDELITY_SHARE)), rows // 3)


def length_match(
    path: str, label2id: dict[str, int], columns: dict[str, str | None], served: Sequence[int], lengths: Lengths
) -> tuple[LengthMatch, dict[int, int]]:
    """How the calibration file's token lengths compare with the served rows' (one streaming pass), and each
    row's length by row number (so later samples of the file need not tokenise it again)."""
    by_row = {example.row: length for example, length in measured(stream_examples(path, label2id, **columns), lengths)}
    return LengthMatch.between(served, list(by_row.values())), by_row


def calibration_samples(
    path: str,
    label2id: dict[str, int],
    columns: dict[str, str | None],
    seeds: Seeds,
    *,
    examples: int,
    fit_examples: int,
    fidelity_examples: int,
    served: Sequence[int] | None = None,
    lengths: Lengths | None = None,
) -> CalibrationSamples:
    """Every sample of the calibration file, each in one streaming pass (memory bounded by the samples). Given the
    served rows' token lengths (``served``, counted by ``lengths``), the judging and fitting samples follow them
    (``LengthMatch``); the scoring sample stays uniform (attribution ranks units, it does not judge)."""
    match, weights = None, None
    if served is not None and lengths is not None:
        match, by_row = length_match(path, label2id, columns, served, lengths)
        weights = match.weigher(by_row)
    size = functools.partial(fidelity_size, fidelity_examples)
    fidelity, rows = hashed_sample(
        path, label2id, fidelity_examples, seeds.fidelity, at_most=size, weights=weights, **columns
    )
    apart = {example.content for example in fidelity.examples}
    scoring, _ = sample_labelled_data(path, label2id, examples, seeds.scoring, exclude=apart, **columns)
    if weights is None:
        fit, _ = sample_labelled_data(path, label2id, fit_examples, seeds.fit, exclude=apart, **columns)
    else:
        fit, _ = hashed_sample(path, label2id, fit_examples, seeds.fit, weights=weights, exclude=apart, **columns)
    return CalibrationSamples(fidelity, scoring, fit, rows, match)


def resolve_data(
    config: dict[str, Any],
    options: DataOptions,
    label2id: dict[str, int],
    *,
    examples: int,
    seed: int,
    select_examples: int = default("select_examples"),
    fit_examples: int = default("fit_examples"),
    fidelity_examples: int = default("fidelity_examples"),
    lengths: Lengths | None = None,
) -> ResolvedData:
    """Evaluation and calibration sets: the options, else the model's GLUE task from $GLUE_DIR or ``datasets``.
    With ``lengths`` (the model's token counts), the calibration samples that judge and fit follow the token
    lengths of every ``--data`` row (text only: what the model will be served)."""
    data_path, calib_path, source = data_files(config, options)
    columns, seeds = options.columns, Seeds(seed)
    evaluation = load_labelled_data(data_path, label2id, **columns)
    served = None if lengths is None else list(lengths(evaluation.examples))
    evaluation, selection, how = hold_out_selection(evaluation, options, label2id, select_examples, seeds.selection)
    chose = {example.content for example in selection.examples}
    evaluation, excluded = without(
        evaluation, chose, f"{{count}} {{rows}} of --data also in {chooser_name(options)} {{were}} not measured"
    )
    if not evaluation.examples:
        raise InputError(
            f"every row of --data '{data_path}' is also a row that chooses ({chooser_name(options)}); pass --data "
            "rows the run does not otherwise use"
        )
    if calib_path is None or Path(calib_path).resolve() == Path(data_path).resolve():
        evaluation, samples = shared_pool(evaluation, selection, seeds, examples, fit_examples)
        trained = {example.content for example in samples.scoring.examples + samples.fit.examples}
    else:
        samples = calibration_samples(
            calib_path,
            label2id,
            columns,
            seeds,
            examples=examples,
            fit_examples=fit_examples,
            fidelity_examples=fidelity_examples,
            served=served,
            lengths=lengths,
        )
        trained = calibration_contents(calib_path, label2id, columns)
    shared = calib_path is None or Path(calib_path).resolve() == Path(data_path).resolve()
    evaluation, selection, more = keep_claims(evaluation, selection, trained, options, shared=shared)
    return ResolvedData(
        evaluation,
        samples.scoring,
        samples.rows,
        shared,
        source,
        selection,
        how,
        samples.fit,
        samples.fidelity,
        (*excluded, *more),
        samples.match,
    )


def shared_pool(
    evaluation: LabelledData, selection: LabelledData, seeds: Seeds, examples: int, fit_examples: int
) -> tuple[LabelledData, CalibrationSamples]:
    """Without a calibration file: a seeded part of the evaluation rows scores and fits (the selection rows judge),
    and the rest is measured."""
    pool_size = min(max(examples, fit_examples), len(evaluation) // 2)
    if pool_size < 1:
        raise InputError(
            f"'{evaluation.path}' has too few rows to score, choose and measure on apart from each other; "
            "pass --calib FILE or more --data rows"
        )
    pool, evaluation = evaluation.split(pool_size, seeds.shared_pool)
    return evaluation, CalibrationSamples(selection, pool.head(examples), pool.head(fit_examples), len(pool))


def data_files(config: dict[str, Any], options: DataOptions) -> tuple[str, str | None, str]:
    """(evaluation file, calibration file or None, where they came from): the options, else the model's task."""
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
    return data_path, calib_path, source
