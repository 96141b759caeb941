"""Typed config schemas (registered in Hydra's ConfigStore) and the range checks Hydra cannot do.

The YAML files under ``configs/`` hold the option values; these dataclasses fix the keys and their types,
so a typo (``sparsty=0.5``), a wrong type (``epochs=abc``) or an unknown enum value is rejected at
composition time. ``validate`` adds the checks that need values (ranges, consistency between keys).
"""

from __future__ import annotations

import enum
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A bad value in the composed config; its message is one line naming the key and a valid example."""


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
    source: str = "torchvision"  # model.name: any torchvision classification model; random init, no download


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
    head: str = "auto"  # auto (masked_lm for task masked_lm, else sequence_classification) | sequence_classification | masked_lm
    prunable: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFORMER_PRUNABLE))  # weights pruned when method.include is empty (fnmatch, re:)


@dataclass
class DatasetConfig:
    name: str = MISSING  # the dataset (set by the dataset= option)
    root: str = "data"  # where the data is (or is downloaded to)
    download: bool = True  # download when missing (torchvision datasets)
    val_size: int = 0  # training examples held out as a validation split (0: none; "best" then uses test)
    augment: bool = True  # the dataset's standard training augmentation
    num_workers: int = 8  # imagefolder: data-loading worker processes
    image_size: int = 224  # imagefolder and synthetic: image side in pixels
    channels: int = 3  # synthetic
    num_classes: int = 10  # synthetic
    train_size: int = 50000  # synthetic
    test_size: int = 10000  # synthetic


@dataclass
class ImageFolderConfig(DatasetConfig):
    train_dir: str = "train"  # dataset.root/<train_dir>/<class>/*.jpg
    test_dir: str = "val"  # the test split (ImageNet's val/)


@dataclass
class UserDatasetConfig(DatasetConfig):
    resident_mb: int = 1024  # a training set whose inputs fit stays on the device; larger: DataLoader workers


@dataclass
class CustomDatasetConfig(UserDatasetConfig):
    name: str = "custom"
    _target_: str = MISSING  # import path of a factory returning (train, test[, val]) Datasets; added keys reach it


@dataclass
class TensorFilesConfig(UserDatasetConfig):
    name: str = "tensors"
    train_file: Optional[str] = None  # .npz (arrays x, y) or .pt ({"x": ..., "y": ...})
    test_file: Optional[str] = None  # the test split, same formats
    val_file: Optional[str] = None  # optional; else dataset.val_size holds out part of train


@dataclass
class GlueConfig(DatasetConfig):
    name: str = "glue"
    task: str = "sst2"  # cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli
    tokenizer: Optional[str] = None  # hub name or directory of the tokenizer (the yaml: ${model.name_or_path})
    max_seq_length: int = 128  # longer inputs are truncated
    padding: str = "fixed"  # fixed (to max_seq_length: static shapes, capturable step) | dynamic (each batch to its longest: eager step)
    cache_dir: Optional[str] = None  # tokenised splits are cached here (null: <root>/.sparsetrain_cache)


@dataclass
class TextConfig(DatasetConfig):
    name: str = "text"
    train_file: Optional[str] = None  # plain text, one document (or line) per line, for masked-LM training
    test_file: Optional[str] = None  # the evaluation text; without it dataset.val_size blocks of train are held out
    tokenizer: Optional[str] = None  # hub name or directory of the tokenizer (the yaml: ${model.name_or_path})
    max_seq_length: int = 128  # tokens per block, [CLS] and [SEP] included
    mlm_probability: float = 0.15  # share of non-special tokens selected (80 % [MASK], 10 % random, 10 % kept)
    cache_dir: Optional[str] = None  # tokenised blocks are cached here (null: .sparsetrain_cache next to train_file)


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.1  # peak learning rate (the schedule scales it)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 penalty (added to the gradient)
    exempt_bias_norm: bool = False  # true: no weight decay on biases and normalisation parameters


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3  # peak learning rate (the schedule scales it)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # running-average coefficients
    eps: float = 1e-8  # added to the denominator
    weight_decay: float = 0.0  # Adam: L2 penalty in the gradient; AdamW: decoupled decay
    exempt_bias_norm: bool = False  # true: no weight decay on biases and normalisation parameters


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class ScheduleConfig:
    """Learning-rate factor as a function of the step; see ``train/schedule.py``."""

    name: str = MISSING  # constant | cosine | linear | multistep (set by the schedule= option)
    warmup_epochs: float = 0.0  # linear warm-up from 0 over these epochs (any schedule)
    milestones: list[float] = field(default_factory=list)  # multistep: epochs at which the rate is multiplied by gamma
    gamma: float = 0.1  # multistep: the factor at each milestone
    final_lr_fraction: float = 0.0  # cosine and linear: the rate at the end, as a fraction of lr
    cycle_epochs: float = 0.0  # cyclic_linear: epochs per cycle (the pruning interval for LR rewinding)
    cycle_start: float = 0.0  # cyclic_linear: epoch the cycles start at; before it, one linear decay


@dataclass
class MethodConfig:
    name: str = MISSING  # the method (set by the method= option)


@dataclass
class MaskedConfig(MethodConfig):
    """Options every method with masks shares (see sparsetrain/sparsity)."""

    distribution: str = "erk"  # uniform | er | erk: how `sparsity` is spread over the layers
    erk_power: float = 1.0  # erk: exponent of the layer-size scaling (1 = ERK as published)
    dense_layers: list[str] = field(default_factory=list)  # names, fnmatch patterns, or first / last
    layer_density: list[str] = field(default_factory=list)  # "pattern:density" entries, fixed densities
    modules: list[str] = field(default_factory=lambda: ["linear", "conv"])  # prunable module types (+ embedding)
    include: list[str] = field(default_factory=list)  # only these prunable weights (fnmatch, re:regex, first, last); empty: model.prunable if set, else all
    exclude: list[str] = field(default_factory=list)  # never these


@dataclass
class StaticConfig(MaskedConfig):
    mask_from: Optional[str] = None  # a masks .safetensors file or a run directory (its masks/final.safetensors)
    uniform_dense_first: bool = True  # distribution=uniform keeps the first layer dense (RigL paper and code)


@dataclass
class PrunedConfig(MaskedConfig):
    scope: str = "layerwise"  # layerwise (per-layer targets from `distribution`) | global (one threshold)


@dataclass
class GMPConfig(PrunedConfig):
    distribution: str = "uniform"
    initial_sparsity: float = 0.0  # sparsity at the first pruning event
    start: str = "0ep"  # first pruning event: epochs (2ep), steps (500it) or percent of training (10%)
    end: str = "75%"  # last pruning event, at which `sparsity` is reached
    frequency: str = "1ep"  # interval between pruning events
    STRETCHED: ClassVar[tuple[str, ...]] = ("start", "end")  # times train_multiplier stretches


@dataclass
class OneShotConfig(PrunedConfig):
    scope: str = "global"
    pretrained: Optional[str] = None  # a run directory, checkpoint or model.safetensors to prune instead of training dense first
    retrain_lr: str = "finetune"  # finetune (constant: the schedule's last-epoch lr) | rewind (the schedule again)


@dataclass
class SaliencyConfig(PrunedConfig):
    scope: str = "global"
    num_batches: int = 1  # training batches the scores are computed on


@dataclass
class GraSPConfig(SaliencyConfig):
    temperature: float = 200.0  # softmax temperature of the logits in the gradient-flow score
    samples_per_class: int = 10  # class-balanced scoring sample, as the reference (0: num_batches batches)


@dataclass
class SynFlowConfig(PrunedConfig):
    scope: str = "global"
    iterations: int = 100  # pruning rounds on the exponential schedule


@dataclass
class LTHConfig(PrunedConfig):
    levels: int = 7  # pruning rounds after the dense round
    prune_rate: float = 0.2  # fraction of the surviving weights removed per round
    layer_rates: list[str] = field(default_factory=list)  # "pattern:rate" overrides, e.g. [last:0.1]
    rewind_to: str = "0it"  # theta_k: 0it = the initialisation, or a step/epoch of the dense run (500it, 2ep)
    rewind: str = "weights"  # weights (to theta_k) | lr (keep weights, replay the lr schedule from k) | finetune
    control: str = "none"  # none | random_reinit | random_mask (needs masks_from)
    masks_from: Optional[str] = None  # a finished lottery run, for the controls


@dataclass
class DynamicConfig(MaskedConfig):
    """Dynamic sparse training (see sparsetrain/methods/dynamic.py); defaults are RigL's reference values."""

    delta_t: int = 100  # steps between mask updates (with update_at=step)
    alpha: float = 0.3  # fraction of active weights dropped (and regrown) at step 0
    alpha_min: float = 0.0  # the fraction decays to this at t_end
    decay: str = "cosine"  # cosine | linear | constant
    t_end: float = 0.75  # fraction of training after which the mask is fixed
    grow_init: str = "zeros"  # value of new connections
    reset_momentum: bool = True  # optimizer state of new (and pruned) connections is 0
    skip_step_on_update: bool = True  # RigL's reference code takes no optimizer step on an update iteration
    tie_noise: float = 1e-5  # std of the seeded noise added to drop scores; 0: ties broken by position
    update_at: str = "step"  # step (every delta_t steps) | epoch_end (at the last step of every epoch)
    drop_rounding: str = "floor"  # floor (RigL) | ceil (SET/ITOP) of fraction x active
    first_update: str = "start"  # start (step 0, RigL TF) | after_delta_t (after delta_t steps: ITOP, sparse_learning)
    uniform_dense_first: bool = True  # distribution=uniform keeps the first layer dense (RigL paper and code)


