"""umT5 encoder (lyra2.models.umt5) against the upstream golden and an independent NumPy implementation.

Golden: tests/data/umt5_tiny*.npz (shared/golden README §6a), produced by running Wan's T5Encoder in float32 at a
tiny size (dim 32, 4 heads, 2 layers, 32 buckets). Tolerances as the README states: abs 1e-5 on the real rows,
exact zeros on the padded rows; the position bias is a table gather, so it must be exact.
"""
import math
import os

import numpy as np
import pytest

import lyra2
from lyra2 import io
from lyra2.models.negative_prompt import load_negative_prompt
from lyra2.models.umt5 import UMT5_XXL, UMT5Encoder, relative_position_bucket, umt5_cost

from conftest import DATA

GOLDEN = os.path.join(DATA, "umt5_tiny.npz")
WEIGHTS = os.path.join(DATA, "umt5_tiny_weights.npz")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def weights():
    return dict(np.load(WEIGHTS))


@pytest.fixture(scope="module")
def enc(weights):
    return UMT5Encoder(weights)


# ---------------------------------------------------------------- independent NumPy reference (float64)

def np_bucket(rel, num_buckets=32, max_dist=128):
    """Wan T5RelativeEmbedding._relative_position_bucket, bidirectional, written from the spec (upstream T5:259-296)
    with
    torch's float32 evaluation order."""
    rel = np.asarray(rel, dtype=np.int64)
    half = num_buckets // 2
    out = np.where(rel > 0, half, 0)
    n = np.abs(rel)
    exact = half // 2
    with np.errstate(divide="ignore"):
        r = (np.log(n.astype(np.float32) / np.float32(exact)) / np.float32(math.log(max_dist / exact))
             * np.float32(half - exact))
    large = exact + np.where(n < exact, 0, r).astype(np.int64)
    return out + np.where(n < exact, n, np.minimum(large, half - 1))


def np_rms(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * w


def np_gelu_tanh(u):
    return 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))


