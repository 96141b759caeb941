"""Offline data for trying the language-model recipes: a WordPiece vocabulary and a randomly initialised small BERT
(``save_pretrained``, masked-LM head), a plain-text corpus and an SST-2-format task whose label is a function of the
words. Needs the nlp extra; touches no network.

    python scripts/synthetic_glue.py data/synthetic                  # sentiment with negation (the default)
    python scripts/synthetic_glue.py data/synthetic --task counting  # more "good" than "bad": easy

Writes ``<out>/bert`` (model and tokenizer), ``<out>/corpus/{train,test}.txt`` (sentences of the same kind,
unlabelled) and ``<out>/glue/SST-2/{train,dev}.tsv``. Sentences are 6 to 14 filler words ``w0``..``w199`` with 1 to 3
sentiment markers inserted. ``negation``: "good" counts +1, "bad" -1, "not" directly before a marker flips it, and a
stray "not" may stand elsewhere; the label is 1 when the sum is positive. ``counting``: 0 to 3 of each marker, the
label is 1 when "good" outnumbers "bad".
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = [f"w{i}" for i in range(200)]
WORDS = FILLER + ["good", "bad", "not", "very"]


def negation(rng: random.Random) -> tuple[list[str], int]:
    while True:
        words, score = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))], 0
        for _ in range(rng.randint(1, 3)):
            marker, negated = rng.choice(["good", "bad"]), rng.random() < 0.5
            score += (1 if marker == "good" else -1) * (-1 if negated else 1)
            position = rng.randrange(len(words) + 1)
            words[position:position] = ["not", marker] if negated else [marker]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), "not")
        if score != 0:
            return words, int(score > 0)


def counting(rng: random.Random) -> tuple[list[str], int]:
    words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
    good, bad = rng.randint(0, 3), rng.randint(0, 3)
    while good == bad:
        bad = rng.randint(0, 3)
    for word in ["good"] * good + ["bad"] * bad + ["very"] * rng.randint(0, 2):
        words.insert(rng.randrange(len(words) + 1), word)
    return words, int(good > bad)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", choices=["negation", "counting"], default="negation")
    parser.add_argument("--train", type=int, default=1000, help="labelled training sentences")
    args = parser.parse_args(argv)

    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    sentence, rng = {"negation": negation, "counting": counting}[args.task], random.Random(0)
    bert = args.out / "bert"
    bert.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(vocab={token: i for i, token in enumerate(SPECIAL + WORDS)}).save_pretrained(bert)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(bert)
    (args.out / "corpus").mkdir(exist_ok=True)
    for name, count in (("train.txt", 6000), ("test.txt", 500)):
        lines = (" ".join(sentence(rng)[0]) for _ in range(count))
        (args.out / "corpus" / name).write_text("\n".join(lines) + "\n")
    glue = args.out / "glue" / "SST-2"
    glue.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.tsv", args.train), ("dev.tsv", 1000)):
        rows = [sentence(rng) for _ in range(count)]
        (glue / name).write_text("sentence\tlabel\n" + "".join(f"{' '.join(w)}\t{y}\n" for w, y in rows))
        print(f"{glue / name}: {count} sentences, positive share {sum(y for _, y in rows) / count:.3f}")


if __name__ == "__main__":
    main()