@dataclass
class SNFSConfig(DynamicConfig):
    momentum: float = 0.9  # smoothing of the dense-gradient momentum used for growth
    redistribute: str = "momentum"  # momentum | none
    momentum_source: str = "optimizer"  # optimizer (sparse_learning: dense optimizer momentum) | own (RigL TF baseline)


@dataclass
class ITOPConfig(DynamicConfig):
    growth: str = "gradient"  # gradient (RigL-ITOP) | random (SET-ITOP)


@dataclass
class MaskTrainingConfig(MaskedConfig):
    """Learned masks on frozen starting weights (see sparsetrain/methods/mask_training.py); TAMT's defaults."""

    distribution: str = "uniform"
    binarizer: str = "threshold"  # threshold (M = scores > tau, TAMT) | topk (exact top-k, edge-popup)
    scope: str = "layerwise"  # topk: layerwise (counts from `distribution`) | global (one ranking over the budget)
    threshold: float = 0.01  # tau: the threshold binariser's starting threshold (OMP/kept scores are 2 tau or 0)
    reset_every: int = 1000  # threshold: steps between resets to each layer's exact zeros (and at the end); 0 = never
    reset_at: list[int] = field(default_factory=list)  # threshold: also reset after these steps (TAMT's KD path: [1])
    init: str = "omp"  # omp (largest magnitudes kept) | random (exact counts) | kept (dense start) | uniform (topk)
    score_lr: float = 5e-5  # peak learning rate of the scores (the run's optimizer type and schedule)
    score_weight_decay: float = 0.0  # weight decay of the scores
    tied_weights: str = "masked"  # a module sharing a masked weight (a tied MLM decoder) reads W0 ⊙ M | unmasked: W0


