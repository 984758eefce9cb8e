/* Shared pieces of the CUDA backend (C++, included by the .cu files only): the backend state, error mapping,
 * the device memory pool, dtype helpers usable on the device, launch sizing and the GEMM entry point.
 *
 * Execution model: one stream per backend; every op enqueues its kernels on it and returns without waiting
 * (download and the embedding range check are the only ops that synchronise). Temporaries come from the pool
 * and are released as soon as their kernels are enqueued: reuse is safe because every later use of the same
 * block is ordered after them on the same stream. */
#ifndef LYRA_CUDA_INTERNAL_H
#define LYRA_CUDA_INTERNAL_H

#ifdef LYRA2_CUDA_EMU
#include "emu/cuda_emu.h" /* the CPU emulation build: the same kernels, run thread by thread on the host */
#else
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#endif
#include <stdint.h>

#include <tuple>

#include "lyra_cuda.h"
#include "nn/backend.h"

/* ---------------- backend state ---------------- */

typedef struct cu_block {
    void *ptr;
    size_t size;
    int used;
} cu_block;

struct cu_plan_cache; /* cached cuBLASLt descriptors + algorithm per GEMM shape (cuda_gemm.cu) */

typedef struct cuda_state {
    int device;
    int sm_count;
    size_t smem_optin;          /* max dynamic shared memory per block (opt-in) */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;                /* cuBLASLt workspace (fixed size) */
    size_t lt_ws_size;
    cu_block *blocks;           /* the pool: every cudaMalloc this backend made, free or in use */
    int n_blocks, cap_blocks;
    size_t pool_bytes;
    struct cu_plan_cache *plans; /* GEMM plan cache (cuda_gemm.cu), made on first use */
    struct cu_resize_cache *resize_tables; /* resize tables on the device (cuda_resample.cu), made on first use */
    int *d_flag;                /* one device int for error flags reported by kernels */
    /* overlapped uploads (cuda_backend.cu be_upload_async): a copy stream, made on first use, and per ticket the
     * event "the compute stream is done with the destination" and the event "the copy is done" */
    cudaStream_t copy_stream;
    cudaEvent_t copy_free[2], copy_done[2];
} cuda_state;

static inline cuda_state *cu_st(lyra_backend *be) { return (cuda_state *)be->impl; }

/* Makes `device` current for one entry point and gives the calling thread its previous device back on return:
 * a backend's stream, pool and cuBLASLt handle belong to its device, while the thread may have been moved by
 * another backend, by lyra2.backends() or by other CUDA code in the process. Cheap when already current. */
struct cu_device_scope {
    int prev;
    explicit cu_device_scope(int device) : prev(-1) {
        int cur = -1;
        if (cudaGetDevice(&cur) != cudaSuccess || cur == device) return;
        if (cudaSetDevice(device) == cudaSuccess)
            prev = cur;
        else
            cudaGetLastError(); /* the entry point's own calls report the failure with their context */
    }
    ~cu_device_scope() {
        if (prev >= 0) cudaSetDevice(prev);
    }
    cu_device_scope(const cu_device_scope &) = delete;
    cu_device_scope &operator=(const cu_device_scope &) = delete;
};

/* Counts a slow-path call of `kind` (lyra_cuda_fallback_count) and warns on stderr the first time, with the
 * printf-style description of the case. */
