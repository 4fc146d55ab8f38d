"""Never slower than dense: the compressed kernel of a layer is used only where it is measured
(records) or predicted to be at least as fast as the dense kernel of the same layer.

``DetectOptions.kernels`` sets the policy:

- ``auto`` (default): when both kernels have a record for the target (``tvmopt tune`` writes
  them; ``--kernels measure`` does too), the faster one; otherwise the prediction below.
- ``measure``: time both kernels now (their best record's config or the space's start) and use
  the faster; the timings are appended to the records, so the next build reads them.
- ``compressed`` / ``dense``: forced.

The prediction comes from the per-layer sweep of ``benchmarks/kernel_choice.py --sweep`` (each
kernel on its default config against the dense kernel of the same layer, one quiet run; tables
in BENCHMARKS.md, one per vector width: the thresholds below are the AVX-512 table's, from Zen 5,
with the exceptions measured since: ``TILE_DECODE_DENSE``, the AVX-512 convolution rules). XNOR-popcount and the Walsh-Hadamard transforms do less arithmetic than a dense
product and win at every size, as does ``int8_dense`` (quantized activations, where the CPU has
VNNI: 4 bytes of K per lane per instruction; on AVX2 ``AVX2_INTEGER``; on Zen 4, ``benchmarks/int8.py``:
MatMuls 3.6 to 13.8x the fp32 product of the dequantized input, one-layer QDQ convolutions over a
uint8 im2col 1.2 to 3.2x the fp32 direct conv, the model's entry quantize and transposes
included, from 16 channels on 32 x 32 maps to 512 on 7 x 7, batch 1 and 16). At one row the decoded kernels (binary, ternary, shift, 2:4
decoded to dense tiles) win once the weight no longer fits in cache (4096 x 4096: 1.1x against
the AVX-512 dense start on Zen 5) and lose while it does (256 and 1024: 0.7 to 0.8x); from 8
rows they decode a weight tile once for all rows and win from 1024 x 1024 (1.1 to 1.5x; 2.7 to
3.0x at 4096); from 32 rows, where the dense kernel reads its weight in panels, they win only
on weights of 8M and more at up to 64 rows (``PANEL_DECODE_MIN_WEIGHTS``). HashedNets kernels lose at every size measured and are predicted dense;
block-hashed ones (one hash per 16 weights) win at up to 4 rows from 16M weights; codebook
wins only at 16 rows of 4096 x 4096. Binary and ternary layers of 8 rows or more run on tables
of partial sums shared by a vector of rows (one add per 4 weights: fewer operations than dense),
predicted faster from ``ROW_TABLE_MIN_WEIGHTS`` (large binary convolutions too). A compressed convolution is im2col plus a GEMM and
loses to the direct dense convolution. A direct compressed convolution (``binary_conv2d``...,
weight decoded in blocks inside the conv's loops) costs its decode once per image (or per call
for a batch) on top of the dense conv's FMAs, so it ties with the dense conv where the weight
serves enough output pixels, or where the dense weight outgrows L2: predicted from
``DIRECT_CONV_MIN_ROWS`` and ``DIRECT_CONV_MIN_WEIGHTS`` (same speed, weights 6 to 32x smaller);
on AVX-512 from the ``DIRECT_CONV_AVX512_*`` rules and, for ternary and shift layers whose start
decodes a small weight in each thread, ``DIRECT_CONV_THREAD_MIN_MACS``. ``xnor_conv2d`` does less arithmetic and is always chosen.
On AVX-512, binary and ternary layers (and binary channels-last convolutions; where AVX-512 is
double-pumped, as on AMD Zen 4, ternary ones too) run tables of partial sums held in registers
instead, predicted faster from ``PERM_MIN_WEIGHTS``; there 2:4 layers pick their inputs in
registers at any row count (``NM_PERM_MAX_ROWS``' note).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..schedules.conv2d import ConvShape
from ..schedules.winograd import WIDE_BLOCKS_FROM_BYTES, transformed_bytes

POLICIES = ("auto", "measure", "compressed", "dense")

#: families that do less (or cheaper) arithmetic than the dense product, with why: chosen at any size
LESS_ARITHMETIC = "less arithmetic than dense"
CHEAPER = {"xnor_dense": LESS_ARITHMETIC, "xnor8_dense": LESS_ARITHMETIC, "xnor_conv2d": LESS_ARITHMETIC,
           "fastfood": LESS_ARITHMETIC, "hadamard": LESS_ARITHMETIC,
           "int8_dense": "integer products: 4 bytes of K per lane per VNNI instruction"}
#: ``int8_dense`` without VNNI (AVX2: ``vpmaddubsw``, or ``vpmaddwd`` on int16 weights where int8
#: pairs would saturate) is chosen too (Zen 4 running AVX2 code, whole models against their build
#: with the fp32 kernels auto picks otherwise: ResNet-18 ternary-q8 1.58x, ResNet-20 ternary-q8
#: 1.11x, VGG shift-q8 1.37x, ResNet-18 of quantize_static QDQ u8 with int16 weights 1.17x;
#: ONNX Runtime's quantized BERT-base layers 1.5 to 1.8x tvmopt's fp32 build)
AVX2_INTEGER = "integer products: 2 of K per int16 lane (vpmaddubsw, or vpmaddwd on int16 weights)"
#: ... except small transforms at few rows: on the Intel Xeon the bundled digits models' 256-wide
#: Fastfood layers ran 0.87x (MLP) and 0.92x (CNN) their dense build at batch 1, 0.76x / 0.81x at
#: batch 4, 1.23x / 0.97x at 8 and 1.23x / 1.01x at 16 (``benchmarks/kernel_choice.py``, same runs;
#: Zen 5: 0.97 to 1.02x at batch 1): a dense 256 x 256 product (256 KiB) stays in L2, the transform makes
#: log2(n) passes per H. Records of both kernels, where there are some, decide instead. AVX-512
#: only: on a Zen 3 (AVX2, half the FMA width) the transforms won at batch 1, the whole MLP
#: 1.61 to 1.94x and the CNN 1.27 to 1.42x its dense build (``kernel_choice_avx2``, 2026-12-06)
SMALL_TRANSFORM_MAX_WEIGHTS = {"fastfood": 1 << 16, "hadamard": 1 << 16}
SMALL_TRANSFORM_MIN_ROWS = 8
#: decoded kernels that beat dense once the weight outgrows the caches: the smallest weight
#: (N*K) from which they are predicted faster (the sweep: lost at 1024^2, won at 4096^2)
MEMORY_BOUND_MIN_WEIGHTS = {"binary_dense": 1 << 22, "binary_lut_dense": 1 << 22,
                            "ternary_dense": 1 << 22, "ternary_lut_dense": 1 << 22, "shift_dense": 1 << 22,
                            "nm_decode_dense": 1 << 22,
                            # block hashing (HashedLinear(block=16)), Zen 4, start configs against
                            # the dense start, paired rounds: one hash per 16 weights and a vector
                            # load from the table of values; 1.8 to 2.1x at 1 to 4 rows of 4096 x
                            # 4096, but 0.4 to 0.9x at 1 row of 768 x 3072 to 4096 x 2048, whose
                            # dense weight the caches still hold between calls
                            "hashed_block_dense": 1 << 24}
#: ... and only while its table of values stays in the caches: each block of 16 weights reads a
#: cache line at a random place, as many lines as the dense weight has, so a table read from
#: DRAM saves nothing. Three 4096 x 4096 layers cycled (an MLP), 1 row, Zen 4, against the dense
#: start: tables of 1 MiB each (1/64 of the weights) 3.96x, 2 MiB 1.98x, 4 MiB 1.17x, 8 MiB (1/8,
#: HashedNets' usual rate) 1.11x; one 8 MiB table alone (it stays in L3) 2.6x
HASHED_BLOCK_MAX_TABLE_BYTES = 2 << 20
#: direct compressed convolutions: the output pixels per weight decode (N*OH*OW: a batch decodes
#: once per call) from which each format ran within 5% of the dense conv on ResNet-18's 3x3
#: layers (benchmarks/conv_kernels.py, Zen 5, NCHW): binary and ternary at every layer (0.94x
#: and above at 7x7); shift from 14x14 (0.92x at 7x7, batch 1); 2:4, hashed and codebook from
#: 56x56 (2:4 fell to 0.88x at 16 x 7x7, hashed and codebook to 0.54 to 0.64x at 1 x 7x7).
#: Channels last on AVX2 (``conv_kernels_avx2_nhwc``, Zen 4) binary and ternary lost at 8x8
#: (ResNet-20's 1x64x8x8x64: 0.76 to 0.83x) and tied from 16x16 (0.95 to 1.02x): from 256
DIRECT_CONV_MIN_ROWS = {"binary_conv2d": 256, "ternary_conv2d": 256, "shift_conv2d": 196, "nm_conv2d": 3136,
                        "hashed_conv2d": 3136, "codebook_conv2d": 3136}
#: ... or from this many weights, whatever the pixels: the dense conv then streams a weight
#: larger than L2 for few pixels, and the decoded one is 6 to 32x smaller (ResNet-18's
#: 1x512x7x7x512, 49 pixels: binary, ternary, shift and 2:4 1.08 to 1.28x the dense conv
#: channels last, 0.87 to 0.94x NCHW on Zen 4 and Zen 5); hashed and codebook lost there
DIRECT_CONV_MIN_WEIGHTS = {"binary_conv2d": 1 << 18, "ternary_conv2d": 1 << 18, "shift_conv2d": 1 << 18,
                           "nm_conv2d": 1 << 20}
#: ... and, for 2:4 (whose decode selects each kept value and only halves the weight), from this
#: many output pixels: VGG's CIFAR layers at batch 1 (2x2 to 8x8 maps, 0.3 to 2.4M weights)
#: made the whole network 0.83x its dense build with them, 0.98x without (Zen 4, AVX2)
DIRECT_CONV_WEIGHTS_MIN_ROWS = {"nm_conv2d": 49}
#: AVX-512: the rules above were measured against AVX2 code (Zen 4) and NCHW (Zen 5); with the
#: AVX-512 dense conv's start at its speed (0.95-1.18x onnxruntime on the Intel Xeon), a direct
#: compressed conv only pays where the weight is large and many pixels share each decoded tile
#: (``conv_kernels_xeon_nhwc``, Intel Xeon, channels last, start configs): at batch 1 binary,
#: ternary, shift and 2:4 ran 0.4 to 0.98x the dense conv on every ResNet-20, VGG and ResNet-18
#: layer except binary and ternary on 512x512x3x3 weights (2.4M: 0.96 to 1.22x); at batch 16
#: 1.0 to 1.12x from 128 channels at 8x8 (256 pixels and more, 0.3M weights and more), 0.51 to
#: 0.97x on ResNet-20's 16 to 64-channel layers. Whole networks agreed: ResNet-20 ran 0.84 to
#: 0.94x its dense build at batch 1 with the AVX2 rules, VGG with shift 0.86x.
#: So on AVX-512: from these many weights at any pixel count ...
DIRECT_CONV_AVX512_MIN_WEIGHTS = {"binary_conv2d": 1 << 21}
#: ... or from ``DIRECT_CONV_MIN_WEIGHTS`` weights and this many output pixels (ternary and shift
#: from 196: ResNet-18's 14x14 layers, 0.94 to 1.02x one layer alone; binary NCHW convs keep 256,
#: 1x256x14x14x256 ran 0.86x)
DIRECT_CONV_AVX512_MIN_ROWS = {"ternary_conv2d": 196, "shift_conv2d": 196}
DIRECT_CONV_AVX512_DEFAULT_MIN_ROWS = 256
#: ... or, for ternary and shift, from this many weights and output pixels (ResNet-18's 7x7
#: stage: one layer alone ternary 0.94 to 0.97x, shift 0.84 to 0.90x the dense conv; in the whole
#: network, where the dense conv streams 9 MiB of weights per layer past the activations, the
#: compressed build tied, see below). VGG's 4x4 maps too (16 pixels): one layer alone, warm, they
#: lose (Ice Lake Xeon, 1x512x4x4x512: ternary 0.81x, shift 0.71x), but in the whole VGG at batch 1,
#: its 2x2 layers on im2col (``few_pixels``), its two 4x4 layers compressed ran 1.12x (ternary) and
#: 0.99x (shift) the build that kept them dense (interleaved builds, 25 rounds; the dense conv reads
#: 4.5 and 9 MiB cold for 16 pixels). An earlier measurement, with the 2x2 layers on the direct
#: compressed conv, had the whole VGG 0.90x (ternary) and 0.85x (shift) its dense build. So on a
#: full-width core from ``FULL_WIDTH_LARGE_MIN_ROWS`` pixels (Zen 4, unmeasured, keeps 49)
DIRECT_CONV_AVX512_LARGE = {"ternary_conv2d": (1 << 20, 49), "shift_conv2d": (1 << 20, 49)}
FULL_WIDTH_LARGE_MIN_ROWS = 16
#: ... or where the compressed conv's start decodes its small weight in each thread, inside the
#: conv's parallel loop (``decode = thread``: one image, ``ROWS_MIN_PIXELS`` and
#: ``THREAD_MAX_BYTES`` in ops/compressed_conv2d.py), from this many multiply-adds. One layer at a
#: time (Intel Xeon, paired rounds) ternary and shift ran 0.99 to 1.02x the dense conv on
#: ResNet-18's 56x56 and 28x28 layers, 0.96 to 1.02x on its 1x1 shortcuts (6.4M), 0.92 to 0.98x on
#: ResNet-20's layers (2.4M each); whole ResNet-20 with every layer compressed read 0.91 to 0.95x its
#: dense build, so its layers stay dense. Whole ResNet-18 at batch 1 with every 3x3 layer compressed:
#: ternary 1.03x, shift 1.01x its dense build, at /15.9 and /6.4 the compressed layers' weight bytes
DIRECT_CONV_THREAD_MIN_MACS = 1 << 22
#: the formats this rule and the next apply to (their decode is a few vector operations per 16
#: weights; binary layers run register tables instead)
DIRECT_CONV_AVX512_CHEAP_DECODE = ("ternary_conv2d", "shift_conv2d")
#: ... or, where AVX-512 is double-pumped (Zen 4), for ternary layers too narrow for the register
#: tables (``TERNARY_PERM_CONV_MIN_CHANNELS``), from this many output pixels: ResNet-20's 16-channel
#: layers ran 0.97 to 0.99x the dense conv decoded (1x16x32x32x16, its stride-2 1x16x32x32x32 and
#: both at batch 16; start configs, 5 paired rounds), within never-slower's noise, for 2 bits a
#: weight where dense stores 32; not where the dense conv has a tuning record and the decoded one
#: none (the bundled digits CNN's 64x16x8x8x32 at batch 64: 0.98x its tuned dense conv)
DOUBLE_PUMPED_DIRECT_CONV_MIN_ROWS = {"ternary_conv2d": 256}
#: ... and shift convolutions of a batch from this many output pixels, whatever their kernel (start
#: configs, paired, Zen 4): ResNet-18's strided 1x1 shortcuts at batch 16, 16x64x56x56x128 0.99
#: to 1.01x the dense conv and 16x128x28x28x256 0.96 to 0.98x (16x256x14x14x512, 784 pixels:
#: 0.87x); ResNet-20's strided 3x3 layers at batch 16, 16x16x32x32x32 0.99 to 1.06x,
#: 16x32x16x16x64 (1024 pixels) 0.97x. Not one image: SqueezeNet's 1x1 layers of 1,000 to 2,000
#: weights on 55x55 maps made its shift export 0.94x its dense build at batch 1
DOUBLE_PUMPED_BATCH_MIN_ROWS = {"shift_conv2d": 1024}
#: ... or, for ternary and shift, from this many output pixels per decoded weight (a batch decodes
#: once per call) and this many weights: one layer at a time at batch 16 (Intel Xeon,
#: ``conv_kernels_xeon_nhwc``) they ran 0.95 to 1.02x the dense conv from 16 x 16x16 pixels,
#: 0.89 to 0.97x at 16 x 8x8. Whole ResNet-18 at batch 16 with its 56x56 and 28x28 layers
#: compressed too: ternary 1.01x its dense build at /13.1 (was /7.5), shift 0.96x at /5.9 (was
#: /4.6); ResNet-20's small first stages (2K and 9K weights) ran 0.94x and saved nothing (/1.3)
DIRECT_CONV_AVX512_MANY_ROWS, DIRECT_CONV_AVX512_MANY_ROWS_MIN_WEIGHTS = 4096, 1 << 15
#: ... or, in a batch, from this many multiply-adds whatever the shape: ResNet-18's three 1x1
#: stride-2 shortcuts at batch 16 (102M each: 12,544 pixels x 8K weights to 784 x 131K), one layer
#: at a time (Ice Lake Xeon, alternating rounds), ternary 1.02, 1.00 and 0.97x the dense conv,
#: shift 1.03, 1.00 and 0.98x; they had kept the suite's ResNet-18 rows at 5.42 bits a weight for
#: shift (goal 5.3) and 2.46 for ternary. ResNet-20's stride-2 3x3 layers at batch 16 (19M each:
#: 16x16x32x32x32 and 16x32x16x16x64) ran 0.97 to 1.00x (shift and ternary; at batch 1 0.86 to
#: 0.94x), so from 2^24; Zen 4 (unmeasured) keeps its rules
DIRECT_CONV_AVX512_BATCH_MIN_MACS = 1 << 24
#: from this many rows the decoded kernels decode a weight tile once for all rows
#: (``DECODE_TILE_MIN_M`` in ops/decoded.py), and win from smaller weights: at 16 rows on
#: Zen 5, binary, ternary and shift ran 1.4 to 1.5x dense at 1024 x 1024 (0.7x at 256), 2:4
#: 1.13x, codebook 1.17x at 4096 x 4096 (0.64x at 1024)
TILE_DECODE_ROWS = 8
TILE_DECODE_MIN_WEIGHTS = {"binary_dense": 1 << 20, "ternary_dense": 1 << 20, "shift_dense": 1 << 20,
                           "nm_decode_dense": 1 << 20, "codebook_dense": 1 << 22}
#: lookup tables shared by a vector of rows (ops/row_tables.py: one load and add per 4 weights
#: and 8 or 16 rows, where dense does 4 FMAs): the smallest weight (N*K) from which they are
#: predicted faster. ``kernel_choice_sweep_avx2`` (Zen 4, AVX2 code, start configs): binary
#: 1.7 to 3.9x the dense start from 1024^2 (16 and 128 rows), but 0.86x at 16 x 256^2; ternary
#: 1.06 to 1.64x from 1024^2, 0.62x at 16 x 256^2 (at 16 x 4096^2 the sweep's one-shot timing put
#: it at 1.02x against the decode kernel's 1.30x; interleaved, 1.72x against 1.34x).
#: Convolutions (``conv_kernels_avx2``, ResNet-18's 3x3 layers): binary tables 1.15 to 1.86x the
#: dense conv at 128 x 256 channels and more, batch 1 and 16, but 0.69 to 1.14x below (0.80x at
#: 16 x 128x28x28x128), so the pass keeps those on the direct ``binary_conv2d``; ternary tables
#: 0.35 to 1.22x, never given to a layer. On a real Zen 3 (AVX2 only, ``kernel_choice_sweep_avx2``
#: of 2026-12-06) binary tables won from smaller layers: 2.42x the dense start at 16 x 256^2, 2.02x
#: at 16 x 1024^2, and the whole digits MLP (256 x 64, 256 x 256, 10 x 256) at batch 16 ran 1.52 to
#: 1.64x its dense build on them (``kernel_choice_avx2``), hence binary from 16K weights
ROW_TABLE_MIN_WEIGHTS = {"binary_rowlut_dense": 1 << 14, "ternary_rowlut_dense": 1 << 18,
                         "binary_rowlut_conv2d": 1 << 18}
#: No conv row tables on AVX-512 (``conv_row_tables``). On the Intel Xeon (``row_tables_xeon``, whole networks built
#: with and without them, same runs) they made ResNet-18 binary 0.88x (batch 1) and 0.93x (16) and
#: VGG 0.79x at batch 16, 1.10x only on VGG's batch-1 maps of 4x4 to 8x8; they also hold the whole
#: graph in NCHW (no channels-last kernel), where the direct binary conv lets it go NHWC.
#: rows from which the pass gives a dense layer its row tables (fewer: the decode kernels).
#: Ternary tables lost to the ternary decode kernel at 16 rows in the whole mlp4096
#: (``benchmarks/row_tables.py``: 0.88x; the sweep: 1.02x against 1.30x at 4096^2) and won at
#: 128 (the encoder: 1.31x); 64 is between the two, unmeasured
ROW_TABLE_MIN_ROWS = {"binary_rowlut_dense": 8, "ternary_rowlut_dense": 64}
#: AVX-512: binary and ternary layers through tables held in registers (ops/perm_tables.py: one
#: ``vpermps`` / ``vpermt2ps`` and one add per 16 outputs and 4 binary / 3 ternary weights, where
#: dense does 4 / 3 FMAs): the kernel each family's layers run instead ...
PERM_TABLES_OF = {"binary_dense": "binary_perm_dense", "binary_lut_dense": "binary_perm_dense",
                  "binary_rowlut_dense": "binary_perm_dense", "binary_conv2d": "binary_perm_conv2d",
                  "ternary_dense": "ternary_perm_dense", "ternary_lut_dense": "ternary_perm_dense",
                  "ternary_rowlut_dense": "ternary_perm_dense"}
#: ... predicted faster than dense from this many weights
PERM_MIN_WEIGHTS = {"binary_perm_dense": 1 << 16, "binary_perm_conv2d": 1 << 11, "ternary_perm_dense": 1 << 16,
                    "ternary_perm_conv2d": 1 << 13}
#: ... and ternary convolutions where AVX-512 is double-pumped (AMD Zen 4: one zmm FMA per cycle,
#: the permutes on another pipe), from ``TERNARY_PERM_CONV_MIN_CHANNELS`` input channels. On Zen 4
#: (start configs of ``schedules/perm_tables.perm_conv_space`` against the dense conv's start,
#: 5 paired rounds): ResNet-18's 3x3 layers 1.30 to 1.53x at batch 1 and 16 (stride 2 included),
#: its 1x1 stride-2 shortcuts 1.05 to 1.15x, VGG's CIFAR layers 1.35 to 1.75x, ResNet-20's
#: 32- and 64-channel layers 1.28 to 1.50x, but its 16-channel ones 0.91 to 1.00x (6 groups of 3
#: for 16 channels: a word padded by 2). On the Intel Xeon the same kernel ran 0.55 to 1.17x
#: (the old start, ``PERM_CONV_CHANNELS``' note): full-width cores keep the decoded ternary conv.
#: Tables: ``perm_tables_zen4`` in BENCHMARKS.md (``benchmarks/perm_tables.py``)
PERM_CONV_DOUBLE_PUMPED = {"ternary_conv2d": "ternary_perm_conv2d"}
TERNARY_PERM_CONV_MIN_CHANNELS = 32
#: ... and, for dense layers of fewer rows than this (the shifts of a row's codes are shared by
#: fewer rows), from this many weights
PERM_FEW_ROWS, PERM_FEW_ROWS_MIN_WEIGHTS = 8, 1 << 18
#: ... except where AVX-512 is double-pumped (AMD Zen 4), whose dense FMAs run at half rate: there
#: a dense layer of up to this many rows runs the tables from this many weights. Zen 4, start
#: configs, one layer at a time (the measurer, best of 5): binary 1.95x the dense kernel at
#: 1 x 64 x 64, 3.16x at 1 x 128 x 128, 3.3x at 1 x 256 x 256, 1.42x at 4 x 256 x 256, 1.62x at
#: 16 x 256 x 64, 2.18x at 64 x 256 x 64; ternary 0.95x at 1 x 64 x 64, 1.88x at 1 x 128 x 128,
#: 2.18x at 1 x 256 x 64, 2.2x at 1 x 256 x 256 but 0.51x at 4 x 256 x 256. The bundled digits
#: MLP's binary export ran 1.19 to 1.21x faster with its layers on tables than with them dense at
#: batch 1, which the rules above had kept dense (``kernel_choice_zen4``)
PERM_DOUBLE_PUMPED = {"binary_perm_dense": (1 << 30, 1 << 12), "ternary_perm_dense": (1, 1 << 14)}
#: Layer timings on the Intel Xeon (``benchmarks/perm_tables.py``, section ``perm_tables_xeon``:
#: start configs against the dense start, paired rounds): binary dense layers 2.0 to 2.2x at 64
#: to 128 rows (64 x 1024 x 1024, the encoder's 128 x 768 x 3072 and 128 x 3072 x 768), 4.6x at
#: 16 x 4096 x 4096, 6x at 1 x 1024 x 1024 (binary_lut_dense: 1.3x), 1.9x at 16 x 256 x 256 and
#: 1.0x at 1 x 256 x 256; convolutions (channels last) 1.8 to 1.9x ResNet-18's 3x3 layers at
#: batch 1, 1.6 to 2.5x at batch 16, 1.6 to 1.8x at 32 to 64 channels on 8x8 to 32x32 maps, 1.1
#: to 1.7x on 1x1 layers, but 0.88x with 16 input channels in 32-channel words (half of each
#: word padding; in words of 16 channels, ``BINARY16``: 1.58x at 1x16x32x32x16, 1.16x at batch
#: 16). A 1x1 stride-2 layer ran 0.66x with tables for every input pixel, 1.64 to 2.06x with
#: tables for the pixels it reads only. Ternary weights (``vpermt2ps``, 3 weights per permute):
#: dense layers 8.5x at 1 x 4096 x 4096 (the decode kernel 1.65x), 3.6x at 1 x 1024 x 1024, 1.5x at 16 x 4096 x 4096
#: (decode 1.48x) and 64 x 1024 x 1024 (row tables 0.95x), 1.23x at 128 x 768 x 3072, 1.15x at
#: 16 x 256 x 256 but 0.59x at 1 x 256 x 256; the ternary conv (``ternary_perm_conv2d_nhwc``)
#: ran 0.55 to 1.17x the dense conv on ResNet-18's layers and is left to ``tvmopt tune``
PERM_CONV_CHANNELS = 32
#: ... and, on a full-width core, where each table built (per input pixel and group of channels) is
#: read at least this many times: once per tap of the kernel and vector of 16 output channels (Zen 4,
#: whose FMAs run at half rate, unmeasured, keeps them at any count). Ice Lake Xeon, start
#: configs, one layer, warm, against the dense start: SqueezeNet's 1x1 layers 1x128x55x55x16 (1 use)
#: 0.28x, 1x256x27x27x32 (2) 0.43x, 1x384x13x13x48 (3) 0.99x, 1x16x55x55x64 (4) 0.99x,
#: 1x32x27x27x128 (8) 1.55x, 1x64x13x13x256 (16) 1.88x; every 3x3 layer measured (9 uses and more)
#: 1.5 to 1.9x (``perm_tables_xeon``); the whole SqueezeNet with the fewer-use layers 0.92x its dense build
PERM_CONV_MIN_TABLE_USES = 8
#: AVX-512: 2:4 layers of few rows pick their kept inputs out of a register of 16 with ``vpermps``
#: (ops/nm_perm_dense.py), reading 9 bytes per group of 4 weights where dense reads 16 and
#: decoding nothing. On the Intel Xeon (``benchmarks/perm_tables.py --nm``, section ``nm_perm_xeon``:
#: start configs, paired rounds): 1.64x the dense kernel at 1 x 4096 x 4096 (the decode kernel
#: 1.33x), 1.63x at 4 rows (1.25x), 1.44x at 16 (0.56x), 1.42x at 32 (0.55x), 1.84x at
#: 1 x 1024 x 1024, 1.32x at 16 x 1024 x 1024, 1.22x at 1 x 256 x 256; but 0.94x at 64 x 1024 x
#: 1024 and 1.0x at 128 x 3072 x 768 (two permutes and two FMAs per group where dense does four
#: FMAs: the same peak). Since the weight is stored in panels of 128 outputs read front to back
#: (schedules/nm_perm.py), on AMD Zen 4 (paired rounds, start configs): 2.6x at 4 x 4096 x 4096,
#: 1.55x at 16, 1.19x at 32, 1.41x at 16 x 1024 x 1024, 1.20x at 64 x 1024 x 1024; the 4096-wide
#: MLP 1.93x onnxruntime at batch 1 (1.39x before the panels), 1.47x at 16 (0.97x). So: up to
#: this many rows, from this many weights ...
NM_PERM_OF = {"nm_decode_dense": "nm_perm_dense"}
NM_PERM_MAX_ROWS, NM_PERM_MIN_WEIGHTS = 32, 1 << 16
#: ... from fewer weights where AVX-512 is double-pumped: Zen 4, one layer at a time, start configs
#: against the dense start: 2.0x at 1 x 256 x 64, 1.23x at 16 x 256 x 64, 1.44x at 64 x 256 x 64
#: (the bundled 2:4 MLPs' first layer, which the 64K rule kept dense)
NM_PERM_DOUBLE_PUMPED_MIN_WEIGHTS = 1 << 14
#: ... and at any row count where AVX-512 is double-pumped (AMD Zen 4: one zmm FMA per cycle,
#: while ``vpermps`` issues on another pipe, so halving the FMAs pays where a full-width core is
#: FMA- and permute-bound alike). On Zen 4, start configs against the dense start, 5 paired
#: rounds: 1.15x at 64 x 256 x 256, 1.27x at 64 x 1024 x 1024, 1.33x at 128 x 3072 x 768, 1.27x at
#: 128 x 768 x 3072 (the encoder), 1.29x at 256 x 256 x 256, 1.31x at 256 x 1024 x 1024, 1.25x at
#: 512 x 768 x 3072, 1.32x at 2048 x 3072 x 768 (``_double_pumped``; since the taller start from 64 rows
#: 1.42 to 1.51x: ``nm_perm_zen4`` in BENCHMARKS.md, ``benchmarks/perm_tables.py --nm``)
#: ... and from 64 to 512 rows (on AVX2 and full-width AVX-512; Zen 4 keeps ``nm_perm_dense``,
#: measured there) the product vectorized along the rows (ops/nm_token_dense.py): each kept
#: weight broadcast over vectors of tokens, half the dense FMAs and no permute. One layer, start
#: configs against the dense start, Intel Xeon (Ice Lake server), paired rounds: 1.37x at 128 x
#: 3072 x 768 (``nm_perm_dense`` 1.36x), 1.15x at 128 x 768 x 3072 (``nm_perm_dense`` 0.87x),
#: 1.15x at 64 x 1024 x 1024, 1.24x at 512 x 768 x 3072 but 0.99x at 2048 x 3072 x 768; AVX2 code
#: on the same machine (``-mcpu=znver3``) 1.62x at 128 x 3072 x 768, where the decoded kernel ran 0.34x
NM_TOKEN = "nm_token_dense"
NM_TOKEN_MIN_ROWS, NM_TOKEN_MAX_ROWS = 64, 512
#: ... from this many weights (AVX-512, AVX2): on AVX-512 small layers lose to the dense kernel,
#: whose tile is twice as wide (0.61x at 64 x 256 x 512, 0.98x at 256 x 256 x 256, 1.15x at 64 x
#: 1024 x 1024); AVX2 code 1.13x at 64 x 256 x 512, 1.25x at 64 x 256 x 256, 1.31x at 256 x 256 x 256
NM_TOKEN_MIN_WEIGHTS = (1 << 20, 1 << 16)
#: rows of X up to which the prediction holds (measured at 1 and 16 rows)
MEMORY_BOUND_ROWS = 16
#: ... fewer for block hashing, whose decode is scalar integer work per 16 weights: on Zen 4 at
#: 4096 x 4096, AVX-512 code 2.06x dense at 1 row, 1.98x at 2, 1.78x at 4; AVX2 code (the same
#: machine, ``-mcpu=znver3``) 1.17x at 1, 1.48x at 2, 0.89x at 4. (AVX-512, AVX2)
MEMORY_BOUND_MAX_ROWS = {"hashed_block_dense": (4, 2)}
#: the decoded kernels measured further: binary, ternary and shift 1.05 to 1.12x dense at 128 x
#: 768 x 3072 (the encoder's token count) and 1.3x at 64 x 1024 x 1024, but 0.74x at 2048 rows;
#: 2:4 0.67x at 128 rows
TILE_DECODE_MAX_ROWS = {"binary_dense": 128, "ternary_dense": 128, "shift_dense": 128}
#: the dense start streams the weight once per block of rows (AVX2: up to 128 rows; AVX-512 since
#: it streams too), and 2:4's decoded kernel lost to it from 16 rows: on AVX2 at every size
#: (Zen 4 with AVX-512 hidden, ``kernel_choice_sweep_avx2``: 0.32 to 0.67x; mlp4096 at batch 16
#: 0.44x the dense build), on the Intel Xeon mlp4096 at batch 16 0.88x (``suite_xeon``): dense there
TILE_DECODE_DENSE = frozenset({"nm_decode_dense",
                               # block hashing from 8 rows: the decode (two scalar hashes per 16
                               # weights) no longer hides behind the FMAs (Zen 4, 4096 x 4096:
                               # 0.61 to 0.76x at 8 rows, 0.51x at 16, 0.75x at 64)
                               "hashed_block_dense"})
#: the dense kernel reads its weight in panels (``schedules/gemm.dense_panel``; from 32 rows when
#: this was measured, since also below 32 rows from 1M weights, so the rule applies from
#: ``TILE_DECODE_ROWS`` there), 1.3
#: to 1.6x faster than before on the Intel Xeon, and the decoded kernels only win where the weight
#: is much larger than the caches and the rows few: against it (start configs, same runs) shift,
#: binary and ternary decode kernels ran 1.27 to 1.33x at 32 x 4096 x 4096 and 1.12 to 1.18x at 64,
#: but 0.70 to 0.83x at 128 x 4096 x 4096, 0.75 to 0.97x at 128 x 768 x 3072 and 128 x 3072 x 768,
#: 0.92 to 0.96x at 64 x 1024 x 1024 (row tables still won: binary 1.15 to 1.26x, ternary 0.99 to
#: 1.12x)
PANEL_DECODE_MIN_WEIGHTS = 1 << 23
PANEL_DECODE_MAX_ROWS = 64
#: on AVX2 the shift decode kernel keeps layers of fewer than ``TILE_DECODE_ROWS`` rows only: from
#: 8 rows the dense kernel (reading each panel whole, a row at a time, ``schedules.gemm.
#: AVX2_PANEL_STREAM_ROWS``, below 16 rows; in strips above) beat it. Real Zen 3 (AVX2 only,
#: ``suite_avx2`` of 2026-12-06), mlp4096 against the dense build: shift-q 0.88x and shift-ps 0.84x
#: at batch 16, 1.52 to 1.83x at batch 1; ternary decoding still won at 16 rows (1.16x). Zen 4
#: running AVX2 code had lost at 8 rows only (shift 0.87x at batch 8, 1.45x at 16)
AVX2_STREAM_DENSE = frozenset({"shift_dense"})


#: a compressed Winograd conv decodes and transforms its weight at the start of a call, then runs
#: at the dense Winograd conv's speed: within 5% of it from this many output pixels (Zen 4, start
#: configs, one layer at a time, paired rounds, ``benchmarks/winograd.py``: 1x64x56x56x64 shift
#: 0.98x the dense Winograd conv, 1x128x28x28x128 0.93x, 16x32x16x16x32 1.03x, 16x256x14x14x256
#: 0.95 to 0.97x, 16x512x7x7x512 0.98 to 0.99x by blocks; below it 1x256x14x14x256 0.88 to 0.90x,
#: 1x512x14x14x512 0.87 to 0.91x, 1x128x16x16x128 0.81 to 0.84x, 1x512x7x7x512 0.68 to 0.71x,
#: 1x64x8x8x64 0.56 to 0.63x). One rule for every size of U: an earlier one took compressed
#: layers whose U outgrows L2 from 196 pixels, at 0.90x the dense conv at 1x256x14x14x256
WINOGRAD_COMPRESSED_MIN_ROWS = 784
#: ... and on AVX2, where the start's register tile is one vector of 16 output channels (two ymm)
#: and the per-call transform weighs more: Zen 4 with AVX2 code (znver3), start configs, paired
#: rounds, U in panels, ternary / 2:4 / shift against the dense Winograd conv: 1x64x56x56x64 (3,136
#: pixels) 0.98 to 0.99x, 16x64x16x16x128 (4,096) 0.94 to 0.96x, 16x128x28x28x128 0.94 to 1.02x;
#: below, 16x64x8x8x64 and 1x64x32x32x64 (1,024) 0.92 to 0.93x, 16x128x8x8x256 0.82 to 0.89x,
#: 1x128x28x28x128 (784) 0.90 to 0.91x. With the 784 rule VGG at batch 16 ran 0.87 to 0.92x its
#: dense build (``suite_avx2-on-zen4``). A batch whose start transforms U once in all, by blocks of
#: output channels (``winograd.AVX2_PER_CALL_BLOCKS_FROM_BYTES``), keeps the 784 rule: 16x512x7x7x512
#: 0.98 to 0.99x, 16x128x8x8x256 0.99 to 1.06x, 16x256x8x8x256 0.94 to 0.98x (same runs).
#: Full-width AVX-512 (Ice Lake Xeon, start configs, alternating rounds) takes this rule too:
#: 1x128x28x28x128 (784) 0.86x for shift and ternary, 0.91x for 2:4, where 1x64x56x56x64 ran 1.00x
#: (ResNet-18 2:4 had run 0.92x its dense build with the 784 rule)
WINOGRAD_COMPRESSED_UNSHARED_MIN_ROWS = 3136
#: ... but where its start shares the transform out (by ``blocks`` of output channels, or one
#: image's U split by ``outputs``: ``winograd.WIDE_BLOCKS_FROM_BYTES``), a full-width AVX-512 core
#: runs a compressed Winograd conv from this many output pixels. Ice Lake Xeon, one layer at a
#: time, warm, against the dense start: 1x256x14x14x256 (blocks) shift 0.88x, 2:4 0.90x, ternary
#: 0.93x; 1x128x28x28x128 (outputs) 0.94 to 0.96x; 1x512x14x14x512 ternary 1.43x; 16x128x8x8x256
#: (blocks, 2 MiB) shift 0.95x. In the network,
#: where the dense layers' U (1 and 4 MiB) is read cold, ResNet-18 at batch 1 with every layer
#: compressed ran 1.04x (ternary), 1.00x (shift) and 0.99x (2:4) its fp32 build (15 interleaved
#: rounds), at 1/16, 1/6 and 1/2 of the weight memory; smaller maps lose (Zen 4: 1x64x8x8x64 0.56
#: to 0.63x)
WINOGRAD_COMPRESSED_SHARED_MIN_ROWS = 196
#: ... and, on a full-width AVX-512 core, from this many output pixels where U is at most
#: ``WINOGRAD_COMPRESSED_SMALL_U_BYTES`` (a transform that stays in L2): Ice Lake Xeon, one layer at
#: a time, start configs, shift / ternary / 2:4 against the dense Winograd conv: 16x64x8x8x64 (1,024
#: pixels) 1.10 to 1.11x, 1x64x32x32x64 1.05 to 1.09x, 1x16x32x32x16 0.99 to 1.00x; fewer pixels
#: lose (1x32x16x16x32, 256: 0.89 to 0.90x; 1x64x8x8x64, 64: 0.53x), and so does a U of 1 MiB
#: (1x128x28x28x128 at 784 pixels, 0.86x, above)
WINOGRAD_COMPRESSED_SMALL_U_MIN_ROWS = 1024
WINOGRAD_COMPRESSED_SMALL_U_BYTES = 256 << 10
#: ... and, on a full-width AVX-512 core, one image's layer whose U is ``winograd.WIDE_BLOCKS_FROM_BYTES``
#: or more (shared out by blocks) from this many output pixels: the dense Winograd conv then reads
#: its U, cold in a network, for 16 tiles or fewer, and the compressed one reads 1/6 to 1/16 of the
#: bytes and transforms them. One layer at a time, warm, the compressed ones lose (Ice Lake Xeon:
#: 1x128x8x8x256 shift 0.63x, ternary 0.67x; 1x256x8x8x256 0.79x, 0.82x), but in the whole VGG at
#: batch 1 (interleaved builds, 31 rounds) the two 8x8 layers compressed ran 0.99x (shift) and
#: 1.00x (ternary) the build that kept them dense, at 5 and 2 bits where the dense U stores 57
WINOGRAD_COMPRESSED_COLD_U_MIN_ROWS = 64


def _against_winograd(family: str, compressed_key: str, rows: int) -> Choice:
    """The prediction where the layer's dense kernel is the Winograd conv (2.25x fewer
    multiply-adds than the direct conv, which the rules below were measured against)."""
    if family in PERM_MIN_WEIGHTS and family.startswith("binary"):
        return Choice(True, "predicted: binary tables of partial sums in registers beat the dense Winograd conv")
    if family.endswith("_winograd_conv2d"):
        split, u = _start_knob(compressed_key, "parallel"), _transformed_bytes(compressed_key)
        cold = _full_width() and split == "blocks" and _batch(compressed_key) == 1 and u >= WIDE_BLOCKS_FROM_BYTES
        if cold:
            least = WINOGRAD_COMPRESSED_COLD_U_MIN_ROWS
        elif _full_width() and split in ("blocks", "outputs"):
            least = WINOGRAD_COMPRESSED_SHARED_MIN_ROWS
        elif _double_pumped() or split == "blocks":
            least = WINOGRAD_COMPRESSED_MIN_ROWS
        elif _full_width() and u <= WINOGRAD_COMPRESSED_SMALL_U_BYTES:
            least = WINOGRAD_COMPRESSED_SMALL_U_MIN_ROWS
        else:
            least = WINOGRAD_COMPRESSED_UNSHARED_MIN_ROWS
        if rows >= least and cold:
            return Choice(True, f"predicted: the dense Winograd conv reads a transformed weight of "
                                f"{u / 2**20:.0f} MiB cold for {rows:,} output pixels; the compressed one a fraction of it")
        if rows >= least:
            return Choice(True, f"predicted: the Winograd conv at the dense one's speed, its weight decoded and "
                                f"transformed once per call for {rows:,} output pixels")
        return Choice(False, f"predicted: decoding and transforming the weight each call costs more than 5% at "
                             f"{rows:,} output pixels; the dense Winograd conv")
    return Choice(False, "predicted: the dense Winograd conv does 2.25x fewer multiply-adds than a direct "
                         "compressed one")


#: a compressed conv predicted slower than the dense one still runs where its layer holds at most
#: this share of the network's multiply-adds: were it even 3x slower, the network would lose 1%,
#: within never-slower's 5%, while its weight is stored at the format's width. ResNet-18's
#: ternary export at batch 1 had kept one 1x1 stride-2 shortcut (0.35% of its multiply-adds,
#: 0.86x the dense conv decoded, 74 us) dense, and its compressed layers read 2.35 bits a weight
#: where ternary is 2
SMALL_LAYER_MAX_SHARE = 0.005


#: a channels-last conv of fewer output pixels than ``decoded.DECODE_TILE_MIN_M`` (VGG's 2x2 maps
#: at batch 1) and at least this many weights runs as im2col + the compressed linear kernel on a
#: full-width AVX-512 core (``few_pixels``): that kernel decodes each vector of 16 weights in
#: registers once for all the pixels, where the direct compressed conv decodes tiles into a buffer
#: and reads them back, and the dense conv streams 4 bytes a weight for 4 uses (the layer is
#: memory-bound). Ice Lake Xeon, 1x512x2x2x512 (9 MiB of fp32 weights), one layer at a time, warm,
#: against the dense direct conv: shift_dense 1.21x, ternary 1.22x, where shift_conv2d ran 0.60x;
#: the whole VGG at batch 1 (interleaved builds, every other layer as the default chose) 1.14x its
#: dense build with shift and 1.30x with ternary. At 16 pixels (4x4) the linear kernels decode tiles
#: and lose (0.49 to 0.64x the dense GEMM): those layers keep the direct compressed conv
FEW_PIXELS_MIN_WEIGHTS = 1 << 20
FEW_PIXELS_FAMILIES = ("shift_dense", "ternary_dense")


def few_pixels(policy: str, family: str, rows: int, weights: int) -> Choice | None:
    """The choice to run a compressed conv of ``rows`` output pixels as im2col + its linear kernel
    (``family``), or None where the conv keeps its direct kernels. Not for ``policy`` dense."""
    from tvmopt.ops.decoded import DECODE_TILE_MIN_M

    if policy == "dense" or family not in FEW_PIXELS_FAMILIES or not _full_width():
        return None
    if rows < DECODE_TILE_MIN_M and weights >= FEW_PIXELS_MIN_WEIGHTS:
        return Choice(True, f"predicted: {rows} output pixel(s) of {weights:,} weights, memory-bound: each weight "
                            f"decoded in registers once for all of them (im2col)")
    return None


def small_layer(picked: Choice, policy: str, macs: int, network_macs: int) -> Choice:
    """``picked``, or the compressed kernel where ``picked`` is a predicted dense choice (policy
    ``auto``, no record or measurement behind it) for a layer of ``macs`` multiply-adds that is at
    most ``SMALL_LAYER_MAX_SHARE`` of ``network_macs``."""
    if policy != "auto" or picked.compressed or not picked.why.startswith("predicted") or network_macs <= 0:
        return picked
    share = macs / network_macs
    if share > SMALL_LAYER_MAX_SHARE:
        return picked
    return Choice(True, f"predicted slower ({picked.why[len('predicted: '):]}), but the layer is {share:.2%} of the "
                        f"network's multiply-adds: its weight stays compressed for under 1% of the run")


@dataclass
class Choice:
    compressed: bool
    why: str

    @property
    def label(self) -> str:
        return ("compressed" if self.compressed else "dense") + f" ({self.why})"


def _task(key: str):
    """The task ``key`` names, or None where it is not a task key (a caller that only asks for the rules)."""
    from tvmopt.errors import WorkloadError
    from tvmopt.ops.task import get_task

    try:
        return get_task(key)
    except WorkloadError:
        return None


def _start_knob(key: str, knob: str):
    """The value of ``knob`` in the start config of the task ``key`` (None where ``key`` is not
    a task key)."""
    task = _task(key)
    if task is None:
        return None
    return task.space.as_dict(task.space.initial()).get(knob)


#: a pointwise layer whose dense conv runs a flat grid (``ConvShape.flat``) runs, on a full-width
#: AVX-512 core (Zen 4 unmeasured), the compressed conv for these formats, whose start then
#: computes the same flat grid with the weight decoded once per call: Ice Lake Xeon, one layer,
#: warm, SqueezeNet's 1x1 layers of 13x13 to 55x55 ran 0.84 to 1.08x the dense conv (ternary 0.93
#: to 1.08x; before the compressed convs had flat grids, 0.51 to 0.56x), and the whole SqueezeNet
#: with its 16 pointwise layers compressed 0.99x (ternary) and 0.97x (shift) its dense build with
#: its tuned records (15 interleaved rounds). Other formats (2:4, hashed, codebook) keep the dense conv
FLAT_CONV_FAMILIES = ("ternary_conv2d", "shift_conv2d", "binary_conv2d")


def _flat(dense_key: str) -> bool:
    """Whether the dense conv task ``dense_key`` computes a flat grid (False where it is no conv key)."""
    task = _task(dense_key) if dense_key.startswith("conv2d_nhwc:") else None
    return task is not None and task.shape.flat


def _decodes_per_thread(key: str) -> bool:
    """Whether the start config of the compressed conv ``key`` decodes its (small) weight in
    each thread, inside the conv's parallel loop (``decode = thread``)."""
    return _start_knob(key, "decode") == "thread"


