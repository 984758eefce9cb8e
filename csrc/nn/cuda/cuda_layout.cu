// Layout ops: pad (zero / replicate), patchify / unpatchify, embedding lookup, nearest 2x upsampling, average
// pooling. One thread per output element (grid-stride); index maps follow the CPU backend (nn/cpu/cpu_layout.c,
// cpu_resample.c) so both produce identical values.
#include <string.h>

#include "cuda_internal.h"

namespace {

__device__ __forceinline__ void copy_elem(char *dst, const char *src, int es) {
    switch (es) {
    case 1: *(uint8_t *)dst = *(const uint8_t *)src; break;
    case 2: *(uint16_t *)dst = *(const uint16_t *)src; break;
    case 4: *(uint32_t *)dst = *(const uint32_t *)src; break;
    default: *(uint64_t *)dst = *(const uint64_t *)src; break;
    }
}

struct pad_params {
    cu_tensor y, x;
    int64_t before[LYRA_MAX_DIMS];
    int replicate, es;
    int64_t total;
};

__global__ void pad_kernel(pad_params p) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, oy = 0, ox = 0;
        bool inside = true;
        for (int d = p.y.ndim - 1; d >= 0; d--) {
            int64_t c = r % p.y.ne[d];
            r /= p.y.ne[d];
            oy += c * p.y.nb[d];
            int64_t s = c - p.before[d];
            if (s < 0 || s >= p.x.ne[d]) {
                if (!p.replicate) inside = false;
                s = s < 0 ? 0 : p.x.ne[d] - 1;
            }
            ox += s * p.x.nb[d];
        }
        if (inside)
            copy_elem(p.y.data + oy, p.x.data + ox, p.es);
        else
            for (int b = 0; b < p.es; b++) p.y.data[oy + b] = 0; /* zero bits are 0 in every dtype */
    }
}

/* Offset into a (B, C, T, H, W) video (without the batch term) of token `tok`, vector entry `e`
 * (same map as the CPU's patch_src). */
__device__ __forceinline__ int64_t patch_src(const cu_tensor &v, int64_t tok, int64_t e, int kt, int kh, int kw,
                                             int order) {
    int64_t C = v.ne[1], Hp = v.ne[3] / kh, Wp = v.ne[4] / kw;
    int64_t j = tok % Wp, i = (tok / Wp) % Hp, f = tok / (Wp * Hp);
    int64_t c, a, rr, s;
    if (order == LYRA_PATCH_C_SLOWEST) {
        s = e % kw;
        rr = (e / kw) % kh;
        a = (e / (kw * kh)) % kt;
        c = e / (kw * kh * kt);
    } else {
        c = e % C;
        int64_t q = e / C;
        s = q % kw;
        rr = (q / kw) % kh;
        a = q / (kw * kh);
    }
    return c * v.nb[1] + (f * kt + a) * v.nb[2] + (i * kh + rr) * v.nb[3] + (j * kw + s) * v.nb[4];
}

/* tokens (B, L, E) <-> video (B, C, T, H, W); to_tokens selects the direction. */
__global__ void patch_kernel(cu_tensor tok, cu_tensor vid, int kt, int kh, int kw, int order, int to_tokens,
                             int64_t total) {
    int64_t L = tok.ne[1], E = tok.ne[2];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t e = i % E, t = (i / E) % L, b = i / (E * L);
        char *tp = tok.data + b * tok.nb[0] + t * tok.nb[1] + e * tok.nb[2];
        char *vp = vid.data + b * vid.nb[0] + patch_src(vid, t, e, kt, kh, kw, order);
        if (to_tokens)
            cu_store(tp, tok.dtype, cu_load(vp, vid.dtype));
        else
            cu_store(vp, vid.dtype, cu_load(tp, tok.dtype));
    }
}