void cu_note_fallback(lyra_cuda_fallback kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------- errors (cuda_common.cu) ---------------- */

/* Maps a CUDA error to LYRA_ERR_OOM (allocation) or LYRA_ERR_CUDA with "<what>: <cuda message>". */
lyra_status cu_error(cudaError_t err, const char *what);
lyra_status cu_blas_error(cublasStatus_t st, const char *what);

#define CU_TRY(call, what)                                                                                  \
    do {                                                                                                    \
        cudaError_t cu_e_ = (call);                                                                         \
        if (cu_e_ != cudaSuccess) return cu_error(cu_e_, what);                                             \
    } while (0)
/* After a kernel launch: configuration errors show up here; faults inside kernels at the next sync. */
#define CU_LAUNCHED(what) CU_TRY(cudaGetLastError(), what)
#define CUBLAS_TRY(call, what)                                                                              \
    do {                                                                                                    \
        cublasStatus_t cb_s_ = (call);                                                                      \
        if (cb_s_ != CUBLAS_STATUS_SUCCESS) return cu_blas_error(cb_s_, what);                              \
    } while (0)

/* ---------------- memory (cuda_common.cu) ---------------- */

/* Device memory from the pool (256-byte aligned); NULL with a LYRA_ERR_OOM message naming `what`. */
void *cu_alloc(lyra_backend *be, size_t bytes, const char *what);
/* Returns a block to the pool (stream-ordered reuse; see the file comment). NULL is a no-op. */
void cu_free(lyra_backend *be, void *ptr);

/* ---------------- tensors on the device ---------------- */

/* A tensor descriptor passed to kernels by value. Strides in bytes; broadcast dims have stride 0. */
struct cu_tensor {
    char *data;
    int ndim;
    int dtype;
    int64_t ne[LYRA_MAX_DIMS];
    int64_t nb[LYRA_MAX_DIMS];
};
cu_tensor cu_tensor_of(const lyra_tensor *t);

/* Byte offset of the flat index idx (outermost-first over t's own shape) in t; a stride-0 dim broadcasts. */
__device__ __forceinline__ int64_t cu_offset(const cu_tensor &t, int64_t idx) {
    int64_t off = 0;
    for (int d = t.ndim - 1; d >= 0; d--) {
        off += (idx % t.ne[d]) * t.nb[d];
        idx /= t.ne[d];
    }
    return off;
}

__device__ __forceinline__ float cu_load(const char *p, int dt) {
    switch (dt) {
    case LYRA_DTYPE_F32: return *(const float *)p;
    case LYRA_DTYPE_BF16: return __bfloat162float(*(const __nv_bfloat16 *)p);
    case LYRA_DTYPE_F16: return __half2float(*(const __half *)p);
    default: return 0.0f;
    }
}
__device__ __forceinline__ void cu_store(char *p, int dt, float v) {
    switch (dt) {
    case LYRA_DTYPE_F32: *(float *)p = v; break;
    case LYRA_DTYPE_BF16: *(__nv_bfloat16 *)p = __float2bfloat16_rn(v); break;
    case LYRA_DTYPE_F16: *(__half *)p = __float2half_rn(v); break;
    default: break;
    }
}

__host__ __device__ __forceinline__ int cu_esize(int dt) {
    switch (dt) {
    case LYRA_DTYPE_BF16: case LYRA_DTYPE_F16: return 2;
    case LYRA_DTYPE_I64: return 8;
    case LYRA_DTYPE_U8: return 1;
    default: return 4;
    }
}

/* Activations, the same formulas as the CPU backend (accurate libdevice functions, no fast-math). */
/* The max over the block of non-negative values v (blockDim.x a multiple of 32, at most 1024), in thread 0 (the
 * other threads get partial maxima). Every thread of the block calls it; sh: 32 floats of shared memory, which a
 * caller reusing it in a loop guards with a __syncthreads() before the next call. */
__device__ __forceinline__ float cu_block_max_nonneg(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    return v;
}

__device__ __forceinline__ float cu_act(int act, float x) {
    switch (act) {
    case LYRA_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case LYRA_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case LYRA_ACT_SILU: return x / (1.0f + expf(-x));
    case LYRA_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case LYRA_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    default: return x;
    }
}

/* ---------------- launches ----------------
 * Every kernel launch goes through cu_launch(kernel, grid, block, smem, stream, args...): the <<<>>> launch under
 * nvcc; in the emulation build (LYRA2_CUDA_EMU) the kernel's parameters are copied once, as the launch does,
 * and every thread of every block runs the kernel body (emu/emu_launch.cpp). */
#ifdef LYRA2_CUDA_EMU
template <typename... P, typename... A>
void cu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const A &...args) {
    struct call {
        void (*kernel)(P...);
        std::tuple<P...> params;
        static void run(void *self) {
            call *c = (call *)self;
            std::apply(c->kernel, c->params); /* by value: each thread gets its own copy, as on the GPU */
        }
    } c{kernel, std::tuple<P...>(args...)};
    lyra_cuemu_launch((const void *)kernel, grid, block, smem, stream, &call::run, &c);
}
/* Dynamic shared memory: `extern __shared__ T name[]` on the GPU, the launch's per-block buffer here. */
#define CU_DYNAMIC_SMEM(T, name, align) T *name = (T *)lyra_cuemu_dynamic_smem(nullptr)
#else
template <typename... P, typename... A>
void cu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const A &...args) {
    kernel<<<grid, block, smem, stream>>>(args...);
}
#define CU_DYNAMIC_SMEM(T, name, align) extern __shared__ __align__(align) T name[]
#endif

