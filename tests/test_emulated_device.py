"""The emulated CUDA device (LYRA2_EMULATED_CUDA=1, csrc/nn/emu): a backend that runs the CPU kernels behind its
own memory pool and behaves like the GPU (refuses tensors outside the pool, copies and counts transfers, poisons
fresh and released memory with NaN, stores bf16/f16 activations as such).

The variable is read when a backend is created, so each check runs in a fresh interpreter with it set."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_emulated(code, timeout=600):
    """Runs `code` in a fresh interpreter from the checkout with the emulated device on; returns its stdout."""
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS=os.environ.get("LYRA2_NUM_THREADS", "1"))
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r})\n" + code], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"emulated run failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def test_backends_report_the_emulated_device():
    out = json.loads(run_emulated("import json, lyra2; print(json.dumps(lyra2.backends()))"))
    assert out["cuda"] and out["emulated"]
    assert len(out["devices"]) == 1 and "emulated" in out["devices"][0]["name"]


def test_backends_without_the_variable_are_unchanged():
    import lyra2

    if os.environ.get("LYRA2_EMULATED_CUDA", "0") not in ("", "0"):
        pytest.skip("this interpreter has the emulated device on")
    assert lyra2.backends()["emulated"] is False


def test_refusals_and_poison():
    out = json.loads(run_emulated("import json; from lyra2 import _testops\n"
                                  "print(json.dumps(_testops.emulated_device_probe()))"))
    # a host array labelled as device memory, and a released block: refused, naming the op, argument and tensor
    assert out["host_error"].startswith("cuda-emulated: add: b ('host_array') is not in device memory")
    assert out["freed_error"].startswith("cuda-emulated: scale: x ('released_block') is not in device memory")
    # fresh blocks (cudaMalloc garbage) and released ones read as NaN
    assert out["fresh_is_nan"] and out["freed_is_nan"]


def test_transfers_are_copies_and_counted():
    out = json.loads(run_emulated(
        "import json, numpy as np, lyra2\nfrom lyra2 import _testops\n"
        "lyra2.testing.emulated_cuda_reset()\n"
        "x = np.arange(12, dtype=np.float32).reshape(3, 4); w = np.eye(4, dtype=np.float32)\n"
        "y = _testops.linear(x, w, backend='cuda')\n"
        "s = lyra2.testing.emulated_cuda_stats()\n"
        "print(json.dumps({'ok': bool((y == x).all()), 'stats': s, 'log': lyra2.testing.emulated_cuda_transfers()}))"))
    assert out["ok"]
    s = out["stats"]
    # the op harness stages x and w up and y down: 2 uploads of 48 + 64 bytes, 1 download of 48 bytes
    assert (s["uploads"], s["upload_bytes"], s["downloads"], s["download_bytes"]) == (2, 112, 1, 48)
    assert [d for d, _, _ in out["log"]] == ["upload", "upload", "download"]
    assert s["ops"] >= 1 and s["refused"] == 0 and s["live_bytes"] == 0 and s["peak_bytes"] >= 160


def test_op_harness_on_the_emulated_device():
    """Every op of tests/test_ops.py's device half (f32 parity with the CPU) and of tests/test_cuda_ops.py (bf16
    activations stored as bf16 in the pool) on the emulated device, with the tolerances those files state."""
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_ops.py", "-k", "cuda", "tests/test_cuda_ops.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def run_device_checks(*files):
    env = dict(os.environ, LYRA2_EMULATED_CUDA="1", LYRA2_NUM_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout and "skipped" not in r.stdout


def test_gaussian_splats_on_the_emulated_device():
    """tests/device_checks/check_gs.py: Gaussians.render(device="cuda") and lyra2.reconstruct(device="cuda") (DA3 and
    the GS head on the device) equal the CPU; the scene goes up once per render call."""
    run_device_checks("tests/device_checks/check_gs.py")


def test_networks_on_the_emulated_device():
    """tests/device_checks/check_{dit,umt5,clip,vae,da3,moge}.py in one interpreter (start-up is most of their cost): LyraDiT
    (f32 golden, upstream's bf16 policy, LoRAs, transfers, device OOM), UMT5Encoder and CLIPVision (goldens,
    transfers), WanVAE and its streams (goldens, AR stream, device == CPU, transfers, device OOM) and
    DepthAnything3 and MoGe (goldens, device == CPU, transfers, device OOM) with device="cuda"."""
    run_device_checks("tests/device_checks/check_dit.py", "tests/device_checks/check_umt5.py",
                      "tests/device_checks/check_clip.py", "tests/device_checks/check_vae.py",
                      "tests/device_checks/check_da3.py", "tests/device_checks/check_moge.py")
