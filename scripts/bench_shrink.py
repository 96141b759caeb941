"""Dense against shrunk CNNs at half their channels: CPU inference time of one batch, one thread, next to the FLOP
bound (dense FLOPs / shrunk FLOPs).

The channels are the method's own selection: ``method=oneshot method.pattern.name=channel`` with a uniform 50 %
of every convolution's weights (the output layer dense) prunes the initialised model (its BatchNorms given
trained-like shifts and statistics) by magnitude, one selection per group of coupled layers, BatchNorms masked
with their filters; ``shrink_channels`` (what ``sparsetrain-export --format shrunk`` runs) then removes the zero
channels, and the shrunk logits are checked against the masked ones.

    python scripts/bench_shrink.py                            # ResNet-20 (both shortcuts) and VGG-16, batch 64
    python scripts/bench_shrink.py --models vgg16 --batch 16
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from torch import nn

from sparsetrain.methods.base import RunContext
from sparsetrain.methods.build import build_method
from sparsetrain.models.zoo import build_model
from sparsetrain.runtime.shrink import shrink_channels
from sparsetrain.sparsity.flops import layer_flops

IN_SHAPE, CLASSES = (3, 32, 32), 10
MODELS = {"resnet20": ("resnet20", {"shortcut": "pad"}),
          "resnet20-projection": ("resnet20", {"shortcut": "projection"}), "vgg16": ("vgg16", {})}
OVERRIDES = ["method=oneshot", "method.pattern.name=channel", "method.scope=layerwise", "method.distribution=uniform",
             "method.dense_layers=[last]", "sparsity=0.5"]


def masked_model(name: str, options: dict) -> nn.Module:
    """``name`` at initialisation with trained-like BatchNorms, pruned to half its channels by the channel
    pattern's own selection."""
    torch.manual_seed(0)
    model = build_model(name, IN_SHAPE, CLASSES, **options)
    trained_norms(model)
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=OVERRIDES)
    method = build_method(cfg.method, cfg.sparsity)
    method.setup(RunContext(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), train_batches=None, loss_fn=None,
        in_shape=IN_SHAPE, seed=0, device=torch.device("cpu"), steps_per_epoch=1, total_steps=1,
        lr_factor=lambda step: 1.0, run_dir=Path("."), log=lambda event: None, fresh_weights=lambda seed: {},
        num_classes=CLASSES, example=(torch.randn(1, *IN_SHAPE), torch.zeros(1, dtype=torch.long))))
    method.prune(method.magnitude_scores(), cfg.sparsity)
    return model.eval()


@torch.no_grad()
def trained_norms(model: nn.Module) -> None:
    """Seeded shifts and running statistics in every BatchNorm, as training leaves them (at initialisation a
    BatchNorm maps zero to zero, which would hide whether the method masks it)."""
    generator = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.bias.normal_(0, 0.1, generator=generator)
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)


def seconds(models: list[nn.Module], inputs: torch.Tensor, repeats: int) -> list[float]:
    """Each model's median time of one forward over ``repeats`` runs, the models taking turns (a load on the
    machine slows them alike), after two warm-up runs each."""
    times = [[] for _ in models]
    with torch.inference_mode():
        for _ in range(repeats + 2):
            for model, row in zip(models, times):
                start = time.perf_counter()
                model(inputs)
                row.append(time.perf_counter() - start)
    return [sorted(row[2:])[repeats // 2] for row in times]


def channels(model: nn.Module) -> int:
    return sum(module.out_channels for module in model.modules() if isinstance(module, nn.Conv2d))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    inputs = torch.randn(args.batch, *IN_SHAPE, generator=torch.Generator().manual_seed(1))
    print(f"batch {args.batch}, {torch.get_num_threads()} thread, median of {args.repeats} (dense and shrunk in turn)")
    print(f"{'model':<20} {'channels':>11} {'dense ms':>9} {'shrunk ms':>10} {'speed-up':>9} {'FLOP bound':>11} "
          f"{'max |logit diff|':>17}")
    for label in args.models:
        name, options = MODELS[label]
        masked = masked_model(name, options)
        shrunk = copy.deepcopy(masked)
        shrink_channels(shrunk, inputs[:2])
        with torch.inference_mode():
            diff = (shrunk(inputs) - masked(inputs)).abs().max().item()
        dense_time, shrunk_time = seconds([masked, shrunk], inputs, args.repeats)
        bound = layer_flops(masked, IN_SHAPE)[0] / layer_flops(shrunk, IN_SHAPE)[0]
        print(f"{label:<20} {channels(shrunk):>5}/{channels(masked):<5} {1e3 * dense_time:>9.2f} "
              f"{1e3 * shrunk_time:>10.2f} {dense_time / shrunk_time:>8.2f}x {bound:>10.2f}x {diff:>17.1e}")


if __name__ == "__main__":
    main()
