"""MoGe on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1. The device
path keeps f32 activations for MoGe (docs/PRECISION.md), so tests/test_moge.py's golden tolerances hold, and the
device equals the CPU within 1e-5 relative. The focal/shift solve and the depth/intrinsics recovery stay on the
host; per call the image goes up once and the head's output comes down once."""
import gc
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2 import Lyra2Error  # noqa: E402
from lyra2.models import MoGe  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]
G = np.load(os.path.join(DATA, "moge_tiny.npz"))
W_TINY = dict(np.load(os.path.join(DATA, "moge_tiny_weights.npz")))
TINY = dict(num_heads=4, num_tokens_range=(30, 60))


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1e-6)).max())


@pytest.fixture(scope="module")
def dev():
    return MoGe(W_TINY, device="cuda", **TINY)


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
        MoGe(W_TINY, device="cuda", **TINY)
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    gc.collect()
    m = MoGe(W_TINY, device="cuda", **TINY)
    live = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(live + 4096))
    with pytest.raises(Lyra2Error, match=r"activations: cannot allocate \d+ bytes"):
        m(G["moge_input"])
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    fin = np.isfinite(G["moge_depth"])
    assert rel(m(G["moge_input"])["depth"][fin], G["moge_depth"][fin]) < 3e-5
