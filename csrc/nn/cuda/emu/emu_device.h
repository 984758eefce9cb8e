/* Device-side CUDA for the CPU emulation build (LYRA2_CUDA_EMU): qualifiers, the built-in index variables,
 * barriers, warp collectives, atomics and the math intrinsics, over the block scheduler in emu_launch.cpp.
 *
 * Execution model: a launch runs its blocks one after another; a block's threads are cooperative fibers on the
 * calling OS thread, switched only at __syncthreads and warp collectives, so no two threads ever run at once
 * (atomics are plain read-modify-writes) and one block runs at a time (static __shared__ arrays are per block by
 * construction, a plain static array each; launches are serialised by a process-wide lock).
 *
 * Warp collectives (__shfl*_sync, __ballot_sync, __syncwarp, ldmatrix, mma): each lane deposits its operand and
 * waits; the last lane to arrive executes the instruction for the whole warp at once (as the hardware does),
 * then every lane takes its result. The mask must name every lane of the warp that exists and none may have
 * exited: what the backend's kernels use; anything else is reported as a fault (cudaErrorLaunchFailure).
 *
 * Math: the kernels' float functions are the host libm's (glibc: expf/exp2f/erff/tanhf within 1 ulp, sqrtf
 * and division correctly rounded). CUDA documents (Programming Guide, "Mathematical Functions" appendix) expf,
 * exp2f, erff 2 ulp and tanhf 2 ulp; sqrtf and '/' are IEEE-rounded under nvcc's defaults (-prec-sqrt/-prec-div).
 * nvcc also contracts a*b+c into FMA; the emulation is compiled with -ffp-contract=off, so results can differ
 * from the GPU's in the last bit of an f32 intermediate, never more than the tests' tolerances. */
#ifndef LYRA_CUEMU_DEVICE_H
#define LYRA_CUEMU_DEVICE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "emu_types.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
/* One static array per declaration: blocks run one at a time, so it is this block's shared memory (bounded:
 * the sanitizer build puts redzones around it like any global). */
#define __shared__ static

/* The built-in variables, set by the scheduler before it resumes a thread. */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

/* The block's dynamic shared memory (the launch's smem bytes, a malloc'ed buffer of exactly that size). */
unsigned char *lyra_cuemu_dynamic_smem(size_t *size);

/* Reports a kernel fault (the emulation's "illegal instruction"): the launch stops, cudaGetLastError returns
 * cudaErrorLaunchFailure and cudaGetErrorString names the fault. Does not return inside a kernel. */
void lyra_cuemu_fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------- barriers and warp collectives ---------------- */

void __syncthreads(void);

enum lyra_cuemu_collective {
    LYRA_CUEMU_SYNCWARP,
    LYRA_CUEMU_SHFL_IDX,
    LYRA_CUEMU_SHFL_XOR,
    LYRA_CUEMU_SHFL_UP,
    LYRA_CUEMU_SHFL_DOWN,
    LYRA_CUEMU_VOTE,
    LYRA_CUEMU_LDMATRIX,
    LYRA_CUEMU_MMA_BF16
};

/* One lane's part in a warp collective: `in` (at most LYRA_CUEMU_LANE_IN bytes) goes in, the lane's result
 * (at most LYRA_CUEMU_LANE_OUT bytes) comes back in `out` once the whole warp has arrived. */
enum { LYRA_CUEMU_LANE_IN = 48, LYRA_CUEMU_LANE_OUT = 16 };
void lyra_cuemu_warp_collective(int kind, unsigned mask, const void *in, size_t in_size, void *out, size_t out_size);

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    lyra_cuemu_warp_collective(LYRA_CUEMU_SYNCWARP, mask, nullptr, 0, nullptr, 0);
}

struct lyra_cuemu_shfl_in {
    uint64_t value;
    int arg, width;
};

