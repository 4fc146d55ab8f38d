"""The dense GEMM family: ``gemm`` (A·B), ``dense`` (linear layers), ``bgemm`` (batched A·B)
and ``bgemm_nt`` (batched A·B^T, B given as [batch, N, K]: attention's Q·K^T reads K as the
export leaves it). Compute and references here; the schedule space is in schedules/gemm.py.

The batched kinds are the products of two activations (attention's scores and their weighted
sum of values): the pass emits them fusable, like ``dense``, so a scale after them (``/ sqrt(d)``)
runs in the write-back, and they start from the register-tile heuristic. Before, such a MatMul
was legalized by TOPI and ran on the default schedule: in two BERT-base layers (128 tokens, Zen
4) the four attention products took 15.3 ms of 35.6, where these kernels take 0.64.

``dense`` is the kernel of a linear layer whose weight is a constant: the pass stores the
weight ``W[N, K]`` transposed, as ``[K, N]`` (``to_kernel``), at compile time, so the output
vectors read contiguous weight rows without a per-call packing copy, and its space starts from
the heuristic config (no B packing below 16 rows: packing would copy the whole weight on
every call to use it a few times). ``gemm`` keeps the trivial start: it is the tuner-comparison
workload.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkloadError
from ..schedules.gemm import (GemmShape, apply_gemm, dense_panel, gemm_space, heuristic_config, largest_divisor,
                              panel_config)
from ..schedules.space import Config, Space
from tvmopt.ops.registry import OpFamily, TaskKind, register_family
from tvmopt.ops.task import TASK_ANNOTATION, CudaTask, Task, check_sizes


#: dense kernels with at least this many rows start with B packed (the copy is amortized), where
#: they do not stream the weight (below)
DENSE_PACK_MIN_M = 16
#: the streaming start holds up to this many rows, all of them inside each block of weight rows
#: (m1 = 1), so the weight is read once per call. On AVX2 (4 x 16 register tiles), measured on a
#: Zen 4 with AVX-512 hidden: 2.1x (16 x 1024 x 1024) to 4.7x (16 x 4096 x 4096) and 2.3x
#: (128 x 4096 x 4096) faster than the blocked start, which re-read the whole weight for every 4
#: rows; at 128 x 768 x 3072 within 10%. AVX-512 (8 x 32 tiles) streams every product: larger ones
#: in blocks of this many rows (m1 = M / 128), each block streaming the weight. Measured on an
#: Intel Xeon (rocketlake, 2 cores) against torch's MKL in the same run, the streaming start
#: against the blocked one (K blocks of 256, B packed from 64 rows): 16 x 4096 x 4096 1.51x torch
#: (was 0.43x), 128 x 768 x 3072 0.81x (0.53x), 128 x 3072 x 768 0.90x (0.53x), 2048 x 3072 x 768
#: 0.74x (0.50x) (benchmarks/heuristics.py; /tmp experiments of session 35)
STREAM_MAX_M = 128
#: the streaming start's accumulator (rows x a parallel strip's outputs) is split into this many
#: bytes at most (n1 blocks), so it stays in L2
STREAM_ACCUMULATOR_BYTES = 512 * 1024
#: the streaming start's K block (the weight rows read per step of the register tile): 16 on
#: AVX-512 (1.4 to 2x faster than 4 on the Xeon at 16 x 4096 x 4096 and 128 x 768 x 3072; 8 and
#: 32 in between), 4 on AVX2 (Zen 4)
STREAM_K_BLOCK = {True: (16, 8, 4, 2, 1), False: (4, 2, 1)}


def to_panels(w: np.ndarray, panel: int) -> np.ndarray:
    """A ``[K, N]`` weight as ``[N / panel, K, panel]`` (as is where ``panel`` is 0)."""
    if not panel:
        return w
    k, n = w.shape
    return np.ascontiguousarray(w.reshape(k, n // panel, panel).transpose(1, 0, 2))


def from_panels(w: np.ndarray, panel: int) -> np.ndarray:
    """The inverse of :func:`to_panels`."""
    if not panel:
        return w
    blocks, k, p = w.shape
    return np.ascontiguousarray(w.transpose(1, 0, 2).reshape(k, blocks * p))


class _TorchMatmul:
    """torch.matmul on the same inputs (for speed comparisons in the same run)."""

    def __init__(self, operand):
        # operand: the task's conversion of the kernel's weight to the matmul's right operand
        self.operand = operand

    def prepare(self, inputs):
        import torch

        return torch.from_numpy(inputs[0]), torch.from_numpy(self.operand(inputs[1], contiguous=True))

    def __call__(self, tensors):
        import torch

        with torch.no_grad():
            return torch.matmul(*tensors)


@dataclass
class GemmTask(Task):
    key: str
    shape: GemmShape

    def __post_init__(self):
        self.space = gemm_space(self.shape)
        if self.shape.panel:
            self.space = Space(self.space.name, self.space.knobs, start=panel_config(self.shape, self.space))
        elif self.key.startswith("dense:"):
            s = self.shape
            from ..schedules.isa import current

            wide = current().lanes >= 16
            tm, tn, tk, *rest = heuristic_config(s, self.space)
            pack = s.mp >= DENSE_PACK_MIN_M
            if wide or s.mp <= STREAM_MAX_M:
                # stream the weight row by row (a K block of a few rows at a time) with all of a
                # strip's outputs for a block of rows accumulated in cache; K-deep column strips of
                # a [K, N] weight touch one page per row and ran 3x slower (dense:1x4096x9216)
                m3 = tm[3]
                m2 = largest_divisor(s.mp // m3, range(STREAM_MAX_M // m3, 0, -1))
                rows = m2 * m3
                n0, n3 = tn[0], tn[3]
                strips = s.np // (n0 * n3)
                n1 = next(d for d in range(1, strips + 1)
                          if strips % d == 0 and rows * (strips // d) * n3 * 4 <= STREAM_ACCUMULATOR_BYTES or d == strips)
                tn = (n0, n1, strips // n1, n3)
                tm = (1, s.mp // rows, m2, m3)
                k1 = largest_divisor(s.k, STREAM_K_BLOCK[wide])
                tk = (s.k // k1, k1)
                pack = False               # the weight is read once per block of rows: no packing copy
            self.space = Space(self.space.name, self.space.knobs, start=(tm, tn, tk, pack, *rest[1:]))
        elif self.shape.batched:
            self.space = Space(self.space.name, self.space.knobs, start=heuristic_config(self.shape, self.space))
        s = self.shape
        self.flops = 2.0 * s.batch * s.m * s.n * s.k
        self.torch_reference = _TorchMatmul(self._operand)

    def to_kernel(self, arrays):
        """The pass's [N, K] linear weight in the kernel's layout: [K, N] (zero columns appended
        up to ``GemmShape.np``), or its panels."""
        if not self.key.startswith("dense:"):
            return list(arrays)
        return [to_panels(self._pad_cols(np.ascontiguousarray(arrays[0].T)), self.shape.panel)]

    def _pad_cols(self, b: np.ndarray) -> np.ndarray:
        """A [K, N] weight with zero columns appended up to the columns the kernel computes."""
        extra = self.shape.np - self.shape.n
        if self.shape.batched:       # an activation: padded inside the kernel (pad_b)
            return b
        return np.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, extra)]) if extra else b

    def _input_shapes(self, n: int | None = None):
        s = self.shape
        n = s.n if n is None else n
        lead = (s.batch,) if s.batched else ()
        b_shape = (n, s.k) if s.transposed_b else (s.k, n)
        return lead + (s.m, s.k), lead + b_shape

    def make_inputs(self, rng):
        a, b = (rng.uniform(-1, 1, size=shape).astype("float32") for shape in self._input_shapes())
        return [a, to_panels(self._pad_cols(b), self.shape.panel)]

    def _operand(self, packed: np.ndarray, contiguous: bool = False) -> np.ndarray:
        """The kernel's weight as numpy's matmul takes it: out of its panels, a padded weight's zero
        columns ([K, N]) cropped, transposed back where the product is ``A @ B^T``."""
        b = from_panels(packed, self.shape.panel)
        if self.shape.np > self.shape.n and not self.shape.batched:
            b = b[..., :self.shape.n]
        b = np.ascontiguousarray(b) if contiguous else b
        return np.swapaxes(b, -1, -2) if self.shape.transposed_b else b

    def reference(self, inputs):
        return np.matmul(inputs[0], self._operand(inputs[1]))

    def numpy_product(self, inputs):
        # the weight converted once, outside the timed call: a user's numpy holds it so
        a, b = inputs[0], self._operand(inputs[1], contiguous=True)
        return lambda: np.matmul(a, b)

    def tolerance(self):
        # fp32 sums of K products in another order: error grows like sqrt(K) * eps
        return 1e-4, 1e-5 * max(1.0, self.shape.k ** 0.5)

    def compute(self):
        from tvm import te

        s = self.shape
        a_shape, b_shape = self._input_shapes(s.n if s.batched else s.np)
        p = s.panel
        A = te.placeholder(a_shape, "float32", name="A")
        B = te.placeholder((s.n // p, s.k, p) if p else b_shape, "float32", name="B")
        k = te.reduce_axis((0, s.k), name="k")
        lead_shape = (s.batch,) if s.batched else ()
        # rows padded (GemmShape.mp): the product reads A with zero rows appended; columns padded
        # (np): a weight has zero columns appended at build, an activation (batched) in a copy
        # (pad_b); a crop drops both
        rows = te.compute(lead_shape + (s.mp, s.k),
                          lambda *idx: te.if_then_else(idx[-2] < s.m, A[idx], 0.0),
                          name="pad_a") if s.mp > s.m else A
        cols = B
        if s.batched and s.np > s.n:
            axis = -2 if s.transposed_b else -1
            padded_b = list(b_shape)
            padded_b[axis] = s.np
            cols = te.compute(tuple(padded_b), lambda *idx: te.if_then_else(idx[axis] < s.n, B[idx], 0.0),
                              name="pad_b")

        def body(*idx):
            *lead, i, j = idx
            if p:
                b_val = cols[j // p, k, j % p]
            else:
                b_val = cols[(*lead, j, k)] if s.transposed_b else cols[(*lead, k, j)]
            return te.sum(rows[(*lead, i, k)] * b_val, axis=k)

        C = te.compute(lead_shape + (s.mp, s.np), body, name="C", attrs={TASK_ANNOTATION: self.key})
        if not s.padded:
            return A, B, C
        return A, B, te.compute(lead_shape + (s.m, s.n), lambda *idx: C[idx], name="crop")

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        for rest in apply_gemm(sch, self.shape, self.space, config, list(sch.get_consumers(sch.get_sblock("C"))),
                               plain_weight=True):
            sch.parallel(sch.get_loops(rest)[0])          # a crop left by a config without a write-back
        return sch.mod

    @property
    def fuses_epilogue(self) -> bool:
        # linear layers: bias and activation in the write-back; attention's products: its scale
        return self.family in ("dense", "bgemm", "bgemm_nt")

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        return apply_gemm(sch, self.shape, self.space, self.space.initial() if config is None else config, epilogue,
                          plain_weight=True)


def _make(family: str):
    def factory(key: str, dims: tuple[int, ...]) -> GemmTask:
        batched = family.startswith("bgemm")
        want = 4 if batched else 3
        if len(dims) != want:
            form = "BxMxNxK" if batched else "MxNxK"
            raise WorkloadError(f"workload '{key}' needs {want} dimensions ({family}:{form})")
        batch = dims[0] if batched else 1
        m, n, k = dims[-3:]
        check_sizes(key, {"A": batch * m * k, "B": batch * k * n, "C": batch * m * n})
        return GemmTask(key, GemmShape(m, n, k, batch=batch, batched=batched, transposed_b=family == "bgemm_nt",
                                       panel=dense_panel(m, n, k) if family == "dense" else 0,
                                       pad_rows=family != "gemm", pad_cols=family != "gemm"))

    return factory


def cuda_view(task: GemmTask) -> CudaTask:
    """The GEMM family through its CUDA space (``schedules/gemm.py``, second half)."""
    import dataclasses

    from tvmopt.schedules.gemm import apply_cuda_gemm, cuda_gemm_space

    if task.shape.panel or task.shape.pad_rows or task.shape.pad_cols:   # CPU register tiles: plain [K, N]
        task = GemmTask(task.key, dataclasses.replace(task.shape, panel=0, pad_rows=False, pad_cols=False))
    space = cuda_gemm_space(task.shape, f"{task.family}-cuda")
    return CudaTask(task, space, lambda sch, c, epilogue=(): apply_cuda_gemm(sch, task.shape, space, c,
                                                                             epilogue=epilogue),
                    fuses_epilogue=True)


FAMILY = register_family(OpFamily(
    "gemm", "dense fp32 products: matrix products, linear layers, batched products",
    tasks={"gemm": TaskKind(_make("gemm"), "MxNxK", summary="C[M,N] = A[M,K] . B[K,N]"),
           "dense": TaskKind(_make("dense"), "MxNxK",
                             summary="C[M,N] = A[M,K] . W[K,N]  (linear layers: the weight laid out [K,N] at build)"),
           "bgemm": TaskKind(_make("bgemm"), "BxMxNxK", summary="batched A . B (two activations: attention)"),
           "bgemm_nt": TaskKind(_make("bgemm_nt"), "BxMxNxK",
                                summary="batched A . B^T, B given as [B, N, K] (attention's Q . K^T)")},
    schedules="tvmopt.schedules.gemm", cuda=cuda_view))
