"""Sparsity patterns: exact counts per group under every pattern, the methods that take them, one-line refusals."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from sparsetrain.errors import ConfigError
from sparsetrain.runner.run import run
from sparsetrain.sparsity.masks import load_masks
from sparsetrain.sparsity.patterns import keep_count, matrix, misfit, select, unmatrix


def pattern(name: str, **values):
    return OmegaConf.create({"name": name, "n": 2, "m": 4, "block": [2, 4], **values})


def holds(name: str, mask: torch.Tensor, kept: int, **values) -> None:
    """``mask`` keeps ``kept`` weights in the pattern, exactly per group."""
    p, mat = pattern(name, **values), matrix(mask).int()
    assert int(mask.sum()) == kept
    if name == "nm":
        assert (mat.reshape(-1, p.m).sum(1) == p.n).all()
    elif name == "fanin":
        assert (mat.sum(1) == kept // mat.shape[0]).all()
    elif name == "channel":
        assert set(mat.sum(1).tolist()) <= {0, mat.shape[1]}
    elif name == "block":
        rows, cols = p.block
        tiles = mat.reshape(mat.shape[0] // rows, rows, mat.shape[1] // cols, cols).sum((1, 3))
        assert set(tiles.flatten().tolist()) <= {0, rows * cols}


@pytest.mark.parametrize("shape", [(8, 16), (8, 8, 3, 3)])
@pytest.mark.parametrize("name", ["nm", "fanin", "channel", "block"])
def test_select_keeps_the_top_scores_exactly_per_group(name, shape):
    scores = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    p = pattern(name)
    keep = keep_count(p, scores.shape, scores.numel() // 3)
    mask = select(p, scores, keep)
    holds(name, mask, keep)
    mat, kept = matrix(scores), matrix(mask)
    if name == "nm":  # the two largest of every group of four inputs
        groups = mat.reshape(-1, 4)
        assert torch.equal(kept.reshape(-1, 4), groups >= groups.topk(2, dim=1).values[:, 1:])
    if name == "channel":  # the output units whose scores sum highest
        top = mat.sum(1).topk(keep // mat.shape[1]).indices
        assert set(kept.all(1).nonzero().flatten().tolist()) == set(top.tolist())


def test_a_convolution_is_seen_along_its_input_channels():
    weight = torch.arange(2 * 4 * 3 * 3).reshape(2, 4, 3, 3)
    assert torch.equal(matrix(weight)[0, :4], weight[0, :, 0, 0])
    assert torch.equal(unmatrix(matrix(weight), weight.shape), weight)


def test_kept_counts_round_to_the_pattern_and_misfits_are_named():
    assert keep_count(pattern("fanin"), (8, 16), 37) == 40 and keep_count(pattern("channel"), (8, 16), 37) == 32
    assert keep_count(pattern("nm"), (8, 16), 3) == 64 and keep_count(pattern("block"), (8, 16), 30) == 32
    assert misfit(pattern("nm"), (8, 6)) == "its 6 inputs are not a multiple of method.pattern.m=4"
    assert "not tiled by method.pattern.block=[2, 4]" in misfit(pattern("block"), (7, 16))
    assert misfit(pattern("fanin"), (7, 6)) is None


def _final_masks(compose_config, tmp_path, *overrides: str) -> dict[str, torch.Tensor]:
    overrides = ["eval_every=0", "checkpoint_every=0", *overrides]
    run(compose_config(*overrides), tmp_path / "run", overrides)
    return load_file(tmp_path / "run" / "masks" / "final.safetensors")


@pytest.mark.parametrize("method,name,extra", [
    ("static", "nm", ["sparsity=0.5", "steps=30"]),
    ("oneshot", "block", ["sparsity=0.75", "steps=30", "method.scope=layerwise", "method.pattern.block=[2,4]"]),
    ("gmp", "fanin", ["sparsity=0.8", "steps=30", "method.end=20it", "method.frequency=10it"]),
    ("snip", "channel", ["sparsity=0.5", "steps=30", "method.scope=layerwise", "method.dense_layers=[last]"]),
    ("acdc", "nm", ["sparsity=0.5", "epochs=4", "method.warmup_epochs=1", "method.final_epochs=1",
                    "method.compressed_epochs=1", "method.decompressed_epochs=1"]),
    ("gap", "fanin", ["sparsity=0.75", "steps=20", "method.num_partitions=2", "method.rounds=1"]),
    ("lth", "channel", ["steps=20", "method.levels=2", "method.prune_rate=0.5", "method.dense_layers=[last]"]),
    ("synflow", "block", ["sparsity=0.75", "steps=10", "method.scope=layerwise", "method.iterations=5",
                          "method.pattern.block=[2,4]"]),
    ("mask_training", "nm", ["sparsity=0.5", "steps=30", "method.binarizer=topk"]),
    ("mask_training", "block", ["sparsity=0.75", "steps=30", "method.binarizer=topk", "method.pattern.block=[2,4]"]),
])
def test_each_method_family_ends_exactly_in_its_pattern(compose_config, tmp_path, method, name, extra):
    masks = _final_masks(compose_config, tmp_path, f"method={method}", f"method.pattern.name={name}", *extra)
    assert masks
    for mask in masks.values():
        holds(name, mask, int(mask.sum()), block=[2, 4])


@pytest.mark.parametrize("overrides,expected", [
    (["method=lth", "sparsity=0.5", "method.pattern.name=nm"],
     "method=lth cannot take method.pattern.name=nm (it takes unstructured, block, fanin, channel); "
     "e.g. method=static"),
    (["method=static", "sparsity=0.9", "method.pattern.name=nm"],
     "sparsity=0.9 conflicts with method.pattern.name=nm, which keeps 2 of every 4 weights; e.g. sparsity=0.5"),
    (["method=oneshot", "sparsity=0.9", "method.pattern.name=fanin"],
     "method.pattern.name=fanin counts per layer, so method.scope=global cannot rank across layers"),
    (["method=gmp", "sparsity=0.5", "method.pattern.name=nm"], "method=gmp cannot take method.pattern.name=nm"),
    (["method=lth", "method.pattern.name=fanin", "method.control=random_mask", "method.masks_from=x"],
     "method.control=random_mask draws positions without a pattern; e.g. method.control=random_reinit"),
    (["method=dense", "method.pattern.name=nm"], "(e.g. method=acdc method.pattern.name=unstructured)"),
    (["method=mask_training", "sparsity=0.5", "method.pattern.name=nm"],
     "method.pattern.name=nm needs binarizer=topk (a threshold keeps no count per group); e.g. method.binarizer=topk"),
])
def test_impossible_patterns_are_refused_in_one_line(cli_in_process, tmp_path, overrides, expected):
    status, _, err = cli_in_process(tmp_path, *overrides)
    assert status == 2 and expected in err and err.count("\n") == 1 and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("overrides,expected", [
    (["sparsity=0.75", "method.pattern.name=nm", "method.pattern.m=8"],
     "cannot take layer 3.weight: its 300 inputs are not a multiple of method.pattern.m=8"),
    (["sparsity=0.5", "method.pattern.name=channel"],
     "cannot take layer 5.weight: its outputs are the model's classes; keep it dense, "
     "e.g. method.dense_layers=[5.weight] or method.pattern.fallback=dense"),
])
def test_a_layer_the_pattern_cannot_fit_is_named(compose_config, tmp_path, overrides, expected):
    overrides = ["method=static", *overrides]
    with pytest.raises(ConfigError, match="^method.pattern.name=") as refused:
        run(compose_config(*overrides), tmp_path / "run", overrides)
    assert expected in str(refused.value)


def test_the_dense_fallback_keeps_the_layers_a_pattern_cannot_fit_dense(compose_config, tmp_path, caplog):
    """LeNet-300-100 on digits under 4:8: the layers of 300 and 100 inputs cannot be grouped by 8 and are kept
    dense, outside the budget; the 64-input layer is exactly 4:8."""
    overrides = ["method=static", "sparsity=0.5", "method.pattern.name=nm", "method.pattern.n=4", "method.pattern.m=8",
                 "method.pattern.fallback=dense", "device=cpu", "steps=3", "eval_every=0"]
    with caplog.at_level("INFO", logger="sparsetrain"):
        summary = run(compose_config(*overrides), tmp_path / "run", overrides)
    layers = summary["masks"]["layers"]
    assert [(layers[name]["density"], layers[name]["fixed"]) for name in ("1.weight", "3.weight", "5.weight")] == [
        (0.5, False), (1.0, True), (1.0, True)]
    assert ("method.pattern.fallback=dense keeps 3.weight (its 300 inputs are not a multiple of method.pattern.m=8); "
            "5.weight (its 100 inputs are not a multiple of method.pattern.m=8) dense") in caplog.text
    masks = load_masks(tmp_path / "run" / "masks" / "final.safetensors")
    holds("nm", masks["1.weight"], masks["1.weight"].numel() // 2, n=4, m=8)
