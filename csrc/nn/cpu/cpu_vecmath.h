/* Vectorised f32 math for the CPU backend's hot element-wise loops (attention softmax, the DiT buffer's sin/cos
 * features, GELU): 8-lane AVX2+FMA versions of exp and sin/cos, compiled per function with a target attribute (the
 * build has no -march flag) and used only after cpu_vec_avx2() said the CPU runs them. Each caller keeps its
 * portable scalar loop (libm) for other CPUs, strided tensors and LYRA2_CPU_SIMD=0. */
#ifndef LYRA_CPU_VECMATH_H
#define LYRA_CPU_VECMATH_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_VEC_X86 1
#include <immintrin.h>

#define CPU_AVX2 __attribute__((target("avx2,fma")))

/* 1 when the AVX2+FMA kernels may run: the CPU has them and LYRA2_CPU_SIMD is not "0" (tests compare both sets). */
static inline int cpu_vec_avx2(void) {
    static int chosen = -1;
    if (chosen < 0) { /* a benign race: every thread computes the same answer */
        const char *env = getenv("LYRA2_CPU_SIMD");
        __builtin_cpu_init();
        chosen = !(env && strcmp(env, "0") == 0) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return chosen;
}

/* e^x on 8 lanes, ~2 ulp: x = n·ln2 + r (two-constant Cody–Waite), e^r by the degree-6 polynomial of Cephes
 * expf, 2^n as two exponent-bit factors so that n = 128 (x near 88.7) stays finite. x < −87.34 (and −inf)
 * gives 0; x > 88.72 gives +inf; NaN stays NaN. */
CPU_AVX2 static inline __m256 cpu_exp8(__m256 x) {
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

/* Largest |x| cpu_sincos8 takes: the three-constant π/4 reduction keeps ~1 ulp up to here (Cephes sinf's bound). */
#define CPU_SINCOS8_MAX 8192.0f

/* sin and cos of 8 lanes, each within ~2 ulp (absolute error ≤ 1.2e-7) for |x| ≤ CPU_SINCOS8_MAX: reduction by
 * the nearest even multiple j of π/4 in three constants (Cody–Waite, exact products with FMA), then the Cephes
 * sinf / cosf minimax polynomials on |r| ≤ π/4, chosen and signed by j's octant. Callers take larger or non-finite
 * arguments to libm. */
CPU_AVX2 static inline void cpu_sincos8(__m256 x, __m256 *s, __m256 *c) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 sx = _mm256_and_ps(x, sign), ax = _mm256_andnot_ps(sign, x);
    __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(ax, _mm256_set1_ps(1.27323954473516f))); /* 4/π */
    j = _mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(1)), _mm256_set1_epi32(~1));
    __m256 y = _mm256_cvtepi32_ps(j);
    __m256 r = _mm256_fnmadd_ps(y, _mm256_set1_ps(0.78515625f), ax);
    r = _mm256_fnmadd_ps(y, _mm256_set1_ps(2.4187564849853515625e-4f), r);
    r = _mm256_fnmadd_ps(y, _mm256_set1_ps(3.77489497744594108e-8f), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 pc = _mm256_fmadd_ps(_mm256_set1_ps(2.443315711809948e-5f), z, _mm256_set1_ps(-1.388731625493765e-3f));
    pc = _mm256_fmadd_ps(pc, z, _mm256_set1_ps(4.166664568298827e-2f));
    pc = _mm256_fmadd_ps(_mm256_mul_ps(pc, z), z, _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, _mm256_set1_ps(1.0f)));
    __m256 ps = _mm256_fmadd_ps(_mm256_set1_ps(-1.9515295891e-4f), z, _mm256_set1_ps(8.3321608736e-3f));
    ps = _mm256_fmadd_ps(ps, z, _mm256_set1_ps(-1.6666654611e-1f));
    ps = _mm256_fmadd_ps(_mm256_mul_ps(ps, z), r, r);
    /* octant j ∈ {0, 2, 4, 6} (mod 8): j & 2 swaps the polynomials; sin flips for j & 4, cos for (j + 2) & 4 */
    __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)),
                                                         _mm256_set1_epi32(2)));
    __m256 vs = _mm256_blendv_ps(ps, pc, swap), vc = _mm256_blendv_ps(pc, ps, swap);
    __m256 fs = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(j, _mm256_set1_epi32(4)), 29));
    __m256 fc = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(2)), _mm256_set1_epi32(4)), 29));
    *s = _mm256_xor_ps(vs, _mm256_xor_ps(sx, fs));
    *c = _mm256_xor_ps(vc, fc);
}
#else
#define CPU_VEC_X86 0
static inline int cpu_vec_avx2(void) { return 0; }
#endif

#endif
