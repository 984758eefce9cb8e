/* CPU references of the chunk-input ops (nn/ops.h "chunk inputs"): ray images (the arithmetic of
 * nn/rays_math.h, as geom/rays.c), uint8 frames, a running min/max and the range normalisation. Each writes the
 * formula of its op comment in f32 with one rounding per step, so the CUDA kernels (nn/cuda/cuda_prep.cu) can match
 * bit for bit. u8_pixels (DA3's input pixels) is nn/u8_pixels_math.h's arithmetic per output element. */
#include <math.h>

#include "nn/rays_math.h"
#include "nn/u8_pixels_math.h"
#include "nn/cpu/cpu_internal.h"

/* Element pointer of t at the flat index `idx` of its own shape (outermost-first, any strides). */
static char *elem(const lyra_tensor *t, int64_t idx) {
    int64_t off = 0;
    for (int i = t->ndim - 1; i >= 0; i--) {
        off += (idx % t->ne[i]) * t->nb[i];
        idx /= t->ne[i];
    }
    return (char *)t->data + off;
}

lyra_status cpu_rays(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p) {
    LYRA_TRY(cpu_require_f32("rays", 1, y));
    const int u = p->unshuffle, uu = u * u;
    const int64_t HW = (int64_t)height * width;
    char *base = y->data;
#pragma omp parallel for num_threads(cpu_threads(be, 6 * HW)) schedule(static)
    for (int j = 0; j < height; j++)
        for (int i = 0; i < width; i++) {
            float px[6];
            lyra_ray_pixel(p->K, p->c2w, i, j, p->moment, px);
            const int64_t ch = (int64_t)(j % u) * u + i % u, off = (j / u) * y->nb[1] + (i / u) * y->nb[2];
            for (int c = 0; c < 6; c++) *(float *)(base + (c * uu + ch) * y->nb[0] + off) = px[c];
        }
    return LYRA_OK;
}

/* The two conversions of lyra_u8_mode, each step one f32 rounding. */
static inline uint8_t u8_of(float v, lyra_u8_mode mode) {
    if (mode == LYRA_U8_VIDEO) {
        v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
        return (uint8_t)(((v + 1.0f) / 2.0f) * 255.0f);
    }
    v = v * 0.5f + 0.5f;
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    return (uint8_t)(v * 255.0f + 0.5f);
}

static inline float load_float(const char *p, lyra_dtype dt) {
    switch (dt) {
    case LYRA_DTYPE_BF16: return lyra_bf16_to_f32(*(const uint16_t *)p);
    case LYRA_DTYPE_F16: return lyra_f16_to_f32(*(const uint16_t *)p);
    default: return *(const float *)p;
    }
}

lyra_status cpu_to_u8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode) {
    const int64_t N = x->ne[0], C = x->ne[1], H = x->ne[2], W = x->ne[3];
    uint8_t *out = y->data;
#pragma omp parallel for num_threads(cpu_threads(be, N * C * H * W)) schedule(static)
    for (int64_t nh = 0; nh < N * H; nh++) {
        const int64_t n = nh / H, h = nh % H;
        for (int64_t w = 0; w < W; w++)
            for (int64_t c = 0; c < C; c++) {
                const char *p = (const char *)x->data + n * x->nb[0] + c * x->nb[1] + h * x->nb[2] + w * x->nb[3];
                out[((nh * W) + w) * C + c] = u8_of(load_float(p, x->dtype), mode);
            }
    }
    return LYRA_OK;
}

lyra_status cpu_minmax(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev) {
    (void)be;
    float lo = prev ? *(const float *)prev->data : INFINITY;
    float hi = prev ? *(const float *)((const char *)prev->data + prev->nb[0]) : -INFINITY;
    const int64_t n = lyra_tensor_numel(x);
    const int contiguous = lyra_tensor_is_contiguous(x);
    for (int64_t i = 0; i < n; i++) {
        const float v = contiguous ? ((const float *)x->data)[i] : *(const float *)elem(x, i);
        lo = v < lo ? v : lo; /* a NaN never compares true: skipped */
        hi = v > hi ? v : hi;
    }
    *(float *)mm->data = lo;
    *(float *)((char *)mm->data + mm->nb[0]) = hi;
    return LYRA_OK;
}

lyra_status cpu_range_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm, float eps) {
    LYRA_TRY(cpu_require_f32("range_norm", 1, y));
    const float lo = *(const float *)mm->data, hi = *(const float *)((const char *)mm->data + mm->nb[0]);
    const float range = hi - lo > eps ? hi - lo : eps;
    const int64_t n = lyra_tensor_numel(x);
#pragma omp parallel for num_threads(cpu_threads(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float v = *(const float *)elem(x, i);
        *(float *)elem(y, i) = 2.0f * (v - lo) / range - 1.0f;
    }
    return LYRA_OK;
}

lyra_status cpu_u8_pixels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_u8_pixels_params *p) {
    const int N = (int)x->ne[0], H = (int)x->ne[1], W = (int)x->ne[2], C = (int)x->ne[3];
    const int Ho = (int)y->ne[2], Wo = (int)y->ne[3];
    const uint8_t *src = x->data;
    float *out = y->data;
#pragma omp parallel for num_threads(cpu_threads(be, (int64_t)N * C * Ho * Wo * 16)) schedule(static)
    for (int64_t row = 0; row < (int64_t)N * C * Ho; row++) {
        const int n = (int)(row / ((int64_t)C * Ho)), c = (int)(row / Ho % C), yy = (int)(row % Ho);
        const uint8_t *img = src + (int64_t)n * H * W * C;
        for (int xx = 0; xx < Wo; xx++)
            out[row * Wo + xx] =
                lyra_u8p_pixel(img, H, W, C, Ho, Wo, (int)p->resample, yy, xx, c, p->mean[c], p->std[c]);
    }
    return LYRA_OK;
}
