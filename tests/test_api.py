"""The Python API: sparsify in one's own loop (the README's example, run as it is written), and train in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import sparsetrain
from conftest import documented_code
from sparsetrain.api import Sparsifier
from sparsetrain.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_api_example() -> str:
    return documented_code(README, "tests/test_api.py")


def _assert_exact(sparsifier: Sparsifier, counts: dict[str, int]) -> None:
    params = dict(sparsifier.method.targets.params)
    for name, mask in sparsifier.masks.items():
        assert int(mask.sum()) == counts[name], name
        assert torch.all(params[name][~mask] == 0), name


def test_readme_example_runs_with_exact_masks_after_every_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {"steps": 0, "changed": 0}
    step = Sparsifier.step

    def checked_step(self):
        before = {name: mask.clone() for name, mask in self.masks.items()}
        step(self)
        _assert_exact(self, {name: int(mask.sum()) for name, mask in before.items()})
        seen["steps"] += 1
        seen["changed"] += any(not torch.equal(before[n], m) for n, m in self.masks.items())

    monkeypatch.setattr(Sparsifier, "step", checked_step)
    namespace: dict = {}
    exec(compile(_readme_api_example(), str(README), "exec"), namespace)
    sparsifier = namespace["sparsifier"]
    assert seen["steps"] == 60 and seen["changed"] >= 3  # RigL really moved the masks
    assert sparsifier.sparsity() == pytest.approx(0.9, abs=1e-3)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["sparsifier"]
    assert all(torch.equal(saved["method"]["masks"][n], m) for n, m in sparsifier.masks.items())


def test_masks_are_in_place_at_construction_and_state_round_trips():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = sparsetrain.sparsify(model, optimizer, "static", 0.75, total_steps=10, distribution="uniform",
                                      uniform_dense_first=False, exclude=["last"])
    assert list(sparsifier.masks) == ["0.weight"]
    assert int((model[0].weight == 0).sum()) == 450 and int((model[2].weight == 0).sum()) == 0
    other = sparsetrain.sparsify(nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5)), optimizer, "static",
                                 0.75, total_steps=10, distribution="uniform", exclude=["last"], seed=1)
    assert not torch.equal(other.masks["0.weight"], sparsifier.masks["0.weight"])
    other.load_state_dict(sparsifier.state_dict())
    assert torch.equal(other.masks["0.weight"], sparsifier.masks["0.weight"])


def test_mask_training_in_ones_own_loop_learns_a_mask_over_frozen_weights():
    """The scores join the user's optimizer as a group of their own; the weights stay W0 ⊙ M at every step (the
    biases train), and each threshold reset restores exactly half zeros per layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(256, 20)
    labels = (inputs[:, 0] > 0).long() + (inputs[:, 1] > 0).long()
    start = {name: param.detach().clone() for name, param in model.named_parameters()}
    sparsifier = sparsetrain.sparsify(model, optimizer, "mask_training", 0.5, total_steps=100, reset_every=25,
                                      score_lr=0.05)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 0.05]
    losses = []
    for step in range(100):
        loss = nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        sparsifier.step()
        losses.append(loss.item())
        for name, mask in sparsifier.masks.items():
            assert torch.equal(dict(model.named_parameters())[name].detach(), start[name] * mask), (step, name)
        if (step + 1) % 25 == 0:
            assert all(int(mask.sum()) * 2 == mask.numel() for mask in sparsifier.masks.values()), step
    assert sparsifier.method.resets == 4 and losses[-1] < losses[0]
    assert not torch.equal(model[0].bias.detach(), start["0.bias"])


def test_bad_method_or_option_is_one_line():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="method='nosuch' is not a method"):
        sparsetrain.sparsify(model, optimizer, "nosuch", total_steps=5)
    with pytest.raises(ConfigError, match="method.delta"):
        sparsetrain.sparsify(model, optimizer, "rigl", total_steps=5, delta=3)


def test_train_runs_in_process_and_refuses_bad_input(tmp_path):
    summary = sparsetrain.train(["method=gmp", "sparsity=0.5", "steps=30", f"hydra.run.dir={tmp_path / 'run'}"])
    assert summary["masks"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert (tmp_path / "run" / "summary.json").is_file()
    with pytest.raises(ConfigError, match="epochs=0 must be a positive integer"):
        sparsetrain.train(["epochs=0", f"hydra.run.dir={tmp_path / 'bad'}"])
    assert not (tmp_path / "bad").exists()


def test_what_a_method_needs_from_the_caller_and_option_typos_are_one_line():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"^sparsify\(method='snip'\) needs batches: .*e\.g\. batches=train_loader$"):
        sparsetrain.sparsify(model, optimizer, "snip", 0.9, total_steps=10)
    with pytest.raises(ConfigError, match=r"^sparsify\(method='synflow'\) needs in_shape: .*e\.g\. in_shape=\(3, 32, 32\)$"):
        sparsetrain.sparsify(model, optimizer, "synflow", 0.9, total_steps=10)
    with pytest.raises(ConfigError, match=r"^method\.delta_tt: .*; did you mean delta_t\? \(method=rigl; "):
        sparsetrain.sparsify(model, optimizer, "rigl", 0.9, total_steps=10, delta_tt=5)

