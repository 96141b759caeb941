"""AC/DC: the phase schedule as a pure function, and the method's invariants in training."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import crash_and_resume
from sparsetrain import methods
from sparsetrain.compose.checks import validate
from sparsetrain.sparsity.distribution import exact_zeros
from sparsetrain.sparsity.phases import acdc_phase
from sparsetrain.runner.run import run

IMAGENET = dict(warmup=10, compressed=5, decompressed=5, final=15)  # iht_imagenet_resnet50_*_ep100
CIFAR = dict(warmup=10, compressed=20, decompressed=20, final=30)  # iht_cifar100_wideresnet_steplr_freq20


def _phases(epochs: int, **schedule) -> list[str]:
    return [acdc_phase(e, epochs=epochs, **schedule)[0] for e in range(epochs)]  # d(ense warm-up), c, d(ecompressed)


def _starts(phases: list[str], letter: str) -> list[int]:
    return [e for e, p in enumerate(phases) if p == letter and (e == 0 or phases[e - 1] != letter)]


def test_imagenet_schedule_matches_the_authors_config():
    phases = _phases(100, **IMAGENET)
    assert phases[:10] == ["d"] * 10  # dense warm-up
    assert _starts(phases, "c") == [10, 20, 30, 40, 50, 60, 70, 85]  # pruner_1 [10,10,71], pruner_2 at 85
    assert _starts(phases[10:], "d") == [e - 10 for e in (15, 25, 35, 45, 55, 65, 75)]  # recyclers at 15..65, 75
    assert phases[75:85] == ["d"] * 10 and phases[85:] == ["c"] * 15


def test_extended_imagenet_schedule_adds_cycles_as_the_ep200_config():
    phases = _phases(200, **IMAGENET)
    assert _starts(phases, "c") == [*range(10, 171, 10), 185]  # compress every 10 from 10 to 170, final at 185
    assert phases[175:185] == ["d"] * 10 and phases[185:] == ["c"] * 15


def test_cifar_schedule_matches_the_authors_config():
    phases = _phases(200, **CIFAR)
    assert _starts(phases, "c") == [10, 50, 90, 130, 170]
    assert _starts(phases[10:], "d") == [e - 10 for e in (30, 70, 110, 150)]
    assert acdc_phase(0, epochs=200, **CIFAR) == "dense_warmup"
    assert acdc_phase(169, epochs=200, **CIFAR) == "decompressed"
    assert acdc_phase(199, epochs=200, **CIFAR) == "compressed"


# ---- in training ---------------------------------------------------------------------------------------------
SPARSITY = 0.9
# 7 epochs: warm-up 0, compressed 1, decompressed 2, compressed 3, decompressed 4, final compressed 5-6
RUN = ["method=acdc", f"sparsity={SPARSITY}", "epochs=7", "device=cpu", "method.warmup_epochs=1",
       "method.compressed_epochs=1", "method.decompressed_epochs=1", "method.final_epochs=2"]
EXPECTED = ["dense_warmup", "compressed", "decompressed", "compressed", "decompressed", "compressed", "compressed"]


def _checked(cls):
    class Checked(cls):
        seen: list[tuple[int, str, float]] = []
        momentum_after_decompression: list[float] = []

        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            epoch = step // self.ctx.steps_per_epoch
            masks, params = self.maskset.masks, self.targets.params
            zeros = sum(int((~m).sum()) for m in masks.values())
            numel = sum(m.numel() for m in masks.values())
            if self.phase(epoch) == "compressed":
                assert zeros == exact_zeros(numel, 1.0 - SPARSITY), step  # exact global count
                for name, mask in masks.items():
                    assert torch.all(params[name][~mask] == 0)
                    state = self.ctx.optimizer.state[params[name]]
                    assert torch.all(state["momentum_buffer"][~mask] == 0)
            else:
                assert zeros == 0, step
            Checked.seen.append((epoch, self.phase(epoch), zeros / numel))

        def _compress(self):
            scores = torch.cat([p.detach().abs().flatten() for p in self.targets.params.values()])
            super()._compress()
            kept = torch.cat([m.flatten() for m in self.maskset.masks.values()])
            assert scores[kept].min() >= scores[~kept].max()  # one global magnitude threshold over all layers

        def _decompress(self):
            previously_pruned = {name: ~mask.clone() for name, mask in self.maskset.masks.items()}
            super()._decompress()
            params, state = self.targets.params, self.ctx.optimizer.state
            for name, pruned in previously_pruned.items():
                assert torch.all(params[name][pruned] == 0)  # pruned weights re-enter at zero
            every = [p for group in self.ctx.optimizer.param_groups for p in group["params"]]  # biases included
            assert len(every) > len(params)
            Checked.momentum_after_decompression.append(
                max(float(state[p]["momentum_buffer"].abs().max()) for p in every))

    return Checked


def test_phases_densities_momentum_and_final_sparsity(compose_config, tmp_path, monkeypatch):
    cls = _checked(methods.METHODS["acdc"])
    monkeypatch.setitem(methods.METHODS, "acdc", cls)
    summary = run(compose_config(*RUN), tmp_path, RUN)
    per_epoch = {epoch: (phase, density) for epoch, phase, density in cls.seen}
    assert [per_epoch[e][0] for e in range(7)] == EXPECTED
    assert cls.momentum_after_decompression == [0.0, 0.0]  # two decompressions, momentum reset
    assert summary["masks"]["sparsity"] == pytest.approx(SPARSITY, abs=1e-5)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    changes = [(e["event"], e["epoch"]) for e in events if e["event"] in ("prune", "decompress")]
    assert changes == [("prune", 1), ("decompress", 2), ("prune", 3), ("decompress", 4), ("prune", 5)]


def test_warmup_and_final_phase_must_fit_the_run(compose_config, tmp_path):
    overrides = ["method=acdc", "sparsity=0.9", "epochs=3", "device=cpu", "method.warmup_epochs=10",
                 "method.final_epochs=15"]
    with pytest.raises(ValueError, match="method.warmup_epochs=10 and method.final_epochs=15 do not fit"):
        run(compose_config(*overrides), tmp_path, overrides)


def test_crash_and_resume_inside_a_phase_is_bit_identical(compose_config, tmp_path, monkeypatch):
    crash_after = 50  # 22 steps an epoch: inside the decompressed phase (epoch 2), after a compression
    overrides = [*RUN, "epochs=5", "checkpoint_every=7it", "resume=auto", "model.dropout=0.1"]
    overrides = [o for o in overrides if o != "epochs=7"]
    crash_and_resume(compose_config, tmp_path, monkeypatch, "acdc", overrides, crash_after)


@pytest.mark.parametrize("preset, compress_at", [
    ("acdc_resnet50_imagenet", [10, 20, 30, 40, 50, 60, 70, 85]),
    ("acdc_resnet20_cifar10", [10, 50, 90, 130, 170]),
])
def test_presets_hold_the_authors_schedules(preset, compress_at, compose_config):
    cfg = compose_config(f"+experiment={preset}")
    validate(cfg)
    m = cfg.method
    phases = [acdc_phase(e, epochs=cfg.epochs, warmup=m.warmup_epochs, compressed=m.compressed_epochs,
                         decompressed=m.decompressed_epochs, final=m.final_epochs) for e in range(cfg.epochs)]
    assert _starts(phases, "compressed") == compress_at and m.scope == "global"
