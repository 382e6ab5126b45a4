"""Distillation from the original model (the teacher) into the pruned one (the student), streamed over the
task's whole training file: the recovery that re-trains.

The student matches the teacher's softened class distribution (KL divergence at a temperature) and, layer by
layer, its hidden states (same depth and width after pruning, so layer i matches layer i: TinyBERT's and
CoFi's layer-wise loss without a projection). Training text is streamed from the file through a seeded
shuffle buffer, epoch after epoch, so memory stays bounded whatever the file's size.

The length is fixed by the data and the options, never by the machine's speed: ``steps`` when given, else
``examples`` (at most ``epochs`` passes over the training rows) in batches of ``batch_size``; the same seed
gives the same weights bit for bit. A short timing probe before training only estimates how long it will
take (shown, and recorded). ``minutes`` is an opt-in cap that stops training when the time is up: it makes
the result depend on this machine's speed and load, and the record and the log say so.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.cache import file_digest
from attr_compress.compressor.data.files import stream_examples
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.defaults import default
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.families import encoder_layers
from attr_compress.compressor.models.loading import LoadedModel, encode, modules_on, token_lengths
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.pruning.prune import model_layer_spans
from attr_compress.compressor.scoring.distributed import all_reduce_sum, broadcast_from_main, rank_and_size, shard
from torch import nn

logger = logging.getLogger(__name__)

SHUFFLE_BUFFER = 8192
LENGTH_GROUP = 50  # batches whose examples are sorted by length together: little padding, still shuffled


@dataclass(frozen=True)
class DistillOptions:
    """How long and how hard to distil: ``steps`` batches when given, else ``examples`` examples but at most
    ``epochs`` passes over the training rows; ``minutes`` (opt-in) caps the time, at the cost of runs that
    depend on the machine."""

    examples: int = default("distill_examples")
    epochs: float = 8.0
    steps: int | None = default("distill_steps")
    minutes: float | None = default("distill_minutes")
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup: float = 0.05  # fraction of the steps with a linearly rising learning rate, then linear decay
    temperature: float = 2.0
    hidden_weight: float = 1.0
    quantization_aware: float = default("distill_int8_aware")
    seed: int = 0
    device: str = default("device")

    def __post_init__(self) -> None:
        if not 0 <= self.quantization_aware <= 1:
            raise InputError(f"the quantisation-aware fraction must be in [0, 1], got {self.quantization_aware}")
        if self.minutes is not None and not self.minutes > 0:
            raise InputError(f"--distill-minutes must be above 0, got {self.minutes}")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"--distill-steps must be at least 1, got {self.steps}")
        if self.examples < 1 or not self.epochs > 0:
            raise InputError("--distill-examples must be at least 1 and the epochs above 0")
        if self.batch_size < 1 or not self.learning_rate > 0 or not self.temperature > 0:
            raise InputError(
                "distillation needs a batch size of at least 1 and a positive learning rate and temperature"
            )
        if not 0 <= self.warmup < 1 or self.hidden_weight < 0:
            raise InputError("distillation warm-up must be in [0, 1) and the hidden-state weight 0 or more")

    def planned_steps(self, rows: int) -> int:
        """The step count, from the options and the number of training rows only."""
        if self.steps is not None:
            return self.steps
        examples = min(self.examples, int(self.epochs * max(rows, 1)))
        return max(1, math.ceil(examples / self.batch_size))


@dataclass(frozen=True)
class TrainingText:
    """Where distillation reads its text: a labelled file (labels unused) of ``rows`` rows and the columns,
    tokenised by ``loaded``; rows whose content is in ``held_out`` (the slice that judges candidates) are never
    trained on."""

    loaded: LoadedModel
    path: str
    rows: int
    columns: dict[str, str | None] = field(default_factory=dict)
    held_out: frozenset[tuple[str, str | None]] = frozenset()

    def cache_identity(self) -> tuple[Any, ...]:
        """The file's content (not its name), the columns read, the rows left out and the tokenizer."""
        held_out = hashlib.sha256(json.dumps(sorted(self.held_out, key=repr)).encode()).hexdigest()
        return file_digest(self.path), self.columns, held_out, self.loaded.identity.tokenizer

    @property
    def training_rows(self) -> int:
        return max(1, self.rows - len(self.held_out))


@dataclass(frozen=True)
class DistillRecord(JsonArtifact):
    """What the distillation did: steps, examples, time, settings and the loss at the start and the end."""

    kind = "distillation"

    data: str
    steps: int
    planned_from: str  # "steps", "examples", or "minutes" (the opt-in time cap cut it short)
    examples: int
    seconds: float
    threads: int
    batch_size: int
    learning_rate: float
    temperature: float
    hidden_weight: float
    seed: int
    loss_first: float
    loss_last: float
    estimated_seconds: float | None = None  # from the timing probe, said before training


