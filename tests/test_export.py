"""sparsetrain-export: safetensors and torch.nn.utils.prune-format exports of a run directory."""

import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.utils import prune

from sparsetrain.export import export_metadata, load_exported, main
from sparsetrain.models.zoo import build_model
from sparsetrain.runtime.sparse_linear import Kernel, SparseLinear

IN_SHAPE = (1, 8, 8)
PREPROCESS = {"scale": 1 / 255, "mean": [0.1307], "std": [0.3081]}


def _fake_run(run_dir, sparse=True, density=0.3):
    """A finished lenet300_100 run: checkpoint, summary.json and (if ``sparse``) random masks on the Linear weights."""
    torch.manual_seed(0)
    model = build_model("lenet300_100", IN_SHAPE, 10)
    masks = {}
    if sparse:
        masks = {name: torch.rand(p.shape) < density for name, p in model.named_parameters() if name.endswith("weight")}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in masks:
                    p.mul_(masks[name])
        (run_dir / "masks").mkdir(parents=True)
        save_file(masks, run_dir / "masks" / "final.safetensors")
    config = {"model": {"name": "lenet300_100", "depth": None, "width": None, "dropout": 0.0, "stem": "auto"},
              "dataset": {"name": "fake"}}
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": config}, run_dir / "checkpoints" / "last.pt")
    summary = {"model": "lenet300_100", "in_shape": list(IN_SHAPE), "num_classes": 10, "dataset": "fake",
               "preprocess": PREPROCESS, "masks": {"sparsity": 0.7}, "sparsetrain": "0.1.0"}
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
    assert all({"one:dense", "one:csr", "many:dense", "many:csr", "many:csr/32"} >= plan["ms"].keys() >= {
        "one:dense", "one:csr", "many:dense", "many:csr"} for plan in kernels.values())
    rebuilt = load_exported(path)  # from the file alone
    layers = [module for module in rebuilt.modules() if isinstance(module, SparseLinear)]
    assert len(layers) == 3 and not rebuilt.training
    model.eval()
    for kernel in (None, Kernel("dense"), Kernel("csr"), Kernel("csr", tile=4)):  # the chosen ones, then each
        for layer in layers if kernel else ():
            layer.one = layer.many = kernel
            layer._build()
        with torch.inference_mode():
            for x in (torch.randn(1, *IN_SHAPE), torch.randn(16, *IN_SHAPE)):
                assert torch.allclose(rebuilt(x), model(x), atol=1e-5, rtol=0), kernel
