"""FLOP accounting: per-layer dense counts, sparse inference FLOPs, RigL training FLOPs."""

import pytest
from torch import nn

from sparsetrain.models.zoo import build_model
from sparsetrain.sparsity.flops import TrainingFlops, inference_flops, layer_flops


def test_mlp_counts_two_flops_per_multiply_add():
    model = build_model("lenet300_100", (1, 28, 28), 10)
    total, per_layer = layer_flops(model, (1, 28, 28))
    names = [name for name, p in model.named_parameters() if name.endswith("weight")]
    assert per_layer == dict(zip(names, (2 * 784 * 300, 2 * 300 * 100, 2 * 100 * 10)))
    assert total == 2 * (784 * 300 + 300 * 100 + 100 * 10)


def test_conv_count_is_the_layers_own():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Conv2d(8, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    )
    total, per_layer = layer_flops(model, (3, 16, 16))
    assert per_layer == {
        "0.0.weight": 2 * 8 * 8 * 8 * 3 * 3 * 3,  # 2·C_out·H_out·W_out·C_in·k·k, 16x16 -> 8x8
        "1.weight": 2 * 4 * 6 * 6 * 8 * 3 * 3,
        "3.weight": 2 * 144 * 5,
    }
    assert total == sum(per_layer.values())


def test_model_modes_are_restored():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model[1].eval()
    layer_flops(model, (1, 1, 4))
    assert [m.training for m in model.modules()] == [True, True, False, True]
    model.eval()
    layer_flops(model, (1, 1, 4))
    assert not any(m.training for m in model.modules())


def test_inference_flops_scales_each_layer_by_its_density():
    per_layer = {"a.weight": 1000, "b.weight": 200}
    assert inference_flops(1300, per_layer, {"a.weight": 0.1}) == pytest.approx(1300 - 0.9 * 1000)
    assert inference_flops(1300, per_layer, {"a.weight": 0.1, "b.weight": 0.5}) == pytest.approx(100 + 100 + 100)
    with pytest.raises(ValueError, match="c.weight"):
        inference_flops(1300, per_layer, {"c.weight": 0.5})


def test_rigl_average_step_cost():
    per_layer = {"a.weight": 1000, "b.weight": 200}
    total_dense, densities, delta_t, batch = 1300, {"a.weight": 0.2, "b.weight": 0.5}, 100, 32
    f_s, f_d = inference_flops(total_dense, per_layer, densities), total_dense
    flops = TrainingFlops(total_dense, per_layer)
    flops.add_steps(delta_t, batch, densities)
    flops.add_steps(1, batch, densities, dense_backward=True)
    assert flops.total / (delta_t + 1) / batch == pytest.approx((3 * f_s * delta_t + 2 * f_s + f_d) / (delta_t + 1))


def test_dense_steps_and_state_round_trip():
    flops = TrainingFlops(1300, {"a.weight": 1000, "b.weight": 200})
    flops.add_steps(10, 4, None)
    assert flops.total == 3 * 1300 * 10 * 4
    restored = TrainingFlops(1300, {"a.weight": 1000, "b.weight": 200})
    restored.load_state_dict(flops.state_dict())
    restored.add_steps(1, 4, None, dense_backward=True)
    assert restored.total == flops.total + 3 * 1300 * 4
    assert all(type(v) in (int, float) for v in flops.state_dict().values())
