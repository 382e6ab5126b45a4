"""Text like what will be served: the judge's rows and the fitting rows drawn from the calibration file follow the
token lengths of the --data rows; small files keep most rows to train on; a cheap judge keeps long rows too."""

from pathlib import Path

import numpy as np
import pytest
from attr_compress.compressor.data.files import hashed_sample
from attr_compress.compressor.data.lengths import LengthMatch, describe_lengths
from attr_compress.compressor.data.task import FIDELITY_FLOOR, DataOptions, fidelity_size, resolve_data
from attr_compress.compressor.models.loading import load_model, token_lengths
from attr_compress.evaluation.fidelity import Judge, paired_drop

from tests.helpers import write_tsv


def word_count(examples):
    return [
        len(example.text.split()) + (len(example.text_pair.split()) if example.text_pair else 0) for example in examples
    ]


def phrases_and_sentences(path: Path, phrases: int = 300, sentences: int = 60) -> Path:
    """A calibration file like SST-2's training file: mostly phrases of 1-3 words, some sentences of 15-25."""
    rng = np.random.default_rng(0)
    rows = [(" ".join(f"p{index}w{w}" for w in range(1 + index % 3)), index % 2) for index in range(phrases)]
    rows += [
        (" ".join(f"s{index}w{w}" for w in range(15 + int(rng.integers(11)))), index % 2) for index in range(sentences)
    ]
    return write_tsv(path, rows)


def test_the_match_weights_each_bin_by_its_served_over_its_available_share():
    served = [20] * 50 + [30] * 50
    available = [2] * 800 + [20] * 100 + [30] * 100
    match = LengthMatch.between(served, available)
    weights = match.weights([2, 20, 30])
    assert weights[0] == 0  # shorter than every served row: never drawn
    assert weights[1] == pytest.approx(0.5 / 0.1) and weights[2] == pytest.approx(0.5 / 0.1)
    assert match.acceptance([20, 30]).tolist() == [1.0, 1.0] and match.kept_share == pytest.approx(0.2)
    assert match.covered == pytest.approx(1.0)
    assert LengthMatch.between(served, [2] * 10 + [20] * 10).covered == pytest.approx(0.5)  # no rows of 30
    assert describe_lengths([1, 2, 3, 4, 5]) == (3.0, 2.0, 3.0, 4.0) and describe_lengths([]) == (0.0,) * 4


def test_a_weighted_sample_follows_the_weights_and_unweighted_is_the_hash_order(tmp_path):
    path = phrases_and_sentences(tmp_path / "train.tsv")
    uniform, rows = hashed_sample(path, {"0": 0, "1": 1}, 50, seed=4)
    again, _ = hashed_sample(path, {"0": 0, "1": 1}, 50, seed=4, weights=lambda chunk: np.ones(len(chunk)))
    assert rows == 360 and uniform.examples == again.examples  # weights of one: the plain hash sample
    long_only, _ = hashed_sample(
        path,
        {"0": 0, "1": 1},
        50,
        seed=4,
        weights=lambda chunk: np.array([float(len(e.text.split()) > 10) for e in chunk]),
    )
    assert len(long_only) == 50 and min(word_count(long_only.examples)) >= 15
    assert np.mean(word_count(uniform.examples)) < 8  # uniformly: mostly phrases
    excluded, _ = hashed_sample(path, {"0": 0, "1": 1}, 360, seed=4, exclude={uniform.examples[0].content})
    assert len(excluded) == 359


def test_the_judge_and_the_fit_rows_follow_the_served_lengths(tiny_model_dir, tmp_path):
    loaded = load_model(tiny_model_dir)
    calib = phrases_and_sentences(tmp_path / "train.tsv", phrases=1200, sentences=300)
    served = [(" ".join(f"d{index}w{w}" for w in range(16 + index % 8)), index % 2) for index in range(80)]
    data = write_tsv(tmp_path / "dev.tsv", served)

    def resolved(lengths):
        return resolve_data(
            loaded.config.to_dict(),
            DataOptions(data=str(data), calib=str(calib)),
            loaded.label2id,
            examples=16,
            seed=0,
            select_examples=20,
            fit_examples=40,
            fidelity_examples=100,
            lengths=lengths,
        )

    matched = resolved(lambda examples: token_lengths(loaded, examples))
    plain = resolved(None)
    assert matched.lengths is not None and plain.lengths is None
    assert np.mean(word_count(plain.fidelity.examples)) < 10  # drawn uniformly: phrases
    assert np.mean(word_count(matched.fidelity.examples)) >= 15  # drawn like the served rows: sentences
    assert np.mean(word_count(matched.fit.examples)) >= 15
    assert len(matched.fidelity) == len(plain.fidelity) == 100
    apart = {example.content for example in matched.fidelity.examples}
    assert not apart & {example.content for example in matched.fit.examples}


def test_a_small_file_keeps_most_rows_to_train_on():
    assert fidelity_size(4000, 67_000) == 4000  # SST-2's training file: as asked
    assert fidelity_size(4000, 3_668) == FIDELITY_FLOOR  # MRPC's: a few hundred rows judge, the rest train
    assert fidelity_size(4000, 20_000) == 2000
    assert fidelity_size(100, 3_668) == 100


def test_a_cheap_judge_spreads_over_the_lengths(tiny_model_dir, tmp_path):
    """A subset of a judge whose rows are sorted by length keeps long rows too, and stays aligned with the
    original's outputs."""
    from attr_compress.compressor.data.encoded import encode_data
    from attr_compress.compressor.data.files import load_labelled_data
    from attr_compress.exporters.runtime import TorchRunner

    loaded = load_model(tiny_model_dir)
    path = phrases_and_sentences(tmp_path / "train.tsv", phrases=200, sentences=200)
    rows = encode_data(loaded, load_labelled_data(path, {"0": 0, "1": 1}), singles=0, by_length=True)
    original = TorchRunner("original", loaded.model)
    judge = Judge(original, rows, rows)
    part = judge.subset(100)
    assert 90 <= part.rows <= 130
    lengths = [batch["attention_mask"].sum(axis=1).max() for batch in part.fidelity_rows.batches]
    assert max(lengths) == max(batch["attention_mask"].sum(axis=1).max() for batch in rows.batches)
    verdict = part.judge(original)
    assert verdict.fidelity.disagreements == 0 and verdict.fidelity.rows == part.rows


def test_the_paired_drop_counts_every_changed_class():
    drop = paired_drop(np.array([0, 1, 2, 2]), np.array([0, 2, 1, 2]), np.array([0, 0, 0, 2]))
    assert drop.lost == 0 and drop.gained == 0 and drop.changed == 2 and drop.disagreement == 0.5
