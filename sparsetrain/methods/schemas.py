"""The ``method`` group's schemas (torch-free): options every method shares, and each method's own.

A schema's field defaults are the method's defaults; ``catalog.py`` pairs each method with its schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from omegaconf import MISSING


@dataclass
class MethodConfig:
    name: str = MISSING  # the method (set by the method= option)


@dataclass
class PatternConfig:
    """The shape of the zeros (see sparsetrain/sparsity/patterns.py)."""

    name: str = "unstructured"  # unstructured | nm (n of every m inputs) | block (tiles) | fanin (constant fan-in) | channel (whole outputs)
    n: int = 2  # nm: weights kept in every group of m
    m: int = 4  # nm: consecutive inputs per group (a convolution's input channels)
    block: list[int] = field(default_factory=lambda: [4, 4])  # block: tile of (outputs, inputs)
    fallback: str = "refuse"  # a layer the pattern cannot take: refuse (the run, naming it) | dense (kept dense, listed)


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
    pattern: PatternConfig = field(default_factory=PatternConfig)  # the shape of the zeros (method.pattern.name=nm ...)


@dataclass
class StaticConfig(MaskedConfig):
    mask_from: Optional[str] = None  # a masks .safetensors file or a run directory (its masks/final.safetensors)
    uniform_dense_first: bool = True  # distribution=uniform keeps the first layer dense (RigL paper and code)


@dataclass
class PrunedConfig(MaskedConfig):
    scope: str = "layerwise"  # layerwise (per-layer targets from `distribution`) | global (one threshold)


@dataclass
class CriterionConfig(PrunedConfig):
    """The pruning criterion (see sparsetrain/methods/criteria.py); the obs options are the oBERT authors' defaults."""

    criterion: str = "magnitude"  # magnitude (|w|) | obs (oBERT: second-order saliency and OBS update, block Fisher)
    num_grads: int = 1024  # obs: gradients in the empirical Fisher (m)
    fisher_block_size: int = 50  # obs: consecutive weights per Fisher block (B)
    fisher_damp: float = 1.0e-7  # obs: dampening (λ)
    grad_batch_size: Optional[int] = None  # obs: samples per gradient, dividing batch_size (null: batch_size; oBERT's GLUE: 16)


@dataclass
class GMPConfig(CriterionConfig):
    distribution: str = "uniform"
    initial_sparsity: float = 0.0  # sparsity at the first pruning event
    start: str = "0ep"  # first pruning event: epochs (2ep), steps (500it) or percent of training (10%)
    end: str = "75%"  # last pruning event, at which `sparsity` is reached
    frequency: str = "1ep"  # interval between pruning events
    STRETCHED: ClassVar[tuple[str, ...]] = ("start", "end")  # times train_multiplier stretches


@dataclass
class OneShotConfig(CriterionConfig):
    scope: str = "global"
    pretrained: Optional[str] = None  # a run directory, checkpoint or model.safetensors to prune instead of training dense first
    retrain_lr: str = "finetune"  # finetune (constant: the schedule's last-epoch lr) | rewind (the schedule again)
    retrain: bool = True  # false: prune and evaluate, no retraining (the one-shot magnitude baseline of SparseGPT / Wanda)


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
    levels: Optional[int] = None  # pruning rounds after the dense round (null: 7, or with `sparsity` as many as reach it)
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
class SETConfig(DynamicConfig):
    """SET's defaults follow the paper's code: ER densities, zeta = 0.3 at the end of every epoch, no skipped steps."""

    distribution: str = "er"
    decay: str = "constant"
    t_end: float = 1.0
    skip_step_on_update: bool = False
    tie_noise: float = 0.0
    update_at: str = "epoch_end"
    drop_rounding: str = "ceil"


@dataclass
class SNFSConfig(DynamicConfig):
    """sparse_learning's defaults: uniform over every layer (the first included), prune rate 0.5 decaying (cosine) to
    0.005 over training, ceil counts, updates at the end of every epoch, the optimizer's dense momentum kept."""

    distribution: str = "uniform"  # sparse_learning's `constant`: every layer, the first included, at the same density
    uniform_dense_first: bool = False
    alpha: float = 0.5
    alpha_min: float = 0.005
    t_end: float = 1.0
    reset_momentum: bool = False  # the optimizer's momentum stays dense (sparse_learning 1.0 removed its reset)
    skip_step_on_update: bool = False
    tie_noise: float = 0.0
    update_at: str = "epoch_end"
    drop_rounding: str = "ceil"
    first_update: str = "after_delta_t"
    momentum: float = 0.9  # decay of the method's own momentum (momentum_source=own)
    redistribute: str = "momentum"  # momentum (regrowth across layers by mean momentum) | none
    momentum_source: str = "optimizer"  # optimizer (sparse_learning: dense optimizer momentum, Adam: m/(sqrt(v)+eps)) | own (RigL TF baseline)


