/* The C face of the CUDA part (the .cu files in csrc/nn/cuda/). Only compiled and linked when LYRA2_WITH_CUDA is defined;
 * the CPU-only build never includes the CUDA headers (nn/backend.h's lyra_backend_init reports the missing
 * backend instead). */
#ifndef LYRA_CUDA_H
#define LYRA_CUDA_H

#include "lyra2.h"
#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver, a driver too old for the runtime, or no GPU (never
 * an error). The single place that decides whether the CUDA backend can run. */
int lyra_cuda_device_count(void);
/* When lyra_cuda_device_count() is 0: returns 1 and writes why into buf (the CUDA error, the driver's and the
 * runtime's versions); else returns 0 and writes "". */
int lyra_cuda_unavailable_reason(char *buf, size_t size);
/* Writes the device's name into buf (NUL-terminated). */
lyra_status lyra_cuda_device_name(int device, char *buf, size_t size);
/* Total (from the device properties, no context) and free memory of the device, in bytes; free_bytes may be
 * NULL, and only a non-NULL one creates a context on `device`. The calling thread's current device is kept. */
lyra_status lyra_cuda_device_memory(int device, size_t *free_bytes, size_t *total_bytes);

/* Slow paths that give right numbers but run far below the fast kernels' speed: counted per process (every
 * CUDA backend together) and reported once on stderr, so a run and the device tests can see them. */
typedef enum lyra_cuda_fallback {
    LYRA_CUDA_FALLBACK_GEMM,      /* cuBLASLt had no algorithm: the tiled reference GEMM ran */
    LYRA_CUDA_FALLBACK_ATTENTION, /* outside the fused kernel (dtype, head dim, alignment): the reference ran */
    LYRA_CUDA_FALLBACK_KINDS
} lyra_cuda_fallback;
/* "gemm", "attention". */
const char *lyra_cuda_fallback_name(lyra_cuda_fallback kind);
/* Calls of `kind` that took the slow path since the process started; *first (if given) describes the first
 * one ("" before it is recorded). */
unsigned long long lyra_cuda_fallback_count(lyra_cuda_fallback kind, const char **first);

/* The CUDA backend on `device` (0-based): one stream, a cuBLASLt handle, a device memory pool. Fills *be like
 * lyra_backend_cpu_init; release with lyra_backend_free. LYRA_ERR_CUDA when there is no such device. Tensors
 * passed to its ops live in device memory (be->ops->alloc, or lyra_op_upload). Activations may be f32, bf16 or
 * f16; f32 GEMMs run in exact fp32 (no TF32) so the backend matches the CPU reference to f32 rounding. */
lyra_status lyra_backend_cuda_init(lyra_backend *be, int device);
/* The same backend on the heap; NULL on failure (message in lyra_error_message()). */
lyra_backend *lyra_backend_cuda_create(int device);
void lyra_backend_cuda_destroy(lyra_backend *be);
/* Bytes the backend's pool holds from cudaMalloc (in use or cached). */
size_t lyra_cuda_pool_bytes(lyra_backend *be);

/* ---- FP8 (e4m3) weights, an optional GEMM path (Hopper tensor cores) ----
 * Quantises w (N, K) (f32/bf16/f16, on the device) into w8 (N, K) u8 holding e4m3 bits and scale f32:
 * (1) per tensor or (N) per output channel, scale = amax / 448 (1 where amax = 0); w ≈ w8 · scale. */
lyra_status lyra_cuda_quantize_fp8(lyra_backend *be, lyra_tensor *w8, lyra_tensor *scale, const lyra_tensor *w);
/* y = x·(w8·scale)ᵀ + b with x (..., K) bf16/f16/f32 quantised per tensor on the fly (amax / 448), fp32
 * accumulation. x rows contiguous; y (..., N) bf16 or f32, rows contiguous; b (N) or NULL (applied as bf16, what
 * cuBLASLt's FP8 kernels take). K % 16 == 0, w8 16-byte aligned and, with a per-tensor scale, y's rows 16-byte
 * aligned (cuBLASLt's FP8 requirements): LYRA_ERR_ARG otherwise, rather than a naive kernel. */
lyra_status lyra_cuda_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w8,
                                 const lyra_tensor *scale, const lyra_tensor *b);

#ifdef __cplusplus
}
#endif
#endif
