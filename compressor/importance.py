"""Head importance from attention attribution: the paper's I_h, aggregated over calibration examples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from compressor.artifacts import JsonArtifact
from compressor.attribution import AttentionAttribution
from compressor.data import Example, LabelledData
from compressor.modeling import LoadedModel, encode, max_length, token_lengths


@dataclass(frozen=True)
class HeadImportance(JsonArtifact):
    """I_h per head ([layer][head]); higher means more important. Persisted as ``importance.json``."""

    kind = "head-importance"

    scores: list[list[float]]
    method: str
    target: str
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


def length_batches(loaded: LoadedModel, examples: Sequence[Example], token_budget: int) -> Iterator[list[Example]]:
    """Group examples of similar length so padding stays small; a batch holds at most ``token_budget`` tokens."""
    limit = max_length(loaded)
    lengths = [min(length, limit) for length in token_lengths(loaded, examples)]
    order = sorted(range(len(examples)), key=lambda i: (lengths[i], i))
    batch: list[Example] = []
    longest = 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if batch and longest_if_added * (len(batch) + 1) > token_budget:
            yield batch
            batch, longest_if_added = [], lengths[index]
        batch.append(examples[index])
        longest = longest_if_added
    if batch:
        yield batch


def real_token_pairs(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, 1, n, n] mask of (query, key) pairs where both tokens are real (not padding)."""
    real = attention_mask.bool()
    return (real[:, :, None] & real[:, None, :])[:, None]


def score_heads(
    loaded: LoadedModel,
    data: LabelledData,
    *,
    steps: int = 20,
    rule: str = "left",
    max_batch_tokens: int = 16384,
    seed: int = 0,
    progress: bool = False,
) -> HeadImportance:
    """I_h = mean over examples of max_{i,j} Attr_h (signed, real tokens), F = gold-label probability."""
    engine = AttentionAttribution(loaded.model)
    num_layers = len(engine.layers)
    num_heads = loaded.config.num_attention_heads
    totals = np.zeros((num_layers, num_heads), dtype=np.float64)
    bar = tqdm(total=len(data), desc="attribution", unit="ex", disable=not progress)
    for batch in length_batches(loaded, data.examples, max(1, max_batch_tokens // steps)):
        inputs = encode(loaded, batch)
        gold = torch.tensor([e.label for e in batch])
        pairs = real_token_pairs(inputs["attention_mask"])
        rows = max(1, max_batch_tokens // inputs["input_ids"].shape[1])
        for result in engine.attribute(inputs, gold, steps=steps, rule=rule, internal_batch_size=rows):
            masked = result.scores.masked_fill(~pairs, float("-inf"))
            totals[result.layer] += masked.amax(dim=(-2, -1)).sum(dim=0).double().numpy()
        bar.update(len(batch))
    bar.close()
    return HeadImportance(
        scores=(totals / len(data)).tolist(),
        method="attattr-paper",
        target="gold",
        aggregation="mean over examples of the signed max of Attr_h over real tokens",
        steps=steps,
        rule=rule,
        examples=len(data),
        seed=seed,
        calibration=data.path,
        model=loaded.path,
    )


def predicted_attribution(
    loaded: LoadedModel, example: Example, *, steps: int = 20, rule: str = "left"
) -> dict[str, Any]:
    """All layers' attribution for one example with F = predicted-class probability (trees, heatmaps)."""
    engine = AttentionAttribution(loaded.model)
    inputs = encode(loaded, [example])
    states, mask = engine.hidden_states(inputs)
    with torch.no_grad():
        probs = engine.probabilities(states[0], mask, 0)[0]
    predicted = int(probs.argmax())
    target = torch.tensor([predicted])
    scores = torch.stack([r.scores[0] for r in engine.attribute(inputs, target, steps=steps, rule=rule)])
    tokens = loaded.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    return {
        "attributions": scores.numpy(),
        "tokens": tokens,
        "predicted": predicted,
        "probability": float(probs[predicted]),
    }
