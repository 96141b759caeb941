"""The ``model`` group's schemas (torch-free): the zoo's keys, torchvision and custom models, transformers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class ModelConfig:
    name: str = MISSING  # the architecture (set by the model= option)
    depth: Optional[int] = None  # wrn: depth (null: the option's default)
    width: Optional[int] = None  # wrn: widening factor (null: the option's default)
    dropout: float = 0.0  # dropout probability (MLP, LeNet-5, Conv-x, WRN)
    stem: str = "auto"  # ResNet-18/34/50 input stem: auto (by image size) | cifar | imagenet
    init: str = "paper"  # paper (the model's own) | kaiming_normal | glorot_normal | pytorch (module defaults)
    shortcut: str = "auto"  # CIFAR ResNets: auto (= pad, option A) | pad | projection (1x1 conv + BN, OpenLTH)


@dataclass
class TorchvisionModelConfig(ModelConfig):
    source: str = "torchvision"  # model.name: any torchvision classification model
    weights: Optional[str] = None  # a weights name of the model (DEFAULT, IMAGENET1K_V1, ...) from $TORCH_HOME's cache; null: random init


@dataclass
class CustomModelConfig(ModelConfig):
    source: str = "custom"  # the model comes from the factory at _target_
    name: str = "custom"  # a label for the run's outputs
    _target_: str = MISSING  # import path of a factory returning an nn.Module; added keys (+model.x=1) reach it


DEFAULT_TRANSFORMER_PRUNABLE = [  # BERT/RoBERTa encoder matrices: Q, K, V, attention output, intermediate, output
    "*encoder.layer.*.attention.self.query.weight", "*encoder.layer.*.attention.self.key.weight",
    "*encoder.layer.*.attention.self.value.weight", "*encoder.layer.*.attention.output.dense.weight",
    "*encoder.layer.*.intermediate.dense.weight", "*encoder.layer.*.output.dense.weight",
]


@dataclass
class HFModelConfig(ModelConfig):
    source: str = "hf"  # a Hugging Face transformers model (pip install "sparsetrain[nlp]")
    name: str = "hf"  # a label for the run's outputs
    name_or_path: Optional[str] = None  # hub name or local directory of a pretrained model (weights loaded)
    config: Any = None  # random init: {model_type: bert, hidden_size: 64, ...} or a config.json path; with name_or_path: overrides of its config
    head: str = "auto"  # auto (the task's: masked_lm, causal_lm, else sequence_classification) | sequence_classification | masked_lm | causal_lm
    prunable: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFORMER_PRUNABLE))  # weights pruned when method.include is empty (fnmatch, re:)
