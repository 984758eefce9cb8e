/* Flash-attention inner kernels (contracts in cpu_flash.h): portable C, and AVX2+FMA and AVX-512 intrinsics on
 * x86-64 (the AVX-512 set: 1.65× the AVX2 set's single-thread speed on the Zen 4 box, 170 vs 103 GFLOP/s at
 * 2,048 × 2,048 keys, 4 × 128; torch 2.13's SDPA 97).
 *
 * The AVX2 kernels keep their accumulators in registers: scores are 6 query rows × 16 keys (12 ymm), P·V is
 * 6 rows × 16 value columns (12 ymm); each loaded vector feeds 6 FMAs, so the 2 loads + 6 broadcasts per step
 * stay under the FMA time (with 4 rows the loads were the limit). */
#include "nn/cpu/cpu_flash.h"
#include "nn/cpu/cpu_vecmath.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { KP = CPU_FLASH_KP, MR = CPU_FLASH_MR, VP = CPU_FLASH_VP };

/* ---------------- portable C ---------------- */

static void scores_c(const float *Q, int64_t nr, int64_t D, const float *Kt, int64_t nkp, float *S, int64_t lds) {
    for (int64_t p = 0; p < nkp; p += KP) {
        const float *K = Kt + p * D;
        for (int64_t i = 0; i < nr; i++) {
            float acc[KP] = {0};
            for (int64_t d = 0; d < D; d++) {
                float q = Q[i * D + d];
                for (int j = 0; j < KP; j++) acc[j] += q * K[d * KP + j];
            }
            for (int j = 0; j < KP; j++) S[i * lds + p + j] = acc[j];
        }
    }
}

static void pv_c(const float *P, int64_t ldp, int64_t nr, int64_t nk, const float *V, int64_t vps, int64_t Dvp,
                 float *O, int64_t ldo) {
    for (int64_t c0 = 0; c0 < Dvp; c0 += VP) {
        const float *Vc = V + (c0 / VP) * vps;
        for (int64_t i = 0; i < nr; i++)
            for (int64_t j = 0; j < nk; j++) {
                float p = P[i * ldp + j];
                if (p == 0.0f) continue;
                for (int c = 0; c < VP; c++) O[i * ldo + c0 + c] += p * Vc[j * VP + c];
            }
    }
}

static float exp_sum_c(float *s, int64_t n, float m) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    return sum;
}

static float row_max_c(const float *s, int64_t n, float m) {
    for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
    return m;
}

static const cpu_flash_kernels portable = {"c", scores_c, pv_c, row_max_c, exp_sum_c};

/* ---------------- AVX2 + FMA ---------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/* One score step: rows i..i+5 against the 16 keys of panel K. */
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)

AVX2 static void scores_avx2(const float *Q, int64_t nr, int64_t D, const float *Kt, int64_t nkp, float *S,
                             int64_t lds) {
    for (int64_t p = 0; p < nkp; p += KP) {
        const float *K = Kt + p * D;
        for (int64_t i = 0; i < nr; i += MR) {
#define DECL(r) const float *q##r = Q + (i + r) * D; __m256 a##r##0 = _mm256_setzero_ps(), a##r##1 = a##r##0;
            ROWS6(DECL)
#undef DECL
            for (int64_t d = 0; d < D; d++) {
                __m256 k0 = _mm256_loadu_ps(K + d * KP), k1 = _mm256_loadu_ps(K + d * KP + 8), b;
#define FMA(r) b = _mm256_broadcast_ss(q##r + d); a##r##0 = _mm256_fmadd_ps(k0, b, a##r##0); \
               a##r##1 = _mm256_fmadd_ps(k1, b, a##r##1);
                ROWS6(FMA)
#undef FMA
            }
#define STORE(r) _mm256_storeu_ps(S + (i + r) * lds + p, a##r##0); _mm256_storeu_ps(S + (i + r) * lds + p + 8, a##r##1);
            ROWS6(STORE)
#undef STORE
        }
    }
}