@dataclass
class DistillConfig:
    """Knowledge distillation from a frozen teacher (sparsetrain/tasks/distill.py); off without a teacher."""

    teacher: Optional[str] = None  # a finished run directory (its model and final weights), or self (the starting model)
    teacher_target: Optional[str] = None  # or the import path of a factory returning the teacher (weights loaded)
    temperature: float = 2.0  # softmax temperature of teacher and student logits
    hardness: float = 1.0  # the logit KL weighs hardness, the task's own loss 1 - hardness (also without logits)
    logits: bool = True  # distil the class logits (KL at `temperature`); false: hidden states only
    hidden_weight: float = 0.0  # weight of the hidden-state loss (TAMT: mean over layers of 1 - cosine; 0: off)


@dataclass
class FinetuneConfig:
    """Which parameters the optimizer trains, and how far training moves each one (L0-close fine-tuning)."""

    trainable: list[str] = field(default_factory=lambda: ["*"])  # parameters trained (fnmatch, re:, head); rest frozen
    drift: str = "auto"  # per-tensor distance from the start in summary.json: auto (with init_from) | true | false
    rank_from: Optional[str] = None  # L0-close mode: a finished run directory whose drift table ranks the layers
    top_layers: int = 0  # with rank_from: also train this many layers, those that moved most there


