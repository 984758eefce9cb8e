// Normalisations and softmax: one block per row (RMSNorm, LayerNorm, softmax over the last dim; GroupNorm over
// chunks of each (batch, group), merged), one thread per position for the Wan VAE channel L2 norm. Statistics in f32, two passes
// (mean, then variance), the same formulas as the CPU backend (nn/cpu/cpu_norm.c).
#include <math.h>
#include <string.h>

#include "cuda_internal.h"

namespace {

enum row_kind { ROW_RMS, ROW_LN, ROW_SOFTMAX };

struct row_params {
    cu_tensor x, y;
    const char *w, *b;
    int64_t wnb, bnb;
    int wdt, bdt;
    int64_t rows, n;
    float eps, scale;
    int kind;
};

/* Sum (or max) over the block; every thread gets the result. sh holds one float per warp. */
template <bool MAX>
__device__ float block_reduce(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sh[lane] : (MAX ? -INFINITY : 0.0f);
        for (int o = 16; o > 0; o >>= 1) {
            float u = __shfl_xor_sync(0xffffffffu, v, o);
            v = MAX ? fmaxf(v, u) : v + u;
        }
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads(); /* sh is reused by the next reduction */
    return v;
}

__device__ __forceinline__ int64_t row_offset(const cu_tensor &t, int64_t r) {
    int64_t off = 0;
    for (int d = t.ndim - 2; d >= 0; d--) {
        off += (r % t.ne[d]) * t.nb[d];
        r /= t.ne[d];
    }
    return off;
}

__global__ void row_kernel(row_params p) {
    __shared__ float sh[32];
    int nd = p.x.ndim;
    int64_t sx = p.x.nb[nd - 1], sy = p.y.nb[nd - 1], n = p.n;
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        const char *xr = p.x.data + row_offset(p.x, r);
        char *yr = p.y.data + row_offset(p.y, r);
        if (p.kind == ROW_RMS) {
            float ss = 0.0f;
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
                float v = cu_load(xr + i * sx, p.x.dtype);
                ss += v * v;
            }
            ss = block_reduce<false>(ss, sh);
            float inv = 1.0f / sqrtf(ss / (float)(n ? n : 1) + p.eps);
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
                float v = cu_load(xr + i * sx, p.x.dtype) * inv * (p.w ? cu_load(p.w + i * p.wnb, p.wdt) : 1.0f);
                cu_store(yr + i * sy, p.y.dtype, v);
            }
        } else if (p.kind == ROW_LN) {
            float s = 0.0f;
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += cu_load(xr + i * sx, p.x.dtype);
            float mean = block_reduce<false>(s, sh) / (float)(n ? n : 1);
            float q = 0.0f;
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
                float d = cu_load(xr + i * sx, p.x.dtype) - mean;
                q += d * d;
            }
            float var = block_reduce<false>(q, sh) / (float)(n ? n : 1);
            float inv = 1.0f / sqrtf(var + p.eps);
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
                float v = (cu_load(xr + i * sx, p.x.dtype) - mean) * inv;
                if (p.w) v *= cu_load(p.w + i * p.wnb, p.wdt);
                if (p.b) v += cu_load(p.b + i * p.bnb, p.bdt);
                cu_store(yr + i * sy, p.y.dtype, v);
            }
        } else {
            float mx = -INFINITY;
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, cu_load(xr + i * sx, p.x.dtype) * p.scale);
            mx = block_reduce<true>(mx, sh);
            if (mx == -INFINITY) { /* all -inf (or empty): zeros, like a fully masked attention row */
                for (int64_t i = threadIdx.x; i < n; i += blockDim.x) cu_store(yr + i * sy, p.y.dtype, 0.0f);
                continue;
            }
            float s = 0.0f;
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += expf(cu_load(xr + i * sx, p.x.dtype) * p.scale - mx);
            float inv = 1.0f / block_reduce<false>(s, sh);
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
                cu_store(yr + i * sy, p.y.dtype, expf(cu_load(xr + i * sx, p.x.dtype) * p.scale - mx) * inv);
        }
    }
}

