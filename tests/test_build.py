"""The extension imports and reports its backends honestly."""
import numpy as np

import lyra2


def test_backends_shape():
    b = lyra2.backends()
    assert b["cpu"] is True
    assert isinstance(b["cuda"], bool)
    assert isinstance(b["devices"], list)
    if not b["cuda_compiled"]:
        assert b["cuda"] is False and b["devices"] == []
    assert isinstance(b["cuda_emulation_build"], bool)
    if b["cuda_emulation_build"]:  # the emulation build: exactly one device, named as emulated
        assert b["cuda"] and len(b["devices"]) == 1 and "emulation" in b["devices"][0]["name"]
    for d in b["devices"]:
        assert set(d) == {"index", "name", "memory_bytes"}


def test_error_class():
    assert issubclass(lyra2.Lyra2Error, RuntimeError)
    assert lyra2.Lyra2Error.__module__ == "lyra2"


def test_backends_reports_why_cuda_cannot_run():
    b = lyra2.backends()
    if b["cuda"]:
        assert b["cuda_error"] is None
    else:
        assert isinstance(b["cuda_error"], str) and b["cuda_error"]
    if not b["cuda_compiled"]:
        assert "no CUDA part" in b["cuda_error"]
        assert b["cuda_fallbacks"] == {}
    else:
        assert set(b["cuda_fallbacks"]) == {"gemm", "attention"}
        for v in b["cuda_fallbacks"].values():
            assert set(v) == {"count", "first"} and v["count"] >= 0


def test_required_cuda_run_fails_without_a_gpu(tmp_path):
    # a device run (`-m cuda` / LYRA2_REQUIRE_CUDA=1) on a machine without a usable GPU must stop with the reason,
    # not skip every test and pass
    import os
    import subprocess
    import sys

    import pytest

    b = lyra2.backends()
    if b["cuda"]:
        pytest.skip("a CUDA GPU is usable here: the required run would run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, LYRA2_REQUIRE_CUDA="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(root, "tests", "test_build.py"), "-k", "test_error_class"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0, r.stdout + r.stderr
    assert b["cuda_error"] in r.stdout + r.stderr


def test_test_code_not_shipped_in_core():
    # The op harness and the CUDA measurements live in the separate lyra2._testops (csrc/testing/).
    from lyra2 import _core, _testops
    assert not hasattr(_core, "_ops")
    shared = {n for n in dir(_testops) if not n.startswith("__")} & set(dir(_core))
    assert shared == set()
    assert {"linear", "attention", "sgemm_ref", "to_bf16"} <= set(dir(_testops))
    if lyra2.backends()["cuda_compiled"]:
        assert hasattr(_testops, "cuda_bench_linear")


def test_testops_raises_lyra2_error():
    from lyra2 import _testops
    x = np.zeros((2, 3), np.float32)
    try:
        _testops.copy(x, backend="cuda")
    except lyra2.Lyra2Error:
        pass  # no CUDA in this build or no GPU: the one Lyra2Error class, shared with _core
    except Exception as e:  # pragma: no cover
        raise AssertionError(f"expected lyra2.Lyra2Error, got {e!r}")
    else:
        assert lyra2.backends()["cuda"]
