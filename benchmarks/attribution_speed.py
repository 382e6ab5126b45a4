"""Attribution speed: the paper's reference recipe against the project's engine, on the same examples.

(a) reference, written here exactly as the paper's official code runs it: every input padded to 128 tokens,
    one example at a time, the m = 20 left-Riemann points of one example in one batch, F = gold-label
    probability, one full forward and backward through the whole model per layer;
(b) the project's engine (``compressor.importance.attribution_statistics``) with its defaults, plus any
    extra settings given with --variant RULE:STEPS.

Prints examples per second and the ratio, Spearman correlation of the head-importance vectors (mean over
examples of the signed max), and the mean relative completeness error
|sum of a layer's attributions - (F(A) - F(0))| / |F(A) - F(0)| over layers and examples with
|F(A) - F(0)| above --floor. Usage: python benchmarks/attribution_speed.py [--examples 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from compressor.architectures import encoder_layers, family_of, part
from compressor.attribution import AttentionAttribution, quadrature
from compressor.data import load_labelled_data
from compressor.importance import attribution_statistics
from compressor.modeling import LoadedModel, encode, load_model

SHARED = Path(__file__).resolve().parents[2] / "shared"


def reference_attribution(loaded: LoadedModel, example, steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The official recipe for one example: [layers, heads] signed max, and [layers] attribution sums."""
    model = loaded.model
    inputs = loaded.tokenizer(
        example.text, example.text_pair, padding="max_length", truncation=True, max_length=128, return_tensors="pt"
    )
    real = inputs["attention_mask"][0].bool()
    label = example.label
    layers, probabilities = encoder_layers(model), family_of(model).probabilities
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    alphas = torch.arange(steps, dtype=torch.float32) / steps
    batch = {key: value.repeat(steps, 1) for key, value in inputs.items()}
    maxima, sums = [], []
    for index, layer in enumerate(layers):
        original = attentions[index]
        scaled = (alphas.view(-1, 1, 1, 1) * original).requires_grad_(True)
        handle = part(layer, probabilities).register_forward_hook(lambda _m, _a, _o, scaled=scaled: scaled)
        try:
            with torch.enable_grad():
                probabilities = torch.softmax(model(**batch).logits, dim=-1)[:, label]
                (grad,) = torch.autograd.grad(probabilities.sum(), scaled)
        finally:
            handle.remove()
        attribution = original[0] * grad.sum(dim=0) / steps
        pairs = real[:, None] & real[None, :]
        maxima.append(attribution.masked_fill(~pairs, float("-inf")).amax(dim=(-2, -1)).numpy())
        sums.append(float(attribution.sum()))
    return np.array(maxima), np.array(sums)


def completeness_targets(loaded: LoadedModel, examples) -> np.ndarray:
    """F(A) - F(layer's attention zeroed), [examples, layers], with the unpadded inputs."""
    engine = AttentionAttribution(loaded.model)
    deltas = []
    for example in examples:
        inputs = encode(loaded, [example])
        target = torch.tensor([example.label])
        full = engine.target_probability(inputs, target)
        deltas.append(
            [
                float(full - engine.target_probability(inputs, target, scale_layer=layer, alpha=0.0))
                for layer in range(len(engine.layers))
            ]
        )
    return np.array(deltas)


def completeness_error(sums: np.ndarray, deltas: np.ndarray, floor: float) -> float:
    keep = np.abs(deltas) > floor
    return float(np.mean(np.abs(sums[keep] - deltas[keep]) / np.abs(deltas[keep])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--floor", type=float, default=1e-3)
    parser.add_argument("--variant", action="append", default=[], help="extra engine setting RULE:STEPS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(SHARED / "models/minilm-l6-sst2")
    data = load_labelled_data(SHARED / "data/glue/SST-2/train.tsv", loaded.label2id).sample(args.examples, 0)
    examples = data.examples
    deltas = completeness_targets(loaded, examples)

    started = time.perf_counter()
    reference = [reference_attribution(loaded, example) for example in examples]
    reference_seconds = time.perf_counter() - started
    reference_importance = np.mean([maxima for maxima, _ in reference], axis=0).ravel()
    reference_error = completeness_error(np.array([sums for _, sums in reference]), deltas, args.floor)
    reference_rate = len(examples) / reference_seconds

    print(f"{len(examples)} SST-2 train examples, demo model, {args.threads} thread(s)")
    print(f"{'setting':<34} {'ex/s':>8} {'speed-up':>9} {'spearman':>9} {'completeness err':>17}")
    print(
        f"{'reference (pad 128, 1 ex, m=20)':<34} {reference_rate:8.2f} {1.0:8.2f}x {1.0:9.4f} {reference_error:17.4f}"
    )
    settings = [("left", 20), *[(v.split(":")[0], int(v.split(":")[1])) for v in args.variant]]
    for rule, steps in settings:
        quadrature(rule, steps)
        started = time.perf_counter()
        stats = attribution_statistics(loaded, examples, steps=steps, rule=rule)
        seconds = time.perf_counter() - started
        importance = stats["max"].mean(axis=0).ravel()
        error = completeness_error(stats["sum"].sum(axis=2), deltas, args.floor)
        rate = len(examples) / seconds
        label = f"engine {rule} m={steps}" + (" (default)" if (rule, steps) == ("left", 20) else "")
        correlation = spearmanr(reference_importance, importance).statistic
        print(f"{label:<34} {rate:8.2f} {rate / reference_rate:8.2f}x {correlation:9.4f} {error:17.4f}")


if __name__ == "__main__":
    main()
