/* The sin/cos feature op (nn/ops.h lyra_op_sincos) on the CPU: one row of x per iteration. The DiT evaluates
 * 4·5120 features per token per block (196 M sin/cos at 9,602 tokens), so f32 rows with unit-stride x take the
 * 8-lane kernel (cpu_vecmath.h; libm's sincosf was 14 % of a dim-512 forward). */
#include <math.h>

#include "nn/cpu/cpu_internal.h"
#include "nn/cpu/cpu_vecmath.h"

/* Row r of the features, scalar (libm) for c in [c0, C). */
static void row_scalar(char *yr, const char *xr, int64_t sx, lyra_dtype xd, lyra_dtype yd, size_t ey, int64_t C,
                       int64_t c0, int octaves, const float *f) {
    for (int o = 0; o < octaves; o++)
        for (int64_t c = c0; c < C; c++) {
            float a = cpu_load(xr + c * sx, xd) * f[o];
            cpu_store(yr + (2 * o * C + c) * (int64_t)ey, yd, sinf(a));
            cpu_store(yr + ((2 * o + 1) * C + c) * (int64_t)ey, yd, cosf(a));
        }
}

#if CPU_VEC_X86
/* f32 row, unit-stride x: 8 channels at a time; a group with an argument past CPU_SINCOS8_MAX (or not finite)
 * goes to libm. Returns the first channel not done (the < 8 tail). */
CPU_AVX2 static int64_t row_avx2(float *y, const float *x, int64_t C, int octaves, const float *f) {
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
        __m256 xv = _mm256_loadu_ps(x + c);
        for (int o = 0; o < octaves; o++) {
            __m256 a = _mm256_mul_ps(xv, _mm256_set1_ps(f[o]));
            __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a),
                                       _mm256_set1_ps(CPU_SINCOS8_MAX), _CMP_NLE_UQ); /* > max or NaN */
            if (_mm256_movemask_ps(big)) {
                float av[8];
                _mm256_storeu_ps(av, a);
                for (int u = 0; u < 8; u++) {
                    y[2 * o * C + c + u] = sinf(av[u]);
                    y[(2 * o + 1) * C + c + u] = cosf(av[u]);
                }
                continue;
            }
            __m256 s, co;
            cpu_sincos8(a, &s, &co);
            _mm256_storeu_ps(y + 2 * o * C + c, s);
            _mm256_storeu_ps(y + (2 * o + 1) * C + c, co);
        }
    }
    return c;
}
#endif

lyra_status cpu_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves) {
    int64_t rows = cpu_rows(x), C = cpu_inner(x), sx = x->nb[x->ndim - 1], W = 2 * (int64_t)octaves * C;
    size_t ey = lyra_dtype_size(y->dtype);
    float f[30];
    for (int o = 0; o < octaves; o++) f[o] = (float)ldexp(M_PI, o); /* 2^o·π rounded to f32, as upstream */
    int vec = CPU_VEC_X86 && cpu_vec_avx2() && x->dtype == LYRA_DTYPE_F32 && y->dtype == LYRA_DTYPE_F32 && sx == 4;
#pragma omp parallel for num_threads(cpu_threads(be, rows * W)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const char *xr = (const char *)x->data + cpu_row_offset(x, x, r);
        char *yr = (char *)y->data + r * W * (int64_t)ey;
        int64_t c0 = 0;
#if CPU_VEC_X86
        if (vec) c0 = row_avx2((float *)yr, (const float *)xr, C, octaves, f);
#endif
        row_scalar(yr, xr, sx, x->dtype, y->dtype, ey, C, c0, octaves, f);
    }
    (void)vec;
    return LYRA_OK;
}
