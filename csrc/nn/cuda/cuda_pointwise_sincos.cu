// Sin/cos features (nn/ops.h lyra_op_sincos): one thread per output pair (row, octave, channel).
#include "cuda_internal.h"

namespace {

__global__ void sincos_kernel(char *y, int ydt, cu_tensor x, int octaves, int64_t C, int64_t total) {
    int ey = cu_esize(ydt), nd = x.ndim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = i % C, o = (i / C) % octaves, r = i / (C * octaves);
        // byte offset of row r of x (every dim but the last, outermost first)
        int64_t off = 0, rem = r;
        for (int d = nd - 2; d >= 0; d--) {
            off += (rem % x.ne[d]) * x.nb[d];
            rem /= x.ne[d];
        }
        float f = (float)ldexp(3.141592653589793, (int)o); // 2^o·π rounded to f32, as the CPU reference
        float a = cu_load(x.data + off + c * x.nb[nd - 1], x.dtype) * f, s, co;
        sincosf(a, &s, &co);
        char *yr = y + r * (2 * octaves * C) * ey;
        cu_store(yr + (2 * o * C + c) * ey, ydt, s);
        cu_store(yr + ((2 * o + 1) * C + c) * ey, ydt, co);
    }
}

} // namespace

lyra_status cu_op_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "sincos: the CUDA backend computes f32/bf16/f16 tensors");
    int64_t C = x->ne[x->ndim - 1], total = lyra_tensor_numel(x) * octaves;
    if (!total) return LYRA_OK;
    cu_launch(sincos_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, (char *)y->data, (int)y->dtype,
                                                                          cu_tensor_of(x), octaves, C, total);
    CU_LAUNCHED("sincos");
    return LYRA_OK;
}