@dataclass
class ITOPConfig(DynamicConfig):
    """The reference code's defaults (RigL-ITOP, batch 128): prune rate 0.5 with cosine decay to 0.005 over all of
    training, ceil counts, no skipped steps, every layer masked; SET-ITOP: growth=random delta_t=1500."""

    growth: str = "gradient"  # gradient (RigL-ITOP) | random (SET-ITOP)
    uniform_dense_first: bool = False  # the reference masks every layer, the first included
    delta_t: int = 4000
    alpha: float = 0.5
    alpha_min: float = 0.005
    t_end: float = 1.0
    skip_step_on_update: bool = False
    tie_noise: float = 0.0
    drop_rounding: str = "ceil"
    first_update: str = "after_delta_t"  # first update after delta_t optimizer steps (the reference's counter)


@dataclass
class SRigLConfig(DynamicConfig):
    """The authors' defaults (condensed-sparsity, configs/config.yaml): constant fan-in, neuron ablation at
    gamma_sal 0.3 of the sparse fan-in, no tie-break noise, every layer masked."""

    pattern: PatternConfig = field(default_factory=lambda: PatternConfig(name="fanin"))  # fanin only
    gamma_sal: float = 0.3  # ablate a neuron with fewer salient weights than gamma_sal x its fan-in (0: never)
    tie_noise: float = 0.0
    uniform_dense_first: bool = False


@dataclass
class SRSTEConfig(PrunedConfig):
    """The authors' defaults (NM-sparsity, devkit/sparse_ops): 2:4 along the input channels, λ_W 2e-4."""

    pattern: PatternConfig = field(default_factory=lambda: PatternConfig(name="nm"))  # nm n:m (sparsity from n/m), or a pattern with `sparsity`
    distribution: str = "uniform"  # per-layer targets for a pattern other than nm
    decay: float = 2e-4  # λ_W: the sparse-refined decay of the pruned weights' straight-through gradient (0: STE)


@dataclass
class CalibratedConfig(PrunedConfig):
    """One-shot pruning of a trained model from calibration samples, layer by layer (SparseGPT, Wanda)."""

    distribution: str = "uniform"  # every prunable layer at `sparsity` (the authors')
    n_samples: int = 128  # calibration samples: the first of the training data in the seeded order of epoch 0


@dataclass
class SparseGPTConfig(CalibratedConfig):
    """The authors' defaults (IST-DASLab/sparsegpt): lazy batches of 128 columns, dampening 1 % of the mean diagonal."""

    blocksize: int = 128  # columns per lazy batch (and per adaptive mask selection)
    damp: float = 0.01  # added to H's diagonal, as a fraction of its mean


@dataclass
class WandaConfig(CalibratedConfig):
    compare: str = "row"  # row (every output row keeps the same count, the authors') | layer (one ranking per layer)


@dataclass
class MaskTrainingConfig(MaskedConfig):
    """Learned masks on frozen starting weights (see sparsetrain/methods/mask_training.py); TAMT's defaults except
    ``score_lr`` and ``reset_every``, set for the default run (SGD, 440 steps); the presets give the authors' values."""

    distribution: str = "uniform"
    binarizer: str = "threshold"  # threshold (M = scores > tau, TAMT) | topk (exact top-k, edge-popup)
    scope: str = "layerwise"  # topk: layerwise (counts from `distribution`) | global (one ranking over the budget)
    threshold: float = 0.01  # tau: the threshold binariser's starting threshold (OMP/kept scores are 2 tau or 0)
    reset_every: int = 100  # threshold: steps between resets to each layer's exact zeros (and at the end); 0 = never (TAMT: 1000 MLM, 100 KD)
    reset_at: list[int] = field(default_factory=list)  # threshold: also reset after these steps (TAMT's KD path: [1])
    init: str = "omp"  # omp (largest magnitudes kept) | random (exact counts) | kept (dense start) | uniform (|U(-b, b)|, topk) | signed (U(-b, b), edge-popup's)
    rank: str = "value"  # topk: rank the scores by value | abs (edge-popup's GetSubnet on |s|; the scores' gradient takes sign(s))
    score_lr: float = 1.0  # peak learning rate of the scores (the run's optimizer type and schedule); TAMT (AdamW): 5e-5
    score_weight_decay: float = 0.0  # weight decay of the scores
    tied_weights: str = "masked"  # a module sharing a masked weight (a tied MLM decoder) reads W0 ⊙ M | unmasked: W0


