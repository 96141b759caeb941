"""``sparsetrain-export RUN_DIR``: write a run's final model as safetensors and in ``torch.nn.utils.prune`` format.

Outputs (in ``RUN_DIR/export/`` unless ``--out`` is given):

* ``model.safetensors``: the model state_dict with masked weights zero; its metadata is enough to rebuild and use
  the model without the run directory (``load_exported`` does): ``sparsetrain_model`` (name), ``model`` (the
  model config, JSON), ``in_shape`` (C, H, W), ``num_classes``, ``preprocess`` (``(pixel * scale - mean) / std``
  per channel, after any resize/crop; JSON), ``dataset``, ``sparsity`` and ``sparsetrain_version``.
* ``pruned_state_dict.pt`` (sparse runs only): every masked ``X.weight`` replaced by ``X.weight_orig`` and
  ``X.weight_mask`` (the mask in the weight's dtype). Load it into stock PyTorch with::

      model = build_model(...)  # e.g. torchvision.models.resnet50(num_classes=...) for ImageNet-stem ResNets
      for name, mask in masks.items():
          prune.custom_from_mask(model.get_submodule(name.rsplit(".", 1)[0]), "weight", mask)
      model.load_state_dict(torch.load("pruned_state_dict.pt"))

* ``model.sparse.safetensors`` (``--format sparse``): linear layers as ``runtime.SparseLinear``, each layer's
  kernels (dense, the CSR product or the gathered sum over the CSR parts) chosen by measuring; ``load_exported``
  rebuilds it.
* ``model.shrunk.pt2`` (``--format shrunk``): the model with its zero output channels removed (Torch-Pruning), as
  a ``torch.export`` program: ``torch.export.load(path).module()`` runs it without sparsetrain.
* ``model.onnx`` (``--format onnx``): the model (masked weights zero) as ONNX, batch dimension dynamic, input
  ``input``, output ``logits``, the metadata above in ``metadata_props``; with ``--format shrunk onnx`` also
  ``model.shrunk.onnx``, the shrunk model.
* ``model.semi_structured.safetensors`` (``--format semi_structured``, on a CUDA GPU): the model in bfloat16, its
  2:4 linear layers listed in the metadata (``semi_structured``; the others in ``dense_layers``, with why);
  ``load_exported`` gives those layers ``torch.sparse.to_sparse_semi_structured`` weights on the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch.nn.utils import prune

from .errors import first_line
from .models.zoo import build_configured_model
from .models.tying import untie_differing_
from .runs.files import atomic_write, checkpoint_path
from .runtime import semi_structured
from .runtime.sparse_linear import SparseLinear
from .runtime.tune import sparsify_linear_layers

SAFETENSORS_NAME = "model.safetensors"
SPARSE_NAME = "model.sparse.safetensors"
SHRUNK_NAME = "model.shrunk.pt2"
SHRUNK_METADATA = "sparsetrain.json"  # the export metadata, as an extra file of the program
ONNX_NAME = "model.onnx"
SHRUNK_ONNX_NAME = "model.shrunk.onnx"
SEMI_STRUCTURED_NAME = "model.semi_structured.safetensors"
FORMATS = ("dense", "sparse", "shrunk", "onnx", "semi_structured")
PRUNED_NAME = "pruned_state_dict.pt"
MASKS_PATH = Path("masks") / "final.safetensors"
EXAMPLE = "e.g. sparsetrain-export outputs/2024-05-01/12-00-00"


class ExportError(Exception):
    """A problem with the command's input; its message is one line naming the problem and a valid example."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsetrain-export",
        description="Write a run's final model as safetensors and in torch.nn.utils.prune format.",
    )
    parser.add_argument("run_dir", type=Path, help="run directory written by sparsetrain")
    parser.add_argument("--out", type=Path, help="output directory (default: RUN_DIR/export)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing export")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=["dense"], dest="formats",
                        help="dense: model.safetensors (and the prune format); sparse: model.sparse.safetensors, "
                             "linear layers as CSR with each layer's kernels (dense, CSR product, gathered sum) chosen "
                             "by measuring; shrunk: model.shrunk.pt2, zero channels removed, a torch.export program; "
                             "onnx: model.onnx (with shrunk: model.shrunk.onnx too); semi_structured (CUDA GPU): "
                             "model.semi_structured.safetensors, 2:4 linear layers in bfloat16")
    parser.add_argument("--rows", type=int, default=64,
                        help="sparse: the rows per call the kernels are tuned for (batch x sequence length)")
    parser.add_argument("--threads", type=int, help="sparse: the torch threads the kernels are tuned for")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        export(args.run_dir, args.out or args.run_dir / "export", args.force, args.formats, args.rows)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def export(run_dir: Path, out: Path, force: bool, formats: tuple[str, ...] = ("dense",), rows: int = 64) -> None:
    """Write the export of ``run_dir`` into ``out`` in each of ``formats``; raise ExportError on bad input or an
    existing export."""
    if "semi_structured" in formats and not torch.cuda.is_available():
        raise ExportError(f"--format semi_structured needs a CUDA GPU (torch.sparse.to_sparse_semi_structured); "
                          f"none is available here: run it on a CUDA machine or {EXAMPLE} --format dense sparse")
    ckpt = checkpoint_path(run_dir)
    if not ckpt.is_file():
        raise ExportError(f"no checkpoint {ckpt}: {run_dir} is not a sparsetrain run directory; {EXAMPLE}")
    names = {"dense": (SAFETENSORS_NAME, PRUNED_NAME), "sparse": (SPARSE_NAME,), "shrunk": (SHRUNK_NAME,),
             "onnx": (ONNX_NAME, *((SHRUNK_ONNX_NAME,) if "shrunk" in formats else ())),
             "semi_structured": (SEMI_STRUCTURED_NAME,)}
    existing = [out / name for fmt in formats for name in names[fmt] if (out / name).exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; add --force to overwrite it, "
                          f"e.g. sparsetrain-export {run_dir} --force")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model_cfg = state["config"]["model"]
    weights = state["model"]
    masks = load_file(run_dir / MASKS_PATH) if (run_dir / MASKS_PATH).is_file() else {}
    _check_masks(masks, weights, run_dir / MASKS_PATH)
    weights = {name: torch.where(masks[name], t, 0) if name in masks else t for name, t in weights.items()}
    pruned = _prune_format(weights, masks)
    summary = _finished_summary(run_dir)
    in_shape, num_classes = tuple(summary["in_shape"]), int(summary["num_classes"])
    task = summary.get("task")  # the head of a transformers model (sequence classification or masked LM)
    untied = _check_loads(pruned, masks, model_cfg, in_shape, num_classes, task, weights)

    tensors = _unshared(weights)
    metadata = {
        "sparsetrain_model": model_cfg["name"], "format": "state_dict", "model": json.dumps(model_cfg),
        "in_shape": json.dumps(list(in_shape)), "num_classes": str(num_classes), "task": json.dumps(task),
        "preprocess": json.dumps(summary.get("preprocess")), "dataset": str(summary.get("dataset")),
        "sparsity": json.dumps((summary.get("masks") or {}).get("sparsity", 0.0)),
        "sparsetrain_version": str(summary.get("sparsetrain")),
    }

    def loaded() -> torch.nn.Module:
        return _loaded(model_cfg, in_shape, num_classes, task, weights)

    files = []  # every format that may refuse the model is made before anything is written
    if "shrunk" in formats:
        shrunk, shrunk_metadata = _shrunk(loaded(), metadata)
        files.append(_shrunk_file(shrunk, shrunk_metadata, out / SHRUNK_NAME))
    if "onnx" in formats:
        files.append(_onnx_file(loaded(), {**metadata, "format": "onnx"}, out / ONNX_NAME))
        if "shrunk" in formats:
            files.append(_onnx_file(shrunk, {**shrunk_metadata, "format": "shrunk_onnx"}, out / SHRUNK_ONNX_NAME))
    if "semi_structured" in formats:
        files.append(_semi_structured_file(loaded(), metadata, out / SEMI_STRUCTURED_NAME))
    if "sparse" in formats:
        files.append(_sparse_file(loaded(), metadata, out / SPARSE_NAME, rows))
    for path, write, note in files:
        atomic_write(path, write)
        print(f"wrote {path} ({note})")
    if "dense" in formats:
        _write_dense(tensors, metadata, pruned, masks, untied, out)


