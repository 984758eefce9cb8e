/* CPU resampling: nearest 2× upsample, separable resize (nearest / bilinear / bicubic, align_corners, PyTorch
 * antialias), average pooling. Coordinates follow PyTorch's float arithmetic (docs/REFERENCES.md#resampling, upstream
 * CLIP:519-523). */
#include <math.h>

#include "nn/cpu/cpu_internal.h"
#include "nn/resize_table.h"

/* Byte offset of plane p (flat index over the dims before the last `nsp`) of t. */
static inline int64_t plane_offset(const lyra_tensor *t, int nsp, int64_t p) {
    int64_t off = 0;
    for (int i = t->ndim - nsp - 1; i >= 0; i--) {
        off += (p % t->ne[i]) * t->nb[i];
        p /= t->ne[i];
    }
    return off;
}
static inline int64_t n_planes(const lyra_tensor *t, int nsp) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim - nsp; i++) n *= t->ne[i];
    return n;
}

lyra_status cpu_upsample_nearest2x(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    LYRA_TRY(cpu_require_f32("upsample_nearest2x", 2, y, x));
    int n = x->ndim;
    int64_t P = n_planes(x, 2), H = x->ne[n - 2], W = x->ne[n - 1], sh = x->nb[n - 2], sw = x->nb[n - 1];
#pragma omp parallel for num_threads(cpu_threads(be, 4 * P * H * W)) schedule(static)
    for (int64_t ph = 0; ph < P * H; ph++) {
        int64_t p = ph / H, i = ph % H;
        const char *xr = (const char *)x->data + plane_offset(x, 2, p) + i * sh;
        float *y0 = (float *)y->data + (p * 2 * H + 2 * i) * 2 * W, *y1 = y0 + 2 * W;
        for (int64_t j = 0; j < W; j++) {
            float v = *(const float *)(xr + j * sw);
            y0[2 * j] = y0[2 * j + 1] = y1[2 * j] = y1[2 * j + 1] = v;
        }
    }
    return LYRA_OK;
}

static inline float cubic1(float x, float A) { return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f; }
static inline float cubic2(float x, float A) { return ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A; }

static float aa_filter(lyra_resize_mode mode, float x) {
    x = fabsf(x);
    if (mode == LYRA_RESIZE_BILINEAR) return x < 1.0f ? 1.0f - x : 0.0f;
    const float a = -0.5f; /* PyTorch's antialiased bicubic uses a = -0.5 (PIL), not -0.75 */
    if (x < 1.0f) return cubic1(x, a);
    if (x < 2.0f) return cubic2(x, a);
    return 0.0f;
}

int lyra_resize_taps(int64_t in, int64_t out, const lyra_resize_params *p, double ratio) {
    if (!p->antialias) return p->mode == LYRA_RESIZE_NEAREST ? 1 : p->mode == LYRA_RESIZE_BILINEAR ? 2 : 4;
    float scale = ratio > 0 ? (float)ratio : (float)in / (float)out;
    float support = (p->mode == LYRA_RESIZE_BILINEAR ? 1.0f : 2.0f) * (scale >= 1.0f ? scale : 1.0f);
    return (int)ceilf(support) * 2 + 1;
}

void lyra_resize_table(int64_t in, int64_t out, const lyra_resize_params *p, double ratio, int taps, int64_t *idx,
                       float *wt) {
    float scale;
    if (p->align_corners && p->mode != LYRA_RESIZE_NEAREST)
        scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    else
        scale = ratio > 0 ? (float)ratio : (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        int64_t *ix = idx + o * taps;
        float *w = wt + o * taps;
        for (int k = 0; k < taps; k++) { ix[k] = 0; w[k] = 0.0f; }
        if (p->antialias) {
            float support = (p->mode == LYRA_RESIZE_BILINEAR ? 1.0f : 2.0f) * (scale >= 1.0f ? scale : 1.0f);
            float inv = scale >= 1.0f ? 1.0f / scale : 1.0f;
            float center = scale * ((float)o + 0.5f);
            int64_t xmin = (int64_t)(center - support + 0.5f);
            if (xmin < 0) xmin = 0;
            int64_t xmax = (int64_t)(center + support + 0.5f);
            if (xmax > in) xmax = in;
            float total = 0.0f;
            int k = 0;
            for (int64_t j = xmin; j < xmax && k < taps; j++, k++) {
                ix[k] = j;
                w[k] = aa_filter(p->mode, ((float)(j - xmin) + (float)xmin - center + 0.5f) * inv);
                total += w[k];
            }
            if (total != 0.0f)
                for (int q = 0; q < k; q++) w[q] /= total;
        } else if (p->mode == LYRA_RESIZE_NEAREST) {
            int64_t s = (int64_t)floorf((float)o * scale);
            ix[0] = s < in - 1 ? s : in - 1;
            w[0] = 1.0f;
        } else if (p->mode == LYRA_RESIZE_BILINEAR) {
            float src = p->align_corners ? (float)o * scale : ((float)o + 0.5f) * scale - 0.5f;
            if (src < 0.0f) src = 0.0f;
            int64_t i0 = (int64_t)src;
            int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
            float l1 = src - (float)i0;
            ix[0] = i0; w[0] = 1.0f - l1;
            ix[1] = i1; w[1] = l1;
        } else {
            /* PyTorch forms the half-pixel coordinate scale·(o + 0.5) − 0.5 with one rounding (its kernel's
             * contracted multiply-add), not two f32 roundings: exact product and difference, then to f32. */
            float src = p->align_corners ? (float)o * scale : (float)((double)scale * ((double)o + 0.5) - 0.5);
            float fl = floorf(src);
            int64_t i = (int64_t)fl;
            float t = src - fl;
            const float A = -0.75f;
            float c[4] = {cubic2(t + 1.0f, A), cubic1(t, A), cubic1(1.0f - t, A), cubic2(2.0f - t, A)};
            for (int k = 0; k < 4; k++) {
                int64_t j = i - 1 + k;
                ix[k] = j < 0 ? 0 : j > in - 1 ? in - 1 : j;
                w[k] = c[k];
            }
        }
    }
}

