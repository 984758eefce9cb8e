"""CPU GEMM throughput of the runtime's linear op (lyra2._testops.linear), f32 and bf16/f16 weights.

Reports GFLOP/s (2·M·N·K / time, best of N repeats) and, in the same run, NumPy's float32 matmul on the same
shapes as a ratio (both use the machine's BLAS when the build has OpenBLAS). Not a test.

    python benchmarks/bench_gemm.py [--m 1024 --n 1024 --k 1024 --repeat 5]
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's build
if "--no-coretype" not in sys.argv:  # what lyra2/__init__.py does first (see lyra2/_openblas_env.py)
    exec(open(os.path.join(ROOT, "lyra2", "_openblas_env.py")).read(), {"__name__": "_openblas_env"})
from lyra2 import _core, _testops  # noqa: E402


def best_time(fn, repeat):
    fn()  # warm-up (thread pool start, page faults)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-coretype", action="store_true", help="keep OpenBLAS's own CPU detection")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.m, a.k), dtype=np.float32)
    w = rng.standard_normal((a.n, a.k), dtype=np.float32)
    flop = 2.0 * a.m * a.n * a.k
    print(f"build: {_core.build_info()}  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}  "
          f"shape M={a.m} N={a.n} K={a.k}")
    t_np = best_time(lambda: x @ w.T, a.repeat)
    print(f"numpy f32 matmul      {t_np * 1e3:8.2f} ms  {flop / t_np / 1e9:7.1f} GFLOP/s")
    # bf16/f16 weights are passed as raw uint16 bits, converted once here (the linear converts tiles to f32)
    weights = {"f32": w, "bf16": _testops.to_bf16(w), "f16": _testops.to_f16(w)}
    for wd in ("f32", "bf16", "f16"):
        t = best_time(lambda: _testops.linear(x, weights[wd], None, wdtype=wd), a.repeat)
        print(f"lyra linear w={wd:<5}   {t * 1e3:8.2f} ms  {flop / t / 1e9:7.1f} GFLOP/s  "
              f"(numpy/lyra time ratio {t_np / t:.2f})")
    # the fallback kernel used by builds without OpenBLAS
    t = best_time(lambda: _testops.sgemm_ref(x, w, trans_b=True), max(1, a.repeat // 2))
    print(f"plain C fallback      {t * 1e3:8.2f} ms  {flop / t / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
