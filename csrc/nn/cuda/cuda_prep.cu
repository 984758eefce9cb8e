// The chunk-input ops (nn/ops.h "chunk inputs") on the device: ray images, uint8 frames, a running min/max and the
// range normalisation. Each rounds every step in f32 exactly as its CPU reference (nn/cpu/cpu_prep.c): products and
// sums through __fmul_rn / __fadd_rn so nvcc cannot contract them into FMAs, '/' and sqrtf IEEE-rounded (nvcc's
// -prec-div / -prec-sqrt defaults). The results are bit-identical to the CPU's (a bf16/f16 output of rays and
// range_norm is that f32 result rounded once to nearest even). u8_pixels, DA3's input pixels, is
// nn/u8_pixels_math.h's arithmetic with the same rounding operators, bit-identical too.
#include "cuda_internal.h"

#define RAYS_FN static __device__ inline
#define RAYS_MUL(a, b) __fmul_rn((a), (b))
#define RAYS_ADD(a, b) __fadd_rn((a), (b))
#include "nn/rays_math.h"

#define U8P_FN static __device__ inline
#define U8P_MUL(a, b) __fmul_rn((a), (b))
#define U8P_ADD(a, b) __fadd_rn((a), (b))
#define U8P_SUB(a, b) __fsub_rn((a), (b))
#define U8P_RINT(v) __float2int_rn(v)
#define U8P_DMUL(a, b) __dmul_rn((a), (b))
#define U8P_DADD(a, b) __dadd_rn((a), (b))
#include "nn/u8_pixels_math.h"

namespace {


// One thread per pixel: its 6 components into the channels of its unshuffle position.
__global__ void rays_kernel(char *y, int ydt, int64_t nb0, int64_t nb1, int64_t nb2, int height, int width,
                            lyra_ray_params p) {
    const int u = p.unshuffle, uu = u * u;
    const int64_t HW = (int64_t)height * width;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < HW; k += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(k / width), i = (int)(k % width);
        float px[6];
        lyra_ray_pixel(p.K, p.c2w, i, j, p.moment, px);
        const int64_t ch = (int64_t)(j % u) * u + i % u, off = (j / u) * nb1 + (i / u) * nb2;
        for (int c = 0; c < 6; c++) cu_store(y + (c * uu + ch) * nb0 + off, ydt, px[c]);
    }
}

__device__ __forceinline__ uint8_t u8_of(float v, int mode) {
    if (mode == LYRA_U8_VIDEO) {
        v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
        return (uint8_t)(int)__fmul_rn(__fadd_rn(v, 1.0f) / 2.0f, 255.0f);
    }
    v = __fadd_rn(__fmul_rn(v, 0.5f), 0.5f);
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    return (uint8_t)(int)__fadd_rn(__fmul_rn(v, 255.0f), 0.5f);
}

// One thread per output element of y (N, C, Ho, Wo) f32 contiguous, from x (N, H, W, C) u8 contiguous.
__global__ void u8_pixels_kernel(float *y, const uint8_t *x, int H, int W, int C, int Ho, int Wo,
                                 lyra_u8_pixels_params p, int64_t total) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        const int xx = (int)(k % Wo), yy = (int)(k / Wo % Ho), c = (int)(k / ((int64_t)Wo * Ho) % C);
        const int64_t n = k / ((int64_t)Wo * Ho * C);
        y[k] = lyra_u8p_pixel(x + n * H * W * C, H, W, C, Ho, Wo, (int)p.resample, yy, xx, c, p.mean[c], p.std[c]);
    }
}

// One thread per output byte of y (N, H, W, C).
__global__ void to_u8_kernel(uint8_t *y, cu_tensor x, int mode, int64_t total) {
    const int64_t C = x.ne[1], H = x.ne[2], W = x.ne[3];
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = k % C, w = (k / C) % W, h = (k / (C * W)) % H, n = k / (C * W * H);
        y[k] = u8_of(cu_load(x.data + n * x.nb[0] + c * x.nb[1] + h * x.nb[2] + w * x.nb[3], x.dtype), mode);
    }
}

