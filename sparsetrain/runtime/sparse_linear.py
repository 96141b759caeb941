"""A linear layer whose weight is a CSR tensor (int32 indices), with one kernel for a single input row and one for
many rows, each the CSR product, the condensed product (a layer with constant fan-in) or the dense matrix, as
measured fastest."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

KERNELS = ("dense", "csr", "condensed")


@dataclass(frozen=True)
class Kernel:
    name: str  # dense | csr | condensed
    tile: int = 0  # csr or condensed over many rows: rows per product (0: all rows in one product)

    @property
    def label(self) -> str:
        """``dense``, ``csr``, ``condensed`` or ``csr/128`` (tiled)."""
        return f"{self.name}/{self.tile}" if self.tile else self.name

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _csr_is_beta() -> Iterator[None]:
    """Without torch's warning that sparse CSR support is in beta (the tests check the kernels used here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def constant_fan_in(counts: torch.Tensor) -> int | None:
    """The number of inputs every output row keeps (``counts``: each row's nonzeros), rows with none (ablated
    units) aside; None if it varies."""
    counts = counts.unique()
    counts = counts[counts > 0]
    return int(counts[0]) if len(counts) == 1 else None


class SparseLinear(nn.Module):
    """``y = x W^T + b`` for a (mostly zero) ``W`` kept as CSR: ``torch.mv`` for one row, ``W @ X^T`` (in tiles of
    ``many.tile`` rows) for several; the dense matrix (rebuilt from the CSR one) for a regime whose kernel is
    ``dense``; for ``condensed`` (constant fan-in k) the (out, k) values and input indices of each row, ``y[:, o] =
    sum_j values[o, j] x[:, indices[o, j]]`` as one ``embedding_bag`` (weighted sum of gathered rows). Its
    state_dict holds the CSR parts and the bias: a file of it is sized by the nonzeros."""

    def __init__(self, crow_indices: torch.Tensor, col_indices: torch.Tensor, values: torch.Tensor,
                 shape: tuple[int, int], bias: torch.Tensor | None, one: Kernel, many: Kernel):
        super().__init__()
        self.out_features, self.in_features = shape
        self.register_buffer("crow_indices", crow_indices.to(torch.int32))
        self.register_buffer("col_indices", col_indices.to(torch.int32))
        self.register_buffer("values", values)
        self.register_buffer("bias", bias)
        self.one, self.many = one, many
        self._build()

    def _build(self) -> None:
        """The CSR tensor over the buffers (and the dense matrix where a kernel uses it), again after ``.to()``."""
        shape = (self.out_features, self.in_features)
        with _csr_is_beta():  # the indices are checked: a damaged file is an error, not a bad memory access
            self.weight = torch.sparse_csr_tensor(self.crow_indices, self.col_indices, self.values, shape,
                                                  check_invariants=True)
        names = (self.one.name, self.many.name)
        self.dense_weight = self.weight.to_dense() if "dense" in names else None
        self.condensed = self._condensed() if "condensed" in names else None

    def _condensed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, values), each (out, k): the CSR rows as a dense gather; an ablated row gathers input 0 times 0."""
        counts = self.crow_indices.diff()
        k = constant_fan_in(counts)
        if k is None:
            raise ValueError("the condensed kernel needs constant fan-in: every nonzero row keeping as many inputs")
        kept = counts > 0
        indices = self.col_indices.new_zeros(self.out_features, k)
        values = self.values.new_zeros(self.out_features, k)
        indices[kept], values[kept] = self.col_indices.view(-1, k), self.values.view(-1, k)
        return indices, values

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._build()
        return self

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None, one: Kernel, many: Kernel) -> SparseLinear:
        with _csr_is_beta():
            csr = weight.detach().to_sparse_csr()
        return cls(csr.crow_indices(), csr.col_indices(), csr.values(), tuple(weight.shape),
                   None if bias is None else bias.detach(), one, many)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], name: str, plan: dict) -> SparseLinear:
        """The layer ``name`` of a saved state dict, with its ``plan`` (shape and kernels, as ``describe`` gives)."""
        parts = (state[f"{name}.{part}"] for part in ("crow_indices", "col_indices", "values"))
        return cls(*parts, tuple(plan["shape"]), state.get(f"{name}.bias"), Kernel(**plan["one"]),
                   Kernel(**plan["many"]))

    def describe(self) -> dict:
        """Shape, density and kernels (JSON-ready); with the state dict, enough to rebuild the layer."""
        return {"shape": [self.out_features, self.in_features], "one": self.one.as_dict(),
                "many": self.many.as_dict(), "density": self.values.numel() / (self.out_features * self.in_features)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.one if x.numel() == self.in_features else self.many
        if kernel.name == "dense":
            return F.linear(x, self.dense_weight, self.bias)
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] == 1 and kernel.name == "csr":
            weight, row = self.weight, rows[0]
            out = (torch.mv(weight, row) if self.bias is None else torch.addmv(self.bias, weight, row)).unsqueeze(0)
        else:
            product = self._gathered if kernel.name == "condensed" else self._product
            parts = [product(part) for part in (rows.split(kernel.tile) if kernel.tile else (rows,))]
            out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.reshape(*x.shape[:-1], self.out_features)

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows W^T + b`` as ``(W rows^T + b)^T``: the CSR kernel takes the sparse operand on the left."""
        if self.bias is None:
            return (self.weight @ rows.t()).t()
        return torch.addmm(self.bias[:, None], self.weight, rows.t()).t()

    def _gathered(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows W^T + b`` by the condensed matrices: each output a weighted sum of the inputs it keeps."""
        indices, values = self.condensed
        inputs = rows.t().contiguous()  # (in, rows): output o is the bag of inputs indices[o] weighted by values[o]
        out = F.embedding_bag(indices, inputs, per_sample_weights=values, mode="sum").t()
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"density={self.describe()['density']:.4f}, one={self.one.label}, many={self.many.label}")
