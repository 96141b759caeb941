"""oBERT's second-order pruning (``method.criterion=obs`` of gmp and oneshot): the block Fisher inverse, the OBS
saliency and update against a dense-inverse hand computation, gradual oBERT's events (exact counts, the update of the
remaining weights, bit-exact resume) and the refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import sparsetrain
from conftest import crash_and_resume
from sparsetrain.errors import ConfigError
from sparsetrain.sparsity.fisher import BlockFisherInverse, obs_saliency, obs_update

DAMP = 1e-3


def _fisher(grads: torch.Tensor, block: int) -> BlockFisherInverse:
    inverse = BlockFisherInverse(grads.shape[1], block, DAMP, grads.shape[0], torch.device("cpu"))
    for g in grads:
        inverse.add(g)
    return inverse


def _dense_inverses(grads: torch.Tensor, block: int) -> list[torch.Tensor]:
    """inv(λI + GᵀG/m) of each block, in float64, from the definition."""
    g = grads.double()
    return [torch.linalg.inv(DAMP * torch.eye(block, dtype=torch.float64) + g[:, i:i + block].t() @ g[:, i:i + block]
                             / g.shape[0]) for i in range(0, g.shape[1], block)]


def test_the_block_fisher_inverse_is_the_inverse_of_the_dampened_empirical_fisher():
    grads = torch.randn(30, 24, generator=torch.Generator().manual_seed(0))
    inverse = _fisher(grads, 8)
    for index, expected in enumerate(_dense_inverses(grads, 8)):
        assert torch.allclose(inverse.inverse[index].double(), expected, rtol=2e-3, atol=1e-2 * expected.abs().max())
    assert inverse.nbytes() == 24 * 8 * 4


def test_obs_saliency_and_update_equal_the_hand_computation_for_single_weights():
    generator = torch.Generator().manual_seed(1)
    grads, weights = torch.randn(40, 12, generator=generator), torch.randn(12, generator=generator)
    inverse = _fisher(grads, 6)
    dense = torch.block_diag(*_dense_inverses(grads, 6))
    saliency, solved = obs_saliency(weights, inverse)
    assert solved is None
    assert torch.allclose(saliency.double(), weights.double() ** 2 / (2 * dense.diagonal()), rtol=1e-3)
    pruned = torch.zeros(12, dtype=torch.bool)
    pruned[[1, 4, 9]] = True
    updated = obs_update(weights, inverse, pruned)
    w = weights.double()
    expected = w - dense @ torch.where(pruned, w / dense.diagonal(), 0.0)  # the sum of the single-weight updates
    expected[pruned] = 0.0
    assert torch.allclose(updated.double(), expected, rtol=1e-3, atol=1e-4)
    # one weight alone: the OBS optimum δw = -w_q F⁻¹e_q / [F⁻¹]_qq removes w_q exactly
    alone = torch.zeros(12, dtype=torch.bool)
    alone[4] = True
    delta = -w[4] * dense[:, 4] / dense[4, 4]
    assert torch.allclose(obs_update(weights, inverse, alone).double(), w + delta, rtol=1e-3, atol=1e-4)


def test_obs_saliency_and_update_of_4_blocks_equal_the_hand_computation():
    generator = torch.Generator().manual_seed(2)
    grads, weights = torch.randn(50, 16, generator=generator), torch.randn(16, generator=generator)
    inverse = _fisher(grads, 8)
    dense = torch.block_diag(*_dense_inverses(grads, 8))
    saliency, solved = obs_saliency(weights, inverse, group=4)
    w = weights.double()
    for group in range(4):
        g = slice(4 * group, 4 * group + 4)
        expected = 0.5 * w[g] @ torch.linalg.solve(dense[g, g], w[g])
        assert torch.allclose(saliency[g].double(), expected.expand(4), rtol=1e-3)
    pruned = torch.zeros(16, dtype=torch.bool)
    pruned[4:8] = True
    updated = obs_update(weights, inverse, pruned, solved).double()
    expected = w - dense[:, 4:8] @ torch.linalg.solve(dense[4:8, 4:8], w[4:8])  # OBS for the group, exact
    assert torch.allclose(updated, torch.where(pruned, 0.0, expected), rtol=1e-3, atol=1e-4)


def _overrides(tmp_path, *extra: str) -> list[str]:
    return ["model=lenet300_100", "dataset=synthetic", "dataset.image_size=28", "dataset.channels=1",
            "dataset.train_size=256", "dataset.test_size=64", "batch_size=32", f"hydra.run.dir={tmp_path}", *extra]


OBS = ["method.criterion=obs", "method.num_grads=16", "method.fisher_block_size=20", "method.grad_batch_size=8"]


def test_gradual_obert_prunes_exact_counts_and_updates_the_remaining_weights(tmp_path):
    summary = sparsetrain.train(_overrides(tmp_path / "gradual", "method=gmp", "sparsity=0.8", "method.scope=global",
                                           "method.initial_sparsity=0.5", "method.start=1ep", "method.end=2ep",
                                           "method.frequency=1ep", "epochs=3", *OBS, "log_every=1it"))
    assert summary["masks"]["budget_sparsity"] == pytest.approx(0.8, abs=1e-6)
    events = [json.loads(line) for line in (tmp_path / "gradual" / "metrics.jsonl").read_text().splitlines()]
    prunes = [event for event in events if event["event"] == "prune"]
    assert [round(event["target_sparsity"], 6) for event in prunes] == [0.5, 0.8]
    assert all(event["sparsity"] == pytest.approx(event["target_sparsity"], abs=1e-6) for event in prunes)
    assert [event["fisher_bytes"] for event in events if event["event"] == "fisher"] == [
        4 * 20 * 20 * sum(-(-n // 20) for n in (784 * 300, 300 * 100, 100 * 10))] * 2
    # oneshot from the same trained weights: obs updates the kept weights, magnitude leaves them as they were
    trained = tmp_path / "gradual"
    runs = {criterion: sparsetrain.train(_overrides(tmp_path / criterion, "method=oneshot", "sparsity=0.9",
                                                    f"method.pretrained={trained}", "method.retrain=false",
                                                    f"method.criterion={criterion}", *OBS[1:]))
            for criterion in ("magnitude", "obs")}
    start = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)["model"]
    for criterion in runs:
        weights = torch.load(tmp_path / criterion / "checkpoints" / "last.pt", weights_only=True)["model"]
        masks = load_file(tmp_path / criterion / "masks" / "final.safetensors")
        kept = {name: mask.bool() & (start[name] != 0) for name, mask in masks.items()}
        moved = any(not torch.equal(weights[name][m], start[name][m]) for name, m in kept.items())
        assert moved == (criterion == "obs")


def test_gradual_obert_resumes_bit_exact(compose_config, tmp_path, monkeypatch):
    overrides = ["model=lenet300_100", "dataset=synthetic", "dataset.image_size=28", "dataset.channels=1",
                 "dataset.train_size=128", "dataset.test_size=32", "batch_size=32", "method=gmp", "sparsity=0.8",
                 "method.start=0ep", "method.end=2ep", "method.frequency=3it", "epochs=3", *OBS,
                 "checkpoint_every=2it", "resume=auto"]
    crash_and_resume(compose_config, tmp_path, monkeypatch, "gmp", overrides, crash_after=5)


@pytest.mark.parametrize(("extra", "message"), [
    (["method.criterion=hessian"], r"method\.criterion='hessian' must be magnitude or obs; e\.g\. method\.criterion=obs"),
    (["method.criterion=obs", "method.num_grads=0"], r"method\.num_grads=0 must be >= 1; e\.g\. method\.num_grads=1024"),
    (["method.criterion=obs", "method.fisher_damp=0"], r"method\.fisher_damp=0\.0 must be positive"),
    (["method.criterion=obs", "method.pattern.name=block", "method.pattern.block=[2,2]", "method.scope=layerwise"],
     r"method\.criterion=obs prunes single weights or groups of consecutive inputs, not method\.pattern\.name=block"),
    (["method.criterion=obs", "method.pattern.name=block", "method.pattern.block=[1,4]", "method.scope=layerwise",
      "method.fisher_block_size=50"], r"method\.fisher_block_size=50 must be a multiple of the 4-weight groups"),
    (["method.criterion=obs", "method.grad_batch_size=5"], r"method\.grad_batch_size=5 must divide batch_size=32"),
])
def test_obs_options_are_refused_in_one_line(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as error:
        sparsetrain.train(_overrides(tmp_path / "run", "method=gmp", "sparsity=0.5", *extra))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "summary.json").exists()
