// The CUDA runtime calls of the backend, on the host, for the CPU emulation build: see emu_runtime.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "cuda_emu.h"

namespace {

constexpr size_t DEFAULT_SMEM = 48 << 10;          /* without the opt-in attribute */
constexpr size_t OPTIN_SMEM = 227 << 10;           /* sm_90's cudaDevAttrMaxSharedMemoryPerBlockOptin */
constexpr int SM_COUNT = 132;                      /* H100 SXM */

std::mutex g_lock;                                 /* the error, the allocation table and the attributes */
cudaError_t g_error = cudaSuccess;
char g_detail[640];
std::map<void *, size_t> g_allocs;
size_t g_used;
std::map<const void *, size_t> g_func_smem;

/* The emulated device's capacity: half the host's memory, at most 80 GiB (an H100's), so an impossible
 * request fails as cudaErrorMemoryAllocation before malloc is asked. */
size_t capacity() {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t half = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 2 : (size_t)8 << 30;
    size_t h100 = (size_t)80 << 30;
    return half < h100 ? half : h100;
}

double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

} // namespace

struct lyra_cuemu_stream {
    int unused;
};
struct lyra_cuemu_event {
    double ms;
    int recorded;
};

void lyra_cuemu_set_error(cudaError_t err, const char *detail) {
    std::lock_guard<std::mutex> l(g_lock);
    if (g_error == cudaSuccess) {
        g_error = err;
        snprintf(g_detail, sizeof g_detail, "%s", detail ? detail : "");
    }
}

static cudaError_t take_error() {
    std::lock_guard<std::mutex> l(g_lock);
    cudaError_t e = g_error;
    g_error = cudaSuccess;
    return e;
}

cudaError_t cudaGetLastError(void) { return take_error(); }
cudaError_t cudaPeekAtLastError(void) {
    std::lock_guard<std::mutex> l(g_lock);
    return g_error;
}

const char *cudaGetErrorName(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}

/* The runtime's text plus what the emulation found (the fault, the bad configuration), so a failing op says
 * which check fired. The detail stays until the next error. */
const char *cudaGetErrorString(cudaError_t err) {
    static thread_local char buf[800];
    const char *base;
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case cudaErrorInvalidDevicePointer: base = "invalid device pointer"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorNoDevice: base = "no CUDA-capable device is detected"; break;
    case cudaErrorInvalidDevice: base = "invalid device ordinal"; break;
    case cudaErrorLaunchFailure: base = "unspecified launch failure"; break;
    default: base = "unknown error"; break;
    }
    std::lock_guard<std::mutex> l(g_lock);
    if (g_detail[0])
        snprintf(buf, sizeof buf, "%s [CUDA emulation: %s]", base, g_detail);
    else
        snprintf(buf, sizeof buf, "%s", base);
    return buf;
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int *device) {
    *device = 0; /* the one emulated device is always current */
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *version) {
    *version = 13000;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *version) {
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device != 0) return cudaErrorInvalidDevice;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CUDA emulation on the CPU (lyra2, sm_90 semantics)");
    prop->totalGlobalMem = capacity();
    prop->sharedMemPerBlock = DEFAULT_SMEM;
    prop->sharedMemPerBlockOptin = OPTIN_SMEM;
    prop->multiProcessorCount = SM_COUNT;
    prop->major = 9;
    prop->minor = 0;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    if (device != 0) return cudaErrorInvalidDevice;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMultiProcessorCount: *value = SM_COUNT; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)OPTIN_SMEM; break;
    default: return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<std::mutex> l(g_lock);
    size_t cap = capacity();
    *total_bytes = cap;
    *free_bytes = g_used < cap ? cap - g_used : 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return take_error(); }

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    *ptr = nullptr;
    std::lock_guard<std::mutex> l(g_lock);
    if (bytes > capacity() - g_used) return cudaErrorMemoryAllocation;
    /* exactly `bytes` (rounded to the alignment), so the sanitizer sees an access past the end */
    void *p = aligned_alloc(256, (bytes + 255) & ~(size_t)255);
    if (!p) return cudaErrorMemoryAllocation;
    g_allocs[p] = bytes;
    g_used += bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (!ptr) return cudaSuccess;
    std::lock_guard<std::mutex> l(g_lock);
    auto it = g_allocs.find(ptr);
    if (it == g_allocs.end()) return cudaErrorInvalidDevicePointer;
    g_used -= it->second;
    g_allocs.erase(it);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    (void)kind;
    if (bytes) memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    (void)s;
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    if (bytes) memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s) {
    (void)s;
    return cudaMemset(dst, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t *s) {
    *s = new lyra_cuemu_stream{0};
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    return cudaStreamCreate(s);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
/* Work ran at enqueue time; an error a kernel left behind surfaces here as on the GPU. */
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    return take_error();
}

/* Every stream's work ran at enqueue time, in enqueue order: a wait orders nothing more. Waiting on an event never
 * recorded is a no-op on the GPU; the emulation reports it (cudaErrorInvalidResourceHandle) because lyra2 always
 * records before it waits, so it would be an ordering bug. */
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s;
    (void)flags;
    return e && e->recorded ? cudaSuccess : cudaErrorInvalidResourceHandle;
}
/* Host memory stays host memory here (page-locking only changes how the GPU's DMA reads it). */
cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned flags) {
    (void)flags;
    *ptr = malloc(bytes ? bytes : 1);
    return *ptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *ptr) {
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new lyra_cuemu_event{0.0, 0};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    e->ms = now_ms();
    e->recorded = 1;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e->recorded ? cudaSuccess : cudaErrorInvalidResourceHandle; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start->recorded || !end->recorded) return cudaErrorInvalidResourceHandle;
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

cudaError_t lyra_cuemu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > OPTIN_SMEM)
        return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> l(g_lock);
    g_func_smem[func] = (size_t)value;
    return cudaSuccess;
}

size_t lyra_cuemu_func_smem_limit(const void *func) {
    std::lock_guard<std::mutex> l(g_lock);
    auto it = g_func_smem.find(func);
    return it == g_func_smem.end() ? DEFAULT_SMEM : (it->second > DEFAULT_SMEM ? it->second : DEFAULT_SMEM);
}
