/* CPU convolutions: one im2col + SGEMM core for conv3d (conv2d is the T = 1 case), tiled over output rows so
 * the column buffer stays ~16 MB (a 3×3×3 conv at 480×832 would otherwise need gigabytes); ConvTranspose2d
 * as GEMM + col2im. */
#include "nn/cpu/cpu_internal.h"

#define COL_FLOATS ((int64_t)1 << 22)

typedef struct conv_geom {
    int64_t B, Ci, T, H, W, Co, kt, kh, kw, To, Ho, Wo;
    int st, sh, sw, pf, pt, pl; /* strides; front, top, left padding */
    lyra_pad_mode mode;
} conv_geom;

/* Weights (Co, Ci·kt·kh·kw) as contiguous f32 in buf (or w's own data). */
static const float *weights_f32(const lyra_tensor *w, float *buf) { return cpu_as_f32(w, buf); }

static void im2col(float *col, const conv_geom *g, const lyra_tensor *x, const lyra_tensor *prefix, int64_t b,
                   int64_t to, int64_t oh0, int64_t nrows, int nt) {
    int64_t KK = g->Ci * g->kt * g->kh * g->kw, n = nrows * g->Wo;
    int64_t m = prefix ? prefix->ne[2] : 0;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t kk = 0; kk < KK; kk++) {
        int64_t s = kk % g->kw, r = (kk / g->kw) % g->kh, a = (kk / (g->kw * g->kh)) % g->kt;
        int64_t ci = kk / (g->kw * g->kh * g->kt);
        float *dst = col + kk * n;
        int64_t ti = to * g->st + a - g->pf;
        const char *plane = NULL; /* (H, W) plane with strides nb3, nb4 of `src` */
        const lyra_tensor *src = x;
        if (ti >= 0 && ti < g->T) {
            plane = (const char *)x->data + b * x->nb[0] + ci * x->nb[1] + ti * x->nb[2];
        } else if (ti < 0 && ti >= -m) { /* cached frames occupy times −m..−1 */
            src = prefix;
            plane = (const char *)prefix->data + b * prefix->nb[0] + ci * prefix->nb[1] + (m + ti) * prefix->nb[2];
        }
        if (!plane) {
            memset(dst, 0, (size_t)n * sizeof(float));
            continue;
        }
        for (int64_t oy = 0; oy < nrows; oy++) {
            int64_t iy = (oh0 + oy) * g->sh + r - g->pt;
            float *d = dst + oy * g->Wo;
            if (iy < 0 || iy >= g->H) {
                if (g->mode == LYRA_PAD_ZERO) {
                    memset(d, 0, (size_t)g->Wo * sizeof(float));
                    continue;
                }
                iy = iy < 0 ? 0 : g->H - 1;
            }
            const char *row = plane + iy * src->nb[3];
            if (g->sw == 1 && src->nb[4] == 4) {
                /* unit stride (every 3×3 conv): the in-bounds span is one memcpy and the padded edges are
                 * fills, instead of a bounds check and a strided load per element */
                int64_t lo = g->pl - s, hi = g->W + g->pl - s; /* ox with 0 <= ox + s - pl < W */
                if (lo < 0) lo = 0;
                if (hi > g->Wo) hi = g->Wo;
                if (hi < lo) hi = lo;
                const float *rf = (const float *)row;
                float left = g->mode == LYRA_PAD_ZERO ? 0.0f : rf[0];
                float right = g->mode == LYRA_PAD_ZERO ? 0.0f : rf[g->W - 1];
                for (int64_t ox = 0; ox < lo; ox++) d[ox] = left;
                if (hi > lo) memcpy(d + lo, rf + lo + s - g->pl, (size_t)(hi - lo) * sizeof(float));
                for (int64_t ox = hi; ox < g->Wo; ox++) d[ox] = right;
                continue;
            }
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                int64_t ix = ox * g->sw + s - g->pl;
                if (ix < 0 || ix >= g->W) {
                    if (g->mode == LYRA_PAD_ZERO) { d[ox] = 0.0f; continue; }
                    ix = ix < 0 ? 0 : g->W - 1;
                }
                d[ox] = *(const float *)(row + ix * src->nb[4]);
            }
        }
    }
}

