// Rotary embedding: one thread per (batch, token, head, pair). The pairings are those of nn/backend.h
// (INTERLEAVED: (x[2p], x[2p+1]); HALF: rotate-half inside each of n_sections sections).
#include "cuda_internal.h"

namespace {

__global__ void rope_kernel(cu_tensor y, cu_tensor x, const float *ang, int64_t ang_l, int64_t ang_p, int half_mode,
                            int64_t S, int64_t total) {
    int64_t L = x.ne[1], H = x.ne[2], P = x.ne[3] / 2, hs = S / 2;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = i % P, r = i / P;
        int64_t h = r % H, l = (r / H) % L, b = r / (H * L);
        int64_t i0, i1;
        if (!half_mode) {
            i0 = 2 * p;
            i1 = 2 * p + 1;
        } else {
            i0 = (p / hs) * S + p % hs;
            i1 = i0 + hs;
        }
        float phi = ang[l * ang_l + p * ang_p], si, co;
        sincosf(phi, &si, &co);
        const char *xp = x.data + b * x.nb[0] + l * x.nb[1] + h * x.nb[2];
        char *yp = y.data + b * y.nb[0] + l * y.nb[1] + h * y.nb[2];
        float a = cu_load(xp + i0 * x.nb[3], x.dtype), c = cu_load(xp + i1 * x.nb[3], x.dtype);
        cu_store(yp + i0 * y.nb[3], y.dtype, a * co - c * si);
        cu_store(yp + i1 * y.nb[3], y.dtype, a * si + c * co);
    }
}

} // namespace

lyra_status cu_op_rope(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *angles,
                       lyra_rope_mode mode, int n_sections) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "rope: the CUDA backend computes f32/bf16/f16 tensors");
    int64_t D = x->ne[3], total = x->ne[0] * x->ne[1] * x->ne[2] * (D / 2);
    if (!total) return LYRA_OK;
    if (mode == LYRA_ROPE_INTERLEAVED) n_sections = 1;
    cu_launch(rope_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream,
        cu_tensor_of(y), cu_tensor_of(x), (const float *)angles->data, angles->nb[0] / 4, angles->nb[1] / 4,
        mode == LYRA_ROPE_HALF, D / n_sections, total);
    CU_LAUNCHED("rope");
    return LYRA_OK;
}
