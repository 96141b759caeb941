"""A linear layer whose weight is a CSR tensor (int32 indices), with one kernel for a single input row and one for
many rows, each the CSR product, the gathered product (``embedding_bag`` over the CSR parts) or the dense matrix, as
measured fastest."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

KERNELS = ("dense", "csr", "gather")


@dataclass(frozen=True)
class Kernel:
    name: str  # dense | csr | gather
    tile: int = 0  # csr or gather over many rows: rows per product (0: all rows in one product)
    transposed: bool = False  # csr or gather over many rows: return the (out, rows) product's transpose, a view

    @property
    def label(self) -> str:
        """``dense``, ``csr``, ``gather``, ``csr/128`` (tiled), ``gather^T`` (transposed output)."""
        return (f"{self.name}/{self.tile}" if self.tile else self.name) + ("^T" if self.transposed else "")

    def as_dict(self) -> dict:
        return asdict(self)


def _kernel(saved: dict) -> Kernel:
    """The kernel a file's plan names; ``condensed`` (earlier exports' constant-fan-in kernel) is the gather of the
    same sum, which took its place."""
    return Kernel(**{**saved, "name": "gather" if saved["name"] == "condensed" else saved["name"]})


@contextlib.contextmanager
def _csr_is_beta() -> Iterator[None]:
    """Without torch's warning that sparse CSR support is in beta (the tests check the kernels used here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


class SparseLinear(nn.Module):
    """``y = x W^T + b`` for a (mostly zero) ``W`` kept as CSR. Over many rows each kernel computes ``W X^T + b``,
    (out, rows), from the inputs transposed, (in, rows), in tiles of ``kernel.tile`` rows; the result is row-major
    (each tile's product transposed back while in cache) or, for a ``transposed`` kernel, the transpose of the
    (out, rows) product, a view: a following sparse layer (through element-wise ops) then gets its inputs
    transposed without a copy, but residual sums and layer norms run many times slower on that layout. ``csr``:
    the CSR product (``torch.mv`` for one row); ``gather``: ``y[:, o] = sum_j values[j] x[:, col_indices[j]]`` over
    row o's nonzeros, one ``embedding_bag``; ``dense``: the dense matrix, rebuilt from the CSR one. Its state_dict
    holds the CSR parts and the bias: a file of it is sized by the nonzeros."""

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
        self.dense_weight = self.weight.to_dense() if "dense" in (self.one.name, self.many.name) else None
        self.bias_column = None if self.bias is None else self.bias[:, None]

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
        return cls(*parts, tuple(plan["shape"]), state.get(f"{name}.bias"), _kernel(plan["one"]), _kernel(plan["many"]))

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
            out = torch.mv(weight, row) if self.bias is None else torch.addmv(self.bias, weight, row)
            return out.reshape(*x.shape[:-1], self.out_features)
        product = self._gathered if kernel.name == "gather" else self._product
        parts = rows.split(kernel.tile) if kernel.tile and rows.shape[0] > kernel.tile else (rows,)
        if kernel.transposed:
            products = [product(part.t()) for part in parts]
            out = (products[0] if len(parts) == 1 else torch.cat(products, dim=1)).t()
        else:
            products = [product(part.t()).t() for part in parts]
            out = products[0].contiguous() if len(parts) == 1 else torch.cat(products)
        return out.reshape(*x.shape[:-1], self.out_features)

    def _product(self, inputs: torch.Tensor) -> torch.Tensor:
        """``W inputs + b`` (``inputs``: (in, rows)), the CSR kernel taking the sparse operand on the left."""
        if self.bias is None:
            return self.weight @ inputs.contiguous()
        return torch.addmm(self.bias_column, self.weight, inputs.contiguous())

    def _gathered(self, inputs: torch.Tensor) -> torch.Tensor:
        """``W inputs + b`` (``inputs``: (in, rows)) as one ``embedding_bag`` over the CSR parts: output row o the
        sum of the input rows ``col_indices`` of W's row o, weighted by its values."""
        rows_in_place = inputs.stride(1) == 1  # a transposed output of the layer before: rows strided, not copied
        out = F.embedding_bag(self.col_indices, inputs if rows_in_place else inputs.contiguous(), self.crow_indices,
                              mode="sum", per_sample_weights=self.values, include_last_offset=True)
        return out if self.bias is None else out.add_(self.bias_column)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"density={self.describe()['density']:.4f}, one={self.one.label}, many={self.many.label}")
