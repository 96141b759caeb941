"""Masked-LM step time on a text corpus, in one process on the same BERT, batch and AdamW: sparsetrain's dense
step (``dataset=text``: device-resident token blocks, the BERT masking drawn per batch on the CPU and applied on
the device) against hand-written PyTorch/transformers loops; prints milliseconds per step and ratios, writes JSON.

    python scripts/bench_text.py            # a small BERT (4 layers, width 256, 8k vocabulary), blocks of 128
    python scripts/bench_text.py --quick    # a tiny BERT: a smoke run

The corpus is synthetic text over a generated WordPiece vocabulary (speed does not depend on the words). The plain
loops are (a) ``DataCollatorForLanguageModeling`` masking a random batch of the same token blocks every step, as a
Hugging Face loop does, and (b) one batch masked once, reused every step (model and optimizer alone), with
``torch.optim.AdamW`` in PyTorch's default implementation, and (c) as (b) with the fused AdamW the runner uses
(the limit). The runner's
step is the median epoch of a run without evaluation or checkpoints, after its first epoch, divided by its steps.
``--rounds`` alternates the two measurements and reports medians (a shared machine drifts between them).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench import compose_train, runner_epoch_s, timed_ms  # scripts/bench.py: shared timing helpers

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SIZES = {  # hidden, layers, heads, vocabulary words, block length, batch, training blocks
    "small": (256, 4, 4, 8192, 128, 16, 16 * 12),
    "tiny": (32, 2, 2, 512, 32, 8, 8 * 10),
}


def bert(num_classes: int, in_shape: tuple[int, ...], hidden: int = 256, layers: int = 4, heads: int = 4):
    """BertForMaskedLM of ``num_classes`` tokens for blocks of ``in_shape`` (the runner's ``model._target_``)."""
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(vocab_size=num_classes, hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=4 * hidden,
                                      max_position_embeddings=in_shape[0]))


def write_corpus(root: Path, words: int, tokens: int) -> tuple[Path, Path]:
    """A WordPiece tokenizer of ``words`` words and a train / test text of about ``tokens`` / ``tokens // 8``."""
    from transformers import BertTokenizer

    vocabulary = [f"w{i}" for i in range(words - len(SPECIAL))]
    BertTokenizer(vocab={token: i for i, token in enumerate(SPECIAL + vocabulary)}).save_pretrained(str(root / "tok"))
    rng = random.Random(0)
    for name, count in (("train.txt", tokens), ("test.txt", tokens // 8)):
        lines = [" ".join(rng.choices(vocabulary, k=rng.randint(8, 40))) for _ in range(count // 24)]
        (root / name).write_text("\n".join(lines) + "\n")
    return root / "tok", root / "train.txt"


def plain_loops_ms(size: str, tokenizer_dir: Path, blocks: torch.Tensor, repeats: int) -> dict:
    """Hand-written loops on the same BERT and token blocks: the collator every step, and one fixed batch."""
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    hidden, layers, heads, _, length, batch, _ = SIZES[size]
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    model = bert(len(tokenizer), (length,), hidden, layers, heads).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
    examples = [{"input_ids": row} for row in blocks.tolist()]

    fused = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def train(inputs: dict, step: torch.optim.Optimizer = optimizer) -> None:
        step.zero_grad(set_to_none=False)
        model(**inputs).loss.backward()
        step.step()

    def collated_step() -> None:
        train(collator(random.sample(examples, batch)))

    fixed = collator(examples[:batch])
    cpu = torch.device("cpu")
    return {"plain_collator_ms": timed_ms(collated_step, cpu, repeats, inner=5),
            "plain_fixed_batch_ms": timed_ms(lambda: train(fixed), cpu, repeats, inner=5),
            "plain_fixed_batch_fused_ms": timed_ms(lambda: train(fixed, fused), cpu, repeats, inner=5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny BERT (smoke run)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the runner's timing (>= 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (both loops)")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the plain loops and the runner "
                        "(medians reported)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    size = "tiny" if args.quick else "small"
    hidden, layers, heads, words, length, batch, train_blocks = SIZES[size]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir, train_file = write_corpus(Path(tmp), words, train_blocks * (length - 2))
        data_overrides = [f"dataset.train_file={train_file}", f"dataset.test_file={Path(tmp) / 'test.txt'}",
                          f"dataset.tokenizer={tokenizer_dir}", f"dataset.max_seq_length={length}"]
        common = ["model=custom", "model._target_=bench_text.bert", f"+model.hidden={hidden}",
                  f"+model.layers={layers}", f"+model.heads={heads}", "dataset=text", *data_overrides, "task.name=masked_lm",
                  f"batch_size={batch}", "optimizer=adamw", "optimizer.lr=1e-4", "schedule=constant",
                  "method=dense", "device=cpu", f"threads={args.threads}", "log_every=0"]
        from sparsetrain.data.build import build_data

        data = build_data(compose_train(*common).dataset, batch_size=batch, eval_batch_size=batch,
                          device=torch.device("cpu"), seed=0)
        row = {"size": size, "batch": batch, "block": length, "vocabulary": words, "threads": args.threads}
        rounds = []
        for _ in range(args.rounds):  # alternated, so that a drifting machine weighs on both sides alike
            timings = plain_loops_ms(size, tokenizer_dir, data.train.blocks.input_ids, args.repeats)
            timings["runner_dense_ms"] = runner_epoch_s(common, args.epochs) * 1e3 / len(data.train)
            timings["runner_vs_collator"] = timings["runner_dense_ms"] / timings["plain_collator_ms"]
            timings["runner_vs_fixed_batch"] = timings["runner_dense_ms"] / timings["plain_fixed_batch_ms"]
            timings["runner_vs_fixed_fused"] = timings["runner_dense_ms"] / timings["plain_fixed_batch_fused_ms"]
            rounds.append(timings)
    row.update({key: statistics.median(r[key] for r in rounds) for key in rounds[0]})  # ratios: of each round
    print(f"BERT {size} ({layers} layers, width {hidden}, vocabulary {words}), batch {batch} x {length} tokens, "
          f"AdamW, cpu ({args.threads} threads), torch {torch.__version__}; ms per step, median of {args.repeats} "
          f"repeats and {args.rounds} rounds")
    print(f"  plain loop, HF collator every step: {row['plain_collator_ms']:.1f}")
    print(f"  plain loop, one fixed batch: {row['plain_fixed_batch_ms']:.1f}; with fused AdamW as the runner "
          f"(the limit): {row['plain_fixed_batch_fused_ms']:.1f}")
    print(f"  sparsetrain dense MLM step: {row['runner_dense_ms']:.1f} [{row['runner_vs_collator']:.2f}x the "
          f"collator loop, {row['runner_vs_fixed_batch']:.2f}x the fixed batch, {row['runner_vs_fixed_fused']:.2f}x "
          "the limit]")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # model._target_=bench_text.bert
    main()
