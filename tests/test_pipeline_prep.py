"""Chunk-input preparation (csrc/pipeline/prep.c, spatial_cache.c) against golden part C: upstream
`Lyra2Model._prepare_lyra2_inputs` run at the tiny layout f1k1f2s2f1s1f2k2f1k1_g2 (32x48, chunk 1) with a linear
stand-in for the VAE encoder (golden README §2C). Tolerances are the README's."""
import os

import numpy as np
import pytest

from conftest import DATA
from lyra2 import _core

LAYOUT = "f1k1f2s2f1s1f2k2f1k1_g2"


@pytest.fixture(scope="module")
def g():
    return dict(np.load(os.path.join(DATA, "pipeline_prep.npz")))


def stand_in(A, b):
    """The recorded encoder stand-in (README §2C): 8x8 mean pool, Wan frame groups G(0) = {0},
    G(l) = {4l-3 .. 4l}, then z = A x + b. video (T, 3, H, W) -> (16, 1 + (T-1)//4, H/8, W/8)."""
    calls = []

    def encode(video):
        calls.append(video.copy())
        T, _, H, W = video.shape
        pooled = video.reshape(T, 3, H // 8, 8, W // 8, 8).mean(axis=(3, 5), dtype=np.float64)
        groups = [pooled[:1].mean(0)] + [pooled[4 * l - 3:4 * l + 1].mean(0) for l in range(1, 1 + (T - 1) // 4)]
        x = np.stack(groups, axis=1)  # (3, L, h, w)
        return (np.einsum("kc,clhw->klhw", A.astype(np.float64), x) + b[:, None, None, None]).astype(np.float32)

    return encode, calls


@pytest.fixture(scope="module")
def run(g):
    encode, calls = stand_in(g["prep_encode_A"], g["prep_encode_bias"])
    frames = np.ascontiguousarray(g["prep_video"][0].transpose(1, 0, 2, 3))  # (T, 3, H, W)
    out = _core.pipeline_prepare(LAYOUT, 1, g["prep_history_full"][0], frames, g["prep_camera_w2c"][0],
                                 g["prep_intrinsics"][0], g["prep_buffer_depth"][0, 0], g["prep_cache_depth"][:, 0, 0],
                                 g["prep_cache_frame_ids"], 3, encode)
    return out, calls


def test_stand_in_reproduces_recorded_outputs(g):
    # The NumPy stand-in itself against the recorded calls (abs 1e-5: float32 pooling order).
    encode, _ = stand_in(g["prep_encode_A"], g["prep_encode_bias"])
    for i in range(4):
        x = g[f"prep_encode_call{i}_in"][0].transpose(1, 0, 2, 3)
        np.testing.assert_allclose(encode(np.ascontiguousarray(x)), g[f"prep_encode_call{i}_out"][0], atol=1e-5)


def test_retrieval_exact(run, g):
    out, _ = run
    np.testing.assert_array_equal(out["retrieved"], g["prep_retrieved"])


def test_encoder_inputs(run, g):
    # The pixels given to the encoder: the buffer warp with its first frame prepended, then each spatial slot's
    # frame (warp tolerance abs 1e-4 where both are not holes; the single frames are copies, exact).
    _, calls = run
    assert len(calls) == 4
    ref0 = g["prep_encode_call0_in"][0].transpose(1, 0, 2, 3)
    hole = (calls[0] == -1) | (ref0 == -1)
    agree = np.abs(calls[0] - ref0) <= 1e-4
    assert (agree | hole).mean() >= 0.995
    for i in range(1, 4):
        np.testing.assert_array_equal(calls[i], g[f"prep_encode_call{i}_in"][0].transpose(1, 0, 2, 3))


def test_latents_and_mask(run, g):
    out, _ = run
    np.testing.assert_allclose(out["x"], g["prep_latents"][0], atol=1e-4)
    np.testing.assert_array_equal(out["y"][:4], g["prep_mask"][0])


def test_cond_latent(run, g):
    # Channels 0..15 latents, 16..399 rays [origin, direction] unshuffled 8x8 (README: abs 1e-4).
    out, _ = run
    ref = g["prep_cond_latent"][0]
    got = out["y"][4:]
    err = np.abs(got - ref)
    print("cond_latent max abs err", err.max(), "latents", err[:16].max(), "rays", err[16:].max())
    assert err[16:].max() <= 1e-5
    assert err[:16].max() <= 1e-4


def test_buffer(run, g):
    out, _ = run
    ref = g["prep_buffer"][0]
    err = np.abs(out["buffer"] - ref)
    print("buffer max abs err", err.max(), "fraction > 1e-4:", (err > 1e-4).mean())
    # README: abs 1e-4; the warped part may differ at a few exact-landing pixels, so require 99.5 % there.
    assert (err <= 1e-4).mean() >= 0.995
    np.testing.assert_allclose(out["buffer"][:, :7], ref[:, :7], atol=1e-6)  # history slots: closed form


def test_warp_pixels(run, g):
    out, _ = run
    ref = g["prep_warp_pixels"][0]  # (3 (1 + n), F, H, W)
    got = np.concatenate([out["warp_rgb"].transpose(1, 0, 2, 3)] +
                         [c.transpose(1, 0, 2, 3) for c in out["warp_coords"]], axis=0)
    assert got.shape == ref.shape
    both = (got != -1) & (ref != -1)
    assert (((got == -1) == (ref == -1)).mean()) >= 0.995
    err = np.abs(got - ref)[both]
    print("warp pixels max abs err", err.max())
    assert (err <= 1e-4).mean() >= 0.995


def test_rejects_wrong_history_length():
    # Chunk 1 of this layout needs 7 + 2 history latents; 8 is an error naming the count.
    with pytest.raises(ValueError, match="history latents"):
        _core.pipeline_prepare(LAYOUT, 1, np.zeros((16, 8, 4, 6), np.float32), np.zeros((9, 3, 32, 48), np.float32),
                               np.tile(np.eye(4, dtype=np.float32), (17, 1, 1)),
                               np.tile(np.eye(3, dtype=np.float32), (17, 1, 1)), np.ones((32, 48), np.float32),
                               np.ones((1, 32, 48), np.float32), np.zeros(1, np.int64), 3, lambda v: v)


def test_on_the_emulated_device_equals_the_cpu(g, run, monkeypatch):
    """The assembly runs as backend ops (warps, rays, strided copies, fills, range normalisation): on the emulated
    device (a separate pool that refuses host pointers) the same ops give the CPU backend's result bit for bit, and
    the encoder stand-in sees the same pixels."""
    from lyra2 import testing
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    encode, calls = stand_in(g["prep_encode_A"], g["prep_encode_bias"])
    frames = np.ascontiguousarray(g["prep_video"][0].transpose(1, 0, 2, 3))
    testing.emulated_cuda_reset()
    dev = _core.pipeline_prepare(LAYOUT, 1, g["prep_history_full"][0], frames, g["prep_camera_w2c"][0],
                                 g["prep_intrinsics"][0], g["prep_buffer_depth"][0, 0], g["prep_cache_depth"][:, 0, 0],
                                 g["prep_cache_frame_ids"], 3, encode, "cuda")
    assert testing.emulated_cuda_stats()["refused"] == 0
    cpu, cpu_calls = run
    for k in ("x", "y", "buffer", "warp_rgb", "warp_coords", "retrieved"):
        np.testing.assert_array_equal(dev[k], cpu[k], err_msg=k)
    assert len(calls) == len(cpu_calls)
    for a, b in zip(calls, cpu_calls):
        np.testing.assert_array_equal(a, b)


def test_prep_scratch_is_the_written_out_count():
    """What lyra_prep_chunk allocates (lyra_prep_scratch_bytes, which lyra2.memory_plan's prep stage counts), at the
    released layout with warp batches of 16 targets, equals a count written out here independently, f32 throughout:
    one batch of warped images (16, 3, H, W) and their depths (16, H, W) (each batch encoded before the next, reused
    by the correspondence warps), the warped depths of the kept frames (S, G, H, W: normalised over all groups'
    range at the end), the camera latents (G + 1, 16, h, w), the spatial latents (S, 16, h, w) and the depth range."""
    from lyra2 import memory
    fp = _core.dit_framepack(memory.DIT_LAYOUT)
    S, G, C, batch = fp["spatial_frames"], fp["new_frames"], 16, 16
    for H, W in ((480, 832), (720, 1280)):
        HW, hw = H * W, (H // 8) * (W // 8)
        count = 4 * (batch * 3 * HW + batch * HW + S * G * HW + C * (G + 1) * hw + S * C * hw + 2)
        assert _core.prep_scratch_bytes(memory.DIT_LAYOUT, H, W, C, batch) == count, (H, W)


def bf16_round(x):
    """float32 -> nearest-even bf16 -> float32, written independently of the C helpers."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def test_bf16_condition_is_the_f32_one_rounded_once(g, run, monkeypatch):
    """On a device the DiT may keep y and the buffer in bf16 (upstream's dtype for them): the prep then writes every
    value computed in f32 and rounded once (copies convert, the rays and the depth normalisation store their f32
    results rounded), so the bf16 condition is exactly the f32 condition rounded to nearest even."""
    from lyra2 import testing
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    encode, _ = stand_in(g["prep_encode_A"], g["prep_encode_bias"])
    frames = np.ascontiguousarray(g["prep_video"][0].transpose(1, 0, 2, 3))
    dev = _core.pipeline_prepare(LAYOUT, 1, g["prep_history_full"][0], frames, g["prep_camera_w2c"][0],
                                 g["prep_intrinsics"][0], g["prep_buffer_depth"][0, 0], g["prep_cache_depth"][:, 0, 0],
                                 g["prep_cache_frame_ids"], 3, encode, "cuda", "bf16")
    assert testing.emulated_cuda_stats()["refused"] == 0
    cpu, _ = run
    np.testing.assert_array_equal(dev["x"], cpu["x"])  # the sampler's latent stays f32
    for k in ("y", "buffer"):
        np.testing.assert_array_equal(dev[k], bf16_round(cpu[k]), err_msg=k)
    with pytest.raises(ValueError, match="cond_dtype"):
        _core.pipeline_prepare(LAYOUT, 1, g["prep_history_full"][0], frames, g["prep_camera_w2c"][0],
                               g["prep_intrinsics"][0], g["prep_buffer_depth"][0, 0], g["prep_cache_depth"][:, 0, 0],
                               g["prep_cache_frame_ids"], 3, encode, "cpu", "f16")
