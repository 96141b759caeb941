"""The channel pattern makes removable channels: one selection per group of coupled layers (residual additions),
the BatchNorm after a zeroed filter zeroed with it through training, and the shrunk model's logits the run's."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sparsetrain.errors import ConfigError
from sparsetrain.methods.base import RunContext
from sparsetrain.methods.build import build_method
from sparsetrain.models.zoo import build_model
from sparsetrain.runner.run import run
from sparsetrain.runtime.shrink import shrink_channels

IN_SHAPE = (3, 8, 8)
COMMON = ["method.pattern.name=channel", "method.dense_layers=[last]", "method.distribution=uniform"]
# each family's selection, as the method makes it: (overrides, the call that prunes)
FAMILIES = {
    "static": (["method=static", "sparsity=0.5", "method.uniform_dense_first=false"],
               lambda method: method.start_round(0)),
    "oneshot": (["method=oneshot", "sparsity=0.5", "method.scope=layerwise"], lambda method: method.end_round(0)),
    "gmp": (["method=gmp", "sparsity=0.5", "method.initial_sparsity=0.5", "method.start=0ep"],
            lambda method: method.start_round(0)),
    "lth": (["method=lth", "method.levels=1", "method.prune_rate=0.5", "method.rewind=lr",
             "method.layer_rates=[last:0]"],
            lambda method: method.end_round(0)),
    "snip": (["method=snip", "sparsity=0.5", "method.scope=layerwise"], lambda method: method.start_round(0)),
}


def resnet(shortcut: str = "projection") -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet20", IN_SHAPE, 10, shortcut=shortcut)


def set_up(compose_config, model: nn.Module, *overrides: str, optimizer=None):
    """A method set up on ``model`` outside the training loop (SNIP scores two random batches)."""
    cfg = compose_config(*overrides, *COMMON)
    batches = [(torch.randn(4, *IN_SHAPE), torch.randint(0, 10, (4,))) for _ in range(2)]
    method = build_method(cfg.method, cfg.sparsity)
    method.setup(RunContext(
        model=model, optimizer=optimizer or torch.optim.SGD(model.parameters(), lr=0.1),
        train_batches=types.SimpleNamespace(epoch=lambda epoch: iter(batches)),
        loss_fn=lambda net, batch: F.cross_entropy(net(batch[0]), batch[1]), in_shape=IN_SHAPE, seed=0,
        device=torch.device("cpu"), steps_per_epoch=10, total_steps=10, lr_factor=lambda step: 1.0,
        run_dir=Path("."), log=lambda event: None, fresh_weights=lambda seed: {}, num_classes=10,
        example=batches[0]))
    return method


def kept_channels(mask: torch.Tensor) -> torch.Tensor:
    channels = mask.flatten(1)
    assert (channels.all(1) | ~channels.any(1)).all()  # whole output channels
    return channels.all(1)


def zero_channels_hold(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """The BatchNorm after every masked convolution is zero (weight and bias) exactly on its masked channels."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name != "fc.weight":
            norm = modules[_norm_name(name)]
            dead = ~kept_channels(mask)
            assert (norm.weight[dead] == 0).all() and (norm.bias[dead] == 0).all() and norm.weight[~dead].ne(0).all()


def _norm_name(weight: str) -> str:
    """The BatchNorm after a CIFAR ResNet's convolution: conv<i> -> bn<i>, stem.0 -> stem.1, shortcut.0 -> .1."""
    layer = weight.removesuffix(".weight").replace("conv", "bn")
    return layer[:-1] + "1" if layer.endswith(("stem.0", "shortcut.0")) else layer


def test_the_residual_stages_are_the_coupled_groups(compose_config):
    method = set_up(compose_config, resnet(), *FAMILIES["static"][0])
    stages = [tuple(sorted(group)) for group in method.channel_groups]
    assert sorted(stages) == sorted([
        ("body.0.0.conv2.weight", "body.0.1.conv2.weight", "body.0.2.conv2.weight", "stem.0.weight"),
        *[tuple(sorted((f"body.{s}.0.shortcut.0.weight", *(f"body.{s}.{b}.conv2.weight" for b in range(3)))))
          for s in (1, 2)]])
    padded = set_up(compose_config, resnet("pad"), *FAMILIES["static"][0]).channel_groups
    assert [set(group) for group in padded] == [  # zero-padding shortcuts tie the stages into one chain
        {"stem.0.weight", *(f"body.{s}.{b}.conv2.weight" for s in range(3) for b in range(3))}]


