"""CUDA kernel measurements for the Lyra-2 DiT at full size (issue 9): achieved TFLOP/s and % of the H100's dense
bf16 peak (989 TFLOP/s) for the DiT GEMMs at M = 38,246 tokens, self-attention (L = 38,246, 40 heads × 128),
cross-attention (L × 769 keys) and one full-width DiT block, with the implied time for 40 blocks × 4 DMD steps; and
(issue 14) the forward warp that builds a chunk's inputs: one 480x832 source into 80 targets (op warp_forward).

Each number is the median of `--repeat` runs, timed with CUDA events on the backend's stream, after a warm-up,
with the L2 cache flushed (a 256 MB write) before every timed run (csrc/testing/cuda_bench.cu). Data are random bf16.
Prints a table (and writes it as JSON with --json PATH). Not a test.

The warp rows are host-timed between two stream synchronizations per run (launches included; data already on the
device, no L2 flush: its canvases alone are ~200 MB), median of `--repeat`.

    python benchmarks/kernels.py [--tokens 38246] [--repeat 5] [--quick] [--warp-only] [--warp-cpu] [--json out.json]
"""
import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's build

import lyra2  # noqa: E402
from lyra2 import _testops  # noqa: E402

PEAK_BF16 = 989.0  # TFLOP/s, H100 SXM dense bf16 (datasheet)
PEAK_FP8 = 1979.0  # TFLOP/s, dense fp8 (datasheet)
DIM, HEADS, HEAD_DIM, FFN = 5120, 40, 128, 13824
TEXT_TOKENS, IMAGE_TOKENS = 512, 257  # 769 context keys in total


def row(rows, name, flop, ms, peak=PEAK_BF16, note=""):
    tflops = flop / (ms * 1e-3) / 1e12 if ms > 0 else 0.0
    rows.append({"name": name, "ms": ms, "tflops": tflops, "pct_peak": 100.0 * tflops / peak, "note": note})
    print(f"{name:<44} {ms:10.3f} ms {tflops:9.1f} TFLOP/s {100.0 * tflops / peak:6.1f} % {note}", flush=True)


