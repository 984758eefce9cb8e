// Convolutions as GEMMs on cuBLASLt: conv3d (conv2d is the T = 1 case) through im2col tiles over the flat output
// positions, with the Wan VAE's causal time padding (cached prefix frames, then zeros; upstream TOK:70-94, TOK:97-109,
// TOK:120-198); 1×1×1 convolutions straight on the input; ConvTranspose2d as one GEMM into columns plus a gather
// (col2im without atomics: each output pixel sums the taps that land on it).
#include <string.h>

#include "cuda_internal.h"

#define COL_ELEMS ((int64_t)1 << 26) /* im2col tile: 64M elements (256 MB f32, 128 MB bf16) */

namespace {

struct conv_geom {
    int64_t B, Ci, T, H, W, Co, kt, kh, kw, To, Ho, Wo;
    int st, sh, sw, pf, pt, pl, replicate;
};

/* col (KK, n) row-major with row stride ld >= n, entry (kk, q) = the input sample tap kk of output position
 * p0 + q (flat over To·Ho·Wo). */
__global__ void im2col_kernel(char *col, int cdt, cu_tensor x, cu_tensor prefix, conv_geom g, int64_t b, int64_t p0,
                              int64_t n, int64_t ld, int64_t total) {
    int64_t m = prefix.data ? prefix.ne[2] : 0;
    int ces = cu_esize(cdt);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t kk = i / n, q = i % n, pos = p0 + q;
        int64_t s = kk % g.kw, r = (kk / g.kw) % g.kh, a = (kk / (g.kw * g.kh)) % g.kt, ci = kk / (g.kw * g.kh * g.kt);
        int64_t ox = pos % g.Wo, oy = (pos / g.Wo) % g.Ho, to = pos / (g.Wo * g.Ho);
        int64_t ti = to * g.st + a - g.pf;
        const cu_tensor *src = NULL;
        const char *plane = NULL;
        if (ti >= 0 && ti < g.T) {
            src = &x;
            plane = x.data + b * x.nb[0] + ci * x.nb[1] + ti * x.nb[2];
        } else if (ti < 0 && ti >= -m) { /* cached frames occupy times −m..−1 */
            src = &prefix;
            plane = prefix.data + b * prefix.nb[0] + ci * prefix.nb[1] + (m + ti) * prefix.nb[2];
        }
        float v = 0.0f;
        if (plane) {
            int64_t iy = oy * g.sh + r - g.pt, ix = ox * g.sw + s - g.pl;
            bool in = true;
            if (iy < 0 || iy >= g.H) {
                if (!g.replicate) in = false;
                iy = iy < 0 ? 0 : g.H - 1;
            }
            if (ix < 0 || ix >= g.W) {
                if (!g.replicate) in = false;
                ix = ix < 0 ? 0 : g.W - 1;
            }
            if (in) v = cu_load(plane + iy * src->nb[3] + ix * src->nb[4], src->dtype);
        }
        cu_store(col + (kk * ld + q) * ces, cdt, v);
    }
}

/* y (B, Co, vol) contiguous += bias[co] */
__global__ void bias_kernel(char *y, int ydt, const char *b, int bdt, int64_t bnb, int64_t Co, int64_t vol,
                            int64_t total) {
    int es = cu_esize(ydt);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t co = (i / vol) % Co;
        cu_store(y + i * es, ydt, cu_load(y + i * es, ydt) + cu_load(b + co * bnb, bdt));
    }
}

/* y[b, co, oy, ox] = bias[co] + Σ col[(co·kh + ky)·kw + kx, iy·W + ix] over the taps with oy = iy·s − pad + ky */
__global__ void col2im_kernel(char *y, int ydt, const float *col, const char *b, int bdt, int64_t bnb, int64_t Co,
                              int64_t kh, int64_t kw, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int stride,
                              int padding, int64_t total) {
    int es = cu_esize(ydt);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % Wo, oy = (i / Wo) % Ho, co = (i / (Wo * Ho)) % Co;
        float acc = b ? cu_load(b + co * bnb, bdt) : 0.0f;
        for (int64_t ky = 0; ky < kh; ky++) {
            int64_t ny = oy + padding - ky;
            if (ny < 0 || ny % stride) continue;
            int64_t iy = ny / stride;
            if (iy >= H) continue;
            for (int64_t kx = 0; kx < kw; kx++) {
                int64_t nx = ox + padding - kx;
                if (nx < 0 || nx % stride) continue;
                int64_t ix = nx / stride;
                if (ix >= W) continue;
                acc += col[((co * kh + ky) * kw + kx) * H * W + iy * W + ix];
            }
        }
        cu_store(y + i * es, ydt, acc);
    }
}