@dataclass
class TaskConfig:
    name: str = "auto"  # auto (the data's task: sequence_classification for glue, masked_lm for text, else image_classification) | image_classification | sequence_classification | masked_lm
    distill: DistillConfig = field(default_factory=DistillConfig)  # knowledge distillation (off without a teacher)
    metric: Optional[str] = None  # the "best" metric; default the data's (GLUE: its headline) | top1 | accuracy (pearson for regression) | loss (mlm)


@dataclass
class ACDCConfig(PrunedConfig):
    """AC/DC phase lengths in epochs (see sparsetrain/sparsity/phases.py); defaults: the ImageNet schedule."""

    scope: str = "global"
    warmup_epochs: int = 10  # dense warm-up
    compressed_epochs: int = 5  # each compressed phase of a cycle
    decompressed_epochs: int = 5  # each decompressed phase of a cycle
    final_epochs: int = 15  # the final compressed phase
    reset_momentum: bool = True  # zero the optimizer buffers of the prunable weights at each decompression


@dataclass
class GaPConfig(PrunedConfig):
    """Scheduled grow-and-prune (see sparsetrain/methods/gap.py); each GaP step trains the run's length."""

    distribution: str = "uniform"  # uniform (the authors' per-layer "irregular") | erk (non-uniform)
    mode: str = "cyclic"  # cyclic (C-GaP) | parallel (P-GaP: k replicas, in turn, or one per torchrun process)
    num_partitions: int = 3  # k contiguous groups of layers balanced by parameter count ...
    partitions: list[str] = field(default_factory=list)  # ... or one entry per partition: "pattern|pattern"
    rounds: int = 2  # cycles over all partitions
    finetune: str = "400%"  # final fine-tuning: epochs, steps or percent of a GaP step (the authors: 40 of 10)
    STRETCHED: ClassVar[tuple[str, ...]] = ("finetune",)


@dataclass
class WandbConfig:
    """Weights & Biases (``logger=[jsonl,wandb]``, needs ``pip install wandb``)."""

    project: str = "sparsetrain"  # W&B project
    entity: Optional[str] = None  # W&B team or user (default: yours)
    mode: str = "offline"  # offline (files under <run dir>/wandb, no network; `wandb sync` later) | online


LOGGERS = ("jsonl", "csv", "tensorboard", "wandb")
LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "sparsetrain[tb]"), "wandb": ("wandb", "sparsetrain[wandb]")}


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
    log_every: str = "50it"  # running train loss, lr, sparsity, pace: bar, log line, train_step event; 0 = never
    threads: Optional[int] = None  # torch CPU threads (default: OMP_NUM_THREADS, else the CPUs this process may use)
    logger: list[str] = field(default_factory=lambda: ["jsonl"])  # any of jsonl, csv, tensorboard, wandb
    wandb: WandbConfig = field(default_factory=WandbConfig)
    keep_checkpoint_every: str = "0"  # also keep the checkpoint at these points (checkpoints/step_*.pt); 0 = never
    retry_failed: bool = False  # a re-run sweep runs jobs recorded as failed or diverged again


