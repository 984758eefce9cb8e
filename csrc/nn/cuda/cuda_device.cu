// Device discovery and the backend's run-time counters: what lyra2.backends() reports. The one answer to "is
// there a usable CUDA device" is lyra_cuda_device_count(); everything else (the backend's init, the Python
// device list, the test fixtures' REQUIRE check) asks it, so a build with another device layer answers here.
#ifdef LYRA2_CUDA_EMU
#include "emu/cuda_emu.h"
#else
#include <cuda_runtime.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"

static int device_probe(char *why, size_t size) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaSuccess && n > 0) {
        if (why && size) why[0] = '\0';
        return n;
    }
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv); /* 0 when no driver is loaded */
    cudaRuntimeGetVersion(&rt);
    cudaGetLastError(); /* clear the sticky "no driver" error so later calls start clean */
    if (why && size) {
        char versions[160];
        if (drv)
            snprintf(versions, sizeof versions, "driver supports CUDA %d.%d, lyra2 was built with runtime %d.%d",
                     drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
        else
            snprintf(versions, sizeof versions, "no NVIDIA driver loaded, lyra2 was built with runtime %d.%d",
                     rt / 1000, rt % 1000 / 10);
        if (err != cudaSuccess)
            snprintf(why, size, "cudaGetDeviceCount: %s (%s); %s", cudaGetErrorString(err), cudaGetErrorName(err),
                     versions);
        else
            snprintf(why, size, "no CUDA device visible (%s)", versions);
    }
    return 0;
}

extern "C" int lyra_cuda_device_count(void) { return device_probe(NULL, 0); }

extern "C" int lyra_cuda_unavailable_reason(char *buf, size_t size) { return device_probe(buf, size) == 0; }

extern "C" lyra_status lyra_cuda_device_name(int device, char *buf, size_t size) {
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess)
        return lyra_error(LYRA_ERR_CUDA, "cudaGetDeviceProperties(%d): %s", device, cudaGetErrorString(err));
    snprintf(buf, size, "%s", prop.name);
    return LYRA_OK;
}

/* Total memory comes from the properties, which need no context; free memory needs one, so only a caller that
 * asks for it (free_bytes != NULL) creates a context on `device`, and the calling thread's current device is
 * restored either way. */
extern "C" lyra_status lyra_cuda_device_memory(int device, size_t *free_bytes, size_t *total_bytes) {
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess)
        return lyra_error(LYRA_ERR_CUDA, "cudaGetDeviceProperties(%d): %s", device, cudaGetErrorString(err));
    if (total_bytes) *total_bytes = prop.totalGlobalMem;
    if (free_bytes) {
        cu_device_scope on(device);
        size_t total = 0;
        err = cudaMemGetInfo(free_bytes, &total);
        if (err != cudaSuccess)
            return lyra_error(LYRA_ERR_CUDA, "cudaMemGetInfo(device %d): %s", device, cudaGetErrorString(err));
    }
    return LYRA_OK;
}

// ---------------------------------------------------------------- slow-path counters

namespace {

struct fallback_slot {
    unsigned long long count;
    int warned, first_ready;
    char first[256]; /* what the first fallback of this kind was, written once by the thread that warned */
};

fallback_slot fallback_slots[LYRA_CUDA_FALLBACK_KINDS];

const char *const fallback_names[LYRA_CUDA_FALLBACK_KINDS] = {"gemm", "attention"};

} // namespace

/* Process-wide on purpose: a slow path is a property of the build and the GPU, not of one backend, and a
 * warning is printed once per process. */
void cu_note_fallback(lyra_cuda_fallback kind, const char *fmt, ...) {
    fallback_slot *s = &fallback_slots[kind];
    __atomic_fetch_add(&s->count, 1ull, __ATOMIC_RELAXED);
    if (__atomic_exchange_n(&s->warned, 1, __ATOMIC_ACQ_REL)) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->first, sizeof s->first, fmt, ap);
    va_end(ap);
    __atomic_store_n(&s->first_ready, 1, __ATOMIC_RELEASE);
    /* the only stderr line of the library: results stay right, so nothing else would tell a user why a
     * run is many times slower than it should be */
    fprintf(stderr, "lyra2: warning: CUDA %s took its slow reference kernel (%s); further cases are counted in "
                    "lyra2.backends()['cuda_fallbacks']\n",
            fallback_names[kind], s->first);
}

extern "C" const char *lyra_cuda_fallback_name(lyra_cuda_fallback kind) { return fallback_names[kind]; }

extern "C" unsigned long long lyra_cuda_fallback_count(lyra_cuda_fallback kind, const char **first) {
    fallback_slot *s = &fallback_slots[kind];
    unsigned long long n = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
    if (first) *first = __atomic_load_n(&s->first_ready, __ATOMIC_ACQUIRE) ? s->first : "";
    return n;
}
