"""``sparsetrain-bench-infer RUN_DIR|EXPORT``: inference speed of a run's sparse and shrunk models against its
dense model.

Times the exported dense model, its sparse form (``model.sparse.safetensors`` when exported, else converted now,
its kernels measured on this machine), its shrunk form (``model.shrunk.pt2``, when exported) and its ONNX forms
(``model.onnx``, ``model.shrunk.onnx`` beside the shrunk program, when exported and onnxruntime is installed) at
batch 1 (latency) and at ``--batch`` (throughput), on the threads given, and prints each sparse layer's kernel
times and each form's speed-up beside its FLOP bound (dense FLOPs / the form's FLOPs: the speed-up if time followed
the multiply-adds). Written to ``RUN_DIR/infer_bench.json``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .export import (ONNX_NAME, SAFETENSORS_NAME, SHRUNK_NAME, SHRUNK_ONNX_NAME, SPARSE_NAME, export_metadata,
                     load_exported)
from .runtime.sparse_linear import Kernel, SparseLinear
from .runtime.tune import milliseconds, sparsify_linear_layers
from .sparsity.flops import inference_flops, layer_flops

EXAMPLE = "e.g. sparsetrain-bench-infer outputs/2024-05-01/12-00-00 (after sparsetrain-export on it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparsetrain-bench-infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a run directory (its export/) or an exported model.safetensors")
    parser.add_argument("--batch", type=int, default=64, help="the throughput batch (latency is batch 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        dense_path, sparse_path, shrunk_path, out = _paths(args.target)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    dense = load_exported(dense_path)
    metadata = export_metadata(dense_path)
    inputs = example_inputs(dense, metadata["in_shape"])
    rows = args.batch * (metadata["in_shape"][0] if _takes_tokens(dense, metadata["in_shape"]) else 1)
    if sparse_path is not None:
        sparse, kernels = load_exported(sparse_path), export_metadata(sparse_path)["kernels"]
    else:
        sparse = copy.deepcopy(dense)
        kernels = sparsify_linear_layers(sparse, rows)
    forms = {"sparse": sparse, **({"shrunk": load_exported(shrunk_path)} if shrunk_path else {})}
    sessions, counted = _onnx_forms(dense_path, {"onnx": dense, "shrunk_onnx": forms.get("shrunk")}, args.threads)
    report = compare(dense, {**forms, **sessions}, inputs, args.batch, args.seconds, counted)
    report.update(threads=args.threads, kernels=kernels, sparse_source=str(sparse_path or "converted now"))
    print(format_report(report))
    if out is not None:
        (out / "infer_bench.json").write_text(json.dumps(report, indent=1))
        print(f"wrote {out / 'infer_bench.json'}")
    return 0


def _paths(target: Path) -> tuple[Path, Path | None, Path | None, Path | None]:
    """(dense export, sparse export or None, shrunk export or None, the run directory to write to or None)."""
    if target.is_dir():
        dense, run_dir = target / "export" / SAFETENSORS_NAME, target
        if not dense.is_file():
            raise FileNotFoundError(f"no {dense}: export the run first, {EXAMPLE}")
    elif target.is_file():
        dense, run_dir = target, None
    else:
        raise FileNotFoundError(f"no run directory or export {target}; {EXAMPLE}")
    sparse, shrunk = (dense.with_name(name) for name in (SPARSE_NAME, SHRUNK_NAME))
    return dense, sparse if sparse.is_file() else None, shrunk if shrunk.is_file() else None, run_dir


def _onnx_forms(dense_path: Path, twins: dict[str, nn.Module | None],
                threads: int) -> tuple[dict[str, OnnxModel], dict[str, nn.Module]]:
    """({form: its onnxruntime session}, {form: the torch model it computes}) for each ONNX export beside
    ``dense_path`` whose torch twin is loaded (``model.shrunk.onnx`` with ``model.shrunk.pt2``)."""
    paths = {"onnx": dense_path.with_name(ONNX_NAME), "shrunk_onnx": dense_path.with_name(SHRUNK_ONNX_NAME)}
    present = {name: path for name, path in paths.items() if path.is_file() and twins[name] is not None}
    if present and importlib.util.find_spec("onnxruntime") is None:
        print(f"note: onnxruntime is not installed: {', '.join(p.name for p in present.values())} not timed "
              "(pip install onnxruntime)")
        return {}, {}
    return ({name: OnnxModel(path, threads) for name, path in present.items()},
            {name: twins[name] for name in present})


class OnnxModel:
    """An onnxruntime session on the CPU, called like the torch model: an input tensor in, the logits out."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0])


