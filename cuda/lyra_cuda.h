/* The C face of the CUDA part (the .cu files in cuda/). Only compiled and linked when LYRA2_WITH_CUDA is defined;
 * the CPU-only build never includes the CUDA headers. */
#ifndef LYRA_CUDA_H
#define LYRA_CUDA_H

#include "lyra2.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices; 0 when there is no driver or no GPU (never an error). */
int lyra_cuda_device_count(void);
/* Writes the device's name into buf (NUL-terminated). */
lyra_status lyra_cuda_device_name(int device, char *buf, size_t size);
/* Total and free memory of the device, in bytes. */
lyra_status lyra_cuda_device_memory(int device, size_t *free_bytes, size_t *total_bytes);

#ifdef __cplusplus
}
#endif
#endif
