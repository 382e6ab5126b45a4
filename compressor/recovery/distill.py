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
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.defaults import DISTILL_HIDDEN, default
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.families import encoder_layers
from attr_compress.compressor.models.loading import modules_on
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.pruning.prune import model_layer_spans
from attr_compress.compressor.recovery.stream import TrainingText, training_batches
from attr_compress.compressor.scoring.distributed import all_reduce_sum, broadcast_from_main, rank_and_size, shard
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillOptions:
    """How long and how hard to distil: ``steps`` batches when given, else ``tokens`` real tokens but at most
    ``epochs`` passes over the training rows (a pair task costs what a single-sentence task costs); ``minutes``
    (opt-in) caps the time, at the cost of runs that depend on the machine. ``hidden``: which hidden states the
    student matches besides the logits (DISTILL_HIDDEN); ``augment``: from the second pass over the rows on,
    the share of whole words replaced by input-embedding neighbours."""

    tokens: int = default("distill_tokens")
    epochs: float = 8.0
    steps: int | None = default("distill_steps")
    minutes: float | None = default("distill_minutes")
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup: float = 0.05  # fraction of the steps with a linearly rising learning rate, then linear decay
    temperature: float = 2.0
    hidden: str = default("distill_hidden")
    hidden_weight: float = 1.0
    augment: float = default("distill_augment")
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
        if self.tokens < 1 or not self.epochs > 0:
            raise InputError("--distill-tokens must be at least 1 and the epochs above 0")
        if self.hidden not in DISTILL_HIDDEN:
            raise InputError(f"--distill-hidden must be one of {', '.join(DISTILL_HIDDEN)}, got {self.hidden!r}")
        if not 0 <= self.augment < 1:
            raise InputError(f"--distill-augment must be in [0, 1), got {self.augment}")
        if self.batch_size < 1 or not self.learning_rate > 0 or not self.temperature > 0:
            raise InputError(
                "distillation needs a batch size of at least 1 and a positive learning rate and temperature"
            )
        if not 0 <= self.warmup < 1 or self.hidden_weight < 0:
            raise InputError("distillation warm-up must be in [0, 1) and the hidden-state weight 0 or more")

    def planned_steps(self, rows: float, mean_tokens: float) -> int:
        """The step count, from the options and the training text only: ``tokens`` real tokens (rows of
        ``mean_tokens`` on average), at most ``epochs`` passes over the ``rows`` a pass reads."""
        if self.steps is not None:
            return self.steps
        examples = min(self.tokens / max(mean_tokens, 1.0), self.epochs * max(rows, 1.0))
        return max(1, math.ceil(examples / self.batch_size))


@dataclass(frozen=True)
class DistillRecord(JsonArtifact):
    """What the distillation did: steps, examples, time, settings and the loss at the start and the end."""

    kind = "distillation"

    data: str
    steps: int
    planned_from: str  # "steps", "tokens", or "minutes" (the opt-in time cap cut it short)
    examples: int
    tokens: int  # real (unpadded) tokens trained on
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
    hidden: str = "every-token"  # which hidden states were matched (DISTILL_HIDDEN)
    augment: float = 0.0  # share of whole words replaced from the second pass on


