"""WanVAE on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1 and by
benchmarks/device_check.sh on a GPU. By default the device follows upstream's policy (weights, activations and
caches in bf16, docs/PRECISION.md): it meets the f32 goldens within the bf16 bound of bf16_tolerance.py. With
precision="f32" (the parity mode) the f32 golden tolerance of tests/test_vae.py holds (abs 1e-4), and streams on
the device equal the same streams on the CPU within tests/test_vae.py's run-to-run tolerance (2e-5 · max|ref|)."""
import gc
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from bf16_tolerance import bf16_close, input_ulp_sensitivity  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2.models.vae import WanVAE  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]
GOLDEN_TOL = 1e-4
REL_TOL = 2e-5
# bf16 bound (bf16_tolerance.py): 2·sqrt(R)·s1 with R = 149 ops in a one-latent decoder push (113 for the encoder's
# first frame) and s1 = 1.7e-3 (decoder; encoder 1.4e-3) measured on the tiny VAE: 4.2e-2
BF16_TOL = 4e-2


def close(a, b, tol=GOLDEN_TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.abs(a.astype(np.float64) - b).max())
    assert err <= tol, f"max abs error {err:.3g} > {tol:.3g}"


def close_rel(a, b):
    close(a, b, REL_TOL * max(float(np.abs(b).max()), 1e-6))