template <typename T>
static inline T lyra_cuemu_shfl(int kind, unsigned mask, T v, int arg, int width) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    lyra_cuemu_shfl_in in = {0, arg, width};
    memcpy(&in.value, &v, sizeof v);
    uint64_t out;
    lyra_cuemu_warp_collective(kind, mask, &in, sizeof in, &out, sizeof out);
    T r;
    memcpy(&r, &out, sizeof r);
    return r;
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return lyra_cuemu_shfl(LYRA_CUEMU_SHFL_IDX, mask, v, src, width);
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return lyra_cuemu_shfl(LYRA_CUEMU_SHFL_XOR, mask, v, lane_mask, width);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return lyra_cuemu_shfl(LYRA_CUEMU_SHFL_UP, mask, v, (int)delta, width);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return lyra_cuemu_shfl(LYRA_CUEMU_SHFL_DOWN, mask, v, (int)delta, width);
}

static inline unsigned __ballot_sync(unsigned mask, int pred) {
    int in = pred != 0;
    unsigned out;
    lyra_cuemu_warp_collective(LYRA_CUEMU_VOTE, mask, &in, sizeof in, &out, sizeof out);
    return out;
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == __ballot_sync(mask, 1); }

/* ---------------- tensor-core and async-copy instructions (wrapped in cuda_ptx.h) ---------------- */

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane 8i+j gives the address of row j of matrix i (16 bytes,
 * 16-byte aligned, inside the block's dynamic shared memory); r[i] of lane L receives row L/4, elements
 * 2(L%4), 2(L%4)+1 of matrix i (or of its transpose with trans). PTX ISA, "Warp-level matrix load: ldmatrix". */
void lyra_cuemu_ldmatrix_x4(uint32_t r[4], const void *row, int trans);
/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d = a·b + c over the warp, fragments per the PTX ISA's
 * "Matrix Fragments for mma.m16n8k16" tables; each element of d is c + the 16 products (exact in f32) added in
 * ascending k, in f32. */
void lyra_cuemu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
/* cp.async.cg.shared.global [dst], [src], 16, src_bytes: dst is filled with NaN bytes at issue and the copy
 * (src_bytes copied, the rest of the 16 zero-filled) is performed at the cp.async.wait_group that covers its
 * group: the earliest moment the old data may be gone and the latest the new data may arrive, so a reader not
 * ordered by a wait and a barrier sees the difference. dst must lie in the dynamic shared memory. */
void lyra_cuemu_cp_async16(void *dst, const void *src, int src_bytes);
void lyra_cuemu_cp_async_commit(void);
void lyra_cuemu_cp_async_wait(int newest_pending);

/* ---------------- atomics (threads never run at once: plain read-modify-write) ---------------- */

template <typename T>
static inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T>
static inline T atomicMax(T *p, T v) {
    T old = *p;
    if (v > old) *p = v;
    return old;
}
template <typename T>
static inline T atomicMin(T *p, T v) {
    T old = *p;
    if (v < old) *p = v;
    return old;
}
template <typename T>
static inline T atomicExch(T *p, T v) {
    T old = *p;
    *p = v;
    return old;
}
template <typename T>
static inline T atomicCAS(T *p, T cmp, T v) {
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}

/* ---------------- fast-math intrinsics: GPU accuracy (Programming Guide, "Intrinsic Functions") vs here ----
 * The kernels use none of __expf/__exp2f/__logf (glibc reserves those names for itself); the ones below exist
 * for kernels that may. */

/* GPU: 2 ulp for |y| in [2^-126, 2^126]. Here: IEEE division (correctly rounded). */
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __fmul_rn(float x, float y) { return x * y; }
static inline float __fadd_rn(float x, float y) { return x + y; }
static inline float __fsub_rn(float x, float y) { return x - y; }
static inline double __dmul_rn(double x, double y) { return x * y; }
static inline double __dsub_rn(double x, double y) { return x - y; }
static inline double __dadd_rn(double x, double y) { return x + y; }
/* round to nearest, ties to even (the default rounding mode), as the GPU's cvt.rni */
static inline int __float2int_rn(float x) { return (int)lrintf(x); }
/* GPU: rsqrt.approx, 2 ulp. Here: 1 / sqrtf(x), two correctly rounded steps. */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

template <typename T>
static inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
static inline T max(T a, T b) { return a < b ? b : a; }

#endif
