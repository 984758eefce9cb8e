// Device discovery: what lyra2.backends() reports.
#ifdef LYRA2_CUDA_EMU
#include "emu/cuda_emu.h"
#else
#include <cuda_runtime.h>
#endif
#include <stdio.h>
#include <string.h>

#include "lyra_cuda.h"

extern "C" int lyra_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error so later calls start clean
        return 0;
    }
    return n;
}

extern "C" lyra_status lyra_cuda_device_name(int device, char *buf, size_t size) {
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess)
        return lyra_error(LYRA_ERR_CUDA, "cudaGetDeviceProperties(%d): %s", device, cudaGetErrorString(err));
    snprintf(buf, size, "%s", prop.name);
    return LYRA_OK;
}

extern "C" lyra_status lyra_cuda_device_memory(int device, size_t *free_bytes, size_t *total_bytes) {
    cudaError_t err = cudaSetDevice(device);
    if (err == cudaSuccess) err = cudaMemGetInfo(free_bytes, total_bytes);
    if (err != cudaSuccess)
        return lyra_error(LYRA_ERR_CUDA, "cudaMemGetInfo(device %d): %s", device, cudaGetErrorString(err));
    return LYRA_OK;
}
