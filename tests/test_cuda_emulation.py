"""Checks that only the CUDA emulation build (LYRA2_CUDA_EMU=1, see README "Developer notes") can run.

The op harness itself (test_cuda_ops.py and the "cuda" half of test_ops.py, `pytest -m cuda`) runs unchanged on
the emulation build, with the GPU's tolerances; this file adds what the emulation makes reachable beyond it: the
same GEMM, linear, matmul and conv cases once more with the emulated cuBLASLt finding no algorithm
(LYRA2_EMU_CUBLASLT=0), so the backend's own fallback GEMM kernel computes every product. A subprocess, because
the backend caches its GEMM plans per process."""
import os
import subprocess
import sys

import pytest

import lyra2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not lyra2.backends()["cuda_emulation_build"],
                                 reason="needs the CUDA emulation build (LYRA2_CUDA_EMU=1)")]


def test_gemms_through_the_fallback_kernel():
    env = dict(os.environ, LYRA2_EMU_CUBLASLT="0")
    sel = "linear or matmul or conv or fp8 or attention_long"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-k", sel,
                        "tests/test_cuda_ops.py", "tests/test_ops.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, f"GEMM cases with the fallback kernel failed:\n{tail}"
    assert " passed" in tail and " failed" not in tail, tail
