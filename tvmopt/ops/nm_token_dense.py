"""N:M sparse weights at tens to hundreds of rows, the product vectorized along the rows: each
kept weight is broadcast and multiplies a contiguous run of its input row's tokens, so the layer
does the kept weights' FMAs only, with no gather, permute or decoded zero, on AVX2 and AVX-512
alike. Schedule and space: schedules/nm_token.py.

Logical arrays: ``nm_decode_dense``'s (kept values [K/M*N, outputs], ``w``-bit positions in
their group packed along the kept axis).
Kernel layout: blocks of ``BLOCK`` (32) kept weights, each block's outputs one after the other:
``values`` float32 [kept / 32, N, 32], ``positions`` uint8 [kept / 32, N, 32 * w / 8] (fields
little-endian within a byte, as ``pack_fields``).
Key: ``nm_token_dense:MxNxKxNNxMM`` (rows a multiple of 64; 32 kept weights a whole number of groups).
"""

from __future__ import annotations

import numpy as np

from tvmopt.errors import WorkloadError
from tvmopt.model import formats
from tvmopt.ops.registry import OpFamily, register_family
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.schedules.nm_token import BLOCK, apply_nm_token, nm_token_space, token_tile
from tvmopt.schedules.space import Config

from .decoded import bitfield, decoded_task, pack_fields, unpack_fields
from .nm_dense import NMDecodeDenseTask


def takes(m: int, n: int, k: int, n_keep: int, group: int) -> bool:
    """Whether the kernel computes a layer of ``m`` rows, ``n`` outputs, ``k`` inputs, N:M = ``n_keep``:``group``."""
    if not (m >= 1 and token_tile(m) and 0 < n_keep <= group and k % group == 0):
        return False
    kept = k // group * n_keep
    return kept % BLOCK == 0 and BLOCK % n_keep == 0


class NMTokenDenseTask(NMDecodeDenseTask):
    """N:M weights (``nm_decode_dense``'s arrays), the product transposed and vectorized along rows."""

    family = "nm_token_dense"
    fuses_epilogue = True
    cpu_only = True

    def __post_init__(self):
        from tvmopt.schedules.isa import current

        self.params = {**self.default_params(), **self.params}
        if not takes(self.m, self.n, self.k, self.params["n"], self.params["m"]):
            raise WorkloadError(f"workload '{self.key}': needs rows ({self.m}) a multiple of 64 and "
                                f"{BLOCK} kept weights a whole number of groups")
        self.shape = None
        self.space = nm_token_space(self.m, self.n, self.kept, current().lanes, f"{self.family}-llvm")
        self.flops = 2.0 * self.m * self.n * self.k       # dense-equivalent

    @property
    def decodes_tiles(self) -> bool:
        return False

    @property
    def bytes_per_block(self) -> int:
        """Bytes of positions per output and block of ``BLOCK`` kept weights."""
        return BLOCK * self.width // 8

    # ---- layout: logical [kept, N] <-> blocks [kept / BLOCK, N, BLOCK] ----
    def kernel_shape(self, spec):
        blocks = self.kept // BLOCK
        return (blocks, self.n, BLOCK if spec.name == "values" else self.bytes_per_block)

    def to_kernel(self, arrays):
        values, packed = arrays
        blocks = self.kept // BLOCK
        pos = unpack_fields(packed, self.width, self.kept)                          # [kept, N]
        per_block = pos.reshape(blocks, BLOCK, self.n).transpose(0, 2, 1)             # [B, N, BLOCK]
        fields = formats.pack_rows(per_block.reshape(-1, BLOCK), self.width)          # packed along BLOCK
        v = np.asarray(values, dtype=np.float32).reshape(blocks, BLOCK, self.n).transpose(0, 2, 1)
        return [np.ascontiguousarray(v), np.ascontiguousarray(fields.reshape(blocks, self.n, -1))]

    def logical(self, arrays):
        values, fields = arrays
        blocks = self.kept // BLOCK
        pos = formats.unpack_rows(fields.reshape(blocks * self.n, -1), self.width, BLOCK)
        pos = pos.reshape(blocks, self.n, BLOCK).transpose(0, 2, 1).reshape(self.kept, self.n)
        v = values.transpose(0, 2, 1).reshape(self.kept, self.n)
        return [np.ascontiguousarray(v), pack_fields(pos, self.width)]

    # ---- compute and schedule ----
    def compute(self):
        from tvm import te

        m, n, k = self.m, self.n, self.k
        keep, group, width = self.params["n"], self.params["m"], self.width
        per = 8 // width
        tile = token_tile(m)
        x = te.placeholder((m, k), "float32", name="X")
        values = te.placeholder(self.kernel_shape(self.weight_specs()[0]), "float32", name="values")
        positions = te.placeholder(self.kernel_shape(self.weight_specs()[1]), "uint8", name="positions")
        xt = te.compute((m // tile, k, tile), lambda t, r, i: x[t * tile + i, r], name="XT")
        s = te.reduce_axis((0, self.kept), name="s")

        def row(j, s):
            field = positions[s // BLOCK, j, s % BLOCK // per]
            return s // keep * group + bitfield(field, s % per, width)

        ct = te.compute((n, m), lambda j, i: te.sum(values[s // BLOCK, j, s % BLOCK] * xt[i // tile, row(j, s), i % tile],
                                                    axis=s), name="CT")
        out = te.compute((m, n), lambda i, j: ct[j, i], name="C", attrs={TASK_ANNOTATION: self.key})
        return [x, values, positions, out]

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        from tvmopt.target import host_cores

        config = self.space.initial() if config is None else config
        return apply_nm_token(sch, self.space, config, self.m, self.n, host_cores(), epilogue)


FAMILY = register_family(OpFamily(
    "nm_token", "N:M sparse weights at tens to hundreds of rows: the product vectorized along rows",
    tasks={"nm_token_dense": decoded_task(NMTokenDenseTask, "MxNxKxNNxMM", extra=lambda d: {"n": d[0], "m": d[1]},
                                          summary="N:M sparse weights, 64 to 512 rows: kept weights broadcast "
                                                  "over vectors of rows")},
    schedules="tvmopt.schedules.nm_token"))
