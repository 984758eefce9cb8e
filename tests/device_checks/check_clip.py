"""CLIPVision on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1 and by
benchmarks/device_check.sh on a GPU. f32 activations on the device for now (docs/PRECISION.md), so the f32 golden
tolerances of tests/test_clip.py hold (pixel input abs 1e-5, tokens abs 1e-4)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2.models.clip import CLIPVision  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(os.path.join(DATA, "clip_tiny.npz")))


@pytest.fixture(scope="module")
def weights():
    return dict(np.load(os.path.join(DATA, "clip_tiny_weights.npz")))


def test_golden_on_device(weights, golden):
    clip = CLIPVision(weights, device="cuda", num_heads=4)
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
