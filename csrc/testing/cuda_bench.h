/* CUDA measurements behind benchmarks/kernels.py, exposed by the test-only extension lyra2._testops
 * (py_ops.c). Not part of lyra2._core. Compiled only when LYRA2_WITH_CUDA is defined. */
#ifndef LYRA_CUDA_BENCH_H
#define LYRA_CUDA_BENCH_H

#include "lyra2.h"
#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Each runs on random bf16 device data, flushes the L2 cache before every timed repeat, times with CUDA events
 * and returns the median milliseconds over `repeat` runs (after one untimed warm-up). */
/* y (M, N) = x (M, K) · wᵀ; mode 0 bf16, 1 bf16 + bias + GELU epilogue, 2 fp8 per-tensor, 3 fp8 per-channel,
 * 4 f32 (exact fp32), 5 fp8 per-token x per-channel + bias (the DiT's fp8 Linear: lyra_op_quantize_fp8_rows +
 * lyra_op_linear_fp8). */
lyra_status lyra_cuda_bench_linear(lyra_backend *be, int64_t M, int64_t N, int64_t K, int mode, int repeat,
                                   double *ms);
/* o = attention(q, k, v) with q (1, Lq, H, D), k/v (1, Lk, H, D), bf16. */
lyra_status lyra_cuda_bench_attention(lyra_backend *be, int64_t Lq, int64_t Lk, int64_t H, int64_t D, int repeat,
                                      double *ms);
/* One full-width DiT block (upstream WL:150-212, W:280-437 structure, random weights): L tokens of width D =
 * heads·head_dim, FFN width F, text/image context lengths Lt/Li. ms[0] total; ms[1..6] = self-attention projections,
 * self- attention, cross-attention projections, cross-attention, FFN, pointwise/norm ops (summed from a second,
 * phase-timed run). */
lyra_status lyra_cuda_bench_dit_block(lyra_backend *be, int64_t L, int64_t heads, int64_t head_dim, int64_t F,
                                      int64_t Lt, int64_t Li, int repeat, double ms[7]);

#ifdef __cplusplus
}
#endif
#endif
