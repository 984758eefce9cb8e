/* Convolution micro-kernels (contract in cpu_convgemm.h). */
#include "nn/cpu/cpu_convgemm.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { MR = CPU_CONV_MR, NR = CPU_CONV_NR };

/* Writes the tile acc (MR × NR) into the valid mr × nr part of c. */
static void store_tile(const float *acc, float *c, int64_t ldc, int accumulate, const float *bias, int mr, int nr) {
    for (int r = 0; r < mr; r++) {
        float add = accumulate || !bias ? 0.0f : bias[r];
        float *cr = c + r * ldc;
        for (int j = 0; j < nr; j++) cr[j] = (accumulate ? cr[j] : add) + acc[r * NR + j];
    }
}

static void kernel_c(int64_t kc, const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                     int accumulate, const float *bias, int mr, int nr) {
    float acc[MR * NR] = {0};
    for (int r = 0; r < mr; r++)
        for (int64_t k = 0; k < kc; k++) {
            float w = a[r * lda + k];
            const float *bk = b + k * ldb;
            for (int j = 0; j < NR; j++) acc[r * NR + j] += w * bk[j];
        }
    store_tile(acc, c, ldc, accumulate, bias, mr, nr);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)

AVX2 static void kernel_avx2(int64_t kc, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                             int64_t ldc, int accumulate, const float *bias, int mr, int nr) {
    /* rows past mr repeat row 0: valid memory, results dropped */
#define ROWPTR(r) const float *a##r = a + (r < mr ? r : 0) * lda;
    ROWS6(ROWPTR)
#undef ROWPTR
#define DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
    ROWS6(DECL)
#undef DECL
    /* each k: two B vectors, six broadcast weights, twelve FMAs */
#define STEP(r)                                                                                                   \
    {                                                                                                             \
        __m256 ar = _mm256_broadcast_ss(a##r + k);                                                                 \
        c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0);                                                               \
        c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);                                                               \
    }
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++, b += ldb) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        ROWS6(STEP)
    }
#undef STEP
    if (mr == MR && nr == NR) {
#define STORE(r)                                                                                                  \
    {                                                                                                             \
        float *cr = c + r * ldc;                                                                                  \
        __m256 o0 = accumulate ? _mm256_loadu_ps(cr) : _mm256_set1_ps(bias ? bias[r] : 0.0f);                     \
        __m256 o1 = accumulate ? _mm256_loadu_ps(cr + 8) : o0;                                                    \
        _mm256_storeu_ps(cr, _mm256_add_ps(o0, c##r##0));                                                         \
        _mm256_storeu_ps(cr + 8, _mm256_add_ps(o1, c##r##1));                                                     \
    }
        ROWS6(STORE)
#undef STORE
        return;
    }
    float acc[MR * NR];
#define SPILL(r) _mm256_storeu_ps(acc + r * NR, c##r##0); _mm256_storeu_ps(acc + r * NR + 8, c##r##1);
    ROWS6(SPILL)
#undef SPILL
    store_tile(acc, c, ldc, accumulate, bias, mr, nr);
}

/* The same tile with one 16-lane register per row: the same products summed in the same order as the AVX2
 * kernel (bit-identical results), half the instructions. */
#define AVX512 __attribute__((target("avx512f,fma")))

AVX512 static void kernel_avx512(int64_t kc, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                                 int64_t ldc, int accumulate, const float *bias, int mr, int nr) {
#define ROWPTR(r) const float *a##r = a + (r < mr ? r : 0) * lda;
    ROWS6(ROWPTR)
#undef ROWPTR
#define DECL(r) __m512 c##r = _mm512_setzero_ps();
    ROWS6(DECL)
#undef DECL
#define STEP(r) c##r = _mm512_fmadd_ps(_mm512_set1_ps(a##r[k]), b0, c##r);
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++, b += ldb) {
        __m512 b0 = _mm512_loadu_ps(b);
        ROWS6(STEP)
    }
#undef STEP
    if (mr == MR && nr == NR) {
#define STORE(r)                                                                                                  \
    {                                                                                                             \
        float *cr = c + r * ldc;                                                                                  \
        __m512 o = accumulate ? _mm512_loadu_ps(cr) : _mm512_set1_ps(bias ? bias[r] : 0.0f);                      \
        _mm512_storeu_ps(cr, _mm512_add_ps(o, c##r));                                                             \
    }
        ROWS6(STORE)
#undef STORE
        return;
    }
    float acc[MR * NR];
#define SPILL(r) _mm512_storeu_ps(acc + r * NR, c##r);
    ROWS6(SPILL)
#undef SPILL
    store_tile(acc, c, ldc, accumulate, bias, mr, nr);
}

cpu_conv_kernel cpu_conv_kernel_select(void) {
    static cpu_conv_kernel chosen;
    if (!chosen) { /* a benign race: every thread computes the same answer */
        /* LYRA2_CPU_SIMD: "0" the portable kernel, "avx2" no AVX-512 (tests compare them) */
        const char *env = getenv("LYRA2_CPU_SIMD");
        __builtin_cpu_init();
        int simd = !(env && strcmp(env, "0") == 0), wide = !(env && strcmp(env, "avx2") == 0);
        int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        chosen = simd && has2 && wide && __builtin_cpu_supports("avx512f") ? kernel_avx512
                 : simd && has2                                           ? kernel_avx2
                                                                          : kernel_c;
    }
    return chosen;
}
#else
cpu_conv_kernel cpu_conv_kernel_select(void) { return kernel_c; }
#endif
