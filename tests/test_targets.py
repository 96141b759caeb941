"""Which weights are prunable, and the user's fixed-density layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsetrain.models.zoo import build_model
from sparsetrain.sparsity.masks import MaskSet, random_masks
from sparsetrain.sparsity.targets import prunable_parameters, select_targets


def test_only_conv_and_linear_weights_are_prunable():
    model = build_model("resnet20", (3, 32, 32), 10)
    names = list(prunable_parameters(model))
    assert len(names) == 20 and all(name.endswith(".weight") for name in names)
    modules = dict(model.named_modules())
    assert all(isinstance(modules[name.rsplit(".", 1)[0]], (nn.Conv2d, nn.Linear)) for name in names)


def test_dense_and_fixed_layers():
    model = build_model("lenet300_100", (1, 28, 28), 10)
    targets = select_targets(model, ["first", "last"], ["3.weight:0.25"])
    assert targets.fixed == {"1.weight": 1.0, "5.weight": 1.0, "3.weight": 0.25}
    assert targets.budgeted == []
    targets = select_targets(model, ["[15].weight"], [])
    assert targets.fixed == {"1.weight": 1.0, "5.weight": 1.0} and targets.budgeted == ["3.weight"]


@pytest.mark.parametrize("dense,fixed,key", [(["nosuch"], [], "method.dense_layers"),
                                             ([], ["1.weight"], "method.layer_density"),
                                             ([], ["1.weight:1.5"], "method.layer_density")])
def test_bad_patterns_name_the_key(dense, fixed, key):
    with pytest.raises(ValueError, match=key):
        select_targets(build_model("lenet300_100", (1, 28, 28), 10), dense, fixed)


def test_random_masks_are_exact_and_seeded_per_layer():
    shapes = {"a": (30, 20), "b": (7, 3, 3, 3)}
    masks = random_masks(shapes, {"a": 540, "b": 10}, seed=3, device=torch.device("cpu"))
    assert int((~masks["a"]).sum()) == 540 and int((~masks["b"]).sum()) == 10
    again = random_masks({"b": (7, 3, 3, 3)}, {"b": 10}, seed=3, device=torch.device("cpu"))
    assert torch.equal(again["b"], masks["b"])  # a layer's mask does not depend on the others
    other_seed = random_masks(shapes, {"a": 540, "b": 10}, seed=4, device=torch.device("cpu"))
    assert not torch.equal(other_seed["a"], masks["a"])


def test_maskset_masks_weights_grads_and_adam_state():
    layer = nn.Linear(6, 4)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    maskset = MaskSet({"weight": layer.weight})
    mask = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)) > 0.5
    layer(torch.randn(3, 6)).sum().backward()
    optimizer.step()
    maskset.set({"weight": mask})
    maskset.apply_(optimizer)
    maskset.mask_grads_()
    state = optimizer.state[layer.weight]
    for tensor in (layer.weight, layer.weight.grad, state["exp_avg"], state["exp_avg_sq"]):
        assert torch.all(tensor[~mask] == 0) and torch.all(tensor[mask] != 0)
    assert maskset.counts() == {"weight": int(mask.sum())}
    assert maskset.sparsity() == pytest.approx(1 - mask.float().mean().item())
