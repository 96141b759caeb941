"""Translation step time, in one process on the same Marian encoder-decoder, token-count batches and Adam:
sparsetrain's dense step (``dataset=translation`` batches made on the host per step, ``task.name=translation``'s
fairseq label-smoothed loss, fused Adam) against hand-written PyTorch/transformers loops; prints milliseconds per
step and ratios, writes JSON.

    python scripts/bench_translation.py            # Marian 3+3 layers, width 256, ffn 1024, 4 heads; 4096-token batches
    python scripts/bench_translation.py --quick    # a tiny Marian: a smoke run

The corpus is ``scripts/synthetic_translation.py``'s (a reversed word-for-word transliteration; speed does not depend
on the words), with a joint BPE trained on it as the runner does. Every loop trains on the same batches: the
training batches of ``build_data`` on the run's config and seed (one epoch of them, each batch once; the runner
visits the same batches in another order each epoch). The plain loops feed the model ``input_ids``,
``attention_mask`` and the labels shifted into ``decoder_input_ids`` (the labels kept out of the model, so that it
computes no second loss, as the HF Trainer does when it smooths labels), take ``F.cross_entropy(logits,
label_smoothing=0.1, ignore_index=-100)`` (fairseq's eps/(V-1) form differs slightly, at the same cost), and step
(a) ``torch.optim.Adam`` in PyTorch's default implementation, (b) the fused Adam the runner uses (the limit; skipped
where the device has none). Their batches are made once and kept on the device; ``input`` is the runner's batch
making alone (``plans``: gather, pad, copy to the device), per batch. The runner's step is the median epoch of a run
without evaluation or checkpoints, after its first epoch, divided by its steps (its final evaluation, with BLEU
generation, runs after the timed epochs). ``--rounds`` alternates the measurements and reports medians. One CPU
thread by default: on a loaded machine OpenMP's threads wait on each other (a tiny step ran 35x slower on two).
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
import torch.nn.functional as F

from bench import compose_train, runner_epoch_s, timed_ms  # scripts/bench.py: shared timing helpers
from synthetic_translation import pairs, translation  # scripts/synthetic_translation.py: the corpus

SIZES = {  # d_model, layers (each side), ffn, heads, batch_tokens, corpus words, training pairs, BPE vocabulary
    "small": (256, 3, 1024, 4, 4096, 1500, 2000, 8000),
    "tiny": (32, 1, 64, 2, 256, 100, 300, 400),
}
EVAL_PAIRS = 8  # valid / test pairs: the final evaluation (greedy, short) is outside the timing but takes time


def write_corpus(root: Path, words: int, train: int) -> None:
    """``{train,valid,test}.{src,tgt}`` of synthetic_translation.py's task (``words`` source words)."""
    source, mapping = translation(words, seed=0)
    rng = random.Random(1)
    for split, count in (("train", train), ("valid", EVAL_PAIRS), ("test", EVAL_PAIRS)):
        rows = pairs(count, source, mapping, rng, (4, 14))
        (root / f"{split}.src").write_text("".join(src + "\n" for src, _ in rows))
        (root / f"{split}.tgt").write_text("".join(tgt + "\n" for _, tgt in rows))