def _key_dim(key: str, index: int) -> int:
    """Dimension ``index`` of the task ``key`` (``<prefix>:AxBx...``), or 0 where it does not parse."""
    try:
        return int(key.split(":")[1].split("x")[index])
    except (IndexError, ValueError):
        return 0


def _batch(key: str) -> int:
    """The batch of the task ``key`` (``<prefix>:N...``), or 1 where it does not parse."""
    return _key_dim(key, 0) or 1


def _wide() -> bool:
    """Whether the ISA the build's starts are shaped for is AVX-512 (:mod:`tvmopt.schedules.isa`)."""
    from ..schedules.isa import current

    return current().lanes >= 16


def xnor_conv_prefix(nhwc: bool, shape: ConvShape) -> str:
    """The XNOR conv's key prefix for the build's ISA: ``xnor8_conv2d_nhwc`` (counts in bytes,
    :mod:`tvmopt.ops.xnor8_conv2d`) on AVX2, which has no vector popcount, where the layer is
    channels last and fits it; else ``xnor_conv2d`` (AVX-512 VPOPCNTDQ counts 8 words an
    instruction). The byte kernel's start ran ResNet-18's binarized 3x3 layers 1.08 to 1.23x faster than the
    word kernel's (Zen 3, paired rounds)."""
    from tvmopt.ops.xnor8_conv2d import PREFIX
    from tvmopt.schedules.xnor8_conv2d import applies

    if nhwc and not _wide() and applies(shape):
        return PREFIX
    return "xnor_conv2d" + ("_nhwc" if nhwc else "")


