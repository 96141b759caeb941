"""``init_from``: a run starts from trained weights, and a sparse source stays exactly as sparse."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from sparsetrain import methods
from sparsetrain.errors import ConfigError
from sparsetrain.export import export
from sparsetrain.sparsity.masks import load_masks
from sparsetrain.runner.run import run

BASE = ["epochs=1", "device=cpu", "checkpoint_every=0"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A sparse (static, 90 %) and a dense finished run, and the sparse run's safetensors export."""
    from hydra import compose, initialize_config_module

    root = tmp_path_factory.mktemp("sources")
    for name, extra in (("sparse", ["method=static", "sparsity=0.9", "seed=3"]), ("dense", [])):
        overrides = [*BASE, *extra]
        with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        run(cfg, root / name, overrides)
    export(root / "sparse", root / "sparse" / "export", force=False)
    return root


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def _starting_weights(monkeypatch, name):
    """Record the model's weights when the method's first round starts."""
    seen = {}

    class Recording(methods.METHODS[name]):
        def start_round(self, round_index):
            super().start_round(round_index)
            seen.update({k: v.clone() for k, v in self.ctx.model.state_dict().items()})

    monkeypatch.setitem(methods.METHODS, name, Recording)
    return seen


@pytest.mark.parametrize("source", ["run_dir", "checkpoint", "export"])
def test_sparse_fine_tuning_keeps_every_zero(source, sources, compose_config, tmp_path, monkeypatch):
    path = {"run_dir": sources / "sparse", "checkpoint": sources / "sparse" / "checkpoints" / "last.pt",
            "export": sources / "sparse" / "export" / "model.safetensors"}[source]
    overrides = [*BASE, "method=static", f"init_from={path}", "optimizer.lr=0.05", "seed=7"]
    start = _starting_weights(monkeypatch, "static")
    summary = run(compose_config(*overrides), tmp_path, overrides)
    trained, before = _weights(sources / "sparse"), _weights(tmp_path)
    assert all(torch.equal(start[k], trained[k]) for k in trained)  # starts from the source's weights
    source_masks = load_masks(sources / "sparse" / "masks" / "final.safetensors")
    masks = load_masks(tmp_path / "masks" / "final.safetensors")
    for name, mask in source_masks.items():
        assert torch.equal(masks[name], mask)
        assert torch.all(before[name][~mask] == 0) and not torch.equal(before[name], trained[name])
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=1e-4)


def test_a_dynamic_method_starts_from_the_source_masks(sources, compose_config, tmp_path, monkeypatch):
    overrides = [*BASE, "method=rigl", "sparsity=0.9", f"init_from={sources / 'sparse'}", "method.delta_t=5"]
    seen = {}

    class Recording(methods.METHODS["rigl"]):
        def start_round(self, round_index):
            super().start_round(round_index)
            seen.update({k: v.clone() for k, v in self.maskset.masks.items()})

    monkeypatch.setitem(methods.METHODS, "rigl", Recording)
    summary = run(compose_config(*overrides), tmp_path, overrides)
    source_masks = load_masks(sources / "sparse" / "masks" / "final.safetensors")
    assert all(torch.equal(seen[name], mask) for name, mask in source_masks.items())
    counts = {name: int(mask.sum()) for name, mask in load_masks(tmp_path / "masks" / "final.safetensors").items()}
    assert counts == {name: int(mask.sum()) for name, mask in source_masks.items()}  # counts kept through updates
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=1e-4)


def test_a_dense_source_gives_weights_to_a_pruning_method(sources, compose_config, tmp_path, monkeypatch):
    overrides = [*BASE, "method=gmp", "sparsity=0.8", f"init_from={sources / 'dense'}", "method.start=5it"]
    start = _starting_weights(monkeypatch, "gmp")
    run(compose_config(*overrides), tmp_path, overrides)
    trained = _weights(sources / "dense")
    assert all(torch.equal(start[k], trained[k]) for k in trained)


def test_dense_fine_tuning_of_a_sparse_source_is_refused(sources, compose_config, tmp_path):
    overrides = [*BASE, f"init_from={sources / 'sparse'}"]
    with pytest.raises(ConfigError, match="method=dense would fill its zeros.*method=static"):
        run(compose_config(*overrides), tmp_path, overrides)


def test_bad_sources_are_refused_in_one_line(sources, compose_config, tmp_path):
    overrides = ["model=conv2", f"init_from={sources / 'dense'}", *BASE]
    with pytest.raises(ConfigError, match=f"^init_from='{sources / 'dense'}' does not fit the model"):
        run(compose_config(*overrides), tmp_path / "misfit", overrides)
    assert not (tmp_path / "misfit").exists()  # refused before the run wrote anything
    (tmp_path / "junk.pt").write_bytes(b"junk")  # a damaged file: one line, as for resume
    junk = [*BASE, f"init_from={tmp_path / 'junk.pt'}"]
    with pytest.raises(ConfigError, match="^init_from: .*junk.pt cannot be loaded"):
        run(compose_config(*junk), tmp_path / "junk", junk)
    torch.save([1, 2], tmp_path / "list.pt")  # a torch file without weights: one line
    listed = [*BASE, f"init_from={tmp_path / 'list.pt'}"]
    with pytest.raises(ConfigError, match="^init_from: .*list.pt holds no model weights"):
        run(compose_config(*listed), tmp_path / "listed", listed)
    result = run_cli(f"init_from={tmp_path / 'nowhere'}", *BASE, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: init_from=") and "neither" in result.stderr
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run directory


def test_oneshot_loads_method_pretrained_as_init_from_loads_weights(sources, compose_config, tmp_path):
    """An export loads (pruned to 0.95, the kept weights are among the 90 %-sparse export's non-zeros: its weights,
    not a fresh init); a run of another model is refused in one line."""
    export_file = sources / "sparse" / "export" / "model.safetensors"
    overrides = ["method=oneshot", "sparsity=0.95", f"method.pretrained={export_file}", *BASE]
    run(compose_config(*overrides), tmp_path / "pruned", overrides)
    exported = load_file(export_file)
    masks = torch.load(tmp_path / "pruned" / "checkpoints" / "last.pt", weights_only=True)["method"]["masks"]
    assert masks and all(not (mask & (exported[name] == 0)).any() for name, mask in masks.items())
    misfit = ["model=conv2", "method=oneshot", "sparsity=0.5", f"method.pretrained={sources / 'dense'}", *BASE]
    with pytest.raises(ConfigError, match=f"^method.pretrained='{sources / 'dense'}' does not fit the model"):
        run(compose_config(*misfit), tmp_path / "misfit", misfit)
