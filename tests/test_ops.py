"""Op-test harness: every runtime op against an independent NumPy implementation written here.

Each op runs on odd shapes and on non-contiguous inputs (transposed, sliced and broadcast views) and is
checked llm.c-style: |out - ref| <= atol + rtol * |ref| elementwise, with the tolerance stated per op (the
numbers are f32 rounding budgets: ~1e-6 relative for pointwise ops, more for long reductions and GEMMs
whose summation order differs from NumPy's). On failure the first mismatches, the max abs and max rel
error are printed.

The `backend` fixture runs every test on "cpu"; "cuda" (the CUDA backend, `pytest -m cuda`) is skipped
cleanly when the build or the machine has no GPU. CPU ops come from `lyra2._testops` (the test-only extension).
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import lyra2
from lyra2 import _testops as _ops
from numpy_refs import attention_ref

try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - scipy is a test dependency
    _erf = np.vectorize(math.erf)


# ---------------------------------------------------------------- harness

class _OpsOn:
    """The _ops functions bound to one backend (the CUDA glue takes backend="cuda")."""

    def __init__(self, backend):
        self.backend = backend

    def __getattr__(self, name):
        fn = getattr(_ops, name)
        if self.backend == "cpu":
            return fn
        return lambda *a, **k: fn(*a, backend=self.backend, **k)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def ops(request):
    if request.param == "cuda" and not lyra2.backends()["cuda"]:
        pytest.skip("no CUDA backend in this build or no GPU visible")
    return _OpsOn(request.param)


def check(out, ref, atol, rtol, name="op"):
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, f"{name}: shape {out.shape} != reference {ref.shape}"
    err = np.abs(out - ref)
    bad = ~(err <= atol + rtol * np.abs(ref))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        lines = [f"  at {tuple(i)}: got {out[tuple(i)]!r}, want {ref[tuple(i)]!r}" for i in idx]
        rel = err / np.maximum(np.abs(ref), 1e-30)
        pytest.fail(f"{name}: {bad.sum()} of {bad.size} outside atol={atol} rtol={rtol}; "
                    f"max abs {err.max():.3g}, max rel {rel.max():.3g}\n" + "\n".join(lines))


RNG = np.random.default_rng(1234)


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def layout(a, kind):
    """The same values as `a` in a non-contiguous memory layout.
    contiguous: a itself; transposed: stored with reversed axes; sliced: a window of a wider buffer
    (last dim contiguous, larger row strides); reversed: negative stride on the first dim."""
    a = np.asarray(a, dtype=np.float32)
    if kind == "contiguous":
        return a
    if kind == "transposed":
        t = np.ascontiguousarray(a.transpose(tuple(reversed(range(a.ndim)))))
        v = t.transpose(tuple(reversed(range(a.ndim))))
        assert a.ndim < 2 or not v.flags.c_contiguous
        return v
    if kind == "sliced":
        big = np.zeros(tuple(n + 3 for n in a.shape), np.float32)
        big[tuple(slice(1, 1 + n) for n in a.shape)] = a
        return big[tuple(slice(1, 1 + n) for n in a.shape)]
    if kind == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    raise ValueError(kind)


ALL_LAYOUTS = ["contiguous", "transposed", "sliced", "reversed"]
ROW_LAYOUTS = ["contiguous", "sliced", "reversed"]  # ops that need a contiguous last dim


def bf16_round(x):
    """Round float32 to bf16 (nearest even) and back, written independently of the C helper."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


# ---------------------------------------------------------------- dtype conversion

def test_bf16_conversion_matches_numpy_rounding():
    x = np.concatenate([rnd(1000, scale=100.0), np.array([0.0, -0.0, 1.0, 65504.0, 1e-40, 3.4e38, np.inf, -np.inf],
                                                          np.float32)])
    # exact ties: 1 + 2^-8 lies halfway between two bf16 values; round to even keeps 1.0
    x = np.concatenate([x, np.array([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8], np.float32)])
    bits = _ops.to_bf16(x)
    assert bits.dtype == np.uint16
    want = bf16_round(x)
    np.testing.assert_array_equal(_ops.from_bf16(bits), want)
    assert _ops.from_bf16(_ops.to_bf16(np.array([1.0 + 2.0 ** -8], np.float32)))[0] == 1.0
    assert np.isnan(_ops.from_bf16(_ops.to_bf16(np.array([np.nan], np.float32))))[0]


def test_f16_conversion_matches_numpy():
    x = np.concatenate([rnd(2000, scale=300.0), rnd(500, scale=1e-5),
                        np.array([65504.0, 65519.0, 65520.0, 1e6, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, -0.0],
                                 np.float32)])
    bits = _ops.to_f16(x)
    with np.errstate(over="ignore"):  # 65520 and 1e6 overflow to inf, as they should
        np.testing.assert_array_equal(bits, x.astype(np.float16).view(np.uint16))
    h = (np.arange(0, 65536, dtype=np.uint32).astype(np.uint16))
    f = _ops.from_f16(h)
    ref = h.view(np.float16).astype(np.float32)
    same = (f == ref) | (np.isnan(f) & np.isnan(ref))
    assert same.all()


# ---------------------------------------------------------------- descriptor, carving, arena

def test_views_match_numpy():
    x = rnd(2, 3, 4, 5)
    np.testing.assert_array_equal(_ops.view(x, "slice", [2, 1, 3]), x[:, :, 1:3])
    np.testing.assert_array_equal(_ops.view(x, "slice", [-1, 0, 5]), x)
    np.testing.assert_array_equal(_ops.view(x, "permute", [3, 1, 0, 2]), x.transpose(3, 1, 0, 2))
    np.testing.assert_array_equal(_ops.view(x, "reshape", [6, -1]), x.reshape(6, -1))
    np.testing.assert_array_equal(_ops.view(x, "select", [2, 3]), x[:, :, 3])
    np.testing.assert_array_equal(_ops.view(x, "select", [-1, 0]), x[..., 0])
    np.testing.assert_array_equal(_ops.view(x, "unsqueeze", [1]), x[:, None])
    np.testing.assert_array_equal(_ops.view(x, "unsqueeze", [4]), x[..., None])
    np.testing.assert_array_equal(_ops.view(x[:, :1], "expand", [2, 3, 4, 5]), np.broadcast_to(x[:, :1], x.shape))
    np.testing.assert_array_equal(_ops.view(layout(x, "transposed"), "permute", [1, 0, 2, 3]), x.transpose(1, 0, 2, 3))
    with pytest.raises(ValueError, match="slice"):
        _ops.view(x, "slice", [1, 2, 9])
    with pytest.raises(ValueError, match="permutation"):
        _ops.view(x, "permute", [0, 0, 1, 2])
    with pytest.raises(ValueError, match="contiguous"):
        _ops.view(layout(x, "transposed"), "reshape", [120])
    with pytest.raises(ValueError, match="broadcast"):
        _ops.view(x, "expand", [2, 6, 4, 5])


def test_carver_layout():
    specs = [("a.weight", "bf16", [3, 5]), ("a.bias", "f32", [7]), ("b", "u8", [1]), ("c", "i64", [2, 2])]
    total, offs = _ops.carve(specs)
    sizes = [30, 28, 1, 32]
    assert all(o % 64 == 0 for o in offs)  # every tensor 64-byte aligned
    for i in range(len(offs) - 1):
        assert offs[i] + sizes[i] <= offs[i + 1]  # no overlap, in order
    assert total == offs[-1] + sizes[-1]
    assert _ops.carve(specs, capacity=total)[0] == total  # the carving pass fits exactly
    with pytest.raises(lyra2.Lyra2Error, match="'c'"):
        _ops.carve(specs, capacity=total - 1)


