"""Step-time benchmark, in one process on the same model and data: a plain PyTorch loop (eager, and on CUDA the
same step as one CUDA graph: the limit; both sample and augment the batch on the device), the runner's step for
every method on each step path (eager, and the captured step graph on CUDA), each mask update alone, and the
input pipeline (device-resident batches vs a classic DataLoader with PIL transforms in worker processes); prints
tables of milliseconds and ratios and writes JSON.

    python scripts/bench.py            # the models of the speed issue, on CUDA if present
    python scripts/bench.py --quick    # tiny shapes: a smoke run on CPU

The data is ``dataset=synthetic`` of each case's shape (speed does not depend on the pixels): CIFAR-10-shaped
(50,000 images, pad-4 crop + flip), MNIST-shaped (60,000, no augmentation), ImageNet-shaped (224 x 224, 1000
classes, pad-28 crop + flip; 25 batches an epoch).

Runner steps are timed inside a run of a few epochs without evaluation or checkpoints: the median epoch after
the first (which holds warm-up and graph capture) divided by its steps, so the mask events that fall in an epoch
are in it (RigL's update every 100 steps, SET's and SNFS's at the epoch end, GMP's pruning event once an epoch;
mask_training's binarisation at every step, its threshold resets every 1000 steps and at the end).
Where that would misstate them (an interval longer than the epoch, ITOP's 4000 steps; or a synthetic epoch
shorter than the real one, the ImageNet-shaped case), the run keeps its events to step 0 and the row (marked *)
is its every-step cost plus the event alone divided by its interval on the real dataset. With a graph path
timed, the eager path times only dense by default on CUDA (``--eager-methods``): the eager-vs-graph contrast at
a fraction of the time. CUDA timings use CUDA events after warm-up, with bf16 autocast and channels_last;
medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from sparsetrain.times import parse_interval
from sparsetrain.data.build import build_data
from sparsetrain.data.synthetic import load_synthetic
from sparsetrain.data.tensor_batches import random_crop_flip
from sparsetrain.diagnostics import kernel_ops
from sparsetrain.methods.base import RunContext
from sparsetrain.methods.build import build_method
from sparsetrain.models.zoo import build_model
from sparsetrain.runner.run import run

# (model, data shape, batch, optimizer)
CASES = [("resnet20", "cifar10", 128, "sgd"), ("wrn22_2", "cifar10", 128, "sgd"), ("resnet18", "cifar10", 128, "sgd"),
         ("lenet300_100", "mnist", 60, "adam"), ("resnet50", "imagenet", 64, "sgd")]
QUICK_CASES = [("lenet300_100", "digits", 64, "sgd")]
SHAPES = {  # dataset=synthetic settings: channels, image size, classes, training images, augment
    "cifar10": (3, 32, 10, 50_000, True), "mnist": (1, 28, 10, 60_000, False),
    "imagenet": (3, 224, 1000, 64 * 25, True), "digits": (1, 8, 10, 1437, False)}
REAL_TRAIN = {"cifar10": 50_000, "mnist": 60_000, "imagenet": 1_281_167, "digits": 1437}  # the real training sets
# mask events (a GMP pruning event, a DST update) only at step 0, so the timed epochs hold none
EVENTS_AT_START_ONLY = {"gmp": ["method.end=0it"],
                        **{m: ["method.t_end=1e-9"] for m in ("rigl", "set", "snfs", "itop", "srigl")}}
# mask_training binarises its scores and rewrites W0 * M every step, sr_ste recomputes its 2:4 mask from the dense
# weights every step: their cost is in the step, no update alone
# movement keeps W, steps it and its scores (G ⊙ W) and binarises the scores (top-k) every step
METHODS = ["dense", "static", "gmp", "rigl", "set", "snfs", "itop", "srigl", "acdc", "mask_training", "sr_ste",
           "movement"]
# AC/DC's phases shortened to fit the timed run: its timed epochs hold a compression (GaP's steps are static steps)
RUN_OVERRIDES = {"movement": ["method.initial_warmup=0it", "method.final_warmup=100%"],  # at `sparsity`: plain steps
                 "acdc": ["method.warmup_epochs=1", "method.final_epochs=1", "method.compressed_epochs=1",
                          "method.decompressed_epochs=1"]}
# each alone: DST drop/grow, a GMP event, an LTH round, an AC/DC compression, a GaP step (prune one partition,
# grow the next)
UPDATES = ["rigl", "set", "snfs", "itop", "srigl", "gmp", "lth", "acdc", "gap"]
SPARSITY = 0.9
OWN_SPARSITY = {"dense": 0.0, "sr_ste": 0.5}  # sr_ste at its 2:4 default


def timed_ms(fn, device: torch.device, repeats: int, inner: int = 1) -> float:
    """Median milliseconds per call of ``fn`` over ``repeats`` runs of ``inner`` calls, after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / inner)
        else:
            began = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - began) * 1e3 / inner)
    return statistics.median(samples)