__device__ __forceinline__ int64_t spatial_offset(const cu_tensor &t, int64_t s) {
    int64_t off = 0;
    for (int d = t.ndim - 1; d >= 2; d--) {
        off += (s % t.ne[d]) * t.nb[d];
        s /= t.ne[d];
    }
    return off;
}

__global__ void l2norm_kernel(cu_tensor y, cu_tensor x, const char *g, int64_t gnb, int gdt, const char *b,
                              int64_t bnb, int bdt, float eps, int64_t Sp, int64_t total) {
    int64_t C = x.ne[1];
    float rootc = sqrtf((float)C);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t bi = i / Sp, s = i % Sp;
        const char *xp = x.data + bi * x.nb[0] + spatial_offset(x, s);
        char *yp = y.data + bi * y.nb[0] + spatial_offset(y, s);
        float ss = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            float v = cu_load(xp + c * x.nb[1], x.dtype);
            ss += v * v;
        }
        /* F.normalize clamps the norm (not the square) at eps: x / max(‖x‖, eps) */
        float inv = (1.0f / fmaxf(sqrtf(ss), eps)) * rootc;
        for (int64_t c = 0; c < C; c++) {
            float v = cu_load(xp + c * x.nb[1], x.dtype) * inv;
            if (g) v *= cu_load(g + c * gnb, gdt);
            if (b) v += cu_load(b + c * bnb, bdt);
            cu_store(yp + c * y.nb[1], y.dtype, v);
        }
    }
}

/* GroupNorm in three steps so that a few (batch, group) pairs still fill the GPU (the VAE has 32 groups and
 * batch 1: one block per pair left most of 132 SMs idle). Each group's cg·Sp elements are cut into `splits`
 * chunks; gn_partial_kernel gives each chunk its count, mean and sum of squared deviations (two passes over the
 * chunk, as the CPU's two-pass formula), gn_finalize_kernel merges a group's chunks (Chan et al.'s pairwise
 * update, stable where sum/sum-of-squares would cancel) into mean and 1/sqrt(var + eps), and gn_apply_kernel
 * normalises each chunk. Block (bg, c) works on chunk c of pair bg: elements [c·chunk, min(n, (c+1)·chunk)). */
struct gn_geom {
    cu_tensor x, y;
    int groups, splits;
    int64_t cg, Sp, n, chunk;
};

__device__ __forceinline__ const char *gn_elem(const cu_tensor &t, const gn_geom &g, int64_t bg, int64_t e) {
    int64_t bi = bg / g.groups, gi = bg % g.groups, c = gi * g.cg + e / g.Sp;
    return t.data + bi * t.nb[0] + c * t.nb[1] + spatial_offset(t, e % g.Sp);
}

__global__ void gn_partial_kernel(gn_geom g, float *part) {
    __shared__ float sh[32];
    int64_t bg = blockIdx.x, e0 = (int64_t)blockIdx.y * g.chunk, e1 = e0 + g.chunk < g.n ? e0 + g.chunk : g.n;
    float s = 0.0f;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) s += cu_load(gn_elem(g.x, g, bg, e), g.x.dtype);
    int64_t cnt = e1 > e0 ? e1 - e0 : 0;
    float mean = block_reduce<false>(s, sh) / (float)(cnt ? cnt : 1);
    float q = 0.0f;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        float d = cu_load(gn_elem(g.x, g, bg, e), g.x.dtype) - mean;
        q += d * d;
    }
    q = block_reduce<false>(q, sh);
    if (threadIdx.x == 0) {
        float *o = part + (bg * g.splits + blockIdx.y) * 3;
        o[0] = (float)cnt;
        o[1] = mean;
        o[2] = q;
    }
}

