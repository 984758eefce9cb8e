"""UMT5Encoder on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1 and by
benchmarks/device_check.sh on a GPU. The device path keeps f32 activations for umT5 today (docs/PRECISION.md), so
it meets the f32 golden tolerance of tests/test_umt5.py (abs 1e-5 on the real rows)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2.models.umt5 import UMT5Encoder  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]


@pytest.fixture(scope="module")
def golden():
    with np.load(f"{DATA}/umt5_tiny.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def weights():
    with np.load(f"{DATA}/umt5_tiny_weights.npz") as z:
        return {k: z[k] for k in z.files}


def test_golden_on_device(weights, golden):
    enc = UMT5Encoder(weights, device="cuda")
    out = enc(golden["ids"], golden["mask"])
    for b, n in enumerate(golden["mask"].sum(1)):
        assert np.abs(out[b, :n] - golden["embedding"][b, :n]).max() <= 1e-5
        assert not out[b, n:].any()  # padded rows exactly 0 (filled on the device)
    raw = enc.encode_raw(golden["ids"], golden["mask"])
    assert np.abs(raw - golden["encoder_out_raw"]).max() <= 1e-5
    with pytest.raises(lyra2.Lyra2Error, match="not an f32 host tensor"):
        enc.position_bias(0, 8, 8)  # a host-side helper: the table lives on the device now


@pytest.mark.skipif(not EMULATED, reason="transfer log of the emulated device")
def test_transfers(weights, golden):
    """Weights up once; a call uploads ids, mask and the bucket table and downloads the embedding only."""
    lyra2.testing.emulated_cuda_reset()
    enc = UMT5Encoder(weights, device="cuda")
    assert [(d, n) for d, _, n in lyra2.testing.emulated_cuda_transfers()] == [("upload", "umT5 encoder weights")]
    lyra2.testing.emulated_cuda_reset()
    enc(golden["ids"], golden["mask"])
    log = lyra2.testing.emulated_cuda_transfers()
    assert sorted((d, n) for d, _, n in log) == [("download", "umT5 output"), ("upload", "umT5 buckets"),
                                                ("upload", "umT5 ids"), ("upload", "umT5 mask")]
    assert lyra2.testing.emulated_cuda_stats()["refused"] == 0