// One block: each thread a strided share of the elements, then a shared-memory tree. Min and max are exact, so the
// order does not matter; fminf / fmaxf skip NaNs as the CPU's comparisons do.
#define MINMAX_THREADS 256
__global__ void minmax_kernel(float *mm, cu_tensor x, const float *prev, int64_t n) {
    __shared__ float lo_s[MINMAX_THREADS], hi_s[MINMAX_THREADS];
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        const float v = *(const float *)(x.data + cu_offset(x, k));
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    lo_s[threadIdx.x] = lo;
    hi_s[threadIdx.x] = hi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            lo_s[threadIdx.x] = fminf(lo_s[threadIdx.x], lo_s[threadIdx.x + s]);
            hi_s[threadIdx.x] = fmaxf(hi_s[threadIdx.x], hi_s[threadIdx.x + s]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        lo = lo_s[0];
        hi = hi_s[0];
        if (prev) { // prev may be mm itself: read before writing
            lo = fminf(prev[0], lo);
            hi = fmaxf(prev[1], hi);
        }
        mm[0] = lo;
        mm[1] = hi;
    }
}

__global__ void range_norm_kernel(cu_tensor y, cu_tensor x, const float *mm, float eps, int64_t n) {
    const float lo = mm[0], hi = mm[1], d = __fadd_rn(hi, -lo), range = d > eps ? d : eps;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        const float v = *(const float *)(x.data + cu_offset(x, k));
        cu_store(y.data + cu_offset(y, k), y.dtype, __fadd_rn(__fmul_rn(2.0f, __fadd_rn(v, -lo)) / range, -1.0f));
    }
}

} // namespace

lyra_status cu_op_rays(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p) {
    const int64_t HW = (int64_t)height * width;
    if (!cu_is_float(y->dtype)) return lyra_error(LYRA_ERR_TYPE, "rays: y must be f32, bf16 or f16");
    cu_launch(rays_kernel, cu_blocks(HW, 256), 256, 0, cu_st(be)->stream, (char *)y->data, (int)y->dtype, y->nb[0],
              y->nb[1], y->nb[2], height, width, *p);
    CU_LAUNCHED("rays");
    return LYRA_OK;
}

lyra_status cu_op_to_u8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode) {
    const int64_t total = lyra_tensor_numel(y);
    if (!total) return LYRA_OK;
    cu_launch(to_u8_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, (uint8_t *)y->data, cu_tensor_of(x),
              (int)mode, total);
    CU_LAUNCHED("to_u8");
    return LYRA_OK;
}

lyra_status cu_op_minmax(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev) {
    if (!lyra_tensor_is_contiguous(mm) || (prev && !lyra_tensor_is_contiguous(prev)))
        return lyra_error(LYRA_ERR_ARG, "minmax: the CUDA backend needs contiguous mm and prev");
    cu_launch(minmax_kernel, 1, MINMAX_THREADS, 0, cu_st(be)->stream, (float *)mm->data, cu_tensor_of(x),
              prev ? (const float *)prev->data : (const float *)nullptr, lyra_tensor_numel(x));
    CU_LAUNCHED("minmax");
    return LYRA_OK;
}

lyra_status cu_op_range_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm, float eps) {
    if (!lyra_tensor_is_contiguous(mm)) return lyra_error(LYRA_ERR_ARG, "range_norm: the CUDA backend needs a contiguous mm");
    const int64_t n = lyra_tensor_numel(x);
    if (!n) return LYRA_OK;
    cu_launch(range_norm_kernel, cu_blocks(n, 256), 256, 0, cu_st(be)->stream, cu_tensor_of(y), cu_tensor_of(x),
              (const float *)mm->data, eps, n);
    CU_LAUNCHED("range_norm");
    return LYRA_OK;
}

lyra_status cu_op_u8_pixels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_u8_pixels_params *p) {
    const int64_t total = lyra_tensor_numel(y);
    cu_launch(u8_pixels_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, (float *)y->data,
              (const uint8_t *)x->data, (int)x->ne[1], (int)x->ne[2], (int)x->ne[3], (int)y->ne[2], (int)y->ne[3], *p,
              total);
    CU_LAUNCHED("u8_pixels");
    return LYRA_OK;
}