def data_overrides(shape: str) -> list[str]:
    channels, size, classes, train, augment = SHAPES[shape]
    return ["dataset=synthetic", f"dataset.channels={channels}", f"dataset.image_size={size}",
            f"dataset.num_classes={classes}", f"dataset.train_size={train}", "dataset.test_size=1000",
            f"dataset.augment={str(augment).lower()}"]


def in_shape_of(shape: str) -> tuple[int, tuple[int, int, int]]:
    channels, size, classes, _, _ = SHAPES[shape]
    return classes, (channels, size, size)


def compose_train(*overrides: str):
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def plain_loop_ms(model_name: str, shape: str, batch: int, optimizer_name: str, device: torch.device,
                  repeats: int) -> dict:
    """A minimal eager loop (and, on CUDA, the same step captured as one CUDA graph: the limit to compare with):
    a batch sampled from uint8 images on the device, augmented as the runner does (where the data is), normalised,
    forward, backward, optimizer step. PyTorch's default optimizer implementation (Adam marked capturable so
    that the graph can hold it)."""
    classes, in_shape = in_shape_of(shape)
    model = build_model(model_name, in_shape, classes).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optimizer_name == "sgd" else \
        torch.optim.Adam(model.parameters(), lr=1e-3, capturable=cuda)
    resident = min(SHAPES[shape][3], 4096)
    images = torch.randint(0, 256, (resident, *in_shape), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (resident,), device=device)
    pad = in_shape[-1] // 8 if SHAPES[shape][4] else 0
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        index = torch.randint(0, resident, (batch,), device=device)
        x = images.index_select(0, index)
        if pad:
            offsets = torch.randint(0, 2 * pad + 1, (2, batch), device=device)
            x = random_crop_flip(x, pad, offsets, torch.randint(0, 2, (batch,), device=device))
        x = x.float().div_(255).sub_(0.5).div_(0.29)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):
            loss = loss_fn(model(x).float(), labels.index_select(0, index))
        loss.backward()
        optimizer.step()

    result = {"plain_eager_ms": timed_ms(step, device, repeats, inner=10)}
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
        result["plain_graph_ms"] = timed_ms(graph.replay, device, repeats, inner=20)
    return result


