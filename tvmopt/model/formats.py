"""The compact storage formats of compressed weights, in numpy.

These are the formats written into ``ai.tvmopt`` ONNX initializers (docs/onnx-ops.md) and read
back by the compiler, so they depend on numpy only. Every encoder has its exact decoder here and
``tests/test_nn_formats.py`` checks each round trip.
"""

from __future__ import annotations

import numpy as np


# --- bit streams -------------------------------------------------------------------------------

def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned integer codes (each < 2**bits) into a little-endian bit stream of uint8.

    Code ``i`` occupies bits ``[i*bits, (i+1)*bits)`` of the stream, least significant bit first;
    the last byte is zero-padded. Works on the flattened array: the caller keeps the shape.
    """
    codes = np.asarray(codes).reshape(-1).astype(np.uint64)
    if bits < 1 or bits > 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if codes.size and int(codes.max()) >= (1 << bits):
        raise ValueError(f"a code does not fit in {bits} bits")
    # bit b of code i -> stream bit i*bits + b
    planes = ((codes[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_bits(stream: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as int64."""
    flat = np.unpackbits(np.asarray(stream, dtype=np.uint8).reshape(-1), bitorder="little")
    if flat.size < count * bits:
        raise ValueError(f"bit stream holds {flat.size} bits, {count} codes of {bits} bits need {count * bits}")
    planes = flat[: count * bits].reshape(count, bits).astype(np.int64)
    return (planes << np.arange(bits, dtype=np.int64)).sum(axis=1)


