"""Hashed weights (HashedNets / FunHashNN): the kernel recomputes each virtual weight from its
(output, input) index with the hash of docs/onnx-ops.md, so only the K-vector of real values is
stored. The price is about 20 integer operations per weight.

``W[k, o] = sum_h mix[h] * sign_h(o, k) * values[bucket_h(o, k)]``, key = o * K + k (with one
hash the mix is folded into the values and the kernel reads none).
Key: ``hashed_dense:MxNxKxBUCKETSxHASHES``; the seeds are an input (``seeds`` uint32
[2 * hashes]: seed_b, seed_s of each hash), so one kernel serves every seed.

Block hashing (``hashed_block_dense:MxNxKxBUCKETSxHASHESxBLOCK``, ``tvmopt.nn.HashedLinear(block=Z)``):
Z consecutive outputs of one input share a key, so the kernel's vector of outputs (a panel of 16)
hashes once and reads Z contiguous values: the two hashes cost per Z weights, not per weight.
"""

from __future__ import annotations

import numpy as np

from tvmopt.model import formats
from tvmopt.ops.kernel import Kernel
from tvmopt.ops.registry import OpFamily, register_family

from ..errors import WorkloadError
from .decoded import DECODE_TILE_MIN_M, DecodedDenseTask, WeightSpec, cuda_view, decoded_task
from ..schedules.gemm import largest_divisor


def _fmix32(h):
    import tvm

    c = lambda v: tvm.tirx.const(v, "uint32")  # noqa: E731
    h = h ^ (h >> c(16))
    h = h * c(0x85EBCA6B)
    h = h ^ (h >> c(13))
    h = h * c(0xC2B2AE35)
    return h ^ (h >> c(16))


