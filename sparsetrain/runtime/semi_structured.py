"""2:4 (semi-structured) sparse linear layers on a CUDA GPU: every group of 4 consecutive inputs of a weight row
keeps at most 2 nonzeros, which ``torch.sparse.to_sparse_semi_structured`` stores at half size and multiplies on
the sparse tensor cores (fp16/bf16, shapes the kernel accepts)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import first_line

DTYPE = torch.bfloat16  # the kernels take fp16 or bf16; bf16 keeps fp32's range


def is_two_four(weight: torch.Tensor) -> bool:
    """Whether ``weight`` (out, in) is 2:4 along its inputs: ``in`` a multiple of 4 and at most 2 nonzeros in every
    group of 4 consecutive inputs."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight != 0).view(weight.shape[0], -1, 4).sum(-1) <= 2).all())


def two_four_layers(model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """(names of the linear layers whose weight is 2:4, {name: why not} for the other linear layers)."""
    sparse, dense = [], {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if is_two_four(module.weight):
                sparse.append(name)
            else:
                dense[name] = "not 2:4"
    return sparse, dense


def to_semi_structured(model: nn.Module, layers: list[str]) -> dict[str, str]:
    """Move ``model`` to the GPU in ``DTYPE`` and give each of ``layers`` a semi-structured weight, in place;
    return {name: the kernel's refusal} for the layers left dense (a shape it does not take)."""
    model.to(device="cuda", dtype=DTYPE)
    refused = {}
    for name in layers:
        module = model.get_submodule(name)
        try:
            weight = torch.sparse.to_sparse_semi_structured(module.weight.detach())
        except RuntimeError as error:
            refused[name] = first_line(error)
            continue
        module.weight = nn.Parameter(weight, requires_grad=False)
    return refused
