"""CLIP vision tower (lyra2.models.clip) against the upstream golden and an independent NumPy implementation.

Golden: tests/data/clip_tiny*.npz (shared/golden README §6b): Wan's clip_xlm_roberta_vit_h_14 at a tiny size
(image 56, patch 14, width 32, 4 heads, 3 blocks of which Lyra uses 2) through Lyra's conditioner, float32.
Tolerances from the README: pixel_input abs 1e-5, clip_tokens abs 1e-4.
"""
import math
import os

import numpy as np
import pytest

import lyra2
from lyra2 import io
from lyra2.models.clip import CLIP_MEAN, CLIP_STD, CLIP_VIT_H14, CLIPVision, clip_cost

from conftest import DATA

try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover
    _erf = np.vectorize(math.erf)


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(os.path.join(DATA, "clip_tiny.npz")))


@pytest.fixture(scope="module")
def weights():
    return dict(np.load(os.path.join(DATA, "clip_tiny_weights.npz")))


@pytest.fixture(scope="module")
def clip(weights):
    return CLIPVision(weights, num_heads=4)


# ---------------------------------------------------------------- independent NumPy reference (float64)

def _cubic_weights(t, A=-0.75):
    return np.stack([((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A,
                     ((A + 2) * t - (A + 3)) * t * t + 1,
                     ((A + 2) * (1 - t) - (A + 3)) * (1 - t) ** 2 + 1,
                     ((A * (2 - t) - 5 * A) * (2 - t) + 8 * A) * (2 - t) - 4 * A], -1)


def _resize_axis(x, out, axis):
    """PyTorch bicubic, align_corners=False, no antialias, along one axis (upstream CLIP:519-523). PyTorch holds the
    scale
    in/out and the source coordinate in float32 (the coordinate rounded once); the rest is float64 here."""
    n = x.shape[axis]
    s = ((np.arange(out) + 0.5) * float(np.float32(n) / np.float32(out)) - 0.5).astype(np.float32).astype(np.float64)
    i0 = np.floor(s).astype(int)
    w = _cubic_weights(s - i0)
    shape = [1] * x.ndim
    shape[axis] = out
    return sum(np.take(x, np.clip(i0 - 1 + k, 0, n - 1), axis=axis) * w[:, k].reshape(shape) for k in range(4))


def np_preprocess(image, size):
    x = _resize_axis(_resize_axis(image.astype(np.float64), size, 3), size, 2)
    x = x * 0.5 + 0.5
    return (x - np.array(CLIP_MEAN)[None, :, None, None]) / np.array(CLIP_STD)[None, :, None, None]


def np_ln(x, w, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * w + b


def np_clip(w, image, heads, size, patch, used):
    g = {k: v.astype(np.float64) for k, v in w.items()}
    px = np_preprocess(image, size)
    B, G = px.shape[0], size // patch
    W = g["visual.cls_embedding"].shape[-1]
    # patch conv as a matrix product over (c, ky, kx) vectors, tokens in row-major grid order
    p = px.reshape(B, 3, G, patch, G, patch).transpose(0, 2, 4, 1, 3, 5).reshape(B, G * G, 3 * patch * patch)
    tok = p @ g["visual.patch_embedding.weight"].reshape(W, -1).T
    x = np.concatenate([np.broadcast_to(g["visual.cls_embedding"], (B, 1, W)), tok], 1) + g["visual.pos_embedding"]
    x = np_ln(x, g["visual.pre_norm.weight"], g["visual.pre_norm.bias"])
    dh = W // heads
    for i in range(used):
        p = f"visual.transformer.{i}."
        h = np_ln(x, g[p + "norm1.weight"], g[p + "norm1.bias"])
        qkv = h @ g[p + "attn.to_qkv.weight"].T + g[p + "attn.to_qkv.bias"]
        q, k, v = (qkv[..., j * W:(j + 1) * W].reshape(B, -1, heads, dh) for j in range(3))
        s = np.einsum("binc,bjnc->bnij", q, k) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("bnij,bjnc->binc", s, v).reshape(B, -1, W)
        x = x + o @ g[p + "attn.proj.weight"].T + g[p + "attn.proj.bias"]
        h = np_ln(x, g[p + "norm2.weight"], g[p + "norm2.bias"])
        u = h @ g[p + "mlp.0.weight"].T + g[p + "mlp.0.bias"]
        u = 0.5 * u * (1 + _erf(u / math.sqrt(2)))
        x = x + u @ g[p + "mlp.2.weight"].T + g[p + "mlp.2.bias"]
    return x


def random_weights(rng, width, layers, mlp, patch, grid, text_tower=True):
    W = width
    w = {"visual.patch_embedding.weight": rng.standard_normal((W, 3, patch, patch)) / math.sqrt(3 * patch * patch),
         "visual.cls_embedding": rng.standard_normal((1, 1, W)) / math.sqrt(W),
         "visual.pos_embedding": rng.standard_normal((1, 1 + grid * grid, W)) / math.sqrt(W),
         "visual.pre_norm.weight": 1 + 0.1 * rng.standard_normal(W), "visual.pre_norm.bias": 0.05 * rng.standard_normal(W),
         "visual.post_norm.weight": np.ones(W), "visual.post_norm.bias": np.zeros(W),
         "visual.head": rng.standard_normal((W, 8))}
    for i in range(layers):
        p = f"visual.transformer.{i}."
        for n in ("norm1", "norm2"):
            w[p + n + ".weight"] = 1 + 0.1 * rng.standard_normal(W)
            w[p + n + ".bias"] = 0.05 * rng.standard_normal(W)
        for n, (o, k) in {"attn.to_qkv": (3 * W, W), "attn.proj": (W, W), "mlp.0": (mlp, W), "mlp.2": (W, mlp)}.items():
            w[p + n + ".weight"] = rng.standard_normal((o, k)) / math.sqrt(k)
            w[p + n + ".bias"] = 0.05 * rng.standard_normal(o)
    if text_tower:
        w["textual.token_embedding.weight"] = rng.standard_normal((10, 4))
        w["log_scale"] = np.array(0.1)
    return {k: np.asarray(v, np.float32) for k, v in w.items()}


# ---------------------------------------------------------------- golden parity

def test_config_from_weights(clip):
    assert clip.config == {"width": 32, "heads": 4, "layers": 3, "used_layers": 2, "mlp": 128, "patch": 14,
                           "grid": 4, "image_size": 56, "tokens": 17}


def test_golden_pixel_input(clip, golden):
    px = clip.preprocess(golden["image"])
    assert px.shape == (1, 3, 56, 56) and px.dtype == np.float32
    err = np.abs(px - golden["pixel_input"]).max()
    assert err <= 1e-5, f"pixel_input max abs error {err:.3g} (tolerance 1e-5)"


def test_golden_clip_tokens(clip, golden):
    out = clip(golden["image"])
    assert out.shape == (1, 17, 32) and out.dtype == np.float32
    err = np.abs(out - golden["clip_tokens"]).max()
    assert err <= 1e-4, f"clip_tokens max abs error {err:.3g} (tolerance 1e-4)"
    # Lyra's output is NOT the all-blocks result: the last block must be skipped.
    assert np.abs(out - golden["all_blocks_no_postnorm"]).max() > 1e-2


def test_bf16_safetensors_weights(tmp_path, weights, golden):
    # Golden weights are bf16-grid values: a BF16 file reproduces them exactly (matrices stay bf16 in memory).
    path = tmp_path / "clip.safetensors"
    io.save_safetensors(weights, path, dtype="bf16")
    out = CLIPVision(str(path), num_heads=4)(golden["image"])
    assert np.abs(out - golden["clip_tokens"]).max() <= 1e-4


# ---------------------------------------------------------------- independent reference

def test_preprocess_matches_numpy_bicubic(clip):
    # Up- and down-sampling along different axes, values beyond [-1, 1] (unclamped decoded frames).
    rng = np.random.default_rng(5)
    for shape in [(2, 3, 31, 97), (1, 3, 56, 56), (1, 3, 120, 20)]:
        img = rng.uniform(-1.1, 1.1, shape).astype(np.float32)
        err = np.abs(clip.preprocess(img) - np_preprocess(img, 56)).max()
        # The reference rounds the source coordinate to float32 once, as PyTorch does; the runtime's resize
        # rounds it twice ((o + 0.5f)·scale, then − 0.5f), a difference of up to ~1e-5 at these sizes (PyTorch
        # 2.x itself is within 2e-6 of this reference). Structural mistakes (A, align_corners, antialias, axis
        # order) give errors > 1e-2.
        assert err <= 2e-5, f"{shape}: {err:.3g}"


def test_numpy_reference_other_config():
    rng = np.random.default_rng(11)
    w = random_weights(rng, width=24, layers=4, mlp=40, patch=7, grid=3)
    clip = CLIPVision(w, num_heads=3)
    assert clip.config["image_size"] == 21 and clip.config["used_layers"] == 3 and clip.config["tokens"] == 10
    img = rng.uniform(-1, 1, (2, 3, 30, 44)).astype(np.float32)
    ref = np_clip(w, img, heads=3, size=21, patch=7, used=3)
    out = clip(img)
    # float32 vs float64 through 3 blocks, outputs of order 1-10: 1e-4 as for the golden.
    assert np.abs(out - ref).max() <= 1e-4


def test_batch_rows_are_independent(clip, golden):
    rng = np.random.default_rng(2)
    imgs = np.concatenate([golden["image"], rng.uniform(-1, 1, golden["image"].shape).astype(np.float32)])
    both = clip(imgs)
    # GEMM blocking depends on the row count: a few float32 ulps of outputs of size ~4.
    assert np.abs(both[0] - clip(imgs[:1])[0]).max() <= 1e-5
    assert np.abs(both[1] - clip(imgs[1:])[0]).max() <= 1e-5


# ---------------------------------------------------------------- errors

def test_bad_inputs(clip, golden):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        clip(golden["image"][:, :2])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        clip(golden["image"][0])
    with pytest.raises(TypeError, match="float"):
        clip(golden["image"].astype(np.int32))


def test_heads(weights):
    with pytest.raises(ValueError, match="head width 80"):
        CLIPVision(weights)  # width 32: not ViT-H's 80-wide heads, so the count must be given
    with pytest.raises(ValueError, match="5 heads do not divide the width 32"):
        CLIPVision(weights, num_heads=5)
    with pytest.raises(ValueError, match="num_heads"):
        CLIPVision(weights, num_heads=0)
    if not lyra2.backends()["cuda"]:  # with a device (or the emulated one): tests/device_checks/check_clip.py
        with pytest.raises(lyra2.Lyra2Error, match="(?i)cuda backend"):
            CLIPVision(weights, device="cuda", num_heads=4)


def test_default_heads_vit_h_width():
    rng = np.random.default_rng(0)
    w = random_weights(rng, width=160, layers=2, mlp=8, patch=2, grid=1, text_tower=False)
    assert CLIPVision(w).config["heads"] == 2  # 160 / 80


@pytest.mark.parametrize("edit,pattern", [
    (lambda w: w.pop("visual.transformer.1.mlp.2.bias"), "'visual.transformer.1.mlp.2.bias' is missing"),
    (lambda w: w.pop("visual.pre_norm.bias"), "'visual.pre_norm.bias' is missing"),
    (lambda w: w.update({"visual.patch_embedding.bias": np.zeros(32, np.float32)}),
     "unexpected tensor 'visual.patch_embedding.bias'"),
    (lambda w: w.update({"visual.transformer.0.attn.proj.weight": np.zeros((32, 33), np.float32)}),
     r"'visual.transformer.0.attn.proj.weight' has shape \(32, 33\) f32, expected \(32, 32\)"),
    (lambda w: w.update({"visual.pos_embedding": np.zeros((1, 18, 32), np.float32)}), "1 \\+ G·G"),
    (lambda w: w.update({"visual.cls_embedding": np.zeros((1, 1, 32), np.int64)}),
     "'visual.cls_embedding' has dtype i64"),
])
def test_bad_weights(weights, edit, pattern):
    w = dict(weights)
    edit(w)
    with pytest.raises(lyra2.Lyra2Error, match=pattern):
        CLIPVision(w, num_heads=4)


def test_unused_tensors_are_ignored(weights, golden):
    # The real checkpoint holds the text tower, log_scale, the last block, post_norm and head (upstream CLIP:309-400).
    w = dict(weights)
    w["textual.blocks.0.attn.q.weight"] = np.zeros((4, 4), np.float32)
    w["log_scale"] = np.zeros((), np.float32)
    w["visual.transformer.2.norm1.weight"] = np.zeros((7,), np.float32)  # last block: never read
    out = CLIPVision(w, num_heads=4)(golden["image"])
    assert np.abs(out - golden["clip_tokens"]).max() <= 1e-4


# ---------------------------------------------------------------- cost model

def test_cost_vit_h14():
    c = clip_cost(CLIP_VIT_H14)
    W, M, T, P = 1280, 5120, 257, 14
    block = 4 * W + 3 * W * W + 3 * W + W * W + W + 2 * M * W + M + W
    assert c["params"] == 3 * P * P * W + W + T * W + 2 * W + 31 * block
    flops = 2 * 256 * W * 3 * P * P + 31 * (2 * T * W * (3 * W + W + 2 * M) + 4 * T * T * W)
    assert c["flops"] == pytest.approx(flops, rel=1e-12)
    assert c["arena_bytes"] < 64 << 20