File = tuple[Path, Callable[[Any], None], str]  # (path, write(handle), what to say of it once written)


def _sparse_file(model: torch.nn.Module, metadata: dict, path: Path, rows: int) -> File:
    """``model`` with its masked linear layers as ``SparseLinear`` (kernels measured here), as safetensors."""
    kernels = sparsify_linear_layers(model, rows, example=(_example_input(model, metadata, rows),))
    metadata = {**metadata, "format": "sparse", "kernels": json.dumps(kernels),
                "threads": str(torch.get_num_threads())}
    data = save(_unshared(model.state_dict()), metadata)
    chosen = ", ".join(f"{name} {k['one']['name']}/{k['many']['name']}" for name, k in kernels.items())
    return path, lambda handle: handle.write(data), (f"{len(kernels)} sparse linear layers, kernels for 1 / {rows} "
                                                     f"rows: {chosen or 'none'}")


def _shrunk(model: torch.nn.Module, metadata: dict) -> tuple[torch.nn.Module, dict]:
    """``model`` with its zero output channels removed (the logits checked unchanged), and its metadata."""
    if json.loads(metadata["model"]).get("name") == "hf":
        raise ExportError(f"--format shrunk takes image models, not a transformers {metadata['sparsetrain_model']} "
                          f"model; {EXAMPLE} --format dense sparse")
    try:
        from .runtime.shrink import shrink_channels
    except ImportError:
        raise ExportError(f"--format shrunk needs Torch-Pruning: pip install 'sparsetrain[export]', then "
                          f"{EXAMPLE} --format shrunk") from None
    example = _example_input(model, metadata)
    before, logits = sum(p.numel() for p in model.parameters()), model(example).detach()
    removed = shrink_channels(model, example)  # Torch-Pruning traces the graph with autograd
    with torch.no_grad():
        if not torch.allclose(model(example), logits, rtol=1e-5, atol=1e-5):
            raise ExportError("removing the zero channels changed the logits (an operation Torch-Pruning maps "
                              f"wrongly); export the other formats, {EXAMPLE} --format sparse")
    return model, {**metadata, "format": "shrunk", "channels_removed": str(removed),
                   "parameters_before": str(before)}


