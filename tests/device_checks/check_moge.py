"""MoGe on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1. By default
the device follows upstream's fp16 autocast (docs/PRECISION.md): the backbone taps, the head's maps and the recovered
depth and intrinsics meet the f32 golden within the bound of bf16_tolerance.py (the mask may differ only where the
golden's mask probability is within 0.01 of the threshold). With precision="f32" (the parity mode)
tests/test_moge.py's golden tolerances hold, and the device equals the CPU within 1e-5 relative. The focal/shift
solve and the depth/intrinsics recovery stay on the host; per call the image goes up once and the head's output
comes down once."""
import gc
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from bf16_tolerance import bf16_close, input_ulp_sensitivity, max_rel  # noqa: E402
from conftest import DATA  # noqa: E402
from numpy_refs import rel  # noqa: E402
from lyra2 import Lyra2Error  # noqa: E402
from lyra2.models import MoGe  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]
G = np.load(os.path.join(DATA, "moge_tiny.npz"))
W_TINY = dict(np.load(os.path.join(DATA, "moge_tiny_weights.npz")))
TINY = dict(num_heads=4, num_tokens_range=(30, 60))
# bound (bf16_tolerance.py, with the bf16 roundoff as a safe upper bound for f16's): 2·sqrt(R)·s1 with R = 143 ops
# per call and s1 = 7.0e-4 (the head's output after one rounding of the image, CPU reference) on the tiny model
TOL = 1.6e-2
MIN_F16 = 1e-4  # f16 rounds 4x finer than bf16; an f32 run stays near 1e-6


@pytest.fixture(scope="module")
def dev():
    return MoGe(W_TINY, device="cuda", precision="f32", **TINY)


@pytest.fixture(scope="module")
def dev16():
    return MoGe(W_TINY, device="cuda", **TINY)


def test_golden_in_f16_on_device(dev16):
    assert dev16.precision == "f16"
    d = dev16.run(G["moge_input"], debug=True)
    for k in range(4):
        bf16_close(d["taps"][k].reshape(G[f"moge_tap{k}"].shape), G[f"moge_tap{k}"], TOL, MIN_F16)
    bf16_close(d["fwd_points"].reshape(G["moge_fwd_points"].shape), G["moge_fwd_points"], TOL, MIN_F16)
    bf16_close(d["fwd_mask"].reshape(G["moge_fwd_mask"].shape), G["moge_fwd_mask"], TOL, MIN_F16)
    r = dev16(G["moge_input"])
    near = np.abs(G["moge_fwd_mask"][0] - 0.5) < 0.01
    assert np.array_equal(r["mask"][~near], G["moge_mask"].astype(bool)[~near])
    assert np.array_equal(np.isfinite(r["depth"])[~near], np.isfinite(G["moge_depth"])[~near])  # masked: inf
    fin = np.isfinite(G["moge_depth"]) & np.isfinite(r["depth"])
    bf16_close(r["depth"][fin], G["moge_depth"][fin], TOL, 0)
    assert max_rel(r["intrinsics"], G["moge_intrinsics"]) <= TOL


@pytest.mark.skipif(not EMULATED, reason="op counts and pool bytes of the emulated device")
def test_bound_and_f16_weights(dev16):
    """TOL is no looser than 2·sqrt(R)·s1, both measured here; the placed block is the plan's weight bytes (the
    backbone's GEMM weights and the head's convs f16, norms and biases f32) but for per-tensor alignment."""
    cpu = MoGe(W_TINY, **TINY)
    s1 = input_ulp_sensitivity(lambda x: cpu.run(x, debug=True)["head"], G["moge_input"])
    lyra2.testing.emulated_cuda_reset()
    dev16(G["moge_input"])
    assert TOL <= 1.1 * 2 * np.sqrt(lyra2.testing.emulated_cuda_stats()["ops"]) * s1
    gc.collect()
    base = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    m = MoGe(W_TINY, device="cuda", **TINY)
    placed = lyra2.testing.emulated_cuda_stats()["live_bytes"] - base
    planned = lyra2.models.moge.moge_cost(64, 96, m.config, "f16")["weight_bytes"]
    assert planned <= placed <= planned + 64 * len(W_TINY) + 256
    assert placed < 0.6 * sum(v.nbytes for v in W_TINY.values())


def test_golden_on_device(dev):
    if EMULATED:
        lyra2.testing.emulated_cuda_reset()
    r = dev(G["moge_input"])
    if EMULATED:
        s = lyra2.testing.emulated_cuda_stats()
        log = lyra2.testing.emulated_cuda_transfers()
        print("MoGe transfers:", log)
        assert s["refused"] == 0
        ups = [name for d, _, name in log if d == "upload"]
        downs = [name for d, _, name in log if d == "download"]
        # the image once, the head's UV planes built on the host, no weights again; the output down once
        assert ups.count("MoGe image") == 1 and ups[0] == "MoGe image"
        assert set(ups) == {"MoGe image", "MoGe head input", "MoGe upsample stage", "MoGe head at image size"}
        assert downs == ["MoGe outputs at the input size"]
    near = np.abs(G["moge_fwd_mask"][0] - 0.5) < 1e-5
    assert np.array_equal(r["mask"][~near], G["moge_mask"].astype(bool)[~near])
    fin = np.isfinite(G["moge_depth"])
    assert np.array_equal(np.isfinite(r["depth"]), fin)
    assert rel(r["depth"][fin], G["moge_depth"][fin]) < 3e-5
    assert np.abs(r["intrinsics"] - G["moge_intrinsics"]).max() < 2e-5 * G["moge_intrinsics"].max()
    assert rel(r["points"][fin], G["moge_points"][fin]) < 1e-4


def test_device_equals_cpu(dev):
    cpu = MoGe(W_TINY, **TINY)
    a, b = dev.run(G["moge_input"], debug=True), cpu.run(G["moge_input"], debug=True)
    for k in ("head", "fwd_points", "fwd_mask", "taps"):
        assert np.abs(a[k] - b[k]).max() <= 1e-5 * max(float(np.abs(b[k]).max()), 1e-6), k


def test_out_of_device_memory_is_a_lyra2_error_with_size_and_stage(monkeypatch):
    if not EMULATED:
        pytest.skip("the memory limit is the emulated device's")
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "64K")
    with pytest.raises(Lyra2Error, match=r"MoGe weights: cannot place \d+ bytes"):
        MoGe(W_TINY, device="cuda", precision="f32", **TINY)
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    gc.collect()
    m = MoGe(W_TINY, device="cuda", precision="f32", **TINY)
    live = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(live + 4096))
    with pytest.raises(Lyra2Error, match=r"activations: cannot allocate \d+ bytes"):
        m(G["moge_input"])
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    fin = np.isfinite(G["moge_depth"])
    assert rel(m(G["moge_input"])["depth"][fin], G["moge_depth"][fin]) < 3e-5
