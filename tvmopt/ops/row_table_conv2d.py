"""Binary and ternary convolutions through lookup tables shared by a vector of output pixels
(``binary_rowlut_conv2d``, ``ternary_rowlut_conv2d``): the row-table product of
tvmopt/ops/row_tables.py with the convolution's output pixels as its rows and (c, kh, kw) as its
reduction. The table stage reads the image itself (the window of each pixel, zero outside the
padding), one block of pixels and input channels at a time, so no im2col matrix is ever stored;
the output is written NCHW with the epilogue (scale, bias, ReLU, residual add) inlined.

Key: the ``conv2d:`` key's nine dimensions, ``NxCxHxWxOxKHxKWxSxP``. The arrays are the dense
row-table op's for the weight seen as ``[K = C*KH*KW, N = O]`` (for binary weights, those of
``binary_dense`` and ``binary_conv2d``), so one compact form serves every kernel of a format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape
from ..schedules.space import Config
from .binary_dense import BinaryRowLutDenseTask
from .compressed_conv2d import DenseArraysConv
from .registry import OpFamily, TaskKind, register_family
from .task import Task, check_sizes
from .ternary_dense import TernaryRowLutDenseTask

#: task prefix -> the dense row-table op whose arrays, tables and space it uses
FORMATS = {"binary_rowlut_conv2d": BinaryRowLutDenseTask, "ternary_rowlut_conv2d": TernaryRowLutDenseTask}

#: the direct compressed conv families -> the row-table form the pass gives their large layers
#: (ternary tables, 81 entries per group, lost to the dense conv at every ResNet-18 layer:
#: ``ternary_rowlut_conv2d`` is there for ``tvmopt tune`` only)
ROW_TABLES_OF = {"binary_conv2d": "binary_rowlut_conv2d"}


@dataclass
class RowTableConv2dTask(DenseArraysConv, Task):
    key: str
    shape: ConvShape
    params: dict = field(default_factory=dict)

    fuses_epilogue = True

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        pixels = s.oh * s.ow
        # each image's pixels start a block of 16 rows, so the write-back reads whole vectors of a
        # block (blocks of 8 waste fewer rows at 7x7, 56 per image, not 64, but the lookups then
        # add one vector, not two: 1x512x7x7x512 ran 0.85x the dense conv, not 1.8x)
        self.pixels_padded = -(-pixels // 16) * 16
        # the dense row-table op of the product: its arrays, tables and space
        self.weights = FORMATS[self.family](self.key, s.n * self.pixels_padded, s.o, s.c * s.kh * s.kw,
                                            params=dict(self.params))
        assert self.weights.row_block == 16
        self.params = self.weights.params
        self.space = self.weights.space
        self.flops = 2.0 * s.n * pixels * s.o * s.c * s.kh * s.kw       # dense-equivalent

    @property
    def family(self) -> str:
        return self.key.split(":")[0]

    def with_params(self, params: dict) -> "RowTableConv2dTask":
        return type(self)(self.key, self.shape, {**self.params, **params})

    # ---- TE ----
    def compute(self, x=None):
        import tvm
        from tvm import te

        s = self.shape
        X = x if x is not None else te.placeholder((s.n, s.c, s.h, s.w), "float32", name="X")
        pixels, padded, taps = s.oh * s.ow, self.pixels_padded, s.kh * s.kw

        def element(row, kk):
            n, p = row // padded, row % padded
            c, t = kk // taps, kk % taps
            ih = p // s.ow * s.stride - s.pad + t // s.kw
            iw = p % s.ow * s.stride - s.pad + t % s.kw
            inside = [ih >= 0, ih < s.h, iw >= 0, iw < s.w] if s.pad else []
            inside += [p < pixels] if padded > pixels else []
            value = X[n, c, tvm.tirx.max(tvm.tirx.min(ih, s.h - 1), 0), tvm.tirx.max(tvm.tirx.min(iw, s.w - 1), 0)]
            return tvm.tirx.Select(tvm.tirx.all(*inside), value, tvm.tirx.const(0.0, "float32")) if inside else value

        raw, acc = self.weights.te_lookup(element, self.key)
        rb = self.weights.row_block
        out = te.compute((s.n, s.o, s.oh, s.ow),
                         lambda n, o, y, w: acc[n * (padded // rb) + (y * s.ow + w) // rb, o, (y * s.ow + w) % rb],
                         name="Out")
        return (X, raw, out)

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        return self.weights.apply(sch, block, config, epilogue)

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("C"), config)
        return sch.mod


def _kind(prefix: str) -> TaskKind:
    def factory(key: str, dims: tuple[int, ...]) -> RowTableConv2dTask:
        if len(dims) != 9:
            raise WorkloadError(f"workload '{key}' needs 9 dimensions ({prefix}:NxCxHxWxOxKHxKWxSxP)")
        n, c, h, w, o, kh, kw = dims[:7]
        check_sizes(key, {"X": n * c * h * w, "Y": n * o * max(h, 1) * max(w, 1)})
        return RowTableConv2dTask(key, ConvShape(*dims))

    what = FORMATS[prefix].family.replace("_rowlut_dense", "")
    return TaskKind(factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                    summary=f"conv2d with {what} weights through tables shared by 8 or 16 output pixels")


FAMILY = register_family(OpFamily(
    "row_table_conv2d", "binary and ternary convolutions through tables of partial sums shared by output pixels",
    tasks={prefix: _kind(prefix) for prefix in FORMATS}, schedules="tvmopt.schedules.row_tables"))
