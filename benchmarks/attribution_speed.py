"""Attribution speed: the paper's reference recipe and a plain batched implementation of the same sum against
the project's engine, on the same examples.

(a) reference, written here exactly as the paper's official code runs it: every input padded to 128 tokens,
    one example at a time, the m = 20 left-Riemann points of one example in one batch, F = gold-label
    probability, one full forward and backward through the whole model per layer;
(b) plain: the same 20-point left sum, unpadded, the points of one example in one batch, one full forward and
    backward per layer, with the default ranking's F (log-probability of the gold label) and statistic (sum
    of |Attr_h| over real tokens, mean over examples, L2-normalised per layer): what a careful first
    implementation does;
(c) the project's scorer with its defaults (``ScoringOptions()``: Gauss-Legendre points, layers below the
    scaled one run once, length-grouped batches, scoring stopped once the ranking settles), plus any settings
    given with --variant RULE:STEPS (every example, no settling).

Prints the time to rank the heads and the speed-up over (b), the Spearman correlation of each ranking with
(b)'s, and for the engine the mean relative completeness error |sum of a layer's attributions - (F(A) - F(0))|
/ |F(A) - F(0)| over layers and examples with |F(A) - F(0)| above --floor.

    python benchmarks/attribution_speed.py [--examples 200] [--threads 2] [--model DIR --data FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.models.families import encoder_layers, family_of, part
from attr_compress.compressor.models.loading import LoadedModel, encode, load_model
from attr_compress.compressor.scoring.heads import attribution_statistics
from attr_compress.compressor.scoring.integrated import AttentionAttribution, quadrature
from attr_compress.compressor.scoring.options import ScoringOptions
from attr_compress.compressor.scoring.rankers import layer_l2_normalised, make_ranker
from scipy.stats import spearmanr

SHARED = Path(__file__).resolve().parents[2] / "shared"


def layer_attributions(model, inputs: dict, objective, steps: int):
    """For each layer in turn, the left Riemann sum of the paper, one full forward and backward per layer:
    the attribution of the one example's attention probabilities, F = ``objective(logits)``."""
    layers, probabilities = encoder_layers(model), family_of(model).probabilities
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    alphas = torch.arange(steps, dtype=torch.float32) / steps
    batch = {key: value.repeat(steps, 1) for key, value in inputs.items()}
    for index, layer in enumerate(layers):
        original = attentions[index]
        scaled = (alphas.view(-1, 1, 1, 1) * original).requires_grad_(True)
        handle = part(layer, probabilities).register_forward_hook(lambda _m, _a, _o, scaled=scaled: scaled)
        try:
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(objective(model(**batch).logits).sum(), scaled)
        finally:
            handle.remove()
        yield original[0] * grad.sum(dim=0) / steps


def reference_attribution(loaded: LoadedModel, example, steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The official recipe for one example (padded to 128, F = gold probability): [layers, heads] signed max,
    and [layers] attribution sums."""
    inputs = loaded.tokenizer(
        example.text, example.text_pair, padding="max_length", truncation=True, max_length=128, return_tensors="pt"
    )
    real = inputs["attention_mask"][0].bool()
    pairs = real[:, None] & real[None, :]
    gold = lambda logits: torch.softmax(logits, dim=-1)[:, example.label]  # noqa: E731
    maxima, sums = [], []
    for attribution in layer_attributions(loaded.model, inputs, gold, steps):
        maxima.append(attribution.masked_fill(~pairs, float("-inf")).amax(dim=(-2, -1)).numpy())
        sums.append(float(attribution.sum()))
    return np.array(maxima), np.array(sums)


def plain_attribution(loaded: LoadedModel, example, steps: int = 20) -> np.ndarray:
    """(b) for one example: [layers, heads] sums of |Attr_h| over real tokens, F = log p(gold), unpadded."""
    gold_log = lambda logits: torch.log_softmax(logits, dim=-1)[:, example.label]  # noqa: E731
    attributions = layer_attributions(loaded.model, encode(loaded, [example]), gold_log, steps)
    return np.array([attribution.abs().sum(dim=(-2, -1)).numpy() for attribution in attributions])


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
    parser.add_argument("--model", default=str(SHARED / "models/minilm-l6-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data/glue/SST-2/train.tsv"))
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--floor", type=float, default=1e-3)
    parser.add_argument("--no-reference", action="store_true", help="skip (a), the slowest")
    parser.add_argument("--variant", action="append", default=[], help="extra engine setting RULE:STEPS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    data = load_labelled_data(args.data, loaded.label2id).sample(args.examples, 0)
    examples = data.examples
    print(f"{len(examples)} examples of {args.data}, {args.model}, {args.threads} thread(s)")
    print(f"{'setting':<44} {'seconds':>8} {'vs plain':>9} {'spearman':>9} {'completeness err':>17}")

    started = time.perf_counter()
    plain = layer_l2_normalised(np.mean([plain_attribution(loaded, example) for example in examples], axis=0))
    plain_seconds = time.perf_counter() - started
    print(f"{'(b) plain: unpadded, batched, m=20 left':<44} {plain_seconds:8.1f} {1.0:8.2f}x {1.0:9.4f}")
    if not args.no_reference:
        started = time.perf_counter()
        reference = [reference_attribution(loaded, example) for example in examples]
        seconds = time.perf_counter() - started
        deltas = completeness_targets(loaded, examples)
        error = completeness_error(np.array([sums for _, sums in reference]), deltas, args.floor)
        print(
            f"{'(a) reference (pad 128, 1 ex, m=20)':<44} {seconds:8.1f} {plain_seconds / seconds:8.2f}x "
            f"{'':>9} {error:17.4f}"
        )

    started = time.perf_counter()
    default = make_ranker("attattr", loaded, **ScoringOptions().engine).rank(data)
    seconds = time.perf_counter() - started
    correlation = spearmanr(plain.ravel(), default.array.ravel()).statistic
    label = f"(c) default: {default.rule} m={default.steps}, {default.examples} examples"
    print(f"{label:<44} {seconds:8.1f} {plain_seconds / seconds:8.2f}x {correlation:9.4f}")
    for rule, steps in [(v.split(":")[0], int(v.split(":")[1])) for v in args.variant]:
        quadrature(rule, steps)
        started = time.perf_counter()
        stats = attribution_statistics(loaded, examples, steps=steps, rule=rule, objective="gold-log")
        seconds = time.perf_counter() - started
        importance = layer_l2_normalised(stats["abssum"].mean(axis=0))
        correlation = spearmanr(plain.ravel(), importance.ravel()).statistic
        label = f"engine {rule} m={steps}, every example"
        print(f"{label:<44} {seconds:8.1f} {plain_seconds / seconds:8.2f}x {correlation:9.4f}")


if __name__ == "__main__":
    main()