def test_a_padding_chain_keeps_the_same_positions_in_every_stage(compose_config):
    method = set_up(compose_config, resnet("pad"), *FAMILIES["oneshot"][0])
    method.end_round(0)
    kept = [kept_channels(method.masks()[name]) for name in method.channel_groups[0]]
    assert all(torch.equal(channels, kept[-1][:len(channels)]) for channels in kept)
    assert [int(kept[-1][start:end].sum()) for start, end in ((0, 16), (16, 32), (32, 64))] == [8, 8, 16]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_keeps_one_set_of_channels_per_group_in_its_budget(compose_config, family):
    overrides, prune = FAMILIES[family]
    model = resnet()
    method = set_up(compose_config, model, *overrides)
    prune(method)
    masks = method.masks()
    for name, mask in masks.items():  # half of every pruned layer's channels (uniform 50 %)
        kept = kept_channels(mask)
        assert int(kept.sum()) == (len(kept) if name == "fc.weight" else len(kept) // 2)
    for group in method.channel_groups:
        first = kept_channels(masks[group[0]])
        assert all(torch.equal(kept_channels(masks[name]), first) for name in group)
    zero_channels_hold(model, masks)


def test_a_group_keeps_its_layers_budgets_rounded_to_whole_channels(compose_config):
    method = set_up(compose_config, resnet(), *FAMILIES["oneshot"][0])
    group = next(group for group in method.channel_groups if "stem.0.weight" in group)
    keep = {name: mask.numel() for name, mask in method.masks().items()}
    keep.update({"stem.0.weight": 27 * 4, **{name: 144 * 9 for name in group if name != "stem.0.weight"}})
    masks = method.pattern_masks(method.magnitude_scores(), keep)
    # (4 x 27 + 3 x 9 x 144) kept weights over 27 + 3 x 144 weights a channel: 8.70 channels, rounded to 9
    assert {int(kept_channels(masks[name]).sum()) for name in group} == {9}


def test_the_batchnorm_and_its_optimizer_state_stay_zero_through_adam_steps(compose_config):
    model = resnet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=1e-2)
    method = set_up(compose_config, model, *FAMILIES["static"][0], optimizer=optimizer)
    method.start_round(0)
    for _ in range(3):
        x, y = torch.randn(4, *IN_SHAPE), torch.randint(0, 10, (4,))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        method.before_optimizer_step(0)
        optimizer.step()
        method.after_optimizer_step(0)
    zero_channels_hold(model, method.masks())
    bn, dead = model.body[2][1].bn1, ~kept_channels(method.masks()["body.2.1.conv1.weight"])
    assert (optimizer.state[bn.weight]["exp_avg"][dead] == 0).all()
    assert (bn.bias.grad[dead] == 0).all() and bn.bias.grad[~dead].ne(0).any()


@pytest.mark.parametrize("shortcut", ["projection", "pad"])
def test_a_trained_run_shrinks_to_half_its_channels_with_the_same_logits(compose_config, tmp_path, shortcut):
    overrides = ["model=resnet20", f"model.shortcut={shortcut}", "dataset=synthetic", "dataset.image_size=8",
                 "dataset.train_size=64", "dataset.test_size=16", "batch_size=16", "steps=3", "eval_every=0",
                 "checkpoint_every=0", "optimizer.weight_decay=0.01", *FAMILIES["oneshot"][0], *COMMON]
    run(compose_config(*overrides), tmp_path, overrides)
    model = resnet(shortcut)
    model.load_state_dict(torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["model"])
    masks = load_file(tmp_path / "masks" / "final.safetensors")
    zero_channels_hold(model, masks)
    x = torch.randn(5, *IN_SHAPE)
    logits = model.eval()(x).detach()
    before = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    shrink_channels(model, x[:2])
    assert torch.allclose(model(x), logits, atol=1e-5, rtol=0)
    after = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    assert after == before // 2


def test_the_channel_pattern_without_torch_pruning_is_refused_in_one_line(compose_config, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    cfg = compose_config("method=static", "sparsity=0.5", *COMMON)
    with pytest.raises(ConfigError, match=r"^method.pattern.name=channel needs Torch-Pruning .*; or e.g. "
                                          r"method.pattern.name=fanin$"):
        build_method(cfg.method, cfg.sparsity)
