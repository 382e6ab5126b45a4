"""Distillation from the original into the pruned model: streamed training text, reproducible steps, a time box,
and recovery chosen by measurement on held-out rows."""

import json

import numpy as np
import pytest
import torch

from compressor.distill import DistillOptions, distill, plan_steps, training_batches
from compressor.errors import InputError
from compressor.modeling import LoadedModel, load_model
from compressor.pruning import plan_pruning, prune
from compressor.recovery import RecoveryOptions, recover
from tests.conftest import SENTENCES, write_tsv

HEADS = [[0.5, -0.2, 0.1, 0.9], [0.3, 0.05, -0.4, 0.7]]


def student_of(teacher):
    ffn = np.random.default_rng(0).random((2, teacher.config.intermediate_size))
    return prune(teacher, plan_pruning(HEADS, 0.5, ffn_scores=ffn, keep_ffn=0.4))


def test_distillation_is_reproducible_and_learns(tiny_model_dir, tiny_data):
    loaded = load_model(tiny_model_dir)
    options = DistillOptions(steps=40, batch_size=4, learning_rate=1e-3, seed=3)
    students = [student_of(loaded.model) for _ in range(2)]
    embeddings = students[0].bert.embeddings.word_embeddings.weight.clone()
    records = [distill(loaded.model, student, loaded, tiny_data, options) for student in students]
    assert records[0].steps == 40 and records[0].examples == 160 and records[0].planned_from == "steps"
    assert records[0].loss_last < 0.85 * records[0].loss_first  # it learns the teacher
    for first, second in zip(students[0].parameters(), students[1].parameters(), strict=True):
        assert torch.equal(first, second)  # same seed, same steps: the same weights, bit for bit
    assert torch.equal(students[0].bert.embeddings.word_embeddings.weight, embeddings)  # embeddings stay
    assert not any(parameter.requires_grad for parameter in students[0].parameters())
    assert json.loads(json.dumps(records[0].to_dict()))["kind"] == "distillation"


def test_a_time_box_becomes_a_step_count_without_touching_the_student(tiny_model_dir, tiny_data):
    loaded = load_model(tiny_model_dir)
    student = student_of(loaded.model)
    before = [parameter.clone() for parameter in student.parameters()]
    batches = [batch for batch, _ in zip(training_batches(loaded, tiny_data, 4, 0, {}), range(4), strict=False)]
    steps = plan_steps(loaded.model, student, batches, DistillOptions(minutes=0.05))
    assert steps >= 1
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    record = distill(loaded.model, student, loaded, tiny_data, DistillOptions(minutes=0.02, batch_size=4))
    assert record.planned_from == "minutes" and record.steps >= 1 and record.seconds < 30


def test_training_text_is_streamed_in_a_new_order_every_epoch(tiny_model_dir, tmp_path):
    loaded = load_model(tiny_model_dir)
    data = write_tsv(tmp_path / "train.tsv", SENTENCES * 3)  # 36 rows, more than one batch per epoch
    stream = training_batches(loaded, data, 1, 7, {})
    epochs = [[tuple(next(stream)["input_ids"][0].tolist()) for _ in range(36)] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]  # every row, reshuffled
    assert len(set(epochs[0])) == len(SENTENCES)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"minutes": 0}, "--distill-minutes must be above 0"),
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
