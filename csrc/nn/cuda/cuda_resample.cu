// Separable resize: the interpolation tables come from nn/resize_table.h (the CPU backend's own code, so both
// backends sample the same pixels with the same weights), uploaded once per geometry; pass 1 filters along W into
// an f32 temporary, pass 2 along H into y, in the CPU's summation order.
#include <stdlib.h>
#include <string.h>

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

/* The interpolation tables of the last RESIZE_CACHE geometries, on the device: a resize is called again and
 * again with the same sizes (every VAE frame, every preview step), and uploading its tables from pageable host
 * memory would make each call wait for the stream. */
enum { RESIZE_CACHE = 16 };

struct resize_key {
    int64_t H, Ho, W, Wo;
    lyra_resize_mode mode;
    int align_corners, antialias;
    double ratio_h, ratio_w;
};

struct cu_resize_cache {
    struct {
        resize_key key;
        int th, tw;
        char *dev; /* ih (Ho, th) i64, iw (Wo, tw) i64, wh (Ho, th) f32, ww (Wo, tw) f32 */
        unsigned long long used;
    } e[RESIZE_CACHE];
    int n;
    unsigned long long tick;
};

static bool same_key(const resize_key &a, const resize_key &b) {
    return a.H == b.H && a.Ho == b.Ho && a.W == b.W && a.Wo == b.Wo && a.mode == b.mode &&
           a.align_corners == b.align_corners && a.antialias == b.antialias && a.ratio_h == b.ratio_h &&
           a.ratio_w == b.ratio_w;
}

void cu_resize_cache_free(lyra_backend *be) {
    cuda_state *st = cu_st(be);
    if (!st->resize_tables) return;
    for (int i = 0; i < st->resize_tables->n; i++) cu_free(be, st->resize_tables->e[i].dev);
    free(st->resize_tables);
    st->resize_tables = NULL;
}

/* The device tables for this geometry: cached, or computed by the CPU code and uploaded once (that first
 * upload waits for the stream, so the host tables can be freed). */
static lyra_status resize_tables(lyra_backend *be, const resize_key &k, const lyra_resize_params *p, int th, int tw,
                                 const char **dev) {
    cuda_state *st = cu_st(be);
    if (!st->resize_tables) {
        st->resize_tables = (cu_resize_cache *)calloc(1, sizeof *st->resize_tables);
        if (!st->resize_tables) return lyra_error(LYRA_ERR_OOM, "resize: cannot allocate its table cache");
    }
    cu_resize_cache *c = st->resize_tables;
    for (int i = 0; i < c->n; i++)
        if (same_key(c->e[i].key, k)) {
            c->e[i].used = ++c->tick;
            *dev = c->e[i].dev;
            return LYRA_OK;
        }
    size_t nidx = (size_t)(k.Ho * th + k.Wo * tw), tab = nidx * (sizeof(int64_t) + sizeof(float));
    char *host = (char *)malloc(tab);
    if (!host) return lyra_error(LYRA_ERR_OOM, "resize: cannot allocate its tables");
    int64_t *ih = (int64_t *)host, *iw = ih + k.Ho * th;
    float *wh = (float *)(iw + k.Wo * tw), *ww = wh + k.Ho * th;
    lyra_resize_table(k.H, k.Ho, p, p->ratio_h, th, ih, wh);
    lyra_resize_table(k.W, k.Wo, p, p->ratio_w, tw, iw, ww);
    char *d = (char *)cu_alloc(be, tab, "resize tables");
    if (!d) {
        free(host);
        return LYRA_ERR_OOM;
    }
    cudaError_t e = cudaMemcpyAsync(d, host, tab, cudaMemcpyHostToDevice, st->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream);
    free(host);
    if (e != cudaSuccess) {
        cu_free(be, d);
        return cu_error(e, "resize tables");
    }
    int slot = c->n;
    if (slot == RESIZE_CACHE) { /* evict the least recently used; kernels queued on it stay ordered before reuse */
        slot = 0;
        for (int i = 1; i < RESIZE_CACHE; i++)
            if (c->e[i].used < c->e[slot].used) slot = i;
        cu_free(be, c->e[slot].dev);
    } else {
        c->n++;
    }
    c->e[slot].key = k;
    c->e[slot].th = th;
    c->e[slot].tw = tw;
    c->e[slot].dev = d;
    c->e[slot].used = ++c->tick;
    *dev = d;
    return LYRA_OK;
}

lyra_status cu_op_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "resize: the CUDA backend computes f32/bf16/f16 tensors");
    int n = x->ndim;
    int64_t P = 1, H = x->ne[n - 2], W = x->ne[n - 1], Ho = y->ne[n - 2], Wo = y->ne[n - 1];
    for (int i = 0; i < n - 2; i++) P *= x->ne[i];
    if (!P) return LYRA_OK;
    int th = lyra_resize_taps(H, Ho, p, p->ratio_h), tw = lyra_resize_taps(W, Wo, p, p->ratio_w);
    resize_key key;
    memset(&key, 0, sizeof key);
    key.H = H; key.Ho = Ho; key.W = W; key.Wo = Wo;
    key.mode = p->mode;
    key.align_corners = p->align_corners;
    key.antialias = p->antialias;
    key.ratio_h = p->ratio_h;
    key.ratio_w = p->ratio_w;
    const char *dev = NULL;
    LYRA_TRY(resize_tables(be, key, p, th, tw, &dev));
    cuda_state *st = cu_st(be);
    float *tmp = (float *)cu_alloc(be, (size_t)(P * H * Wo) * sizeof(float), "resize");
    if (!tmp) return LYRA_ERR_OOM;
    const int64_t *dih = (const int64_t *)dev, *diw = dih + Ho * th;
    const float *dwh = (const float *)(diw + Wo * tw), *dww = dwh + Ho * th;
    int64_t t1 = P * H * Wo, t2 = P * Ho * Wo;
    cu_launch(resize_w_kernel, cu_blocks(t1, 256), 256, 0, st->stream, tmp, cu_tensor_of(x), diw, dww, tw, Wo, t1);
    cu_launch(resize_h_kernel, cu_blocks(t2, 256), 256, 0, st->stream, cu_tensor_of(y), tmp, dih, dwh, th, H, Ho, Wo,
              t2);
    cudaError_t e = cudaGetLastError();
    cu_free(be, tmp);
    return e == cudaSuccess ? LYRA_OK : cu_error(e, "resize");
}
