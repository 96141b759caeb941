"""Step-time benchmark: a plain PyTorch loop, the runner's step for every method, mask updates alone, and the
input pipeline, measured in one process on the same model and data; prints a table of milliseconds and ratios
and writes JSON.

    python scripts/bench.py                      # the models of the speed issue, on CUDA if present
    python scripts/bench.py --quick              # tiny shapes: a smoke run on CPU

Runner steps are measured as the difference of two complete runs of n1 and n2 steps (no evaluation or
checkpoint in between), divided by n2 - n1, so setup, the final evaluation and the summary cancel out and
mask updates are amortised at each method's default interval. On CUDA: bf16 autocast and channels_last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from sparsetrain.models import build_model
from sparsetrain.train.run import run

# (model, dataset, batch, optimizer): the speed issue's list; ResNet-50 on ImageNet-shaped data is timed on the
# plain loop and for its RigL update only (no ImageNet-shaped tensor dataset ships with the runner).
CASES = [("resnet20", "cifar10", 128, "sgd"), ("wrn22_2", "cifar10", 128, "sgd"), ("resnet18", "cifar10", 128, "sgd"),
         ("lenet300_100", "mnist", 60, "adam")]
QUICK_CASES = [("lenet300_100", "digits", 64, "sgd")]
METHODS = ["dense", "static", "gmp", "rigl", "set", "snfs"]


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def median_ms(fn, device: torch.device, repeats: int, inner: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        began = clock(device)
        for _ in range(inner):
            fn()
        samples.append((clock(device) - began) * 1e3 / inner)
    return statistics.median(samples)


def plain_loop_ms(model_name: str, in_shape, classes: int, batch: int, device: torch.device, repeats: int) -> dict:
    """A minimal eager loop (and, on CUDA, the same step captured as one CUDA graph): the limit to compare with."""
    model = build_model(model_name, in_shape, classes).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *in_shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()

    result = {"plain_eager_ms": median_ms(step, device, repeats, inner=10)}
    if cuda:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        result["plain_graph_ms"] = median_ms(graph.replay, device, repeats, inner=20)
    return result


def runner_ms(overrides: list[str], n1: int, n2: int) -> float:
    """Per-step milliseconds of the full runner (difference of two runs of n1 and n2 steps)."""
    times = []
    for steps in (n1, n2):
        with tempfile.TemporaryDirectory() as tmp, initialize_config_module(
                config_module="sparsetrain.configs", version_base="1.3"):
            args = [*overrides, f"steps={steps}", "eval_every=0", "checkpoint_every=0"]
            cfg = compose(config_name="train", overrides=args)
            began = time.perf_counter()
            run(cfg, Path(tmp), args)
            times.append(time.perf_counter() - began)
    return (times[1] - times[0]) * 1e3 / (n2 - n1)


def input_pipeline_ms(dataset: str, batch: int, device: torch.device, repeats: int, root: str) -> float:
    """Milliseconds per training batch of the device-resident loader (gather, per-sample augmentation, normalise)."""
    from sparsetrain.data import build_data

    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"dataset={dataset}", f"dataset.root={root}"])
    data = build_data(cfg.dataset, batch_size=batch, eval_batch_size=1000, device=device, seed=0)
    batches = min(len(data.train), 50)

    def epoch() -> None:
        for index, _ in enumerate(data.train.epoch(0)):
            if index + 1 == batches:
                break

    return median_ms(epoch, device, repeats, inner=1) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke run)")
    parser.add_argument("--models", nargs="*", help="only these models of the case list")
    parser.add_argument("--root", default="data", help="dataset.root holding MNIST/CIFAR-10")
    parser.add_argument("--steps", type=int, nargs=2, default=(100, 300), metavar=("N1", "N2"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = ["precision=bf16"] if device.type == "cuda" else []
    rows = []
    cases = [case for case in (QUICK_CASES if args.quick else CASES) if not args.models or case[0] in args.models]
    for model_name, dataset, batch, optimizer in cases:
        classes, in_shape = {"cifar10": (10, (3, 32, 32)), "mnist": (10, (1, 28, 28)),
                             "digits": (10, (1, 8, 8))}[dataset]
        row = {"model": model_name, "dataset": dataset, "batch": batch}
        row.update(plain_loop_ms(model_name, in_shape, classes, batch, device, args.repeats))
        row["input_ms"] = input_pipeline_ms(dataset, batch, device, args.repeats, args.root)
        common = [f"model={model_name}", f"dataset={dataset}", f"dataset.root={args.root}", f"batch_size={batch}",
                  f"optimizer={optimizer}", *precision]
        for method in METHODS:
            sparsity = "0.0" if method == "dense" else "0.9"
            row[f"{method}_ms"] = runner_ms([*common, f"method={method}", f"sparsity={sparsity}"], *args.steps)
        rows.append(row)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}; milliseconds per training step (median); ratios in brackets")
    for row in rows:
        limit = row.get("plain_graph_ms", row["plain_eager_ms"])
        dense = row["dense_ms"]
        cells = [f"{row['model']}/{row['dataset']} b{row['batch']}", f"plain {row['plain_eager_ms']:.2f}"]
        if "plain_graph_ms" in row:
            cells.append(f"graph {row['plain_graph_ms']:.2f}")
        cells.append(f"input {row['input_ms']:.2f}")
        cells.append(f"runner dense {dense:.2f} [{dense / limit:.2f}x limit]")
        cells += [f"{m} {row[f'{m}_ms']:.2f} [{row[f'{m}_ms'] / dense:.2f}x]" for m in METHODS[1:]]
        print(" | ".join(cells))
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
