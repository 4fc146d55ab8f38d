"""What the compressed dense ops share: ``Y[m, n] = sum_k X[m, k] * W(k, n)`` where W is decoded
from compact arrays *inside* the reduction, so the dense weight never exists in memory.

Each op (one file each: ``binary_dense``, ``shift_dense``, ``ternary_dense``, ``nm_dense``,
``hashed_dense``, ``codebook_dense``) says how its arrays look in the kernel layout (vectorized
along N: arrays are [K-ish, N]), how one weight is decoded as a TIR expression, and how numpy
decodes the whole matrix (its reference). The loop nest is the GEMM's, so the schedule space
and ``apply_gemm`` are shared: the compressed ops tune the same tiling, unrolling, vectorizing
and parallel knobs, without B packing (the arrays are already laid out for the kernel).

Scales, biases and input transforms are not part of these kernels: the pass emits them as
Relax ops around the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import WorkloadError
from tvmopt.model import formats
from ..schedules.gemm import GemmShape, apply_gemm, gemm_space, largest_divisor
from ..schedules.space import Choice, Config, Space
from tvmopt.ops.registry import TaskKind
from tvmopt.ops.task import TASK_ANNOTATION, CudaTask, Task, check_sizes


#: kernel arrays [rows, N] are stored as panels [N / P, rows, P] for the first P that divides N
#: (16: the start config's strip of outputs, two AVX2 vectors)
PANEL_WIDTHS = (16, 8)

def to_panels(a: np.ndarray, p: int) -> np.ndarray:
    """[rows, N] -> [N / p, rows, p]: panel q holds outputs qp..qp+p-1 of every row, whole."""
    return np.ascontiguousarray(a.reshape(a.shape[0], -1, p).transpose(1, 0, 2))


def from_panels(a: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_panels`: [N / p, rows, p] -> [rows, N]."""
    return np.ascontiguousarray(a.transpose(1, 0, 2).reshape(a.shape[1], -1))


#: batches from this many rows start with the weight decoded once per tile (``decode=tile``)
DECODE_TILE_MIN_M = 8