lyra_status conv_core(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                      const lyra_tensor *b, const lyra_tensor *prefix, const conv_geom &g) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype) || (prefix && !cu_is_float(prefix->dtype)))
        return lyra_error(LYRA_ERR_TYPE, "conv: the CUDA backend computes f32/bf16/f16 tensors");
    cuda_state *st = cu_st(be);
    int64_t KK = g.Ci * g.kt * g.kh * g.kw, vol = g.To * g.Ho * g.Wo;
    if (!g.B || !g.Co || !vol) return LYRA_OK;
    lyra_dtype gt = x->dtype;
    int es = (int)lyra_dtype_size(gt);
    void *own[3] = {NULL, NULL, NULL};
    lyra_status s = LYRA_OK;
    const void *W;
    lyra_tensor wf = *w; /* (Co, Ci, kt, kh, kw) or (Co, Ci, kh, kw): contiguous it is the (Co, KK) matrix */
    s = cu_contiguous(be, &wf, gt, &W, &own[0], "conv weights");
    lyra_dtype tc = (y->dtype == gt || y->dtype == LYRA_DTYPE_F32) ? y->dtype : LYRA_DTYPE_F32;
    char *Y = (char *)y->data;
    if (s == LYRA_OK && tc != y->dtype) {
        Y = (char *)cu_alloc(be, (size_t)(g.B * g.Co * vol) * sizeof(float), "conv output");
        own[1] = Y;
        if (!Y) s = LYRA_ERR_OOM;
    }
    int ces = (int)lyra_dtype_size(tc);
    int pointwise = g.kt == 1 && g.kh == 1 && g.kw == 1 && g.st == 1 && g.sh == 1 && g.sw == 1 && g.pf == 0 &&
                    g.pt == 0 && g.pl == 0 && g.To == g.T && g.Ho == g.H && g.Wo == g.W &&
                    lyra_tensor_is_contiguous(x) && x->dtype == gt;
    cu_gemm_desc gd;
    memset(&gd, 0, sizeof gd);
    gd.transa = 0;
    gd.transb = 0;
    gd.M = g.Co;
    gd.K = KK;
    gd.A = W; gd.ta = cu_dt(gt); gd.lda = KK;
    gd.tb = cu_dt(gt);
    gd.tc = cu_dt(tc); gd.ldc = vol;
    gd.batch = 1;
    gd.alpha = 1.0f;
    if (s == LYRA_OK && pointwise) {
        for (int64_t bi = 0; bi < g.B && s == LYRA_OK; bi++) {
            gd.N = vol;
            gd.B = (const char *)x->data + bi * x->nb[0];
            gd.ldb = vol;
            gd.C = Y + bi * g.Co * vol * ces;
            s = cu_gemm(be, &gd);
        }
    } else if (s == LYRA_OK) {
        /* tile width a multiple of 64 columns and a row stride rounded up to 64, so that every row of the column
         * matrix starts 128-byte aligned in bf16 (cuBLASLt's fast kernels), a single short tile and the tail
         * tile included */
        int64_t n = KK > 0 ? COL_ELEMS / KK : vol;
        n = n < 64 ? 64 : n & ~(int64_t)63;
        if (n > vol) n = vol;
        int64_t ld = (n + 63) & ~(int64_t)63;
        char *col = (char *)cu_alloc(be, (size_t)(KK * ld) * es, "conv im2col");
        own[2] = col;
        if (!col) s = LYRA_ERR_OOM;
        cu_tensor cx = cu_tensor_of(x), cp;
        if (prefix) cp = cu_tensor_of(prefix);
        else memset(&cp, 0, sizeof cp);
        for (int64_t bi = 0; bi < g.B && s == LYRA_OK; bi++)
            for (int64_t p0 = 0; p0 < vol && s == LYRA_OK; p0 += n) {
                int64_t nn = vol - p0 < n ? vol - p0 : n, total = KK * nn;
                cu_launch(im2col_kernel, cu_blocks(total, 256), 256, 0, st->stream, col, (int)gt, cx, cp, g, bi, p0, nn,
                          ld, total);
                cudaError_t e = cudaGetLastError();
                if (e != cudaSuccess) s = cu_error(e, "conv im2col");
                gd.N = nn;
                gd.B = col;
                gd.ldb = ld;
                gd.C = Y + (bi * g.Co * vol + p0) * ces;
                if (s == LYRA_OK) s = cu_gemm(be, &gd);
            }
    }
    if (s == LYRA_OK && b) {
        int64_t total = g.B * g.Co * vol;
        cu_launch(bias_kernel, cu_blocks(total, 256), 256, 0, st->stream, Y, (int)tc, (const char *)b->data, (int)b->dtype,
                                                                  b->nb[0], g.Co, vol, total);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "conv bias");
    }
    if (s == LYRA_OK && tc != y->dtype) {
        lyra_tensor t = lyra_tensor_make(Y, tc, y->ndim, y->ne);
        t.device = LYRA_DEVICE_CUDA;
        s = cu_copy(be, y, &t);
    }
    for (int i = 0; i < 3; i++) cu_free(be, own[i]);
    return s;
}