def plain_loops_ms(cfg, data, device: torch.device, repeats: int) -> dict:
    """Hand-written loops over the run's training batches (made once, on the device) on the run's model."""
    from sparsetrain.runner.models import build_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data, "translation").to(device).train()
    batches = [data.train.make(plan) for plan in data.train.plans(0)]
    optimizers = {"plain_adam_ms": torch.optim.Adam(model.parameters(), lr=1e-3)}
    try:
        optimizers["plain_fused_adam_ms"] = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    except RuntimeError as error:  # no fused Adam on this device
        print(f"fused Adam skipped: {error}", file=sys.stderr)

    def epoch(optimizer: torch.optim.Optimizer) -> None:
        for batch in batches:
            labels = batch["labels"]
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels)).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100,
                                   label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    timings = {key: timed_ms(lambda: epoch(optimizer), device, repeats) / len(batches)
               for key, optimizer in optimizers.items()}

    def make_all() -> None:
        for plan in data.train.plans(1):
            data.train.make(plan)

    timings["input_ms"] = timed_ms(make_all, device, repeats) / len(batches)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny Marian on a tiny corpus (smoke run)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the runner's timing (>= 2)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs of each plain loop (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (all loops; more than 1 on a loaded "
                        "machine makes OpenMP wait on descheduled threads: a tiny step 35x slower)")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the plain loops and the runner "
                        "(medians reported)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    size = "tiny" if args.quick else "small"
    width, layers, ffn, heads, batch_tokens, words, train, vocab_size = SIZES[size]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(Path(tmp), words, train)
        model = (f"{{model_type:marian,d_model:{width},encoder_layers:{layers},decoder_layers:{layers},"
                 f"encoder_ffn_dim:{ffn},decoder_ffn_dim:{ffn},encoder_attention_heads:{heads},"
                 f"decoder_attention_heads:{heads},scale_embedding:true}}")
        common = ["model=hf", f"model.config={model}", "dataset=translation", f"dataset.root={tmp}",
                  "dataset.source_lang=src", "dataset.target_lang=tgt", f"dataset.batch_tokens={batch_tokens}",
                  f"dataset.vocab_size={vocab_size}", "task.name=translation", "task.beam=1", "task.max_len_b=8",
                  "label_smoothing=0.1", f"eval_batch_size={EVAL_PAIRS}", "optimizer=adam", "optimizer.lr=1e-3",
                  "schedule=constant", "method=dense", f"device={device.type}", f"threads={args.threads}",
                  "log_every=0"]
        from sparsetrain.data.build import build_data

        cfg = compose_train(*common)
        data = build_data(cfg.dataset, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                          device=device, seed=cfg.seed)
        steps = len(data.train)
        row = {"size": size, "device": device.type, "threads": args.threads, "batch_tokens": batch_tokens,
               "vocabulary": data.num_classes, "pairs": data.train.num_samples, "steps_per_epoch": steps,
               "mean_pairs_per_batch": data.train.batch_size}
        rounds = []
        for _ in range(args.rounds):  # alternated, so that a drifting machine weighs on both sides alike
            timings = plain_loops_ms(cfg, data, device, args.repeats)
            timings["runner_dense_ms"] = runner_epoch_s(common, args.epochs) * 1e3 / steps
            for key in [k for k in timings if k.startswith("plain_")]:
                timings[f"runner_vs_{key[len('plain_'):-len('_ms')]}"] = timings["runner_dense_ms"] / timings[key]
            rounds.append(timings)
    row.update({key: statistics.median(r[key] for r in rounds) for key in rounds[0]})  # ratios: of each round
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({args.threads} threads)"
    print(f"Marian {size} ({layers}+{layers} layers, width {width}, ffn {ffn}, {heads} heads, vocabulary "
          f"{row['vocabulary']}), batches of <= {batch_tokens} tokens ({row['mean_pairs_per_batch']} pairs on "
          f"average, {steps} per epoch), Adam, {where}, torch {torch.__version__}; ms per step, median of "
          f"{args.repeats} repeats and {args.rounds} rounds")
    print(f"  plain loop, torch.optim.Adam (default): {row['plain_adam_ms']:.1f}")
    if "plain_fused_adam_ms" in row:
        print(f"  plain loop, fused Adam as the runner (the limit): {row['plain_fused_adam_ms']:.1f}")
    print(f"  runner's batch making alone (plans: gather, pad, to {device.type}): {row['input_ms']:.2f}")
    limit = f", {row['runner_vs_fused_adam']:.2f}x the limit" if "runner_vs_fused_adam" in row else ""
    print(f"  sparsetrain dense translation step: {row['runner_dense_ms']:.1f} [{row['runner_vs_adam']:.2f}x the "
          f"default Adam loop{limit}]")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