AVX2 static void pv_avx2(const float *P, int64_t ldp, int64_t nr, int64_t nk, const float *V, int64_t vps,
                         int64_t Dvp, float *O, int64_t ldo) {
    for (int64_t c = 0; c < Dvp; c += VP) {
        const float *Vc = V + (c / VP) * vps;
        for (int64_t i = 0; i < nr; i += MR) {
#define DECL(r) float *o##r = O + (i + r) * ldo + c; const float *p##r = P + (i + r) * ldp; \
                __m256 a##r##0 = _mm256_loadu_ps(o##r), a##r##1 = _mm256_loadu_ps(o##r + 8);
            ROWS6(DECL)
#undef DECL
            for (int64_t j = 0; j < nk; j++) {
                const float *v = Vc + j * VP;
                __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), b;
#define FMA(r) b = _mm256_broadcast_ss(p##r + j); a##r##0 = _mm256_fmadd_ps(v0, b, a##r##0); \
               a##r##1 = _mm256_fmadd_ps(v1, b, a##r##1);
                ROWS6(FMA)
#undef FMA
            }
#define STORE(r) _mm256_storeu_ps(o##r, a##r##0); _mm256_storeu_ps(o##r + 8, a##r##1);
            ROWS6(STORE)
#undef STORE
        }
    }
}