static lyra_status conv_core(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             const lyra_tensor *b, const lyra_tensor *prefix, const conv_geom *g) {
    int64_t KK = g->Ci * g->kt * g->kh * g->kw, plane = g->Ho * g->Wo, vol = g->To * plane;
    int pointwise = g->kt == 1 && g->kh == 1 && g->kw == 1 && g->st == 1 && g->sh == 1 && g->sw == 1 &&
                    g->pf == 0 && g->pt == 0 && g->pl == 0 && g->To == g->T && g->Ho == g->H && g->Wo == g->W &&
                    lyra_tensor_is_contiguous(x);
    int64_t rows = (KK > 0 && g->Wo > 0) ? COL_FLOATS / (KK * g->Wo) : g->Ho;
    if (rows < 1) rows = 1;
    if (rows > g->Ho) rows = g->Ho;
    int64_t nw = cpu_f32_need(w), nbias = cpu_f32_need(b), ncol = pointwise ? 0 : KK * rows * g->Wo;
    float *ws = lyra_backend_scratch(be, (size_t)(nw + nbias + ncol) * sizeof(float), "conv");
    if (!ws) return LYRA_ERR_OOM;
    const float *W = weights_f32(w, ws);
    const float *bias = cpu_as_f32(b, ws + nw);
    float *col = ws + nw + nbias;
    int nt = cpu_threads(be, KK * rows * g->Wo);
    for (int64_t bi = 0; bi < g->B; bi++) {
        float *yb = (float *)y->data + bi * g->Co * vol;
        if (pointwise) {
            const float *xb = (const float *)((const char *)x->data + bi * x->nb[0]);
            cpu_sgemm(0, g->Co, vol, KK, 1.0f, W, KK, xb, vol, 0.0f, yb, vol, be->n_threads);
        } else {
            for (int64_t to = 0; to < g->To; to++)
                for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += rows) {
                    int64_t nr = g->Ho - oh0 < rows ? g->Ho - oh0 : rows;
                    im2col(col, g, x, prefix, bi, to, oh0, nr, nt);
                    cpu_sgemm(0, g->Co, nr * g->Wo, KK, 1.0f, W, KK, col, nr * g->Wo, 0.0f,
                              yb + to * plane + oh0 * g->Wo, vol, be->n_threads);
                }
        }
        if (bias) {
#pragma omp parallel for num_threads(cpu_threads(be, g->Co * vol)) schedule(static)
            for (int64_t co = 0; co < g->Co; co++)
                for (int64_t i = 0; i < vol; i++) yb[co * vol + i] += bias[co];
        }
    }
    return LYRA_OK;
}

lyra_status cpu_conv3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                       const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p) {
    LYRA_TRY(cpu_require_f32("conv3d", 3, y, x, prefix));
    conv_geom g = {x->ne[0], x->ne[1], x->ne[2], x->ne[3], x->ne[4], w->ne[0], w->ne[2], w->ne[3], w->ne[4],
                   y->ne[2], y->ne[3], y->ne[4], p->stride_t, p->stride_h, p->stride_w, p->pad_front, p->pad_top,
                   p->pad_left, p->pad_mode};
    return conv_core(be, y, x, w, b, prefix, &g);
}

/* 4-d (B, C, H, W) as 5-d (B, C, 1, H, W). */
static lyra_tensor as5d(const lyra_tensor *t) {
    lyra_tensor v = *t;
    v.ndim = 5;
    v.ne[0] = t->ne[0]; v.ne[1] = t->ne[1]; v.ne[2] = 1; v.ne[3] = t->ne[2]; v.ne[4] = t->ne[3];
    v.nb[0] = t->nb[0]; v.nb[1] = t->nb[1]; v.nb[2] = 0; v.nb[3] = t->nb[2]; v.nb[4] = t->nb[3];
    return v;
}