def test_weights_bind():
    avail = {"w": [4, 8], "b": [4], "extra": [1]}
    got = _ops.bind(avail, [("w", [4, -1]), ("b", [4]), ("opt", [3], True)])
    assert got == {"w": (4, 8), "b": (4,), "opt": None}
    with pytest.raises(lyra2.Lyra2Error, match="'missing' is missing"):
        _ops.bind(avail, [("missing", [4])])
    with pytest.raises(lyra2.Lyra2Error, match=r"'b' has shape \(4,\) f32, expected \(5,\)"):
        _ops.bind(avail, [("b", [5])])


def test_arena_mark_reset():
    offs, peak = _ops.arena(1024, [100, 200, 50])
    assert offs == [0, 128, 384] and peak == 434
    offs, peak = _ops.arena(1024, [100, 200, 50], reset_after=1)
    assert offs == [0, 128, 128] and peak == 328  # the reset reuses the temporary's space
    offs, _ = _ops.arena(256, [100, 200])
    assert offs == [0, None]  # full: NULL, never an overflow


# ---------------------------------------------------------------- GEMM

@pytest.mark.parametrize("kind", ALL_LAYOUTS)
@pytest.mark.parametrize("wdtype", ["f32", "bf16", "f16"])
def test_linear(ops, kind, wdtype):
    # tolerance: f32 accumulation over K=77 terms of O(1) products; reference in float64 with the
    # weights rounded to the tested dtype: atol 2e-5, rtol 1e-5
    x, w, b = rnd(3, 5, 77), rnd(33, 77), rnd(33)
    wq = {"f32": w, "bf16": bf16_round(w), "f16": w.astype(np.float16).astype(np.float32)}[wdtype]
    ref = x.astype(np.float64) @ wq.astype(np.float64).T + b
    out = ops.linear(layout(x, kind), layout(w, kind), b, wdtype=wdtype)
    check(out, ref, 2e-5, 1e-5, f"linear {kind} {wdtype}")
    check(ops.linear(x[0], w, None, wdtype=wdtype), x[0].astype(np.float64) @ wq.astype(np.float64).T,
          2e-5, 1e-5, "linear no bias")


def test_linear_big_bf16_tiles(ops):
    # K large enough that the bf16 weight is converted in several row tiles (tile = 2^20 / K rows);
    # M = 70 >= 64 takes the serial conversion path. Weights passed as raw bf16 bits (uint16).
    x, w = rnd(70, 8192, scale=0.1), rnd(300, 8192, scale=0.1)
    ref = x.astype(np.float64) @ bf16_round(w).astype(np.float64).T
    check(ops.linear(x, _ops.to_bf16(w), wdtype="bf16"), ref, 1e-4, 1e-4, "linear bf16 tiles")
    check(ops.linear(x[:3], w, wdtype="bf16"), ref[:3], 1e-4, 1e-4, "linear bf16 tiles small M")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_matmul(ops, kind):
    # tolerance as linear
    a, b, bt = rnd(4, 9, 31), rnd(4, 31, 13), rnd(4, 13, 31)
    check(ops.matmul(layout(a, kind), layout(b, kind)), a.astype(np.float64) @ b, 2e-5, 1e-5, "matmul")
    check(ops.matmul(layout(a, kind), layout(bt, kind), trans_b=True, alpha=0.5),
          0.5 * a.astype(np.float64) @ bt.transpose(0, 2, 1), 2e-5, 1e-5, "matmul trans_b")
    # broadcast batch of b (size 1) and plain 2-d
    check(ops.matmul(a, b[:1]), a.astype(np.float64) @ b[:1], 2e-5, 1e-5, "matmul broadcast")
    check(ops.matmul(a[0], b[0]), a[0].astype(np.float64) @ b[0], 2e-5, 1e-5, "matmul 2d")


def test_sgemm_fallback_kernel():
    # the plain C GEMM used when the build has no OpenBLAS; tolerance as linear
    a, b = rnd(37, 61), rnd(61, 29)
    check(_ops.sgemm_ref(a, b), a.astype(np.float64) @ b, 2e-5, 1e-5, "sgemm_ref nn")
    check(_ops.sgemm_ref(a, b.T.copy(), trans_b=True), a.astype(np.float64) @ b, 2e-5, 1e-5, "sgemm_ref nt")


# ---------------------------------------------------------------- attention

@pytest.mark.parametrize("kind", ROW_LAYOUTS)
def test_attention(ops, kind):
    # tolerance: softmax in f32 (exp, sum over 23 keys) then a 23-term GEMM: atol 1e-5, rtol 1e-4
    q, k, v = rnd(2, 19, 4, 24), rnd(2, 23, 4, 24), rnd(2, 23, 4, 16)
    s = 1 / math.sqrt(24)
    out = ops.attention(layout(q, kind), layout(k, kind), layout(v, kind), s)
    check(out, attention_ref(q, k, v, s), 1e-5, 1e-4, f"attention {kind}")


def test_attention_fused_qkv_views(ops):
    # q, k, v as strided slices of one fused (B, L, 3, H, D) projection, as CLIP's qkv Linear produces
    qkv = rnd(1, 17, 3, 5, 8)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    check(ops.attention(q, k, v, 0.35), attention_ref(q, k, v, 0.35), 1e-5, 1e-4, "attention fused qkv")
    # head-major (B, H, L, D) storage permuted to (B, L, H, D)
    qh = rnd(2, 3, 11, 8)
    qp = qh.transpose(0, 2, 1, 3)
    check(ops.attention(qp, qp, qp, 0.2), attention_ref(qp, qp, qp, 0.2), 1e-5, 1e-4, "attention permuted")
    # stride-0 keys (a broadcast view) cannot go to BLAS directly and are packed
    kb = np.broadcast_to(rnd(2, 1, 3, 8), (2, 9, 3, 8))
    vb = rnd(2, 9, 3, 8)
    check(ops.attention(qp, kb, vb, 0.2), attention_ref(qp, kb, vb, 0.2), 1e-5, 1e-4, "attention packed keys")


def test_attention_bias_mask_gqa(ops):
    # T5-style per-head additive bias (broadcast over batch), key mask, and grouped kv heads
    B, Lq, Lk, H, Hk, D = 2, 13, 17, 6, 3, 8
    q, k, v = rnd(B, Lq, H, D), rnd(B, Lk, Hk, D), rnd(B, Lk, Hk, D)
    bias = rnd(1, H, Lq, Lk)
    mask = (RNG.random((B, Lk)) > 0.3).astype(np.uint8)
    mask[:, 0] = 1
    out = ops.attention(q, k, v, 1.0, bias=bias, key_mask=mask)
    check(out, attention_ref(q, k, v, 1.0, bias, mask), 1e-5, 1e-4, "attention bias+mask")
    # a fully masked batch row gives zeros
    mask[1] = 0
    out = ops.attention(q, k, v, 1.0, key_mask=mask)
    assert np.all(out[1] == 0)
    check(out[0], attention_ref(q, k, v, 1.0, None, mask)[0], 1e-5, 1e-4, "attention masked")


