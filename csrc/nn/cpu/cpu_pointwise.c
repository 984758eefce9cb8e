/* CPU pointwise ops over strided rows (broadcast through stride 0): copy, fill, activations, gated units,
 * add/mul/scale, adaLN modulate and gate, RoPE. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"
#include "nn/cpu/cpu_vecmath.h"

#define ROW_PTR(t, shape, r) ((char *)(t)->data + cpu_row_offset((t), (shape), (r)))

lyra_status cpu_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    int64_t rows = cpu_rows(y), n = cpu_inner(y);
    int64_t sy = y->ndim ? y->nb[y->ndim - 1] : 0, sx = x->ndim ? x->nb[x->ndim - 1] : 0;
    size_t es = lyra_dtype_size(y->dtype);
    int same = x->dtype == y->dtype;
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        char *yp = ROW_PTR(y, y, r);
        const char *xp = ROW_PTR(x, y, r);
        if (same && sy == (int64_t)es && sx == (int64_t)es) {
            memcpy(yp, xp, (size_t)n * es);
        } else if (same) {
            for (int64_t i = 0; i < n; i++) memcpy(yp + i * sy, xp + i * sx, es);
        } else {
            for (int64_t i = 0; i < n; i++) cpu_store(yp + i * sy, y->dtype, cpu_load(xp + i * sx, x->dtype));
        }
    }
    return LYRA_OK;
}

lyra_status cpu_fill(lyra_backend *be, lyra_tensor *y, float value) {
    LYRA_TRY(cpu_require_f32("fill", 1, y));
    int64_t rows = cpu_rows(y), n = cpu_inner(y), s = cpu_inner_stride(y, y);
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *yp = (float *)ROW_PTR(y, y, r);
        for (int64_t i = 0; i < n; i++) yp[i * s] = value;
    }
    return LYRA_OK;
}

static inline float act_apply(lyra_act act, float x) {
    switch (act) {
    case LYRA_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case LYRA_ACT_GELU_TANH: {
        const float c = 0.79788456080286536f; /* sqrt(2/pi) */
        return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case LYRA_ACT_SILU: return x / (1.0f + expf(-x));
    case LYRA_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case LYRA_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    default: return x;
    }
}

#if CPU_VEC_X86
/* GELU (tanh form) and SiLU on 8 lanes of a unit-stride row, as x·sigmoid(u) = x / (1 + e^(−u)) with u = 2·tanh
 * argument (GELU: 0.5·x·(1 + tanh(t)) = x·sigmoid(2t)) or u = x (SiLU); e^ by cpu_exp8 (~2 ulp). Returns the first
 * element not done (the < 8 tail). The FFN's GELU over 9,602 × 3·dim values ran libm's tanhf per element. */
CPU_AVX2 static int64_t act_row_avx2(float *y, const float *x, int64_t n, lyra_act act) {
    const __m256 one = _mm256_set1_ps(1.0f), c2 = _mm256_set1_ps(-2.0f * 0.79788456080286536f),
                 k = _mm256_set1_ps(0.044715f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), nu; /* nu = −u */
        if (act == LYRA_ACT_GELU_TANH)
            nu = _mm256_mul_ps(c2, _mm256_fmadd_ps(_mm256_mul_ps(k, v), _mm256_mul_ps(v, v), v));
        else
            nu = _mm256_sub_ps(_mm256_setzero_ps(), v);
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, cpu_exp8(nu))));
    }
    return i;
}
#endif

lyra_status cpu_unary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act act) {
    LYRA_TRY(cpu_require_f32("unary", 2, y, x));
    int64_t rows = cpu_rows(y), n = cpu_inner(y), sy = cpu_inner_stride(y, y), sx = cpu_inner_stride(x, y);
    int vec = CPU_VEC_X86 && cpu_vec_avx2() && sy == 1 && sx == 1 &&
              (act == LYRA_ACT_GELU_TANH || act == LYRA_ACT_SILU);
#pragma omp parallel for num_threads(cpu_threads(be, 8 * rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *yp = (float *)ROW_PTR(y, y, r);
        const float *xp = (const float *)ROW_PTR(x, y, r);
        int64_t i = 0;
#if CPU_VEC_X86
        if (vec) i = act_row_avx2(yp, xp, n, act);
#endif
        for (; i < n; i++) yp[i * sy] = act_apply(act, xp[i * sx]);
    }
    (void)vec;
    return LYRA_OK;
}

lyra_status cpu_glu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act) {
    LYRA_TRY(cpu_require_f32("glu", 3, y, a, g));
    int64_t rows = cpu_rows(y), n = cpu_inner(y);
    int64_t sy = cpu_inner_stride(y, y), sa = cpu_inner_stride(a, y), sg = cpu_inner_stride(g, y);
#pragma omp parallel for num_threads(cpu_threads(be, 8 * rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *yp = (float *)ROW_PTR(y, y, r);
        const float *ap = (const float *)ROW_PTR(a, y, r), *gp = (const float *)ROW_PTR(g, y, r);
        for (int64_t i = 0; i < n; i++) yp[i * sy] = ap[i * sa] * act_apply(act, gp[i * sg]);
    }
    return LYRA_OK;
}

