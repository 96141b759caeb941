"""sparsetrain-export: safetensors and torch.nn.utils.prune-format exports of a run directory."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.utils import prune

from sparsetrain.export import export_metadata, load_exported, main
from sparsetrain.models.zoo import build_model
from sparsetrain.runtime.sparse_linear import Kernel, SparseLinear

IN_SHAPE = (1, 8, 8)
PREPROCESS = {"scale": 1 / 255, "mean": [0.1307], "std": [0.3081]}


def _mask(shape, density, pattern):
    """A random mask keeping about ``density`` of a weight: any weights, a constant number per output unit
    (``fanin``) or whole output units (``channel``)."""
    if pattern == "fanin":
        return (torch.rand(shape).flatten(1).argsort(1) < round(density * shape[1:].numel())).view(shape)
    if pattern == "channel":
        return (torch.rand(shape[0]) < density).view(-1, *[1] * (len(shape) - 1)).expand(shape).clone()
    return torch.rand(shape) < density


def _fake_run(run_dir, sparse=True, density=0.3, pattern="unstructured", model_name="lenet300_100",
              in_shape=IN_SHAPE):
    """A finished run of model ``model_name``: checkpoint, summary.json and (if ``sparse``) random masks of ``pattern`` on
    the weight matrices and filters."""
    torch.manual_seed(0)
    model = build_model(model_name, in_shape, 10)
    masks = {}
    if sparse:
        masks = {name: _mask(p.shape, density, pattern) for name, p in model.named_parameters()
                 if name.endswith("weight") and p.dim() > 1}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in masks:
                    p.mul_(masks[name])
        (run_dir / "masks").mkdir(parents=True)
        save_file(masks, run_dir / "masks" / "final.safetensors")
    config = {"model": {"name": model_name, "depth": None, "width": None, "dropout": 0.0, "stem": "auto"},
              "dataset": {"name": "fake"}}
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": config}, run_dir / "checkpoints" / "last.pt")
    summary = {"model": model_name, "in_shape": list(in_shape), "num_classes": 10, "dataset": "fake",
               "preprocess": PREPROCESS, "masks": {"sparsity": 0.7}, "sparsetrain": "0.1.0", "task": "image_classification"}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return model, masks


def test_exports_safetensors_and_prune_format(tmp_path, capsys):
    model, masks = _fake_run(tmp_path)
    assert main([str(tmp_path)]) == 0
    out = tmp_path / "export"
    state = model.state_dict()
    exported = load_file(out / "model.safetensors")
    assert exported.keys() == state.keys()
    assert all(torch.equal(exported[name], state[name]) for name in state)
    with safe_open(out / "model.safetensors", "pt") as handle:
        metadata = handle.metadata()
    assert metadata["sparsetrain_model"] == "lenet300_100" and metadata["format"] == "state_dict"
    assert json.loads(metadata["in_shape"]) == list(IN_SHAPE) and metadata["num_classes"] == "10"
    assert json.loads(metadata["preprocess"]) == PREPROCESS and metadata["dataset"] == "fake"
    rebuilt = load_exported(out / "model.safetensors")  # from the file alone, in eval mode
    x = torch.randn(5, *IN_SHAPE)
    assert not rebuilt.training and torch.equal(rebuilt(x), model.eval()(x))
    described = export_metadata(out / "model.safetensors")
    assert described["preprocess"]["std"] == [0.3081] and described["model"]["name"] == "lenet300_100"

    pruned = torch.load(out / "pruned_state_dict.pt", weights_only=True)
    assert {f"{name}_mask" for name in masks} <= pruned.keys()
    assert all(pruned[f"{name}_mask"].dtype == torch.float32 for name in masks)
    stock = build_model("lenet300_100", IN_SHAPE, 10)
    for name, mask in masks.items():
        prune.custom_from_mask(stock.get_submodule(name.rsplit(".", 1)[0]), "weight", mask)
    stock.load_state_dict(pruned)
    x = torch.randn(5, *IN_SHAPE)
    assert torch.equal(stock.eval()(x), model.eval()(x))
    assert "pruned_state_dict.pt" in capsys.readouterr().out


def test_dense_run_writes_only_safetensors(tmp_path, capsys):
    _fake_run(tmp_path, sparse=False)
    out = tmp_path / "elsewhere"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert "dense run" in capsys.readouterr().out


def test_missing_checkpoint_is_refused(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "last.pt" in err and "e.g. sparsetrain-export" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "export").exists()


def test_existing_export_needs_force(tmp_path, capsys):
    model, _ = _fake_run(tmp_path)
    assert main([str(tmp_path)]) == 0
    target = tmp_path / "export" / "model.safetensors"
    target.write_bytes(b"old")
    assert main([str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert target.read_bytes() == b"old"
    assert main([str(tmp_path), "--force"]) == 0
    assert load_file(target).keys() == model.state_dict().keys()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.safetensors", "pruned_state_dict.pt"]


def test_sparse_export_gives_the_runs_logits_from_the_file_alone_and_is_sized_by_its_nonzeros(tmp_path, capsys):
    model, masks = _fake_run(tmp_path, density=0.1)
    assert main([str(tmp_path), "--format", "dense", "sparse", "--rows", "16"]) == 0
    path, dense_path = tmp_path / "export" / "model.sparse.safetensors", tmp_path / "export" / "model.safetensors"
    assert "model.sparse.safetensors (3 sparse linear layers" in capsys.readouterr().out
    assert path.stat().st_size <= 0.25 * dense_path.stat().st_size
    kernels = export_metadata(path)["kernels"]
    assert sorted(kernels) == sorted(name.rsplit(".", 1)[0] for name in masks)
    timed = {f"{regime}:{name}" for regime in ("one", "many") for name in ("dense", "csr", "gather")}
    assert all(plan["ms"].keys() == timed for plan in kernels.values())  # 16 rows: no tile below them
    rebuilt = load_exported(path)  # from the file alone
    layers = [module for module in rebuilt.modules() if isinstance(module, SparseLinear)]
    assert len(layers) == 3 and not rebuilt.training
    _each_kernel_gives_the_logits(rebuilt, model, (Kernel("dense"), Kernel("csr"), Kernel("csr", tile=4),
                                                   Kernel("gather"), Kernel("gather", tile=4)))


def test_an_ablated_unit_gives_the_runs_logits_with_every_kernel(tmp_path, capsys):
    model, masks = _fake_run(tmp_path, density=0.1, pattern="fanin")
    with torch.no_grad():
        model.get_parameter(next(iter(masks)))[5] = 0  # an output unit without inputs: an empty CSR row
    torch.save({"model": model.state_dict(), "config": torch.load(tmp_path / "checkpoints" / "last.pt")["config"]},
               tmp_path / "checkpoints" / "last.pt")
    assert main([str(tmp_path), "--format", "sparse", "--rows", "16"]) == 0
    rebuilt = load_exported(tmp_path / "export" / "model.sparse.safetensors")
    _each_kernel_gives_the_logits(rebuilt, model, (Kernel("csr"), Kernel("gather"), Kernel("gather", tile=4)))


CONV_SHAPE = (3, 16, 16)
LOAD_WITHOUT_SPARSETRAIN = """
import sys, torch
class Refuse:  # sparsetrain is not importable here, whatever the environment installs
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "sparsetrain":
            raise ImportError(name)
