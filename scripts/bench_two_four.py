"""2:4 semi-structured sparsity on a CUDA GPU, against the same dense model in one run: a BERT-base-shaped encoder
stack (hidden 768, intermediate 3072, 12 heads, sequence 128; random weights: speed does not depend on the values)
with every linear weight of its layers 2:4 by magnitude, in bf16, dense against its linear layers converted by
``runtime.semi_structured`` (what ``sparsetrain-export --format semi_structured`` writes), at batch 1 and the
throughput batch; CUDA-event medians; the FLOP bound beside (the linear layers at half their FLOPs, attention's
products and the rest dense).
The logits of both are compared too. SR-STE's training step against the dense step is in ``scripts/bench.py``.

    python scripts/bench_two_four.py                  # needs CUDA; prints a table, --json writes it
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from sparsetrain.runtime.semi_structured import DTYPE, to_semi_structured, two_four_layers
from sparsetrain.sparsity.flops import layer_flops
from sparsetrain.sparsity.patterns import select

TARGET = 1.2  # the target at the throughput batch


class _TwoFour:
    """The pattern ``select`` reads: n=2 of every m=4 consecutive inputs."""

    name, n, m = "nm", 2, 4


class EncoderLayer(nn.Module):
    """A BERT-base layer (post-norm, GELU) with its six matrices as ``nn.Linear``: the shapes without transformers,
    which the GPU machine lacks."""

    def __init__(self, hidden: int = 768, heads: int = 12, intermediate: int = 3072):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.output = (nn.Linear(hidden, hidden) for _ in range(4))
        self.up, self.down = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, sequence, hidden = x.shape
        q, k, v = (f(x).view(batch, sequence, self.heads, -1).transpose(1, 2) for f in (self.query, self.key, self.value))
        attention = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, sequence, hidden)
        x = self.norm1(x + self.output(attention))
        return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))


def encoder(layers: int, sequence: int) -> nn.Module:
    """Token embeddings (vocabulary 1024) and ``layers`` encoder layers, in eval mode."""
    return nn.Sequential(nn.Embedding(1024, 768), *(EncoderLayer() for _ in range(layers))).eval()


def two_four_(model: nn.Module) -> None:
    """Keep the 2 largest |w| of every 4 consecutive inputs in every linear weight, in place."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(select(_TwoFour, module.weight.abs(), 0))


def flop_bound(model: nn.Module, tokens: torch.Tensor) -> float:
    """Forward FLOPs over the same with every linear layer at half its FLOPs; attention's two products per layer
    (4 x sequence² x hidden a sequence) dense."""
    _, per_layer = layer_flops(model, forward=lambda m: m(tokens))
    linear = sum(per_layer.values())
    layers = [module for module in model.modules() if isinstance(module, EncoderLayer)]
    attention = sum(4 * tokens.numel() * tokens.shape[1] * layer.query.out_features for layer in layers)
    return (linear + attention) / (0.5 * linear + attention)


def cuda_ms(model: nn.Module, tokens: torch.Tensor, repeats: int, inner: int = 20) -> float:
    """Median milliseconds per forward over ``repeats`` blocks of ``inner`` forwards, after a warm-up."""
    with torch.inference_mode():
        for _ in range(inner):
            model(tokens)
        samples = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                model(tokens)
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / inner)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="the throughput batch")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: 2:4 semi-structured kernels need a CUDA GPU; run this on one", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    dense = encoder(args.layers, args.sequence)
    two_four_(dense)
    example = torch.randint(1024, (1, args.sequence))
    bound = flop_bound(dense, example)
    sparse = encoder(args.layers, args.sequence)
    sparse.load_state_dict(dense.state_dict())
    layers, _ = two_four_layers(sparse)
    refused = to_semi_structured(sparse, layers)
    dense.to(device="cuda", dtype=DTYPE)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16; {len(layers) - len(refused)} of "
          f"{len(layers)} linear layers semi-structured; milliseconds per forward (median)")
    print("| batch | tokens | dense ms | 2:4 ms | speed-up | FLOP bound | max logit difference |\n|---|---|---|---|---|---|---|")
    rows = []
    for batch in (1, args.batch):
        tokens = torch.randint(1024, (batch, args.sequence), device="cuda")
        with torch.inference_mode():
            difference = float((dense(tokens) - sparse(tokens)).abs().max())
        dense_ms, sparse_ms = cuda_ms(dense, tokens, args.repeats), cuda_ms(sparse, tokens, args.repeats)
        rows.append({"batch": batch, "tokens": batch * args.sequence, "dense_ms": dense_ms, "two_four_ms": sparse_ms,
                     "speedup": dense_ms / sparse_ms, "flop_bound": bound, "max_difference": difference})
        goal = f" (target {TARGET}x)" if batch == args.batch else ""
        print(f"| {batch} | {batch * args.sequence} | {dense_ms:.3f} | {sparse_ms:.3f} | {dense_ms / sparse_ms:.2f}x{goal} "
              f"| {bound:.2f}x | {difference:.3g} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "refused": refused, "rows": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
