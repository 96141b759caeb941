"""sparsetrain-bench-infer: the dense and sparse forms of a run's model timed side by side, with the FLOP bound."""

import json
import sys

from test_export import CONV_SHAPE, _fake_run

from sparsetrain.export import main as export_main
from sparsetrain.infer_bench import main


def test_times_both_forms_and_bounds_the_speedup_by_the_flops(tmp_path, capsys):
    _, masks = _fake_run(tmp_path, density=0.1)
    assert export_main([str(tmp_path), "--format", "dense", "sparse", "--rows", "8"]) == 0
    assert main([str(tmp_path), "--batch", "8", "--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "infer_bench.json").read_text())
    assert report["sparse_source"].endswith("model.sparse.safetensors") and report["threads"] == 1
    # every masked layer is a linear layer: the bound is the weights over the nonzero weights
    weights = sum(mask.numel() for mask in masks.values())
    assert report["forms"] == ["sparse"]
    assert abs(report["flop_bound"]["sparse"] - weights / sum(int(mask.sum()) for mask in masks.values())) < 1e-6
    for regime, batch in (("latency", 1), ("throughput", 8)):
        row = report[regime]
        assert row["batch"] == batch and row["dense_ms"] > 0 and row["sparse_ms"] > 0
        assert abs(row["sparse_speedup"] - row["dense_ms"] / row["sparse_ms"]) < 1e-9
    assert sorted(report["kernels"]) == sorted(name.rsplit(".", 1)[0] for name in masks)
    assert "| throughput | 8 |" in out and "| 3.weight" not in out and "| 3 | 0.1" in out


def test_converts_when_no_sparse_export_and_refuses_a_run_not_exported(tmp_path, capsys):
    _fake_run(tmp_path, density=0.1)
    assert main([str(tmp_path), "--batch", "4", "--seconds", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export the run first" in err and not (tmp_path / "infer_bench.json").exists()
    assert export_main([str(tmp_path)]) == 0
    assert main([str(tmp_path / "export" / "model.safetensors"), "--batch", "4", "--seconds", "0.01"]) == 0
    assert "sparse model: converted now" in capsys.readouterr().out


def test_times_the_shrunk_model_beside_the_others_with_its_counted_flops(tmp_path, capsys):
    _fake_run(tmp_path, density=0.5, pattern="channel", model_name="resnet20", in_shape=CONV_SHAPE)
    assert export_main([str(tmp_path), "--format", "dense", "sparse", "shrunk"]) == 0
    assert main([str(tmp_path), "--batch", "4", "--seconds", "0.01"]) == 0
    report = json.loads((tmp_path / "infer_bench.json").read_text())
    assert report["forms"] == ["sparse", "shrunk"]
    assert report["flop_bound"]["sparse"] < 1.01  # convolutions stay dense in the sparse format, the head is small
    assert 1.3 < report["flop_bound"]["shrunk"] < 4  # about half the channels of the blocks' inner convolutions
    for regime in ("latency", "throughput"):
        row = report[regime]
        assert abs(row["shrunk_speedup"] - row["dense_ms"] / row["shrunk_ms"]) < 1e-9
    assert "shrunk ms (speed-up, FLOP bound)" in capsys.readouterr().out


def test_times_the_onnx_export_with_onnxruntime_when_installed(tmp_path, capsys, monkeypatch):
    _fake_run(tmp_path, density=0.1)
    assert export_main([str(tmp_path), "--format", "dense", "onnx"]) == 0
    assert main([str(tmp_path), "--batch", "4", "--seconds", "0.01"]) == 0
    report = json.loads((tmp_path / "infer_bench.json").read_text())
    assert report["forms"] == ["sparse", "onnx"]
    assert abs(report["flop_bound"]["onnx"] - 1) < 1e-9  # the dense model, run by onnxruntime
    for regime in ("latency", "throughput"):
        row = report[regime]
        assert row["onnx_ms"] > 0 and abs(row["onnx_speedup"] - row["dense_ms"] / row["onnx_ms"]) < 1e-9
    assert "onnx ms (speed-up, FLOP bound)" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    assert main([str(tmp_path), "--batch", "4", "--seconds", "0.01"]) == 0
    assert "onnxruntime is not installed: model.onnx not timed" in capsys.readouterr().out
    assert json.loads((tmp_path / "infer_bench.json").read_text())["forms"] == ["sparse"]
