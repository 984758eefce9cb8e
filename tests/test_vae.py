"""Wan 2.1 VAE (lyra2.models.vae): golden parity with the upstream code, streaming == full sequence against an
independent float64 NumPy implementation of the full-sequence definition (upstream TOK:605-630, M:1007-1046,
TOK:623-630), frame-count rules, weight validation, stream copies and the dry-run planner.

Tolerances: abs 1e-4 against the goldens (golden README §5, float32 implementation); 2e-5 · max|ref| for the C
code against the float64 NumPy reference and for one C run against another with a different chunking (fp32
rounding through ~40 layers: observed ≤ 3e-6 · max)."""
import os

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from conftest import DATA

import lyra2
from lyra2 import _core
from lyra2.models.vae import WanVAE, latent_constants, memory_plan

GOLDEN_TOL = 1e-4
REL_TOL = 2e-5


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(os.path.join(DATA, "vae_tiny.npz")))


@pytest.fixture(scope="module")
def weights():
    return dict(np.load(os.path.join(DATA, "vae_tiny_weights.npz")))


@pytest.fixture(scope="module")
def vae(weights):
    return WanVAE(weights, threads=1)  # the test machine is shared: one thread is fastest here


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.abs(a.astype(np.float64) - b).max())
    assert err <= tol, f"max abs error {err:.3g} > {tol:.3g}"
    return err


def close_rel(a, b):
    return close(a, b, REL_TOL * float(np.abs(b).max()))


# ---------------------------------------------------------------------------------------------------------
# Independent float64 reference: the full-sequence definition of upstream TOK:70-94, TOK:97-109, TOK:120-198,
# TOK:306-401, one batch element (C, T, H, W) at a time, written from the spec text.

def conv(x, w, b, stride=(1, 1, 1), pad_t=0, pad_hw=(0, 0, 0, 0)):
    """Cross-correlation, x (Ci, T, H, W), w (Co, Ci, kt, kh, kw); pad_t zero frames in front only."""
    top, bottom, left, right = pad_hw
    xp = np.pad(x, ((0, 0), (pad_t, 0), (top, bottom), (left, right)))
    win = sliding_window_view(xp, w.shape[2:], axis=(1, 2, 3))[:, ::stride[0], ::stride[1], ::stride[2]]
    return np.einsum("ctyxabd,ocabd->otyx", win, w, optimize=True) + b[:, None, None, None]


def causal3(x, w, b):
    p = (w.shape[3] - 1) // 2
    return conv(x, w, b, pad_t=2, pad_hw=(p, p, p, p))


def norm(x, g):
    n = np.sqrt((x * x).sum(0, keepdims=True))
    return x / np.maximum(n, 1e-12) * np.sqrt(x.shape[0]) * g.reshape(-1, 1, 1, 1)


def silu(x):
    return x / (1.0 + np.exp(-x))


def resblock(x, P, k):
    h = conv(x, P[k + ".shortcut.weight"], P[k + ".shortcut.bias"]) if k + ".shortcut.weight" in P else x
    r = causal3(silu(norm(x, P[k + ".residual.0.gamma"])), P[k + ".residual.2.weight"], P[k + ".residual.2.bias"])
    r = causal3(silu(norm(r, P[k + ".residual.3.gamma"])), P[k + ".residual.6.weight"], P[k + ".residual.6.bias"])
    return r + h


def attention(x, P, k):
    C, T, H, W = x.shape
    u = norm(x, P[k + ".norm.gamma"])
    qkv = np.einsum("oc,cthw->tohw", P[k + ".to_qkv.weight"][:, :, 0, 0], u)
    qkv = qkv.reshape(T, 3 * C, H * W) + P[k + ".to_qkv.bias"][None, :, None]
    q, kk, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]            # (T, C, n)
    s = np.einsum("tci,tcj->tij", q, kk) / np.sqrt(C)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    a = np.einsum("tij,tcj->tci", s, v)
    o = np.einsum("oc,tci->oti", P[k + ".proj.weight"][:, :, 0, 0], a) + P[k + ".proj.bias"][:, None, None]
    return x + o.reshape(C, T, H, W)


def down_spatial(x, P, k):
    w = P[k + ".resample.1.weight"][:, :, None]
    return conv(x, w, P[k + ".resample.1.bias"], stride=(1, 2, 2), pad_hw=(0, 1, 0, 1))


