"""A learnable synthetic translation task in the layout of ``dataset=translation`` (parallel text files, one sentence
per line): ``<out>/{train,valid,test}.{src,tgt}``. Touches no network.

A source sentence is ``--min-words`` to ``--max-words`` words (4 to 14) drawn from a fixed vocabulary of ``--vocab``
pseudo-words; its translation is
the sentence reversed, each word replaced by its fixed counterpart from a second vocabulary (a transliteration),
except a shared quarter of the words, which stay as they are. A model has to learn the word mapping and the
reordering; copying the source scores a low BLEU (``--copy-bleu`` prints it for the test split, with sacrebleu).

    python scripts/synthetic_translation.py data/reverse                    # 20000 / 500 / 500 sentences
    python scripts/synthetic_translation.py data/reverse --train 5000 --copy-bleu
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SYLLABLES = ["ka", "lo", "mi", "ru", "te", "no", "sa", "vi", "do", "pe", "zu", "ha"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """``size`` distinct pseudo-words of two or three syllables."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))))
    return sorted(words)


def translation(vocab: int, seed: int) -> tuple[list[str], dict[str, str]]:
    """The source vocabulary and its word-to-word mapping (a quarter of the words map to themselves)."""
    rng = random.Random(seed)
    source = vocabulary(vocab, rng)
    target = [word.upper() for word in vocabulary(vocab, rng)]
    mapping = {word: (word if index % 4 == 0 else target[index]) for index, word in enumerate(source)}
    return source, mapping


def pairs(count: int, source: list[str], mapping: dict[str, str], rng: random.Random, lengths: tuple[int, int]
          ) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        words = [rng.choice(source) for _ in range(rng.randint(*lengths))]
        out.append((" ".join(words), " ".join(mapping[word] for word in reversed(words))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--vocab", type=int, default=300)
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--max-words", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copy-bleu", action="store_true", help="print the BLEU of copying the source (test split)")
    args = parser.parse_args()
    source, mapping = translation(args.vocab, args.seed)
    rng = random.Random(args.seed + 1)
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        rows = pairs(getattr(args, split), source, mapping, rng, (args.min_words, args.max_words))
        (args.out / f"{split}.src").write_text("".join(src + "\n" for src, _ in rows))
        (args.out / f"{split}.tgt").write_text("".join(tgt + "\n" for _, tgt in rows))
    print(f"wrote {args.out}/{{train,valid,test}}.{{src,tgt}}: {args.train} / {args.valid} / {args.test} sentences")
    if args.copy_bleu:
        import sacrebleu

        test_src = (args.out / "test.src").read_text().splitlines()
        test_tgt = (args.out / "test.tgt").read_text().splitlines()
        print(f"copy baseline (test): {sacrebleu.corpus_bleu(test_src, [test_tgt])}")


if __name__ == "__main__":
    main()