def runner_epoch_s(overrides: list[str], epochs: int) -> float:
    """Seconds per training epoch of the full runner: the median time between the epoch-end train events of
    one run after its first epoch (which holds warm-up and capture); epoch-end mask updates are included."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [*overrides, f"epochs={epochs}", "eval_every=0", "checkpoint_every=0"]
        run(compose_train(*args), Path(tmp), args)
        events = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    times = [event["time"] for event in events if event["event"] == "train"]
    return statistics.median(later - earlier for earlier, later in zip(times, times[1:]))


def mask_update_ms(model_name: str, shape: str, batch: int, device: torch.device, repeats: int) -> dict:
    """Each mask update alone at sparsity 0.9 (ERK for DST): a drop/grow of RigL, SET, SNFS and ITOP with their
    scores, a GMP pruning event (magnitude top-k), and an LTH round (prune 20 % of the survivors, rewind); also
    the number of kernel-running ops of each (``update_<name>_ops``)."""
    classes, in_shape = in_shape_of(shape)
    torch.manual_seed(0)
    model = build_model(model_name, in_shape, classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # as the runner trains it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, *in_shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()  # optimizer state exists, as in training
    result = {}
    for name in UPDATES:
        cfg = compose_train(f"method={name}", f"sparsity={0.0 if name == 'lth' else SPARSITY}")
        method = build_method(cfg.method, cfg.sparsity)
        method.setup(RunContext(
            model=model, optimizer=optimizer, train_batches=None, loss_fn=loss_fn, in_shape=in_shape,
            seed=0, device=device, steps_per_epoch=1000, total_steps=100_000,
            lr_factor=lambda step: 1.0, run_dir=Path("."), log=lambda event: None, fresh_weights=lambda seed: {}))
        method.start_round(0)
        if name in ("gmp", "acdc"):
            update = lambda: method.prune(method.magnitude_scores(), SPARSITY)  # noqa: E731
        elif name == "gap":
            update = lambda: method.start_round(1)  # noqa: E731
        elif name == "lth":
            update = lambda: method.end_round(0)  # noqa: E731
        else:
            update = lambda: method.update(1, method.grow_scores(1))  # noqa: E731
        result[f"update_{name}_ms"] = timed_ms(update, device, repeats)
        result[f"update_{name}_ops"] = kernel_ops(update)
    return result


def resident_input_ms(shape: str, batch: int, device: torch.device, repeats: int) -> float:
    """Milliseconds per training batch of the device-resident loader (gather, per-sample augmentation, normalise)."""
    cfg = compose_train(*data_overrides(shape))
    data = build_data(cfg.dataset, batch_size=batch, eval_batch_size=1000, device=device, seed=0)
    batches = min(len(data.train), 50)
    return timed_ms(lambda: _consume(data.train.epoch(0), batches), device, repeats) / batches


def classic_input_ms(shape: str, batch: int, device: torch.device, repeats: int, workers: int) -> float:
    """Milliseconds per batch of the classic pipeline: a DataLoader with ``workers`` processes applying PIL
    transforms (random crop + flip where the dataset is augmented, ToTensor, Normalize), copied to the device."""
    from PIL import Image
    from torchvision import transforms

    source = load_synthetic(compose_train(*data_overrides(shape)).dataset)
    size = source.train_images.shape[-1]
    augment = [transforms.RandomCrop(size, padding=source.crop_pad), transforms.RandomHorizontalFlip()] \
        if source.crop_pad else []
    transform = transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(source.mean, source.std)])
    images = source.train_images.permute(0, 2, 3, 1).squeeze(-1).numpy()

    class PILImages(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int):
            return transform(Image.fromarray(images[index])), source.train_labels[index]

    loader = torch.utils.data.DataLoader(PILImages(), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=device.type == "cuda")
    batches = min(len(loader), 50)

    def epoch() -> None:
        moved = ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)
        _consume(moved, batches)

    return timed_ms(epoch, device, repeats) / batches


def _consume(batches, count: int) -> None:
    for index, _ in enumerate(batches):
        if index + 1 == count:
            break


def bench_case(case: tuple, device: torch.device, args: argparse.Namespace, paths: list[str]) -> dict:
    model_name, shape, batch, optimizer = case
    row = {"model": model_name, "data": shape, "batch": batch, "optimizer": optimizer}
    row.update(plain_loop_ms(model_name, shape, batch, optimizer, device, args.repeats))
    row.update(mask_update_ms(model_name, shape, batch, device, args.repeats))
    row["input_resident_ms"] = resident_input_ms(shape, batch, device, args.repeats)
    row["input_dataloader_ms"] = classic_input_ms(shape, batch, device, args.repeats, args.workers)
    common = [f"model={model_name}", *data_overrides(shape), f"batch_size={batch}", f"optimizer={optimizer}",
              *(["precision=bf16"] if device.type == "cuda" else [])]
    steps_per_epoch = SHAPES[shape][3] // batch
    intervals = {method: event_interval(method, REAL_TRAIN[shape] // batch) for method in EVENTS_AT_START_ONLY}
    row["amortised"] = [m for m, every in intervals.items()
                        if every > steps_per_epoch or steps_per_epoch < REAL_TRAIN[shape] // batch]
    for path in paths:
        for method in timed_methods(path, paths, args.eager_methods):
            sparsity = OWN_SPARSITY.get(method, SPARSITY)
            events = EVENTS_AT_START_ONLY[method] if method in row["amortised"] else []
            epoch_s = runner_epoch_s([*common, f"method={method}", f"sparsity={sparsity}", f"step_graph={path}",
                                      *events, *RUN_OVERRIDES.get(method, [])], args.epochs)
            row[f"{path}_{method}_ms"] = epoch_s * 1e3 / steps_per_epoch
            row[f"{path}_{method}_epoch_s"] = epoch_s
            if events:
                row[f"{path}_{method}_ms"] += row[f"update_{method}_ms"] / intervals[method]
    return row


def event_interval(method: str, real_epoch_steps: int) -> int:
    """Steps between a method's mask events at its defaults, on the real dataset: DST ``delta_t`` or one epoch
    (``update_at=epoch_end``), GMP ``frequency`` (in epochs or steps)."""
    cfg = compose_train(f"method={method}").method
    if method == "gmp":
        return parse_interval("method.frequency", cfg.frequency).steps(real_epoch_steps, total_steps=0)
    return real_epoch_steps if cfg.update_at == "epoch_end" else cfg.delta_t


def timed_methods(path: str, paths: list[str], eager_methods: list[str]) -> list[str]:
    """The methods timed on ``path``: all of them, except on the eager path when a graph path is timed too
    (there dense and ``eager_methods``)."""
    if path != "off" or paths == ["off"]:
        return METHODS
    return [m for m in METHODS if m == "dense" or m in eager_methods]


def table(rows: list[dict], paths: list[str]) -> str:
    """Milliseconds per step; runner dense against the limit, every method against the runner's dense step."""
    lines = []
    for row in rows:
        limit = row.get("plain_graph_ms", row["plain_eager_ms"])
        lines.append(f"{row['model']} on {row['data']}-shaped data, batch {row['batch']}, {row['optimizer']}")
        plain = f"  plain loop: eager {row['plain_eager_ms']:.3f}"
        if "plain_graph_ms" in row:
            plain += f", CUDA graph {row['plain_graph_ms']:.3f} (the limit)"
        lines.append(plain)
        lines.append(f"  input per batch: device-resident {row['input_resident_ms']:.3f}, DataLoader "
                     f"{row['input_dataloader_ms']:.3f} [{row['input_dataloader_ms'] / row['input_resident_ms']:.1f}x]")
        for path in paths:
            dense = row[f"{path}_dense_ms"]
            cells = [f"dense {dense:.3f} [{dense / limit:.2f}x limit]"]
            cells += [f"{m}{'*' * (m in row['amortised'])} {row[f'{path}_{m}_ms']:.3f} "
                      f"[{row[f'{path}_{m}_ms'] / dense:.3f}x]" for m in METHODS[1:] if f"{path}_{m}_ms" in row]
            lines.append(f"  runner step_graph={path}: " + ", ".join(cells))
            lines.append(f"    one training epoch, dense: {row[f'{path}_dense_epoch_s']:.2f} s")
        if row["amortised"]:
            lines.append("    * the every-step cost in the run, plus the mask event alone over its interval on the "
                         "real dataset")
        lines.append("  mask update alone (kernel ops): " + ", ".join(
            f"{u} {row[f'update_{u}_ms']:.2f} ({row[f'update_{u}_ops']})" for u in UPDATES))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke run)")
    parser.add_argument("--models", nargs="*", help="only these models of the case list, in this order")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per runner timing (>= 3)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--paths", nargs="*", help="step_graph values to time (default: off, and auto on CUDA)")
    parser.add_argument("--eager-methods", nargs="*", help="methods also timed on step_graph=off when a graph "
                        "path is timed (default: dense on CUDA, the eager-vs-graph contrast; all on CPU)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.eager_methods is None:
        args.eager_methods = ["dense"] if device.type == "cuda" else METHODS
    paths = args.paths or (["off", "auto"] if device.type == "cuda" else ["off"])
    known = QUICK_CASES if args.quick else CASES
    cases = [case for name in args.models for case in known if case[0] == name] if args.models else known
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}; torch {torch.__version__}; milliseconds (median of {args.repeats}); "
          "ratios in brackets", flush=True)
    rows = []
    for case in cases:  # each case printed and saved as it ends: a run cut short keeps what it measured
        try:
            rows.append(bench_case(case, device, args, paths))
            print(table(rows[-1:], paths), flush=True)
        except Exception as error:  # one failing case must not lose the others on a borrowed GPU
            message = " ".join(f"{type(error).__name__}: {error}".split())
            rows.append({"model": case[0], "data": case[1], "error": message})
            print(f"{case[0]} on {case[1]}-shaped data: failed: {rows[-1]['error'][:300]}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"device": device_name, "torch": str(torch.__version__), "paths": paths,
                                             "rows": rows}, indent=2))
    if any("error" in row for row in rows):
        raise SystemExit(1)

if __name__ == "__main__":
    main()
