/* The CUDA runtime subset the backend calls, for the CPU emulation build (emu_runtime.cpp): one emulated device
 * (sm_90 limits: 132 SMs, 227 KiB opt-in shared memory per block), device memory = host heap with a capacity,
 * streams that run everything synchronously at enqueue time, events that read the host clock. Error codes keep
 * the runtime's names and values. */
#ifndef LYRA_CUEMU_RUNTIME_H
#define LYRA_CUEMU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "emu_types.h"

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorLaunchFailure = 719,
} cudaError_t;

typedef struct lyra_cuemu_stream *cudaStream_t;
typedef struct lyra_cuemu_event *cudaEvent_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;

typedef enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
} cudaDeviceAttr;

typedef enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
} cudaFuncAttribute;

enum { cudaStreamDefault = 0, cudaStreamNonBlocking = 1 };
enum { cudaHostAllocDefault = 0 };

typedef struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock, sharedMemPerBlockOptin;
    int multiProcessorCount, major, minor, warpSize, maxThreadsPerBlock;
} cudaDeviceProp;

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
/* The versions the emulation stands for: CUDA 13.0 for both, as the toolkit the nvcc build uses. */
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaDeviceSynchronize(void);

cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t err);
const char *cudaGetErrorName(cudaError_t err);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s = 0);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

/* Records the kernel's opt-in dynamic shared memory; a launch asking for more than 48 KiB without it fails
 * with cudaErrorInvalidValue, as on the GPU. */
cudaError_t lyra_cuemu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value);
size_t lyra_cuemu_func_smem_limit(const void *func); /* what a launch of func may ask for */
template <typename F>
static inline cudaError_t cudaFuncSetAttribute(F *func, cudaFuncAttribute attr, int value) {
    return lyra_cuemu_func_set_attribute((const void *)func, attr, value);
}

/* ---------------- launches (emu_launch.cpp) ---------------- */

/* Runs `body(ctx)` as every thread of every block of the grid, checking the configuration as the runtime does
 * (block <= 1024 threads, grid.y/z <= 65535, shared memory within the limit). Errors are reported through
 * cudaGetLastError. `func` identifies the kernel (for its shared-memory attribute). */
void lyra_cuemu_launch(const void *func, dim3 grid, dim3 block, size_t smem, cudaStream_t s, void (*body)(void *),
                     void *ctx);
/* The error the last launch or emulated library call recorded (internal to the runtime emulation). */
void lyra_cuemu_set_error(cudaError_t err, const char *detail);

#endif
