"""Hashed weights (HashedNets / FunHashNN): the kernel recomputes each virtual weight from its
(output, input) index with the hash of docs/onnx-ops.md, so only the K-vector of real values is
stored. The price is about 20 integer operations per weight.

``W[k, o] = sum_h mix[h] * sign_h(o, k) * values[bucket_h(o, k)]``, key = o * K + k.
Key: ``hashed_dense:MxNxKxBUCKETSxHASHES``; the seeds are an input (``seeds`` uint32
[2 * hashes]: seed_b, seed_s of each hash), so one kernel serves every seed.
"""

from __future__ import annotations

import numpy as np

from tvmopt.model import formats
from tvmopt.ops.kernel import Kernel
from tvmopt.ops.registry import OpFamily, register_family

from .decoded import DecodedDenseTask, WeightSpec, cuda_view, decoded_task


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
        return {"buckets": max(1, self.n * self.k // 8), "hashes": 1, "seed": 0}

    def weight_specs(self):
        return [WeightSpec("values", (self.params["buckets"],), "float32"),
                WeightSpec("mix", (self.params["hashes"],), "float32"),
                WeightSpec("seeds", (2 * self.params["hashes"],), "uint32")]

    @staticmethod
    def seeds(seed: int, hashes: int) -> np.ndarray:
        """The kernel's ``seeds`` input: (seed_b, seed_s) of each hash function."""
        return np.array([s for h in range(hashes) for s in formats.hash_seeds(seed, h)], dtype=np.uint32)

    def random_weights(self, rng):
        return [rng.uniform(-1, 1, size=self.params["buckets"]).astype(np.float32),
                rng.uniform(0.5, 1.5, size=self.params["hashes"]).astype(np.float32),
                self.seeds(self.params["seed"], self.params["hashes"])]

    def dense_weight(self, arrays):
        values, mix, seeds = arrays
        w = np.zeros((self.n, self.k), np.float32)
        for h in range(self.params["hashes"]):
            bucket, sign = formats.hash_with_seeds(self.n, self.k, self.params["buckets"],
                                                   int(seeds[2 * h]), int(seeds[2 * h + 1]))
            w += mix[h] * sign * values[bucket]
        return w.T

    def te_weight(self, tensors, kk, j):
        import tvm

        values, mix, seeds = tensors
        # the seeds are data, not constants: TVM's simplifier mis-rewrites the hash arithmetic
        # of a key whose range it can bound (a plain j * K + k), and data also keeps one kernel
        # for every seed
        key = (j * self.k + kk).astype("uint32")
        total = None
        for h in range(self.params["hashes"]):
            hb = _fmix32(key ^ seeds[2 * h])
            bucket = ((hb.astype("uint64") * tvm.tirx.const(self.params["buckets"], "uint64"))
                      >> tvm.tirx.const(32, "uint64")).astype("int32")
            neg = (_fmix32(key ^ seeds[2 * h + 1]) >> tvm.tirx.const(31, "uint32")).astype("float32")
            term = mix[h] * (1.0 - 2.0 * neg) * values[bucket]
            total = term if total is None else total + term
        return total



#: seeds tried when looking for the hashing structure in a plain weight (tvmopt.nn.HashedLinear's
#: default is 0), and the compression rates whose bucket counts are tried besides the count of
#: distinct magnitudes
DETECT_SEEDS = tuple(range(16))
DETECT_RATES = (2, 4, 8, 16, 32, 64)


def _consistent(w_flat: np.ndarray, positions: np.ndarray, buckets: int, seed: int):
    """The bucket values when ``w[positions] = sign * values[bucket]`` holds for the hash with
    ``buckets`` and ``seed`` (one hash function), else None."""
    bucket, sign = formats.hash_keys(positions, buckets, *formats.hash_seeds(seed, 0))
    implied = w_flat[positions] * sign
    values = np.zeros(buckets, np.float32)
    values[bucket] = implied                      # one writer per bucket wins; all must agree
    return values if np.array_equal(values[bucket], implied) else None


def detect_hashed(w: np.ndarray) -> Kernel | None:
    """A plain weight [N, K] that a HashedNets layer (one hash function, ``tvmopt.nn.HashedLinear``)
    produced: its bucket values recovered, so the compact kernel is used instead of a codebook.
    Tries the seeds ``DETECT_SEEDS`` and bucket counts near the number of distinct magnitudes or
    at the usual compression rates, each first on 4,096 positions, then on the whole weight."""
    n, k = w.shape
    flat = w.ravel().astype(np.float32)
    distinct = len(np.unique(np.abs(flat)))
    if distinct < 2 or distinct > flat.size // 2:
        return None
    candidates = sorted({b for b in [distinct, distinct + 1, distinct + 2] + [round(flat.size / r) for r in DETECT_RATES]
                         if distinct <= b <= flat.size // 2})
    sample = np.arange(min(flat.size, 4096))
    everything = np.arange(flat.size)
    for buckets in candidates:
        for seed in DETECT_SEEDS:
            if _consistent(flat, sample, buckets, seed) is None:
                continue
            values = _consistent(flat, everything, buckets, seed)
            if values is None:
                continue
            mix = np.ones(1, np.float32)
            return Kernel("hashed_dense", f"hashed ({buckets} values, 1 hash, seed {seed})", n, k,
                          [values, mix, HashedDenseTask.seeds(seed, 1)], params={"buckets": buckets, "hashes": 1},
                          compact_bytes=values.nbytes + mix.nbytes, key_dims=(buckets, 1))
    return None


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` HashedGemm: the bucket values, per-hash mixing weights and the seed."""
    values = inputs["values"].astype(np.float32)
    mix = inputs.get("mix")
    mix = np.ones(attrs["num_hashes"], np.float32) if mix is None else mix.astype(np.float32)
    seeds = HashedDenseTask.seeds(attrs["seed"], attrs["num_hashes"])
    return Kernel("hashed_dense", f"hashed ({len(values)} values, {attrs['num_hashes']} hash)", attrs["out_features"],
                  attrs["in_features"], [values, mix, seeds],
                  params={"buckets": len(values), "hashes": attrs["num_hashes"]},
                  compact_bytes=values.nbytes + mix.nbytes, key_dims=(len(values), attrs["num_hashes"]))


FAMILY = register_family(OpFamily(
    "hashed", "hashed weights (HashedNets): virtual weights looked up by a hash of their position",
    tasks={"hashed_dense": decoded_task(HashedDenseTask, "MxNxKxBUCKETSxHASHES",
                                        extra=lambda d: {"buckets": d[0], "hashes": d[1]},
                                        summary="hashed weights: BUCKETS values, HASHES hash functions")},
    schedules="tvmopt.schedules.gemm", onnx_ops=("HashedGemm",), from_compact=from_compact,
    cuda=cuda_view, layer="HashedLinear"))
