"""Distillation from the original into the pruned model: streamed training text, a length fixed by the data and
the options (reproducible bit for bit), an opt-in time cap that says what it costs, held-out rows never trained."""

import json
import logging

import numpy as np
import pytest
import torch
from attr_compress.compressor.data.lengths import LengthMatch
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import LoadedModel, load_model, token_lengths
from attr_compress.compressor.pruning.prune import plan_pruning, prune
from attr_compress.compressor.recovery.distill import (
    DistillOptions,
    TrainingText,
    distill,
    distillation_loss,
    quantization_aware,
    seconds_per_step,
    training_batches,
)
from attr_compress.compressor.recovery.lsq import RecoveryOptions, recover
from attr_compress.compressor.recovery.stream import _passes

from tests.helpers import SENTENCES, WORDS, write_tsv

HEADS = [[0.5, -0.2, 0.1, 0.9], [0.3, 0.05, -0.4, 0.7]]
SENTENCES_AS_EXAMPLES = [Example(text, None, 0, row) for row, (text, _) in enumerate(SENTENCES, 1)]


def student_of(teacher):
    ffn = np.random.default_rng(0).random((2, teacher.config.intermediate_size))
    return prune(teacher, plan_pruning(HEADS, 0.5, ffn_scores=ffn, keep_ffn=0.4))


def test_distillation_is_reproducible_and_learns(tiny_model_dir, tiny_data):
    loaded = load_model(tiny_model_dir)
    options = DistillOptions(steps=40, batch_size=4, learning_rate=1e-3, seed=3)
    students = [student_of(loaded.model) for _ in range(2)]
    embeddings = students[0].bert.embeddings.word_embeddings.weight.clone()
    text = TrainingText(loaded, str(tiny_data), rows=12)
    records = [distill(loaded.model, student, text, options) for student in students]
    assert records[0].steps == 40 and records[0].examples == 160 and records[0].planned_from == "steps"
    assert records[0].loss_last < 0.85 * records[0].loss_first  # it learns the teacher
    for first, second in zip(students[0].parameters(), students[1].parameters(), strict=True):
        assert torch.equal(first, second)  # same seed, same steps: the same weights, bit for bit
    assert torch.equal(students[0].bert.embeddings.word_embeddings.weight, embeddings)  # embeddings stay
    assert not any(parameter.requires_grad for parameter in students[0].parameters())
    assert json.loads(json.dumps(records[0].to_dict()))["kind"] == "distillation"


def test_the_length_comes_from_the_data_and_the_options_never_the_machine():
    assert DistillOptions().planned_steps(rows=67_000, mean_tokens=25) == 750  # 600,000 tokens, batches of 32
    assert DistillOptions().planned_steps(rows=1_000, mean_tokens=25) == 8 * 1_000 // 32  # at most 8 passes
    assert DistillOptions(steps=7).planned_steps(rows=10, mean_tokens=25) == 7
    assert DistillOptions(tokens=640, batch_size=32).planned_steps(rows=1_000, mean_tokens=10) == 2
    # a pair task costs what a single-sentence task costs: twice the tokens a row, half the rows
    assert DistillOptions().planned_steps(rows=67_000, mean_tokens=50) == 375


