"""2:4 sparse weights at few rows through in-register input selection (AVX-512): each output's
kept inputs are picked out of a register of 16 inputs by ``vpermps`` and multiplied by their
kept values, so the layer reads its kept values and 4-bit positions only (9 bytes per group of
4 weights against the dense weight's 16) and decodes nothing. Schedule, space and tensor
intrinsic: schedules/nm_perm.py.

Logical arrays: ``nm_decode_dense``'s (kept values [K/2, N], 2-bit positions in their group).
Kernel layout: ``values`` float32 [K/2, N] as is, ``codes`` int32 [K/16, N]: the positions of a
word's 8 kept slots within its 16 inputs (4 bits each, slot t in bits 4t..4t+3).
Key: ``nm_perm_dense:MxNxKx2x4`` (2:4 only; N and K multiples of 16).
"""

from __future__ import annotations

import numpy as np

from tvmopt.errors import WorkloadError
from tvmopt.ops.registry import OpFamily, register_family
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.schedules.nm_perm import BITS, LANES, SLOTS, apply_nm_perm, nm_perm_space
from tvmopt.schedules.space import Config

from .decoded import decoded_task, pack_fields, unpack_fields
from .nm_dense import NMDecodeDenseTask
from .perm_tables import CodeFormat, _need_avx512

#: the code words: each kept slot's position among its word's 16 inputs, 4 bits, 8 per int32
POSITIONS = CodeFormat("nm_positions", group=1, bits=BITS, per_word=SLOTS, entries=LANES, base=1 << BITS)


def takes(m: int, n: int, k: int, n_keep: int, group: int) -> bool:
    """Whether the kernel computes a layer of ``m`` rows, ``n`` outputs, ``k`` inputs, N:M = ``n_keep``:``group``."""
    return m >= 1 and (n_keep, group) == (2, 4) and n % LANES == 0 and k % LANES == 0


class NMPermDenseTask(NMDecodeDenseTask):
    """2:4 weights (``nm_decode_dense``'s arrays), inputs picked with ``vpermps``."""

    family = "nm_perm_dense"
    fuses_epilogue = True
    #: the product is a tensor intrinsic (int32 indices): the pass narrows a fused function first
    tensorized = True
    #: no CUDA view: on a GPU the layer runs nm_decode_dense
    cpu_only = True

    def __post_init__(self):
        self.params = {**self.default_params(), **self.params}
        _need_avx512(self.key)
        if not takes(self.m, self.n, self.k, self.params["n"], self.params["m"]):
            raise WorkloadError(f"workload '{self.key}': needs 2:4 sparsity and N ({self.n}) and K ({self.k}) "
                                f"multiples of {LANES}")
        self.shape = None
        self.space = nm_perm_space(self.m, self.n, f"{self.family}-llvm")
        self.flops = 2.0 * self.m * self.n * self.k       # dense-equivalent

    @property
    def decodes_tiles(self) -> bool:
        return False

    # ---- layout: logical (values, 2-bit positions) <-> (values, 4-bit positions within 16 inputs) ----
    def kernel_shape(self, spec):
        return (self.kept, self.n) if spec.name == "values" else (self.kept // SLOTS, self.n)

    def to_kernel(self, arrays):
        values, packed = arrays
        slot = np.arange(self.kept)[:, None]
        within = unpack_fields(packed, self.width, self.kept).astype(np.int64) + 4 * ((slot % SLOTS) // 2)
        return [np.ascontiguousarray(values, dtype=np.float32), POSITIONS.pack(within)]

    def logical(self, arrays):
        values, words = arrays
        return [values, pack_fields(POSITIONS.unpack(words) % 4, self.width)]

    # ---- compute and schedule ----
    def compute(self):
        import tvm
        from tvm import te

        x = te.placeholder((self.m, self.k), "float32", name="X")
        values = te.placeholder((self.kept, self.n), "float32", name="values")
        codes = te.placeholder((self.kept // SLOTS, self.n), "int32", name="codes")
        s = te.reduce_axis((0, self.kept), name="s")
        e = te.reduce_axis((0, LANES), name="e")
        mask = (1 << BITS) - 1

        def product(row, j):
            pos = (codes[s // SLOTS, j] >> ((s % SLOTS) * BITS)) & mask
            return te.sum(values[s, j] * tvm.tirx.Select(pos == e, x[row, s // SLOTS * LANES + e],
                                                         tvm.tirx.const(0.0, "float32")), axis=[s, e])

        out = te.compute((self.m, self.n), product, name="C", attrs={TASK_ANNOTATION: self.key})
        return [x, values, codes, out]

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return apply_nm_perm(sch, self.space, config, epilogue)


FAMILY = register_family(OpFamily(
    "nm_perm", "2:4 sparse weights at few rows: inputs picked in registers (vpermps, AVX-512)",
    tasks={"nm_perm_dense": decoded_task(NMPermDenseTask, "MxNxKxNNxMM", extra=lambda d: {"n": d[0], "m": d[1]},
                                         summary="2:4 sparse weights, few rows: 16 outputs' inputs per vpermps")},
    schedules="tvmopt.schedules.nm_perm"))
