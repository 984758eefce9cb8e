/* Inner kernels of the flash-style CPU attention (cpu_attention.c): scores against packed key panels, P·V
 * accumulation and the in-place exponential of a score row. One portable C set and, on x86-64, an AVX2+FMA
 * set and an AVX-512 set, selected at run time (the build has no -march flag, so the wheel runs on any x86-64). */
#ifndef LYRA_CPU_FLASH_H
#define LYRA_CPU_FLASH_H

#include <stdint.h>

/* Keys per packed panel: panel p holds keys [p·16, p·16 + 16) transposed, (D, 16) floats, zero-padded. */
#define CPU_FLASH_KP 16
/* Value columns per packed panel: a panel's rows are contiguous, so P·V streams 64-byte lines (value rows read
 * in place, H·Dv floats apart, hit the same L1 sets: 4 KB apart at dim 1024, and P·V ran 40 % slower than
 * Q·Kᵀ). */
#define CPU_FLASH_VP 16
/* Query rows per micro-kernel step; callers pad the query block to a multiple (padding rows are ignored). */
#define CPU_FLASH_MR 6

typedef struct {
    const char *name;
    /* S[i][j] = Q[i]·K[j] for rows i < nr (multiple of MR, Q row stride D) and keys j < nkp (multiple of KP)
     * read from consecutive panels at Kt; S row stride lds. */
    void (*scores)(const float *Q, int64_t nr, int64_t D, const float *Kt, int64_t nkp, float *S, int64_t lds);
    /* O[i][0..Dvp) += Σ_{j<nk} P[i][j]·V[j][0..Dvp) for rows i < nr (multiple of MR), V packed in column panels
     * (CPU_FLASH_VP columns each, Dvp a multiple): V[j][c] at V + (c / VP)·vps + j·VP + c % VP. */
    void (*pv)(const float *P, int64_t ldp, int64_t nr, int64_t nk, const float *V, int64_t vps, int64_t Dvp,
               float *O, int64_t ldo);
    /* max(m, s[0..n)) (n multiple of 16). */
    float (*row_max)(const float *s, int64_t n, float m);
    /* s[j] = e^(s[j] − m) for j < n (multiple of 16; -inf entries give 0); returns the sum. */
    float (*exp_sum)(float *s, int64_t n, float m);
} cpu_flash_kernels;

/* The fastest kernel set this CPU runs (AVX-512, else AVX2+FMA, else portable C), checked once; LYRA2_CPU_SIMD=0
 * in the environment forces the portable set, LYRA2_CPU_SIMD=avx2 the AVX2 set (tests/test_ops.py runs the
 * attention tests each way). */
const cpu_flash_kernels *cpu_flash_select(void);

#endif
