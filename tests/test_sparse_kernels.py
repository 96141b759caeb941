"""SparseLinear's kernels (dense, CSR, gathered; untiled and tiled) against F.linear."""

import pytest
import torch
from torch.nn import functional as F

from sparsetrain.runtime.sparse_linear import Kernel, SparseLinear
from sparsetrain.runtime.tune import choose_kernels, choose_output_layouts, sparsify_linear_layers

KERNELS = [Kernel("dense"), Kernel("csr"), Kernel("gather"), Kernel("csr", tile=4), Kernel("gather", tile=4),
           Kernel("csr", transposed=True), Kernel("gather", tile=4, transposed=True)]


def _sparse_weight(out_features=12, in_features=20, density=0.2, seed=0):
    """A random weight keeping about ``density`` of its entries, with rows 0 and 5 all zero (ablated units)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=generator)
    weight *= torch.rand(out_features, in_features, generator=generator) < density
    weight[[0, 5]] = 0
    return weight


def _close(actual, expected):
    return torch.allclose(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda kernel: kernel.label)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_each_kernel_equals_f_linear_for_one_row_and_many(kernel, with_bias):
    weight = _sparse_weight()
    bias = torch.randn(12) if with_bias else None
    layer = SparseLinear.from_dense(weight, bias, kernel, kernel)
    with torch.inference_mode():
        for x in (torch.randn(20), torch.randn(1, 20), torch.randn(10, 20), torch.randn(2, 5, 20)):
            out = layer(x)
            assert out.shape == (*x.shape[:-1], 12) and _close(out, F.linear(x, weight, bias)), x.shape
            assert (out[..., [0, 5]] == (0 if bias is None else bias[[0, 5]])).all()  # the ablated units


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda kernel: kernel.label)
def test_a_layer_takes_the_transposed_output_of_the_one_before(kernel):
    first, second = _sparse_weight(20, 16, seed=1), _sparse_weight(seed=2)
    bias = torch.randn(12)
    transposed = Kernel("gather", transposed=True)
    layers = (SparseLinear.from_dense(first, None, transposed, transposed),
              SparseLinear.from_dense(second, bias, kernel, kernel))
    x = torch.randn(10, 16)
    with torch.inference_mode():
        hidden = torch.relu(layers[0](x))
        assert hidden.t().is_contiguous()  # the (out, rows) product's transpose, a view
        assert _close(layers[1](hidden), F.linear(torch.relu(F.linear(x, first)), second, bias))


@pytest.mark.parametrize("tile", [0, 4])
def test_outputs_are_row_major_unless_the_kernel_is_transposed(tile):
    weight = _sparse_weight()
    x = torch.randn(10, 20)
    for name in ("csr", "gather"):
        for transposed in (False, True):
            kernel = Kernel(name, tile, transposed)
            with torch.inference_mode():
                out = SparseLinear.from_dense(weight, None, kernel, kernel)(x)
            assert (out.t() if transposed else out).is_contiguous(), kernel.label


def test_the_state_dict_holds_the_csr_parts_and_rebuilds_every_kernel():
    weight, bias = _sparse_weight(), torch.randn(12)
    x = torch.randn(10, 20)
    for kernel in KERNELS:
        layer = SparseLinear.from_dense(weight, bias, Kernel("csr"), kernel)
        state = {f"fc.{name}": tensor for name, tensor in layer.state_dict().items()}
        assert sorted(state) == ["fc.bias", "fc.col_indices", "fc.crow_indices", "fc.values"]
        assert state["fc.values"].numel() == int((weight != 0).sum())
        rebuilt = SparseLinear.from_state(state, "fc", layer.describe())
        assert rebuilt.many == kernel and rebuilt.one == Kernel("csr")
        with torch.inference_mode():
            assert _close(rebuilt(x), F.linear(x, weight, bias)) and _close(rebuilt(x[0]), F.linear(x[0], weight, bias))


def test_an_earlier_exports_condensed_kernel_loads_as_the_gather_of_the_same_sum():
    weight, bias = _sparse_weight(), torch.randn(12)
    layer = SparseLinear.from_dense(weight, bias, Kernel("csr"), Kernel("gather", tile=4))
    plan = layer.describe()
    plan["many"] = {"name": "condensed", "tile": 4}  # as the earlier exports wrote it (no transposed field)
    rebuilt = SparseLinear.from_state({f"fc.{k}": v for k, v in layer.state_dict().items()}, "fc", plan)
    assert rebuilt.many == Kernel("gather", tile=4)


def test_the_tuner_times_every_kernel_and_tile_and_keeps_the_dense_one_unless_beaten():
    layer = torch.nn.Linear(20, 12)
    with torch.no_grad():
        layer.weight.copy_(_sparse_weight())
    one, many, times = choose_kernels(layer, rows=64, min_time=0.001)
    labels = {"dense", "csr", "gather"}
    assert times.keys() == {f"one:{label}" for label in labels} | {f"many:{label}" for label in labels} | {
        f"many:{name}/{tile}" for name in ("csr", "gather") for tile in (32,)}
    for regime, kernel in (("one", one), ("many", many)):
        assert kernel.name == "dense" or times[f"{regime}:{kernel.label}"] < times[f"{regime}:dense"]


def test_the_output_layouts_are_chosen_on_the_whole_model_and_keep_its_outputs():
    weights = _sparse_weight(16, 20, seed=3), _sparse_weight(12, 16, seed=4)
    first = SparseLinear.from_dense(weights[0], None, Kernel("csr"), Kernel("gather"))
    model = torch.nn.Sequential(first, torch.nn.ReLU(), SparseLinear.from_dense(weights[1], None, Kernel("csr"),
                                                                                Kernel("dense")))
    x = torch.randn(10, 20)
    times = choose_output_layouts(model, (x,), min_time=0.001)
    assert list(times) == ["0"] and model[0].many.name == "gather" and model[2].many == Kernel("dense")
    with torch.inference_mode():
        assert _close(model(x), F.linear(torch.relu(F.linear(x, weights[0])), weights[1]))


def test_sparsify_reports_each_layers_kernels_and_with_an_example_the_model_timed_per_layout():
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(_sparse_weight(16, 20))
        model[2].weight.copy_(_sparse_weight(12, 16))
    expected = model(x := torch.randn(10, 20)).detach()
    report = sparsify_linear_layers(model, rows=10, min_time=0.001, example=(x,))
    assert list(report) == ["0", "2"] and all(isinstance(model[int(name)], SparseLinear) for name in report)
    for name, plan in report.items():
        assert plan["many"] == model[int(name)].many.as_dict() and plan["rows"] == 10
        assert ("model:transposed" in plan["ms"]) == (plan["many"]["name"] != "dense")
    with torch.inference_mode():
        assert _close(model(x), expected)