def test_the_hidden_state_targets(tiny_model_dir):
    """Logits only; the last layer's first token (what the classifier reads); every layer's every real token."""
    loaded = load_model(tiny_model_dir)
    student = student_of(loaded.model)
    batch = dict(loaded.tokenizer(["a good film", "a bad one , really"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        teacher_out = loaded.model(**batch, output_hidden_states=True)
        student_out = student(**batch, output_hidden_states=True)
    mask = batch["attention_mask"]
    losses = {
        hidden: float(distillation_loss(student_out, teacher_out, mask, DistillOptions(hidden=hidden)))
        for hidden in ("none", "first-token", "every-token")
    }
    kl = losses["none"]
    first = ((student_out.hidden_states[-1][:, 0] - teacher_out.hidden_states[-1][:, 0]) ** 2).sum()
    energy = (teacher_out.hidden_states[-1][:, 0] ** 2).sum()
    assert losses["first-token"] == pytest.approx(kl + float(first / energy), rel=1e-5)
    assert losses["every-token"] > kl and losses["every-token"] != losses["first-token"]
    # the first token alone: changing a later token's teacher state leaves the first-token loss unchanged
    shifted = [state.clone() for state in teacher_out.hidden_states]
    shifted[-1][:, 1:] += 1.0
    moved = type(teacher_out)(logits=teacher_out.logits, hidden_states=tuple(shifted))
    assert float(distillation_loss(student_out, moved, mask, DistillOptions(hidden="first-token"))) == pytest.approx(
        losses["first-token"], rel=1e-6
    )


def test_training_text_follows_the_served_lengths(tiny_model_dir, tmp_path):
    """With a length match, a stream drawn from short and long rows keeps rows in proportion to the served
    lengths: served rows all long, so the short rows are (almost) never read."""
    loaded = load_model(tiny_model_dir)
    short = [(f"w{index}", 1) for index in range(40)]
    long = [(" ".join(f"w{index}" for index in range(12)) + f" z{row}", 0) for row in range(10)]
    data = write_tsv(tmp_path / "train.tsv", short + long)
    lengths = token_lengths(loaded, [Example(text, None, 0, 1) for text, _ in short + long])
    served = [max(lengths)] * 40
    match = LengthMatch.between(served, lengths)
    text = TrainingText(loaded, str(data), rows=50, match=match)
    assert text.rows_per_pass == pytest.approx(10, abs=0.5) and text.mean_tokens() == max(lengths)
    stream = training_batches(text, 1, 0)
    seen = [int(next(stream)["attention_mask"].sum()) for _ in range(30)]
    assert min(seen) == max(lengths)


def test_later_passes_read_augmented_text(tiny_model_dir, tmp_path):
    """The same stream with and without augmentation: the first pass's rows read as they are, later passes' rows
    with words replaced, one token for one (a group of 50 batches of one row spans several passes of 6 rows)."""
    loaded = load_model(tiny_model_dir)
    rows = [(" ".join(WORDS[index : index + 6]), 0) for index in range(0, 36, 6)]
    data = write_tsv(tmp_path / "train.tsv", rows)
    plain = training_batches(TrainingText(loaded, str(data), rows=len(rows)), 1, 0)
    augmented = training_batches(TrainingText(loaded, str(data), rows=len(rows)), 1, 0, augment=0.5)
    pairs = [(next(plain)["input_ids"][0].tolist(), next(augmented)["input_ids"][0].tolist()) for _ in range(50)]
    same = sum(first == second for first, second in pairs)
    assert len(rows) <= same < len(pairs)  # the first pass's six rows at least, never every row
    assert all(len(first) == len(second) for first, second in pairs)  # one token in, one token out


def test_every_batch_is_full_across_passes(tiny_model_dir, tmp_path):
    """A pass's last rows join the next pass's: with rows kept at random, no batch is short (a torchrun share
    of an empty batch cannot run the model)."""
    loaded = load_model(tiny_model_dir)
    data = write_tsv(tmp_path / "train.tsv", SENTENCES * 3)
    lengths = token_lengths(loaded, [Example(text, None, 0, 1) for text, _ in SENTENCES * 3])
    text = TrainingText(loaded, str(data), rows=36, match=LengthMatch.between(lengths[::2], lengths))
    stream = training_batches(text, 5, 0)
    assert {len(next(stream)["input_ids"]) for _ in range(40)} == {5}


def test_a_time_cap_is_opt_in_and_says_it_cut_the_training(tiny_model_dir, tiny_data, caplog):
    loaded = load_model(tiny_model_dir)
    student = student_of(loaded.model)
    before = [parameter.clone() for parameter in student.parameters()]
    text = TrainingText(loaded, str(tiny_data), rows=12)
    batches = [batch for batch, _ in zip(training_batches(text, 4, 0), range(4), strict=False)]
    assert seconds_per_step(loaded.model, student, batches, DistillOptions()) > 0
    assert all(
        torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True)
    )  # the probe touches nothing
    options = DistillOptions(steps=100_000, minutes=0.02, batch_size=4)
    with caplog.at_level(logging.INFO, logger="attr_compress"):
        record = distill(loaded.model, student, text, options)
    assert record.planned_from == "minutes" and 1 <= record.steps < 100_000 and record.seconds < 30
    assert record.estimated_seconds > 0 and "depends on this machine's speed" in caplog.text
    uncapped = distill(loaded.model, student_of(loaded.model), text, DistillOptions(steps=3, batch_size=4))
    assert uncapped.planned_from == "steps" and uncapped.steps == 3


def test_held_out_rows_are_never_trained_on(tiny_model_dir, tmp_path):
    loaded = load_model(tiny_model_dir)
    data = write_tsv(tmp_path / "train.tsv", SENTENCES)
    held_out = frozenset(example.content for example in SENTENCES_AS_EXAMPLES[:5])
    text = TrainingText(loaded, str(data), rows=len(SENTENCES), held_out=held_out)
    stream = training_batches(text, 1, 0)
    seen = {tuple(next(stream)["input_ids"][0].tolist()) for _ in range(3 * (len(SENTENCES) - 5))}
    expected = {tuple(loaded.tokenizer(text)["input_ids"]) for text, _ in SENTENCES[5:]}
    assert seen == expected and text.training_rows == len(SENTENCES) - 5


def test_training_text_is_streamed_in_a_new_order_every_epoch(tiny_model_dir, tmp_path):
    loaded = load_model(tiny_model_dir)
    data = write_tsv(tmp_path / "train.tsv", SENTENCES * 3)  # 36 rows, more than one batch per epoch
    passes = _passes(TrainingText(loaded, str(data), rows=36), 7)
    epochs = [[next(passes) for _ in range(36)] for _ in range(2)]
    assert [epoch for _, epoch in epochs[0]] == [0] * 36 and [epoch for _, epoch in epochs[1]] == [1] * 36
    texts = [[example.text for example, _ in epoch] for epoch in epochs]
    assert sorted(texts[0]) == sorted(texts[1]) and texts[0] != texts[1]  # every row, reshuffled
    assert len(set(texts[0])) == len(SENTENCES)
    stream = training_batches(TrainingText(loaded, str(data), rows=36), 1, 7)
    served = [tuple(next(stream)["input_ids"][0].tolist()) for _ in range(50)]  # one group of 50 batches
    assert len(set(served)) == len(SENTENCES)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"minutes": 0.0}, "--distill-minutes must be above 0"),
        ({"tokens": 0}, "--distill-tokens must be at least 1"),
        ({"hidden": "all"}, "--distill-hidden must be one of"),
        ({"augment": 1.0}, "--distill-augment must be in"),
        ({"steps": 0}, "--distill-steps must be at least 1"),
        ({"learning_rate": 0}, "positive learning rate"),
    ],
)
def test_bad_distillation_options_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        DistillOptions(**options)


