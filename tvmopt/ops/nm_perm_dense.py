"""2:4 sparse weights at few rows through in-register input selection (AVX-512): each output's
kept inputs are picked out of a register of 16 inputs by ``vpermps`` and multiplied by their
kept values, so the layer reads its kept values and 4-bit positions only (9 bytes per group of
4 weights against the dense weight's 16) and decodes nothing. Schedule, space and tensor
intrinsic: schedules/nm_perm.py.

Logical arrays: ``nm_decode_dense``'s (kept values [K/2, N], 2-bit positions in their group).
Kernel layout: panels of P = ``panel_width(N)`` outputs (schedules/nm_perm.py), each stored
whole: ``values`` float32 [N/P * K/2, P] (panel p's kept values [K/2, P] at rows p*K/2...),
``codes`` int32 [N/P * K/16, P]: the positions of a word's 8 kept slots within its 16 inputs
(4 bits each, slot t in bits 4t..4t+3), panel by panel the same way.
Key: ``nm_perm_dense:MxNxKx2x4`` (2:4 only; N and K multiples of 16).
"""

from __future__ import annotations

import numpy as np

from tvmopt.errors import WorkloadError
from tvmopt.ops.registry import OpFamily, register_family
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.schedules.nm_perm import BITS, LANES, SLOTS, apply_nm_perm, nm_perm_space, panel_width
from tvmopt.schedules.space import Config

from .decoded import decoded_task, from_panels, pack_fields, to_panels, unpack_fields
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
    @property
    def panel(self) -> int:
        """Outputs per panel of the kernel layout (schedules/nm_perm.py: a tile as wide as its
        panel reads one contiguous stream, as the decoded kernels' panels do)."""
        return panel_width(self.n)

    def kernel_shape(self, spec):
        rows = self.kept if spec.name == "values" else self.kept // SLOTS
        return (self.n // self.panel * rows, self.panel)

    def to_kernel(self, arrays):
        values, packed = arrays
        slot = np.arange(self.kept)[:, None]
        within = unpack_fields(packed, self.width, self.kept).astype(np.int64) + 4 * ((slot % SLOTS) // 2)
        return [self._panels(np.asarray(values, dtype=np.float32)), self._panels(POSITIONS.pack(within))]

    def logical(self, arrays):
        values, words = (self._unpanel(a) for a in arrays)
        return [values, pack_fields(POSITIONS.unpack(words) % 4, self.width)]

    def _panels(self, a: np.ndarray) -> np.ndarray:
        """[R, N] -> [N/P * R, P]: the decoded kernels' panels (:func:`to_panels`), stacked in
        two dimensions, so panel p is rows pR..pR+R-1."""
        return to_panels(a, self.panel).reshape(-1, self.panel)

    def _unpanel(self, a: np.ndarray) -> np.ndarray:
        return from_panels(a.reshape(self.n // self.panel, -1, self.panel))

    # ---- compute and schedule ----
    def compute(self):
        import tvm
        from tvm import te

        x = te.placeholder((self.m, self.k), "float32", name="X")
        p, words = self.panel, self.kept // SLOTS
        values = te.placeholder((self.n // p * self.kept, p), "float32", name="values")
        codes = te.placeholder((self.n // p * words, p), "int32", name="codes")
        s = te.reduce_axis((0, self.kept), name="s")
        e = te.reduce_axis((0, LANES), name="e")
        mask = (1 << BITS) - 1

        def product(row, j):
            pos = (codes[j // p * words + s // SLOTS, j % p] >> ((s % SLOTS) * BITS)) & mask
            return te.sum(values[j // p * self.kept + s, j % p] * tvm.tirx.Select(pos == e, x[row, s // SLOTS * LANES + e],
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