def xnor_dense_family(family: str, out_features: int) -> str | None:
    """``xnor8_dense`` for an ``xnor_dense`` layer on AVX2 whose outputs fill ymm blocks of 32
    (:mod:`tvmopt.ops.xnor8_dense`: 1.56 to 2.0x ``xnor_dense`` on the BERT-base MLP's layers,
    Zen 3); None otherwise."""
    if family == "xnor_dense" and not _wide() and out_features % 32 == 0:
        return "xnor8_dense"
    return None


def _vnni() -> bool:
    """Whether the build's ISA has AVX-512 VNNI (``vpdpbusd``: :mod:`tvmopt.ops.int8_dense`)."""
    from ..schedules.isa import current

    return current().vnni


def _transformed_bytes(key: str) -> float:
    """The bytes of a Winograd conv task's transformed weight U (its key's channels and outputs);
    infinite where ``key`` is not a conv key (a caller that only asks for the rules)."""
    channels, outputs = _key_dim(key, 1), _key_dim(key, 4)
    return transformed_bytes(channels, outputs) if channels and outputs else float("inf")


def _full_width() -> bool:
    """Whether the build's ISA is AVX-512 run at full width (not Zen 4's two halves)."""
    from ..schedules.isa import current

    return current().full_width


def _double_pumped() -> bool:
    """Whether the build's ISA runs each 512-bit instruction as two 256-bit halves (Zen 4)."""
    from ..schedules.isa import current

    return current().double_pumped