def distillation_loss(
    student: object,
    teacher: object,
    attention_mask: torch.Tensor,
    options: DistillOptions,
    teacher_layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """T^2 KL(teacher || student) on softened logits per example + ``hidden_weight`` x the mean over the matched
    hidden states (``options.hidden``) of the squared error, relative to the teacher's energy there (scale-free
    across layers).

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
    if options.hidden_weight == 0 or options.hidden == "none":
        return loss
    pairs = _hidden_pairs(student.hidden_states, teacher.hidden_states, attention_mask, options.hidden, teacher_layers)
    energies = all_reduce_sum(np.array([float((theirs**2).sum()) for _, theirs in pairs]))
    errors = [
        ((mine - theirs) ** 2).sum() / max(energy, 1e-12)
        for (mine, theirs), energy in zip(pairs, energies, strict=True)
    ]
    return loss + options.hidden_weight * torch.stack(errors).mean()


def _hidden_pairs(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    target: str,
    layers: Sequence[int] | None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student, teacher) hidden states to match: every layer's real tokens, or the last layer's first token."""
    teachers = _matched(teacher, layers)
    if target == "first-token":
        return [(student[-1][:, 0], teachers[-1][:, 0])]
    real = attention_mask.bool()
    return [(mine[real], theirs[real]) for mine, theirs in zip(student[1:], teachers, strict=True)]


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
    hidden = options.hidden != "none" and options.hidden_weight > 0
    with torch.no_grad():
        target = teacher(**batch, output_hidden_states=hidden)
    loss = distillation_loss(
        student(**batch, output_hidden_states=hidden),
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
    batches = training_batches(text, options.batch_size, options.seed, options.augment)
    try:
        with modules_on(options.device, teacher, student):
            mean_tokens = text.mean_tokens()
            steps = options.planned_steps(text.rows_per_pass, mean_tokens)
            probe = list(itertools.islice(training_batches(text, options.batch_size, options.seed + 1), 6))
            per_step = float(broadcast_from_main(np.array([seconds_per_step(teacher, student, probe, options)]))[0])
            capped = options.minutes is not None and per_step * steps > options.minutes * 60
            if capped:
                steps = max(1, int(options.minutes * 60 / per_step))
            logger.info(
                f"distillation: {steps:,} steps of {options.batch_size} on {text.rows_per_pass:,.0f} training rows a "
                f"pass (of {text.training_rows:,}; rows of {mean_tokens:.1f} tokens on average), "
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
        planned_from="minutes" if capped else ("steps" if options.steps else "tokens"),
        threads=threads,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        temperature=options.temperature,
        hidden=options.hidden,
        hidden_weight=options.hidden_weight,
        augment=options.augment,
        seed=options.seed,
        estimated_seconds=round(per_step * steps, 1),
        **record,
    )


class FakeInt8(nn.Module):
    """A weight rounded as per-channel symmetric int8 rounds it, with a straight-through gradient."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
        return weight + (torch.round(weight / scale) * scale - weight).detach()


def fake_uint8_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A MatMul's input rounded as onnxruntime's dynamic quantisation rounds it on every call: asymmetric uint8
    over the tensor's range (taking in 0), straight-through gradient."""
    (hidden, *rest) = inputs
    low, high = hidden.detach().min().clamp_max(0), hidden.detach().max().clamp_min(0)
    scale = ((high - low) / 255).clamp_min(1e-12)
    zero = torch.round(-low / scale)
    rounded = (torch.clamp(torch.round(hidden / scale) + zero, 0, 255) - zero) * scale
    return (hidden + (rounded - hidden).detach(), *rest)


@contextlib.contextmanager
def quantization_aware(model: nn.Module) -> Iterator[None]:
    """Inside: the encoder's linear layers compute as onnxruntime's dynamic int8 MatMuls do, with per-channel
    int8-rounded weights and uint8-rounded inputs, while their float weights train; on the way out the float
    weights are left in place."""
    from torch.nn.utils import parametrize

    linears = [module for module in encoder_layers(model).modules() if isinstance(module, nn.Linear)]
    hooks = [module.register_forward_pre_hook(fake_uint8_input) for module in linears]
    for module in linears:
        parametrize.register_parametrization(module, "weight", FakeInt8())
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
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
    losses, examples, tokens, started = [], 0, 0, time.perf_counter()
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
            tokens += int(batch["attention_mask"].sum())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    bar.close()
    window = max(1, min(20, len(losses)))
    return {
        "steps": len(losses),
        "examples": examples,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - started, 1),
        "loss_first": float(np.mean(losses[:window])) if losses else math.nan,
        "loss_last": float(np.mean(losses[-window:])) if losses else math.nan,
    }
