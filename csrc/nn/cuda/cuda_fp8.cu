// The FP8 (e4m3) ops of the backend table (nn/ops.h lyra_op_quantize_fp8_rows, lyra_op_linear_fp8); their CPU
// twin is csrc/nn/cpu/cpu_fp8.c. The per-token quantization is one block per row (the row's max |x|, then its
// codes). The scaled GEMM runs cuBLASLt's e4m3 x e4m3 kernels without scales into f32 sums, then one epilogue
// pass applies s[m]·ws[n] and the bias: a per-token x per-channel scale pair is an outer product, which the
// per-tensor scale pointers of the Hopper FP8 path cannot express. The sums go through a bounded f32 tile of
// rows, so the extra memory is at most ACC_TILE_BYTES whatever the token count.
#include "cuda_internal.h"

namespace {

constexpr float E4M3_MAX = 448.0f;
constexpr size_t ACC_TILE_BYTES = (size_t)64 << 20;

/* q[r, :], s[r] for the rows r = blockIdx.x, blockIdx.x + gridDim.x, ... of x. */
__global__ void quantize_rows_kernel(uint8_t *q, float *s, cu_tensor x, int64_t M, int64_t K) {
    __shared__ float sh[32];
    __shared__ float row_scale;
    int64_t sx = x.nb[x.ndim - 1];
    for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
        int64_t off = 0, rem = r;
        for (int d = x.ndim - 2; d >= 0; d--) {
            off += (rem % x.ne[d]) * x.nb[d];
            rem /= x.ne[d];
        }
        const char *xr = x.data + off;
        float m = 0.0f;
        for (int64_t c = threadIdx.x; c < K; c += blockDim.x) m = fmaxf(m, fabsf(cu_load(xr + c * sx, x.dtype)));
        m = cu_block_max_nonneg(m, sh);
        if (threadIdx.x == 0) {
            float sc = m > 0.0f ? m / E4M3_MAX : 1.0f; /* IEEE division (no fast-math): the CPU's value */
            row_scale = sc;
            s[r] = sc;
        }
        __syncthreads();
        float sc = row_scale;
        for (int64_t c = threadIdx.x; c < K; c += blockDim.x)
            q[r * K + c] = __nv_cvt_float_to_fp8(cu_load(xr + c * sx, x.dtype) / sc, __NV_SATFINITE, __NV_E4M3);
        __syncthreads(); /* sh and row_scale are reused by the next row */
    }
}

/* y[m0 + r, n] = acc[r, n]·(s[m0 + r]·ws[n]) + b[n] for the rr rows of one tile; y's row r is found from its
 * descriptor (rows contiguous, any row strides). The products are rounded one by one (no FMA contraction), as
 * the CPU twin computes them. */
__global__ void scale_rows_kernel(cu_tensor y, int64_t m0, int64_t rr, int64_t N, const float *acc, int64_t ldacc,
                                  const float *s, const float *ws, const char *b, int bdt, int64_t bnb) {
    int64_t total = rr * N;
    int ey = cu_esize(y.dtype);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / N, n = i % N, off = 0, rem = m0 + r;
        for (int d = y.ndim - 2; d >= 0; d--) {
            off += (rem % y.ne[d]) * y.nb[d];
            rem /= y.ne[d];
        }
        float v = __fmul_rn(acc[r * ldacc + n], __fmul_rn(s[m0 + r], ws[n]));
        if (b) v = __fadd_rn(v, cu_load(b + n * bnb, bdt));
        cu_store(y.data + off + n * ey, y.dtype, v);
    }
}

} // namespace

lyra_status cu_op_quantize_fp8_rows(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x) {
    if (!cu_is_float(x->dtype)) return lyra_error(LYRA_ERR_TYPE, "quantize_fp8_rows: x must be f32, bf16 or f16");
    int64_t K = x->ne[x->ndim - 1], M = lyra_tensor_numel(x) / (K ? K : 1);
    if (!M || !K) {
        if (M) return cu_op_fill(be, s, 1.0f);
        return LYRA_OK;
    }
    unsigned grid = M < (1 << 20) ? (unsigned)M : (1u << 20);
    cu_launch(quantize_rows_kernel, grid, 256, 0, cu_st(be)->stream, (uint8_t *)q->data, (float *)s->data,
              cu_tensor_of(x), M, K);
    CU_LAUNCHED("quantize_fp8_rows");
    return LYRA_OK;
}

lyra_status cu_op_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                             const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b) {
    if (!cu_is_float(y->dtype)) return lyra_error(LYRA_ERR_TYPE, "linear_fp8: y must be f32, bf16 or f16");
    int64_t N = w8->ne[0], K = w8->ne[1], M = lyra_tensor_numel(y) / N;
    if (!M || !N) return LYRA_OK;
    /* the sums of a tile of rows: rows 16-byte aligned (ldacc % 4 == 0), as cuBLASLt's FP8 kernels need */
    int64_t ldacc = (N + 3) & ~(int64_t)3;
    int64_t R = (int64_t)(ACC_TILE_BYTES / ((size_t)ldacc * sizeof(float)));
    R = R < 16 ? 16 : R / 16 * 16;
    if (R > M) R = M;
    float *acc = (float *)cu_alloc(be, (size_t)(R * ldacc) * sizeof(float), "linear_fp8 sums");
    if (!acc) return LYRA_ERR_OOM;
    cudaStream_t stream = cu_st(be)->stream;
    lyra_status st = LYRA_OK;
    for (int64_t m0 = 0; m0 < M && st == LYRA_OK; m0 += R) {
        int64_t rr = M - m0 < R ? M - m0 : R;
        if (K == 0) {
            st = cudaMemsetAsync(acc, 0, (size_t)(rr * ldacc) * sizeof(float), stream) == cudaSuccess
                     ? LYRA_OK
                     : lyra_error(LYRA_ERR_CUDA, "linear_fp8: clearing the sums failed");
        } else {
            cu_gemm_desc g;
            memset(&g, 0, sizeof g);
            g.transa = 0;
            g.transb = 1;
            g.M = rr; g.N = N; g.K = K;
            g.A = (const uint8_t *)q->data + m0 * K; g.ta = CUDA_R_8F_E4M3; g.lda = K;
            g.B = w8->data; g.tb = CUDA_R_8F_E4M3; g.ldb = K;
            g.C = acc; g.tc = CUDA_R_32F; g.ldc = ldacc;
            g.batch = 1;
            g.alpha = 1.0f;
            st = cu_gemm(be, &g);
        }
        if (st == LYRA_OK) {
            cu_launch(scale_rows_kernel, cu_blocks(rr * N, 256), 256, 0, stream, cu_tensor_of(y), m0, rr, N,
                      (const float *)acc, ldacc, (const float *)s->data, (const float *)ws->data,
                      b ? (const char *)b->data : (const char *)NULL, b ? (int)b->dtype : 0, b ? b->nb[0] : 0);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) st = cu_error(e, "linear_fp8 scales");
        }
    }
    cu_free(be, acc);
    return st;
}
