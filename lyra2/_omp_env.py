"""Make idle OpenMP threads sleep instead of spinning, before the extension (which links libgomp) is loaded.

The CPU backend runs every op as its own OpenMP region. With GCC's default wait policy a thread that finishes
its share spins for ~300,000 iterations before it sleeps, so between regions (and while the calling thread runs
Python) the other threads keep their cores busy. On a machine shared with other processes that spinning takes
the cores the working threads need: the Wan VAE (encode + decode, 5 frames at 64x112, real channels, 2 threads)
measured 8.8-17.7 s wall with the default or a 100,000 spin count against 3.6-11.1 s with no spinning, at the
same load (benchmarks/RESULTS.md, 2026-12-06); unloaded, no spinning was as fast as the default. libgomp reads
the policy once, when it is loaded, so lyra2/__init__.py imports this module before `lyra2._core`. A user's own
OMP_WAIT_POLICY or GOMP_SPINCOUNT is never overridden, and the variable is removed again once `lyra2._core` is
loaded (restore()), so other OpenMP runtimes loaded later in the process (torch bundles its own libgomp) and
child processes keep their defaults.
"""
import os

_set_here = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
if _set_here:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def restore():
    """Remove the variable this module set (libgomp has read it by now)."""
    if _set_here and os.environ.get("OMP_WAIT_POLICY") == "PASSIVE":
        del os.environ["OMP_WAIT_POLICY"]
