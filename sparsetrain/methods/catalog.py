"""Every method the package ships, one record each (torch-free): what ``method=<name>`` selects.

A record pairs the method's class (imported when a run builds it) with its schema, whose defaults are the
method's defaults, and with what ``--help`` and the docs show. A user's package adds its own with the same call:
``sparsetrain.register_method(name=..., schema=..., target=..., summary=...)``.
"""

from __future__ import annotations

from typing import Any

from ..registry import Paper, Record, Registry
from . import papers, schemas

METHODS: Registry[Record] = Registry("method", "a method", example="rigl")


def register_method(name: str, schema: type, target: Any, summary: str, papers: tuple[Paper, ...] = (),
                    code: tuple[str, ...] = (), page: str = "") -> Record:
    """Add method ``name``: ``schema`` (a dataclass, usually a subclass of ``schemas.MaskedConfig``) holds its options
    and defaults, ``target`` is its ``methods.base.Method`` subclass or that class's import path."""
    return METHODS.register(Record(name, schema, target, summary, tuple(papers), tuple(code), page))


_DST = "methods/dynamic-sparse-training.md"
_PRUNING = "methods/pruning.md"
_SCHEDULED = "methods/scheduled-sparsity.md"
_STATIC = "methods/static.md"

register_method("dense", schemas.MethodConfig, "sparsetrain.methods.dense.Dense",
                "dense training, no masks: the baseline (sparsity must be 0)", page=_STATIC)
register_method("static", schemas.StaticConfig, "sparsetrain.methods.static.Static",
                "a fixed random mask with exact per-layer counts (uniform, ER, ERK), or a given mask",
                (papers.RIGL,), ("https://github.com/google-research/rigl",), _STATIC)
register_method("gmp", schemas.GMPConfig, "sparsetrain.methods.gmp.GMP",
                "gradual magnitude pruning on the cubic schedule, from initial_sparsity to `sparsity`",
                (papers.GMP,), ("https://github.com/tensorflow/model-optimization",), _PRUNING)
register_method("oneshot", schemas.OneShotConfig, "sparsetrain.methods.oneshot.OneShot",
                "train dense (or load a pretrained model), prune once by magnitude, retrain",
                (papers.PRUNING_HAN, papers.REWINDING_RENDA), ("https://github.com/lottery-ticket/rewinding-iclr20-public",),
                _PRUNING)
register_method("snip", schemas.SaliencyConfig, "sparsetrain.methods.snip.SNIP",
                "prune at initialisation by connection sensitivity |g * w|, then train the fixed mask",
                (papers.SNIP,), ("https://github.com/namhoonlee/snip-public",), _PRUNING)
register_method("grasp", schemas.GraSPConfig, "sparsetrain.methods.grasp.GraSP",
                "prune at initialisation to preserve gradient flow (Hessian-gradient product)",
                (papers.GRASP,), ("https://github.com/alecwangcq/GraSP",), _PRUNING)
register_method("synflow", schemas.SynFlowConfig, "sparsetrain.methods.synflow.SynFlow",
                "data-free iterative pruning at initialisation (synaptic flow), then train the fixed mask",
                (papers.SYNFLOW,), ("https://github.com/ganguli-lab/Synaptic-Flow",), _PRUNING)
register_method("lth", schemas.LTHConfig, "sparsetrain.methods.lth.LTH",
                "lottery tickets: iterative magnitude pruning with rewinding, every level in one run, and controls",
                (papers.LOTTERY_TICKETS, papers.LINEAR_MODE_CONNECTIVITY),
                ("https://github.com/facebookresearch/open_lth",), "methods/lottery-tickets.md")
register_method("rigl", schemas.DynamicConfig, "sparsetrain.methods.rigl.RigL",
                "dynamic sparse training: drop the smallest weights, grow where the dense gradient is largest",
                (papers.RIGL,), ("https://github.com/google-research/rigl",), _DST)
register_method("set", schemas.SETConfig, "sparsetrain.methods.set.SET",
                "dynamic sparse training: drop the smallest weights, grow at random",
                (papers.SET,), ("https://github.com/dcmocanu/sparse-evolutionary-artificial-neural-networks",), _DST)
register_method("snfs", schemas.SNFSConfig, "sparsetrain.methods.snfs.SNFS",
                "sparse momentum: grow where the momentum of the dense gradient is largest, redistribute across layers",
                (papers.SNFS,), ("https://github.com/TimDettmers/sparse_learning",), _DST)
register_method("itop", schemas.ITOPConfig, "sparsetrain.methods.itop.ITOP",
                "in-time over-parameterisation: long update intervals, the rate of weights ever active logged",
                (papers.ITOP,), ("https://github.com/Shiweiliuiiiiiii/In-Time-Over-Parameterization",), _DST)
register_method("srigl", schemas.SRigLConfig, "sparsetrain.methods.srigl.SRigL",
                "RigL with constant fan-in per neuron, ablating neurons with too few salient weights",
                (papers.SRIGL,), ("https://github.com/calgaryml/condensed-sparsity",), _DST)
register_method("sr_ste", schemas.SRSTEConfig, "sparsetrain.methods.sr_ste.SRSTE",
                "N:M sparsity from scratch: the mask recomputed from |w| every step, straight-through with a decay",
                (papers.SR_STE,), ("https://github.com/aojunzz/NM-sparsity",), _DST)
register_method("sparsegpt", schemas.SparseGPTConfig, "sparsetrain.methods.sparsegpt.SparseGPT",
                "one-shot pruning of a trained model with OBS weight updates, layer by layer on calibration samples",
                (papers.SPARSEGPT,), ("https://github.com/IST-DASLab/sparsegpt",), _PRUNING)
register_method("wanda", schemas.WandaConfig, "sparsetrain.methods.wanda.Wanda",
                "one-shot pruning of a trained model by |weight| x input norm, layer by layer on calibration samples",
                (papers.WANDA,), ("https://github.com/locuslab/wanda",), _PRUNING)
register_method("acdc", schemas.ACDCConfig, "sparsetrain.methods.acdc.ACDC",
                "alternating compressed / decompressed phases after a dense warm-up, a final compressed phase",
                (papers.ACDC,), ("https://github.com/IST-DASLab/ACDC",), _SCHEDULED)
register_method("gap", schemas.GaPConfig, "sparsetrain.methods.gap.GaP",
                "scheduled grow-and-prune: one partition of layers dense at a time (cyclic) or in replicas (parallel)",
                (papers.GAP,), ("https://github.com/boone891214/GaP",), _SCHEDULED)
register_method("mask_training", schemas.MaskTrainingConfig, "sparsetrain.methods.mask_training.MaskTraining",
                "learned masks over frozen starting weights: TAMT, supermasks, edge-popup",
                (papers.TAMT, papers.SUPERMASK_FINETUNING, papers.EDGE_POPUP, papers.SUPERMASK),
                ("https://github.com/llyx97/TAMT", "https://github.com/allenai/hidden-networks"), "methods/learned-masks.md")
register_method("movement", schemas.MovementConfig, "sparsetrain.methods.movement.Movement",
                "movement pruning: learned scores with the weights' movement as gradient, hard (top-k) or soft (threshold)",
                (papers.MOVEMENT,),
                ("https://github.com/huggingface/transformers/tree/main/examples/research_projects/movement-pruning",),
                "methods/learned-masks.md")