def training_batches(text: TrainingText, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Tokenised batches of the file's examples (less the held-out ones), shuffled within a seeded buffer, over
    and over (epochs). Each run of LENGTH_GROUP batches is cut from examples sorted by length and served in
    random order, so batches carry little padding (SST-2 sentences: 13 tokens on average, up to 60)."""
    loaded = text.loaded
    for epoch in itertools.count():
        rng = np.random.default_rng([seed, epoch])
        rows = stream_examples(text.path, loaded.label2id, **text.columns)
        examples = _shuffled((row for row in rows if row.content not in text.held_out), rng)
        while group := list(itertools.islice(examples, batch_size * LENGTH_GROUP)):
            lengths = token_lengths(loaded, group)
            ordered = [group[index] for index in np.argsort(lengths, kind="stable")]
            batches = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]
            for index in rng.permutation(len(batches)):
                yield dict(encode(loaded, batches[index]))


def _shuffled(examples: Iterator[Example], rng: np.random.Generator) -> Iterator[Example]:
    """A seeded buffer shuffle: each example leaves the buffer at a random position once it is full."""
    buffer: list[Example] = []
    for example in examples:
        if len(buffer) < SHUFFLE_BUFFER:
            buffer.append(example)
            continue
        index = int(rng.integers(len(buffer)))
        buffer[index], example = example, buffer[index]
        yield example
    rng.shuffle(buffer)
    yield from buffer


def distillation_loss(
    student: object,
    teacher: object,
    attention_mask: torch.Tensor,
    options: DistillOptions,
    teacher_layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """T^2 KL(teacher || student) on softened logits per example + ``hidden_weight`` x the mean over layers of
    the squared hidden-state error on real tokens, relative to the teacher's energy there (scale-free across
    layers).

    Student layer i matches teacher layer ``teacher_layers[i]`` (0-based; by default layer i): with dropped
    layers, the last layer of the span it stands for. Under torchrun each process holds a share of the batch:
    the loss is then its share of the whole batch's loss (the batch size and the teacher's energies are summed
    over processes), so the shares add up to the loss one process computes on the whole batch."""
    temperature = options.temperature
    examples = all_reduce_sum(np.array([student.logits.shape[0]], dtype=np.float64))[0]
    loss = (
        nn.functional.kl_div(
            torch.log_softmax(student.logits / temperature, dim=-1),
            torch.log_softmax(teacher.logits / temperature, dim=-1),
            log_target=True,
            reduction="sum",
        )
        * temperature**2
        / examples
    )
    if options.hidden_weight == 0:
        return loss
    real = attention_mask.bool()
    teachers = _matched(teacher.hidden_states, teacher_layers)
    energies = all_reduce_sum(np.array([float((theirs[real] ** 2).sum()) for theirs in teachers]))
    errors = [
        ((mine[real] - theirs[real]) ** 2).sum() / max(energy, 1e-12)
        for mine, theirs, energy in zip(student.hidden_states[1:], teachers, energies, strict=True)
    ]
    return loss + options.hidden_weight * torch.stack(errors).mean()


def _matched(states: Sequence[torch.Tensor], layers: Sequence[int] | None) -> Sequence[torch.Tensor]:
    """The teacher's hidden states after ``layers`` (hidden_states[0] is the embeddings' output)."""
    return states[1:] if layers is None else [states[layer + 1] for layer in layers]


class _Schedule:
    """Linear warm-up to the learning rate, then linear decay to zero at the last step."""

    def __init__(self, total: int, warmup: float) -> None:
        self.total, self.warmup = total, max(1, int(warmup * total))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))


def _teacher_layers(student: nn.Module) -> list[int]:
    """The teacher layer each student layer matches: the last of the span it stands for."""
    return [last for _, last in model_layer_spans(student)]


def _train_step(
    teacher: nn.Module,
    student: nn.Module,
    batch: dict[str, torch.Tensor],
    optimizer,
    options: DistillOptions,
    teacher_layers: Sequence[int],
) -> float:
    """One optimiser step on this process's rows of ``batch``; ``student`` may be wrapped in
    DistributedDataParallel, which averages the gradients over processes (hence the loss x processes: the
    gradient is the whole batch's). Returns the whole batch's loss."""
    processes = rank_and_size()[1]
    batch = {key: value[shard(value)] for key, value in batch.items()}
    with torch.no_grad():
        target = teacher(**batch, output_hidden_states=True)
    loss = distillation_loss(
        student(**batch, output_hidden_states=True),
        target,
        batch["attention_mask"],
        options,
        teacher_layers=teacher_layers,
    )
    optimizer.zero_grad(set_to_none=True)
    (loss * processes).backward()
    nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], 1.0)
    optimizer.step()
    return float(all_reduce_sum(np.array([float(loss.detach())]))[0])


def seconds_per_step(
    teacher: nn.Module, student: nn.Module, batches: Sequence[dict[str, torch.Tensor]], options: DistillOptions
) -> float:
    """Forward and backward timed on a throw-away copy of the student (the student itself is untouched, so the
    probe never changes the result): for the time estimate, and for the opt-in time cap."""
    import copy

    probe = copy.deepcopy(student)
    parameters = _trainable(probe)
    optimizer = torch.optim.AdamW(parameters, lr=0.0)
    layers = _teacher_layers(probe)
    _train_step(teacher, probe, batches[0], optimizer, options, layers)  # warm-up: allocation, kernels
    started = time.perf_counter()
    for batch in batches[1:]:
        _train_step(teacher, probe, batch, optimizer, options, layers)
    return (time.perf_counter() - started) / max(1, len(batches) - 1)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    """Everything but the embeddings, which keep the original's (shared vocabulary, most of the parameters)."""
    parameters = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(".embeddings." not in f".{name}")
        if parameter.requires_grad:
            parameters.append(parameter)
    return parameters


def distill(
    teacher: nn.Module,
    student: nn.Module,
    text: TrainingText,
    options: DistillOptions,
    *,
    progress: bool = False,
) -> DistillRecord:
    """Train ``student`` in place against ``teacher`` on the rows of ``text`` (streamed, shuffled with
    ``options.seed``) on ``options.device``, with every CPU core; dropout stays off. The step count comes from
    the options and the data (``DistillOptions.planned_steps``); the time it will take is estimated and said
    before training. Under torchrun every process reads the same batches and trains on its share of each
    (DistributedDataParallel), so the weights match one process's within float tolerance."""
    processes = rank_and_size()[1]
    threads = max(1, (os.cpu_count() or 1) // processes)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(options.seed)
    batches = training_batches(text, options.batch_size, options.seed)
    try:
        with modules_on(options.device, teacher, student):
            steps = options.planned_steps(text.training_rows)
            probe = list(itertools.islice(training_batches(text, options.batch_size, options.seed + 1), 6))
            per_step = float(broadcast_from_main(np.array([seconds_per_step(teacher, student, probe, options)]))[0])
            capped = options.minutes is not None and per_step * steps > options.minutes * 60
            if capped:
                steps = max(1, int(options.minutes * 60 / per_step))
            logger.info(
                f"distillation: {steps:,} steps of {options.batch_size} on {text.training_rows:,} training rows, "
                f"about {per_step * steps / 60:.1f} min on this machine ({processes} process(es), {threads} "
                "thread(s) each)"
                + (" (cut by --distill-minutes: the result now depends on this machine's speed)" if capped else "")
            )
            record = _run(teacher, student, batches, steps, options, progress)
    finally:
        torch.set_num_threads(previous)
        for parameter in student.parameters():
            parameter.requires_grad_(False)
    return DistillRecord(
        data=str(text.path),
        planned_from="minutes" if capped else ("steps" if options.steps else "examples"),
        threads=threads,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        temperature=options.temperature,
        hidden_weight=options.hidden_weight,
        seed=options.seed,
        estimated_seconds=round(per_step * steps, 1),
        **record,
    )


class FakeInt8(nn.Module):
    """A weight rounded as per-channel symmetric int8 rounds it, with a straight-through gradient."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
        return weight + (torch.round(weight / scale) * scale - weight).detach()


@contextlib.contextmanager
def quantization_aware(model: nn.Module) -> Iterator[None]:
    """Inside: the encoder's linear layers compute with int8-rounded weights while their float weights train;
    on the way out the float weights are left in place."""
    from torch.nn.utils import parametrize

    linears = [module for module in encoder_layers(model).modules() if isinstance(module, nn.Linear)]
    for module in linears:
        parametrize.register_parametrization(module, "weight", FakeInt8())
    try:
        yield
    finally:
        for module in linears:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def _run(
    teacher: nn.Module,
    student: nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    steps: int,
    options: DistillOptions,
    progress: bool,
) -> dict[str, float | int]:
    student.eval()  # dropout off: the student starts from a fitted model, and runs repeat exactly
    optimizer = torch.optim.AdamW(_trainable(student), lr=options.learning_rate, weight_decay=0.01)
    trained = student
    if rank_and_size()[1] > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(student)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Schedule(steps, options.warmup))
    losses, examples, started = [], 0, time.perf_counter()
    bar = progress_bar(total=steps, desc="distillation", unit="step", enabled=progress)
    layers = _teacher_layers(student)
    aware_from = steps - round(options.quantization_aware * steps)
    with contextlib.ExitStack() as stack:
        for step, batch in enumerate(itertools.islice(batches, steps)):
            if step == aware_from:
                stack.enter_context(quantization_aware(student))
            losses.append(_train_step(teacher, trained, batch, optimizer, options, layers))
            scheduler.step()
            examples += int(batch["input_ids"].shape[0])
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    bar.close()
    window = max(1, min(20, len(losses)))
    return {
        "steps": len(losses),
        "examples": examples,
        "seconds": round(time.perf_counter() - started, 1),
        "loss_first": float(np.mean(losses[:window])) if losses else math.nan,
        "loss_last": float(np.mean(losses[-window:])) if losses else math.nan,
    }