@dataclass
class MovementConfig(PrunedConfig):
    """Movement pruning (see sparsetrain/methods/movement.py); the authors' defaults (masked_run_glue.py, README),
    the warm-ups as their share of the authors' SQuAD run (5,400 and 10,800 of about 55,000 steps)."""

    distribution: str = "uniform"  # topk: every prunable layer at the scheduled sparsity (the authors')
    binarizer: str = "topk"  # topk (hard movement: top scores per layer) | sigmoid_threshold (soft movement: sigmoid(S) > tau, L1 regulariser)
    initial_sparsity: float = 0.0  # topk: sparsity during the initial warm-up (the authors' initial_threshold 1 = all kept)
    initial_threshold: float = 0.0  # sigmoid_threshold: tau during the initial warm-up
    threshold: float = 0.1  # sigmoid_threshold: final tau (the authors' final_threshold)
    final_lambda: float = 400.0  # sigmoid_threshold: lambda of the L1 regulariser at the final tau (lambda_t = final_lambda * tau_t / tau)
    initial_warmup: str = "10%"  # steps at the initial value before the cubic ramp: epochs (1ep), steps (5400it) or percent
    final_warmup: str = "20%"  # steps at the final value at the end of the run
    mask_init: str = "constant"  # constant (mask_scale) | uniform (U(-mask_scale, mask_scale)) | kaiming (U(-b, b), b = 1/sqrt(fan_in))
    mask_scale: float = 0.0  # the scores' initial value (constant) or bound (uniform)
    score_lr: float = 1e-2  # peak learning rate of the scores (the run's optimizer type and schedule; the authors' mask_scores_learning_rate)
    score_weight_decay: float = 0.0  # weight decay of the scores (the authors': none)
    STRETCHED: ClassVar[tuple[str, ...]] = ("initial_warmup", "final_warmup")  # times train_multiplier stretches


@dataclass
class ACDCConfig(PrunedConfig):
    """AC/DC phase lengths in epochs (see sparsetrain/sparsity/phases.py); null: the ImageNet schedule's share of the
    run (10 / 5 / 5 / 15 of 100 epochs), so the defaults fit any length."""

    scope: str = "global"  # global (one magnitude threshold, the authors') | layerwise
    distribution: str = "uniform"  # per-layer targets with scope=layerwise
    warmup_epochs: Optional[int] = None  # dense warm-up (null: 10 % of the run)
    compressed_epochs: Optional[int] = None  # each compressed phase of a cycle (null: 5 %, at least 1)
    decompressed_epochs: Optional[int] = None  # each decompressed phase of a cycle (null: 5 %, at least 1)
    final_epochs: Optional[int] = None  # the final compressed phase (null: 15 %, at least 1)
    reset_momentum: bool = True  # zero every parameter's optimizer buffers at each decompression (the authors')


@dataclass
class GaPConfig(PrunedConfig):
    """Scheduled grow-and-prune (see sparsetrain/methods/gap.py); each GaP step trains the run's length."""

    distribution: str = "uniform"  # uniform (the authors' per-layer "irregular") | erk (non-uniform)
    mode: str = "cyclic"  # cyclic (C-GaP) | parallel (P-GaP: k replicas, in turn, or one per torchrun process)
    combine: str = "block"  # parallel: every tensor from the replica owning its block (the authors') | average (outside the partitions)
    num_partitions: int = 3  # k contiguous groups of layers balanced by parameter count ...
    partitions: list[str] = field(default_factory=list)  # ... or one entry per partition: "pattern|pattern"
    rounds: int = 2  # cycles over all partitions
    finetune: str = "400%"  # final fine-tuning: epochs, steps or percent of a GaP step (the authors: 40 of 10)
    STRETCHED: ClassVar[tuple[str, ...]] = ("finetune",)