@dataclass
class WeightSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class DecodedDenseTask(Task):
    key: str
    m: int
    n: int
    k: int
    params: dict = field(default_factory=dict)

    family = ""
    #: CUDA: buffers read with a data-dependent index (never staged in shared memory)
    cuda_unstaged: tuple[str, ...] = ()

    def __post_init__(self):
        self.params = {**self.default_params(), **self.params}
        self.shape = GemmShape(self.m, self.n, self.k_eff)
        space = gemm_space(self.shape, packable=False, name=f"{self.family}-llvm", heuristic_start=True)
        if self.decodes_tiles:
            # where the weight is decoded: inside the product (once per row tile), or into a
            # [k1, n2*n3] tile per (m1, n1, k0) step that every row of the step then reads
            space = Space(space.name, space.knobs + (Choice("decode", ("inline", "tile")),),
                          start=space.initial() + ("tile" if self.m >= DECODE_TILE_MIN_M else "inline",))
        overrides = self.start_overrides()
        if overrides:
            start = space.replaced(space.initial(), overrides)
            if space.contains(start):
                space = type(space)(space.name, space.knobs, start=start)
        self.space = space
        self.flops = 2.0 * self.m * self.n * self.k      # dense-equivalent, comparable with dense

    @property
    def decodes_tiles(self) -> bool:
        """Whether the space has the ``decode`` knob: ops whose term is ``x * weight`` (the
        weight alone can be decoded into a tile) with more than one row to reuse it."""
        return type(self).te_term is DecodedDenseTask.te_term and self.m > 1

    # ---- kernel layout: panels ----
    @property
    def panel(self) -> int | None:
        """Panel width P: arrays indexed [row, output] are stored [N / P, rows, P], so a strip
        of P outputs streams one contiguous block instead of one short piece per row of a
        [rows, N] array (a 4 KiB stride: a new page per row). On Zen 3 at 1x4096x4096 this made
        binary_dense 2.2x, ternary 1.6x and shift up to 2.3x faster. None: N has no such divisor;
        the arrays stay [rows, N]."""
        return largest_divisor(self.n, PANEL_WIDTHS, None)

    def _paneled(self, spec: WeightSpec) -> bool:
        return self.panel is not None and len(spec.shape) == 2 and spec.shape[1] == self.n

    def kernel_shape(self, spec: WeightSpec) -> tuple[int, ...]:
        p = self.panel
        return (self.n // p, spec.shape[0], p) if self._paneled(spec) else tuple(spec.shape)

    def to_kernel(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays in the op's logical layout (``weight_specs``) -> the kernel's (panels)."""
        return [to_panels(a, self.panel) if self._paneled(s) else a for a, s in zip(arrays, self.weight_specs())]

    def logical(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The inverse of :meth:`to_kernel`."""
        return [from_panels(a) if self._paneled(s) else a for a, s in zip(arrays, self.weight_specs())]

    # ---- what an op defines ----
    def with_params(self, params: dict) -> "DecodedDenseTask":
        return type(self)(self.key, self.m, self.n, self.k, params={**self.params, **params})

    def default_params(self) -> dict:
        return {}

    def start_overrides(self) -> dict:
        """Knob values that replace the generic GEMM heuristic start for this op.

        - Batches of ``DECODE_TILE_MIN_M`` rows or more decode a [128, 16] weight tile (one
          panel) once and run every row over it (``decode=tile``, all rows in m2 x m3, n3 = 16):
          on Zen 3 at 64x1024x1024 this took shift_dense from 0.28x to 1.39x numpy, ternary
          from 0.35x to 1.30x, hashed from 0.09x to 0.91x.
        - Otherwise 16 outputs per step (one panel) and an inner K block of 8, unrolled, so
          each field's bit offset (``k % per_byte``) is a constant: at 1x4096x4096, ternary ran
          1.2x faster than with 32 outputs and 2.5x faster than with 64 (register spills), and
          shift about 2x faster than the GEMM heuristic's K block of 256."""
        from tvmopt.schedules.isa import current

        m, n, k = self.m, self.n, self.k_eff
        if self.decodes_tiles and m >= DECODE_TILE_MIN_M:
            # 8 rows by one 16-output panel on AVX-512 (8 of its 32 registers accumulate), 4 by
            # 16 on AVX2; a tile two panels wide (n2 = 2) reads two panels per k step and ran
            # 0.35 to 0.55x the dense start on Zen 5 at 16x1024x1024 where one panel ran 1.3 to
            # 1.5x (AVX2 code on the same machine: 0.85x against 1.45x)
            m3 = largest_divisor(m, (8, 4, 2) if current().lanes >= 16 else (4, 2))
            n3 = largest_divisor(n, (16, 8), None)
            k1 = largest_divisor(k, (128, 64, 32, 16, 8), None)
            if n3 is None or k1 is None:
                return {}
            n2 = 1
            n0 = 2 if (n // (n3 * n2)) % 2 == 0 else 1
            return {"tile_m": (1, 1, m // m3, m3), "tile_n": (n0, n // (n0 * n2 * n3), n2, n3),
                    "tile_k": (k // k1, k1), "unroll": 16, "decode": "tile"}
        n3 = largest_divisor(n, (16, 8), None)
        k1 = largest_divisor(k, (8, 4), None)
        if n3 is None or k1 is None:
            return {}
        n0 = 2 if (n // n3) % 2 == 0 else 1
        return {"tile_n": (n0, n // (n0 * n3), 1, n3), "tile_k": (k // k1, k1), "unroll": 64}

    @property
    def k_eff(self) -> int:
        """Length of the kernel's reduction loop."""
        return self.k

    def weight_specs(self) -> list[WeightSpec]:
        raise NotImplementedError

    def random_weights(self, rng: np.random.Generator) -> list[np.ndarray]:
        raise NotImplementedError

    def dense_weight(self, arrays: list[np.ndarray]) -> np.ndarray:
        """numpy: the [K, N] float32 weight the arrays encode."""
        raise NotImplementedError

    def te_term(self, x, tensors, i, kk, j):
        """TIR expression of one reduction term at (row i, reduction index kk, column j)."""
        return x[i, kk] * self.te_weight(tensors, kk, j)

    def te_weight(self, tensors, kk, j):
        raise NotImplementedError

    def te_prologue(self, x):
        """Optional stages computed from X before the product (e.g. bit packing)."""
        return x

    def te_stages(self, tensors: list) -> list:
        """Optional stages computed from the weight arrays, appended to the tensors ``te_weight``
        reads (e.g. hashes computed for a tile of blocks at once); scheduled by
        ``_schedule_prologue``."""
        return tensors

    # ---- shared ----
    def make_inputs(self, rng):
        """X and the weight arrays in the kernel's layout."""
        return [rng.uniform(-1, 1, size=(self.m, self.k)).astype("float32")] + self.to_kernel(self.random_weights(rng))

    def reference(self, inputs):
        x, *arrays = inputs
        w = self.dense_weight(self.logical(arrays))
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)

    def tolerance(self):
        return 1e-4, 1e-5 * max(1.0, self.k ** 0.5)

    def numpy_product(self, inputs):
        """numpy's fp32 product with the weight decoded once, ahead of the timing."""
        x, *arrays = inputs
        w = np.ascontiguousarray(self.dense_weight(self.logical(arrays)), dtype=np.float32)
        return lambda: x @ w

    def compute(self):
        from tvm import te

        x = te.placeholder((self.m, self.k), "float32", name="X")
        specs = self.weight_specs()
        raw = [te.placeholder(self.kernel_shape(s), s.dtype, name=s.name) for s in specs]
        # ops index every array as [row, output]; panels are read through a view
        tensors = self.te_stages([_PanelView(t, self.panel) if self._paneled(s) else t for t, s in zip(raw, specs)])
        operand = self.te_prologue(x)
        kk = te.reduce_axis((0, self.k_eff), name="k")
        if self.decodes_tiles:
            w = te.compute((self.k_eff, self.n), lambda r, j: self.te_weight(tensors, r, j), name="W")
            out = te.compute((self.m, self.n), lambda i, j: te.sum(operand[i, kk] * w[kk, j], axis=kk), name="C",
                             attrs={TASK_ANNOTATION: self.key})
        else:
            out = te.compute((self.m, self.n),
                             lambda i, j: te.sum(self.te_term(operand, tensors, i, kk, j), axis=kk), name="C",
                             attrs={TASK_ANNOTATION: self.key})
        return [x, *raw, out]

    def primfunc(self, config: Config | None = None):
        """The scheduled PrimFunc (``config`` None: the space's initial config)."""
        import tvm
        from tvm import te

        func = te.create_prim_func(self.compute()).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("C"), config)
        return sch.mod["main"]

    #: the pass emits these kernels unscheduled: scale, bias and activation run in the write-back
    fuses_epilogue = True

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """Schedule the kernel's stages in ``sch`` (its own function, or the one Relax fused it
        into): the weight decoded inline or per tile, the product, the prologue stages."""
        config = self.space.initial() if config is None else config
        decode = self.space.as_dict(config).get("decode", "inline") if self.decodes_tiles else None
        if decode == "inline":
            sch.compute_inline(sch.get_sblock("W"))
        leftover = apply_gemm(sch, self.shape, self.space, config, epilogue)
        if decode == "tile":
            self._decode_tile(sch)
        self._schedule_prologue(sch)
        return leftover

    @staticmethod
    def _decode_tile(sch) -> None:
        """Decode W at C's k0 loop: a [k1, n2*n3] tile per (m1, n1, k0) step, its columns
        vectorized, read by every row of the step."""
        block = sch.get_sblock("W")
        # C's loops end with k0 m2 n2 k1 m3 n3 (apply_gemm keeps extent-1 splits)
        sch.compute_at(block, sch.get_loops(sch.get_sblock("C_update"))[-6], preserve_unit_loops=True)
        loops = sch.get_loops(block)
        sch.vectorize(loops[-1])

    def _schedule_prologue(self, sch) -> None:
        """Schedule the blocks other than C (default: nothing to do)."""

    def schedule(self, config: Config, target):
        import tvm

        return tvm.IRModule({"main": self.primfunc(config)})


class _PanelView:
    """``view[row, j]`` reads ``tensor[j // P, row, j % P]`` of a panel-layout placeholder."""

    def __init__(self, tensor, width: int):
        self.tensor, self.width = tensor, width
        self.dtype = tensor.dtype

    def __getitem__(self, index):
        row, j = index
        return self.tensor[j // self.width, row, j % self.width]


class LookupTableMixin:
    """Kernels that read their weights through per-byte tables of partial sums of X (as in
    LUT-GEMM / BiQGEMM). The weight array holds ``per_byte`` weights in each byte, [ceil(K /
    per_byte), N]. For every group g of ``per_byte`` inputs the prologue builds
    ``T[i, g, b] = sum_j byte_term(b, j, x[i, g * per_byte + j])`` for all 256 byte values b,
    once per row and shared by all N outputs; then ``Y[i, n] = sum_g T[i, g, w[g, n]]`` costs one
    load and one add per byte of weights. Mix in before the op's decode task (same layout)."""

    per_byte = 8
    #: the tables are built per row in a prologue that the CUDA GEMM space does not schedule:
    #: on a GPU the layer runs the decode kernel of the same weights
    cpu_only = True

    @property
    def k_eff(self):
        return -(-self.k // self.per_byte)

    def byte_term(self, b, j, value):
        """TIR: weight ``j`` of byte value ``b`` times ``value``."""
        raise NotImplementedError

    def te_prologue(self, x):
        import tvm
        from tvm import te

        k, per = self.k, self.per_byte
        j = te.reduce_axis((0, per), name="j")

        def entry(i, g, b):
            idx = g * per + j
            value = tvm.tirx.Select(idx < k, x[i, tvm.tirx.min(idx, k - 1)], tvm.tirx.const(0.0, "float32"))
            return te.sum(self.byte_term(b, j, value), axis=j)

        return te.compute((self.m, self.k_eff, 256), entry, name="Table")

    def te_term(self, table, tensors, i, kk, j):
        return table[i, kk, tensors[0][kk, j].astype("int32")]

    def start_overrides(self):
        """Table lookups are gathers, so scalar code with a deep unroll beats vectorized gathers:
        on Zen 3, binary_lut_dense:1x4096x4096 ran 3x faster with 2 parallel strips of N,
        4 x 64 outputs per strip step and 4 groups per inner step."""
        n, groups = self.n, self.k_eff

        n0 = 2 if n % 2 == 0 else 1
        n3 = largest_divisor(n // n0, (64, 32, 16, 8, 4, 2))
        n2 = largest_divisor(n // (n0 * n3), (4, 2))
        k1 = largest_divisor(groups, (4, 2))
        return {"tile_n": (n0, n // (n0 * n2 * n3), n2, n3), "tile_k": (groups // k1, k1),
                "vectorize": False, "unroll": 64}

    def _schedule_prologue(self, sch):
        """The table: parallel over (row, group), vectorized over the 256 byte values."""
        block = sch.get_sblock("Table")
        loops = sch.get_loops(block)
        sch.parallel(sch.fuse(loops[0], loops[1]))
        sch.vectorize(loops[2])


def parse_dims(key: str, dims: tuple[int, ...], want: int, form: str) -> tuple[int, ...]:
    if len(dims) != want:
        raise WorkloadError(f"workload '{key}' needs {want} dimensions ({form})")
    return dims


def decoded_task(cls, form: str = "MxNxK", extra=None, summary: str = "") -> TaskKind:
    """The task kind of ``cls`` for keys ``<family>:MxNxK[x...]``; ``extra(dims[3:])`` -> params."""
    want = form.count("x") + 1

    def factory(key, dims):
        parse_dims(key, dims, want, f"{cls.family}:{form}")
        m, n, k = dims[:3]
        check_sizes(key, {"X": m * k, "the dense weight": k * n, "Y": m * n})
        params = extra(dims[3:]) if extra else {}
        return cls(key, *dims[:3], params=params)

    return TaskKind(factory, form, summary=summary or (cls.__doc__ or "").strip().split("\n")[0])


def cuda_view(task: "DecodedDenseTask") -> CudaTask:
    """A compressed dense task through the CUDA GEMM space (with the ``decode`` knob where its
    weight is a separate stage); buffers in ``task.cuda_unstaged`` are never staged in shared memory."""
    from tvmopt.schedules.gemm import apply_cuda_decoded, cuda_gemm_space

    if getattr(task, "cpu_only", False):
        from ..errors import CudaError
        from .task import cuda_family

        raise CudaError(f"workload '{task.key}': {task.family} is a CPU kernel; on CUDA the layer runs "
                        f"{cuda_family(task.family)}")
    space = cuda_gemm_space(task.shape, f"{task.family}-cuda", decode=task.decodes_tiles)
    return CudaTask(task, space,
                    lambda sch, c, epilogue=(): apply_cuda_decoded(sch, task.shape, space, c, task.cuda_unstaged,
                                                                   epilogue),
                    fuses_epilogue=True)


def bitfield(word, index, width: int):
    """The ``width``-bit field number ``index`` of an unsigned TIR word (little-endian), as int32.

    Narrow words are widened to 32 bits *before* shifting: x86 has no byte-wide vector shifts,
    so shifting uint8 lanes costs LLVM a word shift, a mask and a shuffle per field (on Zen 3,
    shift_dense:1x4096x4096 ran 1.45x faster once its fields were extracted in 32-bit lanes)."""
    import tvm

    dtype = "uint32" if word.dtype in ("uint8", "uint16") else word.dtype
    shifted = word.astype(dtype) >> (index * width).astype(dtype)
    return (shifted & tvm.tirx.const((1 << width) - 1, dtype)).astype("int32")


def pack_fields(values: np.ndarray, width: int) -> np.ndarray:
    """Pack int codes [L, N] (each < 2^width, width dividing 8) along axis 0 into uint8
    [ceil(L*width/8), N]: field ``r % (8/width)`` of byte ``r // (8/width)`` holds row r.

    This is :func:`tvmopt.nn.formats.pack_rows` of the transposed codes: each column's codes form
    one little-endian bit stream."""
    return np.ascontiguousarray(formats.pack_rows(np.asarray(values).T, width).T)


def unpack_fields(packed: np.ndarray, width: int, rows: int) -> np.ndarray:
    return np.ascontiguousarray(formats.unpack_rows(np.asarray(packed).T, width, rows).T)