def register_configs() -> None:
    """Register the schemas; group files extend them via ``defaults: [base_<group>]``."""
    store = ConfigStore.instance()
    store.store(name="base_train", node=TrainConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="model", name="base_torchvision_model", node=TorchvisionModelConfig)
    store.store(group="model", name="base_custom_model", node=CustomModelConfig)
    store.store(group="model", name="base_hf_model", node=HFModelConfig)
    store.store(group="dataset", name="base_dataset", node=DatasetConfig)
    store.store(group="dataset", name="base_imagefolder", node=ImageFolderConfig)
    store.store(group="dataset", name="base_custom_dataset", node=CustomDatasetConfig)
    store.store(group="dataset", name="base_tensor_files", node=TensorFilesConfig)
    store.store(group="dataset", name="base_glue", node=GlueConfig)
    store.store(group="dataset", name="base_text", node=TextConfig)
    store.store(group="optimizer", name="base_sgd", node=SGDConfig)
    store.store(group="optimizer", name="base_adam", node=AdamConfig)
    store.store(group="optimizer", name="base_adamw", node=AdamWConfig)
    store.store(group="schedule", name="base_schedule", node=ScheduleConfig)
    store.store(group="method", name="base_method", node=MethodConfig)
    for name, node in (("static", StaticConfig), ("gmp", GMPConfig), ("oneshot", OneShotConfig),
                       ("snip", SaliencyConfig), ("grasp", GraSPConfig), ("synflow", SynFlowConfig),
                       ("lth", LTHConfig), ("rigl", DynamicConfig), ("set", DynamicConfig), ("snfs", SNFSConfig), ("itop", ITOPConfig),
                       ("mask_training", MaskTrainingConfig),
                       ("acdc", ACDCConfig), ("gap", GaPConfig)):
        store.store(group="method", name=f"base_{name}", node=node)


@dataclass(frozen=True)
class Interval:
    """A cadence or time in epochs (``'2ep'``, or a bare number), optimizer steps (``'500it'``) or percent of
    the training steps (``'75%'``, where allowed); a cadence of 0 means never."""

    count: int
    unit: str  # "ep" | "it" | "%"

    def steps(self, steps_per_epoch: int, total_steps: int) -> int:
        """The interval in optimizer steps."""
        if self.unit == "ep":
            return self.count * steps_per_epoch
        if self.unit == "%":
            return round(self.count * total_steps / 100)
        return self.count

    def due(self, *, step: int, epoch_end: Optional[int]) -> bool:
        """True at step ``step`` (1-based, after it ran) or at the end of epoch ``epoch_end`` (1-based)."""
        if self.count == 0:
            return False
        if self.unit == "it":
            return epoch_end is None and step % self.count == 0
        return epoch_end is not None and epoch_end % self.count == 0


_INTERVAL = re.compile(r"^\s*(\d+)\s*(ep|it|%)?\s*$")


def parse_interval(key: str, text: str, allow_percent: bool = False) -> Interval:
    match = _INTERVAL.match(str(text))
    if match is None or (match.group(2) == "%" and not allow_percent):
        units = "epochs, steps or percent of training" if allow_percent else "epochs or steps"
        raise ConfigError(f"{key}={text!r} is not an interval; use {units}, e.g. {key}=2ep or {key}=500it")
    return Interval(int(match.group(1)), match.group(2) or "ep")


SCHEDULES = ("constant", "cosine", "linear", "multistep", "cyclic_linear")