def _panelled(dense_key: str) -> bool:
    """Whether the dense kernel ``dense:MxNxK`` reads its weight in panels."""
    from ..schedules.gemm import dense_panel

    m, n, k = (_key_dim(dense_key, i) for i in range(3))
    return bool(m and n and k) and dense_panel(m, n, k) > 0


def register_tables(family: str, rows: int, outputs: int) -> str | None:
    """The register-table kernel (ops/perm_tables.py, AVX-512 only) a binary or ternary dense
    layer of ``rows`` x ``outputs`` runs instead of ``family`` (its decode, byte-table or
    row-table kernel: the same logical arrays), or None."""
    from tvmopt.ops.perm_tables import takes

    perm = PERM_TABLES_OF.get(family)
    if perm is None or not _wide() or not takes(rows, outputs):
        return None
    return perm


def nm_register_select(family: str, rows: int, outputs: int, inputs: int, params: dict) -> str | None:
    """The 2:4 kernel a layer of ``family`` (``nm_decode_dense``: the same logical arrays) runs
    instead, or None: from ``NM_TOKEN_MIN_ROWS`` to ``NM_TOKEN_MAX_ROWS`` rows the product
    vectorized along the rows (``nm_token_dense``, AVX2 and full-width AVX-512), at fewer rows
    (any row count on Zen 4) inputs picked in registers (``nm_perm_dense``, AVX-512)."""
    from tvmopt.ops import nm_token_dense
    from tvmopt.ops.nm_perm_dense import takes

    perm = NM_PERM_OF.get(family)
    if perm is None:
        return None
    n_keep, group = params.get("n"), params.get("m")
    if NM_TOKEN_MIN_ROWS <= rows <= NM_TOKEN_MAX_ROWS and not _double_pumped() and \
            nm_token_dense.takes(rows, outputs, inputs, n_keep, group):
        return NM_TOKEN
    if not _wide() or not takes(rows, outputs, inputs, n_keep, group):
        return None
    if rows > NM_PERM_MAX_ROWS and not _double_pumped():
        return None
    return perm


