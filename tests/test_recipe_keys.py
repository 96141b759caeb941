"""Recipe knobs a peer comparison needs: the initialisation scheme (``model.init``) and weight decay off for
biases and normalisation parameters (``optimizer.exempt_bias_norm``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sparsetrain.errors import ConfigError
from sparsetrain.models.zoo import build_model
from sparsetrain.models.init import apply_init
from sparsetrain.training.optimizer import build_optimizer
from sparsetrain.runner.run import run


def linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("scheme", ["kaiming_normal", "glorot_normal", "pytorch"])
def test_model_init_schemes(scheme):
    torch.manual_seed(0)
    model = build_model("lenet300_100", (1, 28, 28), 10)
    apply_init(model, scheme)
    layer = linears(model)[0]  # 784 -> 300
    fan_in, fan_out = layer.in_features, layer.out_features
    std = layer.weight.std().item()
    if scheme == "kaiming_normal":
        assert std == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
        assert torch.all(layer.bias == 0)
    elif scheme == "glorot_normal":
        assert std == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
        assert torch.all(layer.bias == 0)
    else:  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases too
        bound = 1 / math.sqrt(fan_in)
        assert layer.weight.abs().max() <= bound and std == pytest.approx(bound / math.sqrt(3), rel=0.02)
        assert layer.bias.abs().max() <= bound and (layer.bias != 0).all()


def test_model_init_key_reaches_the_run(compose_config, tmp_path):
    overrides = ["method=dense", "device=cpu", "steps=1", "eval_every=0", "model.init=glorot_normal", "seed=3"]
    run(compose_config(*overrides), tmp_path / "glorot", overrides)
    paper = ["method=dense", "device=cpu", "steps=1", "eval_every=0", "seed=3"]
    run(compose_config(*paper), tmp_path / "paper", paper)
    glorot, own = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)["model"]
                   for d in ("glorot", "paper"))
    assert not torch.equal(glorot["1.weight"], own["1.weight"])
    with pytest.raises(ConfigError, match="model.init='he' is not an initialisation"):
        bad = ["method=dense", "device=cpu", "steps=1", "model.init=he"]
        run(compose_config(*bad), tmp_path / "bad", bad)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_exemption_for_biases_and_norms(optimizer, compose_config):
    model = build_model("resnet20", (3, 32, 32), 10)
    cfg = compose_config(f"optimizer={optimizer}", "optimizer.exempt_bias_norm=true").optimizer
    groups = build_optimizer(cfg, model).param_groups
    decay = cfg.weight_decay
    assert [g["weight_decay"] for g in groups] == [decay, 0.0] and decay > 0
    exempt = {id(p) for p in groups[1]["params"]}
    for name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            no_decay = isinstance(module, nn.BatchNorm2d) or pname == "bias"
            assert (id(param) in exempt) == no_decay, f"{name}.{pname}"
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [id(p) for p in groups[0]["params"]] == [id(w) for w in weights]  # every conv/linear weight decays
    assert len(build_optimizer(compose_config(f"optimizer={optimizer}").optimizer, model).param_groups) == 1


def test_cifar_resnet_shortcut_key_and_the_openlth_preset(compose_config):
    """OpenLTH's cifar_resnet_20 has 1x1-convolution shortcuts (pruned); the paper's option A has none."""
    pad = build_model("resnet20", (3, 32, 32), 10)
    proj = build_model("resnet20", (3, 32, 32), 10, shortcut="projection")
    convs = {name: m for name, m in proj.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)}
    assert [tuple(m.weight.shape) for m in convs.values()] == [(32, 16, 1, 1), (64, 32, 1, 1)]
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in pad.modules())
    assert sum(p.numel() for p in proj.parameters()) - sum(p.numel() for p in pad.parameters()) == \
        16 * 32 + 2 * 32 + 32 * 64 + 2 * 64  # two 1x1 convs and their BN
    cfg = compose_config("+experiment=lth_resnet20_cifar10")
    assert cfg.model.shortcut == "projection"
    with pytest.raises(ValueError, match="model.shortcut is not used by model lenet300_100"):
        build_model("lenet300_100", (1, 28, 28), 10, shortcut="projection")
    with pytest.raises(ValueError, match="model.shortcut='b' is not a shortcut"):
        build_model("resnet20", (3, 32, 32), 10, shortcut="b")


# the audit's departures each preset now follows its authors on (AUDIT-2: T1-T6, O1, O3, A2-A5, E1, G1)
PRESET_KEYS = {
    "tamt_bert_mlm": {"optimizer.clip_grad_norm": 1.0, "optimizer.clip_mode": "global",
                      "masks_at": [11000, 14000, 17000, 20000, 22000]},
    "tamt_bert_kd": {"optimizer._target_": "sparsetrain.training.bert_adam.BertAdam", "optimizer.eps": 1e-6,
                     "optimizer.clip_grad_norm": 1.0, "optimizer.clip_mode": "per_tensor",
                     "method.score_weight_decay": 0.01, "dataset.mlm_tokens": 1, "task.distill.teacher_mode": "train",
                     "masks_at": [11000, 14000, 17000, 20000, 22000]},
    "tamt_glue_finetune": {"optimizer.clip_grad_norm": 1.0, "eval_every": "50it"},
    "obert_bert_glue": {"optimizer.clip_grad_norm": 1.0, "method.criterion": "obs", "method.num_grads": 1024,
                        "method.fisher_block_size": 50, "method.grad_batch_size": 16},
    "sparse_transfer_glue": {"optimizer.clip_grad_norm": 1.0},
    "gmp_lr_rewinding": {"method.initial_sparsity": 0.7},
    "acdc_resnet20_cifar10": {"model.shortcut": "projection", "method.exclude": ["*shortcut*"],
                              "schedule.step_at": "epoch"},
    "acdc_resnet50_imagenet": {"schedule.step_at": "epoch", "stretch_warmup": False},
    "acdc_wrn28_10_cifar100": {"model.name": "wrn", "dataset.name": "cifar100", "optimizer.lr": 0.08,
                               "optimizer.nesterov": True, "schedule.milestones": [75, 115, 155],
                               "method.warmup_epochs": 10, "method.compressed_epochs": 20,
                               "method.decompressed_epochs": 20, "method.final_epochs": 30,
                               "schedule.step_at": "epoch"},
    "supermask_lenet300_fashion_mnist": {"method.rank": "abs", "method.init": "signed",
                                         "method.score_weight_decay": 1e-4},
}


@pytest.mark.parametrize("preset", list(PRESET_KEYS))
def test_presets_follow_their_authors_where_the_audit_found_them_apart(compose_config, preset):
    from omegaconf import OmegaConf

    cfg = compose_config(f"+experiment={preset}")
    for key, value in PRESET_KEYS[preset].items():
        found = OmegaConf.select(cfg, key)
        found = OmegaConf.to_container(found) if OmegaConf.is_config(found) else found
        assert found == value, (key, found)