/* y (N, D) rows = table[ids[n]]; an out-of-range id records the smallest bad position in *bad. */
__global__ void embedding_kernel(char *y, int ydt, cu_tensor table, cu_tensor ids, int64_t N, int64_t D, int *bad) {
    int64_t total = N * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n = i / D, d = i % D, r = n, off = 0;
        for (int k = ids.ndim - 1; k >= 0; k--) {
            off += (r % ids.ne[k]) * ids.nb[k];
            r /= ids.ne[k];
        }
        const char *ip = ids.data + off;
        int64_t id = ids.dtype == LYRA_DTYPE_I32 ? (int64_t)*(const int32_t *)ip : *(const int64_t *)ip;
        if (id < 0 || id >= table.ne[0]) {
            if (d == 0) atomicMin(bad, n < 0x7fffffff ? (int)n : 0x7fffffff);
            continue;
        }
        cu_store(y + i * cu_esize(ydt), ydt, cu_load(table.data + id * table.nb[0] + d * table.nb[1], table.dtype));
    }
}

/* y (P, 2H, 2W) contiguous; x (..., H, W) strided, P planes over its leading dims. */
__global__ void upsample2x_kernel(cu_tensor y, cu_tensor x, int64_t total) {
    int n = x.ndim;
    int64_t H = x.ne[n - 2], W = x.ne[n - 1];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % (2 * W), oy = (i / (2 * W)) % (2 * H), pl = i / (4 * H * W), off = 0, r = pl;
        for (int d = n - 3; d >= 0; d--) {
            off += (r % x.ne[d]) * x.nb[d];
            r /= x.ne[d];
        }
        off += (oy / 2) * x.nb[n - 2] + (ox / 2) * x.nb[n - 1];
        cu_store(y.data + i * (int64_t)cu_esize(y.dtype), y.dtype, cu_load(x.data + off, x.dtype));
    }
}

__global__ void avg_pool3d_kernel(cu_tensor y, cu_tensor x, int kt, int kh, int kw, int64_t total) {
    int n = x.ndim;
    int64_t To = y.ne[n - 3], Ho = y.ne[n - 2], Wo = y.ne[n - 1];
    float inv = 1.0f / (float)(kt * kh * kw);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t w = i % Wo, h = (i / Wo) % Ho, t = (i / (Wo * Ho)) % To, pl = i / (Wo * Ho * To), off = 0, r = pl;
        for (int d = n - 4; d >= 0; d--) {
            off += (r % x.ne[d]) * x.nb[d];
            r /= x.ne[d];
        }
        const char *xb = x.data + off;
        float acc = 0.0f;
        for (int a = 0; a < kt; a++)
            for (int rr = 0; rr < kh; rr++)
                for (int s = 0; s < kw; s++)
                    acc += cu_load(xb + (t * kt + a) * x.nb[n - 3] + (h * kh + rr) * x.nb[n - 2] + (w * kw + s) * x.nb[n - 1],
                                   x.dtype);
        cu_store(y.data + i * (int64_t)cu_esize(y.dtype), y.dtype, acc * inv);
    }
}

lyra_status need_float(const char *op, const lyra_tensor *a, const lyra_tensor *b) {
    if (!cu_is_float(a->dtype) || (b && !cu_is_float(b->dtype)))
        return lyra_error(LYRA_ERR_TYPE, "%s: the CUDA backend computes f32/bf16/f16 tensors", op);
    return LYRA_OK;
}

} // namespace

lyra_status cu_op_pad(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *pads, lyra_pad_mode mode) {
    pad_params p;
    memset(&p, 0, sizeof p);
    p.y = cu_tensor_of(y);
    p.x = cu_tensor_of(x);
    for (int d = 0; d < x->ndim; d++) p.before[d] = pads[2 * d];
    p.replicate = mode == LYRA_PAD_REPLICATE;
    p.es = (int)lyra_dtype_size(y->dtype);
    p.total = lyra_tensor_numel(y);
    if (!p.total) return LYRA_OK;
    cu_launch(pad_kernel, cu_blocks(p.total, 256), 256, 0, cu_st(be)->stream, p);
    CU_LAUNCHED("pad");
    return LYRA_OK;
}

