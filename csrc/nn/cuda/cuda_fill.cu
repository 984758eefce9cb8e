// The random weights on the device (nn/ops.h lyra_op_fill_random): one thread per element, the arithmetic of
// nn/random_fill_math.h with __fmul_rn / __fadd_rn (no FMA contraction), so the values are bit-identical to the CPU
// reference (nn/cpu/cpu_fill.c); a bf16/f16 y rounds once to nearest even (cu_store), as the CPU does.
#include "cuda_internal.h"

#define RFILL_FN static __device__ inline
#define RFILL_MUL(a, b) __fmul_rn((a), (b))
#define RFILL_ADD(a, b) __fadd_rn((a), (b))
#include "nn/random_fill_math.h"

namespace {

__global__ void fill_random_kernel(char *y, int dt, int64_t n, lyra_random_fill r) {
    const int es = cu_esize(dt);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        cu_store(y + i * es, dt, lyra_rfill_value(r.key, (uint64_t)i, r.scale, r.mean, r.bf16_values));
}

}  // namespace

lyra_status cu_op_fill_random(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r) {
    const int64_t n = lyra_tensor_numel(y);
    if (!n) return LYRA_OK;
    if (!cu_is_float(y->dtype)) return lyra_error(LYRA_ERR_TYPE, "fill_random: y must be f32, bf16 or f16");
    cu_launch(fill_random_kernel, cu_blocks(n, 256), 256, 0, cu_st(be)->stream, (char *)y->data, (int)y->dtype, n,
              *r);
    CU_LAUNCHED("fill_random");
    return LYRA_OK;
}
