/* CPU convolutions: conv3d (conv2d is the T = 1 case) as a blocked implicit GEMM, y (Co, pixels) = W (Co, K) ·
 * col (K, pixels) with K = Ci·kt·kh·kw: the weights are packed once per call into 6-row panels, each thread packs
 * the im2col columns of its own tile of output pixels straight into 16-pixel panels (no full column matrix, no
 * second copy inside a BLAS), and a register-tiled micro-kernel (cpu_convgemm.c) multiplies them. Tiles are
 * handed out dynamically from one OpenMP region, so a core that is slowed by other processes does not hold the
 * others at a barrier. The causal time prefix (cached frames) is read in place. ConvTranspose2d is GEMM + col2im.
 */
#include "nn/cpu/cpu_convgemm.h"
#include "nn/cpu/cpu_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define COL_FLOATS ((int64_t)1 << 22)
#define KC_MAX 160        /* k steps per block (measured on Zen 4, AVX2: 160 beats 256 and 512) */
#define TILE_PIXELS 128   /* output pixels per task: 8 B panels, 128 KB per k block (L2) */

enum { MR = CPU_CONV_MR, NR = CPU_CONV_NR };

typedef struct conv_geom {
    int64_t B, Ci, T, H, W, Co, kt, kh, kw, To, Ho, Wo;
    int st, sh, sw, pf, pt, pl; /* strides; front, top, left padding */
    lyra_pad_mode mode;
} conv_geom;

/* The input plane (H, W) feeding output frame `to` through time tap `a`: a frame of x, a cached frame of the
 * prefix (times −m..−1), or NULL for a zero frame; *src gets the tensor whose row/column strides apply. */
static const char *input_plane(const conv_geom *g, const lyra_tensor *x, const lyra_tensor *prefix, int64_t b,
                               int64_t ci, int64_t to, int64_t a, const lyra_tensor **src) {
    int64_t m = prefix ? prefix->ne[2] : 0, ti = to * g->st + a - g->pf;
    *src = x;
    if (ti >= 0 && ti < g->T) return (const char *)x->data + b * x->nb[0] + ci * x->nb[1] + ti * x->nb[2];
    if (ti < 0 && ti >= -m) {
        *src = prefix;
        return (const char *)prefix->data + b * prefix->nb[0] + ci * prefix->nb[1] + (m + ti) * prefix->nb[2];
    }
    return NULL;
}

/* A stretch of one output row inside a tile: pixels (oy, ox0 .. ox0 + n) at tile columns idx .. idx + n. */
typedef struct pixel_run {
    int64_t oy, ox0, n, idx;
} pixel_run;

/* The rows crossed by pixels [p0, p0 + np) (p = oy·Wo + ox); returns the number of runs. */
static int64_t tile_runs(const conv_geom *g, int64_t p0, int64_t np, pixel_run *runs) {
    int64_t nrun = 0;
    for (int64_t p = p0; p < p0 + np;) {
        int64_t oy = p / g->Wo, ox0 = p - oy * g->Wo, n = g->Wo - ox0;
        if (n > p0 + np - p) n = p0 + np - p;
        runs[nrun++] = (pixel_run){oy, ox0, n, p - p0};
        p += n;
    }
    return nrun;
}

/* im2col of one tile: bp[kk·ldb + idx] = column k0 + kk of tile pixel idx, for kk < kc and idx < np; columns
 * np .. ldb stay as they are (zeroed once by the caller so the kernel's padding lanes read zeros). */
static void pack_cols(float *bp, int64_t ldb, const conv_geom *g, const lyra_tensor *x, const lyra_tensor *prefix,
                      int64_t b, int64_t to, const pixel_run *runs, int64_t nrun, int64_t np, int64_t k0, int64_t kc) {
    /* k = ((ci·kt + a)·kh + r)·kw + s, stepped instead of divided per k */
    int64_t s = k0 % g->kw, r = (k0 / g->kw) % g->kh, a = (k0 / (g->kw * g->kh)) % g->kt;
    int64_t ci = k0 / (g->kw * g->kh * g->kt);
    for (int64_t kk = 0; kk < kc; kk++) {
        float *d0 = bp + kk * ldb;
        const lyra_tensor *src;
        const char *plane = input_plane(g, x, prefix, b, ci, to, a, &src);
        if (!plane) {
            memset(d0, 0, (size_t)np * sizeof(float));
        } else {
            int unit = g->sw == 1 && src->nb[4] == 4;
            /* ox range whose input column ox·sw + s − pl is inside [0, W) */
            int64_t lo = g->pl - s > 0 ? (g->pl - s + g->sw - 1) / g->sw : 0;
            int64_t hi = (g->W - 1 + g->pl - s) >= 0 ? (g->W - 1 + g->pl - s) / g->sw + 1 : 0;
            if (hi > g->Wo) hi = g->Wo;
            if (hi < lo) hi = lo;
            for (int64_t u = 0; u < nrun; u++) {
                const pixel_run *ru = &runs[u];
                float *d = d0 + ru->idx;
                int64_t iy = ru->oy * g->sh + r - g->pt;
                if (iy < 0 || iy >= g->H) {
                    if (g->mode == LYRA_PAD_ZERO) {
                        memset(d, 0, (size_t)ru->n * sizeof(float));
                        continue;
                    }
                    iy = iy < 0 ? 0 : g->H - 1;
                }
                const char *row = plane + iy * src->nb[3];
                float left = 0.0f, right = 0.0f;
                if (g->mode != LYRA_PAD_ZERO) {
                    left = *(const float *)row;
                    right = *(const float *)(row + (g->W - 1) * src->nb[4]);
                }
                int64_t e0 = ru->ox0, e1 = ru->ox0 + ru->n;
                int64_t m0 = lo > e0 ? (lo < e1 ? lo : e1) : e0, m1 = hi < e1 ? (hi > m0 ? hi : m0) : e1;
                for (int64_t ox = e0; ox < m0; ox++) d[ox - e0] = left;
                if (unit) {
                    /* the in-bounds span is one copy: a bounds check and a strided load per element otherwise */
                    if (m1 > m0) memcpy(d + m0 - e0, (const float *)row + m0 + s - g->pl, (size_t)(m1 - m0) * 4);
                } else {
                    for (int64_t ox = m0; ox < m1; ox++)
                        d[ox - e0] = *(const float *)(row + (ox * g->sw + s - g->pl) * src->nb[4]);
                }
                for (int64_t ox = m1; ox < e1; ox++) d[ox - e0] = right;
            }
        }
        if (++s == g->kw) {
            s = 0;
            if (++r == g->kh) {
                r = 0;
                if (++a == g->kt) { a = 0; ci++; }
            }
        }
    }
}

