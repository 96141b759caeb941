"""Peak memory and time of one-shot pruning (``method=sparsegpt``, ``method=wanda``) on CPU, against the same run
with ``method=dense``: an OPT-125m-shaped causal LM (hidden 768, 12 blocks, ffn 3072, 12 heads, the real vocabulary
of 50272, ~125 M parameters; ``--arch llama``: a Llama of the same size) with random weights (time and memory do not
depend on the values), saved with ``save_pretrained`` into a temporary directory, a corpus of random words and a
WordPiece tokenizer written here (offline). The tokenizer's vocabulary is small (``--words``); the model keeps its
50272 rows, which sparsetrain accepts (token ids only index the embedding), so the parameter count is the real one.

Each method is its own process (``python -m sparsetrain ...``): it loads the model, prunes it from ``--samples``
calibration blocks of ``--seq`` tokens (no training step), evaluates the test split and writes its checkpoint and
masks. Per process: the wall time and the peak resident memory (``os.wait4``'s ``ru_maxrss`` of that child alone),
and from its summary.json the calibration seconds, the cached block inputs and the largest statistics of one block
(SparseGPT: the Gram matrix of each layer's inputs; Wanda: its diagonal). The baseline ``dense`` is the same run
(load, evaluate, save) with one step of batch 1 that trains only the final layer norm (``steps`` must be >= 1; no
gradient or optimizer state of the matrices, its logits smaller than evaluation's), so "RSS above dense" is what a
one-shot pruner adds: calibration, and also the run's mask set (a bool mask and a multiplier in the weights' dtype
per prunable weight, ~5 bytes each, held by every masked method). The peak of all three runs is typically reached
while evaluating (the logits: eval batch x seq x 50272 floats), not while calibrating.

The authors calibrate on 128 blocks of 2048 tokens; 2048 is too slow on a CPU of a few cores (the block forwards and
the Gram products grow with samples x seq), hence ``--seq 128`` by default. The first run (dense) also tokenises the
corpus; the others read the cached blocks.

    python scripts/bench_calibration.py --threads 1                # defaults: 128 x 128, sparsegpt wanda
    python scripts/bench_calibration.py --samples 32 --methods sparsegpt --arch llama
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EOS = "[EOS]"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NORM = {"opt": "model.decoder.final_layer_norm.weight", "llama": "model.norm.weight"}


def build(root: Path, args: argparse.Namespace) -> int:
    """Tokenizer, corpus and random model under ``root``; the model's parameter count."""
    import torch
    import transformers

    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
                    for _ in range(args.words)})
    vocab = SPECIAL + words + [EOS]
    transformers.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, eos_token=EOS).save_pretrained(
        str(root / "tokenizer"))
    lines = args.samples * args.seq // 12 + 64  # ~12 tokens a line (11 words + eos on average): enough blocks
    for name, count in (("train", lines), ("test", args.test_blocks * args.seq // 12 + 1)):
        text = (" ".join(rng.choices(words, k=rng.randint(6, 16))) for _ in range(count))
        (root / f"{name}.txt").write_text("\n".join(text) + "\n")
    torch.manual_seed(0)
    if args.arch == "opt":
        config = transformers.OPTConfig(hidden_size=768, num_hidden_layers=12, ffn_dim=3072, num_attention_heads=12,
                                        vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=768)
        model = transformers.OPTForCausalLM(config)
    else:
        config = transformers.LlamaConfig(hidden_size=768, num_hidden_layers=12, intermediate_size=2048,
                                          num_attention_heads=12, num_key_value_heads=12, vocab_size=50272,
                                          max_position_embeddings=2048, tie_word_embeddings=True)
        model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(str(root / "model"))
    return model.num_parameters()


def run(root: Path, method: str, args: argparse.Namespace) -> dict:
    """One ``python -m sparsetrain`` process: wall seconds, peak RSS (bytes) and its summary.json."""
    run_dir = root / f"run_{method}"
    overrides = [
        "model=hf", f"model.name_or_path={root / 'model'}", "dataset=text", f"dataset.train_file={root / 'train.txt'}",
        f"dataset.test_file={root / 'test.txt'}", f"dataset.tokenizer={root / 'tokenizer'}",
        f"dataset.cache_dir={root / 'cache'}", f"dataset.max_seq_length={args.seq}", "task.name=causal_lm",
        f"batch_size={1 if method == 'dense' else args.batch}", f"eval_batch_size={args.batch}", f"threads={args.threads}", "device=cpu",
        f"hydra.run.dir={run_dir}"]
    if method == "dense":
        overrides += ["method=dense", "steps=1", "optimizer=sgd", f"finetune.trainable=[{NORM[args.arch]}]"]
    else:
        overrides += [f"method={method}", f"sparsity={args.sparsity}", f"method.n_samples={args.samples}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    log = open(root / f"{method}.log", "w")
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "sparsetrain", *overrides], stdout=log, stderr=subprocess.STDOUT,
                             env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{method} failed; see {root / f'{method}.log'}:\n" + (root / f"{method}.log").read_text()[-3000:])
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall": wall, "rss": usage.ru_maxrss * 1024, "summary": summary}  # ru_maxrss: KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=128, help="calibration blocks (method.n_samples)")
    parser.add_argument("--seq", type=int, default=128, help="tokens a block (the authors: 2048)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of each run")
    parser.add_argument("--methods", nargs="+", default=["sparsegpt", "wanda"], choices=["sparsegpt", "wanda"])
    parser.add_argument("--arch", choices=sorted(NORM), default="opt")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=8, help="calibration and evaluation batch")
    parser.add_argument("--test-blocks", type=int, default=16, help="blocks of the test split evaluated")
    parser.add_argument("--words", type=int, default=2000, help="the tokenizer's vocabulary (random words)")
    parser.add_argument("--workdir", help="keep the model, corpus and runs here (default: a temporary directory)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_calibration_") as temporary:
        root = Path(args.workdir or temporary)
        root.mkdir(parents=True, exist_ok=True)
        parameters = build(root, args)
        results = {method: run(root, method, args) for method in ["dense", *args.methods]}
    gib, mib = 2**30, 2**20
    print(f"{args.arch} {parameters / 1e6:.1f} M parameters, sparsity {args.sparsity}, threads {args.threads}, "
          f"batch {args.batch}, {args.test_blocks} test blocks, fp32 on CPU\n")
    print("| method | parameters | samples x seq | wall s | calibration s | peak RSS GiB | RSS above dense GiB "
          "| cached block inputs MiB | one block's statistics MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, result in results.items():
        cal = result["summary"].get("dynamics", {}).get("calibration", {})
        shape = f"{args.samples} x {args.seq}" if cal else f"- (1 step of 1 x {args.seq})"
        cells = [method, f"{parameters / 1e6:.1f} M", shape, f"{result['wall']:.1f}",
                 f"{cal['seconds']:.1f}" if cal else "-", f"{result['rss'] / gib:.2f}",
                 f"{(result['rss'] - results['dense']['rss']) / gib:+.2f}" if cal else "-",
                 f"{cal['cached_bytes'] / mib:.1f}" if cal else "-",
                 f"{cal['statistics_bytes'] / mib:.2f}" if cal else "-"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