def _shrunk_file(model: torch.nn.Module, metadata: dict, path: Path) -> File:
    """The shrunk ``model`` as a ``torch.export`` program over any batch size."""
    example = _example_input(model, metadata)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as error:  # noqa: BLE001 (torch.export raises many kinds; each is one line here)
        raise ExportError(f"torch.export cannot trace the model ({first_line(error)}); export the other "
                          f"formats, {EXAMPLE} --format sparse") from None
    extra = {SHRUNK_METADATA: json.dumps(metadata)}
    after = sum(p.numel() for p in model.parameters())
    return path, lambda handle: torch.export.save(program, handle, extra_files=extra), (
        f"{metadata['channels_removed']} zero channels removed: {metadata['parameters_before']} -> {after} "
        "parameters; loads with torch.export.load(path).module()")


def _onnx_file(model: torch.nn.Module, metadata: dict, path: Path) -> File:
    """``model`` as ONNX (input ``input``, its batch dimension dynamic; output ``logits``), ``metadata`` as the
    model's ``metadata_props``."""
    try:
        import onnx  # noqa: F401 (torch.onnx's exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(f"--format onnx needs onnx and onnxscript: pip install 'sparsetrain[onnx]', then "
                          f"{EXAMPLE} --format onnx") from None
    try:
        program = torch.onnx.export(model, (_example_input(model, metadata),), dynamo=True, verbose=False,
                                    input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
        program.model.metadata_props.update(metadata)
        data = program.model_proto.SerializeToString()  # ValueError past protobuf's 2 GB
    except Exception as error:  # noqa: BLE001 (the exporter raises many kinds; each is one line here)
        raise ExportError(f"torch.onnx.export cannot convert the model ({first_line(error)}); export the other "
                          f"formats, {EXAMPLE} --format dense sparse") from None
    return path, lambda handle: handle.write(data), "ONNX, any batch size; runs with onnxruntime"


def _semi_structured_file(model: torch.nn.Module, metadata: dict, path: Path) -> File:
    """``model`` in ``semi_structured.DTYPE`` with its 2:4 linear layers listed, as safetensors (the dense 2:4
    weights: a semi-structured tensor has no file format); each layer is converted here to find those the kernel
    refuses."""
    layers, dense = semi_structured.two_four_layers(model)
    weights = _unshared({name: t.to(semi_structured.DTYPE) if t.is_floating_point() else t
                         for name, t in model.state_dict().items()})
    refused = semi_structured.to_semi_structured(model, layers)
    converted = [name for name in layers if name not in refused]
    metadata = {**metadata, "format": "semi_structured", "dtype": str(semi_structured.DTYPE).removeprefix("torch."),
                "semi_structured": json.dumps(converted), "dense_layers": json.dumps({**dense, **refused})}
    data = save(weights, metadata)
    return path, lambda handle: handle.write(data), (f"{len(converted)} of {len(layers) + len(dense)} linear layers "
                                                     f"2:4 semi-structured, in {metadata['dtype']}")


def _example_input(model: torch.nn.Module, metadata: dict, rows: int = 2) -> torch.Tensor:
    """Random inputs of the model holding ``rows`` rows for its linear layers: token ids of ``rows`` tokens (whole
    sequences, at least one) for a language model, else ``rows`` images (or feature vectors)."""
    in_shape, generator = json.loads(metadata["in_shape"]), torch.Generator().manual_seed(0)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if len(in_shape) == 1 and vocab:
        return torch.randint(vocab, (max(1, rows // in_shape[0]), *in_shape), generator=generator)
    return torch.randn(rows, *in_shape, generator=generator)


def _write_dense(tensors: dict, metadata: dict, pruned: dict, masks: dict, untied: list[str], out: Path) -> None:
    data = save(tensors, metadata)
    atomic_write(out / SAFETENSORS_NAME, lambda handle: handle.write(data))
    print(f"wrote {out / SAFETENSORS_NAME}")
    if masks:
        atomic_write(out / PRUNED_NAME, lambda handle: torch.save(pruned, handle))
        print(f"wrote {out / PRUNED_NAME} ({len(masks)} masked tensors, torch.nn.utils.prune format)")
        if untied:
            print(f"note: the run untied {', '.join(untied)} from the weight the stock model ties them to: give them "
                  "parameters of their own before loading it (load_exported does)")
    else:
        (out / PRUNED_NAME).unlink(missing_ok=True)  # a stale one from an earlier export (only with --force)
        print(f"dense run (no {MASKS_PATH}): wrote only {SAFETENSORS_NAME}")


def _unshared(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, each with storage of its own: safetensors refuses tensors that share memory, as tied
    weights do (an MLM decoder and its bias); a tied weight is written under each of its names."""
    seen: set[int] = set()
    tensors = {}
    for name, tensor in weights.items():
        storage = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.contiguous() if storage not in seen else tensor.clone()
        seen.add(storage)
    return tensors


def _finished_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if "in_shape" not in summary or "num_classes" not in summary:
        raise ExportError(f"{path} is missing or lacks in_shape/num_classes (written when a run finishes); "
                          f"export a finished run, {EXAMPLE}")
    return summary


def load_exported(path: Path) -> torch.nn.Module:
    """The model of an exported ``model.safetensors`` (or ``model.sparse.safetensors``, ``model.shrunk.pt2``,
    ``model.semi_structured.safetensors``: on the GPU), rebuilt from the file alone, with its weights, in eval mode
    (``export_metadata`` says how to feed it)."""
    if Path(path).suffix == ".pt2":
        return torch.export.load(path).module()  # traced in eval mode
    if Path(path).suffix == ".onnx":
        raise ExportError(f"{path} is ONNX: run it with onnxruntime, e.g. onnxruntime.InferenceSession('{path}')")
    metadata = export_metadata(path)
    weights = load_file(str(path))
    if metadata["format"] == "semi_structured":
        return _semi_structured_loaded(metadata, weights)
    if metadata["format"] != "sparse":
        return _loaded(metadata["model"], tuple(metadata["in_shape"]), metadata["num_classes"], metadata["task"],
                       weights)
    model = _build(metadata["model"], tuple(metadata["in_shape"]), metadata["num_classes"], metadata["task"])
    for name, kernels in metadata["kernels"].items():
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, SparseLinear.from_state(weights, name, kernels))
    model.load_state_dict(weights)
    return model.eval()


def _semi_structured_loaded(metadata: dict, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The model on the GPU in its export's dtype, its 2:4 layers semi-structured."""
    if not torch.cuda.is_available():
        raise ExportError(f"a {SEMI_STRUCTURED_NAME} export needs a CUDA GPU to load; on a CPU load the dense "
                          f"export, e.g. load_exported('export/{SAFETENSORS_NAME}')")
    model = _loaded(metadata["model"], tuple(metadata["in_shape"]), metadata["num_classes"], metadata["task"],
                    weights)
    semi_structured.to_semi_structured(model, metadata["semi_structured"])
    return model


def _loaded(model_cfg: dict, in_shape: tuple, num_classes: int, task: str | None,
            weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The run's model with ``weights``, in eval mode."""
    model = _build(model_cfg, in_shape, num_classes, task)
    untie_differing_(model, weights)  # names the run held apart (method.tied_weights=unmasked)
    model.load_state_dict(weights)
    return model.eval()


def export_metadata(path: Path) -> dict:
    """The metadata of an exported ``model.safetensors`` (or any other format), decoded: ``model`` (its config),
    ``in_shape``, ``preprocess`` (scale, mean, std, resize/crop), ``num_classes``, ``task``, ``sparsity``,
    ``dataset``..."""
    suffix = Path(path).suffix
    if suffix == ".pt2":
        extra = {SHRUNK_METADATA: ""}
        torch.export.load(path, extra_files=extra)
        metadata = json.loads(extra[SHRUNK_METADATA])
    elif suffix == ".onnx":
        import onnx

        metadata = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    else:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata())
    encoded = ("kernels", "semi_structured", "dense_layers")
    for key in ("model", "in_shape", "preprocess", "sparsity", *(key for key in encoded if key in metadata)):
        metadata[key] = json.loads(metadata[key])
    metadata["num_classes"] = int(metadata["num_classes"])
    metadata["task"] = json.loads(metadata.get("task", "null"))
    return metadata


def _check_masks(masks: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], path: Path) -> None:
    for name, mask in masks.items():
        if name not in weights or mask.shape != weights[name].shape or mask.dtype != torch.bool:
            raise ExportError(f"{path}: mask {name!r} is not a bool tensor shaped like a model weight; "
                              f"re-run or resume the run to rewrite it, {EXAMPLE}")


def _prune_format(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``X.weight`` → ``X.weight_orig`` and ``X.weight_mask`` for each masked tensor; other entries unchanged."""
    pruned = {}
    for name, tensor in weights.items():
        if name in masks:
            pruned[f"{name}_orig"] = tensor
            pruned[f"{name}_mask"] = masks[name].to(tensor.dtype)
        else:
            pruned[name] = tensor
    return pruned


def _check_loads(pruned: dict, masks: dict, model_cfg: dict, in_shape: tuple[int, int, int],
                 num_classes: int, task: str | None, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load ``pruned`` strictly into a stock model prepared with ``prune.custom_from_mask`` (the names the run
    untied given parameters of their own first); return those names."""
    model = _build(model_cfg, in_shape, num_classes, task)
    untied = untie_differing_(model, weights)
    try:
        for name, mask in masks.items():
            module, _, param = name.rpartition(".")
            prune.custom_from_mask(model.get_submodule(module), param, mask)
        model.load_state_dict(pruned)
    except (AttributeError, RuntimeError) as error:
        raise ExportError(f"the checkpoint does not load into model {model_cfg['name']} for inputs {in_shape} "
                          f"({first_line(error)}); export an unmodified run directory, {EXAMPLE}") from None
    return untied


def _build(model_cfg: dict, in_shape: tuple[int, int, int], num_classes: int, task: str | None) -> torch.nn.Module:
    try:
        return build_configured_model(model_cfg, in_shape, num_classes, task, pretrained=False)  # weights: the file's
    except ValueError as error:  # e.g. a custom model's factory that no longer imports
        raise ExportError(f"cannot rebuild the run's model ({error}); {EXAMPLE}") from None


if __name__ == "__main__":
    sys.exit(main())