/* k blocks of nearly equal length, none over KC_MAX. */
static int64_t k_block(int64_t K) {
    int64_t nkb = (K + KC_MAX - 1) / KC_MAX;
    return nkb ? (K + nkb - 1) / nkb : 1;
}

static lyra_status conv_core(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             const lyra_tensor *b, const lyra_tensor *prefix, const conv_geom *g) {
    int64_t K = g->Ci * g->kt * g->kh * g->kw, plane = g->Ho * g->Wo, vol = g->To * plane, kcb = k_block(K);
    int64_t tiles = (plane + TILE_PIXELS - 1) / TILE_PIXELS, tasks = g->B * g->To * tiles;
    /* B tile rows padded past a multiple of 16 floats: rows 2^k bytes apart would share a few L1 sets */
    int64_t ldb = (TILE_PIXELS + NR - 1) / NR * NR + NR, bsize = ldb * kcb;
    int nt = cpu_threads(be, g->Co * K * vol * g->B / 64);
    if (nt > tasks) nt = (int)(tasks > 0 ? tasks : 1);
    int64_t nw = cpu_f32_need(w), nbias = cpu_f32_need(b);
    float *ws = lyra_backend_scratch(be, (size_t)(nw + nbias + nt * bsize) * sizeof(float), "conv");
    if (!ws) return LYRA_ERR_OOM;
    const float *W = cpu_as_f32(w, ws); /* (Co, K) rows, read in place by the kernel */
    const float *bias = cpu_as_f32(b, ws + nw);
    float *bufs = ws + nw + nbias;
    cpu_conv_kernel kernel = cpu_conv_kernel_select();
    if (K == 0) { /* no inputs: the bias alone */
        for (int64_t i = 0; i < g->B * g->Co; i++)
            for (int64_t v = 0; v < vol; v++) ((float *)y->data)[i * vol + v] = bias ? bias[i % g->Co] : 0.0f;
        return LYRA_OK;
    }
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *bp = bufs + tid * bsize;
        memset(bp, 0, (size_t)bsize * sizeof(float));
        pixel_run runs[TILE_PIXELS + 1];
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++) {
            int64_t bi = task / (g->To * tiles), to = task / tiles % g->To, p0 = task % tiles * TILE_PIXELS;
            int64_t np = plane - p0 < TILE_PIXELS ? plane - p0 : TILE_PIXELS;
            int64_t nrun = tile_runs(g, p0, np, runs);
            if (np < TILE_PIXELS) /* a short last tile: its padding lanes must read zeros */
                for (int64_t kk = 0; kk < kcb; kk++) memset(bp + kk * ldb + np, 0, (size_t)(ldb - np) * 4);
            float *yt = (float *)y->data + bi * g->Co * vol + to * plane + p0;
            for (int64_t k0 = 0; k0 < K; k0 += kcb) {
                int64_t kc = K - k0 < kcb ? K - k0 : kcb;
                pack_cols(bp, ldb, g, x, prefix, bi, to, runs, nrun, np, k0, kc);
                for (int64_t i = 0; i < g->Co; i += MR) {
                    int mr = g->Co - i < MR ? (int)(g->Co - i) : MR;
                    for (int64_t j = 0; j < np; j += NR) {
                        int nr = np - j < NR ? (int)(np - j) : NR;
                        kernel(kc, W + i * K + k0, K, bp + j, ldb, yt + i * vol + j, vol, k0 > 0,
                               bias ? bias + i : NULL, mr, nr);
                    }
                }
            }
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
