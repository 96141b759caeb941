"""Offline text fixtures: a WordPiece tokenizer written from a small vocabulary, a tiny BERT for masked-LM
(``model._target_=text_fixtures.tiny_bert``), and plain-text corpora of sentences over that vocabulary."""

from __future__ import annotations

import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "cat", "dog", "bird", "sat", "ran", "flew", "on", "under", "mat", "tree", "big", "small", "red",
         "blue", "and", "then", "slept", "ate"]


def write_tokenizer(directory: Path) -> Path:
    """A BERT WordPiece tokenizer of SPECIAL + WORDS saved in ``directory`` (loads with AutoTokenizer offline)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(SPECIAL + WORDS)})
    tokenizer.save_pretrained(str(directory))
    return Path(directory)


def write_corpus(path: Path, lines: int, seed: int = 0) -> Path:
    """``lines`` sentences of 3 to 11 words: "the <adjective> <animal> <verb> ..." patterns, so a model can learn
    something about them."""
    rng = random.Random(seed)
    text = []
    for _ in range(lines):
        words = [rng.choice(["the", "a"]), rng.choice(["big", "small", "red", "blue"]),
                 rng.choice(["cat", "dog", "bird"]), rng.choice(["sat", "ran", "flew", "slept", "ate"])]
        if rng.random() < 0.5:
            words += [rng.choice(["on", "under"]), "the", rng.choice(["mat", "tree"])]
        if rng.random() < 0.3:
            words += ["and", "then", rng.choice(["slept", "ate"])]
        text.append(" ".join(words))
    Path(path).write_text("\n".join(text) + "\n")
    return Path(path)


def tiny_bert(num_classes: int, in_shape: tuple[int, ...], hidden: int = 16, layers: int = 2, dropout: float = 0.0):
    """``BertForMaskedLM`` of ``num_classes`` tokens (the text dataset's vocabulary size) and blocks of ``in_shape``."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=num_classes, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=in_shape[0],
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForMaskedLM(config)