/* stats[bg] = (mean, 1/sqrt(var + eps)) from the group's chunks; one thread per (batch, group). */
__global__ void gn_finalize_kernel(const float *part, float *stats, int64_t pairs, int splits, float eps) {
    int64_t bg = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bg >= pairs) return;
    double n = 0.0, mean = 0.0, m2 = 0.0; /* once per group: double costs nothing here */
    for (int c = 0; c < splits; c++) {
        const float *p = part + (bg * splits + c) * 3;
        double nb = p[0];
        if (nb == 0.0) continue;
        double d = p[1] - mean, tot = n + nb;
        mean += d * nb / tot;
        m2 += p[2] + d * d * n * nb / tot;
        n = tot;
    }
    float var = n > 0.0 ? (float)(m2 / n) : 0.0f;
    stats[2 * bg] = (float)mean;
    stats[2 * bg + 1] = 1.0f / sqrtf(var + eps);
}

__global__ void gn_apply_kernel(gn_geom g, const float *stats, const char *w, int64_t wnb, int wdt, const char *b,
                                int64_t bnb, int bdt) {
    int64_t bg = blockIdx.x, e0 = (int64_t)blockIdx.y * g.chunk, e1 = e0 + g.chunk < g.n ? e0 + g.chunk : g.n;
    float mean = stats[2 * bg], inv = stats[2 * bg + 1];
    int64_t gi = bg % g.groups;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        int64_t c = gi * g.cg + e / g.Sp;
        float sc = inv * (w ? cu_load(w + c * wnb, wdt) : 1.0f), shf = b ? cu_load(b + c * bnb, bdt) : 0.0f;
        float v = cu_load(gn_elem(g.x, g, bg, e), g.x.dtype);
        cu_store((char *)gn_elem(g.y, g, bg, e), g.y.dtype, (v - mean) * sc + shf);
    }
}

int row_threads(int64_t n) { return n >= 2048 ? 256 : n >= 512 ? 128 : n >= 128 ? 64 : 32; }

lyra_status floats(const char *op, const lyra_tensor *a, const lyra_tensor *b, const lyra_tensor *c,
                   const lyra_tensor *d) {
    const lyra_tensor *ts[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (ts[i] && !cu_is_float(ts[i]->dtype))
            return lyra_error(LYRA_ERR_TYPE, "%s: the CUDA backend computes f32/bf16/f16 tensors, got %s", op,
                              lyra_dtype_name(ts[i]->dtype));
    return LYRA_OK;
}

lyra_status run_rows(lyra_backend *be, int kind, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                     const lyra_tensor *b, float eps, float scale, const char *what) {
    LYRA_TRY(floats(what, y, x, w, b));
    row_params p;
    memset(&p, 0, sizeof p);
    p.x = cu_tensor_of(x);
    p.y = cu_tensor_of(y);
    p.kind = kind;
    p.eps = eps;
    p.scale = scale;
    p.n = x->ne[x->ndim - 1];
    p.rows = 1;
    for (int i = 0; i < x->ndim - 1; i++) p.rows *= x->ne[i];
    if (w) { p.w = (const char *)w->data; p.wnb = w->nb[0]; p.wdt = (int)w->dtype; }
    if (b) { p.b = (const char *)b->data; p.bnb = b->nb[0]; p.bdt = (int)b->dtype; }
    if (!p.rows) return LYRA_OK;
    unsigned grid = (unsigned)(p.rows < (1 << 20) ? p.rows : (1 << 20));
    cu_launch(row_kernel, grid, row_threads(p.n), 0, cu_st(be)->stream, p);
    CU_LAUNCHED(what);
    return LYRA_OK;
}

} // namespace

lyra_status cu_op_rms_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, float eps) {
    return run_rows(be, ROW_RMS, y, x, w, NULL, eps, 1.0f, "rms_norm");
}

