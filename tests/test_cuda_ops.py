"""CUDA-only op tests: the paths the f32 parity harness (test_ops.py, run there with backend="cuda") does not
reach: bf16 activations (the fused flash-attention kernel, bf16 cuBLASLt GEMMs with fused bias/GELU epilogues,
bf16 pointwise/norm/conv kernels), the FP8 weight path, larger odd-shaped fp32 GEMMs, out-of-memory handling
and the benchmark entry points. Skipped cleanly without a GPU (`pytest -m cuda` runs them on one).

Tolerances follow llm.c: |out - ref| <= atol + rtol·|ref| elementwise, references in float64 from the inputs
already rounded to bf16 (so only the kernel's own rounding is measured): bf16 outputs carry 2^-8 relative
rounding, attention adds the bf16 rounding of the probabilities (rtol 0.08 as llm.c's bf16 eps, atol scaled to
the values' magnitude)."""
import contextlib
import math
import os
import sys

import numpy as np
import pytest

import lyra2
from lyra2 import _testops as _ops
from numpy_refs import attention_ref

pytestmark = pytest.mark.cuda  # skipped without a GPU, a failure under -m cuda (tests/conftest.py)

# FP8 GEMMs, the benchmark entry points and device-OOM handling exist only on a real GPU; the rest of this file
# also runs on the emulated device (LYRA2_EMULATED_CUDA=1, tests/test_emulated_device.py).
real_gpu = pytest.mark.skipif(lyra2.backends()["emulated"], reason="needs a real GPU, not the emulated device")
# The CUDA emulation build (LYRA2_CUDA_EMU=1) runs every kernel thread by thread on the CPU: full-size runs
# (tens of TFLOP, or 8 GiB outputs) are out of its reach and stay for a real GPU.
gpu_scale = pytest.mark.skipif(lyra2.backends()["cuda_emulation_build"],
                               reason="GPU-scale run: too large for the CUDA emulation build's CPU threads")
# LYRA2_EMU_CUBLASLT=0 (tests/test_cuda_emulation.py) makes the emulated cuBLASLt find no algorithm on purpose,
# so every GEMM takes the backend's fallback kernel: there the "gemm" fast-path check does not apply.
GEMM_FALLBACK_FORCED = (lyra2.backends()["cuda_emulation_build"]
                        and os.environ.get("LYRA2_EMU_CUBLASLT", "") == "0")
