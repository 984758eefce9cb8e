/* CPU normalisations (f32 statistics, two-pass mean/variance) and softmax. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"

#define ROW_PTR(t, shape, r) ((char *)(t)->data + cpu_row_offset((t), (shape), (r)))

/* Per-channel parameter vectors as f32 (weights may be bf16/f16). Returns the workspace or NULL on OOM;
 * *p0, *p1 point at the vectors (NULL when absent). */
static float *params_f32(lyra_backend *be, const lyra_tensor *t0, const lyra_tensor *t1, const float **p0,
                         const float **p1, size_t extra_floats, const char *what) {
    int64_t n0 = cpu_f32_need(t0), n1 = cpu_f32_need(t1);
    float *ws = lyra_backend_scratch(be, (size_t)(n0 + n1 + (int64_t)extra_floats) * sizeof(float), what);
    if (!ws) return NULL;
    *p0 = cpu_as_f32(t0, ws);
    *p1 = cpu_as_f32(t1, ws + n0);
    return ws + n0 + n1;
}

lyra_status cpu_rms_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, float eps) {
    LYRA_TRY(cpu_require_f32("rms_norm", 2, y, x));
    const float *wv, *unused;
    if (!params_f32(be, w, NULL, &wv, &unused, 0, "rms_norm")) return LYRA_ERR_OOM;
    int64_t rows = cpu_rows(x), n = cpu_inner(x), sx = cpu_inner_stride(x, x), sy = cpu_inner_stride(y, x);
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xp = (const float *)ROW_PTR(x, x, r);
        float *yp = (float *)ROW_PTR(y, x, r);
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xp[i * sx] * xp[i * sx];
        float inv = (float)(1.0 / sqrt(ss / (double)(n ? n : 1) + (double)eps));
        for (int64_t i = 0; i < n; i++) yp[i * sy] = xp[i * sx] * inv * (wv ? wv[i] : 1.0f);
    }
    return LYRA_OK;
}

lyra_status cpu_layer_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b, float eps) {
    LYRA_TRY(cpu_require_f32("layer_norm", 2, y, x));
    const float *wv, *bv;
    if (!params_f32(be, w, b, &wv, &bv, 0, "layer_norm")) return LYRA_ERR_OOM;
    int64_t rows = cpu_rows(x), n = cpu_inner(x), sx = cpu_inner_stride(x, x), sy = cpu_inner_stride(y, x);
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xp = (const float *)ROW_PTR(x, x, r);
        float *yp = (float *)ROW_PTR(y, x, r);
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < n; i++) mean += xp[i * sx];
        mean /= (double)(n ? n : 1);
        for (int64_t i = 0; i < n; i++) {
            double d = xp[i * sx] - mean;
            var += d * d;
        }
        var /= (double)(n ? n : 1);
        float inv = (float)(1.0 / sqrt(var + (double)eps)), m = (float)mean;
        for (int64_t i = 0; i < n; i++) {
            float v = (xp[i * sx] - m) * inv;
            if (wv) v *= wv[i];
            if (bv) v += bv[i];
            yp[i * sy] = v;
        }
    }
    return LYRA_OK;
}

/* Byte offset of flat position s over dims 2..ndim-1 of t (the "spatial" part of (B, C, ...)). */
static inline int64_t spatial_offset(const lyra_tensor *t, int64_t s) {
    int64_t off = 0;
    for (int i = t->ndim - 1; i >= 2; i--) {
        off += (s % t->ne[i]) * t->nb[i];
        s /= t->ne[i];
    }
    return off;
}

/* cpu_l2norm_channels on contiguous (B, C, spatial) tensors (the VAE's activations): blocks of positions, so every
 * pass reads a channel's values with unit stride (one position at a time strides by the whole spatial size per
 * channel). Same arithmetic as the general loop below: double sum of squares, x·inv·gamma + beta in f32. */
#define L2_BLOCK 256
static void l2norm_channels_dense(lyra_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t Sp,
                                  const float *gv, const float *bv, float rootc, float eps) {
    int64_t nblk = (Sp + L2_BLOCK - 1) / L2_BLOCK;
#pragma omp parallel for num_threads(cpu_threads(be, B * Sp * C)) schedule(dynamic, 4)
    for (int64_t t = 0; t < B * nblk; t++) {
        int64_t b = t / nblk, s0 = t % nblk * L2_BLOCK, n = Sp - s0 < L2_BLOCK ? Sp - s0 : L2_BLOCK;
        const float *xb = x + b * C * Sp + s0;
        float *yb = y + b * C * Sp + s0;
        double ss[L2_BLOCK];
        float inv[L2_BLOCK];
        for (int64_t i = 0; i < n; i++) ss[i] = 0.0;
        for (int64_t c = 0; c < C; c++) {
            const float *xr = xb + c * Sp;
            for (int64_t i = 0; i < n; i++) ss[i] += (double)xr[i] * xr[i];
        }
        for (int64_t i = 0; i < n; i++) {
            double nrm = sqrt(ss[i]);
            inv[i] = (float)(1.0 / (nrm > eps ? nrm : (double)eps)) * rootc;
        }
        for (int64_t c = 0; c < C; c++) {
            const float *xr = xb + c * Sp;
            float *yr = yb + c * Sp;
            float g = gv ? gv[c] : 1.0f, bb = bv ? bv[c] : 0.0f;
            if (bv) {
                for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * inv[i] * g + bb;
            } else {
                for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * inv[i] * g;
            }
        }
    }
}

