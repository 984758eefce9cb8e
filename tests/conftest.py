"""Test setup: import lyra2 from this checkout (an in-place build), and locate test data."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


# ---------------------------------------------------------------- CUDA tests
# Tests marked `cuda` need a usable CUDA device. Without one they are skipped, with the reason, in a normal run;
# under `pytest -m cuda` or LYRA2_REQUIRE_CUDA=1 (a device run) the session stops at once with that reason
# instead, so that a machine whose driver is too old or a build without its CUDA part cannot report a green
# run that tested nothing.

def cuda_required(config):
    """True for LYRA2_REQUIRE_CUDA=1, or a -m expression that selects `cuda` (not one that excludes it)."""
    if os.environ.get("LYRA2_REQUIRE_CUDA", "") not in ("", "0"):
        return True
    words = (config.getoption("markexpr", "") or "").replace("(", " ").replace(")", " ").split()
    return any(w == "cuda" and (i == 0 or words[i - 1] != "not") for i, w in enumerate(words))


def cuda_unavailable():
    """None when the CUDA backend can run; else why not (lyra2.backends()["cuda_error"])."""
    import lyra2

    b = lyra2.backends()
    return None if b["cuda"] else b["cuda_error"] or "no usable CUDA device"


def pytest_sessionstart(session):
    if cuda_required(session.config):
        why = cuda_unavailable()
        if why:
            import pytest

            pytest.exit(f"CUDA tests required (-m cuda or LYRA2_REQUIRE_CUDA=1) but the CUDA backend cannot run: "
                        f"{why}", returncode=1)


def pytest_collection_modifyitems(config, items):
    import pytest

    why = cuda_unavailable()
    if not why:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {why}")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    # a device run's log shows whether anything took the CUDA backend's slow reference kernels
    import lyra2

    b = lyra2.backends()
    if not b["cuda"] or b["emulated"]:  # the counters are the real CUDA backend's
        return
    for kind, v in b["cuda_fallbacks"].items():
        terminalreporter.write_line(f"[device] CUDA slow-path calls, {kind}: {v['count']}"
                                    + (f" (first: {v['first']})" if v["count"] else ""))


# ---------------------------------------------------------------- device="cuda" without a GPU
@pytest.fixture(params=["emulated", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request, monkeypatch):
    """The device string for a test of the device path: "cuda" twice, on the emulated device
    (LYRA2_EMULATED_CUDA=1, in a CPU build) and, marked `cuda`, on the real backend. A file with its own `device`
    fixture (test_e2e_tiny.py) overrides this one."""
    import lyra2

    if request.param == "emulated":
        if lyra2.backends()["cuda"] and not lyra2.backends()["emulated"]:
            pytest.skip("a CUDA build: the cuda-marked case covers the device")
        monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    return "cuda"