RNG = np.random.default_rng(4321)


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def bf16(x):
    """float32 -> nearest-even bf16 -> float32, written independently of the C helpers."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def check(out, ref, atol, rtol, name):
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, f"{name}: shape {out.shape} != {ref.shape}"
    err = np.abs(out - ref)
    bad = ~(err <= atol + rtol * np.abs(ref))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        lines = [f"  at {tuple(i)}: got {out[tuple(i)]!r}, want {ref[tuple(i)]!r}" for i in idx]
        pytest.fail(f"{name}: {bad.sum()} of {bad.size} outside atol={atol} rtol={rtol}; max abs {err.max():.3g}\n"
                    + "\n".join(lines))


def cuda(fn, *a, **k):
    return getattr(_ops, fn)(*a, backend="cuda", **k)


def fallbacks():
    """Calls that took the CUDA backend's slow reference kernels so far, per kind ("gemm", "attention"); zero in a
    CPU-only build, which has no CUDA backend to count (its emulated device runs the CPU kernels)."""
    counts = {"gemm": 0, "attention": 0}
    counts.update({k: v["count"] for k, v in lyra2.backends()["cuda_fallbacks"].items()})
    return counts


@contextlib.contextmanager
def fast_path(*kinds):
    """Asserts that the block ran no slow reference kernel of the given kinds (cuBLASLt / the fused attention).
    The emulated device runs CPU kernels and counts nothing: there the block only has to run."""
    before = fallbacks()
    yield
    after = fallbacks()
    for k in kinds:
        if k == "gemm" and GEMM_FALLBACK_FORCED:
            continue
        assert after[k] == before[k], (f"{after[k] - before[k]} {k} call(s) took the slow reference kernel; first "
                                       f"ever: {lyra2.backends()['cuda_fallbacks'][k]['first']}")


# ---------------------------------------------------------------- fused attention (bf16)

@pytest.mark.parametrize("D", [16, 48, 64, 80, 96, 112, 128])
def test_flash_attention_head_dims(D):
    # odd lengths: partial query and key tiles; grouped kv heads (4 query heads over 2 kv heads)
    B, Lq, Lk, H, Hk = 2, 133, 77, 4, 2
    q, k, v = bf16(rnd(B, Lq, H, D)), bf16(rnd(B, Lk, Hk, D)), bf16(rnd(B, Lk, Hk, D))
    s = 1 / math.sqrt(D)
    with fast_path("attention"):
        out = cuda("attention", q, k, v, s, dtype="bf16")
    check(out, attention_ref(q, k, v, s), 2e-2, 0.08, f"flash attention D={D}")


def test_flash_attention_long_keys():
    # head dim 128 (its 2x32 tile shape): 1000 keys cross many K/V tiles, 300 queries a partial query tile
    q, k, v = bf16(rnd(1, 300, 2, 128)), bf16(rnd(1, 1000, 2, 128)), bf16(rnd(1, 1000, 2, 128))
    with fast_path("attention"):
        out = cuda("attention", q, k, v, 1 / math.sqrt(128), dtype="bf16")
    check(out, attention_ref(q, k, v, 1 / math.sqrt(128)), 2e-2, 0.08, "flash attention long keys")


def test_flash_attention_f32_output():
    # bf16 q/k/v into an f32 output (the fused kernel's float2 stores): no output rounding, P still bf16
    q, k, v = bf16(rnd(2, 41, 3, 64)), bf16(rnd(2, 70, 3, 64)), bf16(rnd(2, 70, 3, 64))
    with fast_path("attention"):
        out = cuda("attention", q, k, v, 0.125, dtype="bf16", out_dtype="f32")
    check(out, attention_ref(q, k, v, 0.125), 1e-2, 0.04, "flash attention f32 out")


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
def test_attention_without_keys(dtype):
    # Lk = 0 (an empty context): no tile is loaded, every output row is 0 on both the fused and the reference path
    q = bf16(rnd(1, 20, 2, 64))
    k = v = np.zeros((1, 1, 2, 64), np.float32)[:, :0]  # a slice keeps real strides (np.zeros((1, 0, ...)) has 0s)
    out = cuda("attention", q, k, v, 0.125, dtype=dtype)
    assert out.shape == (1, 20, 2, 64) and np.all(out == 0)
    assert np.all(_ops.attention(q, k, v, 0.125) == 0)  # the CPU reference agrees


def test_attention_misaligned_rows_bf16_is_counted():
    # bf16 views whose rows start 2 bytes past a 16-byte boundary cannot use the fused kernel's 16-byte copies:
    # the reference kernel gives the right numbers, and the call is counted as a slow fallback
    qkv = bf16(rnd(1, 50, 3, 2, 66))
    q, k, v = qkv[:, :, 0, :, 1:65], qkv[:, :, 1, :, 1:65], qkv[:, :, 2, :, 1:65]
    before = fallbacks()["attention"]
    out = cuda("attention", q, k, v, 0.125, dtype="bf16")
    check(out, attention_ref(q, k, v, 0.125), 1e-2, 0.02, "attention misaligned bf16 rows")
    if not lyra2.backends()["emulated"]:  # the counters are the real CUDA backend's
        assert fallbacks()["attention"] == before + 1
        assert lyra2.backends()["cuda_fallbacks"]["attention"]["first"]


@real_gpu
@gpu_scale
@pytest.mark.slow
def test_attention_full_size_smoke(capsys):
    # the DiT's self-attention at full size: L = 38,246 tokens, 40 heads of 128, bf16, on the fused kernel
    # (the reference kernel would take tens of seconds here); the time is printed into the device log
    with fast_path("attention"):
        ms = _ops.cuda_bench_attention(38246, 38246, 40, 128, repeat=1)
    with capsys.disabled():
        print(f"\n[device] self-attention L=38246 H=40 D=128 bf16: {ms:.1f} ms "
              f"({4.0 * 38246 ** 2 * 40 * 128 / ms / 1e9:.0f} TFLOP/s)", file=sys.stderr)
    assert 0 < ms < 5000


def test_flash_attention_bias_mask():
    # umT5: per-head additive bias (broadcast over batch) and a key mask; a fully masked row gives zeros
    B, Lq, Lk, H, D = 2, 37, 45, 4, 64
    q, k, v = bf16(rnd(B, Lq, H, D)), bf16(rnd(B, Lk, H, D)), bf16(rnd(B, Lk, H, D))
    bias = rnd(1, H, Lq, Lk)
    mask = (RNG.random((B, Lk)) > 0.3).astype(np.uint8)
    mask[:, 0] = 1
    out = cuda("attention", q, k, v, 1.0, bias=bias, key_mask=mask, dtype="bf16")
    check(out, attention_ref(q, k, v, 1.0, bias, mask), 2e-2, 0.08, "flash attention bias+mask")
    mask[1] = 0
    out = cuda("attention", q, k, v, 1.0, key_mask=mask, dtype="bf16")
    assert np.all(out[1] == 0)
    check(out[0], attention_ref(q, k, v, 1.0, None, mask)[0], 2e-2, 0.08, "flash attention masked")


def test_flash_attention_tail_keys_get_no_weight():
    # every real key scores far below zero, so a zero-filled key past the end (score 0) would take almost all
    # the weight if the last tile's tail were not masked; lengths leave partial tiles for BN 32 and 64
    for D, Lk in [(64, 77), (128, 45)]:
        q = bf16(np.abs(rnd(1, 20, 2, D)) + 0.5)
        k, v = bf16(-np.abs(rnd(1, Lk, 2, D)) - 0.5), bf16(rnd(1, Lk, 2, D))
        out = cuda("attention", q, k, v, 0.5, dtype="bf16")
        check(out, attention_ref(q, k, v, 0.5), 2e-2, 0.08, f"flash attention tail D={D} Lk={Lk}")


def test_flash_attention_fused_qkv_views():
    # q, k, v as strided slices of one (B, L, 3, H, D) projection (rows 16-byte aligned: the fused kernel)
    qkv = bf16(rnd(2, 70, 3, 5, 64))
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    check(cuda("attention", q, k, v, 0.125, dtype="bf16"), attention_ref(q, k, v, 0.125), 2e-2, 0.08,
          "flash attention fused qkv")


def test_attention_reference_kernel_bf16():
    # head dims outside the fused kernel (not a multiple of 16, or > 128) take the exact reference kernel
    for D, Dv in [(24, 24), (8, 16), (160, 160)]:
        q, k, v = bf16(rnd(1, 19, 2, D)), bf16(rnd(1, 23, 2, D)), bf16(rnd(1, 23, 2, Dv))
        s = 1 / math.sqrt(D)
        before = fallbacks()["attention"]
        check(cuda("attention", q, k, v, s, dtype="bf16"), attention_ref(q, k, v, s), 1e-2, 0.02,
              f"reference attention D={D}")
        if not lyra2.backends()["emulated"]:  # the counters are the real CUDA backend's
            assert fallbacks()["attention"] == before + 1, "a reference-kernel call must be counted"


# ---------------------------------------------------------------- GEMMs

def test_linear_bf16_with_epilogues():
    # bf16 x and w, fp32 accumulation, bf16 out: 2^-8 relative rounding of the output (rtol 1e-2), atol for
    # cancellations at 1e-2 of the output scale
    x, w, b = bf16(rnd(3, 67, 320)), bf16(rnd(200, 320, scale=0.05)), bf16(rnd(200))
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    atol = 1e-2 * np.abs(ref).max()
    g = 0.5 * ref * (1 + np.tanh(math.sqrt(2 / math.pi) * (ref + 0.044715 * ref ** 3)))
    s = ref / (1 + np.exp(-ref))
    with fast_path("gemm"):
        out = cuda("linear", x, w, b, wdtype="bf16", dtype="bf16")
        out_g = cuda("linear_act", x, w, b, act="gelu_tanh", wdtype="bf16", dtype="bf16")
        out_s = cuda("linear_act", x, w, b, act="silu", wdtype="bf16", dtype="bf16")
    check(out, ref, atol, 1e-2, "linear bf16 + bias")
    check(out_g, g, atol, 2e-2, "linear + GELU epilogue bf16")
    check(out_s, s, atol, 2e-2, "linear + silu bf16")


def test_linear_bf16_into_f32_with_bias():
    # bf16 x and w, f32 output and an f32 bias epilogue: only the fp32 accumulation order differs from float64
    x, w, b = bf16(rnd(2, 50, 256)), bf16(rnd(96, 256, scale=0.05)), rnd(96)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    with fast_path("gemm"):
        out = cuda("linear", x, w, b, wdtype="bf16", dtype="bf16", out_dtype="f32")
    check(out, ref, 1e-4 * np.abs(ref).max(), 1e-4, "linear bf16 -> f32 + bias")


def test_linear_into_column_slice():
    # y as a column slice of wider rows (leading dimension > N, as a slice of a fused projection), with a bias:
    # bf16 rows of 64 + 16 elements stay 16-byte aligned, so cuBLASLt takes it; f32 with an odd pad as well
    x, w, b = bf16(rnd(3, 37, 64)), bf16(rnd(48, 64, scale=0.1)), bf16(rnd(48))
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    with fast_path("gemm"):
        out = cuda("linear", x, w, b, wdtype="bf16", dtype="bf16", out_pad=16)
    check(out, ref, 1e-2 * np.abs(ref).max(), 1e-2, "linear bf16 into a column slice")
    xf, wf, bf = rnd(5, 33), rnd(20, 33), rnd(20)
    check(cuda("linear", xf, wf, bf, out_pad=5), xf.astype(np.float64) @ wf.T.astype(np.float64) + bf, 2e-5, 1e-5,
          "linear f32 into a column slice")


def test_linear_f32_odd_shapes():
    # exact fp32 (no TF32) on shapes no tile divides: tolerance as test_ops' linear, scaled for K = 517
    x, w, b = rnd(333, 517), rnd(259, 517, scale=0.05), rnd(259)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    check(cuda("linear", x, w, b), ref, 5e-5, 2e-5, "linear f32 odd")
    g = 0.5 * ref * (1 + np.tanh(math.sqrt(2 / math.pi) * (ref + 0.044715 * ref ** 3)))
    check(cuda("linear_act", x, w, b, act="gelu_tanh"), g, 5e-5, 2e-5, "linear_act f32 (unfused)")


def test_matmul_bf16():
    a, b = bf16(rnd(3, 45, 64)), bf16(rnd(3, 29, 64))
    ref = 0.5 * np.einsum("bmk,bnk->bmn", a.astype(np.float64), b.astype(np.float64))
    check(cuda("matmul", a, b, trans_b=True, alpha=0.5, dtype="bf16"), ref, 1e-2 * np.abs(ref).max(), 1e-2,
          "matmul bf16")


@real_gpu
@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_fp8(per_channel):
    # e4m3 keeps 3 mantissa bits: each product carries up to 2·2^-4 relative error, averaging out over K;
    # the check is on the relative Frobenius error (< 5 %), plus a bound on any element
    x, w, b = rnd(64, 256), rnd(96, 256, scale=0.05), rnd(96)
    w[:8] *= 20.0  # rows of different magnitude: what per-channel scales are for
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    with fast_path("gemm"):
        out = cuda("linear_fp8", x, w, b, per_channel=per_channel, dtype="bf16")
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel < 0.05, f"fp8 linear (per_channel={per_channel}): relative error {rel:.3g}"
    assert np.abs(out - ref).max() < 0.25 * np.abs(ref).max()


@real_gpu
@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_fp8_f32_output_with_bias(per_channel):
    # f32 activations and output: cuBLASLt's FP8 kernels with an f32 D take a bf16 bias (an f32 one found no
    # algorithm, and every call ran the naive kernel); x is quantised on the contiguous vectorised path
    x, w, b = rnd(48, 128), rnd(80, 128, scale=0.05), rnd(80)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    with fast_path("gemm"):
        out = cuda("linear_fp8", x, w, b, per_channel=per_channel)
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel < 0.05, f"fp8 linear f32 out (per_channel={per_channel}): relative error {rel:.3g}"


@real_gpu
def test_linear_fp8_rejects_k_not_multiple_of_16():
    x, w = rnd(8, 72), rnd(16, 72)
    with pytest.raises((ValueError, lyra2.Lyra2Error), match="multiple of 16"):
        cuda("linear_fp8", x, w, dtype="bf16")


# ---------------------------------------------------------------- bf16 pointwise, norms, conv

def test_norms_and_pointwise_bf16():
    # one bf16 rounding of the output on top of f32 math: rtol 1e-2, atol 1e-2 at unit scale
    x = bf16(rnd(2, 9, 320, scale=2.0) + 1.0)
    w, b = bf16(rnd(320)), bf16(rnd(320))
    x64 = x.astype(np.float64)
    ln = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-6)
    check(cuda("layer_norm", x, w, b, dtype="bf16"), ln * w + b, 2e-2, 1e-2, "layer_norm bf16")
    rms = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6) * w
    check(cuda("rms_norm", x, w, dtype="bf16"), rms, 2e-2, 1e-2, "rms_norm bf16")
    shift, scl, g = bf16(rnd(2, 1, 320)), bf16(rnd(1, 1, 320)), bf16(rnd(2, 1, 320))
    check(cuda("modulate", x, shift, scl, dtype="bf16"), x64 * (1 + scl) + shift, 2e-2, 1e-2, "modulate bf16")
    a = bf16(rnd(2, 9, 320))
    check(cuda("gate", x, g, a, dtype="bf16"), x64 + g * a, 2e-2, 1e-2, "gate bf16")
    gt = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    check(cuda("unary", x, "gelu_tanh", dtype="bf16"), gt, 2e-2, 1e-2, "gelu bf16")
    sm = np.exp(x64 - x64.max(-1, keepdims=True))
    check(cuda("softmax", x, dtype="bf16"), sm / sm.sum(-1, keepdims=True), 1e-3, 1e-2, "softmax bf16")


@pytest.mark.parametrize("shape", [(1, 96, 3, 37, 41), (1, 64, 4, 64, 64)])
def test_group_norm_over_chunks(shape):
    # groups of 13,653 and 32,768 elements: each group is cut into chunks (4 and 8) whose statistics are merged;
    # the odd size leaves a short last chunk. f32 in and out: tolerance of test_ops' group_norm, scaled for n
    x, w, b = rnd(*shape, scale=2.0) + 3.0, rnd(shape[1]), rnd(shape[1])
    xg = x.astype(np.float64).reshape(shape[0], 32, -1)
    n = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-6)).reshape(shape)
    bc = (1, -1) + (1,) * (len(shape) - 2)
    ref = n * w.reshape(bc) + b.reshape(bc)
    check(cuda("group_norm", x, w, b, groups=32), ref, 2e-5, 2e-5, f"group_norm {shape}")


def test_rope_bf16():
    x = bf16(rnd(1, 24, 3, 128))
    ang = (RNG.random((24, 64)) * 30).astype(np.float32)
    z = (x[..., 0::2].astype(np.float64) + 1j * x[..., 1::2]) * np.exp(1j * ang.astype(np.float64))[None, :, None]
    ref = np.empty(x.shape)
    ref[..., 0::2], ref[..., 1::2] = z.real, z.imag
    check(cuda("rope", x, ang, dtype="bf16"), ref, 2e-2, 1e-2, "rope bf16")


def test_conv3d_causal_bf16():
    # the Wan VAE's 3x3x3 causal conv with a one-frame cache, bf16 im2col + bf16 GEMM
    x, w, b = bf16(rnd(1, 8, 3, 6, 7)), bf16(rnd(16, 8, 3, 3, 3, scale=0.2)), bf16(rnd(16))
    prefix = bf16(rnd(1, 8, 1, 6, 7))
    full = np.concatenate([np.zeros((1, 8, 1, 6, 7)), prefix, x], axis=2)
    ref = np.zeros((1, 16, 3, 6, 7))
    xp = np.pad(full, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1)))
    for a in range(3):
        for i in range(3):
            for j in range(3):
                ref += np.einsum("bcthw,oc->bothw", xp[:, :, a:a + 3, i:i + 6, j:j + 7], w[:, :, a, i, j])
    ref += b.reshape(1, -1, 1, 1, 1)
    out = cuda("conv3d", x, w, b, prefix=prefix, pad=(2, 0, 1, 1, 1, 1), wdtype="bf16", dtype="bf16")
    check(out, ref, 2e-2 * np.abs(ref).max(), 1e-2, "conv3d bf16")


@real_gpu  # the tiles are the CUDA backend's; on the emulated device this is a 7 s CPU conv
def test_conv3d_bf16_several_im2col_tiles():
    # 256 channels x 27 taps: the im2col tile holds 9,664 output positions (a multiple of 64), so 24,576
    # positions make two full tiles and a tail of 5,248 that keeps the tiles' leading dimension; reference: the
    # CPU backend on the same bf16-rounded inputs in f32
    x, w, b = bf16(rnd(1, 256, 2, 96, 128)), bf16(rnd(8, 256, 3, 3, 3, scale=0.02)), bf16(rnd(8))
    ref = _ops.conv3d(x, w, b, pad=(2, 0, 1, 1, 1, 1))
    with fast_path("gemm"):
        out = cuda("conv3d", x, w, b, pad=(2, 0, 1, 1, 1, 1), wdtype="bf16", dtype="bf16")
    check(out, ref, 1e-2 * np.abs(ref).max(), 1e-2, "conv3d bf16 several tiles")


@real_gpu  # 8 GiB of output
@gpu_scale
@pytest.mark.slow
def test_pointwise_beyond_2_31_elements():
    # an add whose output has 2^31 + 3072 elements (8 GiB f32): index arithmetic past 32 bits. The inputs
    # broadcast (a row and a column), so only the output is large: out[i, j] = row[j] + col[i], exact in f32
    rows, cols = (1 << 21) + 3, 1024
    row = (np.arange(cols, dtype=np.float32) * 0.5)[None, :]
    col = (np.arange(rows, dtype=np.float32) % 4093)[:, None]
    out = cuda("add", row, col)
    assert out.shape == (rows, cols) and out.size > 2 ** 31
    for r0 in range(0, rows, 1 << 18):  # compare in slices: no second 8 GiB array
        r1 = min(rows, r0 + (1 << 18))
        want = row + col[r0:r1]
        assert np.array_equal(out[r0:r1], want), f"add past 2^31 elements: rows {r0}..{r1} differ"


# ---------------------------------------------------------------- errors and benchmarks

@real_gpu
def test_out_of_memory_is_an_error():
    # a (2^21, 2^20) bf16 activation is 4 TiB: the pool reports it as Lyra2Error naming the size, no crash
    with pytest.raises(lyra2.Lyra2Error, match="GPU memory"):
        _ops.cuda_bench_linear(1 << 21, 64, 1 << 20, mode=0, repeat=1)
    x, w = rnd(4, 8), rnd(3, 8)  # the backend still works afterwards
    check(cuda("linear", x, w), x.astype(np.float64) @ w.T.astype(np.float64), 2e-5, 1e-5, "linear after OOM")


@real_gpu
def test_bench_entry_points_small():
    ms = _ops.cuda_bench_linear(256, 128, 64, mode=0, repeat=2)
    assert ms > 0
    for mode in (1, 2, 3, 4, 5):
        assert _ops.cuda_bench_linear(256, 128, 64, mode=mode, repeat=1) > 0
    assert _ops.cuda_bench_attention(200, 150, 2, 128, repeat=1) > 0
    t = _ops.cuda_bench_dit_block(300, 4, 64, 512, 16, 9, repeat=1)
    assert t["total"] > 0 and t["self_attn"] > 0 and t["ffn"] > 0