/* 4-d (B, C, H, W) as 5-d (B, C, 1, H, W). */
lyra_tensor as5d(const lyra_tensor *t) {
    lyra_tensor v = *t;
    v.ndim = 5;
    v.ne[0] = t->ne[0]; v.ne[1] = t->ne[1]; v.ne[2] = 1; v.ne[3] = t->ne[2]; v.ne[4] = t->ne[3];
    v.nb[0] = t->nb[0]; v.nb[1] = t->nb[1]; v.nb[2] = 0; v.nb[3] = t->nb[2]; v.nb[4] = t->nb[3];
    return v;
}

} // namespace

lyra_status cu_op_conv3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                         const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p) {
    conv_geom g = {x->ne[0], x->ne[1], x->ne[2], x->ne[3], x->ne[4], w->ne[0], w->ne[2], w->ne[3], w->ne[4],
                   y->ne[2], y->ne[3], y->ne[4], p->stride_t, p->stride_h, p->stride_w, p->pad_front, p->pad_top,
                   p->pad_left, p->pad_mode == LYRA_PAD_REPLICATE};
    return conv_core(be, y, x, w, b, prefix, g);
}

lyra_status cu_op_conv2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                         const lyra_tensor *b, const lyra_conv2d_params *p) {
    lyra_tensor x5 = as5d(x), y5 = as5d(y);
    conv_geom g = {x->ne[0], x->ne[1], 1, x->ne[2], x->ne[3], w->ne[0], 1, w->ne[2], w->ne[3],
                   1, y->ne[2], y->ne[3], 1, p->stride_h, p->stride_w, 0, p->pad_top, p->pad_left,
                   p->pad_mode == LYRA_PAD_REPLICATE};
    return conv_core(be, &y5, &x5, w, b, NULL, g);
}

lyra_status cu_op_conv_transpose2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                   const lyra_tensor *b, int stride, int padding) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "conv_transpose2d: the CUDA backend computes f32/bf16/f16 tensors");
    cuda_state *st = cu_st(be);
    int64_t B = x->ne[0], Ci = x->ne[1], H = x->ne[2], Wd = x->ne[3];
    int64_t Co = w->ne[1], kh = w->ne[2], kw = w->ne[3], Ho = y->ne[2], Wo = y->ne[3];
    int64_t R = Co * kh * kw, HW = H * Wd;
    if (!B || !Co || !Ho || !Wo) return LYRA_OK;
    lyra_dtype gt = x->dtype;
    int es = (int)lyra_dtype_size(gt);
    void *own[3] = {NULL, NULL, NULL};
    const void *Wt, *X;
    lyra_status s = cu_contiguous(be, w, gt, &Wt, &own[0], "conv_transpose2d weights");
    if (s == LYRA_OK) s = cu_contiguous(be, x, gt, &X, &own[1], "conv_transpose2d input");
    float *col = NULL;
    if (s == LYRA_OK) {
        col = (float *)cu_alloc(be, (size_t)(R * HW) * sizeof(float), "conv_transpose2d columns");
        own[2] = col;
        if (!col) s = LYRA_ERR_OOM;
    }
    cu_gemm_desc gd;
    memset(&gd, 0, sizeof gd);
    gd.transa = 1; /* w is stored (Ci, R): col (R, HW) = wᵀ · x */
    gd.transb = 0;
    gd.M = R; gd.N = HW; gd.K = Ci;
    gd.A = Wt; gd.ta = cu_dt(gt); gd.lda = R;
    gd.tb = cu_dt(gt); gd.ldb = HW;
    gd.C = col; gd.tc = CUDA_R_32F; gd.ldc = HW;
    gd.batch = 1;
    gd.alpha = 1.0f;
    int yes = (int)lyra_dtype_size(y->dtype);
    for (int64_t bi = 0; bi < B && s == LYRA_OK; bi++) {
        gd.B = (const char *)X + bi * Ci * HW * es;
        s = cu_gemm(be, &gd);
        if (s != LYRA_OK) break;
        int64_t total = Co * Ho * Wo;
        cu_launch(col2im_kernel, cu_blocks(total, 256), 256, 0, st->stream,
            (char *)y->data + bi * total * yes, (int)y->dtype, col, b ? (const char *)b->data : NULL,
            b ? (int)b->dtype : 0, b ? b->nb[0] : 0, Co, kh, kw, H, Wd, Ho, Wo, stride, padding, total);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "conv_transpose2d");
    }
    for (int i = 0; i < 3; i++) cu_free(be, own[i]);
    return s;
}
