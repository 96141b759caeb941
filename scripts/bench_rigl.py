"""RigL mask-update time and the step-time ratio rigl / dense on one model, measured in one process.

    python scripts/bench_rigl.py [--model resnet50] [--batch 32] [--size 224] [--repeats 5]

Times a dense SGD step, a masked (RigL, non-update) step and a RigL mask update alone (ERK, sparsity 0.9), and
prints the amortised step ratio at delta_t = 100. CUDA timings use CUDA events after warm-up; CPU timings use
perf_counter. Reports medians and the device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from sparsetrain.methods import RunContext, build_method
from sparsetrain.models import build_model


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - began) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    in_shape = (3, args.size, args.size)
    model = build_model(args.model, in_shape, args.classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(args.batch, *in_shape, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["method=rigl", "sparsity=0.9"])
    method = build_method(cfg.method, 0.9)
    method.setup(RunContext(model=model, optimizer=optimizer, train_batches=None, loss_fn=loss_fn,
                            in_shape=in_shape, sparsity=0.9, seed=0, device=device, steps_per_epoch=1000,
                            total_steps=100_000, lr_factor=lambda step: 1.0, run_dir=Path("."), log=lambda e: None,
                            fresh_weights=lambda seed: {}))
    method.start_round(0)

    def backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    def dense_step() -> None:
        backward()
        optimizer.step()

    def masked_step() -> None:
        backward()
        if method.before_optimizer_step(1):  # step 1: not an update step
            optimizer.step()
        method.after_optimizer_step(1)

    backward()
    update_ms = timed(lambda: method.update(0, {n: p.grad.abs() for n, p in method.targets.params.items()}),
                      device, args.repeats)
    dense_ms = timed(dense_step, device, args.repeats)
    masked_ms = timed(masked_step, device, args.repeats)
    delta_t = cfg.method.delta_t
    amortised = ((delta_t - 1) * masked_ms + (timed(backward, device, args.repeats) + update_ms)) / delta_t
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "model": args.model, "batch": args.batch, "input": list(in_shape),
        "dense_step_ms": round(dense_ms, 3), "rigl_masked_step_ms": round(masked_ms, 3),
        "rigl_update_ms": round(update_ms, 3), "rigl_step_amortised_ms": round(amortised, 3),
        "ratio_rigl_to_dense": round(amortised / dense_ms, 4), "delta_t": delta_t,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
