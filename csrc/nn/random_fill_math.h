/* The per-element arithmetic of the random weights (nn/ops.h lyra_op_fill_random), shared word for word by the CPU
 * reference (nn/cpu/cpu_fill.c) and the CUDA kernel (nn/cuda/cuda_fill.cu). A counter-based generator: element i's
 * value is a function of (key, i) alone, so any thread computes any element and the backends agree bit for bit —
 * the hash is 64-bit integer arithmetic, the sum of the four 16-bit quarters an exact integer (|s| <= 131070 < 2^24,
 * exact in f32), and the scaling one f32 product and one f32 sum: RFILL_MUL / RFILL_ADD are plain operators in C (no
 * FMA contraction on the x86-64 baseline) and __fmul_rn / __fadd_rn in the CUDA file. The bf16 rounding is integer
 * arithmetic on the bits (nearest even; the values are finite).
 *
 * RFILL_FN is `static inline` in C; the CUDA file defines it (`static __device__ inline`, with RFILL_MUL and
 * RFILL_ADD) first. */
#ifndef LYRA_NN_RANDOM_FILL_MATH_H
#define LYRA_NN_RANDOM_FILL_MATH_H

#include <stdint.h>

#ifndef RFILL_FN
#define RFILL_FN static inline
#define RFILL_MUL(a, b) ((a) * (b))
#define RFILL_ADD(a, b) ((a) + (b))
#endif

/* splitmix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer. */
RFILL_FN uint64_t lyra_rfill_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* f32 bits of v rounded to bf16, nearest even (v finite). */
RFILL_FN float lyra_rfill_bf16(float v) {
    union {
        float f;
        uint32_t u;
    } b;
    b.f = v;
    b.u = (b.u + 0x7fffu + ((b.u >> 16) & 1u)) & 0xffff0000u;
    return b.f;
}

/* Element i of the tensor with key, scale, mean (lyra_random_fill), before the storage dtype. */
RFILL_FN float lyra_rfill_value(uint64_t key, uint64_t i, float scale, float mean, int bf16_values) {
    const uint64_t r = lyra_rfill_mix(key + (i + 1) * 0x9e3779b97f4a7c15ULL);
    const int32_t s = (int32_t)(r & 0xffffu) + (int32_t)((r >> 16) & 0xffffu) + (int32_t)((r >> 32) & 0xffffu) +
                      (int32_t)(r >> 48) - 131070;
    const float v = RFILL_ADD(RFILL_MUL((float)s, scale), mean);
    return bf16_values ? lyra_rfill_bf16(v) : v;
}

#endif