def _takes_tokens(model: nn.Module, in_shape: list[int]) -> bool:
    return len(in_shape) == 1 and hasattr(getattr(model, "config", None), "vocab_size")


def example_inputs(model: nn.Module, in_shape: list[int]) -> Callable[[int], tuple]:
    """``inputs(batch)``: random positional inputs for ``batch`` examples (token ids for a language model)."""
    generator = torch.Generator().manual_seed(0)
    if _takes_tokens(model, in_shape):
        return lambda batch: (torch.randint(model.config.vocab_size, (batch, *in_shape), generator=generator),)
    return lambda batch: (torch.randn(batch, *in_shape, generator=generator),)


def compare(dense: nn.Module, forms: dict[str, Callable], inputs: Callable[[int], tuple], batch: int,
            seconds: float, counted: dict[str, nn.Module] | None = None) -> dict:
    """Latency (batch 1) and throughput (``batch``) of the dense model and each of ``forms`` (by name), each form's
    speed-up and FLOP bound (its FLOPs counted on ``counted[name]`` for a form that is no torch model)."""
    counted = {**forms, **(counted or {})}
    report: dict = {"batch": batch, "forms": list(forms),
                    "flop_bound": {name: flop_bound(dense, counted[name], inputs(1)) for name in forms}}
    for regime, size in (("latency", 1), ("throughput", batch)):
        x = inputs(size)
        with torch.inference_mode():
            times = {name: milliseconds(lambda model=model: model(*x), seconds)
                     for name, model in {"dense": dense, **forms}.items()}
        report[regime] = {"batch": size, **{f"{name}_ms": ms for name, ms in times.items()},
                          **{f"{name}_speedup": times["dense"] / times[name] for name in forms}}
    return report


def flop_bound(dense: nn.Module, form: nn.Module, x: tuple) -> float:
    """Dense forward FLOPs over the form's: its sparse layers counted at their density, a shrunk model's counted."""
    total, per_layer = layer_flops(dense, forward=lambda model: model(*x))
    densities = {f"{name}.weight": module.describe()["density"] for name, module in form.named_modules()
                 if isinstance(module, SparseLinear)}
    if densities:
        return total / inference_flops(total, per_layer, densities)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        form(*x)
    return total / counter.get_total_flops()


def format_report(report: dict) -> str:
    lines = [f"{report['threads']} thread(s); sparse model: {report['sparse_source']}",
             "| layer | density | kernel (1 row / many rows) | dense ms (1 / many) | sparse ms (1 / many) |",
             "|---|---|---|---|---|"]
    for name, plan in report["kernels"].items():
        one, many, times = Kernel(**plan["one"]).label, Kernel(**plan["many"]).label, plan["ms"]
        lines.append(f"| {name} | {plan['density']:.3f} | {one} / {many} ({plan['rows']} rows) | "
                     f"{times['one:dense']:.4f} / {times['many:dense']:.4f} | "
                     f"{times[f'one:{one}']:.4f} / {times[f'many:{many}']:.4f} |")
    forms = report["forms"]
    lines += ["", "| whole model | batch | dense ms | " + " | ".join(f"{name} ms (speed-up, FLOP bound)" for name in forms)
              + " |", "|---|---|---|" + "---|" * len(forms)]
    for regime in ("latency", "throughput"):
        row = report[regime]
        cells = (f"{row[f'{name}_ms']:.3f} ({row[f'{name}_speedup']:.2f}x, {report['flop_bound'][name]:.2f}x)"
                 for name in forms)
        lines.append(f"| {regime} | {row['batch']} | {row['dense_ms']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
