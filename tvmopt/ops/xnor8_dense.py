"""Binarized dense layers counted in bytes (AVX2): ``xnor8_dense:MxNxK``.

The layer of ``xnor_dense:`` (:mod:`.binary_dense`: ``Y = sign(X) @ W`` for ±1 weights, exact)
as the byte-count XNOR conv (:mod:`.xnor8_conv2d`) of a 1x1 window over a column of M
pixels: the weight is ``Wb[N/ob, ceil(K/8), 1, 1, ob]`` uint8, 32 outputs per vector, and the
mismatches of up to 31 input bytes add up in uint8 before one widening. ``xnor_dense`` counts
32-bit words and turns each word's count into a float added into a float accumulator, about 12
vector operations per 256 products where this kernel spends 7. Measured on a Zen 3 (paired
rounds): the BERT-base MLP's 128x3072x768 2.0x ``xnor_dense``'s start, 2048x3072x768 1.56x
with a tile of 4 rows by 2 blocks.

The pass runs ``xnor_dense`` layers on it for AVX2 targets where N fills blocks of 32
(``passes/choose.py``, ``xnor_dense_family``); same constants (the words of ``xnor_dense``,
re-laid out by ``to_kernel``), same space as the conv's (``schedules/xnor8_conv2d.py``: the
rows are ``tile_h``).
"""

from __future__ import annotations

import numpy as np

from ..errors import WorkloadError
from ..schedules import xnor8_conv2d as schedule
from ..schedules.conv2d import ConvShape
from .binary_dense import pack_signs, unpack_signs
from .registry import OpFamily, TaskKind, register_family
from .task import check_sizes
from .xnor8_conv2d import Xnor8Conv2dTask
from .xnor_conv2d import pack_weight, signs_pack_stage

PREFIX = "xnor8_dense"


class Xnor8DenseTask(Xnor8Conv2dTask):
    """X [M, K] float32, words [K/32, N] (``xnor_dense``'s) laid out as bytes -> Y [M, N]."""

    def __init__(self, key: str, m: int, n: int, k: int):
        self.m, self.n, self.k = m, n, k
        super().__init__(key, ConvShape(1, k, m, 1, n, 1, 1, 1, 0, layout="NHWC"))

    def to_kernel(self, arrays):
        """``xnor_dense``'s words [ceil(K/32), N] -> bytes [N/ob, ceil(K/8), 1, 1, ob]."""
        signs = unpack_signs(arrays[0], 32, self.k)                 # [K, N] ±1
        return [pack_weight(signs.T[:, :, None, None], schedule.block(self.shape), 8)]

    def make_inputs(self, rng):
        x = rng.uniform(-1, 1, size=(self.m, self.k)).astype(np.float32)
        return [x] + self.to_kernel([pack_signs(rng.choice([-1.0, 1.0], size=(self.k, self.n)), 32)])

    def reference(self, inputs):
        from .xnor_conv2d import unpack_weight

        x, packed = inputs
        w = unpack_weight(packed, self.k)[:, :, 0, 0]                 # [N, K]
        return (np.where(x >= 0, 1.0, -1.0) @ w.T).astype(np.float32)

    def compute(self, x=None):
        """TE: (X, Wb, Y); the conv's stages over a column of M pixels, ``xnor_out`` [M, N]."""
        from tvm import te

        k = self.k
        X = x if x is not None else te.placeholder((self.m, k), "float32", name="X")
        Wb = self.weight_placeholder()
        acc = self.count_stages(signs_pack_stage(X, self.shape, 8, (self.m, 1), read=lambda i, ch, y, xi: X[y, ch]), Wb)
        Y = te.compute((self.m, self.n), lambda y, o: (k - 2 * acc[0, y, 0, o].astype("int32")).astype("float32"),
                       name="xnor_out")
        return X, Wb, Y


def _factory(key: str, dims: tuple[int, ...]) -> Xnor8DenseTask:
    if len(dims) != 3:
        raise WorkloadError(f"workload '{key}' needs 3 dimensions ({PREFIX}:MxNxK)")
    m, n, k = dims
    check_sizes(key, {"X": m * k, "the dense weight": k * n, "Y": m * n})
    return Xnor8DenseTask(key, m, n, k)


FAMILY = register_family(OpFamily(
    "xnor8_dense", "binarized dense layers counted in bytes (AVX2): XNOR + byte popcounts summed in uint8",
    tasks={PREFIX: TaskKind(_factory, "MxNxK", summary="binary weights and inputs, counts in bytes (AVX2)")},
    schedules="tvmopt.schedules.xnor8_conv2d"))
