"""Pick OpenBLAS's CPU kernels before the extension (which links OpenBLAS) is loaded.

Debian's OpenBLAS 0.3.21 does not recognise recent Xeons (Sapphire Rapids in VMs reports "Intel Xeon
Processor") and falls back to its "Prescott" SSE3 kernels: a 1024³ SGEMM then runs at ~32 GFLOP/s instead of
~120 GFLOP/s with the AVX-512 "SkylakeX" kernels on the same 2 cores (benchmarks/bench_gemm.py). OpenBLAS reads
OPENBLAS_CORETYPE once, when the library is loaded, so this must run before `lyra2._core` is imported:
lyra2/__init__.py imports this module first. A user's own OPENBLAS_CORETYPE is never overridden.
"""
import os


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_coretype(flags):
    """The OpenBLAS core name for a set of /proc/cpuinfo flags, or None to keep OpenBLAS's own choice."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


if "OPENBLAS_CORETYPE" not in os.environ:
    _core = choose_coretype(_cpu_flags())
    if _core:
        os.environ["OPENBLAS_CORETYPE"] = _core