def test_attention_long_keys_tiled(ops):
    # thousands of keys: the CPU kernel's online softmax runs over 36 key blocks
    q, k, v = rnd(1, 200, 1, 16, scale=0.5), rnd(1, 9000, 1, 16, scale=0.5), rnd(1, 9000, 1, 8)
    check(ops.attention(q, k, v, 0.25), attention_ref(q, k, v, 0.25), 1e-5, 1e-4, "attention tiled")


def test_attention_flash_block_edges(ops):
    # The CPU kernel works in blocks of 60 queries x 256 keys, 6-row and 16-key steps, 16-column value panels:
    # 130 queries (a ragged last block and row step), 600 keys (a ragged key block and panel), Dv = 40 (a
    # column tail), head dim 128 as in the DiT, grouped kv heads, bias and mask. Scores grow from block to
    # block (the running max is raised and earlier partial sums rescaled), and batch 1 masks the whole first
    # key block (the running max starts at -inf there).
    B, Lq, Lk, H, Hk, D, Dv = 2, 130, 600, 4, 2, 128, 40
    q = rnd(B, Lq, H, D, scale=0.3)
    k = rnd(B, Lk, Hk, D, scale=0.3) + np.linspace(0, 0.4, Lk, dtype=np.float32)[None, :, None, None]
    v = rnd(B, Lk, Hk, Dv)
    q[:, :, :, :] += 0.5
    bias = rnd(B, 1, Lq, Lk, scale=0.5)
    mask = np.ones((B, Lk), np.uint8)
    mask[1, :300] = 0
    mask[0, ::7] = 0
    s = 1 / math.sqrt(D)
    check(ops.attention(q, k, v, s, bias=bias, key_mask=mask), attention_ref(q, k, v, s, bias, mask), 1e-5, 1e-4,
          "attention flash edges")
    check(ops.attention(q, k, v, s), attention_ref(q, k, v, s), 1e-5, 1e-4, "attention flash edges, no bias")
    # 270 keys: an odd number of 16-key panels in the last key block (the AVX-512 kernels take panels in pairs;
    # Dv = 40 gives an odd number of value panels too)
    k2, v2 = k[:, :270], v[:, :270]
    check(ops.attention(q, k2, v2, s), attention_ref(q, k2, v2, s), 1e-5, 1e-4, "attention flash odd panels")


@pytest.mark.parametrize("simd", ["0", "avx2"])
def test_attention_portable_kernels(simd):
    # The CPU attention's portable C kernels (used where AVX2+FMA is missing; LYRA2_CPU_SIMD=0 forces them) and
    # its AVX2 kernels (used where AVX-512 is missing; LYRA2_CPU_SIMD=avx2 forces them) pass the same attention
    # tests, in a fresh process since the choice is made once per process.
    env = dict(os.environ, LYRA2_CPU_SIMD=simd)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                        "attention and not portable and not torch and not cuda"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


def test_attention_rejects_bad_shapes(ops):
    with pytest.raises(ValueError, match="attention"):
        ops.attention(rnd(1, 4, 3, 8), rnd(1, 5, 2, 8), rnd(1, 5, 2, 8), 1.0)  # 3 heads over 2 kv heads
    with pytest.raises(ValueError, match="bias"):
        ops.attention(rnd(1, 4, 2, 8), rnd(1, 5, 2, 8), rnd(1, 5, 2, 8), 1.0, bias=rnd(1, 2, 4, 4))


# ---------------------------------------------------------------- normalisation

@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_rms_norm(ops, kind):
    # tolerance: one f32 rsqrt and a product: atol 1e-6, rtol 2e-6
    x, w = rnd(3, 7, 65, scale=3.0), rnd(65)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6) * w
    check(ops.rms_norm(layout(x, kind), w, eps=1e-6), ref, 1e-6, 2e-6, f"rms_norm {kind}")
    # per head: (B, L, H, Dh) with w (Dh), and without weight
    xh, wh = rnd(2, 5, 3, 16), rnd(16)
    ref = xh / np.sqrt((xh.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6)
    check(ops.rms_norm(layout(xh, kind), None), ref, 1e-6, 2e-6, "rms_norm no weight")
    check(ops.rms_norm(xh, wh, wdtype="bf16"), ref * bf16_round(wh), 1e-6, 2e-6, "rms_norm per-head bf16 w")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_layer_norm(ops, kind):
    # tolerance: two-pass mean/variance: atol 2e-6, rtol 2e-6
    x, w, b = rnd(4, 9, 129, scale=2.0) + 5.0, rnd(129), rnd(129)
    x64 = x.astype(np.float64)
    n = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    check(ops.layer_norm(layout(x, kind), w, b, eps=1e-5), n * w + b, 2e-6, 2e-6, f"layer_norm {kind}")
    check(ops.layer_norm(layout(x, kind), eps=1e-5), n, 2e-6, 2e-6, "layer_norm no affine")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_l2norm_channels_wan_vae(ops, kind):
    # upstream TOK:70-94, TOK:97-109, TOK:120-198: x / max(||x||_2 over C, 1e-12) * sqrt(C) * gamma; tolerance atol
    # 1e-6, rtol 2e-6
    x, g, bta = rnd(2, 12, 3, 5, 7), rnd(12), rnd(12)
    x[0, :, 0, 0, 0] = 0.0  # zero vector: the clamp keeps it 0 instead of NaN
    x64 = x.astype(np.float64)
    nrm = np.maximum(np.sqrt((x64 ** 2).sum(1, keepdims=True)), 1e-12)
    shp = (1, 12, 1, 1, 1)
    ref = x64 / nrm * math.sqrt(12) * g.reshape(shp)
    check(ops.l2norm_channels(layout(x, kind), g), ref, 1e-6, 2e-6, f"l2norm_channels {kind}")
    check(ops.l2norm_channels(x, g, bta), ref + bta.reshape(shp), 1e-6, 2e-6, "l2norm_channels bias")
    assert np.all(ops.l2norm_channels(x, g)[0, :, 0, 0, 0] == 0)
    # image variant (B, C, H, W), gamma of shape (C,)
    xi = rnd(1, 6, 4, 3)
    refi = xi / np.sqrt((xi.astype(np.float64) ** 2).sum(1, keepdims=True)) * math.sqrt(6)
    check(ops.l2norm_channels(xi), refi, 1e-6, 2e-6, "l2norm_channels image")
    # more positions than one block of the contiguous path (256), the last block partial, in place
    xb = rnd(2, 5, 3, 10, 11)
    refb = xb / np.sqrt((xb.astype(np.float64) ** 2).sum(1, keepdims=True)) * math.sqrt(5)
    check(ops.l2norm_channels(xb), refb, 1e-6, 2e-6, "l2norm_channels blocks")


def test_group_norm(ops):
    # tolerance as layer_norm
    x, w, b = rnd(2, 12, 5, 6, scale=2.0), rnd(12), rnd(12)
    xg = x.astype(np.float64).reshape(2, 3, -1)
    n = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    ref = n * w.reshape(1, 12, 1, 1) + b.reshape(1, 12, 1, 1)
    check(ops.group_norm(layout(x, "transposed"), w, b, eps=1e-5, groups=3), ref, 2e-6, 2e-6, "group_norm")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_softmax(ops, kind):
    # tolerance: exp and an n-term sum in f32: atol 1e-7, rtol 1e-5
    x = rnd(3, 4, 37, scale=4.0)
    s = x.astype(np.float64) * 0.7
    e = np.exp(s - s.max(-1, keepdims=True))
    check(ops.softmax(layout(x, kind), scale=0.7), e / e.sum(-1, keepdims=True), 1e-7, 1e-5, "softmax")


# ---------------------------------------------------------------- pointwise

def act_ref(x, act):
    x = x.astype(np.float64)
    if act == "gelu_erf":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if act == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if act == "silu":
        return x / (1 + np.exp(-x))
    if act == "relu":
        return np.maximum(x, 0)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-x))
    return x