def up_spatial(x, P, k):
    x = x.repeat(2, axis=2).repeat(2, axis=3)
    return conv(x, P[k + ".resample.1.weight"][:, :, None], P[k + ".resample.1.bias"], pad_hw=(1, 1, 1, 1))


def down3d(x, P, k):
    y = down_spatial(x, P, k)
    rest = conv(y, P[k + ".time_conv.weight"], P[k + ".time_conv.bias"], stride=(2, 1, 1))  # triples 0-2, 2-4, ...
    return np.concatenate([y[:, :1], rest], axis=1)


def up3d(x, P, k):
    C = x.shape[0]
    parts = [x[:, :1]]
    if x.shape[1] > 1:
        tc = causal3(x[:, 1:], P[k + ".time_conv.weight"], P[k + ".time_conv.bias"])  # never sees frame 0
        n = tc.shape[1]
        parts.append(np.stack([tc[:C], tc[C:]], axis=2).reshape(C, 2 * n, *x.shape[2:]))
    return up_spatial(np.concatenate(parts, axis=1), P, k)


def run_blocks(x, P, prefix, count):
    for i in range(count):
        k = f"{prefix}.{i}"
        if k + ".residual.0.gamma" in P:
            x = resblock(x, P, k)
        elif k + ".time_conv.weight" in P:
            x = (down3d if prefix.startswith("encoder") else up3d)(x, P, k)
        else:
            x = (down_spatial if prefix.startswith("encoder") else up_spatial)(x, P, k)
    return x


def ref_encode(video, P):
    """Raw mu (B, 16, L, h, w) in float64."""
    out = []
    for x in video.astype(np.float64):
        x = causal3(x, P["encoder.conv1.weight"], P["encoder.conv1.bias"])
        x = run_blocks(x, P, "encoder.downsamples", 11)
        x = resblock(x, P, "encoder.middle.0")
        x = attention(x, P, "encoder.middle.1")
        x = resblock(x, P, "encoder.middle.2")
        x = causal3(silu(norm(x, P["encoder.head.0.gamma"])), P["encoder.head.2.weight"], P["encoder.head.2.bias"])
        x = conv(x, P["conv1.weight"], P["conv1.bias"])
        out.append(x[:16])
    return np.stack(out)


def ref_decode(z, P):
    """Raw latents (B, 16, L, h, w) -> video in float64."""
    out = []
    for x in z.astype(np.float64):
        x = conv(x, P["conv2.weight"], P["conv2.bias"])
        x = causal3(x, P["decoder.conv1.weight"], P["decoder.conv1.bias"])
        x = resblock(x, P, "decoder.middle.0")
        x = attention(x, P, "decoder.middle.1")
        x = resblock(x, P, "decoder.middle.2")
        x = run_blocks(x, P, "decoder.upsamples", 15)
        x = causal3(silu(norm(x, P["decoder.head.0.gamma"])), P["decoder.head.2.weight"], P["decoder.head.2.bias"])
        out.append(x)
    return np.stack(out)


@pytest.fixture(scope="module")
def P(weights):
    return {k: v.astype(np.float64) for k, v in weights.items()}


# ---------------------------------------------------------------------------------------------------------
# Goldens from the upstream code (float32, golden README §5)

def test_constants_bit_exact(golden):
    for name, key_m, key_s in (("bf16", "scale_mean", "scale_inv_std"), ("fp32", "scale_mean_fp32", "scale_inv_std_fp32")):
        mean, inv = latent_constants(name)
        assert np.array_equal(mean, golden[key_m]) and np.array_equal(inv, golden[key_s]), name
    mean, inv = latent_constants("bf16")
    assert mean[0] == -0.7578125 and inv[0] == 0.35546875 and inv[5] == 0.5625  # upstream TOK:810-848


def test_golden_encode(vae, weights, golden):
    close(vae.encode(golden["video"], normalize=False), golden["mu"], GOLDEN_TOL)
    close(vae.encode(golden["video"]), golden["latent"], GOLDEN_TOL)
    vae32 = WanVAE(weights, constants="fp32", threads=1)
    close(vae32.encode(golden["video"]), golden["latent_fp32const"], GOLDEN_TOL)


def test_golden_decode(vae, weights, golden):
    close(vae.decode(golden["latent"]), golden["decoded"], GOLDEN_TOL)
    vae32 = WanVAE(weights, constants="fp32", threads=1)
    close(vae32.decode(golden["latent_fp32const"]), golden["decoded_fp32const"], GOLDEN_TOL)


