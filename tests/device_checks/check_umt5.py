"""UMT5Encoder on the device (device="cuda"): run by tests/test_emulated_device.py under LYRA2_EMULATED_CUDA=1 and by
benchmarks/device_check.sh on a GPU. By default the device follows upstream's bf16 policy (docs/PRECISION.md) and
meets the f32 golden within the bf16 bound of bf16_tolerance.py; precision="f32" (the parity mode) meets the f32
golden tolerance of tests/test_umt5.py (abs 1e-5 on the real rows)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyra2  # noqa: E402
from bf16_tolerance import bf16_close, input_ulp_sensitivity  # noqa: E402
from conftest import DATA  # noqa: E402
from lyra2.models.umt5 import UMT5Encoder  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda"], reason="no CUDA device (or emulated device) here")]
EMULATED = lyra2.backends()["emulated"]
# bf16 bound (bf16_tolerance.py): 2·sqrt(R)·s1 with R = 35 ops per call and s1 = 1.5e-3 (one bf16 rounding of the
# token embedding table) measured on the tiny encoder
BF16_TOL = 1.8e-2


@pytest.fixture(scope="module")
def golden():
    with np.load(f"{DATA}/umt5_tiny.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def weights():
    with np.load(f"{DATA}/umt5_tiny_weights.npz") as z:
        return {k: z[k] for k in z.files}


def test_golden_on_device_in_bf16(weights, golden):
    enc = UMT5Encoder(weights, device="cuda")
    assert enc.precision == "bf16"
    out = enc(golden["ids"], golden["mask"])
    real = golden["mask"].astype(bool)
    bf16_close(out[real], golden["embedding"][real], BF16_TOL)
    assert not out[~real].any()
    bf16_close(enc.encode_raw(golden["ids"], golden["mask"]), golden["encoder_out_raw"], BF16_TOL)


@pytest.mark.skipif(not EMULATED, reason="op counts and pool bytes of the emulated device")
def test_bf16_bound_and_bf16_weights(weights, golden):
    """BF16_TOL is no looser than 2·sqrt(R)·s1, both measured here; the matrices are stored in bf16 on the device
    (the norm and position-bias vectors stay f32)."""
    real = golden["mask"].astype(bool)
    s1 = input_ulp_sensitivity(lambda table: UMT5Encoder({**weights, "token_embedding.weight": table})(
        golden["ids"], golden["mask"])[real], weights["token_embedding.weight"])
    base = lyra2.testing.emulated_cuda_stats()["live_bytes"]
    enc = UMT5Encoder(weights, device="cuda")
    placed = lyra2.testing.emulated_cuda_stats()["live_bytes"] - base
    lyra2.testing.emulated_cuda_reset()
    enc(golden["ids"], golden["mask"])
    assert BF16_TOL <= 1.1 * 2 * np.sqrt(lyra2.testing.emulated_cuda_stats()["ops"]) * s1
    align = lambda b: (b + 63) // 64 * 64  # noqa: E731
    want = sum(align(v.size * (2 if v.ndim == 2 and "pos_embedding" not in k else 4)) for k, v in weights.items())
    assert placed == (want + 255) // 256 * 256


def test_golden_on_device(weights, golden):
    enc = UMT5Encoder(weights, device="cuda", precision="f32")
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


def test_bf16_arena_is_measured_and_the_cost_model_bounds_it(weights):
    """The device encode sizes its arena by measuring itself with bf16 activations; the no-weights cost model of
    lyra2.memory_plan (umt5_plan with precision "bf16") bounds it, and is below the f32 one."""
    enc = UMT5Encoder(weights, device="cuda")
    cfg = enc.config
    B, L = 2, 24
    enc.encode_raw(np.random.default_rng(0).integers(0, cfg["vocab"], (B, L)), np.ones((B, L), np.uint8))
    cap, peak = lyra2._core.umt5_arena(enc._net)
    assert 0 < peak <= cap < peak + 64
    bound = lyra2._core.umt5_plan(cfg, B, L, "bf16")["arena_bytes"]
    assert peak <= bound < lyra2._core.umt5_plan(cfg, B, L)["arena_bytes"]
