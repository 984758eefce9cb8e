"""CLIPVision on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1 and by
benchmarks/device_check.sh on a GPU. By default the device follows upstream's fp16-autocast policy (f16 weights and
residual stream, bf16 attention, docs/PRECISION.md) and meets the f32 golden within the bound of bf16_tolerance.py;
precision="f32" (the parity mode) meets the f32 golden tolerances of tests/test_clip.py (pixel input abs 1e-5,
tokens abs 1e-4)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from bf16_tolerance import bf16_close, input_ulp_sensitivity  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2.models.clip import CLIPVision  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]
# bound (bf16_tolerance.py, with the bf16 roundoff: the attention's q/k/v and output are bf16): 2·sqrt(R)·s1 with
# R = 39 ops and s1 = 9.0e-4 measured on the tiny tower (test_bound_and_f16_weights): 1.13e-2
TOL = 1.1e-2


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(os.path.join(DATA, "clip_tiny.npz")))


@pytest.fixture(scope="module")
def weights():
    return dict(np.load(os.path.join(DATA, "clip_tiny_weights.npz")))


def test_golden_on_device_in_f16(weights, golden):
    clip = CLIPVision(weights, device="cuda", num_heads=4)
    assert clip.precision == "f16"
    assert np.abs(clip.preprocess(golden["image"]) - golden["pixel_input"]).max() <= 1e-5  # f32, as upstream
    bf16_close(clip(golden["image"]), golden["clip_tokens"], TOL)


@pytest.mark.skipif(not EMULATED, reason="op counts and pool bytes of the emulated device")
def test_bound_and_f16_weights(weights, golden):
    """TOL is no looser than 2·sqrt(R)·s1, both measured here; every parameter is stored as f16 on the device."""
    cpu = CLIPVision(weights, num_heads=4)
    s1 = input_ulp_sensitivity(cpu, golden["image"])
    base = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    clip = CLIPVision(weights, device="cuda", num_heads=4)
    placed = lyra2.testing.emulated_cuda_stats()["live_bytes"] - base
    lyra2.testing.emulated_cuda_reset()
    clip(golden["image"])
    ops = lyra2.testing.emulated_cuda_stats()["ops"]
    print(f"CLIP: s1 {s1:.3g}, R {ops}, bound {2 * np.sqrt(ops) * s1:.3g}")
    assert TOL <= 1.1 * 2 * np.sqrt(ops) * s1
    last = f".transformer.{clip.config['layers'] - 1}."  # use_31_block: the last block is not loaded
    used = {k: v for k, v in weights.items() if k.startswith("visual.") and last not in k
            and not k.startswith(("visual.post_norm", "visual.head"))}
    want = sum((v.size * 2 + 63) // 64 * 64 for v in used.values())
    assert placed == (want + 255) // 256 * 256


def test_cost_model_bounds_the_f16_arena(weights, golden):
    clip = CLIPVision(weights, device="cuda", num_heads=4)
    clip(np.random.default_rng(0).uniform(-1, 1, (2, 3, 40, 52)).astype(np.float32))
    cap, peak = lyra2._core.clip_arena(clip._net)
    assert 0 < peak <= cap < peak + 64
    assert peak <= lyra2._core.clip_plan(clip.config, 2, "f16")["arena_bytes"]


def test_golden_on_device(weights, golden):
    clip = CLIPVision(weights, device="cuda", num_heads=4, precision="f32")
    assert np.abs(clip.preprocess(golden["image"]) - golden["pixel_input"]).max() <= 1e-5
    assert np.abs(clip(golden["image"]) - golden["clip_tokens"]).max() <= 1e-4


@pytest.mark.skipif(not EMULATED, reason="transfer log of the emulated device")
def test_transfers(weights, golden):
    """Weights up once; a call uploads the image and downloads the tokens only."""
    lyra2.testing.emulated_cuda_reset()
    clip = CLIPVision(weights, device="cuda", num_heads=4)
    assert [(d, n) for d, _, n in lyra2.testing.emulated_cuda_transfers()] == [("upload", "CLIP vision tower weights")]
    lyra2.testing.emulated_cuda_reset()
    clip(golden["image"])
    assert [(d, n) for d, _, n in lyra2.testing.emulated_cuda_transfers()] == [("upload", "CLIP image"),
                                                                              ("download", "CLIP output")]
    assert lyra2.testing.emulated_cuda_stats()["refused"] == 0
