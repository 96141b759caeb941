"""The run's schema: ``TrainConfig`` composes every group's schema, and ``register_configs`` puts the
schemas, and every registered method's and dataset's, in Hydra's ConfigStore.

The schemas fix the keys and their types, so a typo (``sparsty=0.5``), a wrong type (``epochs=abc``) or an unknown
enum value is rejected at composition time; ``checks.validate`` adds the checks that need values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ..data.catalog import DATASETS
from ..data.schemas import DatasetConfig
from ..loggers.schemas import WandbConfig
from ..methods.catalog import METHODS
from ..methods.schemas import MethodConfig
from ..models.schemas import CustomModelConfig, HFModelConfig, ModelConfig, TorchvisionModelConfig
from ..registry import load_plugins
from ..tasks.schemas import TaskConfig
from ..training.schemas import AdamConfig, AdamWConfig, BertAdamConfig, EarlyStopConfig, SGDConfig, ScheduleConfig


class Device(enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class StepGraph(enum.Enum):
    auto = "auto"  # captured on CUDA where safe, eager elsewhere
    on = "on"  # always captured (off CUDA: recorded ops, which check that the step can be captured)
    off = "off"


@dataclass
class FinetuneConfig:
    """Which parameters the optimizer trains, and how far training moves each one (L0-close fine-tuning)."""

    trainable: list[str] = field(default_factory=lambda: ["*"])  # parameters trained (fnmatch, re:, head); rest frozen
    drift: str = "auto"  # per-tensor distance from the start in summary.json: auto (with init_from) | true | false
    rank_from: Optional[str] = None  # L0-close mode: a finished run directory whose drift table ranks the layers
    top_layers: int = 0  # with rank_from: also train this many layers, those that moved most there


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: Any = MISSING
    schedule: ScheduleConfig = MISSING
    method: MethodConfig = MISSING
    name: str = "default"  # experiment name: sweeps go to multirun/<name>/<overrides>
    sparsity: float = 0.0  # fraction of zeros over the prunable weights, in [0, 1) (ignored by dense)
    seed: int = 0  # seeds initialisation, data order, augmentation and every method's randomness
    epochs: int = 20  # training length in epochs ...
    steps: Optional[int] = None  # ... or in optimizer steps (overrides epochs when set)
    batch_size: int = 64  # training batch (the global batch under torchrun)
    eval_batch_size: int = 1000  # evaluation batch
    label_smoothing: float = 0.0  # training loss only; evaluation is plain cross-entropy
    device: Device = Device.auto  # auto (CUDA when present) | cpu | cuda
    precision: Precision = Precision.fp32  # fp32 | bf16 (autocast)
    channels_last: bool = True  # conv nets in channels_last memory format (CUDA only)
    compile: bool = False  # torch.compile the model for the training step
    step_graph: StepGraph = StepGraph.auto  # auto (CUDA graphs on CUDA where safe) | on | off (eager)
    deterministic: bool = False  # torch.use_deterministic_algorithms (CPU runs are deterministic regardless)
    resume: Optional[str] = None  # null | auto (the checkpoint in hydra.run.dir) | <run dir>
    eval_every: str = "1ep"  # evaluation cadence: 2ep, 500it, or 0 (only at the end)
    checkpoint_every: str = "1ep"  # checkpoint cadence, same units (the end is always checkpointed)
    tensorboard: bool = False  # also log every metric to <run dir>/tb (needs the tb extra)
    task: TaskConfig = field(default_factory=TaskConfig)  # loss, metrics, "best"; distillation
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # trainable parameters; distance from the start
    init_from: Optional[str] = None  # start from trained weights (and masks): checkpoint, run dir or safetensors
    requires: list[str] = field(default_factory=list)  # keys a preset needs from the command line (refused while null)
    train_multiplier: float = 1.0  # extended training: stretches the length and every schedule point
    stretch_warmup: bool = False  # train_multiplier stretches the learning-rate warm-up too (AC/DC's ep200 configs keep theirs)
    log_every: str = "50it"  # running train loss, lr, sparsity, pace: bar, log line, train_step event; 0 = never
    threads: Optional[int] = None  # torch CPU threads (default: OMP_NUM_THREADS, else the CPUs this process may use)
    logger: list[str] = field(default_factory=lambda: ["jsonl"])  # any of jsonl, csv, tensorboard, wandb
    wandb: WandbConfig = field(default_factory=WandbConfig)
    keep_checkpoint_every: str = "0"  # also keep the checkpoint at these points (checkpoints/step_*.pt); 0 = never
    masks_at: list[int] = field(default_factory=list)  # also save the masks after these steps (masks/step_<N>.safetensors: init_from or method.mask_from take them)
    keep_checkpoints: Optional[int] = None  # only the newest N of checkpoints/step_*.pt stay (best and last always); null = all
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)  # stop when the headline metric stops improving
    retry_failed: bool = False  # a re-run sweep runs jobs recorded as failed or diverged again


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore: ``base_<name>`` nodes that the group files extend, and one option per
    registered method and dataset (``method=rigl``: the record's schema with its defaults); the user's plugins
    register theirs first."""
    load_plugins()
    store = ConfigStore.instance()
    store.store(name="base_train", node=TrainConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="model", name="base_torchvision_model", node=TorchvisionModelConfig)
    store.store(group="model", name="base_custom_model", node=CustomModelConfig)
    store.store(group="model", name="base_hf_model", node=HFModelConfig)
    store.store(group="optimizer", name="base_sgd", node=SGDConfig)
    store.store(group="optimizer", name="base_adam", node=AdamConfig)
    store.store(group="optimizer", name="base_adamw", node=AdamWConfig)
    store.store(group="optimizer", name="base_bertadam", node=BertAdamConfig)
    store.store(group="schedule", name="base_schedule", node=ScheduleConfig)
    for registry in (METHODS, DATASETS):
        for record in registry.records():
            store.store(group=registry.group, name=record.name, node=record.schema(name=record.name))