AVX2 static float exp_sum_avx2(float *s, int64_t n, float m) {
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; j += 8) {
        __m256 e = cpu_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

AVX2 static float row_max_avx2(const float *s, int64_t n, float m) {
    __m256 a = _mm256_set1_ps(m), b = a;
    for (int64_t j = 0; j < n; j += 16) {
        a = _mm256_max_ps(a, _mm256_loadu_ps(s + j));
        b = _mm256_max_ps(b, _mm256_loadu_ps(s + j + 8));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_max_ps(a, b));
    for (int i = 0; i < 8; i++) m = lanes[i] > m ? lanes[i] : m;
    return m;
}

static const cpu_flash_kernels avx2 = {"avx2", scores_avx2, pv_avx2, row_max_avx2, exp_sum_avx2};

/* ---------------- AVX-512 ---------------- */

/* The same 6-row steps with 16-lane registers: scores against two key panels at once (6 × 32 keys), P·V on two
 * value panels (6 × 32 columns); 12 accumulators, each loaded vector feeding 6 FMAs, half the instructions of the
 * AVX2 steps per FLOP. A lone last panel takes a one-panel step. */
#define AVX512 __attribute__((target("avx512f,fma")))

AVX512 static void scores_avx512(const float *Q, int64_t nr, int64_t D, const float *Kt, int64_t nkp, float *S,
                                 int64_t lds) {
    int64_t p = 0;
    for (; p + 2 * KP <= nkp; p += 2 * KP) {
        const float *K0 = Kt + p * D, *K1 = K0 + KP * D;
        for (int64_t i = 0; i < nr; i += MR) {
#define DECL(r) const float *q##r = Q + (i + r) * D; __m512 a##r##0 = _mm512_setzero_ps(), a##r##1 = a##r##0;
            ROWS6(DECL)
#undef DECL
            for (int64_t d = 0; d < D; d++) {
                __m512 k0 = _mm512_loadu_ps(K0 + d * KP), k1 = _mm512_loadu_ps(K1 + d * KP), b;
#define FMA(r) b = _mm512_set1_ps(q##r[d]); a##r##0 = _mm512_fmadd_ps(k0, b, a##r##0); \
               a##r##1 = _mm512_fmadd_ps(k1, b, a##r##1);
                ROWS6(FMA)
#undef FMA
            }
#define STORE(r) _mm512_storeu_ps(S + (i + r) * lds + p, a##r##0); \
                 _mm512_storeu_ps(S + (i + r) * lds + p + KP, a##r##1);
            ROWS6(STORE)
#undef STORE
        }
    }
    if (p < nkp) {
        const float *K = Kt + p * D;
        for (int64_t i = 0; i < nr; i += MR) {
#define DECL(r) const float *q##r = Q + (i + r) * D; __m512 a##r = _mm512_setzero_ps();
            ROWS6(DECL)
#undef DECL
            for (int64_t d = 0; d < D; d++) {
                __m512 k0 = _mm512_loadu_ps(K + d * KP);
#define FMA(r) a##r = _mm512_fmadd_ps(k0, _mm512_set1_ps(q##r[d]), a##r);
                ROWS6(FMA)
#undef FMA
            }
#define STORE(r) _mm512_storeu_ps(S + (i + r) * lds + p, a##r);
            ROWS6(STORE)
#undef STORE
        }
    }
}

AVX512 static void pv_avx512(const float *P, int64_t ldp, int64_t nr, int64_t nk, const float *V, int64_t vps,
                             int64_t Dvp, float *O, int64_t ldo) {
    int64_t c = 0;
    for (; c + 2 * VP <= Dvp; c += 2 * VP) {
        const float *V0 = V + (c / VP) * vps, *V1 = V0 + vps;
        for (int64_t i = 0; i < nr; i += MR) {
#define DECL(r) float *o##r = O + (i + r) * ldo + c; const float *p##r = P + (i + r) * ldp; \
                __m512 a##r##0 = _mm512_loadu_ps(o##r), a##r##1 = _mm512_loadu_ps(o##r + VP);
            ROWS6(DECL)
#undef DECL
            for (int64_t j = 0; j < nk; j++) {
                __m512 v0 = _mm512_loadu_ps(V0 + j * VP), v1 = _mm512_loadu_ps(V1 + j * VP), b;
#define FMA(r) b = _mm512_set1_ps(p##r[j]); a##r##0 = _mm512_fmadd_ps(v0, b, a##r##0); \
               a##r##1 = _mm512_fmadd_ps(v1, b, a##r##1);
                ROWS6(FMA)
#undef FMA
            }
#define STORE(r) _mm512_storeu_ps(o##r, a##r##0); _mm512_storeu_ps(o##r + VP, a##r##1);
            ROWS6(STORE)
#undef STORE
        }
    }
    if (c < Dvp) {
        const float *V0 = V + (c / VP) * vps;
        for (int64_t i = 0; i < nr; i += MR) {
#define DECL(r) float *o##r = O + (i + r) * ldo + c; const float *p##r = P + (i + r) * ldp; \
                __m512 a##r = _mm512_loadu_ps(o##r);
            ROWS6(DECL)
#undef DECL
            for (int64_t j = 0; j < nk; j++) {
                __m512 v0 = _mm512_loadu_ps(V0 + j * VP);
#define FMA(r) a##r = _mm512_fmadd_ps(v0, _mm512_set1_ps(p##r[j]), a##r);
                ROWS6(FMA)
#undef FMA
            }
#define STORE(r) _mm512_storeu_ps(o##r, a##r);
            ROWS6(STORE)
#undef STORE
        }
    }
}

static const cpu_flash_kernels avx512 = {"avx512", scores_avx512, pv_avx512, row_max_avx2, exp_sum_avx2};

const cpu_flash_kernels *cpu_flash_select(void) {
    static const cpu_flash_kernels *chosen;
    if (!chosen) { /* a benign race: every thread computes the same answer */
        /* LYRA2_CPU_SIMD: "0" the portable kernels, "avx2" no AVX-512 (tests compare the sets) */
        const char *env = getenv("LYRA2_CPU_SIMD");
        __builtin_cpu_init();
        int simd = !(env && strcmp(env, "0") == 0), wide = !(env && strcmp(env, "avx2") == 0);
        int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        chosen = simd && has2 && wide && __builtin_cpu_supports("avx512f") ? &avx512 : simd && has2 ? &avx2 : &portable;
    }
    return chosen;
}
#else
const cpu_flash_kernels *cpu_flash_select(void) { return &portable; }
#endif