@pytest.fixture(scope="module")
def golden():
    with np.load(os.path.join(DATA, "vae_tiny.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def weights():
    with np.load(os.path.join(DATA, "vae_tiny_weights.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def dev(weights):
    return WanVAE(weights, device="cuda", threads=1, precision="f32")


@pytest.fixture(scope="module")
def dev16(weights):
    return WanVAE(weights, device="cuda", threads=1)


@pytest.fixture(scope="module")
def cpu(weights):
    return WanVAE(weights, device="cpu", threads=1)


def test_golden_on_device_in_bf16(dev16, golden):
    """The default device policy: bf16 weights, activations and caches; the goldens within the bf16 bound, AR
    stream included."""
    assert dev16.precision == "bf16"
    bf16_close(dev16.encode(golden["video"], normalize=False), golden["mu"], BF16_TOL)
    bf16_close(dev16.encode(golden["video"]), golden["latent"], BF16_TOL)
    bf16_close(dev16.decode(golden["latent"]), golden["decoded"], BF16_TOL)
    s = dev16.stream()
    hist, primed = s.prime(golden["ar_first_frame"], 3, return_frames=True)
    bf16_close(hist, golden["ar_history_latents"], BF16_TOL)
    bf16_close(primed, golden["ar_prime_decoded"], BF16_TOL)
    for c in range(2):
        frames = s.decode(golden[f"ar_chunk{c}_latents"])
        bf16_close(frames, golden[f"ar_chunk{c}_decoded"], BF16_TOL)
        bf16_close(s.encode(frames), golden[f"ar_chunk{c}_reencoded"], BF16_TOL)


@pytest.mark.skipif(not EMULATED, reason="op counts of the emulated device")
def test_bf16_bound_follows_from_the_measured_sensitivity(weights, golden, dev16):
    """BF16_TOL is no looser than 2·sqrt(R)·s1 (bf16_tolerance.py), both measured here."""
    cpu = WanVAE(weights, threads=1)
    bounds = []
    for run, x in [(lambda v, x: v.encode(x, normalize=False), golden["video"][:, :, :1]),
                   (lambda v, x: v.decode(x, normalized=False), golden["mu"][:, :, :1])]:
        s1 = input_ulp_sensitivity(lambda x: run(cpu, x), x)
        lyra2.testing.emulated_cuda_reset()
        run(dev16, x)
        ops = lyra2.testing.emulated_cuda_stats()["ops"]
        bounds.append(2 * np.sqrt(ops) * s1)
    assert BF16_TOL <= 1.1 * max(bounds), bounds


@pytest.mark.skipif(not EMULATED, reason="the emulated pool's byte count")
def test_weights_are_bf16_on_the_device(weights):
    """The placed block holds every parameter as bf16 (2 bytes, each tensor 64-byte aligned, the block rounded to
    cudaMalloc's 256 bytes): half the f32 parity mode's block."""
    gc.collect()
    base = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    vae = WanVAE(weights, device="cuda", threads=1)
    placed = lyra2.testing.emulated_cuda_stats()["live_bytes"] - base
    dim, z = vae.dim, vae.z_dim
    want = sum((int(np.prod(s)) * 2 + 63) // 64 * 64 for _, s in lyra2.testing.vae_tensor_shapes(dim, z))
    assert placed == (want + 255) // 256 * 256
    vae32 = WanVAE(weights, device="cuda", threads=1, precision="f32")
    placed32 = lyra2.testing.emulated_cuda_stats()["live_bytes"] - base - placed
    assert abs(placed32 - 2 * placed) <= 64 * len(weights) + 512
    del vae, vae32


def test_precision_argument_errors(weights):
    with pytest.raises(ValueError, match="precision"):
        WanVAE(weights, device="cuda", precision="f16")
    with pytest.raises(ValueError, match="needs device='cuda'"):
        WanVAE(weights, device="cpu", precision="bf16")


def test_golden_on_device(dev, weights, golden):
    close(dev.encode(golden["video"], normalize=False), golden["mu"])
    close(dev.encode(golden["video"]), golden["latent"])
    close(dev.decode(golden["latent"]), golden["decoded"])
    dev32 = WanVAE(weights, device="cuda", constants="fp32", threads=1, precision="f32")
    close(dev32.encode(golden["video"]), golden["latent_fp32const"])
    close(dev32.decode(golden["latent_fp32const"]), golden["decoded_fp32const"])


def test_golden_ar_stream_on_device(dev, golden):
    """prime, then per chunk decode continuing the decoder cache and re-encode continuing the encoder cache, with a
    copy() snapshot taken on the device continuing the same way."""
    s = dev.stream()
    hist, primed = s.prime(golden["ar_first_frame"], 3, return_frames=True)
    close(hist, golden["ar_history_latents"])
    close(primed, golden["ar_prime_decoded"])
    snap = s.copy()
    for c in range(2):
        frames = s.decode(golden[f"ar_chunk{c}_latents"])
        close(frames, golden[f"ar_chunk{c}_decoded"])
        close(s.encode(frames), golden[f"ar_chunk{c}_reencoded"])
    frames = snap.decode(golden["ar_chunk0_latents"])
    close(frames, golden["ar_chunk0_decoded"])
    close(snap.encode(frames), golden["ar_chunk0_reencoded"])


def test_streams_equal_the_cpu(dev, cpu):
    rng = np.random.default_rng(7)
    video = rng.uniform(-1, 1, (2, 3, 13, 16, 24)).astype(np.float32)
    ref = cpu.encode(video, normalize=False, window=None)
    close_rel(dev.encode(video, normalize=False, window=None), ref)       # one push
    close_rel(dev.encode(video, normalize=False), ref)                    # 1 + 4 + 4 + 4 (upstream chunks)
    s = dev.encode_stream(normalize=False)                                # 5 + 8 frames: irregular pushes
    close_rel(np.concatenate([s.push(video[:, :, :5], window=None), s.push(video[:, :, 5:], window=None)], 2), ref)
    z = rng.normal(0, 1, (2, 16, 4, 2, 3)).astype(np.float32)
    zref = cpu.decode(z, normalized=False, window=None)
    close_rel(dev.decode(z, normalized=False), zref)                      # one latent at a time (upstream)
    d = dev.decode_stream(normalized=False)
    close_rel(np.concatenate([d.push(z[:, :, :2], window=None), d.push(z[:, :, 2:], window=None)], 2), zref)


@pytest.mark.skipif(not EMULATED, reason="transfer log of the emulated device")
def test_transfers(weights, golden):
    """Weights up once at load; each Python call uploads its input frames once and downloads its output once (the
    chunked pushes read and write frame ranges of those device blocks), and nothing else moves: caches,
    activations and stream copies stay on the device."""
    lyra2.testing.emulated_cuda_reset()
    vae = WanVAE(weights, device="cuda", threads=1)
    assert [(d, n) for d, _, n in lyra2.testing.emulated_cuda_transfers()] == [("upload", "Wan VAE weights")]

    def log():
        out = [(d, n) for d, _, n in lyra2.testing.emulated_cuda_transfers()]
        lyra2.testing.emulated_cuda_reset()
        return out

    enc = [("upload", "Wan VAE video"), ("download", "Wan VAE mu")]
    dec = [("upload", "Wan VAE latents"), ("download", "Wan VAE frames")]
    lyra2.testing.emulated_cuda_reset()
    vae.encode(golden["video"])                                # 9 frames: pushes of 1, 4, 4 frames
    assert log() == enc
    vae.decode(golden["latent"])                               # 3 latents, one per push
    assert log() == dec
    s = vae.stream()
    s.prime(golden["ar_first_frame"], 3)                       # encode 1 + 4 + 4 frames, decode 3 latents
    assert log() == enc + dec
    snap = s.copy()
    assert log() == []
    frames = snap.decode(golden["ar_chunk0_latents"])          # 2 latents
    assert log() == dec
    snap.encode(frames)                                        # 8 frames: 2 pushes
    assert log() == enc
    two = np.concatenate([golden["video"]] * 2)                # batch 2: still one block each way
    vae.encode(two)
    assert log() == enc
    s.decoder.push(golden["ar_chunk0_latents"], window=None)   # the one-push path
    assert log() == dec
    assert lyra2.testing.emulated_cuda_stats()["refused"] == 0


@pytest.mark.skipif(not EMULATED, reason="sets the emulated card's size")
def test_out_of_device_memory_is_a_lyra2_error_with_size_and_stage(weights, golden, monkeypatch):
    """A card too small for the weights fails the load, one too small for a push's activations fails that push
    before any cache moves: both Lyra2Error naming the stage and the bytes; the model and the stream stay usable."""
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "64K")
    with pytest.raises(lyra2.Lyra2Error, match=r"Wan VAE weights: cannot place \d+ bytes"):
        WanVAE(weights, device="cuda", threads=1)
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    gc.collect()
    vae = WanVAE(weights, device="cuda", threads=1)
    live = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    s = vae.encode_stream()
    d = vae.decode_stream()
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(live + 4096))  # not even the call's staged frames fit
    with pytest.raises(lyra2.Lyra2Error, match=r"Wan VAE encode: cannot allocate 85248 bytes .* frames of this call"):
        s.push(golden["video"])
    with pytest.raises(lyra2.Lyra2Error, match=r"Wan VAE decode: cannot allocate 85248 bytes .* frames of this call"):
        d.push(golden["latent"])
    # the staged frames (9 video frames 32x48 + 3 latents 4x6, bf16: 85248 bytes) fit, the activation arena does not
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(live + 85248 + 4096))
    with pytest.raises(lyra2.Lyra2Error, match=r"Wan VAE encode: cannot allocate \d+ bytes .* of activations"):
        s.push(golden["video"])
    with pytest.raises(lyra2.Lyra2Error, match=r"Wan VAE decode: cannot allocate \d+ bytes .* of activations"):
        d.push(golden["latent"])
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    bf16_close(s.push(golden["video"]), golden["latent"], BF16_TOL)
    bf16_close(d.push(golden["latent"]), golden["decoded"], BF16_TOL)
    assert lyra2.testing.emulated_cuda_stats()["refused"] == 0


@pytest.mark.skipif(not EMULATED, reason="the emulated pool's byte counts")
def test_bf16_plan_is_the_device_run(weights):
    """lyra2.memory_plan's VAE numbers (the dry walk with precision "bf16") are the bf16 device stream's own: the same
    arena peak and caches (half the f32 plan's), and the pool grows by exactly the weights, the staged frames, the
    caches and the arena during a push."""
    gc.collect()
    base = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    vae = WanVAE(weights, device="cuda", threads=1)
    weights_bytes = lyra2.testing.emulated_cuda_stats()["live_bytes"] - base
    video = np.zeros((1, 3, 5, 16, 24), np.float32)
    s = vae.encode_stream(normalize=False)
    s.push(video[:, :, :1], window=None)
    lyra2.testing.emulated_cuda_reset()
    s.push(video[:, :, 1:], window=None)
    real = s.stats()
    plan = lyra2._core.vae_plan_session(vae.dim, vae.z_dim, False, "bf16")
    plan32 = lyra2._core.vae_plan_session(vae.dim, vae.z_dim, False)
    for p in (plan, plan32):
        lyra2._core.vae_plan_push(p, (1, 3, 1, 16, 24))
        lyra2._core.vae_plan_push(p, (1, 3, 4, 16, 24))
    dry, dry32 = lyra2._core.vae_stats(plan), lyra2._core.vae_stats(plan32)
    assert dry["arena_peak"] == real["arena_peak"] and dry["cache_bytes"] == real["cache_bytes"]
    assert dry32["cache_bytes"] == 2 * dry["cache_bytes"] and dry["arena_peak"] < dry32["arena_peak"]
    # the pool during the push: weights, caches, the call's staged bf16 frames (4 in, 1 latent out) and the arena
    # (reserved at the measured need plus an eighth), each block rounded to cudaMalloc's 256 bytes (32 cache slots
    # at most)
    staged = (4 * 3 * 16 * 24 + 1 * 16 * 2 * 3) * 2
    peak = lyra2.testing.emulated_cuda_stats()["peak_bytes"] - base
    assert weights_bytes + dry["cache_bytes"] + dry["arena_peak"] <= peak
    assert peak <= weights_bytes + dry["cache_bytes"] + staged + dry["arena_peak"] * 9 // 8 + 256 * 36