def validate(cfg: Any) -> None:
    """Range and consistency checks on a composed config; raises ConfigError with a one-line message."""
    checks = [
        (0.0 <= cfg.sparsity < 1.0, "sparsity", "must be in [0, 1) (the fraction of zeros)", "sparsity=0.9"),
        (cfg.epochs >= 1, "epochs", "must be a positive integer", "epochs=10"),
        (cfg.train_multiplier > 0, "train_multiplier", "must be positive", "train_multiplier=2"),
        (cfg.steps is None or cfg.steps >= 1, "steps", "must be a positive integer or null", "steps=50000"),
        (cfg.batch_size >= 1, "batch_size", "must be a positive integer", "batch_size=128"),
        (cfg.eval_batch_size >= 1, "eval_batch_size", "must be a positive integer", "eval_batch_size=1000"),
        (0.0 <= cfg.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)", "label_smoothing=0.1"),
        (cfg.dataset.val_size >= 0, "dataset.val_size", "must be >= 0", "dataset.val_size=5000"),
        (cfg.dataset.num_workers >= 0, "dataset.num_workers", "must be >= 0", "dataset.num_workers=8"),
        (cfg.optimizer.lr > 0, "optimizer.lr", "must be positive", "optimizer.lr=0.1"),
        (cfg.schedule.name in SCHEDULES, "schedule.name", f"must be one of {', '.join(SCHEDULES)}",
         "schedule=cosine"),
        (cfg.schedule.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0", "schedule.warmup_epochs=5"),
        (list(cfg.schedule.milestones) == sorted(cfg.schedule.milestones), "schedule.milestones",
         "must be increasing epochs", "schedule.milestones=[80,120]"),
        (cfg.schedule.name != "multistep" or len(cfg.schedule.milestones) > 0, "schedule.milestones",
         "needs at least one epoch with schedule=multistep", "schedule.milestones=[80,120]"),
        (cfg.schedule.name != "cyclic_linear" or cfg.schedule.cycle_epochs > 0, "schedule.cycle_epochs",
         "must be positive with schedule=cyclic_linear", "schedule.cycle_epochs=4"),
        (cfg.schedule.cycle_start >= 0, "schedule.cycle_start", "must be >= 0", "schedule.cycle_start=2"),
        (0.0 <= cfg.model.dropout < 1.0, "model.dropout", "must be in [0, 1)", "model.dropout=0.3"),
        (cfg.dataset.image_size >= 8, "dataset.image_size", "must be >= 8", "dataset.image_size=32"),
        (cfg.dataset.channels >= 1, "dataset.channels", "must be >= 1", "dataset.channels=3"),
        (cfg.dataset.num_classes >= 2, "dataset.num_classes", "must be >= 2", "dataset.num_classes=10"),
        (cfg.dataset.train_size >= 1, "dataset.train_size", "must be >= 1", "dataset.train_size=50000"),
        (cfg.dataset.test_size >= 1, "dataset.test_size", "must be >= 1", "dataset.test_size=10000"),
    ]
    checks += _limits(cfg)
    for ok, key, rule, example in checks:
        if not ok:
            raise ConfigError(f"{key}={_show(cfg, key)} {rule}; e.g. {example}")
    if cfg.compile and cfg.step_graph == StepGraph.on:
        raise ConfigError("step_graph=on cannot be combined with compile=true (torch.compile has its own graphs); "
                          "e.g. step_graph=auto compile=true")
    parse_interval("eval_every", cfg.eval_every)
    parse_interval("checkpoint_every", cfg.checkpoint_every)
    if parse_interval("log_every", cfg.log_every).unit == "ep" and str(cfg.log_every).strip() != "0":
        raise ConfigError(f"log_every={cfg.log_every!r} must be in steps (epochs have their own line); "
                          "e.g. log_every=100it")
    parse_interval("keep_checkpoint_every", cfg.keep_checkpoint_every)
    _validate_daily_use(cfg)
    _validate_finetune(cfg.finetune)


def _validate_finetune(finetune: Any) -> None:
    """The finetune section's values and combinations (the patterns are checked against the model at build)."""
    if str(finetune.drift).lower() not in ("auto", "true", "false"):
        raise ConfigError(f"finetune.drift={finetune.drift!r} must be auto, true or false; e.g. finetune.drift=true")
    if finetune.top_layers < 0:
        raise ConfigError(f"finetune.top_layers={finetune.top_layers} must be >= 0; e.g. finetune.top_layers=2")
    if finetune.top_layers and not finetune.rank_from:
        raise ConfigError(f"finetune.top_layers={finetune.top_layers} needs the run that ranks the layers; "
                          "e.g. finetune.rank_from=<run dir with a drift table> finetune.top_layers=2")
    if finetune.rank_from and not finetune.top_layers:
        raise ConfigError("finetune.rank_from needs how many of its top layers to train; e.g. finetune.top_layers=2")
    if finetune.rank_from and "*" in list(finetune.trainable):
        raise ConfigError("finetune.rank_from trains the top layers plus finetune.trainable, and trainable=['*'] "
                          "trains every parameter; e.g. finetune.trainable=[head]")


def _validate_daily_use(cfg: Any) -> None:
    """Checks of the keys that shape a run's feedback and files, not its result."""
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads} must be a positive integer or null (automatic); e.g. threads=4")
    unknown = [name for name in cfg.logger if name not in LOGGERS]
    if unknown:
        raise ConfigError(f"logger={list(cfg.logger)}: {unknown[0]!r} is not a logger; choose from "
                          f"{', '.join(LOGGERS)}, e.g. logger=[jsonl,csv]")
    for name in [*cfg.logger, *(["tensorboard"] if cfg.tensorboard else [])]:
        package, extra = LOGGER_PACKAGES.get(name, (None, None))
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"logger={list(cfg.logger)}: {name} needs the {package} package "
                              f'(pip install "{extra}"); e.g. logger=[jsonl,csv]')
    if cfg.wandb.mode not in ("offline", "online"):
        raise ConfigError(f"wandb.mode={cfg.wandb.mode!r} must be offline or online; e.g. wandb.mode=offline")


