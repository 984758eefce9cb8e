/* Stands in for <cuda_runtime.h>, <cuda_bf16.h>, <cuda_fp16.h>, <cuda_fp8.h> and <cublasLt.h> in the CPU
 * emulation build (LYRA2_CUDA_EMU): the backend's .cu files compile unchanged with the host C++ compiler and
 * their kernels run thread by thread on the CPU. See emu_device.h for the execution model. */
#ifndef LYRA_CUDA_EMU_H
#define LYRA_CUDA_EMU_H

#include "emu_cublaslt.h"
#include "emu_device.h"
#include "emu_runtime.h"
#include "emu_types.h"

#endif