ACTS = ["identity", "gelu_erf", "gelu_tanh", "silu", "relu", "sigmoid"]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_unary(ops, act, kind):
    # tolerance: one libm call in f32: atol 1e-6, rtol 1e-6
    x = rnd(3, 7, 11, scale=3.0)
    check(ops.unary(layout(x, kind), act), act_ref(x, act), 1e-6, 1e-6, f"unary {act} {kind}")


@pytest.mark.parametrize("act", ["gelu_tanh", "silu"])
def test_glu(ops, act):
    # umT5 gated-GELU: a * gelu_tanh(g); SwiGLU: x2 * silu(x1). tolerance as unary
    a, g = rnd(5, 33), rnd(5, 33, scale=2.0)
    check(ops.glu(layout(a, "transposed"), layout(g, "sliced"), act), a * act_ref(g, act), 1e-6, 1e-6, f"glu {act}")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_add_mul_broadcast(ops, kind):
    # exact up to one f32 rounding: atol 0, rtol 1.2e-7
    a, b = rnd(2, 5, 7), rnd(1, 5, 1)
    check(ops.add(layout(a, kind), b), a + b, 0, 1.2e-7, "add")
    check(ops.mul(layout(a, kind), b), a * b, 0, 1.2e-7, "mul")
    check(ops.add(b, layout(a, kind)), a + b, 0, 1.2e-7, "add broadcast first")
    check(ops.scale(layout(a, kind), 0.5, -2.0), 0.5 * a - 2.0, 1e-7, 1.2e-7, "scale")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_modulate_gate(ops, kind):
    # adaLN: x*(1+scale)+shift and x + g*a, (B|1, 1, D) vectors broadcast over tokens; two roundings
    x, a = rnd(2, 9, 20), rnd(2, 9, 20)
    shift, scl, g = rnd(2, 1, 20), rnd(1, 1, 20), rnd(2, 1, 20)
    x64 = x.astype(np.float64)
    check(ops.modulate(layout(x, kind), shift, scl), x64 * (1 + scl) + shift, 1e-6, 3e-7, "modulate")
    check(ops.gate(layout(x, kind), g, layout(a, kind)), x64 + g * a.astype(np.float64), 1e-6, 3e-7, "gate")


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_sincos_buffer_features(ops, kind):
    # DiT correspondence-buffer features (wan2pt1_lyra2.py:137-148): per octave o the sin block then the cos block
    # of x·f32(2^o·π), the product rounded to f32 first; the reference takes that rounded argument in float64, so
    # only the sin/cos evaluation is measured (|arg| <= 4π·2: a few f32 ulps, atol 2e-6)
    x = (RNG.random((2, 5, 12)) * 4 - 2).astype(np.float32)
    ref = []
    for o in range(2):
        a = (x * np.float32(np.ldexp(np.pi, o))).astype(np.float32).astype(np.float64)
        ref += [np.sin(a), np.cos(a)]
    ref = np.concatenate(ref, axis=-1)
    check(ops.sincos(layout(x, kind), octaves=2), ref, 2e-6, 0, "sincos")
    with pytest.raises(ValueError, match="octaves"):
        ops.sincos(x, octaves=0)