class HashedDenseTask(DecodedDenseTask):
    family = "hashed_dense"
    cuda_unstaged = ("values", "mix", "seeds")

    def default_params(self):
        return {"buckets": max(1, self.n * self.k // 8), "hashes": 1, "seed": 0, "block": 1}

    def weight_specs(self):
        return [WeightSpec("values", (self.params["buckets"],), "float32"),
                WeightSpec("mix", (self.params["hashes"],), "float32"),
                WeightSpec("seeds", (2 * self.params["hashes"],), "uint32")]

    @staticmethod
    def seeds(seed: int, hashes: int) -> np.ndarray:
        """The kernel's ``seeds`` input: (seed_b, seed_s) of each hash function."""
        return np.array([s for h in range(hashes) for s in formats.hash_seeds(seed, h)], dtype=np.uint32)

    def random_weights(self, rng):
        hashes = self.params["hashes"]
        mix = np.ones(1, np.float32) if hashes == 1 else rng.uniform(0.5, 1.5, size=hashes).astype(np.float32)
        return [rng.uniform(-1, 1, size=self.params["buckets"]).astype(np.float32), mix,
                self.seeds(self.params["seed"], self.params["hashes"])]

    def dense_weight(self, arrays):
        values, mix, seeds = arrays
        w = np.zeros((self.n, self.k), np.float32)
        for h in range(self.params["hashes"]):
            bucket, sign = formats.hash_with_seeds(self.n, self.k, self.params["buckets"],
                                                   int(seeds[2 * h]), int(seeds[2 * h + 1]), self.params["block"])
            w += (1.0 if self.params["hashes"] == 1 else mix[h]) * sign * values[bucket]
        return w.T

    def te_weight(self, tensors, kk, j):
        z = self.params["block"]
        terms = []
        for h in range(self.params["hashes"]):
            first, hs = self._hashes(tensors, h, kk, j)
            # the sign is bit 31 - lane of the sign hash (lane j % z; HashedNets: bit 31), which
            # is bit 31 of hs << lane (no unsigned subtraction for the simplifier to fold)
            terms.append((first + j % z, hs << (j % z).astype("uint32")) if z > 1 else (first, hs))
        return _signed_sum(tensors[0], tensors[1], terms)

    def _hashes(self, tensors, h, kk, j):
        """(the index of the first value of (kk, j)'s block, its sign hash) of hash ``h``."""
        z = self.params["block"]
        # the seeds are data, not constants: TVM's simplifier mis-rewrites the hash arithmetic
        # of a key whose range it can bound (a plain j * K + k), and data also keeps one kernel
        # for every seed
        key = ((j // z) * self.k + kk).astype("uint32") if z > 1 else (j * self.k + kk).astype("uint32")
        return self._hash_pair(tensors[2], h, key)

    def _hash_pair(self, seeds, h, key):
        """TIR: (the index of the first value of ``key``'s block, its sign hash) of hash ``h``."""
        import tvm

        z = self.params["block"]
        hb = _fmix32(key ^ seeds[2 * h]).astype("uint64")
        start = ((hb * tvm.tirx.const(self.params["buckets"] // z, "uint64"))
                 >> tvm.tirx.const(32, "uint64")).astype("int32")
        return (start * z if z > 1 else start), _fmix32(key ^ seeds[2 * h + 1])


def _signed_sum(values, mix, terms):
    """TIR: ``sum_h mix[h] * values[index_h]`` with bit 31 of ``sign_h`` xored into each value's sign
    bit (two integer vector operations, no multiply), for ``terms`` = [(index_h, sign_h)]. With
    one hash the mix is folded into the values (``from_compact``), so the kernel reads none."""
    import tvm

    total = None
    for h, (index, sign) in enumerate(terms):
        sign_bit = sign & tvm.tirx.const(0x80000000, "uint32")
        value = tvm.tirx.reinterpret("float32", tvm.tirx.reinterpret("uint32", values[index]) ^ sign_bit)
        term = value if len(terms) == 1 else mix[h] * value
        total = term if total is None else total + term
    return total


class HashedBlockDenseTask(HashedDenseTask):
    """Block-hashed weights: blocks of ``block`` consecutive outputs share one hash.

    The hashes are stages of their own (``HashB``: each block's first value, ``HashS``: its sign
    hash), computed for the product's tile of blocks and K steps at C's k0 loop and vectorized
    along K: 16 blocks' fmix32 in one set of vector instructions, where the inlined hashes ran as
    scalar code per block. On Zen 4 at 1x4096x4096 this took the kernel from 1.10 to 0.91 ms
    with its 8 MiB of values in L3, and from 0.76 to 0.47 ms with a table that fits in L2.
    ``staged = False`` (the CUDA view) inlines them into the weight instead."""

    family = "hashed_block_dense"
    staged = True

    def default_params(self):
        return {**super().default_params(), "block": 16, "buckets": max(16, self.n * self.k // 8 // 16 * 16)}

    def __post_init__(self):
        params = {**self.default_params(), **self.params}
        try:
            formats.check_hash_block(params["buckets"], params["block"])
        except ValueError as e:
            raise WorkloadError(f"workload '{self.key}': {e}") from None
        super().__post_init__()

    def te_stages(self, tensors):
        from tvm import te

        if not self.staged:
            return tensors
        seeds = tensors[2]
        shape = (self.params["hashes"], -(-self.n // self.params["block"]), self.k)

        def pair(h, b, kk):
            return self._hash_pair(seeds, h, (b * self.k + kk).astype("uint32"))

        starts = te.compute(shape, lambda h, b, kk: pair(h, b, kk)[0], name="HashB")
        signs = te.compute(shape, lambda h, b, kk: pair(h, b, kk)[1], name="HashS")
        return [*tensors, starts, signs]

    def _hashes(self, tensors, h, kk, j):
        if len(tensors) == 3:               # not staged: computed in the weight
            return super()._hashes(tensors, h, kk, j)
        b = j // self.params["block"]
        return tensors[3][h, b, kk], tensors[4][h, b, kk]

    def _schedule_prologue(self, sch):
        """The hash stages at C's k0 loop (C's loops end with k0 m2 n2 k1 m3 n3), vectorized along K."""
        if not self.staged:
            return
        loop = sch.get_loops(sch.get_sblock("C_update"))[-6]
        for name in ("HashS", "HashB"):
            block = sch.get_sblock(name)
            sch.compute_at(block, loop, preserve_unit_loops=True)
            sch.vectorize(sch.get_loops(block)[-1])

    def start_overrides(self):
        """Below ``DECODE_TILE_MIN_M`` rows: 4 strips of 16 outputs per step (four FMA chains,
        where one chain waits on each FMA's latency) and 16 K steps per tile (one vector of
        hashes): at 1x4096x4096 on Zen 4, 0.91 ms against 1.04 ms with one strip."""
        out = super().start_overrides()
        if self.m >= DECODE_TILE_MIN_M or not out:
            return out
        n, k = self.n, self.k
        n3 = out["tile_n"][3]
        n2 = largest_divisor(n // n3, (4, 2, 1))
        n0 = 2 if (n // (n2 * n3)) % 2 == 0 else 1
        k1 = largest_divisor(k, (16, 8, 4), None)
        if k1 is None:
            return out
        return {**out, "tile_n": (n0, n // (n0 * n2 * n3), n2, n3), "tile_k": (k // k1, k1)}


class _InlineHashes(HashedBlockDenseTask):
    """The same task with its hashes inlined into the weight (no stages of their own)."""

    staged = False


def _cuda_view(task):
    """The CUDA GEMM space; a block hash's hashes inlined (the CUDA schedule has no place for
    stages of its own)."""
    if isinstance(task, HashedBlockDenseTask) and task.staged:
        task = _InlineHashes(task.key, task.m, task.n, task.k, params=dict(task.params))
    return cuda_view(task)


#: seeds tried when looking for the hashing structure in a plain weight (tvmopt.nn.HashedLinear's
#: default is 0), the compression rates whose bucket counts are tried besides the count of
#: distinct magnitudes, and the hash blocks (1: HashedNets)
DETECT_SEEDS = tuple(range(16))
DETECT_RATES = (2, 4, 8, 16, 32, 64)
DETECT_BLOCKS = (1, 16, 8, 32, 4, 2)


def _consistent(w_flat: np.ndarray, positions: np.ndarray, buckets: int, seed: int, block: int, in_features: int):
    """The bucket values when ``w[positions] = sign * values[bucket]`` holds for the hash with
    ``buckets``, ``seed`` and ``block`` (one hash function), else None."""
    bucket, sign = formats.hash_keys(positions, buckets, *formats.hash_seeds(seed, 0), block, in_features)
    implied = w_flat[positions] * sign
    values = np.zeros(buckets, np.float32)
    values[bucket] = implied                      # one writer per bucket wins; all must agree
    return values if np.array_equal(values[bucket], implied) else None


def detect_hashed(w: np.ndarray) -> Kernel | None:
    """A plain weight [N, K] that a hashed layer (one hash function, ``tvmopt.nn.HashedLinear``,
    with or without blocks) produced: its bucket values recovered, so the compact kernel is used
    instead of a codebook. Tries the blocks ``DETECT_BLOCKS``, seeds ``DETECT_SEEDS`` and bucket
    counts near the number of distinct magnitudes or at the usual compression rates, each first
    on 4,096 positions spread over the rows, then on the whole weight."""
    n, k = w.shape
    flat = w.ravel().astype(np.float32)
    distinct = len(np.unique(np.abs(flat)))
    if distinct < 2 or distinct > flat.size // 2:
        return None
    sample = np.unique(np.linspace(0, flat.size - 1, min(flat.size, 4096)).astype(np.int64))
    everything = np.arange(flat.size)
    near = [distinct, distinct + 1, distinct + 2] + [round(flat.size / r) for r in DETECT_RATES]
    for block in DETECT_BLOCKS:
        if block > n:
            continue
        candidates = sorted({-(-b // block) * block for b in near} - {0})
        candidates = [b for b in candidates if distinct <= b <= flat.size // 2]
        for buckets in candidates:
            for seed in DETECT_SEEDS:
                if _consistent(flat, sample, buckets, seed, block, k) is None:
                    continue
                values = _consistent(flat, everything, buckets, seed, block, k)
                if values is None:
                    continue
                kernel = from_compact("HashedBlockGemm" if block > 1 else "HashedGemm", {"values": values},
                                      {"out_features": n, "in_features": k, "seed": seed, "num_hashes": 1,
                                       "block": block})
                kernel.structure = f"{kernel.structure[:-1]}, seed {seed})"
                return kernel
    return None


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` HashedGemm / HashedBlockGemm: the bucket values, per-hash mixing weights,
    the seed and (a block hash) the block size."""
    values = inputs["values"].astype(np.float32)
    hashes, block = attrs["num_hashes"], attrs.get("block", 1)
    mix = inputs.get("mix")
    mix = np.ones(hashes, np.float32) if mix is None else mix.astype(np.float32)
    if hashes == 1:                       # the kernel of one hash reads no mix: fold it
        values, mix = values * mix[0], np.ones(1, np.float32)
    seeds = HashedDenseTask.seeds(attrs["seed"], hashes)
    params = {"buckets": len(values), "hashes": hashes}
    name, dims, what = "hashed_dense", (len(values), hashes), ""
    if block > 1:
        params["block"] = block
        name, dims, what = "hashed_block_dense", (len(values), hashes, block), f", blocks of {block}"
    return Kernel(name, f"hashed ({len(values)} values, {hashes} hash{what})", attrs["out_features"],
                  attrs["in_features"], [values, mix, seeds], params=params,
                  compact_bytes=values.nbytes + mix.nbytes, key_dims=dims)


FAMILY = register_family(OpFamily(
    "hashed", "hashed weights (HashedNets): virtual weights looked up by a hash of their position",
    tasks={"hashed_dense": decoded_task(HashedDenseTask, "MxNxKxBUCKETSxHASHES",
                                        extra=lambda d: {"buckets": d[0], "hashes": d[1]},
                                        summary="hashed weights: BUCKETS values, HASHES hash functions"),
           "hashed_block_dense": decoded_task(HashedBlockDenseTask, "MxNxKxBUCKETSxHASHESxBLOCK",
                                              extra=lambda d: {"buckets": d[0], "hashes": d[1], "block": d[2]},
                                              summary="block-hashed weights: BLOCK consecutive outputs share a hash")},
    schedules="tvmopt.schedules.gemm", onnx_ops=("HashedGemm", "HashedBlockGemm"), from_compact=from_compact,
    cuda=_cuda_view, layer="HashedLinear"))