def conv_register_tables(conv_prefix: str | None, channels: int, outputs: int, kernel: int,
                         stride: int) -> str | None:
    """The channels-last register-table conv (``binary_perm_conv2d``, AVX-512; on a double-pumped
    core also ``ternary_perm_conv2d``) a direct compressed conv (``conv_prefix``) runs instead, or
    None: where its input channels fill whole code words (``PERM_CONV_CHANNELS``, or 16 channels:
    half words, ``BINARY16``; ternary from ``TERNARY_PERM_CONV_MIN_CHANNELS``) and the tables it
    builds are read (a kernel at least as wide as the stride, or 1x1: tables for the pixels it
    reads only)."""
    perm = PERM_TABLES_OF.get(conv_prefix)
    whole = channels % PERM_CONV_CHANNELS == 0 or channels == PERM_CONV_CHANNELS // 2
    if perm is None and conv_prefix in PERM_CONV_DOUBLE_PUMPED and _double_pumped():
        # ternary words hold 6 groups of 3 channels: any count pads at most one word
        perm, whole = PERM_CONV_DOUBLE_PUMPED[conv_prefix], channels >= TERNARY_PERM_CONV_MIN_CHANNELS
    if not perm or not _wide() or outputs % 16 or not whole or 1 < kernel < stride:
        return None
    if _full_width() and kernel * kernel * outputs // 16 < PERM_CONV_MIN_TABLE_USES:
        return None
    return perm