def np_umt5(w, ids, mask, heads, buckets, shared=False):
    """Encoder output at every position (padded keys masked): upstream T5:130-331 in float64."""
    g = {k: v.astype(np.float64) for k, v in w.items()}
    B, L = ids.shape
    x = g["token_embedding.weight"][ids]
    rel = np.arange(L)[None, :] - np.arange(L)[:, None]
    bk = np_bucket(rel, buckets)
    layers = len([k for k in g if k.endswith(".norm1.weight")])
    for i in range(layers):
        p = f"blocks.{i}."
        table = g["pos_embedding.embedding.weight"] if shared else g[p + "pos_embedding.embedding.weight"]
        bias = table[bk].transpose(2, 0, 1)  # (H, L, L)
        h = np_rms(x, g[p + "norm1.weight"])
        q, k, v = (h @ g[p + f"attn.{n}.weight"].T for n in "qkv")
        A = q.shape[-1]
        dh = A // heads
        q, k, v = (t.reshape(B, L, heads, dh) for t in (q, k, v))
        s = np.einsum("binc,bjnc->bnij", q, k) + bias[None]
        s = np.where(mask[:, None, None, :] > 0, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("bnij,bjnc->binc", s, v).reshape(B, L, A)
        x = x + o @ g[p + "attn.o.weight"].T
        h = np_rms(x, g[p + "norm2.weight"])
        x = x + ((h @ g[p + "ffn.fc1.weight"].T) * np_gelu_tanh(h @ g[p + "ffn.gate.0.weight"].T)) @ g[
            p + "ffn.fc2.weight"].T
    return np_rms(x, g["norm.weight"])


def random_weights(rng, vocab, dim, dim_attn, ffn, heads, layers, buckets, shared=False):
    w = {"token_embedding.weight": rng.standard_normal((vocab, dim)), "norm.weight": 1 + 0.1 * rng.standard_normal(dim)}
    if shared:
        w["pos_embedding.embedding.weight"] = 0.5 * rng.standard_normal((buckets, heads))
    for i in range(layers):
        p = f"blocks.{i}."
        w[p + "norm1.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        w[p + "norm2.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        w[p + "attn.q.weight"] = rng.standard_normal((dim_attn, dim)) / math.sqrt(dim * dim_attn)
        for n in "kv":
            w[p + f"attn.{n}.weight"] = rng.standard_normal((dim_attn, dim)) / math.sqrt(dim)
        w[p + "attn.o.weight"] = rng.standard_normal((dim, dim_attn)) / math.sqrt(dim_attn)
        w[p + "ffn.gate.0.weight"] = rng.standard_normal((ffn, dim)) / math.sqrt(dim)
        w[p + "ffn.fc1.weight"] = rng.standard_normal((ffn, dim)) / math.sqrt(dim)
        w[p + "ffn.fc2.weight"] = rng.standard_normal((dim, ffn)) / math.sqrt(ffn)
        if not shared:
            w[p + "pos_embedding.embedding.weight"] = 0.5 * rng.standard_normal((buckets, heads))
    return {k: v.astype(np.float32) for k, v in w.items()}


# ---------------------------------------------------------------- golden parity

def test_config_from_weights(enc):
    assert enc.config == {"vocab": 128, "dim": 32, "dim_attn": 32, "heads": 4, "ffn": 48, "layers": 2,
                          "buckets": 32, "max_dist": 128, "shared_pos": False}


def test_golden_embedding(enc, golden):
    out = enc(golden["ids"], golden["mask"])
    assert out.shape == (2, 512, 32) and out.dtype == np.float32
    for b, n in enumerate(golden["mask"].sum(1)):
        err = np.abs(out[b, :n] - golden["embedding"][b, :n]).max()
        assert err <= 1e-5, f"row {b}: max abs error {err:.3g} on the {n} real rows (tolerance 1e-5)"
        assert np.array_equal(out[b, n:], np.zeros_like(out[b, n:])), "padded rows must be exactly 0"
        assert not np.signbit(out[b, n:]).any(), "padded rows must be +0.0"


def test_golden_default_mask_is_ids_not_pad(enc, golden):
    assert np.array_equal(enc(golden["ids"]), enc(golden["ids"], golden["mask"]))


def test_golden_raw(enc, golden):
    raw = enc.encode_raw(golden["ids"], golden["mask"])
    # Padded queries are computed too (only keys are masked); same tolerance on every row.
    err = np.abs(raw - golden["encoder_out_raw"]).max()
    assert err <= 1e-5, f"max abs error {err:.3g} (tolerance 1e-5)"


def test_golden_position_bias(enc, golden):
    assert np.array_equal(enc.position_bias(0, 64, 64), golden["block0_position_bias"])


def test_bf16_safetensors_weights(tmp_path, weights, golden):
    # The golden weights lie on the bf16 grid, so a BF16 file holds them exactly; the encoder keeps bf16 storage.
    path = tmp_path / "umt5.safetensors"
    io.save_safetensors(weights, path, dtype="bf16")
    out = UMT5Encoder(str(path))(golden["ids"], golden["mask"])
    n = golden["mask"].sum(1)
    for b in range(2):
        assert np.abs(out[b, :n[b]] - golden["embedding"][b, :n[b]]).max() <= 1e-5
        assert not out[b, n[b]:].any()


# ---------------------------------------------------------------- bucket formula

def test_bucket_table_of_the_spec():
    # buckets as upstream T5:259-296 computes them (32 buckets, max_dist 128), both directions.
    edges = [(0, 7, None), (8, 11, 8), (12, 15, 9), (16, 22, 10), (23, 31, 11), (32, 45, 12), (46, 63, 13),
             (64, 90, 14), (91, 600, 15)]
    for lo, hi, f in edges:
        n = np.arange(lo, hi + 1)
        want = n if f is None else np.full_like(n, f)
        assert np.array_equal(relative_position_bucket(-n), want)
        assert np.array_equal(relative_position_bucket(n)[n > 0], 16 + want[n > 0])


@pytest.mark.parametrize("buckets,max_dist", [(32, 128), (16, 128), (8, 20), (64, 256), (4, 128), (40, 100)])
def test_bucket_matches_numpy(buckets, max_dist):
    rel = np.arange(-1500, 1501)
    assert np.array_equal(relative_position_bucket(rel, buckets, max_dist), np_bucket(rel, buckets, max_dist))


def test_position_bias_other_layer(enc, weights):
    table = weights["blocks.1.pos_embedding.embedding.weight"]
    rel = np.arange(70)[None, :] - np.arange(50)[:, None]
    want = table[np_bucket(rel)].transpose(2, 0, 1)
    assert np.array_equal(enc.position_bias(1, 50, 70), want)


# ---------------------------------------------------------------- independent reference, other configs

@pytest.mark.parametrize("shared", [False, True])
def test_numpy_reference_other_config(shared):
    rng = np.random.default_rng(3)
    heads, buckets = 3, 16
    w = random_weights(rng, vocab=50, dim=24, dim_attn=36, ffn=40, heads=heads, layers=3, buckets=buckets,
                       shared=shared)
    enc = UMT5Encoder(w)
    assert enc.config["heads"] == heads and enc.config["dim_attn"] == 36 and enc.config["shared_pos"] is shared
    L, lens = 40, [7, 40, 1]
    ids = np.zeros((3, L), np.int64)
    for b, n in enumerate(lens):
        ids[b, :n] = rng.integers(3, 50, n)
        ids[b, n - 1] = 1
    mask = (ids != 0).astype(np.int64)
    ref = np_umt5(w, ids, mask, heads, buckets, shared)
    raw = enc.encode_raw(ids, mask)
    # float32 vs float64 over 3 layers: 2e-5 relative to the output scale (~1).
    assert np.abs(raw - ref).max() <= 2e-5
    out = enc(ids)
    for b, n in enumerate(lens):
        assert np.abs(out[b, :n] - ref[b, :n]).max() <= 2e-5
        assert not out[b, n:].any()


def test_prefix_shortcut_equals_full_length(enc, golden):
    # __call__ computes only max(seq_len) positions for prefix masks; the kept rows must equal the full-length
    # run (the same ops on the same rows, masked keys at probability 0): float32 rounding only (GEMM blocking
    # depends on the row count), a few ulps of outputs of size ~3.
    ids, mask = golden["ids"], golden["mask"]
    short = enc(ids, mask)
    raw = enc.encode_raw(ids, mask)
    for b, n in enumerate(mask.sum(1)):
        assert np.abs(short[b, :n] - raw[b, :n]).max() <= 1e-5


def test_non_prefix_mask_keeps_first_seq_len_rows(enc, golden):
    # Upstream keeps rows < seq_len = mask.sum() whatever the mask's shape (upstream T5:522-537).
    ids = golden["ids"][:1].copy()
    mask = (ids != 0).astype(np.int64)
    mask[0, 5] = 0  # a hole: a key masked inside the prompt
    n = int(mask.sum())
    out = enc(ids, mask)
    raw = enc.encode_raw(ids, mask)
    assert np.array_equal(out[0, :n], raw[0, :n])
    assert not out[0, n:].any()


def test_shorter_sequences_and_batch_independence(enc, golden):
    ids = golden["ids"][:, :200]
    both = enc(ids)
    one = enc(ids[1:2])
    assert both.shape == (2, 200, 32)
    assert np.abs(both[1] - one[0]).max() <= 1e-5  # float32 rounding of a different GEMM blocking


# ---------------------------------------------------------------- errors

def test_bad_inputs(enc, golden):
    with pytest.raises(ValueError, match=r"ids\[0, 3\] = 500"):
        ids = golden["ids"].copy()
        ids[0, 3] = 500
        enc(ids)
    with pytest.raises(ValueError, match="outside"):
        enc(-golden["ids"])
    with pytest.raises(TypeError, match="integer"):
        enc(golden["ids"].astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        enc(golden["ids"][0])
    with pytest.raises(ValueError, match="mask shape"):
        enc(golden["ids"], golden["mask"][:, :100])


def test_device(weights):
    if not lyra2.backends()["cuda"]:  # with a device (or the emulated one): tests/device_checks/check_umt5.py
        with pytest.raises(lyra2.Lyra2Error, match="(?i)cuda backend"):
            UMT5Encoder(weights, device="cuda")
    with pytest.raises(ValueError, match="device"):
        UMT5Encoder(weights, device="tpu")


@pytest.mark.parametrize("edit,pattern", [
    (lambda w: w.pop("blocks.1.ffn.fc2.weight"), "'blocks.1.ffn.fc2.weight' is missing"),
    (lambda w: w.pop("norm.weight"), "'norm.weight' is missing"),
    (lambda w: w.update({"blocks.0.attn.k.weight": np.zeros((32, 31), np.float32)}),
     r"'blocks.0.attn.k.weight' has shape \(32, 31\) f32, expected \(32, 32\)"),
    (lambda w: w.update({"blocks.1.norm2.weight": np.zeros(32, np.int32)}), "'blocks.1.norm2.weight' has dtype i32"),
    (lambda w: w.update({"blocks.0.extra.weight": np.zeros(3, np.float32)}), "unexpected tensor 'blocks.0.extra.weight'"),
    (lambda w: w.update({"blocks.2.norm1.weight": np.ones(32, np.float32)}), "'blocks.2.attn.q.weight' is missing"),
    (lambda w: w.update({"blocks.0.pos_embedding.embedding.weight": np.zeros((32, 5), np.float32)}),
     "5 heads"),
    (lambda w: w.pop("token_embedding.weight"), "'token_embedding.weight' is missing"),
])
def test_bad_weights(weights, edit, pattern):
    w = dict(weights)
    edit(w)
    with pytest.raises(lyra2.Lyra2Error, match=pattern):
        UMT5Encoder(w)


def test_bad_weights_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(lyra2.Lyra2Error):
        UMT5Encoder(str(path))
    with pytest.raises(TypeError, match="safetensors path or a mapping"):
        UMT5Encoder(42)


# ---------------------------------------------------------------- cost model

def test_cost_umt5_xxl():
    c = umt5_cost(UMT5_XXL, tokens=512)
    # Parameter count of Wan's models_t5_umt5-xxl-enc-bf16.pth as the spec derives it (upstream TOK:795, TOK:746-760,
    # TOK:863-864).
    assert c["params"] == 5_680_910_336
    D, A, F, L = 4096, 4096, 10240, 512
    flops = 24 * (2 * L * D * A * 4 + 2 * L * L * A * 2 + 2 * L * D * F * 3)
    assert c["flops"] == pytest.approx(flops, rel=1e-12)
    # Activations: residual + one block's temporaries (the 64-head 512×512 bias twice) stay far below 1 GB.
    assert 64 * 512 * 512 * 4 * 2 < c["arena_bytes"] < 1 << 30


# ---------------------------------------------------------------- negative prompt

def _save_np(tmp_path, arrays, dtype=None):
    path = tmp_path / "negative_prompt.safetensors"
    io.save_safetensors(arrays, path, dtype=dtype)
    return path


@pytest.mark.parametrize("shape", [(1, 512, 8), (512, 8), (1, 1, 512, 8)])
def test_negative_prompt_loads(tmp_path, shape):
    rng = np.random.default_rng(0)
    emb = io.bf16_bits_to_f32(io.to_bf16_bits(rng.standard_normal(shape)))
    path = _save_np(tmp_path, {"t5_text_embeddings": emb, "other": np.zeros(2, np.float32)}, dtype="bf16")
    out = load_negative_prompt(path, dim=8)
    assert out.shape == (1, 512, 8) and out.dtype == np.float32
    assert np.array_equal(out.reshape(-1), emb.reshape(-1))


@pytest.mark.parametrize("arrays,dim,pattern", [
    ({"emb": np.zeros((1, 512, 8), np.float32)}, None, "'t5_text_embeddings' .* is missing; tensors found: emb"),
    ({"t5_text_embeddings": np.zeros((1, 77, 8), np.float32)}, None, r"shape \(1, 77, 8\)"),
    ({"t5_text_embeddings": np.zeros((2, 512, 8), np.float32)}, None, r"shape \(2, 512, 8\)"),
    ({"t5_text_embeddings": np.zeros((1, 512, 8), np.float32)}, 4096, r"expected \(1, 512, 4096\)"),
    ({"t5_text_embeddings": np.zeros((1, 512, 8), np.int32)}, None, "dtype I32"),
    ({"t5_text_embeddings": np.full((1, 512, 8), np.nan, np.float32)}, None, "non-finite"),
])
def test_negative_prompt_errors(tmp_path, arrays, dim, pattern):
    path = _save_np(tmp_path, arrays)
    with pytest.raises(lyra2.Lyra2Error, match=pattern):
        load_negative_prompt(path, dim=dim)