lyra_status cu_op_patchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                           lyra_patch_order order) {
    LYRA_TRY(need_float("patchify", y, x));
    int64_t total = lyra_tensor_numel(y);
    if (!total) return LYRA_OK;
    cu_launch(patch_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, cu_tensor_of(y), cu_tensor_of(x), kt, kh, kw,
                                                                       (int)order, 1, total);
    CU_LAUNCHED("patchify");
    return LYRA_OK;
}

lyra_status cu_op_unpatchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                             lyra_patch_order order) {
    LYRA_TRY(need_float("unpatchify", y, x));
    int64_t total = lyra_tensor_numel(x);
    if (!total) return LYRA_OK;
    cu_launch(patch_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, cu_tensor_of(x), cu_tensor_of(y), kt, kh, kw,
                                                                       (int)order, 0, total);
    CU_LAUNCHED("unpatchify");
    return LYRA_OK;
}

lyra_status cu_op_embedding(lyra_backend *be, lyra_tensor *y, const lyra_tensor *table, const lyra_tensor *ids) {
    LYRA_TRY(need_float("embedding", y, table));
    cuda_state *st = cu_st(be);
    int64_t N = lyra_tensor_numel(ids), D = table->ne[1];
    if (!N || !D) return LYRA_OK;
    const int none = 0x7fffffff;
    CU_TRY(cudaMemcpyAsync(st->d_flag, &none, sizeof none, cudaMemcpyHostToDevice, st->stream), "embedding");
    cu_launch(embedding_kernel, cu_blocks(N * D, 256), 256, 0, st->stream, (char *)y->data, (int)y->dtype,
                                                                   cu_tensor_of(table), cu_tensor_of(ids), N, D,
                                                                   st->d_flag);
    CU_LAUNCHED("embedding");
    /* the range check needs the answer now: ids come from the caller (a tokenizer), so a bad id is a user error */
    int bad = none;
    CU_TRY(cudaMemcpyAsync(&bad, st->d_flag, sizeof bad, cudaMemcpyDeviceToHost, st->stream), "embedding");
    CU_TRY(cudaStreamSynchronize(st->stream), "embedding");
    if (bad != none) {
        int64_t r = bad, off = 0, id = 0;
        for (int k = ids->ndim - 1; k >= 0; k--) {
            off += (r % ids->ne[k]) * ids->nb[k];
            r /= ids->ne[k];
        }
        CU_TRY(cudaMemcpy(&id, (const char *)ids->data + off, lyra_dtype_size(ids->dtype), cudaMemcpyDeviceToHost),
               "embedding");
        if (ids->dtype == LYRA_DTYPE_I32) id = (int64_t)(int32_t)id;
        return lyra_error(LYRA_ERR_ARG, "embedding: id %lld at position %d is outside [0, %lld)", (long long)id, bad,
                          (long long)table->ne[0]);
    }
    return LYRA_OK;
}

lyra_status cu_op_upsample_nearest2x(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    LYRA_TRY(need_float("upsample_nearest2x", y, x));
    int64_t total = lyra_tensor_numel(y);
    if (!total) return LYRA_OK;
    cu_launch(upsample2x_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, cu_tensor_of(y), cu_tensor_of(x), total);
    CU_LAUNCHED("upsample_nearest2x");
    return LYRA_OK;
}

lyra_status cu_op_avg_pool3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw) {
    LYRA_TRY(need_float("avg_pool3d", y, x));
    int64_t total = lyra_tensor_numel(y);
    if (!total) return LYRA_OK;
    cu_launch(avg_pool3d_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, cu_tensor_of(y), cu_tensor_of(x), kt, kh,
                                                                           kw, total);
    CU_LAUNCHED("avg_pool3d");
    return LYRA_OK;
}
