"""Tiny random classifiers of every supported family, with each family's own tokenizer, built in code."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import SentencePieceUnigramTokenizer
from tokenizers.implementations import ByteLevelBPETokenizer
from tokenizers.processors import TemplateProcessing
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertTokenizerFast,
    DistilBertTokenizerFast,
    ElectraTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaTokenizerFast,
    XLMRobertaTokenizerFast,
)

from tests.helpers import SENTENCES, WORDS

FAMILY_NAMES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")
LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
# two layers x four heads of width 8, FFN 37 wide: each family's names for these
SHAPES = {
    "bert": dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=37),
    "roberta": dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=37),
    "xlm-roberta": dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=37),
    # embeddings narrower than the layers, so the embeddings' projection is exercised
    "electra": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=37, embedding_size=16
    ),
    "distilbert": dict(n_layers=2, n_heads=4, dim=32, hidden_dim=37),
}
CORPUS = [text for text, _ in SENTENCES] + [" ".join(WORDS)]


def _wordpiece(kind: type, folder: Path) -> PreTrainedTokenizerBase:
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return kind(vocab_file=str(vocab), model_max_length=64)


def _byte_level_bpe(folder: Path) -> PreTrainedTokenizerBase:
    """RoBERTa's tokenizer: byte-level BPE, <s>=0 <pad>=1 </s>=2, trained here on the test sentences."""
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        CORPUS, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False
    )
    trainer.save_model(str(folder))
    return RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=64)


def _sentencepiece(folder: Path) -> PreTrainedTokenizerBase:
    """XLM-R's tokenizer: a SentencePiece unigram model with <s> $A </s> (</s> </s> $B </s>) framing."""
    trainer = SentencePieceUnigramTokenizer()
    trainer.train_from_iterator(
        CORPUS,
        vocab_size=120,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
        show_progress=False,
    )
    trainer.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return XLMRobertaTokenizerFast(tokenizer_object=trainer._tokenizer, model_max_length=64)


def family_tokenizer(family: str, folder: Path) -> PreTrainedTokenizerBase:
    folder.mkdir(parents=True, exist_ok=True)
    if family == "roberta":
        return _byte_level_bpe(folder)
    if family == "xlm-roberta":
        return _sentencepiece(folder)
    kind = {"bert": BertTokenizerFast, "electra": ElectraTokenizerFast, "distilbert": DistilBertTokenizerFast}
    return _wordpiece(kind[family], folder)


def family_model(family: str, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> PreTrainedModel:
    """A random classifier of ``family`` sized for ``tokenizer``, eager attention, with weights large enough
    that heads matter."""
    config = AutoConfig.for_model(
        family,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=64 + (tokenizer.pad_token_id + 1 if family in ("roberta", "xlm-roberta") else 0),
        **SHAPES[family],
        **LABELS,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" not in name and "layer_norm" not in name:
                parameter.normal_(0, 0.3)
    model.config.architectures = [type(model).__name__]
    return model


def write_family(family: str, folder: Path, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved model folder of ``family`` (model + tokenizer), as a user would pass it."""
    tokenizer = family_tokenizer(family, folder)
    model = family_model(family, tokenizer, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def main() -> None:
    """Write every family's tiny model and a small labelled file under a folder, for trying the command line:
    python -m tests.families /tmp/families"""
    import argparse

    from tests.helpers import write_tsv

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    root = parser.parse_args().folder
    root.mkdir(parents=True, exist_ok=True)
    write_tsv(root / "dev.tsv")
    for family in FAMILY_NAMES:
        write_family(family, root / family)
        print(f"wrote {root / family}")
    print(f"wrote {root / 'dev.tsv'}")


if __name__ == "__main__":
    main()
