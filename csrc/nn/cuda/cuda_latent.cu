// The samplers' latent updates (op latent_update, nn/ops.h "sampler state") on the device: one thread per output
// element through nn/latent_math.h's lyra_latent_elem, the formula the CPU reference (nn/cpu/cpu_latent.c) and the
// host sampler use. Products, sums and differences go through __fmul_rn / __fadd_rn / __fsub_rn (and __dmul_rn /
// __dsub_rn for DMD's f64 x0) so nvcc cannot contract them into FMAs; '/' is IEEE-rounded (nvcc's -prec-div
// default). The results are bit-identical to the CPU's.
#include <string.h>

#include "cuda_internal.h"

#define LATENT_FN static __device__ inline
#define LATENT_MUL(a, b) __fmul_rn((a), (b))
#define LATENT_ADD(a, b) __fadd_rn((a), (b))
#define LATENT_SUB(a, b) __fsub_rn((a), (b))
#define LATENT_DMUL(a, b) __dmul_rn((a), (b))
#define LATENT_DSUB(a, b) __dsub_rn((a), (b))
#include "nn/latent_math.h"

namespace {

struct latent_args {
    cu_tensor y;
    cu_tensor x[4];
    int n;
    int contiguous; // y and every input contiguous: flat indexing
};

__global__ void latent_update_kernel(latent_args a, lyra_latent_update p, int64_t total) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        float in[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = 0; i < a.n; i++)
            in[i] = a.contiguous ? ((const float *)a.x[i].data)[k]
                                 : *(const float *)(a.x[i].data + cu_offset(a.x[i], k));
        const float v = lyra_latent_elem(&p, in[0], in[1], in[2], in[3]);
        if (a.contiguous) ((float *)a.y.data)[k] = v;
        else *(float *)(a.y.data + cu_offset(a.y, k)) = v;
    }
}

} // namespace

lyra_status cu_op_latent_update(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                                const lyra_latent_update *p) {
    const int64_t total = lyra_tensor_numel(y);
    if (!total) return LYRA_OK;
    if (n < 1 || n > 4) return lyra_error(LYRA_ERR_ARG, "latent_update: %d inputs (1 to 4)", n);
    latent_args a;
    memset(&a, 0, sizeof a);
    a.y = cu_tensor_of(y);
    a.n = n;
    a.contiguous = lyra_tensor_is_contiguous(y);
    for (int i = 0; i < n; i++) {
        a.x[i] = cu_tensor_of(x[i]);
        a.contiguous = a.contiguous && lyra_tensor_is_contiguous(x[i]);
    }
    cu_launch(latent_update_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, a, *p, total);
    CU_LAUNCHED("latent_update");
    return LYRA_OK;
}
