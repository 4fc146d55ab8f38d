"""N:M sparse weights: only the kept values are stored and multiplied; each carries its
position inside its group of M, and the kernel gathers the matching input.

``Y[i, o] = sum_r values[r, o] * X[i, (r // N) * M + pos(r, o)]`` over the K/M*N kept slots r.

Kernel layout (vectorized along N outputs):
- ``values`` float32 [K/M*N, outputs];
- ``positions`` uint8 [ceil(K/M*N / per), outputs], ``w``-bit fields with w = 2 for M <= 4,
  4 for M <= 16, 8 beyond (per = 8 / w fields per byte).
Key: ``nm_dense:MxNxKxNNxMM`` (NN:MM sparsity).
"""

from __future__ import annotations

import numpy as np

from tvmopt.model import formats
from tvmopt.ops.kernel import Kernel, array_bytes
from tvmopt.ops.registry import OpFamily, register_family

from .decoded import DecodedDenseTask, WeightSpec, bitfield, cuda_view, decoded_task, pack_fields, unpack_fields


def position_width(m: int) -> int:
    return 1 if m <= 2 else 2 if m <= 4 else 4 if m <= 16 else 8


class NMDenseTask(DecodedDenseTask):
    family = "nm_dense"
    cuda_unstaged = ("X",)

    def default_params(self):
        return {"n": 2, "m": 4}

    def __post_init__(self):
        n, m = self.params.get("n", 2), self.params.get("m", 4)
        if not 0 < n <= m or self.k % m:
            from ..errors import WorkloadError
            raise WorkloadError(f"{self.key}: need 0 < N <= M and K divisible by M")
        super().__post_init__()

    @property
    def kept(self) -> int:
        """Kept weights per output: K / M * N."""
        return self.k // self.params["m"] * self.params["n"]

    @property
    def k_eff(self):
        return self.kept

    @property
    def width(self):
        return position_width(self.params["m"])

    def weight_specs(self):
        per = 8 // self.width
        return [WeightSpec("values", (self.kept, self.n), "float32"),
                WeightSpec("positions", (-(-self.kept // per), self.n), "uint8")]

    def random_weights(self, rng):
        n, m = self.params["n"], self.params["m"]
        groups = self.k // m
        # n distinct positions per group, ascending: the first n of a random permutation
        pos = np.sort(np.argsort(rng.random((self.n * groups, m)), axis=1)[:, :n], axis=1)
        pos = pos.reshape(self.n, groups * n).T                      # [kept, outputs]
        values = rng.uniform(-1, 1, size=(self.kept, self.n)).astype(np.float32)
        return [values, pack_fields(pos, self.width)]

    def dense_weight(self, arrays):
        values, packed = arrays
        n, m = self.params["n"], self.params["m"]
        pos = unpack_fields(packed, self.width, self.kept)
        rows = (np.arange(self.kept) // n * m)[:, None] + pos
        dense = np.zeros((self.k, self.n), np.float32)
        np.add.at(dense, (rows, np.broadcast_to(np.arange(self.n), rows.shape)), values)
        return dense

    def te_term(self, x, tensors, i, kk, j):
        values, positions = tensors
        per = 8 // self.width
        pos = bitfield(positions[kk // per, j], kk % per, self.width)
        return values[kk, j] * x[i, kk // self.params["n"] * self.params["m"] + pos]

    def te_weight(self, tensors, kk, j):
        """The dense weight at reduction index ``kk`` (of K, not of the kept values): the kept
        value of its group whose position is ``kk % M``, else 0. The GEMM kernel gathers inputs
        instead (``te_term``); the direct convolution decodes weight tiles with this."""
        import tvm

        values, positions = tensors
        n, m, per = self.params["n"], self.params["m"], 8 // self.width
        weight = tvm.tirx.const(0.0, "float32")
        for t in reversed(range(n)):
            kept = kk // m * n + t
            pos = bitfield(positions[kept // per, j], kept % per, self.width)
            weight = tvm.tirx.Select(pos == kk % m, values[kept, j], weight)
        return weight


class NMDecodeDenseTask(NMDenseTask):
    """N:M weights decoded to their dense tile (zeros included) inside the product, instead of
    gathering one input per kept weight: twice the FMAs of the kept weights, but every load is a
    contiguous vector and the decode is a few integer ops shared by a vector of outputs. Same
    arrays and layout as ``nm_dense``; the GEMM space with the ``decode`` knob (inline, or a
    decoded tile shared by the rows of a step)."""

    family = "nm_decode_dense"
    cuda_unstaged = ()
    te_term = DecodedDenseTask.te_term

    @property
    def k_eff(self):
        return self.k

    def start_overrides(self):
        """The decoded-weight start, with the decode inline at every batch: at 16 x 4096 x 4096
        (2:4, Zen 5) inline ran 1.22x the dense kernel, a decoded tile per step 0.59x."""
        return {**super().start_overrides(), "decode": "inline"}


def nm_kernel(w: np.ndarray, n_keep: int, m: int, structure=None) -> Kernel:
    """A weight [N, K] with at most ``n_keep`` nonzeros in each group of ``m`` along K, on the
    decoded-tile kernel: the gathering ``nm_dense`` lost to it at every size measured (Zen 5,
    4096 x 4096: 0.57x vs 0.95x the dense kernel at one row, 0.28x vs 1.22x at 16)."""
    n, k = w.shape
    values, positions = formats.compress_nm(w, n_keep, m)
    arrays = [np.ascontiguousarray(values.T), pack_fields(positions.T, position_width(m))]
    return Kernel("nm_decode_dense", structure or f"{n_keep}:{m} sparse", n, k, arrays, params={"n": n_keep, "m": m},
                  compact_bytes=array_bytes(arrays), key_dims=(n_keep, m))


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` NMSparseGemm: kept values and their packed positions."""
    from tvmopt.model.opset import decode_weight

    return nm_kernel(decode_weight(op, inputs, attrs), attrs["n"], attrs["m"],
                     f"{attrs['n']}:{attrs['m']} sparse" + (" (transposable)" if attrs["transposable"] else ""))


FAMILY = register_family(OpFamily(
    "nm", "N:M and transposable N:M sparsity: kept values and their positions, inputs gathered",
    tasks={"nm_dense": decoded_task(NMDenseTask, "MxNxKxNNxMM", extra=lambda d: {"n": d[0], "m": d[1]},
                                    summary="NN:MM sparse weights, inputs gathered per kept weight"),
           "nm_decode_dense": decoded_task(NMDecodeDenseTask, "MxNxKxNNxMM", extra=lambda d: {"n": d[0], "m": d[1]},
                                           summary="NN:MM sparse weights decoded to dense tiles in the product")},
    schedules="tvmopt.schedules.gemm", onnx_ops=("NMSparseGemm", "NMSparseConv"), from_compact=from_compact,
    cuda=cuda_view, layer="NMSparseConv"))
