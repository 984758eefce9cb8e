"""The extension imports and reports its backends honestly."""
import lyra2


def test_backends_shape():
    b = lyra2.backends()
    assert b["cpu"] is True
    assert isinstance(b["cuda"], bool)
    assert isinstance(b["devices"], list)
    if not b["cuda_compiled"]:
        assert b["cuda"] is False and b["devices"] == []
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
