"""masks_at: the masks after given steps, as files init_from (θ0 ⊙ M) and method.mask_from take (TAMT's step-selected
masks)."""

from __future__ import annotations

import pytest
import torch

from sparsetrain.errors import ConfigError
from sparsetrain.runner.run import run
from sparsetrain.runs.checkpoint import load_checkpoint
from sparsetrain.runs.files import checkpoint_path
from sparsetrain.sparsity.masks import load_masks

BASE = ["device=cpu", "eval_every=0", "steps=30"]


def test_the_masks_of_a_step_start_a_run_from_its_own_weights_under_them(compose_config, tmp_path):
    source = ["method=rigl", "sparsity=0.9", "method.delta_t=4", "masks_at=[9,20]", *BASE]
    run(compose_config(*source), tmp_path / "source", source)
    saved = {step: load_masks(tmp_path / "source" / "masks" / f"step_{step:07d}.safetensors") for step in (9, 20)}
    assert any(not torch.equal(saved[9][name], saved[20][name]) for name in saved[9])  # RigL moved in between
    start = {name: p.clone() for name, p in _fresh_weights(compose_config).items()}
    target = ["method=static", f"init_from={tmp_path / 'source' / 'masks' / 'step_0000009.safetensors'}",
              "optimizer.lr=1e-9", "steps=1", "device=cpu", "eval_every=0"]
    run(compose_config(*target), tmp_path / "target", target)
    state = load_checkpoint(checkpoint_path(tmp_path / "target"), torch.device("cpu"))
    for name, mask in saved[9].items():
        assert torch.equal(state["method"]["masks"][name], mask)
        torch.testing.assert_close(state["model"][name], start[name] * mask, rtol=0, atol=1e-6)


def _fresh_weights(compose_config) -> dict[str, torch.Tensor]:
    """The default model's seeded starting weights (a 0-step run's)."""
    from sparsetrain.models.zoo import build_configured_model

    cfg = compose_config(*BASE)
    torch.manual_seed(cfg.seed)
    return dict(build_configured_model(cfg.model, (64,), 10).named_parameters())


def test_masks_that_fit_no_parameter_are_refused_in_one_line(compose_config, tmp_path):
    from safetensors.torch import save_file

    save_file({"nope.weight": torch.ones(3, 3, dtype=torch.bool)}, tmp_path / "masks.safetensors")
    overrides = ["method=static", f"init_from={tmp_path / 'masks.safetensors'}", *BASE]
    with pytest.raises(ConfigError, match=r"^init_from=.*: mask 'nope.weight' fits no parameter of the model; "):
        run(compose_config(*overrides), tmp_path / "run", overrides)
