// Separable resize: the interpolation tables come from nn/resize_table.h (the CPU backend's own code, so both
// backends sample the same pixels with the same weights); pass 1 filters along W into an f32 temporary, pass 2
// along H into y, in the CPU's summation order.
#include <stdlib.h>

#include "cuda_internal.h"
#include "nn/resize_table.h"

namespace {

/* tmp (P, H, Wo) f32 = Σ_k ww[o, k] · x[p, i, iw[o, k]] */
__global__ void resize_w_kernel(float *tmp, cu_tensor x, const int64_t *iw, const float *ww, int tw, int64_t Wo,
                                int64_t total) {
    int n = x.ndim;
    int64_t H = x.ne[n - 2];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = i % Wo, row = (i / Wo) % H, pl = i / (Wo * H), r = pl, off = 0;
        for (int d = n - 3; d >= 0; d--) {
            off += (r % x.ne[d]) * x.nb[d];
            r /= x.ne[d];
        }
        const char *xr = x.data + off + row * x.nb[n - 2];
        float acc = 0.0f;
        for (int k = 0; k < tw; k++) acc += ww[o * tw + k] * cu_load(xr + iw[o * tw + k] * x.nb[n - 1], x.dtype);
        tmp[i] = acc;
    }
}

/* y (P, Ho, Wo) contiguous = Σ_k wh[o, k] · tmp[p, ih[o, k], :] */
__global__ void resize_h_kernel(cu_tensor y, const float *tmp, const int64_t *ih, const float *wh, int th, int64_t H,
                                int64_t Ho, int64_t Wo, int64_t total) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = i % Wo, o = (i / Wo) % Ho, pl = i / (Wo * Ho);
        const float *tp = tmp + pl * H * Wo + j;
        float acc = 0.0f;
        for (int k = 0; k < th; k++) acc += wh[o * th + k] * tp[ih[o * th + k] * Wo];
        cu_store(y.data + i * (int64_t)cu_esize(y.dtype), y.dtype, acc);
    }
}

} // namespace

lyra_status cu_op_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "resize: the CUDA backend computes f32/bf16/f16 tensors");
    int n = x->ndim;
    int64_t P = 1, H = x->ne[n - 2], W = x->ne[n - 1], Ho = y->ne[n - 2], Wo = y->ne[n - 1];
    for (int i = 0; i < n - 2; i++) P *= x->ne[i];
    if (!P) return LYRA_OK;
    int th = lyra_resize_taps(H, Ho, p, p->ratio_h), tw = lyra_resize_taps(W, Wo, p, p->ratio_w);
    size_t nidx = (size_t)(Ho * th + Wo * tw), tab = nidx * (sizeof(int64_t) + sizeof(float));
    char *host = (char *)malloc(tab);
    if (!host) return lyra_error(LYRA_ERR_OOM, "resize: cannot allocate its tables");
    int64_t *ih = (int64_t *)host, *iw = ih + Ho * th;
    float *wh = (float *)(iw + Wo * tw), *ww = wh + Ho * th;
    lyra_resize_table(H, Ho, p, p->ratio_h, th, ih, wh);
    lyra_resize_table(W, Wo, p, p->ratio_w, tw, iw, ww);
    size_t tab_al = (tab + 255) & ~(size_t)255;
    char *dev = (char *)cu_alloc(be, tab_al + (size_t)(P * H * Wo) * sizeof(float), "resize");
    if (!dev) {
        free(host);
        return LYRA_ERR_OOM;
    }
    cuda_state *st = cu_st(be);
    /* the host tables must outlive the (asynchronous) copy: wait for it before freeing them */
    cudaError_t e = cudaMemcpyAsync(dev, host, tab, cudaMemcpyHostToDevice, st->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream);
    free(host);
    lyra_status s = e == cudaSuccess ? LYRA_OK : cu_error(e, "resize");
    const int64_t *dih = (const int64_t *)dev, *diw = dih + Ho * th;
    const float *dwh = (const float *)(diw + Wo * tw), *dww = dwh + Ho * th;
    float *tmp = (float *)(dev + tab_al);
    if (s == LYRA_OK) {
        int64_t t1 = P * H * Wo, t2 = P * Ho * Wo;
        cu_launch(resize_w_kernel, cu_blocks(t1, 256), 256, 0, st->stream, tmp, cu_tensor_of(x), diw, dww, tw, Wo, t1);
        cu_launch(resize_h_kernel, cu_blocks(t2, 256), 256, 0, st->stream, cu_tensor_of(y), tmp, dih, dwh, th, H, Ho, Wo, t2);
        e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "resize");
    }
    cu_free(be, dev);
    return s;
}