lyra_status cpu_conv2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                       const lyra_tensor *b, const lyra_conv2d_params *p) {
    LYRA_TRY(cpu_require_f32("conv2d", 2, y, x));
    lyra_tensor x5 = as5d(x), y5 = as5d(y);
    conv_geom g = {x->ne[0], x->ne[1], 1, x->ne[2], x->ne[3], w->ne[0], 1, w->ne[2], w->ne[3],
                   1, y->ne[2], y->ne[3], 1, p->stride_h, p->stride_w, 0, p->pad_top, p->pad_left, p->pad_mode};
    return conv_core(be, &y5, &x5, w, b, NULL, &g);
}

lyra_status cpu_conv_transpose2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                 const lyra_tensor *b, int stride, int padding) {
    LYRA_TRY(cpu_require_f32("conv_transpose2d", 2, y, x));
    int64_t B = x->ne[0], Ci = x->ne[1], H = x->ne[2], W = x->ne[3];
    int64_t Co = w->ne[1], kh = w->ne[2], kw = w->ne[3], Ho = y->ne[2], Wo = y->ne[3];
    int64_t R = Co * kh * kw, HW = H * W;
    int64_t rows = (R > 0 && W > 0) ? COL_FLOATS / (R * W) : H;
    if (rows < 1) rows = 1;
    if (rows > H) rows = H;
    int64_t nbias = cpu_f32_need(b);
    /* wt (R, Ci): the (Ci, R) weight transposed, so col = wt · x is a plain NN product. */
    float *ws = lyra_backend_scratch(be, (size_t)(R * Ci + nbias + Ci * HW + R * rows * W) * sizeof(float),
                                     "conv_transpose2d");
    if (!ws) return LYRA_ERR_OOM;
    float *wt = ws, *bb = wt + R * Ci, *xb = bb + nbias, *col = xb + Ci * HW;
    for (int64_t ci = 0; ci < Ci; ci++)
        for (int64_t r = 0; r < R; r++) {
            int64_t co = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
            wt[r * Ci + ci] = cpu_load((const char *)w->data + ci * w->nb[0] + co * w->nb[1] + ky * w->nb[2] +
                                       kx * w->nb[3], w->dtype);
        }
    const float *bias = cpu_as_f32(b, bb);
    for (int64_t bi = 0; bi < B; bi++) {
        lyra_tensor xv = *x;
        xv.ndim = 3;
        xv.data = (char *)x->data + bi * x->nb[0];
        xv.ne[0] = Ci; xv.ne[1] = H; xv.ne[2] = W;
        xv.nb[0] = x->nb[1]; xv.nb[1] = x->nb[2]; xv.nb[2] = x->nb[3];
        cpu_gather_f32(xb, &xv);
        float *yb = (float *)y->data + bi * Co * Ho * Wo;
        for (int64_t co = 0; co < Co; co++)
            for (int64_t i = 0; i < Ho * Wo; i++) yb[co * Ho * Wo + i] = bias ? bias[co] : 0.0f;
        for (int64_t h0 = 0; h0 < H; h0 += rows) {
            int64_t nr = H - h0 < rows ? H - h0 : rows, n = nr * W;
            /* col (R, n) = wt (R, Ci) · x[:, h0:h0+nr, :] (Ci, n), the x rows have stride HW */
            cpu_sgemm(0, R, n, Ci, 1.0f, wt, Ci, xb + h0 * W, HW, 0.0f, col, n, be->n_threads);
            /* col2im: scatter-add; parallel over output channels so no two threads touch one pixel */
#pragma omp parallel for num_threads(cpu_threads(be, R * n)) schedule(static)
            for (int64_t co = 0; co < Co; co++)
                for (int64_t ky = 0; ky < kh; ky++)
                    for (int64_t kx = 0; kx < kw; kx++) {
                        const float *c = col + ((co * kh + ky) * kw + kx) * n;
                        for (int64_t iy = 0; iy < nr; iy++) {
                            int64_t oy = (h0 + iy) * stride - padding + ky;
                            if (oy < 0 || oy >= Ho) continue;
                            float *yr = yb + (co * Ho + oy) * Wo;
                            for (int64_t ix = 0; ix < W; ix++) {
                                int64_t ox = ix * stride - padding + kx;
                                if (ox >= 0 && ox < Wo) yr[ox] += c[iy * W + ix];
                            }
                        }
                    }
        }
    }
    return LYRA_OK;
}