def test_golden_ar_streaming_path(vae, golden):
    """Priming (anchor ×9 -> 3 history latents, decoder primed), then per chunk: decode continuing the decoder
    cache, re-encode the decoded frames continuing the persistent encoder cache."""
    s = vae.stream()
    hist, primed = s.prime(golden["ar_first_frame"], 3, return_frames=True)
    close(hist, golden["ar_history_latents"], GOLDEN_TOL)
    close(primed, golden["ar_prime_decoded"], GOLDEN_TOL)
    for c in range(2):
        frames = s.decode(golden[f"ar_chunk{c}_latents"])
        close(frames, golden[f"ar_chunk{c}_decoded"], GOLDEN_TOL)
        close(s.encode(frames), golden[f"ar_chunk{c}_reencoded"], GOLDEN_TOL)


def test_numpy_reference_matches_golden(P, golden):
    """The NumPy reference below is itself checked against upstream before it judges the C code."""
    close(ref_encode(golden["video"], P), golden["mu"], GOLDEN_TOL)
    mean, inv = latent_constants("bf16")
    z = golden["latent"] / inv[None, :, None, None, None] + mean[None, :, None, None, None]
    close(ref_decode(z, P), golden["decoded"], GOLDEN_TOL)


# ---------------------------------------------------------------------------------------------------------
# Streaming == full sequence, on random input

def test_encoder_streaming_equals_full_sequence(vae, P):
    rng = np.random.default_rng(7)
    video = rng.uniform(-1, 1, (1, 3, 13, 16, 24)).astype(np.float32)
    ref = ref_encode(video, P)
    full = vae.encode(video, normalize=False, window=None)           # 13 frames in one C call
    close_rel(full, ref)
    close_rel(vae.encode(video, normalize=False), full)              # 1 + 4 + 4 + 4 (upstream chunks)
    s = vae.encode_stream(normalize=False)                           # 5 + 8 frames: irregular pushes
    close_rel(np.concatenate([s.push(video[:, :, :5], window=None), s.push(video[:, :, 5:], window=None)], 2), full)


def test_decoder_streaming_equals_full_sequence(vae, P):
    rng = np.random.default_rng(8)
    z = rng.normal(0, 1, (1, 16, 4, 2, 3)).astype(np.float32)
    ref = ref_decode(z, P)
    full = vae.decode(z, normalized=False, window=None)
    assert full.shape == (1, 3, 13, 16, 24)
    close_rel(full, ref)
    close_rel(vae.decode(z, normalized=False), full)                 # one latent at a time (upstream)
    s = vae.decode_stream(normalized=False)
    close_rel(np.concatenate([s.push(z[:, :, :2], window=None), s.push(z[:, :, 2:], window=None)], 2), full)


def test_decoder_is_not_clamped(vae, P):
    z = (np.random.default_rng(9).normal(0, 6, (1, 16, 2, 2, 2))).astype(np.float32)
    out = vae.decode(z, normalized=False)
    assert np.abs(out).max() > 1.0                                   # values beyond [-1, 1] survive
    close_rel(out, ref_decode(z, P))


def test_batch_elements_are_independent(vae):
    rng = np.random.default_rng(10)
    video = rng.uniform(-1, 1, (2, 3, 5, 8, 16)).astype(np.float32)
    both = vae.encode(video)
    for b in range(2):
        close_rel(vae.encode(video[b:b + 1]), both[b:b + 1])
    dec = vae.decode(both)
    for b in range(2):
        close_rel(vae.decode(both[b:b + 1]), dec[b:b + 1])


def test_stream_copy_is_an_independent_snapshot(vae):
    rng = np.random.default_rng(11)
    video = rng.uniform(-1, 1, (1, 3, 9, 8, 8)).astype(np.float32)
    s = vae.encode_stream()
    s.push(video[:, :, :5])
    snap = s.copy()
    a = s.push(video[:, :, 5:])
    s.push(video[:, :, 5:])                                           # moves s on, not the snapshot
    b = snap.push(video[:, :, 5:])
    assert np.array_equal(a, b)
    lat = vae.encode(video)
    d = vae.decode_stream()
    d.push(lat[:, :, :1])
    dsnap = d.copy()
    assert np.array_equal(d.push(lat[:, :, 1:]), dsnap.push(lat[:, :, 1:]))