lyra_status cpu_l2norm_channels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *gamma,
                                const lyra_tensor *beta, float eps) {
    LYRA_TRY(cpu_require_f32("l2norm_channels", 2, y, x));
    const float *gv, *bv;
    if (!params_f32(be, gamma, beta, &gv, &bv, 0, "l2norm_channels")) return LYRA_ERR_OOM;
    int64_t B = x->ne[0], C = x->ne[1], Sp = 1;
    for (int i = 2; i < x->ndim; i++) Sp *= x->ne[i];
    float rootc = sqrtf((float)C);
    if (lyra_tensor_is_contiguous(x) && lyra_tensor_is_contiguous(y)) {
        l2norm_channels_dense(be, (float *)y->data, (const float *)x->data, B, C, Sp, gv, bv, rootc, eps);
        return LYRA_OK;
    }
    int64_t total = B * Sp;
#pragma omp parallel for num_threads(cpu_threads(be, total * C)) schedule(static)
    for (int64_t bs = 0; bs < total; bs++) {
        int64_t b = bs / Sp, s = bs % Sp;
        const char *xp = (const char *)x->data + b * x->nb[0] + spatial_offset(x, s);
        char *yp = (char *)y->data + b * y->nb[0] + spatial_offset(y, s);
        double ss = 0.0;
        for (int64_t c = 0; c < C; c++) {
            float v = *(const float *)(xp + c * x->nb[1]);
            ss += (double)v * v;
        }
        /* F.normalize clamps the norm (not the square) at eps: x / max(‖x‖, eps). */
        double nrm = sqrt(ss);
        float inv = (float)(1.0 / (nrm > eps ? nrm : (double)eps)) * rootc;
        for (int64_t c = 0; c < C; c++) {
            float v = *(const float *)(xp + c * x->nb[1]) * inv;
            if (gv) v *= gv[c];
            if (bv) v += bv[c];
            *(float *)(yp + c * y->nb[1]) = v;
        }
    }
    return LYRA_OK;
}

lyra_status cpu_group_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int groups, const lyra_tensor *w,
                           const lyra_tensor *b, float eps) {
    LYRA_TRY(cpu_require_f32("group_norm", 2, y, x));
    const float *wv, *bv;
    if (!params_f32(be, w, b, &wv, &bv, 0, "group_norm")) return LYRA_ERR_OOM;
    int64_t B = x->ne[0], C = x->ne[1], Sp = 1, cg = C / groups;
    for (int i = 2; i < x->ndim; i++) Sp *= x->ne[i];
    int64_t n = cg * Sp;
#pragma omp parallel for num_threads(cpu_threads(be, B * C * Sp)) schedule(static)
    for (int64_t bg = 0; bg < B * groups; bg++) {
        int64_t bi = bg / groups, g = bg % groups;
        double mean = 0.0, var = 0.0;
        for (int64_t c = g * cg; c < (g + 1) * cg; c++)
            for (int64_t s = 0; s < Sp; s++)
                mean += *(const float *)((const char *)x->data + bi * x->nb[0] + c * x->nb[1] + spatial_offset(x, s));
        mean /= (double)(n ? n : 1);
        for (int64_t c = g * cg; c < (g + 1) * cg; c++)
            for (int64_t s = 0; s < Sp; s++) {
                double d = *(const float *)((const char *)x->data + bi * x->nb[0] + c * x->nb[1] +
                                            spatial_offset(x, s)) - mean;
                var += d * d;
            }
        var /= (double)(n ? n : 1);
        float inv = (float)(1.0 / sqrt(var + (double)eps)), m = (float)mean;
        for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
            float sc = inv * (wv ? wv[c] : 1.0f), sh = bv ? bv[c] : 0.0f;
            for (int64_t s = 0; s < Sp; s++) {
                float v = *(const float *)((const char *)x->data + bi * x->nb[0] + c * x->nb[1] + spatial_offset(x, s));
                *(float *)((char *)y->data + bi * y->nb[0] + c * y->nb[1] + spatial_offset(y, s)) = (v - m) * sc + sh;
            }
        }
    }
    return LYRA_OK;
}

lyra_status cpu_softmax(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float scale) {
    LYRA_TRY(cpu_require_f32("softmax", 2, y, x));
    int64_t rows = cpu_rows(x), n = cpu_inner(x), sx = cpu_inner_stride(x, x), sy = cpu_inner_stride(y, x);
#pragma omp parallel for num_threads(cpu_threads(be, 4 * rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xp = (const float *)ROW_PTR(x, x, r);
        float *yp = (float *)ROW_PTR(y, x, r);
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, xp[i * sx] * scale);
        if (mx == -INFINITY) { /* all -inf (or empty): zeros, like a fully masked attention row */
            for (int64_t i = 0; i < n; i++) yp[i * sy] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            float e = expf(xp[i * sx] * scale - mx);
            yp[i * sy] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; i++) yp[i * sy] *= inv;
    }
    return LYRA_OK;
}
