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
