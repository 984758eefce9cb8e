/* Flash-attention inner kernels (contracts in cpu_flash.h): portable C, and AVX2+FMA intrinsics on x86-64.
 *
 * The AVX2 kernels keep their accumulators in registers: scores are 4 query rows × 16 keys (8 ymm), P·V is
 * 4 rows × 16 value columns (8 ymm); each loaded vector feeds 4 FMAs. Measured on the 2-core Zen 4 box they
 * run the score and P·V products at roughly the speed of OpenBLAS's SGEMM without its packing passes. */
#include "nn/cpu/cpu_flash.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { KP = CPU_FLASH_KP, MR = CPU_FLASH_MR };

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

static void pv_c(const float *P, int64_t ldp, int64_t nr, int64_t nk, const float *V, int64_t ldv, int64_t Dv,
                 float *O, int64_t ldo) {
    for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < nk; j++) {
            float p = P[i * ldp + j];
            if (p == 0.0f) continue;
            for (int64_t c = 0; c < Dv; c++) O[i * ldo + c] += p * V[j * ldv + c];
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

AVX2 static void scores_avx2(const float *Q, int64_t nr, int64_t D, const float *Kt, int64_t nkp, float *S,
                             int64_t lds) {
    for (int64_t p = 0; p < nkp; p += KP) {
        const float *K = Kt + p * D;
        for (int64_t i = 0; i < nr; i += MR) {
            const float *q0 = Q + i * D, *q1 = q0 + D, *q2 = q1 + D, *q3 = q2 + D;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
            __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int64_t d = 0; d < D; d++) {
                __m256 k0 = _mm256_loadu_ps(K + d * KP), k1 = _mm256_loadu_ps(K + d * KP + 8), b;
                b = _mm256_broadcast_ss(q0 + d); a00 = _mm256_fmadd_ps(k0, b, a00); a01 = _mm256_fmadd_ps(k1, b, a01);
                b = _mm256_broadcast_ss(q1 + d); a10 = _mm256_fmadd_ps(k0, b, a10); a11 = _mm256_fmadd_ps(k1, b, a11);
                b = _mm256_broadcast_ss(q2 + d); a20 = _mm256_fmadd_ps(k0, b, a20); a21 = _mm256_fmadd_ps(k1, b, a21);
                b = _mm256_broadcast_ss(q3 + d); a30 = _mm256_fmadd_ps(k0, b, a30); a31 = _mm256_fmadd_ps(k1, b, a31);
            }
            float *s = S + i * lds + p;
            _mm256_storeu_ps(s, a00); _mm256_storeu_ps(s + 8, a01); s += lds;
            _mm256_storeu_ps(s, a10); _mm256_storeu_ps(s + 8, a11); s += lds;
            _mm256_storeu_ps(s, a20); _mm256_storeu_ps(s + 8, a21); s += lds;
            _mm256_storeu_ps(s, a30); _mm256_storeu_ps(s + 8, a31);
        }
    }
}

AVX2 static void pv_avx2(const float *P, int64_t ldp, int64_t nr, int64_t nk, const float *V, int64_t ldv,
                         int64_t Dv, float *O, int64_t ldo) {
    int64_t c = 0;
    for (; c + 16 <= Dv; c += 16)
        for (int64_t i = 0; i < nr; i += MR) {
            float *o = O + i * ldo + c;
            const float *p0 = P + i * ldp, *p1 = p0 + ldp, *p2 = p1 + ldp, *p3 = p2 + ldp;
            __m256 a00 = _mm256_loadu_ps(o), a01 = _mm256_loadu_ps(o + 8);
            __m256 a10 = _mm256_loadu_ps(o + ldo), a11 = _mm256_loadu_ps(o + ldo + 8);
            __m256 a20 = _mm256_loadu_ps(o + 2 * ldo), a21 = _mm256_loadu_ps(o + 2 * ldo + 8);
            __m256 a30 = _mm256_loadu_ps(o + 3 * ldo), a31 = _mm256_loadu_ps(o + 3 * ldo + 8);
            for (int64_t j = 0; j < nk; j++) {
                const float *v = V + j * ldv + c;
                __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), b;
                b = _mm256_broadcast_ss(p0 + j); a00 = _mm256_fmadd_ps(v0, b, a00); a01 = _mm256_fmadd_ps(v1, b, a01);
                b = _mm256_broadcast_ss(p1 + j); a10 = _mm256_fmadd_ps(v0, b, a10); a11 = _mm256_fmadd_ps(v1, b, a11);
                b = _mm256_broadcast_ss(p2 + j); a20 = _mm256_fmadd_ps(v0, b, a20); a21 = _mm256_fmadd_ps(v1, b, a21);
                b = _mm256_broadcast_ss(p3 + j); a30 = _mm256_fmadd_ps(v0, b, a30); a31 = _mm256_fmadd_ps(v1, b, a31);
            }
            _mm256_storeu_ps(o, a00); _mm256_storeu_ps(o + 8, a01); o += ldo;
            _mm256_storeu_ps(o, a10); _mm256_storeu_ps(o + 8, a11); o += ldo;
            _mm256_storeu_ps(o, a20); _mm256_storeu_ps(o + 8, a21); o += ldo;
            _mm256_storeu_ps(o, a30); _mm256_storeu_ps(o + 8, a31);
        }
    if (c < Dv) /* column tail (Dv not a multiple of 16) */
        for (int64_t i = 0; i < nr; i++)
            for (int64_t j = 0; j < nk; j++) {
                float p = P[i * ldp + j];
                for (int64_t cc = c; cc < Dv; cc++) O[i * ldo + cc] += p * V[j * ldv + cc];
            }
}

/* e^x on 8 lanes, ~2 ulp: x = n·ln2 + r (two-constant Cody–Waite), e^r by the degree-6 polynomial of Cephes
 * expf, 2^n as two exponent-bit factors so that n = 128 (x near 88.7) stays finite. x < −87.34 (and −inf)
 * gives 0; x > 88.72 gives +inf; NaN stays NaN. */
AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.72283f);
    const __m256 magic = _mm256_set1_ps(12582912.0f); /* 1.5·2^23: adding it rounds to the nearest integer */
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1), bias = _mm256_set1_epi32(127);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
    y = _mm256_andnot_ps(under, y);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
    return _mm256_blendv_ps(y, x, nan);
}

AVX2 static float exp_sum_avx2(float *s, int64_t n, float m) {
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
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

const cpu_flash_kernels *cpu_flash_select(void) {
    static const cpu_flash_kernels *chosen;
    if (!chosen) { /* a benign race: every thread computes the same answer */
        const char *env = getenv("LYRA2_CPU_SIMD"); /* "0": the portable kernels (tests compare the sets) */
        __builtin_cpu_init();
        int simd = !(env && strcmp(env, "0") == 0);
        chosen = simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &avx2 : &portable;
    }
    return chosen;
}
#else
const cpu_flash_kernels *cpu_flash_select(void) { return &portable; }
#endif
