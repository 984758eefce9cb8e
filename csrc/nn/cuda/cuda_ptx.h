/* The tensor-core and asynchronous-copy instructions the kernels use, as named __device__ wrappers: inline PTX
 * under nvcc; in the CPU emulation build (LYRA2_CUDA_EMU) the emulation of each instruction (emu/emu_device.h
 * states what it does, per the PTX ISA). Pointers are generic addresses of shared memory (dst/rows) and global
 * memory (src). */
#ifndef LYRA_CUDA_PTX_H
#define LYRA_CUDA_PTX_H

#include "cuda_internal.h"

#ifndef LYRA2_CUDA_EMU
__device__ __forceinline__ uint32_t ptx_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
#endif

/* 16-byte global -> shared copy; src_bytes < 16 zero-fills the rest (src_bytes = 0: src is not read). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
#ifdef LYRA2_CUDA_EMU
    lyra_cuemu_cp_async16(dst, src, src_bytes);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(ptx_smem_u32(dst)), "l"(src), "r"(src_bytes));
#endif
}

/* Closes the group of this thread's cp.async issued since the last commit. */
__device__ __forceinline__ void cp_async_commit() {
#ifdef LYRA2_CUDA_EMU
    lyra_cuemu_cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

/* Waits until at most N of this thread's newest committed groups are still in flight. */
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef LYRA2_CUDA_EMU
    lyra_cuemu_cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

/* ldmatrix .x4: lane 8i+j passes row j of 8×8 b16 matrix i; r[i] receives this lane's fragment of matrix i. */
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *row) {
#ifdef LYRA2_CUDA_EMU
    lyra_cuemu_ldmatrix_x4(r, row, 0);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(ptx_smem_u32(row)));
#endif
}

/* The same with .trans: the fragment of each matrix's transpose. */
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void *row) {
#ifdef LYRA2_CUDA_EMU
    lyra_cuemu_ldmatrix_x4(r, row, 1);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(ptx_smem_u32(row)));
#endif
}

/* c += a·b on one 16×8×16 bf16 tile with f32 accumulators (mma.sync.m16n8k16.row.col). */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifdef LYRA2_CUDA_EMU
    lyra_cuemu_mma_m16n8k16_bf16(c, a, b0, b1);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

#endif
