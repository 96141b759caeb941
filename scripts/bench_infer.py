"""Inference speed of sparse models against the same dense models, in one run, with the FLOP bound beside each:
LeNet-300-100 (MNIST-shaped inputs) and a BERT-base-shaped encoder stack (hidden 768, intermediate 3072, 12
heads, sequence 128; random weights: speed does not depend on the values) at 90, 95 and 98 % unstructured sparsity
in every masked linear layer (a uniform random mask per layer; the encoder's six matrices per layer, not the
embeddings); and the encoder at 90 % constant fan-in (every output unit keeps the same number of inputs). The sparse
model is what ``sparsetrain-export --format sparse`` writes: each layer's kernels chosen by measuring here (among
dense, CSR and gathered), for one row and for the rows of the throughput batch, and each layer's output layout by
timing the model on that batch. Also each file's size against the dense one. Channel patterns and the shrunk
export: ``scripts/bench_shrink.py``.

    python scripts/bench_infer.py                   # one thread, every case (about fifteen minutes on 2 cores)
    python scripts/bench_infer.py --cases lenet     # LeNet only (seconds)
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

# (model, pattern, sparsity, the formats timed against dense)
CASES = {"lenet": [("lenet", "unstructured", sparsity, ("sparse",)) for sparsity in (0.9, 0.95, 0.98)],
         "encoder": [("encoder", "unstructured", sparsity, ("sparse",)) for sparsity in (0.9, 0.95, 0.98)],
         "encoder-fanin": [("encoder", "fanin", 0.9, ("sparse",))]}
# the targets: speed-up at (batch 1, throughput batch)
TARGETS = {("lenet", "unstructured", 0.9, "sparse"): (None, 2.0),
           ("lenet", "unstructured", 0.95, "sparse"): (None, 3.5),
           ("lenet", "unstructured", 0.98, "sparse"): (None, 6.0),
           ("encoder", "unstructured", 0.9, "sparse"): (2.0, 1.4),
           ("encoder", "unstructured", 0.95, "sparse"): (3.5, 2.0),
           ("encoder", "unstructured", 0.98, "sparse"): (6.0, 4.0),
           ("encoder", "fanin", 0.9, "sparse"): (2.0, None)}


def lenet() -> tuple[nn.Module, list[int]]:
    return build_model("lenet300_100", (1, 28, 28), 10).eval(), [1, 28, 28]


def encoder(layers: int, sequence: int = 128) -> tuple[nn.Module, list[int]]:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1024, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                        num_hidden_layers=layers, max_position_embeddings=sequence, attn_implementation="eager")
    return BertModel(config, add_pooling_layer=False).eval(), [sequence]


def masked(model: nn.Module, pattern: str, sparsity: float, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with ``sparsity`` of each linear weight zero at random (``unstructured``), or of each
    output unit's inputs (``fanin``)."""
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, nn.Linear):
                scores = torch.rand(weight.shape, generator=generator)
                if pattern == "fanin":  # the same number kept in every row
                    scores = (scores.argsort(1).argsort(1) >= round(sparsity * weight.shape[1])).float()
                weight.mul_(scores >= sparsity if pattern == "unstructured" else scores > 0)
    return model


def form(dense: nn.Module, name: str, inputs, batch: int, rows: int, seconds: float) -> tuple[nn.Module, int, dict]:
    """The model in format ``name``, its file's size in bytes and the kernels chosen (for ``batch`` examples,
    ``rows`` rows)."""
    model = copy.deepcopy(dense)
    kernels = sparsify_linear_layers(model, rows, min_time=seconds / 4, example=inputs(batch))
    return model, len(save(model.state_dict())), {"kernels": kernels}


def measure(case: tuple, build, batch: int, seconds: float) -> list[dict]:
    model_name, pattern, sparsity, names = case
    dense, in_shape = build()
    dense = masked(dense, pattern, sparsity)
    inputs = example_inputs(dense, in_shape)
    rows = batch * (in_shape[0] if len(in_shape) == 1 else 1)
    forms = {name: form(dense, name, inputs, batch, rows, seconds) for name in names}
    report = compare(dense, {name: model for name, (model, _, _) in forms.items()}, inputs, batch, seconds)
    dense_bytes = len(save(dense.state_dict()))
    results = []
    for name, (_, size, chosen) in forms.items():
        results.append({"model": model_name, "pattern": pattern, "sparsity": sparsity, "format": name, **chosen,
                        "flop_bound": report["flop_bound"][name], "file_ratio": size / dense_bytes,
                        **{regime: {"batch": report[regime]["batch"], "dense_ms": report[regime]["dense_ms"],
                                    "ms": report[regime][f"{name}_ms"], "speedup": report[regime][f"{name}_speedup"]}
                           for regime in ("latency", "throughput")}})
        print(format_row(results[-1]), flush=True)
    return results


def format_row(row: dict) -> str:
    target = TARGETS.get((row["model"], row["pattern"], row["sparsity"], row["format"]), (None, None))
    cells = []
    for regime, goal in zip(("latency", "throughput"), target):
        r = row[regime]
        cells.append(f"{r['batch']} | {r['dense_ms']:.3f} | {r['ms']:.3f} | {r['speedup']:.2f}x"
                     + (f" (target {goal}x)" if goal else ""))
    return (f"| {row['model']} | {row['pattern']} | {row['sparsity']:.0%} | {row['format']} | {cells[0]} | "
            f"{cells[1]} | {row['flop_bound']:.1f}x | {row['file_ratio']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64, help="the throughput batch")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); milliseconds per forward (median)")
    print("| model | pattern | sparsity | format | batch | dense ms | ms | speed-up | batch | dense ms | ms | speed-up | "
          "FLOP bound | file vs dense |\n|" + "---|" * 14)
    builds = {"lenet": lenet, "encoder": lambda: encoder(args.layers)}
    rows = [row for name in args.cases for case in CASES[name] for row in measure(case, builds[case[0]], args.batch,
                                                                                  args.seconds)]
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