def packed_nbytes(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack each row of ``codes`` [rows, K] on its own: uint8 [rows, ceil(K*bits/8)].

    Row r is :func:`pack_bits` of ``codes[r]``, so a kernel can address rows directly.
    """
    codes = np.asarray(codes)
    rows = codes.shape[0]
    flat = codes.reshape(rows, -1)
    if flat.size == 0:
        return np.zeros((rows, 0), dtype=np.uint8)
    codes = flat.astype(np.uint64)
    if int(codes.max()) >= (1 << bits):
        raise ValueError(f"a code does not fit in {bits} bits")
    planes = ((codes[:, :, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(codes.shape[0], -1), axis=1, bitorder="little")


def unpack_rows(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: int64 [rows, count]."""
    packed = np.asarray(packed, dtype=np.uint8)
    flat = np.unpackbits(packed, axis=1, bitorder="little")
    if flat.shape[1] < count * bits:
        raise ValueError(f"rows hold {flat.shape[1]} bits, {count} codes of {bits} bits need {count * bits}")
    planes = flat[:, : count * bits].reshape(packed.shape[0], count, bits).astype(np.int64)
    return (planes << np.arange(bits, dtype=np.int64)).sum(axis=2)


# --- power-of-two (shift) codes ----------------------------------------------------------------
#
# A `bits`-bit code holds a sign bit (the top bit) and a (bits-1)-bit magnitude index m:
#   m == 0            -> weight 0
#   m in 1..2^(b-1)-1 -> weight ±2^(shift_min + m - 1)
# so the representable shifts are shift_min .. shift_min + 2^(b-1) - 2 (DeepShift's 5 bits:
# sign + 4 bits, shifts -14..0).

def shift_range(bits: int, shift_max: int = 0) -> tuple[int, int]:
    """(shift_min, shift_max) covered by ``bits``-bit codes ending at ``shift_max``."""
    return shift_max - ((1 << (bits - 1)) - 2), shift_max


def encode_shift(sign: np.ndarray, shift: np.ndarray, bits: int, shift_min: int) -> np.ndarray:
    """Codes for weights ``sign * 2**shift`` (sign in {-1, 0, 1}, integer shift in range)."""
    sign = np.asarray(sign).astype(np.int64)
    shift = np.asarray(shift).astype(np.int64)
    mag = np.where(sign == 0, 0, shift - shift_min + 1)
    if mag.size and (mag.min() < 0 or mag.max() > (1 << (bits - 1)) - 1):
        raise ValueError("a shift lies outside the range the codes can hold")
    return (mag | np.where(sign < 0, 1 << (bits - 1), 0)).astype(np.int64)


def decode_shift(codes: np.ndarray, bits: int, shift_min: int) -> np.ndarray:
    """float32 weights from shift codes."""
    codes = np.asarray(codes).astype(np.int64)
    mag = codes & ((1 << (bits - 1)) - 1)
    neg = (codes >> (bits - 1)) & 1
    value = np.where(mag == 0, 0.0, np.ldexp(1.0, (mag + shift_min - 1).astype(np.int32)))
    return np.where(neg == 1, -value, value).astype(np.float32)


# --- ternary codes: 0 -> 0, 1 -> +1, 2 -> -1 (2 bits each) -------------------------------------

def encode_ternary(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t).astype(np.int64)
    return np.where(t > 0, 1, np.where(t < 0, 2, 0))


def decode_ternary(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    return np.where(codes == 1, 1.0, np.where(codes == 2, -1.0, 0.0)).astype(np.float32)


# --- the hash of HashedNets ----------------------------------------------------------------------
#
# Virtual weight (i, j) of an out x in matrix, with key = i * in_features + j (uint32):
#   bucket(i, j) = (fmix32(key ^ seed_k) * K) >> 32,       seed_k = fmix32(seed + 2k)     (k-th hash)
#   sign(i, j)   = 1 - 2 * (fmix32(key ^ seed_s) >> 31),  seed_s = fmix32(seed + 2k + 1)
# fmix32 is MurmurHash3's 32-bit finalizer, all arithmetic modulo 2^32; the bucket is Lemire's
# multiply-shift range reduction (no division, so kernels can vectorize it).
#
# Block hashing (``block`` Z > 1, as ROBE-Z hashes blocks of an embedding table rather than single
# entries): the weights of Z consecutive outputs i of one input j share one key,
#   key = (i // Z) * in_features + j,   lane = i % Z,
#   bucket(i, j) = ((fmix32(key ^ seed_k) * (K / Z)) >> 32) * Z + lane     (K a multiple of Z)
#   sign(i, j)   = 1 - 2 * ((fmix32(key ^ seed_s) >> (31 - lane)) & 1)    (Z <= 32)
# so a block of Z weights reads Z contiguous values (one vector load) and its Z signs come from
# one hash: two hashes per Z weights instead of per weight. Z = 1 is the HashedNets hash above.

_M32 = np.uint64(0xFFFFFFFF)
#: block sizes a block hash may use (its signs are bits of one 32-bit hash)
MAX_HASH_BLOCK = 32


def fmix32(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h).astype(np.uint64) & _M32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return h


def hash_seeds(seed: int, k: int = 0) -> tuple[int, int]:
    """(seed_b, seed_s) of the k-th hash function."""
    return int(fmix32(np.uint64(seed + 2 * k))), int(fmix32(np.uint64(seed + 2 * k + 1)))


def check_hash_block(buckets: int, block: int) -> None:
    """ValueError unless ``block`` is 1..MAX_HASH_BLOCK and divides ``buckets``."""
    if not 1 <= block <= MAX_HASH_BLOCK:
        raise ValueError(f"hash block {block} must be 1..{MAX_HASH_BLOCK}")
    if buckets % block:
        raise ValueError(f"{buckets} buckets are not a whole number of blocks of {block}")


def hash_keys(keys: np.ndarray, buckets: int, seed_b: int, seed_s: int, block: int = 1, in_features: int = 1):
    """(bucket index int64, sign float32) of the weights at flat positions ``keys`` (row-major
    ``out * in_features + in``) for explicit seeds; ``in_features`` matters only for a block hash."""
    pos = np.asarray(keys).astype(np.uint64)
    if block == 1:
        key, lane = pos, np.zeros_like(pos)
    else:
        check_hash_block(buckets, block)
        row, col = pos // np.uint64(in_features), pos % np.uint64(in_features)
        key = (row // np.uint64(block)) * np.uint64(in_features) + col
        lane = row % np.uint64(block)
    start = (fmix32(key ^ np.uint64(seed_b)) * np.uint64(buckets // block)) >> np.uint64(32)
    bucket = (start * np.uint64(block) + lane).astype(np.int64)
    bit = (fmix32(key ^ np.uint64(seed_s)) >> (np.uint64(31) - lane)) & np.uint64(1)
    sign = (1 - 2 * bit.astype(np.int64)).astype(np.float32)
    return bucket, sign


def hash_with_seeds(out_features: int, in_features: int, buckets: int, seed_b: int, seed_s: int, block: int = 1):
    """(bucket index int64 [out, in], sign float32 [out, in]) for explicit seeds."""
    key = np.arange(out_features * in_features, dtype=np.uint64).reshape(out_features, in_features)
    return hash_keys(key, buckets, seed_b, seed_s, block, in_features)


def hash_indices(out_features: int, in_features: int, buckets: int, seed: int, k: int = 0, block: int = 1):
    """(bucket index int64 [out, in], sign float32 [out, in]) of the k-th hash function."""
    return hash_with_seeds(out_features, in_features, buckets, *hash_seeds(seed, k), block=block)


# --- N:M sparse storage --------------------------------------------------------------------------

def index_bits(m: int) -> int:
    """Bits per stored position inside a group of m (2 for 2:4, 3 for 4:8)."""
    return max(1, int(np.ceil(np.log2(m))))


def compress_nm(weight: np.ndarray, n: int, m: int):
    """Rows of ``weight`` [rows, K] with at most n nonzeros per group of m along K ->
    (values float32 [rows, K/m*n], positions int64 [rows, K/m*n]); positions are 0..m-1 inside
    each group, ascending; groups with fewer than n nonzeros are padded with zero values."""
    rows, k = weight.shape
    if k % m:
        raise ValueError(f"reduction length {k} is not a multiple of M={m}")
    groups = weight.reshape(rows, k // m, m)
    nz = groups != 0
    if nz.sum(axis=2).max(initial=0) > n:
        raise ValueError(f"a group holds more than {n} nonzeros: the weight is not {n}:{m} sparse")
    # stable order: nonzero positions first (ascending), then zero positions (ascending)
    order = np.argsort(~nz, axis=2, kind="stable")[:, :, :n]
    order = np.sort(order, axis=2)
    values = np.take_along_axis(groups, order, axis=2)
    return values.reshape(rows, -1).astype(np.float32), order.reshape(rows, -1).astype(np.int64)


def expand_nm(values: np.ndarray, positions: np.ndarray, n: int, m: int, k: int) -> np.ndarray:
    """Dense [rows, K] from :func:`compress_nm`'s output."""
    rows = values.shape[0]
    dense = np.zeros((rows, k // m, m), dtype=np.float32)
    np.put_along_axis(dense, positions.reshape(rows, k // m, n), values.reshape(rows, k // m, n), axis=2)
    return dense.reshape(rows, k)


# ---------------------------------------------------------------------------------------------
# Walsh-Hadamard

def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def fwht_np(x: np.ndarray) -> np.ndarray:
    """Unnormalized Walsh-Hadamard transform along the last axis, in numpy (the twin of
    :func:`tvmopt.nn.fastfood.fwht`)."""
    x = np.asarray(x)
    n = x.shape[-1]
    lead = x.shape[:-1]
    h = 1
    while h < n:
        y = x.reshape(*lead, n // (2 * h), 2, h)
        x = np.stack((y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]), axis=-2).reshape(*lead, n)
        h *= 2
    return x