lyra_status cu_op_layer_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             const lyra_tensor *b, float eps) {
    return run_rows(be, ROW_LN, y, x, w, b, eps, 1.0f, "layer_norm");
}

lyra_status cu_op_softmax(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float scale) {
    return run_rows(be, ROW_SOFTMAX, y, x, NULL, NULL, 0.0f, scale, "softmax");
}

lyra_status cu_op_l2norm_channels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *gamma,
                                  const lyra_tensor *beta, float eps) {
    LYRA_TRY(floats("l2norm_channels", y, x, gamma, beta));
    int64_t Sp = 1;
    for (int i = 2; i < x->ndim; i++) Sp *= x->ne[i];
    int64_t total = x->ne[0] * Sp;
    if (!total) return LYRA_OK;
    cu_launch(l2norm_kernel, cu_blocks(total, 128), 128, 0, cu_st(be)->stream,
        cu_tensor_of(y), cu_tensor_of(x), gamma ? (const char *)gamma->data : NULL, gamma ? gamma->nb[0] : 0,
        gamma ? (int)gamma->dtype : 0, beta ? (const char *)beta->data : NULL, beta ? beta->nb[0] : 0,
        beta ? (int)beta->dtype : 0, eps, Sp, total);
    CU_LAUNCHED("l2norm_channels");
    return LYRA_OK;
}

lyra_status cu_op_group_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int groups, const lyra_tensor *w,
                             const lyra_tensor *b, float eps) {
    LYRA_TRY(floats("group_norm", y, x, w, b));
    int64_t Sp = 1;
    for (int i = 2; i < x->ndim; i++) Sp *= x->ne[i];
    int64_t pairs = x->ne[0] * groups;
    if (!pairs) return LYRA_OK;
    if (pairs > 0x7fffffff) return lyra_error(LYRA_ERR_ARG, "group_norm: too many (batch, group) pairs");
    cuda_state *st = cu_st(be);
    gn_geom g;
    memset(&g, 0, sizeof g);
    g.x = cu_tensor_of(x);
    g.y = cu_tensor_of(y);
    g.groups = groups;
    g.cg = x->ne[1] / groups;
    g.Sp = Sp;
    g.n = g.cg * Sp;
    /* about four blocks per SM in all, but no chunk under 4096 elements (the block's reductions would dominate) */
    int64_t want = ((int64_t)4 * st->sm_count + pairs - 1) / pairs, most = (g.n + 4095) / 4096;
    int64_t splits = want < most ? want : most;
    if (splits < 1) splits = 1;
    g.chunk = (g.n + splits - 1) / splits;
    g.splits = (int)((g.n + g.chunk - 1) / g.chunk);
    if (g.splits < 1) g.splits = 1;
    float *buf = (float *)cu_alloc(be, (size_t)(pairs * (3 * g.splits + 2)) * sizeof(float), "group_norm");
    if (!buf) return LYRA_ERR_OOM;
    float *part = buf, *stats = buf + pairs * 3 * g.splits;
    dim3 grid((unsigned)pairs, (unsigned)g.splits); /* splits <= 4·SMs, within gridDim.y's 65535 */
    cu_launch(gn_partial_kernel, grid, 256, 0, st->stream, g, part);
    cu_launch(gn_finalize_kernel, cu_blocks(pairs, 128), 128, 0, st->stream, (const float *)part, stats, pairs,
              g.splits, eps);
    cu_launch(gn_apply_kernel, grid, 256, 0, st->stream, g, (const float *)stats, w ? (const char *)w->data : NULL,
              w ? w->nb[0] : 0, w ? (int)w->dtype : 0, b ? (const char *)b->data : NULL, b ? b->nb[0] : 0,
              b ? (int)b->dtype : 0);
    cudaError_t e = cudaGetLastError();
    cu_free(be, buf);
    return e == cudaSuccess ? LYRA_OK : cu_error(e, "group_norm");
}