def warp_scene(C, H=480, W=832, N=80, seed=0):
    """A zoom chunk's warp: a random image, a tilted plane with a near box (a discontinuity), the source camera at
    the origin and 80 targets moving forward and turning slightly (upstream's zoom trajectory has that shape)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (C, H, W)).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    depth = (3.0 + 0.002 * xx + 0.003 * yy).astype(np.float32)
    depth[H // 3:H // 2, W // 3:W // 2] = 1.5
    f = 0.9 * W
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], np.float32)
    tgt = np.stack([np.eye(4, dtype=np.float32)] * N)
    for t in range(N):
        a = 0.002 * t
        tgt[t, :3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
        tgt[t, 2, 3] = -0.01 * t  # forward
    return image, depth, np.eye(4, dtype=np.float32), K, tgt, np.stack([K] * N)


def warp_rows(rows, repeat, cpu):
    """op warp_forward at 480x832 into 80 targets: RGB (image + mask) and RGB with the rendered depth."""
    for C, depth_out, name in ((3, False, "C=3"), (3, True, "C=3 + depth")):
        args = warp_scene(C)
        for backend in ("cuda", "cpu") if cpu else ("cuda",):
            ms = float(_testops.warp_forward(*args, with_depth=depth_out, bench_repeat=repeat if backend == "cuda"
                                             else 1, backend=backend)[3][0])
            note = f"{80 * 480 * 832 / (ms * 1e-3) / 1e9:.2f} G point-targets/s"
            label = f"warp_forward 480x832 -> 80 targets {name} ({backend})"
            rows.append({"name": label, "ms": ms, "tflops": 0.0, "pct_peak": 0.0, "note": note})
            print(f"{label:<44} {ms:10.3f} ms {note}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=38246, help="DiT tokens per forward (M of the GEMMs, L)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip the fp32/FP8 GEMMs and the tile-config sweep")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--warp-only", action="store_true", help="only the forward-warp rows")
    ap.add_argument("--warp-cpu", action="store_true", help="also time the warp on the CPU backend (one run)")
    a = ap.parse_args()
    info = lyra2.backends()
    if not info["cuda"]:
        sys.exit(f"kernels.py: no CUDA backend ({info})")
    dev = info["devices"][0]
    print(f"device: {dev['name']} ({dev['memory_bytes'] / 2**30:.1f} GiB), {time.strftime('%Y-%m-%d %H:%M')}, "
          f"tokens {a.tokens}, repeat {a.repeat}; % of peak = of {PEAK_BF16:.0f} TFLOP/s dense bf16", flush=True)
    M, ops, rows = a.tokens, _testops, []
    print(f"{'kernel':<44} {'median':>13} {'achieved':>17} {'peak':>8}")
    if a.warp_only:
        warp_rows(rows, a.repeat, a.warp_cpu)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"device": dev, "repeat": a.repeat, "rows": rows}, f, indent=1)
        return

    gemms = [("QKV", DIM, 3 * DIM), ("O", DIM, DIM), ("FFN up", DIM, FFN), ("FFN down", FFN, DIM)]
    for name, K, N in gemms:
        flop = 2.0 * M * N * K
        row(rows, f"GEMM {name} bf16 {M}x{K}->{N}", flop, ops.cuda_bench_linear(M, N, K, mode=0, repeat=a.repeat))
    row(rows, f"GEMM FFN up + bias + GELU epilogue", 2.0 * M * FFN * DIM,
        ops.cuda_bench_linear(M, FFN, DIM, mode=1, repeat=a.repeat))
    if not a.quick:
        for name, K, N in gemms:
            flop = 2.0 * M * N * K
            row(rows, f"GEMM {name} fp8 per-tensor (incl. x quant)", flop,
                ops.cuda_bench_linear(M, N, K, mode=2, repeat=a.repeat), PEAK_FP8, "% of fp8 peak")
        row(rows, "GEMM FFN up fp8 per-channel (incl. rescale)", 2.0 * M * FFN * DIM,
            ops.cuda_bench_linear(M, FFN, DIM, mode=3, repeat=a.repeat), PEAK_FP8, "% of fp8 peak")
        for name, K, N in gemms:  # the DiT's dit_dtype="fp8" Linear (per-token codes on the device + scale pass)
            row(rows, f"GEMM {name} fp8 per-token x per-channel + bias (DiT fp8)", 2.0 * M * N * K,
                ops.cuda_bench_linear(M, N, K, mode=5, repeat=a.repeat), PEAK_FP8, "% of fp8 peak")
        row(rows, "GEMM O fp32 (exact, parity path)", 2.0 * M * DIM * DIM,
            ops.cuda_bench_linear(M, DIM, DIM, mode=4, repeat=max(1, a.repeat // 2)), 67.0, "% of 67 TF fp32")

    attn_flop = lambda lq, lk: 4.0 * lq * lk * HEADS * HEAD_DIM  # QK^T and PV, 2 FLOP per MAC
    # the fused kernel's tile shape per head dim is a compile-time table (FA_TILES in
    # csrc/nn/cuda/cuda_attention_flash.cu; 2x32 at head dim 128): comparing shapes means editing it and rebuilding
    row(rows, f"self-attention L={M} 40x128", attn_flop(M, M),
        ops.cuda_bench_attention(M, M, HEADS, HEAD_DIM, repeat=max(1, a.repeat // 2)))
    ctx = TEXT_TOKENS + IMAGE_TOKENS
    row(rows, f"cross-attention L={M} x {ctx} keys", attn_flop(M, ctx),
        ops.cuda_bench_attention(M, ctx, HEADS, HEAD_DIM, repeat=a.repeat))

    t = ops.cuda_bench_dit_block(M, HEADS, HEAD_DIM, FFN, TEXT_TOKENS, IMAGE_TOKENS, repeat=max(1, a.repeat // 2))
    D = DIM
    block_flop = (2.0 * M * D * D * 4 + attn_flop(M, M)  # self q, k, v, o + attention
                  + 2.0 * M * D * D * 2 + 2.0 * 2 * ctx * D * D + attn_flop(M, ctx)  # cross q, o, k/v + attention
                  + 2.0 * 2 * M * D * FFN)  # FFN
    row(rows, "DiT block (bf16)", block_flop, t["total"])
    for k in ("self_proj", "self_attn", "cross_proj", "cross_attn", "ffn", "pointwise"):
        print(f"    {k:<40} {t[k]:10.3f} ms  ({100.0 * t[k] / max(sum(t[x] for x in t if x != 'total'), 1e-9):5.1f} %"
              f" of the phase-timed run)")
    warp_rows(rows, a.repeat, a.warp_cpu)
    per_forward = 40 * t["total"]
    print(f"implied: 40 blocks = {per_forward / 1e3:.2f} s per DiT forward; x 4 DMD steps = "
          f"{4 * per_forward / 1e3:.2f} s (blocks only: no embeddings, head, VAE or text encoders)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": dev, "tokens": M, "repeat": a.repeat, "rows": rows, "block_phases_ms": t,
                       "implied_s_40_blocks_x4": 4 * per_forward / 1e3}, f, indent=1)


if __name__ == "__main__":
    main()