def conv_row_tables(conv_prefix: str | None, rows: int, weights: int) -> str | None:
    """The row-table conv a direct compressed conv (``conv_prefix``) of ``rows`` output pixels
    and ``weights`` weights runs instead (large layers: tables shared by 16 output pixels), or None."""
    from tvmopt.ops.row_table_conv2d import ROW_TABLES_OF
    from tvmopt.ops.row_tables import takes_rows

    tables = ROW_TABLES_OF.get(conv_prefix)
    if _wide():                   # none on AVX-512 (see ROW_TABLE_MIN_WEIGHTS)
        return None
    return tables if tables and takes_rows(rows) and weights >= ROW_TABLE_MIN_WEIGHTS[tables] else None


def from_costs(cost: Callable[[str], float | None] | None, compressed_key: str, dense_key: str,
               source: str) -> Choice | None:
    """The faster of the two kernels where ``cost`` knows both (``source`` says from what), else None."""
    if cost is None:
        return None
    c, d = cost(compressed_key), cost(dense_key)
    if c is None or d is None:
        return None
    if c <= d:
        return Choice(True, f"{source}: {d / c:.2f}x faster than dense")
    return Choice(False, f"{source}: dense {c / d:.2f}x faster")


def choose(policy: str, family: str, compressed_key: str, dense_key: str, rows: int, weights: int, conv: bool,
           cost: Callable[[str], float | None] | None = None) -> Choice:
    """Whether the layer runs its compressed kernel (``compressed_key``) or the dense one
    (``dense_key``). ``cost(key)``: seconds of the best record (or of a measurement, for
    ``measure``), None when there is none."""
    if policy not in POLICIES:
        raise ValueError(f"kernel policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if policy == "compressed":
        return Choice(True, "forced")
    if policy == "dense":
        return Choice(False, "forced")
    small_transform = (weights <= SMALL_TRANSFORM_MAX_WEIGHTS.get(family, -1) and rows < SMALL_TRANSFORM_MIN_ROWS
                       and _wide())
    if family in CHEAPER and not small_transform:
        return Choice(True, AVX2_INTEGER if family == "int8_dense" and not _vnni() else CHEAPER[family])
    timed = from_costs(cost, compressed_key, dense_key, "measured" if policy == "measure" else "records")
    if timed is not None:
        return timed
    from tvmopt.ops.winograd_conv2d import PREFIX as WINOGRAD_DENSE     # the dense Winograd conv's tasks

    if dense_key.startswith(WINOGRAD_DENSE + ":"):
        return _against_winograd(family, compressed_key, rows)
    if small_transform:
        return Choice(False, f"predicted: at {rows} row(s) a dense product of {weights:,} weights stays in L2 and "
                             f"beats the transform's passes")
    if family in PERM_MIN_WEIGHTS:
        least = PERM_MIN_WEIGHTS[family]
        if not conv and rows < PERM_FEW_ROWS:
            least = max(least, PERM_FEW_ROWS_MIN_WEIGHTS)
        most, fewest = PERM_DOUBLE_PUMPED.get(family, (0, 0))
        if not conv and _double_pumped() and rows <= most:
            least = min(least, fewest)
        if weights >= least:
            return Choice(True, "predicted: tables of partial sums in registers, one permute and add per 16 outputs "
                                "and group of weights")
        return Choice(False, f"predicted: at {weights:,} weights the tables cost more than they save")
    if family == NM_TOKEN:
        if weights >= NM_TOKEN_MIN_WEIGHTS[0 if _wide() else 1]:
            return Choice(True, "predicted: kept weights broadcast over vectors of rows, half the dense FMAs")
        return Choice(False, f"predicted: at {weights:,} weights the dense product is as fast")
    if family in NM_PERM_OF.values():
        if weights >= (NM_PERM_DOUBLE_PUMPED_MIN_WEIGHTS if _double_pumped() else NM_PERM_MIN_WEIGHTS):
            return Choice(True, "predicted: kept inputs picked in registers (vpermps), 9 bytes read per 4 weights "
                                "where dense reads 16")
        return Choice(False, f"predicted: at {weights:,} weights the dense product is as fast")
    if family in ROW_TABLE_MIN_WEIGHTS:
        what = "output pixels" if conv else "rows"
        if weights >= ROW_TABLE_MIN_WEIGHTS[family]:
            return Choice(True, f"predicted: tables of partial sums shared by 16 {what}, one add per 4 weights")
        return Choice(False, f"predicted: at {weights:,} weights the tables cost more than they save")
    if conv:
        least = DIRECT_CONV_MIN_ROWS.get(family)
        # the pixel rules were measured start against start: they hold against an untuned dense conv only
        dense_untuned = cost is None or cost(dense_key) is None
        if _full_width() and _flat(dense_key):
            if family in FLAT_CONV_FAMILIES:
                return Choice(True, "predicted: the compressed conv computes this pointwise layer's pixels as one flat "
                                    "row, its weight decoded once, at the dense conv's speed")
            return Choice(False, f"predicted: the dense conv computes this pointwise layer's pixels as one flat row; "
                                 f"decoding {family.removesuffix('_conv2d')} weights costs more")
        if _wide():
            if _double_pumped() and rows >= DOUBLE_PUMPED_DIRECT_CONV_MIN_ROWS.get(family, float("inf")) and \
                    dense_untuned:
                return Choice(True, f"predicted: on a double-pumped AVX-512 core the decoded conv runs at the dense "
                                    f"conv's speed at {rows:,} output pixels")
            if _double_pumped() and rows >= DOUBLE_PUMPED_BATCH_MIN_ROWS.get(family, float("inf")) and \
                    _batch(compressed_key) > 1 and dense_untuned:
                return Choice(True, f"predicted: on a double-pumped AVX-512 core the decoded conv of a batch runs at "
                                    f"the dense conv's speed at {rows:,} output pixels")
            if weights >= DIRECT_CONV_AVX512_MIN_WEIGHTS.get(family, float("inf")):
                return Choice(True, f"predicted: on AVX-512 the dense conv streams {weights:,} weights, the decoded "
                                    f"one a fraction of them")
            if weights >= DIRECT_CONV_MIN_WEIGHTS.get(family, float("inf")) and \
                    rows >= DIRECT_CONV_AVX512_MIN_ROWS.get(family, DIRECT_CONV_AVX512_DEFAULT_MIN_ROWS):
                return Choice(True, f"predicted: on AVX-512, {rows:,} output pixels share each decoded tile of "
                                    f"{weights:,} weights")
            large, large_rows = DIRECT_CONV_AVX512_LARGE.get(family, (float("inf"), 0))
            if _full_width():
                large_rows = min(large_rows, FULL_WIDTH_LARGE_MIN_ROWS)
            if weights >= large and rows >= large_rows:
                return Choice(True, f"predicted: on AVX-512 the dense conv streams {weights:,} weights for {rows:,} "
                                    f"output pixels, the decoded one a fraction of them")
            if family in DIRECT_CONV_AVX512_CHEAP_DECODE and rows >= DIRECT_CONV_AVX512_MANY_ROWS and \
                    weights >= DIRECT_CONV_AVX512_MANY_ROWS_MIN_WEIGHTS:
                return Choice(True, f"predicted: {rows:,} output pixels share each decoded weight")
            if family in DIRECT_CONV_AVX512_CHEAP_DECODE and _batch(compressed_key) > 1 and _full_width() \
                    and rows * weights >= DIRECT_CONV_AVX512_BATCH_MIN_MACS and dense_untuned:
                return Choice(True, f"predicted: a batch decodes once for {rows * weights:,} multiply-adds")
            if family in DIRECT_CONV_AVX512_CHEAP_DECODE and rows * weights >= DIRECT_CONV_THREAD_MIN_MACS \
                    and _decodes_per_thread(compressed_key):
                return Choice(True, "predicted: each thread decodes the small weight, then computes its share of "
                                    "the pixels at the dense conv's speed")
            if least is not None:
                return Choice(False, f"predicted: on AVX-512 the dense conv wins at {rows:,} output pixels x "
                                     f"{weights:,} weights")
        else:
            # (a Zen 3's shipped records for SqueezeNet: its 1x64x55x55x16 squeeze conv tuned 37.6
            # us, at its start 91.5, the shift conv's start 142.7; the shift export ran 0.78x its
            # dense build)
            if least is not None and rows >= least and dense_untuned:
                return Choice(True, "predicted: the direct compressed conv runs at the dense conv's speed")
            if weights >= DIRECT_CONV_MIN_WEIGHTS.get(family, float("inf")) and \
                    rows >= DIRECT_CONV_WEIGHTS_MIN_ROWS.get(family, 0):
                return Choice(True, f"predicted: at {weights:,} weights the dense conv streams a weight larger than L2")
            if least is not None and rows >= least:
                return Choice(False, "predicted: the dense conv's tuned record beats the compressed conv's start")
            if least is not None:
                return Choice(False, f"predicted: decoding the weight for {rows:,} output pixels costs more than it "
                                     f"saves")
        return Choice(False, "predicted: the direct dense convolution beats im2col + a compressed GEMM")
    least, most_rows = MEMORY_BOUND_MIN_WEIGHTS.get(family), MEMORY_BOUND_ROWS
    table = _key_dim(compressed_key, 3) * 4 if family == "hashed_block_dense" else 0
    if table > HASHED_BLOCK_MAX_TABLE_BYTES:
        return Choice(False, f"predicted: a table of {table / 2**20:.0f} MiB of values leaves the caches, and a "
                             f"block read from memory costs what a line of the dense weight does")
    if family in MEMORY_BOUND_MAX_ROWS:
        most_rows = MEMORY_BOUND_MAX_ROWS[family][0 if _wide() else 1]
    panels = False
    if rows >= TILE_DECODE_ROWS:
        if family in TILE_DECODE_DENSE:
            return Choice(False, f"predicted: the dense kernel streams the weight once for {rows} rows and wins")
        least = TILE_DECODE_MIN_WEIGHTS.get(family, least)
        most_rows = TILE_DECODE_MAX_ROWS.get(family, MEMORY_BOUND_ROWS)
        panels = least is not None and _panelled(dense_key)
        if panels and family in AVX2_STREAM_DENSE and not _wide():
            return Choice(False, f"predicted: at {rows} rows the dense kernel streams its panels (AVX2) and wins")
        if panels:
            least, most_rows = max(least, PANEL_DECODE_MIN_WEIGHTS), min(most_rows, PANEL_DECODE_MAX_ROWS)
    if least is not None and rows <= most_rows and weights >= least:
        return Choice(True, f"predicted: the weight outgrows the caches ({rows} row(s), {weights:,} weights)")
    if least is None:
        return Choice(False, f"predicted: {family} lost to dense at every size measured")
    if panels:
        return Choice(False, f"predicted: the dense kernel reads its weight in panels and wins at {rows} rows x "
                             f"{weights:,} weights")
    return Choice(False, f"predicted: dense wins at {rows} row(s) x {weights:,} weights")