MAX_EPOCHS = 100_000
MAX_STEPS = 10**9
MAX_SYNTHETIC_BYTES = 8 * 2**30  # synthetic images are held in memory (uint8)


def _limits(cfg: Any) -> list[tuple[bool, str, str, str]]:
    """Bounds that keep an absurd value from starting a run or a huge allocation; the optimizer's own ranges."""
    image_bytes = cfg.dataset.channels * cfg.dataset.image_size ** 2
    optimizer = cfg.optimizer
    betas = list(optimizer.get("betas", [0.9, 0.999]))
    return [
        (0 <= cfg.seed < 2**32, "seed", "must be in [0, 2^32)", "seed=0"),
        (cfg.epochs <= MAX_EPOCHS, "epochs", f"is absurd (at most {MAX_EPOCHS})", "epochs=200"),
        (cfg.steps is None or cfg.steps <= MAX_STEPS, "steps", f"is absurd (at most {MAX_STEPS})", "steps=50000"),
        (cfg.dataset.name != "synthetic" or cfg.dataset.train_size * image_bytes <= MAX_SYNTHETIC_BYTES,
         "dataset.train_size", "synthetic images would not fit in 8 GiB", "dataset.train_size=50000"),
        (cfg.dataset.name != "synthetic" or cfg.dataset.test_size * image_bytes <= MAX_SYNTHETIC_BYTES,
         "dataset.test_size", "synthetic images would not fit in 8 GiB", "dataset.test_size=10000"),
        (0.0 <= optimizer.get("momentum", 0.0) < 1.0, "optimizer.momentum", "must be in [0, 1)",
         "optimizer.momentum=0.9"),
        (optimizer.get("weight_decay", 0.0) >= 0, "optimizer.weight_decay", "must be >= 0",
         "optimizer.weight_decay=5e-4"),
        (len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas), "optimizer.betas", "must be two values in [0, 1)",
         "optimizer.betas=[0.9,0.999]"),
        (optimizer.get("eps", 1.0) > 0, "optimizer.eps", "must be positive", "optimizer.eps=1e-8"),
    ]


def _show(cfg: Any, dotted: str) -> str:
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return repr(value) if isinstance(value, str) else str(value)
