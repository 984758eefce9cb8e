"""DepthAnything3 on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1.
The device path keeps f32 activations for DA3 (docs/PRECISION.md), so tests/test_da3.py's golden tolerances hold,
and the device equals the CPU within 1e-5 relative. The resize, the metric merge, Umeyama and RANSAC stay on the
host; per call the pixels go up once and the heads' maps and the pose come down."""
import gc
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2 import Lyra2Error  # noqa: E402
from lyra2.models.depth import DepthAnything3  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]
GOLD = np.load(os.path.join(DATA, "da3_tiny.npz"))
WEIGHTS = {"model." + k: v for k, v in np.load(os.path.join(DATA, "da3_tiny_weights.npz")).items()}
TINY = dict(metric_heads=3, cam_enc_heads=2, taps=(3, 5, 7, 9), metric_taps=(1, 2, 4, 5))


def rel(a, b, floor=1e-6):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b) / np.maximum(np.abs(b), floor)).max())


def absd(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.fixture(scope="module")
def dev():
    return DepthAnything3(WEIGHTS, device="cuda", **TINY)


@pytest.fixture(scope="module")
def cpu():
    return DepthAnything3(WEIGHTS, **TINY)


def test_golden_first_frame_on_device(dev):
    """case a (one view, no poses) with tests/test_da3.py's tolerances"""
    if EMULATED:
        lyra2.testing.emulated_cuda_reset()
    p = dev(GOLD["a_api_in_images"])
    if EMULATED:
        s = lyra2.testing.emulated_cuda_stats()
        log = lyra2.testing.emulated_cuda_transfers()
        print("DA3 case a transfers:", s["uploads"], "up", s["upload_bytes"], "B,", s["downloads"], "down",
              s["download_bytes"], "B")
        # the pixels once; no weights again. Still per call today: the host-built RoPE and UV-embedding tables
        # go up, and each head's maps come down per view (the merge runs on the host).
        ups = [name for d, _, name in log if d == "upload"]
        downs = [name for d, _, name in log if d == "download"]
        assert s["refused"] == 0
        assert ups[0] == "DA3 pixels" and ups.count("DA3 pixels") == 1
        assert set(ups) == {"DA3 pixels", "ViT RoPE local", "ViT RoPE global", "DA3 UV embedding"}
        assert sorted(set(downs)) == ["DA3 head logits", "DA3 pose encoding", "DA3 sky"]
        assert len(downs) == 5 and s["upload_bytes"] == 409808 and s["download_bytes"] == 141156
    assert rel(p["depth"], GOLD["a_pred_depth"]) < 3e-5
    assert rel(p["conf"], GOLD["a_pred_conf"]) < 2e-5
    assert (p["sky"] == GOLD["a_pred_sky"]).all()
    assert rel(p["intrinsics"], GOLD["a_pred_intrinsics"]) < 1e-5
    assert absd(p["extrinsics"], GOLD["a_pred_extrinsics"]) < 1e-5
    assert rel(p["scale_factor"], GOLD["a_pred_scale_factor"]) < 2e-5


def test_golden_window_with_poses_on_device(dev, cpu):
    """case b (4 views with poses: the camera encoder path) against the golden and the CPU"""
    pd = dev.depth_window(GOLD["b_history_frames"], GOLD["b_cam_w2c"], GOLD["b_cam_K"], 2, 4)["prediction"]
    pc = cpu.depth_window(GOLD["b_history_frames"], GOLD["b_cam_w2c"], GOLD["b_cam_K"], 2, 4)["prediction"]
    assert rel(pd["depth"], GOLD["b_pred_depth"]) < 3e-5
    assert rel(pd["conf"], GOLD["b_pred_conf"]) < 2e-5
    assert (pd["sky"] == GOLD["b_pred_sky"]).all()
    assert absd(pd["extrinsics"], GOLD["b_pred_extrinsics"]) < 1e-5
    assert rel(pd["scale_factor"], GOLD["b_pred_scale_factor"]) < 2e-5
    for k in ("depth", "conf", "extrinsics", "intrinsics"):
        assert rel(pd[k], pc[k], 1e-3) < 1e-5, k


def test_out_of_device_memory_is_a_lyra2_error_with_size_and_stage(monkeypatch):
    """A card too small for the weights fails the load, one too small for the pixels or the activations fails
    that call: Lyra2Error naming the stage and the bytes; the model stays usable."""
    if not EMULATED:
        pytest.skip("the memory limit is the emulated device's")
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "64K")
    with pytest.raises(Lyra2Error, match=r"Depth Anything 3 weights: cannot place \d+ bytes"):
        DepthAnything3(WEIGHTS, device="cuda", **TINY)
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    gc.collect()
    m = DepthAnything3(WEIGHTS, device="cuda", **TINY)
    live = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(live + 1024))
    with pytest.raises(Lyra2Error, match=r"Depth Anything 3: cannot allocate \d+ bytes on the device for the pixels"):
        m(GOLD["a_api_in_images"])
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(live + 256 * 1024))
    with pytest.raises(Lyra2Error, match=r"\d+ bytes"):
        m(GOLD["a_api_in_images"])
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "0")
    assert rel(m(GOLD["a_api_in_images"])["depth"], GOLD["a_pred_depth"]) < 3e-5