/* y = f(a, b, c) over rows; c may be NULL. kind: 0 add, 1 mul, 2 modulate (a·(1+c)+b), 3 gate (a + b·c). */
static lyra_status ternary(lyra_backend *be, int kind, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b,
                           const lyra_tensor *c) {
    int64_t rows = cpu_rows(y), n = cpu_inner(y);
    int64_t sy = cpu_inner_stride(y, y), sa = cpu_inner_stride(a, y), sb = cpu_inner_stride(b, y);
    int64_t sc = c ? cpu_inner_stride(c, y) : 0;
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *yp = (float *)ROW_PTR(y, y, r);
        const float *ap = (const float *)ROW_PTR(a, y, r), *bp = (const float *)ROW_PTR(b, y, r);
        const float *cp = c ? (const float *)ROW_PTR(c, y, r) : NULL;
        switch (kind) {
        case 0: for (int64_t i = 0; i < n; i++) yp[i * sy] = ap[i * sa] + bp[i * sb]; break;
        case 1: for (int64_t i = 0; i < n; i++) yp[i * sy] = ap[i * sa] * bp[i * sb]; break;
        case 2: for (int64_t i = 0; i < n; i++) yp[i * sy] = ap[i * sa] * (1.0f + cp[i * sc]) + bp[i * sb]; break;
        default: for (int64_t i = 0; i < n; i++) yp[i * sy] = ap[i * sa] + bp[i * sb] * cp[i * sc]; break;
        }
    }
    return LYRA_OK;
}

lyra_status cpu_add(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    LYRA_TRY(cpu_require_f32("add", 3, y, a, b));
    return ternary(be, 0, y, a, b, NULL);
}

lyra_status cpu_mul(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    LYRA_TRY(cpu_require_f32("mul", 3, y, a, b));
    return ternary(be, 1, y, a, b, NULL);
}

lyra_status cpu_modulate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *shift,
                         const lyra_tensor *scale) {
    LYRA_TRY(cpu_require_f32("modulate", 4, y, x, shift, scale));
    return ternary(be, 2, y, x, shift, scale);
}

lyra_status cpu_gate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *g,
                     const lyra_tensor *a) {
    LYRA_TRY(cpu_require_f32("gate", 4, y, x, g, a));
    return ternary(be, 3, y, x, g, a);
}

lyra_status cpu_scale(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float alpha, float beta) {
    LYRA_TRY(cpu_require_f32("scale", 2, y, x));
    int64_t rows = cpu_rows(y), n = cpu_inner(y), sy = cpu_inner_stride(y, y), sx = cpu_inner_stride(x, y);
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *yp = (float *)ROW_PTR(y, y, r);
        const float *xp = (const float *)ROW_PTR(x, y, r);
        for (int64_t i = 0; i < n; i++) yp[i * sy] = alpha * xp[i * sx] + beta;
    }
    return LYRA_OK;
}

lyra_status cpu_rope(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *angles,
                     lyra_rope_mode mode, int n_sections) {
    LYRA_TRY(cpu_require_f32("rope", 2, y, x));
    int64_t B = x->ne[0], L = x->ne[1], H = x->ne[2], D = x->ne[3], P = D / 2;
    /* cos/sin once per (token, pair): shared by every batch and head. */
    float *cs = lyra_backend_scratch(be, (size_t)(2 * L * P + 1) * sizeof(float), "rope");
    if (!cs) return LYRA_ERR_OOM;
    for (int64_t l = 0; l < L; l++) {
        const char *ar = (const char *)angles->data + l * angles->nb[0];
        for (int64_t p = 0; p < P; p++) {
            float phi = *(const float *)(ar + p * angles->nb[1]);
            cs[2 * (l * P + p)] = cosf(phi);
            cs[2 * (l * P + p) + 1] = sinf(phi);
        }
    }
    int64_t S = D / n_sections, half = S / 2;
    int64_t rows = B * L * H;
#pragma omp parallel for num_threads(cpu_threads(be, 4 * rows * D)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t h = r % H, l = (r / H) % L, b = r / (H * L);
        const float *xp = (const float *)((const char *)x->data + b * x->nb[0] + l * x->nb[1] + h * x->nb[2]);
        float *yp = (float *)((char *)y->data + b * y->nb[0] + l * y->nb[1] + h * y->nb[2]);
        const float *c = cs + 2 * l * P;
        for (int64_t p = 0; p < P; p++) {
            int64_t i0, i1;
            if (mode == LYRA_ROPE_INTERLEAVED) {
                i0 = 2 * p;
                i1 = 2 * p + 1;
            } else {
                int64_t s = p / half, i = p % half;
                i0 = s * S + i;
                i1 = i0 + half;
            }
            float a = xp[i0], bb = xp[i1], co = c[2 * p], si = c[2 * p + 1];
            yp[i0] = a * co - bb * si;
            yp[i1] = a * si + bb * co;
        }
    }
    return LYRA_OK;
}