/* Blocks for a grid-stride loop over n items with `threads` per block. */
static inline unsigned cu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)b;
}

static inline int cu_is_float(int dt) {
    return dt == LYRA_DTYPE_F32 || dt == LYRA_DTYPE_BF16 || dt == LYRA_DTYPE_F16;
}

/* Largest power of two (<= 256) dividing the address: what cuBLASLt and vector loads may assume. */
static inline int cu_align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
    return al;
}

/* y = x with conversion between float dtypes or a raw copy of equal dtypes; any shapes/strides
 * (y and x same shape). Shared by copy, concat, packing of GEMM operands and uploads. */
lyra_status cu_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x);

/* A contiguous device copy of t in dtype `dt` (converted if needed) when t is not already contiguous of
 * that dtype: returns t's own data, or a pool block the caller frees (in *owned; NULL when not allocated). */
lyra_status cu_contiguous(lyra_backend *be, const lyra_tensor *t, lyra_dtype dt, const void **data, void **owned,
                          const char *what);

/* ---------------- GEMM (cuda_gemm.cu) ---------------- */

/* Row-major C[M,N] = alpha·scale_a·scale_b·op(A)[M,K]·op(B)[K,N] + beta·C (+ bias[N]) (then GELU-tanh),
 * batched with element strides sa/sb/sc (batch >= 1). op(A) = A (lda >= K) or Aᵀ for A stored K×M (transa).
 * Types: A/B both f32 (exact fp32, no TF32), both bf16 or both f16 (fp32 accumulation), or both FP8 e4m3
 * (ta = tb = CUDA_R_8F_E4M3, scale_a/scale_b device pointers to f32 dequantisation scales). C f32 or the
 * A/B 16-bit type. bias: NULL or a packed vector of type tbias. cuBLASLt when it has an algorithm for the
 * case, else a simple tiled kernel (any case, slower). */
typedef struct cu_gemm_desc {
    int transa, transb;
    int64_t M, N, K;
    const void *A;
    cudaDataType_t ta;
    int64_t lda, sa;
    const void *B;
    cudaDataType_t tb;
    int64_t ldb, sb;
    void *C;
    cudaDataType_t tc;
    int64_t ldc, sc;
    int batch;
    float alpha, beta;
    const void *bias;
    cudaDataType_t tbias;
    int gelu;
    const float *scale_a, *scale_b;
} cu_gemm_desc;
lyra_status cu_gemm(lyra_backend *be, const cu_gemm_desc *g);
void cu_plans_free(cuda_state *st);

static inline cudaDataType_t cu_dt(int dt) {
    switch (dt) {
    case LYRA_DTYPE_BF16: return CUDA_R_16BF;
    case LYRA_DTYPE_F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
    }
}

/* ---------------- op entries, grouped by file ---------------- */

