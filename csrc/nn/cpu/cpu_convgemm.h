/* Micro-kernel of the CPU convolutions (cpu_conv.c): a 6 × 16 tile of C = A·B over kc steps, A the weights as
 * they are stored (6 rows, each read in k order and broadcast), B a tile of im2col columns (16 consecutive
 * pixels per k, two vector loads), the 12 accumulators in registers. Portable C, and AVX2+FMA and AVX-512
 * intrinsics on x86-64, chosen at run time (the build has no -march flag). */
#ifndef LYRA_CPU_CONVGEMM_H
#define LYRA_CPU_CONVGEMM_H

#include <stdint.h>

#define CPU_CONV_MR 6  /* output channels per tile */
#define CPU_CONV_NR 16 /* output pixels per tile */

/* c[r·ldc + j] (r < mr, j < nr) = Σ_{k<kc} a[r·lda + k]·b[k·ldb + j], plus c's old value when `accumulate`, else
 * plus bias[r] (bias may be NULL). mr ≤ 6 and nr ≤ 16 are the valid part of the tile: only rows r < mr of a are
 * read, while b always has 16 readable (zero padded) columns. */
typedef void (*cpu_conv_kernel)(int64_t kc, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                                int64_t ldc, int accumulate, const float *bias, int mr, int nr);

/* The fastest kernel this CPU runs (AVX-512, AVX2+FMA or portable C; checked once); LYRA2_CPU_SIMD=0 forces the
 * portable one, LYRA2_CPU_SIMD=avx2 the AVX2 one. */
cpu_conv_kernel cpu_conv_kernel_select(void);

#endif