# ---------------------------------------------------------------------------------------------------------
# Errors

def test_invalid_frame_counts(vae):
    with pytest.raises(ValueError, match=r"1 \+ 4k"):
        vae.encode(np.zeros((1, 3, 6, 8, 8), np.float32))
    s = vae.encode_stream()
    s.push(np.zeros((1, 3, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="groups of 4"):
        s.push(np.zeros((1, 3, 3, 8, 8), np.float32))
    s.push(np.zeros((1, 3, 4, 8, 8), np.float32))                    # the stream is still usable
    with pytest.raises(ValueError, match="differs from the stream's first push"):
        s.push(np.zeros((1, 3, 4, 16, 8), np.float32))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(np.zeros((1, 3, 1, 12, 8), np.float32))
    with pytest.raises(ValueError, match="at least 1 latent"):
        vae.decode(np.zeros((1, 16, 0, 2, 2), np.float32))
    with pytest.raises(ValueError, match="15 channels"):
        vae.decode(np.zeros((1, 15, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="5-d"):
        vae.encode(np.zeros((3, 5, 8, 8), np.float32))


def test_weight_errors(weights):
    bad = dict(weights)
    del bad["decoder.upsamples.7.time_conv.bias"]
    with pytest.raises(lyra2.Lyra2Error, match="decoder.upsamples.7.time_conv.bias"):
        WanVAE(bad)
    bad = dict(weights, **{"decoder.upsamples.15.residual.0.gamma": np.ones((8, 1, 1, 1), np.float32)})
    with pytest.raises(lyra2.Lyra2Error, match="unexpected tensor 'decoder.upsamples.15"):
        WanVAE(bad)
    bad = dict(weights, **{"encoder.middle.1.proj.weight": np.zeros((32, 32, 3, 1), np.float32)})
    with pytest.raises(lyra2.Lyra2Error, match=r"encoder.middle.1.proj.weight' has shape \(32, 32, 3, 1\)"):
        WanVAE(bad)
    bad = dict(weights, **{"conv2.bias": weights["conv2.bias"].astype(np.float64)})
    with pytest.raises(lyra2.Lyra2Error, match="conv2.bias' has dtype"):
        WanVAE(bad)
    half = WanVAE({k: v.astype(np.float16) for k, v in weights.items()}, threads=1)   # f16 storage is accepted
    assert half.dim == 8 and half.z_dim == 16
    with pytest.raises(lyra2.Lyra2Error, match="not wired"):
        WanVAE(weights, device="cuda")


# ---------------------------------------------------------------------------------------------------------
# Planner

def test_plan_is_the_forward_walk(vae):
    """The dry plan and a real run share the arena arithmetic and FLOP counting."""
    video = np.zeros((1, 3, 5, 16, 24), np.float32)
    s = vae.encode_stream()
    s.push(video[:, :, :1])
    s.push(video[:, :, 1:])
    real = s.stats()
    plan = _core.vae_plan_session(8, 16, False)
    _core.vae_plan_push(plan, (1, 3, 1, 16, 24))
    _core.vae_plan_push(plan, (1, 3, 4, 16, 24))
    dry = _core.vae_stats(plan)
    assert dry["arena_peak"] == real["arena_peak"] and dry["cache_bytes"] == real["cache_bytes"]
    assert [l["flops"] for l in dry["layers"]] == [l["flops"] for l in real["layers"]]
    # encoder.conv1 on the 4-frame push: 2 · Co · Ci·27 · T·H·W multiply-adds
    assert real["layers"][0]["flops"] == 2 * 8 * 3 * 27 * 4 * 16 * 24


def test_plan_real_size_shapes():
    p = memory_plan(dim=96, height=480, width=832, frames=81)
    enc = p["encode_full"]["layers"]
    assert enc[-1]["out"] == (16, 21, 60, 104)
    assert p["decode_full"]["layers"][-1]["out"] == (3, 81, 480, 832)
    mid = [l for l in p["encode_stream"]["layers"] if l["kind"] == "attention"][0]
    assert mid["score_bytes"] == 6240 * 6240 * 4                      # one latent frame per 4-frame push
    # Streaming bounds the arena: the peak does not grow with the number of pushes.
    assert p["encode_stream"]["arena_peak"] < p["encode_full"]["arena_peak"] / 5