def test_distill_without_training_text_and_auto_outside_a_run_are_refused(tiny_model_dir):
    loaded = load_model(tiny_model_dir)
    student = student_of(loaded.model)
    with pytest.raises(InputError, match="trains on the task's training file; pass --calib"):
        recover(loaded.model, student, [], RecoveryOptions("distill"))
    with pytest.raises(InputError, match="auto is chosen by measurement inside a run"):
        recover(loaded.model, student, [], RecoveryOptions("auto"))
    with pytest.raises(InputError, match="--recover must be one of"):
        RecoveryOptions("retrain")
    assert isinstance(LoadedModel.wrap(loaded.model, loaded.tokenizer), LoadedModel)


def test_the_int8_aware_end_rounds_weights_and_inputs_as_onnxruntime_does(tiny_model_dir):
    loaded = load_model(tiny_model_dir)
    linear = loaded.model.bert.encoder.layer[0].intermediate.dense
    weight = linear.weight.detach().clone()
    hidden = torch.randn(2, 5, weight.shape[1])
    with quantization_aware(loaded.model):
        inside = linear(hidden)
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    low, high = min(float(hidden.min()), 0.0), max(float(hidden.max()), 0.0)
    step = (high - low) / 255
    zero = round(-low / step)
    rounded = (torch.clamp(torch.round(hidden / step) + zero, 0, 255) - zero) * step
    expected = rounded @ (torch.round(weight / scale) * scale).T + linear.bias
    assert torch.allclose(inside, expected, atol=1e-5)
    assert not torch.allclose(inside, linear(hidden), atol=1e-6)  # outside: float weights and inputs again
    assert torch.equal(linear.weight, weight) and not linear._forward_pre_hooks