sys.meta_path.insert(0, Refuse())
try:
    import sparsetrain
    sys.exit("sparsetrain imported")
except ImportError:
    pass
model = torch.export.load(sys.argv[1]).module()
torch.save([model(x) for x in torch.load(sys.argv[2])], sys.argv[3])
"""


def test_shrunk_export_is_smaller_and_gives_the_runs_logits_without_sparsetrain(tmp_path, capsys):
    model, _ = _fake_run(tmp_path, density=0.5, pattern="channel", model_name="resnet20", in_shape=CONV_SHAPE)
    assert main([str(tmp_path), "--format", "dense", "shrunk"]) == 0
    out = tmp_path / "export"
    assert "zero channels removed" in capsys.readouterr().out
    shrunk = load_exported(out / "model.shrunk.pt2")
    assert sum(p.numel() for p in shrunk.parameters()) < 0.75 * sum(p.numel() for p in model.parameters())
    assert (out / "model.shrunk.pt2").stat().st_size < 0.85 * (out / "model.safetensors").stat().st_size
    assert export_metadata(out / "model.shrunk.pt2")["model"]["name"] == "resnet20"
    inputs = [torch.randn(1, *CONV_SHAPE), torch.randn(5, *CONV_SHAPE)]
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run([sys.executable, "-I", "-c", LOAD_WITHOUT_SPARSETRAIN, str(out / "model.shrunk.pt2"),
                    str(tmp_path / "inputs.pt"), str(tmp_path / "logits.pt")], check=True, cwd=tmp_path)
    model.eval()
    with torch.no_grad():
        for x, logits in zip(inputs, torch.load(tmp_path / "logits.pt")):
            assert torch.allclose(logits, model(x), atol=1e-5, rtol=0)


def test_shrunk_export_keeps_channels_whose_batchnorm_shifts_zero_away(tmp_path, capsys):
    model, _ = _fake_run(tmp_path, density=0.5, pattern="channel", model_name="resnet20", in_shape=CONV_SHAPE)
    state = torch.load(tmp_path / "checkpoints" / "last.pt")
    for name, tensor in state["model"].items():
        if name.endswith("bias"):  # every BatchNorm's shift: a zero filter's output is no longer zero after it
            tensor.fill_(0.1)
    torch.save(state, tmp_path / "checkpoints" / "last.pt")
    assert main([str(tmp_path), "--format", "shrunk"]) == 0
    assert "(0 zero channels removed" in capsys.readouterr().out
    model.load_state_dict(state["model"])
    x = torch.randn(3, *CONV_SHAPE)
    with torch.no_grad():
        assert torch.allclose(load_exported(tmp_path / "export" / "model.shrunk.pt2")(x), model.eval()(x), atol=1e-5)


def test_shrunk_export_without_torch_pruning_or_with_changed_logits_writes_nothing(tmp_path, capsys, monkeypatch):
    _fake_run(tmp_path, density=0.5, pattern="channel", model_name="resnet20", in_shape=CONV_SHAPE)
    import sparsetrain.runtime.shrink as shrink

    def wrong(model, example):  # a removal that changes what the model computes
        with torch.no_grad():
            model.get_parameter("fc.bias").add_(1)
        return 0

    monkeypatch.setattr(shrink, "shrink_channels", wrong)
    assert main([str(tmp_path), "--format", "shrunk", "dense"]) == 2
    assert "changed the logits" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    monkeypatch.delitem(sys.modules, "sparsetrain.runtime.shrink")
    assert main([str(tmp_path), "--format", "shrunk", "dense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'sparsetrain[export]'" in err and not (tmp_path / "export").exists()


def _each_kernel_gives_the_logits(rebuilt, model, kernels) -> None:
    """``rebuilt``'s logits equal ``model``'s for one row and for 16, with the kernels chosen at export, then with
    every sparse layer on each of ``kernels``."""
    layers = [module for module in rebuilt.modules() if isinstance(module, SparseLinear)]
    model.eval()
    for kernel in (None, *kernels):
        for layer in layers if kernel else ():
            layer.one = layer.many = kernel
            layer._build()
        with torch.inference_mode():
            for x in (torch.randn(1, *IN_SHAPE), torch.randn(16, *IN_SHAPE)):
                assert torch.allclose(rebuilt(x), model(x), atol=1e-5, rtol=0), kernel
