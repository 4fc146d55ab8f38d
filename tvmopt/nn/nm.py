"""N:M structured sparsity: at most N nonzeros in every group of M consecutive weights along the
reduction axis, and *transposable* N:M masks that are N:M along rows and columns of every M x M
block, so the transposed weight (the backward pass) is N:M sparse too.

Masks are chosen by magnitude:

* :func:`nm_mask` keeps the N largest of every group (optimal for the row constraint alone).
* :func:`transposable_mask` solves each M x M block exactly as a min-cost flow (source -> rows,
  capacity N; row -> column, capacity 1, cost -|w|; columns -> sink, capacity N), which keeps the
  most magnitude any transposable mask can keep. ``method="greedy"`` is the fast approximation of
  Hubara et al.: take entries in decreasing magnitude while their row and column have room.
  ``method="optimal"`` solves the flow with networkx, except that for small blocks (M <= 5: at
  most 2,040 valid block masks) the same optimum is found exactly by scoring every valid block
  mask at once with one matrix product.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from tvmopt.model import formats
from .base import CompressedLayer, tensor_np


ENUMERATE_MAX_M = 5


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
        raise ValueError(f"need 0 < N <= M, got N={n}, M={m}")


def nm_mask(weight: np.ndarray, n: int, m: int) -> np.ndarray:
    """bool mask [rows, K] keeping the n largest |w| in each group of m along K."""
    _check_nm(n, m)
    w = np.abs(np.asarray(weight, dtype=np.float64))
    rows, k = w.shape
    if k % m:
        raise ValueError(f"reduction length {k} is not a multiple of M={m}")
    groups = w.reshape(rows, k // m, m)
    order = np.argsort(-groups, axis=2, kind="stable")[:, :, :n]
    mask = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(mask, order, True, axis=2)
    return mask.reshape(rows, k)


def _blocks(w: np.ndarray, m: int) -> np.ndarray:
    rows, k = w.shape
    if rows % m or k % m:
        raise ValueError(f"a transposable mask needs both dimensions divisible by M={m}, got {rows}x{k}")
    return w.reshape(rows // m, m, k // m, m).transpose(0, 2, 1, 3).reshape(-1, m, m)


def _unblocks(b: np.ndarray, rows: int, k: int, m: int) -> np.ndarray:
    return b.reshape(rows // m, k // m, m, m).transpose(0, 2, 1, 3).reshape(rows, k)


@lru_cache(maxsize=None)
def block_masks(n: int, m: int) -> np.ndarray:
    """All valid transposable block masks, float [P, m*m]."""
    out = []

    def rec(row, remaining, acc):
        if row == m:
            if all(r == 0 for r in remaining):
                out.append(np.array(acc, dtype=np.float64).reshape(-1))
            return
        for cols in itertools.combinations(range(m), n):
            if all(remaining[c] > 0 for c in cols):
                line = [0.0] * m
                nxt = list(remaining)
                for c in cols:
                    line[c] = 1.0
                    nxt[c] -= 1
                rec(row + 1, nxt, acc + [line])
    rec(0, [n] * m, [])
    return np.stack(out)


def _flow_block(block: np.ndarray, n: int) -> np.ndarray:
    import networkx as nx

    m = block.shape[0]
    g = nx.DiGraph()
    g.add_node("s", demand=-n * m)
    g.add_node("t", demand=n * m)
    # integer costs: networkx's network simplex needs exact arithmetic
    scale = 1e9 / max(float(block.max()), 1e-30)
    for i in range(m):
        g.add_edge("s", ("r", i), capacity=n, weight=0)
        g.add_edge(("c", i), "t", capacity=n, weight=0)
        for j in range(m):
            g.add_edge(("r", i), ("c", j), capacity=1, weight=-int(round(block[i, j] * scale)))
    flow = nx.min_cost_flow(g)
    return np.array([[flow[("r", i)][("c", j)] == 1 for j in range(m)] for i in range(m)])


def _greedy_block(block: np.ndarray, n: int) -> np.ndarray:
    m = block.shape[0]
    mask = np.zeros((m, m), dtype=bool)
    rows = np.zeros(m, dtype=int)
    cols = np.zeros(m, dtype=int)
    for flat in np.argsort(-block, axis=None, kind="stable"):
        i, j = divmod(int(flat), m)
        if rows[i] < n and cols[j] < n:
            mask[i, j] = True
            rows[i] += 1
            cols[j] += 1
    if rows.sum() < n * m:
        # greedy can strand capacity; complete with the flow so the constraints hold exactly
        return _flow_block(np.where(mask, block + block.max() + 1.0, block), n)
    return mask


def transposable_mask(weight: np.ndarray, n: int, m: int, method: str = "optimal") -> np.ndarray:
    """bool mask [rows, K] with exactly n kept entries in every row and every column of each m x m
    block. ``method``: "optimal" (min-cost flow; exact enumeration for small blocks), "flow"
    (always networkx min-cost flow) or "greedy"."""
    _check_nm(n, m)
    w = np.abs(np.asarray(weight, dtype=np.float64))
    rows, k = w.shape
    blocks = _blocks(w, m)
    if method == "optimal" and m <= ENUMERATE_MAX_M:
        masks = block_masks(n, m)                                   # [P, m*m]
        best = np.argmax(blocks.reshape(len(blocks), -1) @ masks.T, axis=1)
        chosen = masks[best].reshape(-1, m, m).astype(bool)
    elif method in ("optimal", "flow"):
        chosen = np.stack([_flow_block(b, n) for b in blocks])
    elif method == "greedy":
        chosen = np.stack([_greedy_block(b, n) for b in blocks])
    else:
        raise ValueError(f"method must be 'optimal', 'flow' or 'greedy', got {method!r}")
    return _unblocks(chosen, rows, k, m)


class _NMSparse(CompressedLayer):
    kind = "nm"
    op_base = "NMSparse"

    def _init_nm(self, n: int, m: int, transposable: bool, method: str) -> None:
        _check_nm(n, m)
        if self.reduction % m:
            raise ValueError(f"reduction length {self.reduction} is not a multiple of M={m}")
        self.n, self.m = n, m
        self.transposable = bool(transposable)
        self.method = method
        w = torch.empty(self.weight_shape)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.weight = nn.Parameter(w)
        self.register_buffer("mask", torch.ones(self.weight_shape, dtype=torch.bool))
        self.prune_()

    @torch.no_grad()
    def prune_(self) -> None:
        """Recompute the mask from the current weight magnitudes."""
        w2 = tensor_np(self.weight).reshape(self.out_features, -1)
        if self.transposable:
            mask = transposable_mask(w2, self.n, self.m, self.method)
        else:
            mask = nm_mask(w2, self.n, self.m)
        self.mask.copy_(torch.from_numpy(mask.reshape(self.weight_shape)))

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def compact(self):
        dense = tensor_np(self.effective_weight()).reshape(self.out_features, -1)
        values, positions = formats.compress_nm(dense, self.n, self.m)
        packed = formats.pack_rows(positions, formats.index_bits(self.m))
        return ({"values": values, "indices": packed, "bias": tensor_np(self.bias)},
                {**self.geometry_attrs(), "n": self.n, "m": self.m, "transposable": int(self.transposable)})

    def load_dense_(self, weight: torch.Tensor) -> None:
        """Magnitude-prune a dense weight (the mask is computed from it)."""
        self.weight.copy_(weight)
        self.prune_()

    def extra_repr(self):
        return f"{super().extra_repr()}, {self.n}:{self.m}, transposable={self.transposable}"


class NMSparseLinear(_NMSparse):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, n: int = 2, m: int = 4,
                 transposable: bool = False, method: str = "optimal"):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        self._init_nm(n, m, transposable, method)


class NMSparseConv2d(_NMSparse):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, *, n: int = 2, m: int = 4, transposable: bool = False,
                 method: str = "optimal"):
        super().__init__()
        self._init_geometry(in_channels, out_channels, bias, kernel_size, stride, padding, dilation)
        self._init_nm(n, m, transposable, method)
