"""New text for the distillation from text it has read, with nothing downloaded: whole words replaced by their
nearest neighbours in the model's own input embeddings (TinyBERT's word replacement, Jiao et al. 2020, with the
model's embeddings standing in for GloVe). The teacher labels whatever the student reads, so a replacement that
changes the meaning still teaches: each pass over a small training file then reads text it has not read before.
"""

from __future__ import annotations

import numpy as np
import torch
from attr_compress.compressor.models.loading import LoadedModel

NEIGHBOURS = 8  # candidates per word, by cosine similarity of the input embeddings
# Words whose replacement changes the sentence's structure rather than its content (TinyBERT skips stop words).
STOP_WORD_TEXT = """
a an the and or but if of to in on at by for with from as is are was were be been being am do does did have has
had not no nor so than that this these those it its he she they them we you i me my our your his her their there
here what which who whom whose when where why how all any both each few more most some such only own same too very
can will just should would could
"""
STOP_WORDS = frozenset(STOP_WORD_TEXT.split())
# How each tokenizer family marks where a word starts: WordPiece marks the continuation instead.
CONTINUATION_PREFIX = "##"
WORD_START_PREFIXES = ("\u0120", "\u2581")  # byte-level BPE (RoBERTa), SentencePiece (XLM-RoBERTa)


class WordReplacement:
    """Replaces a share ``rate`` of the whole-word, non-stop-word tokens of a batch by one of their
    ``NEIGHBOURS`` nearest whole-word tokens (cosine similarity of the input embeddings; the table is built lazily
    for the tokens met). Lengths and masks are unchanged: one token in, one token out."""

    def __init__(self, loaded: LoadedModel, rate: float) -> None:
        self.rate = rate
        tokenizer = loaded.tokenizer
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.words, self.continuation = _vocabulary_marks(tokens, set(tokenizer.all_special_tokens))
        embeddings = loaded.model.get_input_embeddings().weight.detach().float()
        self.embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
        self.candidates = torch.from_numpy(np.flatnonzero(self.words))
        self.candidate_embeddings = self.embeddings[self.candidates]
        self.neighbours: dict[int, np.ndarray] = {}

    def replace(
        self, batch: dict[str, torch.Tensor], rng: np.random.Generator, rows: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """The batch with replaced words in ``rows`` (a mask; None: every row), as a new ``input_ids``; the other
        tensors shared."""
        ids = batch["input_ids"].clone()
        flat = ids.view(-1).numpy()
        single = single_token_words(flat.reshape(ids.shape), self.words, self.continuation)
        if rows is not None:
            single &= np.asarray(rows, dtype=bool)[:, None]
        chosen = np.flatnonzero(single.reshape(-1) & (rng.random(flat.shape[0]) < self.rate))
        self._learn(np.unique(flat[chosen]))
        picks = rng.integers(0, NEIGHBOURS, size=len(chosen))
        for position, pick in zip(chosen, picks, strict=True):
            options = self.neighbours[int(flat[position])]
            if len(options):
                flat[position] = options[pick % len(options)]
        return {**batch, "input_ids": ids}

    def _learn(self, token_ids: np.ndarray) -> None:
        """Neighbour lists for the tokens not yet in the table."""
        new = [int(token) for token in token_ids if int(token) not in self.neighbours]
        if not new:
            return
        similarity = self.embeddings[new] @ self.candidate_embeddings.T
        similarity[similarity >= 0.9999] = -2.0  # the token itself (and exact duplicates)
        top = similarity.topk(min(NEIGHBOURS, len(self.candidates)), dim=-1).indices
        for token, row in zip(new, self.candidates[top].numpy(), strict=True):
            self.neighbours[token] = row


def _vocabulary_marks(tokens: list[str], special: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """(whole alphabetic word starts that are no stop word, pieces that continue the word before), per vocabulary
    entry. The tokenizer family is read from the vocabulary itself: WordPiece continues words with '##', BPE and
    SentencePiece mark where a word starts."""
    marked = sum(token.startswith(WORD_START_PREFIXES) for token in tokens) > len(tokens) // 4
    words = np.zeros(len(tokens), dtype=bool)
    continuation = np.zeros(len(tokens), dtype=bool)
    for index, token in enumerate(tokens):
        if token in special:
            continue
        if marked:
            starts, word = token.startswith(WORD_START_PREFIXES), token[1:]
        else:
            starts, word = not token.startswith(CONTINUATION_PREFIX), token
        continuation[index] = not starts
        words[index] = starts and len(word) > 1 and word.isalpha() and word.lower() not in STOP_WORDS
    return words, continuation


def single_token_words(ids: np.ndarray, words: np.ndarray, continuation: np.ndarray) -> np.ndarray:
    """Positions (of a batch of ids) holding a whole word that the next token does not continue."""
    continued = np.zeros(ids.shape, dtype=bool)
    continued[:, :-1] = continuation[ids[:, 1:]]
    return words[ids] & ~continued
