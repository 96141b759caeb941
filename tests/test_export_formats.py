"""sparsetrain-export --format onnx and --format semi_structured (2:4 on a CUDA GPU)."""

import json
import sys

import numpy as np
import onnxruntime  # the test extra installs it, with onnx and onnxscript
import pytest
import torch
from safetensors.torch import save_file
from test_export import IN_SHAPE, _fake_run
from torch import nn

from sparsetrain.export import export_metadata, load_exported, main
from sparsetrain.runtime.semi_structured import is_two_four, two_four_layers


def _onnx_logits(path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"input": x.numpy()})[0])


def test_onnx_export_gives_the_runs_logits_at_any_batch_and_carries_the_metadata(tmp_path, capsys):
    model, _ = _fake_run(tmp_path, density=0.2)
    assert main([str(tmp_path), "--format", "onnx"]) == 0
    out = tmp_path / "export"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]  # atomic: no temporary file left
    assert "model.onnx (ONNX" in capsys.readouterr().out
    model.eval()
    with torch.no_grad():
        for x in (torch.randn(1, *IN_SHAPE), torch.randn(7, *IN_SHAPE)):
            assert torch.allclose(_onnx_logits(out / "model.onnx", x), model(x), rtol=1e-5, atol=1e-5)
    metadata = export_metadata(out / "model.onnx")
    assert metadata["format"] == "onnx" and metadata["model"]["name"] == "lenet300_100"
    assert metadata["in_shape"] == list(IN_SHAPE) and metadata["num_classes"] == 10
    assert main([str(tmp_path), "--format", "onnx"]) == 2  # an existing export needs --force
    assert "model.onnx exists; add --force" in capsys.readouterr().err


def test_shrunk_onnx_export_is_the_shrunk_model(tmp_path, capsys):
    in_shape = (1, 12, 12)
    model, _ = _fake_run(tmp_path, density=0.5, pattern="channel", model_name="lenet5", in_shape=in_shape)
    assert main([str(tmp_path), "--format", "shrunk", "onnx"]) == 0
    out = tmp_path / "export"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.shrunk.onnx", "model.shrunk.pt2"]
    assert (out / "model.shrunk.onnx").stat().st_size < 0.8 * (out / "model.onnx").stat().st_size
    metadata = export_metadata(out / "model.shrunk.onnx")
    assert metadata["format"] == "shrunk_onnx" and int(metadata["channels_removed"]) > 0
    x = torch.randn(3, *in_shape)
    with torch.no_grad():
        expected = model.eval()(x)
    for name in ("model.onnx", "model.shrunk.onnx"):
        assert torch.allclose(_onnx_logits(out / name, x), expected, rtol=1e-5, atol=1e-5), name


def test_onnx_export_without_onnxscript_writes_nothing(tmp_path, capsys, monkeypatch):
    _fake_run(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main([str(tmp_path), "--format", "dense", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format onnx needs onnx and onnxscript" in err
    assert "pip install 'sparsetrain[onnx]'" in err and not (tmp_path / "export").exists()


def test_semi_structured_export_without_cuda_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    _fake_run(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([str(tmp_path), "--format", "dense", "semi_structured"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --format semi_structured needs a CUDA GPU")
    assert "e.g. sparsetrain-export" in err and not (tmp_path / "export").exists()


def test_two_four_means_at_most_two_nonzeros_in_every_four_consecutive_inputs():
    two_four = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3], [0, 4, 5, 0, 0, 0, 0, 0]])
    assert is_two_four(two_four) and is_two_four(torch.zeros(3, 8))
    three = two_four.clone()
    three[1, 5] = 1  # 0 4 5 0 | 0 1 0 0: still 2:4
    assert is_two_four(three)
    three[0, 1] = 1  # 1 1 2 0: three nonzeros in a group
    assert not is_two_four(three)
    assert not is_two_four(torch.zeros(2, 6))  # inputs not a multiple of 4
    assert not is_two_four(two_four.t().contiguous())  # 2:4 along the outputs is not along the inputs
    model = nn.Sequential(nn.Linear(8, 2), nn.ReLU(), nn.Linear(2, 4), nn.Linear(4, 8))
    with torch.no_grad():
        model[0].weight.copy_(two_four)
        model[3].weight.copy_(torch.tensor([[1.0, 1, 1, 0]]).expand(8, 4))
    assert two_four_layers(model) == (["0"], {"2": "not 2:4", "3": "not 2:4"})


def mlp(in_shape, num_classes):
    """Linear layers of the shapes the 2:4 kernels take (multiples of 32 x 64), and a 10-class head they refuse."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), 128), nn.ReLU(), nn.Linear(128, 64),
                         nn.ReLU(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, num_classes))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels need a CUDA GPU")
def test_semi_structured_export_runs_the_two_four_layers_on_the_sparse_kernels(tmp_path, capsys):
    in_shape = (1, 8, 8)
    torch.manual_seed(0)
    model = mlp(in_shape, 10)
    with torch.no_grad():
        for index in (1, 3, 7):  # 2:4: the two largest of every four inputs; layer 5 stays unstructured
            weight = model[index].weight.view(model[index].out_features, -1, 4)
            keep = weight.abs().argsort(-1).argsort(-1) >= 2
            weight.mul_(keep)
        model[5].weight.mul_(torch.rand_like(model[5].weight) < 0.5)
    _write_run(tmp_path, model, in_shape)
    assert main([str(tmp_path), "--format", "semi_structured"]) == 0
    path = tmp_path / "export" / "model.semi_structured.safetensors"
    assert "2 of 4 linear layers 2:4 semi-structured, in bfloat16" in capsys.readouterr().out
    metadata = export_metadata(path)
    assert metadata["semi_structured"] == ["1", "3"] and metadata["dtype"] == "bfloat16"
    assert metadata["dense_layers"]["5"] == "not 2:4" and "7" in metadata["dense_layers"]  # 10 rows: refused
    rebuilt = load_exported(path)
    assert [isinstance(rebuilt[i].weight, torch.sparse.SparseSemiStructuredTensor) for i in (1, 3, 5, 7)] == [
        True, True, False, False]
    x = torch.randn(64, *in_shape)
    with torch.inference_mode():
        logits, expected = rebuilt(x.cuda().to(torch.bfloat16)).float().cpu(), model.eval()(x)
    assert torch.allclose(logits, expected, rtol=0.03, atol=0.03 * expected.abs().max().item())


def _write_run(run_dir, model: nn.Module, in_shape) -> None:
    """A finished run of ``model`` (``model._target_=test_export_formats.mlp``), its zero weights as the masks."""
    masks = {name: p != 0 for name, p in model.named_parameters() if p.dim() > 1}
    (run_dir / "masks").mkdir(parents=True)
    save_file(masks, run_dir / "masks" / "final.safetensors")
    config = {"model": {"name": "mlp", "source": "custom", "_target_": f"{__name__}.mlp"}, "dataset": {"name": "fake"}}
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": config}, run_dir / "checkpoints" / "last.pt")
    summary = {"model": "mlp", "in_shape": list(in_shape), "num_classes": 10, "dataset": "fake",
               "preprocess": None, "masks": {"sparsity": 0.5}, "sparsetrain": "0.1.0"}
    (run_dir / "summary.json").write_text(json.dumps(summary))
