"""Inference speed of sparse models against the same dense models, in one run, with the FLOP bound beside each:
LeNet-300-100 (MNIST-shaped inputs) and a BERT-base-shaped encoder stack (hidden 768, intermediate 3072, 12
heads, sequence 128; random weights: speed does not depend on the values), each at 90, 95 and 98 % sparsity in
every masked linear layer (a uniform random mask per layer; the encoder's six matrices per layer, not the
embeddings). The sparse model is what ``sparsetrain-export --format sparse`` writes: each layer's kernels chosen
by measuring here, for one row and for the rows of the throughput batch. Also the file size of the sparse export
against the dense one.

    python scripts/bench_infer.py                   # one thread, both models (about ten minutes on 2 cores)
    python scripts/bench_infer.py --models lenet    # LeNet only (seconds)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from sparsetrain.infer_bench import compare, example_inputs
from sparsetrain.models.zoo import build_model
from sparsetrain.runtime.tune import sparsify_linear_layers

SPARSITIES = (0.9, 0.95, 0.98)
# the targets: speed-up at (batch 1, throughput batch) for 90 / 95 / 98 %
TARGETS = {"lenet": {0.9: (None, 2.0), 0.95: (None, 3.5), 0.98: (None, 6.0)},
           "encoder": {0.9: (2.0, 1.4), 0.95: (3.5, 2.0), 0.98: (6.0, 4.0)}}


def lenet() -> tuple[nn.Module, list[int]]:
    return build_model("lenet300_100", (1, 28, 28), 10).eval(), [1, 28, 28]


def encoder(layers: int, sequence: int = 128) -> tuple[nn.Module, list[int]]:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1024, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                        num_hidden_layers=layers, max_position_embeddings=sequence, attn_implementation="eager")
    return BertModel(config, add_pooling_layer=False).eval(), [sequence]


def masked(model: nn.Module, sparsity: float, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with a random ``sparsity`` fraction of each linear weight zero."""
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(torch.rand(module.weight.shape, generator=generator) >= sparsity)
    return model


def measure(name: str, build, batch: int, seconds: float) -> list[dict]:
    dense, in_shape = build()
    inputs = example_inputs(dense, in_shape)
    rows = batch * (in_shape[0] if len(in_shape) == 1 else 1)
    results = []
    for sparsity in SPARSITIES:
        dense_masked = masked(dense, sparsity)
        sparse = copy.deepcopy(dense_masked)
        kernels = sparsify_linear_layers(sparse, rows, min_time=seconds / 4)
        report = compare(dense_masked, sparse, inputs, batch, seconds)
        size = len(save(sparse.state_dict())) / len(save(dense_masked.state_dict()))
        results.append({"model": name, "sparsity": sparsity, "flop_bound": report["flop_bound"], "file_ratio": size,
                        "latency": report["latency"], "throughput": report["throughput"], "kernels": kernels})
        print(format_row(results[-1]), flush=True)
    return results


def format_row(row: dict) -> str:
    target = TARGETS[row["model"]][row["sparsity"]]
    cells = []
    for regime, goal in zip(("latency", "throughput"), target):
        r = row[regime]
        cells.append(f"{r['batch']} | {r['dense_ms']:.3f} | {r['sparse_ms']:.3f} | {r['speedup']:.2f}x"
                     + (f" (target {goal}x)" if goal else ""))
    return (f"| {row['model']} | {row['sparsity']:.0%} | {cells[0]} | {cells[1]} | {row['flop_bound']:.1f}x | "
            f"{row['file_ratio']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=("lenet", "encoder"), default=["lenet", "encoder"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64, help="the throughput batch")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); milliseconds per forward (median)")
    print("| model | sparsity | batch | dense ms | sparse ms | speed-up | batch | dense ms | sparse ms | speed-up | "
          "FLOP bound | file vs dense |\n|" + "---|" * 12)
    builds = {"lenet": lenet, "encoder": lambda: encoder(args.layers)}
    rows = [row for name in args.models for row in measure(name, builds[name], args.batch, args.seconds)]
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