def test_sincos_wide_range_and_octants(ops):
    # The vector kernel's π/4 reduction over its whole range (octant boundaries, |x·f| up to 8192) and the libm
    # fallback beyond it and for non-finite values; same measure as above (atol 2e-6 on the rounded argument).
    quarter = np.arange(-64, 65, dtype=np.float64) * (np.pi / 4) / np.pi  # multiples of π/4, in units of π
    x = np.concatenate([quarter, np.nextafter(quarter, 10), np.nextafter(quarter, -10),
                        RNG.uniform(-1, 1, 500) * 1300, RNG.uniform(-1, 1, 300) * 5000]).astype(np.float32)
    x = np.concatenate([x, np.zeros(-x.size % 8 + 3, np.float32)])  # a scalar tail after the 8-lane groups
    ref = []
    for o in range(2):
        a = (x * np.float32(np.ldexp(np.pi, o))).astype(np.float32).astype(np.float64)
        ref += [np.sin(a), np.cos(a)]
    check(ops.sincos(x[None], octaves=2), np.concatenate(ref)[None], 2e-6, 0, "sincos wide range")
    bad = np.array([np.inf, -np.inf, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    out = ops.sincos(bad[None], octaves=1)[0]
    assert np.isnan(out[[0, 1, 2, 8, 9, 10]]).all()
    np.testing.assert_allclose(out[[3, 11]], [np.sin(np.float32(np.pi)), np.cos(np.float32(np.pi))], atol=2e-6)


@pytest.mark.parametrize("act", ["gelu_tanh", "silu"])
def test_unary_wide_range(ops, act):
    # The vector GELU/SiLU (x / (1 + e^−u)) where e^−u over- and underflows, and around 0; tolerance as unary
    x = np.concatenate([np.linspace(-40, 40, 401), np.linspace(-1e-3, 1e-3, 41), [1e-30, -1e-30, 0.0]])
    x = x.astype(np.float32).reshape(1, -1)
    check(ops.unary(x, act), act_ref(x, act), 1e-6, 1e-6, f"unary {act} wide")
    check(ops.glu(np.ones_like(x), x, act), act_ref(x, act), 1e-6, 1e-6, f"glu {act} wide")


def test_pointwise_portable_kernels():
    # sincos and the activations through their scalar (libm) loops (LYRA2_CPU_SIMD=0), in a fresh process since
    # the choice is made once per process.
    env = dict(os.environ, LYRA2_CPU_SIMD="0")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                        "(sincos or unary or glu) and not portable and not torch and not cuda"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


def e4m3_values():
    """The 127 non-negative finite e4m3fn values by code (bias 7, 3 mantissa bits, code 0x7E = 448)."""
    c = np.arange(127)
    e, m = c >> 3, c & 7
    return np.where(e > 0, (1 + m / 8) * 2.0 ** (e - 7), m / 8 * 2.0 ** -6)


def e4m3_encode(v):
    """Codes of float32 values: nearest e4m3 value, ties to the even code, saturating at ±448 (NumPy, vectorised,
    written from the format's definition, independent of the C conversion)."""
    table = e4m3_values()
    a = np.minimum(np.abs(v.astype(np.float64)), 448.0)
    hi = np.clip(np.searchsorted(table, a), 1, 126)
    lo = hi - 1
    dlo, dhi = a - table[lo], table[hi] - a
    code = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    return (code | np.where(np.signbit(v), 0x80, 0)).astype(np.uint8)


def e4m3_decode(q):
    table = np.concatenate([e4m3_values(), [np.nan]])
    return np.where(q & 0x80, -1.0, 1.0) * table[q & 0x7F]


@pytest.mark.parametrize("kind", ROW_LAYOUTS)
def test_fp8_quantize_rows(ops, kind):
    # per-token e4m3 (the DiT's fp8 activations): s = f32(max|row|) / 448 and q = e4m3(f32(x / s)), both f32
    # divisions correctly rounded on every backend, so the scales and the codes are exact (no tolerance)
    x = rnd(3, 7, 40, scale=2.0)
    x[1, 2] = 0.0                           # an all-zero token: scale 1, codes 0
    x[2, 3] *= 1e-3                         # a small token: its own scale keeps 3 significant bits
    x[0, 0, :5] = [1e-9, -1e-9, 3.0, -3.0, 0.5]
    q, sc = ops.quantize_fp8_rows(layout(x, kind))
    rows = x.reshape(-1, 40)
    s_ref = np.abs(rows).max(axis=1).astype(np.float32) / np.float32(448.0)
    s_ref[s_ref == 0] = 1.0
    np.testing.assert_array_equal(sc, s_ref)
    np.testing.assert_array_equal(q, e4m3_encode(rows / s_ref[:, None]))
    assert q.shape == (21, 40) and q.dtype == np.uint8 and not (q[9] & 0x7F).any()


def test_fp8_linear_tokens(ops):
    # y = (Σ_k e4m3(q)·e4m3(w8))·s[m]·ws[n] + b: every product is exact in f32, only the f32 summation over K
    # rounds (order differs per backend): |err| <= 1e-5·Σ_k |terms| (K = 48 roundings of 2^-24 each, with margin)
    M, N, K = 37, 29, 48
    rng = np.random.default_rng(7)
    q = rng.integers(0, 256, (M, K)).astype(np.uint8)
    w8 = rng.integers(0, 256, (N, K)).astype(np.uint8)
    q[(q & 0x7F) == 0x7F] = 0x3F            # no NaN codes
    w8[(w8 & 0x7F) == 0x7F] = 0x41
    s = (rng.random(M) * 0.01 + 1e-4).astype(np.float32)
    ws = (rng.random(N) * 0.002 + 1e-5).astype(np.float32)
    b = rnd(N)
    xd, wd = e4m3_decode(q), e4m3_decode(w8)
    scale = s.astype(np.float64)[:, None] * ws.astype(np.float64)[None, :]
    ref = (xd @ wd.T) * scale + b
    bound = (np.abs(xd) @ np.abs(wd).T) * scale
    out = ops.linear_fp8_tokens(q, s, w8, ws, b)
    assert out.shape == (M, N)
    err = np.abs(out - ref)
    assert (err <= 1e-5 * bound + 1e-6 * np.abs(ref)).all(), f"fp8 linear: worst excess {(err - 1e-5 * bound).max():.3g}"
    np.testing.assert_allclose(ops.linear_fp8_tokens(q, s, w8, ws), ref - b, rtol=0, atol=float(1e-5 * bound.max()))
    with pytest.raises(ValueError, match="w8"):
        ops.linear_fp8_tokens(q, s, w8[:, :40], ws)


def rope_ref(x, ang, mode, n_sections=1):
    x = x.astype(np.float64)
    B, L, H, D = x.shape
    rot = np.exp(1j * ang.astype(np.float64))[None, :, None, :]  # (1, L, 1, D/2)
    if mode == "interleaved":
        z = (x[..., 0::2] + 1j * x[..., 1::2]) * rot
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = z.real, z.imag
        return out
    S = D // n_sections
    out = np.empty_like(x)
    for s in range(n_sections):
        sec = x[..., s * S:(s + 1) * S]
        z = (sec[..., :S // 2] + 1j * sec[..., S // 2:]) * rot[..., s * S // 2:(s + 1) * S // 2]
        out[..., s * S:s * S + S // 2], out[..., s * S + S // 2:(s + 1) * S] = z.real, z.imag
    return out


@pytest.mark.parametrize("kind", ROW_LAYOUTS)
def test_rope_interleaved_video(ops, kind):
    # upstream W:93-188, W:203-232, WL:586-596: pairs (x[2p], x[2p+1]), angles [t*w_t (22) | h*w_h (21) | w*w_w (21)]
    # for D=128. tolerance: f32 cos/sin of angles up to ~60 rad: atol 2e-5, rtol 1e-5
    L, D = 24, 128
    pos = np.stack(np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    pos = pos.astype(np.float32) + np.array([25.0, 0.75, 1.25], np.float32)  # fractional: pooled history tokens
    ang = _ops.rope_angles_video(pos, D)
    # reference table, written from the spec: dt = 44, dh = dw = 42, omega = 10000^(-2j/d)
    wt = 10000.0 ** (-2 * np.arange(22) / 44)
    wh = 10000.0 ** (-2 * np.arange(21) / 42)
    ref_ang = np.concatenate([pos[:, :1] * wt, pos[:, 1:2] * wh, pos[:, 2:3] * wh], axis=1)
    check(ang, ref_ang, 0, 2e-7, "rope_angles_video")
    x = rnd(2, L, 3, D)
    check(ops.rope(layout(x, kind), ang), rope_ref(x, ref_ang, "interleaved"), 2e-5, 1e-5, "rope interleaved")


def test_rope_half_2d(ops):
    # upstream DA3rope:23-200, DA3vit:282-298: head 64, first 32 dims rotated by y, last 32 by x, rotate-half inside
    # each; theta 100
    L, D = 10, 64
    pos = np.stack([RNG.integers(0, 8, L), RNG.integers(0, 8, L)], -1).astype(np.float32)
    ang = _ops.rope_angles_2d(pos, D)
    inv = 100.0 ** (-2 * np.arange(16) / 32)
    ref_ang = np.concatenate([pos[:, :1] * inv, pos[:, 1:2] * inv], axis=1)
    check(ang, ref_ang, 0, 2e-7, "rope_angles_2d")
    x = rnd(1, L, 2, D)
    # the DA3 formula, independently: out = v*cos + rotate_half(v)*sin per 32-dim half
    ref = np.empty_like(x, dtype=np.float64)
    for s, p in enumerate([pos[:, 0], pos[:, 1]]):
        th = np.concatenate([p[:, None] * inv] * 2, axis=1)[None, :, None, :]
        v = x[..., 32 * s:32 * (s + 1)].astype(np.float64)
        rh = np.concatenate([-v[..., 16:], v[..., :16]], axis=-1)
        ref[..., 32 * s:32 * (s + 1)] = v * np.cos(th) + rh * np.sin(th)
    check(ops.rope(x, ang, mode="half", n_sections=2), ref, 1e-5, 1e-5, "rope half 2d")


# ---------------------------------------------------------------- layout

@pytest.mark.parametrize("kind", ALL_LAYOUTS)
def test_copy_concat_pad(ops, kind):
    a, b = rnd(2, 3, 5), rnd(2, 4, 5)
    np.testing.assert_array_equal(ops.copy(layout(a, kind)), a)
    np.testing.assert_array_equal(ops.concat([layout(a, kind), layout(b, kind)], dim=1), np.concatenate([a, b], 1))
    np.testing.assert_array_equal(ops.concat([a, a, a], dim=-1), np.concatenate([a, a, a], -1))
    pads = [(0, 1), (2, 0), (1, 3)]
    flat = [p for pr in pads for p in pr]
    np.testing.assert_array_equal(ops.pad(layout(a, kind), flat), np.pad(a, pads))
    np.testing.assert_array_equal(ops.pad(layout(a, kind), flat, mode="replicate"), np.pad(a, pads, mode="edge"))


@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 3, 1)])
@pytest.mark.parametrize("order", ["c_slowest", "c_fastest"])
def test_patchify_unpatchify(ops, patch, order):
    # upstream WL:555-803 (c slowest) and upstream W:532-566, WL:1001-1017 (channel fastest); pure data movement: exact
    kt, kh, kw = patch
    B, C, T, H, W = 2, 3, 2 * kt, 3 * kh, 2 * kw
    x = rnd(B, C, T, H, W)
    F, Hp, Wp = T // kt, H // kh, W // kw
    r = x.reshape(B, C, F, kt, Hp, kh, Wp, kw)
    perm = (0, 2, 4, 6, 1, 3, 5, 7) if order == "c_slowest" else (0, 2, 4, 6, 3, 5, 7, 1)
    ref = r.transpose(perm).reshape(B, F * Hp * Wp, C * kt * kh * kw)
    tok = ops.patchify(layout(x, "transposed"), kt, kh, kw, order=order)
    np.testing.assert_array_equal(tok, ref)
    np.testing.assert_array_equal(ops.unpatchify(layout(ref, "sliced"), x.shape, kt, kh, kw, order=order), x)


def test_embedding(ops):
    table, ids = rnd(50, 12), RNG.integers(0, 50, (3, 7))
    np.testing.assert_array_equal(ops.embedding(table, ids), table[ids])
    np.testing.assert_array_equal(ops.embedding(table, ids, wdtype="bf16"), bf16_round(table)[ids])
    with pytest.raises(ValueError, match="outside"):
        ops.embedding(table, np.array([3, 50]))


# ---------------------------------------------------------------- convolution

def conv2d_ref(x, w, b, stride, pad, mode="zero"):
    x, w = x.astype(np.float64), w.astype(np.float64)
    t, bo, l, r = pad
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)), mode="constant" if mode == "zero" else "edge")
    Co, Ci, kh, kw = w.shape
    Ho = (xp.shape[2] - kh) // stride[0] + 1
    Wo = (xp.shape[3] - kw) // stride[1] + 1
    y = np.zeros((x.shape[0], Co, Ho, Wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride[0] * (Ho - 1) + 1:stride[0], j:j + stride[1] * (Wo - 1) + 1:stride[1]]
            y += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
@pytest.mark.parametrize("cfg", [((1, 1), (1, 1, 1, 1), "zero"), ((2, 2), (0, 1, 0, 1), "zero"),
                                 ((1, 2), (1, 1, 2, 0), "replicate"), ((1, 1), (0, 0, 0, 0), "zero")])
def test_conv2d(ops, kind, cfg):
    # tolerance: f32 GEMM over Ci*kh*kw = 45 terms: atol 2e-5, rtol 1e-5
    stride, pad, mode = cfg
    x, w, b = rnd(2, 5, 9, 11), rnd(7, 5, 3, 3), rnd(7)
    out = ops.conv2d(layout(x, kind), w, b, stride=stride, pad=pad, pad_mode=mode)
    check(out, conv2d_ref(x, w, b, stride, pad, mode), 2e-5, 1e-5, f"conv2d {cfg}")


def test_conv2d_pointwise_and_bf16(ops):
    x, w = rnd(1, 16, 6, 5), rnd(8, 16, 1, 1)
    check(ops.conv2d(x, w), conv2d_ref(x, w, None, (1, 1), (0, 0, 0, 0)), 2e-5, 1e-5, "conv2d 1x1")
    check(ops.conv2d(x, w, wdtype="bf16"), conv2d_ref(x, bf16_round(w), None, (1, 1), (0, 0, 0, 0)),
          2e-5, 1e-5, "conv2d 1x1 bf16")
    xp, wp = rnd(1, 3, 28, 28), rnd(10, 3, 14, 14)  # CLIP-style patch embedding, stride = kernel
    check(ops.conv2d(xp, wp, stride=(14, 14)), conv2d_ref(xp, wp, None, (14, 14), (0, 0, 0, 0)), 5e-5, 1e-5,
          "conv2d patch embed")


def conv3d_ref(x, w, b, prefix, stride, pad):
    """Causal conv3d written from upstream TOK:70-94, TOK:97-109, TOK:120-198: prefix frames then zeros fill the front
    padding."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    pf, pb, pt, pbo, pl, pr = pad
    B, Ci, T, H, W = x.shape
    m = 0 if prefix is None else prefix.shape[2]
    front = np.zeros((B, Ci, pf - m, H, W))
    parts = [front] + ([] if prefix is None else [prefix.astype(np.float64)]) + [x, np.zeros((B, Ci, pb, H, W))]
    xt = np.concatenate(parts, axis=2)
    xp = np.pad(xt, ((0, 0), (0, 0), (0, 0), (pt, pbo), (pl, pr)))
    Co, _, kt, kh, kw = w.shape
    st, sh, sw = stride
    To = (xp.shape[2] - kt) // st + 1
    Ho = (xp.shape[3] - kh) // sh + 1
    Wo = (xp.shape[4] - kw) // sw + 1
    y = np.zeros((B, Co, To, Ho, Wo))
    for a in range(kt):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, :, a:a + st * (To - 1) + 1:st, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
                y += np.einsum("bcthw,oc->bothw", patch, w[:, :, a, i, j])
    return y + (0 if b is None else b.reshape(1, -1, 1, 1, 1))


@pytest.mark.parametrize("kind", ALL_LAYOUTS)
@pytest.mark.parametrize("cfg", [
    ((1, 1, 1), (2, 0, 1, 1, 1, 1), 0),   # Wan 3x3x3, first chunk (zeros in front)
    ((1, 1, 1), (2, 0, 1, 1, 1, 1), 1),   # streaming: one cached frame + one zero frame
    ((1, 1, 1), (2, 0, 1, 1, 1, 1), 2),   # streaming: two cached frames
    ((2, 1, 1), (0, 0, 0, 0, 0, 0), 0),   # downsample3d time_conv (3,1,1) stride 2, no padding
])
def test_conv3d_causal(ops, kind, cfg):
    # tolerance: f32 GEMM over Ci*27 terms: atol 3e-5, rtol 1e-5
    stride, pad, m = cfg
    kt = 3
    kh = 3 if pad[2] else 1
    x, w, b = rnd(1, 4, 5, 6, 7), rnd(6, 4, kt, kh, kh), rnd(6)
    prefix = rnd(1, 4, m, 6, 7) if m else None
    out = ops.conv3d(layout(x, kind), w, b, prefix=None if prefix is None else layout(prefix, kind),
                     stride=stride, pad=pad)
    check(out, conv3d_ref(x, w, b, prefix, stride, pad), 3e-5, 1e-5, f"conv3d {cfg}")


def test_conv3d_streaming_equals_full(ops):
    # Chunked evaluation with the last two input frames as prefix equals the full causal conv (upstream TOK:605-630,
    # M:1007-1046, TOK:623-630)
    x, w = rnd(1, 3, 6, 5, 4), rnd(2, 3, 3, 3, 3)
    pad = (2, 0, 1, 1, 1, 1)
    full = ops.conv3d(x, w, pad=pad)
    first = ops.conv3d(x[:, :, :1], w, pad=pad)
    rest = ops.conv3d(x[:, :, 1:], w, prefix=x[:, :, :1], pad=pad)  # one cached frame (the first chunk's)
    check(np.concatenate([first, rest], 2), full, 1e-5, 1e-5, "conv3d streaming")
    with pytest.raises(ValueError, match="prefix"):
        ops.conv3d(x, w, prefix=rnd(1, 3, 3, 5, 4), pad=pad)


@pytest.mark.parametrize("kind", ["contiguous", "transposed"])
def test_conv_blocked_sizes(ops, kind):
    # Sizes past the CPU conv's blocking: K = Ci*27 = 648 in three k blocks, 13 output channels (a partial
    # 6-channel tile), 13x23 = 299 pixels per frame (three 128-pixel tiles, the last partial, tiles crossing
    # output rows), two cached prefix frames. tolerance: f32 sums of 648 terms: atol 1e-4, rtol 1e-5
    x, w, b = rnd(1, 24, 3, 13, 23), rnd(13, 24, 3, 3, 3), rnd(13)
    prefix = rnd(1, 24, 2, 13, 23)
    pad = (2, 0, 1, 1, 1, 1)
    out = ops.conv3d(layout(x, kind), w, b, prefix=layout(prefix, kind), pad=pad)
    check(out, conv3d_ref(x, w, b, prefix, (1, 1, 1), pad), 1e-4, 1e-5, f"conv3d blocked {kind}")
    # stride 2 with replicate padding (per-element gather path), K = 30*9 = 270 in two blocks
    x2, w2 = rnd(2, 30, 17, 33), rnd(8, 30, 3, 3)
    out2 = ops.conv2d(layout(x2, kind), w2, None, stride=(2, 2), pad=(1, 1, 0, 1), pad_mode="replicate")
    check(out2, conv2d_ref(x2, w2, None, (2, 2), (1, 1, 0, 1), "replicate"), 1e-4, 1e-5, f"conv2d blocked {kind}")


@pytest.mark.parametrize("simd", ["0", "avx2"])
def test_conv_portable_kernel(simd):
    # The CPU convolutions' portable C micro-kernel (used where AVX2+FMA is missing; LYRA2_CPU_SIMD=0 forces it) and
    # AVX2 one (used where AVX-512 is missing; LYRA2_CPU_SIMD=avx2) pass the same convolution tests, in a fresh
    # process since the choice is made once per process.
    env = dict(os.environ, LYRA2_CPU_SIMD=simd)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                        "conv and not portable and not torch and not cuda"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


def test_conv_transpose2d(ops):
    # DA3 heads: kernel = stride (4 and 2); also an overlapping case. tolerance as conv2d
    for (k, s, p) in [(4, 4, 0), (2, 2, 0), (3, 2, 1)]:
        x, w, b = rnd(2, 5, 4, 3), rnd(5, 6, k, k), rnd(6)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        Hf, Wf = (4 - 1) * s + k, (3 - 1) * s + k
        full = np.zeros((2, 6, Hf, Wf))
        for i in range(k):
            for j in range(k):
                full[:, :, i:i + s * 3 + 1:s, j:j + s * 2 + 1:s] += np.einsum("bchw,co->bohw", x64, w64[:, :, i, j])
        ref = full[:, :, p:Hf - p, p:Wf - p] + b.reshape(1, -1, 1, 1)
        check(ops.conv_transpose2d(layout(x, "transposed"), w, b, stride=s, padding=p), ref, 2e-5, 1e-5,
              f"conv_transpose2d k{k} s{s} p{p}")


# ---------------------------------------------------------------- resampling

def test_upsample_nearest2x(ops):
    # exact; a (B, C, T, H, W) video is upsampled per frame (Wan VAE upsample2d/3d, upstream TOK:70-94, TOK:97-109,
    # TOK:120-198)
    for x in (rnd(2, 3, 4, 5), rnd(1, 2, 3, 5, 4)):
        ref = x.repeat(2, axis=-2).repeat(2, axis=-1)
        np.testing.assert_array_equal(ops.upsample_nearest2x(layout(x, "transposed")), ref)


def _cubic(t, A):
    t = np.abs(t)
    return np.where(t <= 1, ((A + 2) * t - (A + 3)) * t * t + 1,
                    np.where(t < 2, ((A * t - 5 * A) * t + 8 * A) * t - 4 * A, 0.0))


def resize_matrix(n_in, n_out, mode, align_corners=False, antialias=False, ratio=None):
    """(n_out, n_in) interpolation matrix written from docs/REFERENCES.md#resampling and upstream CLIP:519-523.
    Source coordinates are computed in float32, as PyTorch does for float tensors (it matters for
    non-terminating ratios such as 37/34.1: ~1e-5 differences against float64 coordinates)."""
    M = np.zeros((n_out, n_in))
    f32 = np.float32
    if align_corners:
        scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0.0)
    else:
        scale = f32(ratio) if ratio else f32(n_in) / f32(n_out)
    for o in range(n_out):
        o = f32(o)
        if antialias:
            support = (1.0 if mode == "bilinear" else 2.0) * max(scale, 1.0)
            inv = 1.0 / max(scale, 1.0)
            c = scale * (o + f32(0.5))
            lo, hi = max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n_in)
            ks = np.arange(lo, hi)
            x = (ks - c + 0.5) * inv
            wts = np.maximum(0, 1 - np.abs(x)) if mode == "bilinear" else _cubic(x, -0.5)
            M[int(o), lo:hi] = wts / wts.sum()
        elif mode == "nearest":
            M[int(o), min(int(math.floor(o * scale)), n_in - 1)] = 1
        elif mode == "bilinear":
            s = o * scale if align_corners else max((o + f32(0.5)) * scale - f32(0.5), f32(0.0))
            i0 = int(s)
            i1 = min(i0 + 1, n_in - 1)
            lam = s - i0
            M[int(o), i0] += 1 - lam
            M[int(o), i1] += lam
        else:
            # bicubic: PyTorch rounds scale*(o+0.5)-0.5 once (a fused multiply-add), not after each step
            s = o * scale if align_corners else f32(np.float64(scale) * (np.float64(o) + 0.5) - 0.5)
            i = math.floor(s)
            t = s - i
            for kk, wgt in zip(range(-1, 3), _cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)):
                M[int(o), min(max(i + kk, 0), n_in - 1)] += wgt
    return M


def resize_ref(x, size, mode, align_corners=False, antialias=False, ratio=(None, None)):
    Mh = resize_matrix(x.shape[-2], size[0], mode, align_corners, antialias, ratio[0])
    Mw = resize_matrix(x.shape[-1], size[1], mode, align_corners, antialias, ratio[1])
    return np.einsum("oh,...hw,pw->...op", Mh, x.astype(np.float64), Mw)


RESIZE_CASES = [
    ("nearest", False, False, (7, 5)), ("bilinear", False, False, (13, 4)), ("bilinear", True, False, (13, 17)),
    ("bicubic", False, False, (16, 16)), ("bicubic", True, False, (5, 9)), ("bicubic", False, False, (3, 2)),
    ("bilinear", False, True, (4, 5)), ("bicubic", False, True, (5, 3)), ("bicubic", False, True, (21, 30)),
]


@pytest.mark.parametrize("mode,ac,aa,size", RESIZE_CASES)
def test_resize(ops, mode, ac, aa, size):
    # tolerance: <= 4-tap (or widened AA) f32 sums per axis: atol 2e-6, rtol 2e-6
    x = rnd(2, 3, 10, 12)
    out = ops.resize(layout(x, "transposed"), size, mode=mode, align_corners=ac, antialias=aa)
    check(out, resize_ref(x, size, mode, ac, aa), 2e-6, 2e-6, f"resize {mode} ac={ac} aa={aa} {size}")


def test_resize_pos_embed_ratio(ops):
    # DA3 pos-embed: scale_factor (h/14+0.1)/37 gives sampling ratio 37/34.1 with output 34 (upstream DA3vit:220-280)
    x = rnd(1, 4, 37, 37)
    ratio = (37 / 34.1, 37 / 59.1)
    out = ops.resize(x, (34, 59), mode="bicubic", ratio=ratio)
    check(out, resize_ref(x, (34, 59), "bicubic", ratio=ratio), 2e-6, 2e-6, "resize ratio")


def test_avg_pool3d(ops):
    x = rnd(2, 3, 5, 7, 9)
    ref = x[:, :, :4, :6, :8].astype(np.float64).reshape(2, 3, 2, 2, 3, 2, 4, 2).mean(axis=(3, 5, 7))
    check(ops.avg_pool3d(layout(x, "transposed"), 2, 2, 2), ref, 1e-6, 1e-6, "avg_pool3d")


# ---------------------------------------------------------------- validation

def test_errors_name_the_argument(ops):
    with pytest.raises(ValueError, match="linear: x"):
        ops.linear(rnd(3, 4), rnd(5, 6))
    with pytest.raises(ValueError, match="conv2d"):
        ops.conv2d(rnd(1, 3, 5, 5), rnd(2, 4, 3, 3))
    with pytest.raises(ValueError, match="broadcast"):
        ops.add(rnd(2, 3), rnd(3, 3))
    with pytest.raises(ValueError, match="rope"):
        ops.rope(rnd(1, 4, 2, 6), rnd(4, 2))
    with pytest.raises(ValueError, match="patch"):
        ops.patchify(rnd(1, 2, 1, 3, 4))


# ---------------------------------------------------------------- composition

def test_attention_block_composition():
    """The ops.h usage example run for real: LayerNorm -> fused qkv Linear -> strided q/k/v views ->
    attention -> reshape -> proj -> in-place residual, activations from one arena with mark/reset,
    applied twice. NumPy reference; tolerance atol 1e-4, rtol 1e-4 (two blocks of f32 GEMMs)."""
    B, L, C, H = 2, 13, 48, 4
    x = rnd(B, L, C)
    ln_w, ln_b = rnd(C), rnd(C)
    qkv_w, qkv_b, proj_w, proj_b = rnd(3 * C, C, scale=0.2), rnd(3 * C), rnd(C, C, scale=0.2), rnd(C)
    ref = x.astype(np.float64)
    for _ in range(2):
        n = (ref - ref.mean(-1, keepdims=True)) / np.sqrt(ref.var(-1, keepdims=True) + 1e-5) * ln_w + ln_b
        qkv = (n @ qkv_w.T.astype(np.float64) + qkv_b).reshape(B, L, 3, H, C // H)
        o = attention_ref(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], 1 / math.sqrt(C // H))
        ref = ref + o.reshape(B, L, C) @ proj_w.T.astype(np.float64) + proj_b
    out = _ops.attn_block_demo(x, ln_w, ln_b, qkv_w, qkv_b, proj_w, proj_b, H, repeat=2)
    check(out, ref, 1e-4, 1e-4, "attention block")


# ---------------------------------------------------------------- torch cross-checks (optional)

class TestAgainstTorch:
    """A few cross-checks against PyTorch itself (CPU build), skipped when torch is absent. They pin the
    PyTorch conventions the NumPy references above were written from (resize coordinates, AA kernels,
    causal padding, SDPA)."""

    @staticmethod
    def _torch():
        return pytest.importorskip("torch")

    @pytest.mark.parametrize("mode,ac,aa,size", RESIZE_CASES + [("bilinear", False, True, (23, 31))])
    def test_resize(self, ops, mode, ac, aa, size):
        torch = self._torch()
        x = rnd(2, 3, 10, 12)
        kw = {} if mode == "nearest" else {"align_corners": ac}
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode, antialias=aa, **kw).numpy()
        # tolerance: same float32 coordinates; summation order differs: atol 3e-6, rtol 3e-6
        check(ops.resize(x, size, mode=mode, align_corners=ac, antialias=aa), ref, 3e-6, 3e-6, f"torch resize {mode}")

    def test_resize_scale_factor(self, ops):
        torch = self._torch()
        x = rnd(1, 4, 37, 37)
        sf = ((476 / 14 + 0.1) / 37, (826 / 14 + 0.1) / 37)
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=sf, mode="bicubic",
                                              align_corners=False).numpy()
        out = ops.resize(x, ref.shape[-2:], mode="bicubic", ratio=(1 / sf[0], 1 / sf[1]))
        # tolerance: atol 2e-5. With a non-terminating ratio the float32 source coordinate (~31.5, ulp 2e-6)
        # rounds differently in torch's kernel (FMA contraction), moving a cubic weight by ~3e-6.
        check(out, ref, 2e-5, 3e-6, "torch resize scale_factor")

    def test_conv3d_causal(self, ops):
        torch = self._torch()
        x, w, b = rnd(1, 4, 5, 6, 7), rnd(6, 4, 3, 3, 3), rnd(6)
        xp = torch.nn.functional.pad(torch.from_numpy(x), (1, 1, 1, 1, 2, 0))  # Wan CausalConv3d padding
        ref = torch.nn.functional.conv3d(xp, torch.from_numpy(w), torch.from_numpy(b)).numpy()
        check(ops.conv3d(x, w, b, pad=(2, 0, 1, 1, 1, 1)), ref, 3e-5, 1e-5, "torch conv3d")

    def test_conv_transpose2d(self, ops):
        torch = self._torch()
        x, w, b = rnd(2, 5, 4, 3), rnd(5, 6, 3, 3), rnd(6)
        ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                                   stride=2, padding=1).numpy()
        check(ops.conv_transpose2d(x, w, b, stride=2, padding=1), ref, 2e-5, 1e-5, "torch conv_transpose2d")

    def test_attention(self, ops):
        torch = self._torch()
        q, k, v = rnd(2, 19, 4, 24), rnd(2, 23, 4, 24), rnd(2, 23, 4, 16)
        bias = rnd(1, 4, 19, 23)
        t = [torch.from_numpy(a).transpose(1, 2) for a in (q, k, v)]
        ref = torch.nn.functional.scaled_dot_product_attention(*t, attn_mask=torch.from_numpy(bias), scale=0.2)
        check(ops.attention(q, k, v, 0.2, bias=bias), ref.transpose(1, 2).numpy(), 1e-5, 1e-4, "torch attention")

    def test_gelu_layer_norm(self, ops):
        torch = self._torch()
        x = rnd(4, 33, scale=3.0)
        tx = torch.from_numpy(x)
        check(ops.unary(x, "gelu_erf"), torch.nn.functional.gelu(tx).numpy(), 1e-6, 1e-6, "torch gelu")
        check(ops.unary(x, "gelu_tanh"), torch.nn.functional.gelu(tx, approximate="tanh").numpy(), 1e-6, 1e-6,
              "torch gelu tanh")
        check(ops.layer_norm(x, eps=1e-6), torch.nn.functional.layer_norm(tx, (33,), eps=1e-6).numpy(), 2e-6, 2e-6,
              "torch layer_norm")
