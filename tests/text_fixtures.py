"""Offline text fixtures: a WordPiece tokenizer written from a small vocabulary, a tiny BERT for masked-LM
(``model._target_=text_fixtures.tiny_bert``), plain-text corpora of sentences over that vocabulary, and a tiny Llama
decoder with its corpora and tokenizer (``write_decoder_corpus``) for the causal-LM tests."""

from __future__ import annotations

import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "cat", "dog", "bird", "sat", "ran", "flew", "on", "under", "mat", "tree", "big", "small", "red",
         "blue", "and", "then", "slept", "ate"]
EOS = "[EOS]"


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


def write_decoder_corpus(root: Path) -> Path:
    """Under ``root``: a WordPiece tokenizer with an eos token (``tokenizer/``), train (300 lines) / test (60 lines)
    corpora, and a tiny Llama (hidden 32, 2 layers, the tokenizer's vocabulary, seed 0) saved as ``llama/``."""
    import torch
    from transformers import BertTokenizer, LlamaConfig, LlamaForCausalLM

    vocab = SPECIAL + WORDS + [EOS]
    BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, eos_token=EOS).save_pretrained(
        str(root / "tokenizer"))
    write_corpus(root / "train.txt", 300, seed=0)
    write_corpus(root / "test.txt", 60, seed=1)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(str(root / "llama"))
    return root


def causal_text_config(root: Path, **changes):
    """The ``dataset=text`` config of ``write_decoder_corpus``'s files: next-token blocks of 16 tokens."""
    from omegaconf import OmegaConf

    values = dict(name="text", train_file=str(root / "train.txt"), test_file=str(root / "test.txt"),
                  tokenizer=str(root / "tokenizer"), max_seq_length=16, mlm_probability=0.15, cache_dir=None,
                  val_size=0, objective="causal_lm")
    return OmegaConf.create({**values, **changes})
