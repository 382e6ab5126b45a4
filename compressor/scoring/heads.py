"""Head importance from attention attribution: the paper's I_h, aggregated over calibration examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.artifacts import JsonArtifact
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.defaults import default
from attr_compress.compressor.models.loading import LoadedModel, encode
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.scoring.calibration import calibration_batches, real_token_pairs
from attr_compress.compressor.scoring.distributed import all_reduce_sum, local_items
from attr_compress.compressor.scoring.integrated import AttentionAttribution


@dataclass(frozen=True)
class UnitImportance(JsonArtifact):
    """Scores per layer and unit (attention head or FFN neuron), higher is more important, and how they
    were computed."""

    scores: list[list[float]]
    objective: str  # F, the function attributed: "gold", "gold-log" or "predicted"
    aggregation: str
    steps: int
    rule: str
    examples: int
    seed: int
    calibration: str
    model: str

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=np.float64)


@dataclass(frozen=True)
class HeadImportance(UnitImportance):
    """I_h per head ([layer][head]) and the ranking method. Persisted as ``importance.json``.

    ``order`` (iterative methods only) is the pruning order as [layer, head] pairs, first pruned first;
    every keep level is then a prefix of it.
    """

    kind = "head-importance"

    method: str
    order: list[list[int]] | None = None


AGGREGATIONS = ("max", "absmax", "sum", "abssum")


def attribution_statistics(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    objective: str = "gold",
    steps: int = 20,
    rule: str = "left",
    max_batch_tokens: int = default("max_batch_tokens"),
    head_mask: torch.Tensor | None = None,
    progress: bool = False,
    bar: Any = None,
) -> dict[str, np.ndarray]:
    """Per example and head, reductions of the attribution matrix over real tokens: [examples, layers, heads].

    ``max`` is the paper's signed max; ``absmax``, ``sum`` and ``abssum`` are the alternatives rankings try.
    ``objective`` is "gold" (F = probability of the gold label, as for pruning), "gold-log" (its logarithm,
    i.e. minus the cross-entropy loss) or "predicted".
    """
    engine = AttentionAttribution(loaded.model, head_mask=head_mask)
    shape = (len(examples), len(engine.layers), loaded.config.num_attention_heads)
    stats = {name: np.zeros(shape, dtype=np.float64) for name in AGGREGATIONS}
    position = {id(example): index for index, example in enumerate(examples)}
    own_bar = bar is None
    bar = bar or progress_bar(total=len(local_items(examples)), desc="attribution", unit="ex", enabled=progress)
    for batch, inputs in calibration_batches(loaded, examples, max(1, max_batch_tokens // steps), bar):
        labels = None  # predicted: the engine takes the argmax from its own forward pass
        if objective in ("gold", "gold-log"):
            labels = torch.tensor([e.label for e in batch], device=inputs["input_ids"].device)
        pairs = real_token_pairs(inputs["attention_mask"])
        rows = [position[id(example)] for example in batch]
        chunk = max(1, max_batch_tokens // inputs["input_ids"].shape[1])
        log_probability = objective == "gold-log"
        for result in engine.attribute(
            inputs, labels, steps=steps, rule=rule, internal_batch_size=chunk, log_probability=log_probability
        ):
            scores = result.scores.double()
            real = scores.masked_fill(~pairs, 0.0)
            stats["max"][rows, result.layer] = (
                scores.masked_fill(~pairs, float("-inf")).amax(dim=(-2, -1)).cpu().numpy()
            )
            stats["absmax"][rows, result.layer] = real.abs().amax(dim=(-2, -1)).cpu().numpy()
            stats["sum"][rows, result.layer] = real.sum(dim=(-2, -1)).cpu().numpy()
            stats["abssum"][rows, result.layer] = real.abs().sum(dim=(-2, -1)).cpu().numpy()
    if own_bar:
        bar.close()
    return {name: all_reduce_sum(values) for name, values in stats.items()}


def predicted_attribution(
    loaded: LoadedModel, example: Example, *, steps: int = 20, rule: str = "left"
) -> dict[str, Any]:
    """All layers' attribution for one example with F = predicted-class probability, summed over each layer's
    heads ([layers, 1, n, n], what the trees read), so a pruned model's uneven head counts fit one array."""
    engine = AttentionAttribution(loaded.model)
    inputs = encode(loaded, [example])
    states, mask = engine.hidden_states(inputs)
    with torch.no_grad():
        probs = engine.probabilities(states[0], mask, 0)[0]
    predicted = int(probs.argmax())
    target = torch.tensor([predicted], device=probs.device)
    attributions = engine.attribute(inputs, target, steps=steps, rule=rule)
    scores = torch.stack([r.scores[0].sum(dim=0, keepdim=True) for r in attributions])
    tokens = loaded.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].cpu().tolist())
    return {
        "attributions": scores.cpu().numpy(),
        "tokens": tokens,
        "predicted": predicted,
        "probability": float(probs[predicted]),
    }