lyra_status cpu_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p) {
    LYRA_TRY(cpu_require_f32("resize", 2, y, x));
    int n = x->ndim;
    int64_t P = n_planes(x, 2), H = x->ne[n - 2], W = x->ne[n - 1], Ho = y->ne[n - 2], Wo = y->ne[n - 1];
    int th = lyra_resize_taps(H, Ho, p, p->ratio_h), tw = lyra_resize_taps(W, Wo, p, p->ratio_w);
    size_t bytes = (size_t)(Ho * th + Wo * tw) * (sizeof(int64_t) + sizeof(float)) + (size_t)(P * H * Wo) * sizeof(float);
    char *ws = lyra_backend_scratch(be, bytes, "resize");
    if (!ws) return LYRA_ERR_OOM;
    int64_t *ih = (int64_t *)ws, *iw = ih + Ho * th;
    float *wh = (float *)(iw + Wo * tw), *ww = wh + Ho * th, *tmp = ww + Wo * tw;
    lyra_resize_table(H, Ho, p, p->ratio_h, th, ih, wh);
    lyra_resize_table(W, Wo, p, p->ratio_w, tw, iw, ww);
    int64_t sh = x->nb[n - 2], sw = x->nb[n - 1];
    /* pass 1: along W for every input row */
#pragma omp parallel for num_threads(cpu_threads(be, P * H * Wo * tw)) schedule(static)
    for (int64_t ph = 0; ph < P * H; ph++) {
        int64_t pl = ph / H, i = ph % H;
        const char *xr = (const char *)x->data + plane_offset(x, 2, pl) + i * sh;
        float *t = tmp + ph * Wo;
        for (int64_t o = 0; o < Wo; o++) {
            float acc = 0.0f;
            for (int k = 0; k < tw; k++) acc += ww[o * tw + k] * *(const float *)(xr + iw[o * tw + k] * sw);
            t[o] = acc;
        }
    }
    /* pass 2: along H */
#pragma omp parallel for num_threads(cpu_threads(be, P * Ho * Wo * th)) schedule(static)
    for (int64_t po = 0; po < P * Ho; po++) {
        int64_t pl = po / Ho, o = po % Ho;
        float *yr = (float *)y->data + po * Wo;
        const float *tp = tmp + pl * H * Wo;
        for (int64_t j = 0; j < Wo; j++) yr[j] = 0.0f;
        for (int k = 0; k < th; k++) {
            float wk = wh[o * th + k];
            const float *tr = tp + ih[o * th + k] * Wo;
            for (int64_t j = 0; j < Wo; j++) yr[j] += wk * tr[j];
        }
    }
    return LYRA_OK;
}

lyra_status cpu_avg_pool3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw) {
    LYRA_TRY(cpu_require_f32("avg_pool3d", 2, y, x));
    int n = x->ndim;
    int64_t P = n_planes(x, 3), To = y->ne[n - 3], Ho = y->ne[n - 2], Wo = y->ne[n - 1];
    int64_t st = x->nb[n - 3], sh = x->nb[n - 2], sw = x->nb[n - 1];
    float inv = 1.0f / (float)(kt * kh * kw);
#pragma omp parallel for num_threads(cpu_threads(be, P * To * Ho * Wo * kt * kh * kw)) schedule(static)
    for (int64_t q = 0; q < P * To * Ho; q++) {
        int64_t pl = q / (To * Ho), t = (q / Ho) % To, h = q % Ho;
        const char *xb = (const char *)x->data + plane_offset(x, 3, pl);
        float *yr = (float *)y->data + q * Wo;
        for (int64_t w = 0; w < Wo; w++) {
            float acc = 0.0f;
            for (int a = 0; a < kt; a++)
                for (int r = 0; r < kh; r++)
                    for (int s = 0; s < kw; s++)
                        acc += *(const float *)(xb + (t * kt + a) * st + (h * kh + r) * sh + (w * kw + s) * sw);
            yr[w] = acc * inv;
        }
    }
    return LYRA_OK;
}