lyra_status cu_op_copy(lyra_backend *, lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_fill(lyra_backend *, lyra_tensor *, float);
lyra_status cu_op_concat(lyra_backend *, lyra_tensor *, const lyra_tensor *const *, int, int);
lyra_status cu_op_unary(lyra_backend *, lyra_tensor *, const lyra_tensor *, lyra_act);
lyra_status cu_op_glu(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, lyra_act);
lyra_status cu_op_add(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_mul(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_scale(lyra_backend *, lyra_tensor *, const lyra_tensor *, float, float);
lyra_status cu_op_modulate(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                           const lyra_tensor *);
lyra_status cu_op_gate(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *);

lyra_status cu_op_pad(lyra_backend *, lyra_tensor *, const lyra_tensor *, const int64_t *, lyra_pad_mode);
lyra_status cu_op_patchify(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, int, int, lyra_patch_order);
lyra_status cu_op_unpatchify(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, int, int, lyra_patch_order);
lyra_status cu_op_embedding(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_upsample_nearest2x(lyra_backend *, lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_avg_pool3d(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, int, int);

lyra_status cu_op_rms_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, float);
lyra_status cu_op_layer_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                             const lyra_tensor *, float);
lyra_status cu_op_l2norm_channels(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                                  const lyra_tensor *, float);
lyra_status cu_op_group_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, const lyra_tensor *,
                             const lyra_tensor *, float);
lyra_status cu_op_softmax(lyra_backend *, lyra_tensor *, const lyra_tensor *, float);
lyra_status cu_op_rope(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, lyra_rope_mode, int);
lyra_status cu_op_sincos(lyra_backend *, lyra_tensor *, const lyra_tensor *, int);
lyra_status cu_op_quantize_fp8_rows(lyra_backend *, lyra_tensor *, lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_linear_fp8(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                             const lyra_tensor *, const lyra_tensor *, const lyra_tensor *);

lyra_status cu_op_linear(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                         const lyra_tensor *);
lyra_status cu_op_linear_act(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                             const lyra_tensor *, lyra_act);
lyra_status cu_op_matmul(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, int, float);
lyra_status cu_op_attention(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                            const lyra_tensor *, const lyra_tensor *, const lyra_tensor *, float);

lyra_status cu_op_conv2d(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                         const lyra_tensor *, const lyra_conv2d_params *);
lyra_status cu_op_conv3d(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                         const lyra_tensor *, const lyra_tensor *, const lyra_conv3d_params *);
lyra_status cu_op_conv_transpose2d(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                                   const lyra_tensor *, int, int);
lyra_status cu_op_resize(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_resize_params *);
void cu_resize_cache_free(lyra_backend *be);

lyra_status cu_op_gs_rasterize(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                               const lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_splat_camera *);
lyra_status cu_op_warp_forward(lyra_backend *, lyra_tensor *, lyra_tensor *, lyra_tensor *, const lyra_tensor *,
                               const lyra_tensor *, const lyra_warp_params *);

lyra_status cu_op_rays(lyra_backend *, lyra_tensor *, int, int, const lyra_ray_params *);
lyra_status cu_op_to_u8(lyra_backend *, lyra_tensor *, const lyra_tensor *, lyra_u8_mode);
lyra_status cu_op_fill_random(lyra_backend *, lyra_tensor *, const lyra_random_fill *);
lyra_status cu_op_minmax(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cu_op_range_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, float);
/* cuda_latent.cu */
lyra_status cu_op_latent_update(lyra_backend *, lyra_tensor *, const lyra_tensor *const *, int,
                                const lyra_latent_update *);
lyra_status cu_op_u8_pixels(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_u8_pixels_params *);
/* cuda_da3_merge.cu */
lyra_status cu_op_da3_merge(lyra_backend *, lyra_tensor *, lyra_tensor *, lyra_tensor *, lyra_tensor *,
                            const lyra_tensor *, const float *);
lyra_status cu_op_depth_resize(lyra_backend *, lyra_tensor *, const lyra_tensor *, double);

/* The fused flash-attention kernel (cuda_attention_flash.cu): 1 when it handled the call (status in *st),
 * 0 when the case is outside what it supports (dtype, head dim, alignment) and the caller falls back. */
int cu_flash_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                       const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask, float scale,
                       lyra_status *st);

#endif
