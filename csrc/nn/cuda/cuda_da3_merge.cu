// DA3's head activations and nested merge (op da3_merge) and the depth maps' resize (op depth_resize) on the device;
// the CPU references are nn/cpu/cpu_da3_merge.c.
//
// da3_merge: the activations run per view over the whole grid; the merge itself is one block of MERGE_THREADS threads
// (a few passes over the S·h·w maps, milliseconds beside DA3's forward). Its selections are exact: the k-th smallest
// non-sky value by a radix select over the float bits (8 bits per pass, a 256-bin histogram in shared memory), the
// same order statistics the host's sort finds (−0 and +0 are one key, as the host's comparison sees them), then
// torch.quantile's f32 lerp with single roundings. The least-squares sums are f64 over each thread's pixels and a tree
// over the threads, not the host's index order: σ can differ from the CPU's in its last f32 bit. expf is CUDA's
// (within 2 ulp; the kernel-emulation build uses the host libm's, so it matches the CPU kernel bit for bit but for σ's
// summation order).
//
// depth_resize: nn/depth_resize_math.h with __fmul_rn / __fadd_rn / __dmul_rn / __dadd_rn, '/' IEEE-rounded: bit for
// bit the CPU's.
#include "cuda_internal.h"

#define DRS_FN static __device__ inline
#define DRS_MUL(a, b) __fmul_rn((a), (b))
#define DRS_ADD(a, b) __fadd_rn((a), (b))
#define DRS_SUB(a, b) __fsub_rn((a), (b))
#define DRS_DMUL(a, b) __dmul_rn((a), (b))
#define DRS_DADD(a, b) __dadd_rn((a), (b))
#include "nn/depth_resize_math.h"

namespace {

constexpr int MERGE_THREADS = 1024;

__global__ void activations_kernel(float *d, float *c, float *m, float factor, int64_t n) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        d[k] = expf(d[k]);
        c[k] = __fadd_rn(expf(c[k]), 1.0f);
        m[k] = __fmul_rn(expf(m[k]), factor);
    }
}

__device__ __forceinline__ bool non_sky(float s) { return s < 0.3f; }

// Order-preserving unsigned key of a float (negative values flipped whole, positive ones with the sign bit set).
__device__ __forceinline__ uint32_t key_of(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u << 1) == 0u) u = 0u;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float float_of(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct select_smem {
    unsigned int hist[256];
    uint32_t prefix, mask;
    unsigned long long rank;
};

// The rank-th smallest (0-based) of x over the non-sky pixels. Every thread of the block calls it and gets it.
__device__ float select_non_sky(const float *x, const float *sky, int64_t n, unsigned long long rank, select_smem *s) {
    if (threadIdx.x == 0) {
        s->prefix = 0u;
        s->mask = 0u;
        s->rank = rank;
    }
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) s->hist[b] = 0u;
        __syncthreads();
        const uint32_t prefix = s->prefix, mask = s->mask;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            if (non_sky(sky[i])) {
                const uint32_t k = key_of(x[i]);
                if ((k & mask) == prefix) atomicAdd(&s->hist[(k >> shift) & 255u], 1u);
            }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned long long cum = 0, r = s->rank;
            int b = 0;
            for (; b < 255; b++) {
                if (cum + s->hist[b] > r) break;
                cum += s->hist[b];
            }
            s->prefix |= (uint32_t)b << shift;
            s->mask |= 255u << shift;
            s->rank = r - cum;
        }
        __syncthreads();
    }
    const float v = float_of(s->prefix);
    __syncthreads(); // the next selection's thread 0 resets s only after every thread has read it
    return v;
}

// torch.quantile(x[non-sky], q) over cnt values: f32 rank q·(cnt − 1), lerp of the two order statistics (at::lerp).
__device__ float quantile_non_sky(const float *x, const float *sky, int64_t n, int64_t cnt, float q, select_smem *s) {
    const float rank = __fmul_rn(q, (float)(cnt - 1));
    const int64_t lo = (int64_t)rank;
    int64_t hi = (int64_t)ceilf(rank);
    if (hi > cnt - 1) hi = cnt - 1;
    const float a = select_non_sky(x, sky, n, (unsigned long long)lo, s);
    const float b = hi == lo ? a : select_non_sky(x, sky, n, (unsigned long long)hi, s);
    const float wgt = __fsub_rn(rank, (float)lo), d = __fsub_rn(b, a);
    return wgt < 0.5f ? __fadd_rn(a, __fmul_rn(wgt, d)) : __fsub_rn(b, __fmul_rn(d, __fsub_rn(1.0f, wgt)));
}

__global__ void merge_kernel(float *stats, float *depth, float *conf, const float *metric, const float *sky,
                             int64_t n) {
    __shared__ select_smem s;
    __shared__ unsigned long long n_non_sky;
    __shared__ double num_s[MERGE_THREADS], den_s[MERGE_THREADS];
    __shared__ float sigma_s;
    const int t = threadIdx.x;
    if (t == 0) n_non_sky = 0ull;
    __syncthreads();
    unsigned long long local = 0;
    for (int64_t i = t; i < n; i += blockDim.x) local += non_sky(sky[i]) ? 1ull : 0ull;
    atomicAdd(&n_non_sky, local);
    __syncthreads();
    const int64_t cnt = (int64_t)n_non_sky;
    if (cnt <= 10) { // the caller refuses (upstream asserts); the maps keep their activations
        if (t == 0) stats[0] = stats[1] = stats[2] = NAN, stats[3] = (float)cnt;
        return;
    }
    const float median = quantile_non_sky(conf, sky, n, cnt, 0.5f, &s);
    double num = 0.0, den = 0.0;
    for (int64_t i = t; i < n; i += blockDim.x) {
        const float d = depth[i], m = metric[i];
        if (conf[i] >= median && non_sky(sky[i]) && m > 0.01f && d > 0.001f) {
            num = __dadd_rn(num, __dmul_rn((double)m, (double)d));
            den = __dadd_rn(den, __dmul_rn((double)d, (double)d));
        }
    }
    num_s[t] = num;
    den_s[t] = den;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) {
            num_s[t] = __dadd_rn(num_s[t], num_s[t + h]);
            den_s[t] = __dadd_rn(den_s[t], den_s[t + h]);
        }
        __syncthreads();
    }
    if (t == 0) sigma_s = (float)num_s[0] / fmaxf((float)den_s[0], 1e-12f);
    __syncthreads();
    const float sigma = sigma_s;
    for (int64_t i = t; i < n; i += blockDim.x) depth[i] = __fmul_rn(depth[i], sigma);
    __syncthreads();
    float q = quantile_non_sky(depth, sky, n, cnt, 0.99f, &s);
    if (q > 200.0f) q = 200.0f;
    for (int64_t i = t; i < n; i += blockDim.x)
        if (!non_sky(sky[i])) depth[i] = q, conf[i] = 1.0f;
    if (t == 0) stats[0] = median, stats[1] = sigma, stats[2] = q, stats[3] = (float)cnt;
}

__global__ void depth_resize_kernel(float *y, const float *x, int n, int h, int w, int H, int W, double divisor) {
    const int64_t total = (int64_t)n * H * W;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(k % W), r = (int)(k / W % H);
        const int64_t v = k / W / H;
        int y0, y1, x0, x1;
        float fy, fx;
        lyra_drs_axis(h, H, r, &y0, &y1, &fy);
        lyra_drs_axis(w, W, c, &x0, &x1, &fx);
        y[k] = lyra_drs_pixel(x + v * h * w, w, y0, y1, fy, x0, x1, fx, divisor);
    }
}

} // namespace

lyra_status cu_op_da3_merge(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                            lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor) {
    const int64_t S = depth->ne[0], hw = depth->ne[1] * depth->ne[2];
    float *d = (float *)depth->data, *c = (float *)conf->data, *m = (float *)metric->data;
    for (int64_t v = 0; v < S; v++) {
        cu_launch(activations_kernel, cu_blocks(hw, 256), 256, 0, cu_st(be)->stream, d + v * hw, c + v * hw,
                  m + v * hw, metric_factor[v], hw);
        CU_LAUNCHED("da3_merge activations");
    }
    cu_launch(merge_kernel, 1, MERGE_THREADS, 0, cu_st(be)->stream, (float *)stats->data, d, c, (const float *)m,
              (const float *)sky->data, S * hw);
    CU_LAUNCHED("da3_merge");
    return LYRA_OK;
}

lyra_status cu_op_depth_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor) {
    const int64_t total = lyra_tensor_numel(y);
    cu_launch(depth_resize_kernel, cu_blocks(total, 256), 256, 0, cu_st(be)->stream, (float *)y->data,
              (const float *)x->data, (int)x->ne[0], (int)x->ne[1], (int)x->ne[2], (int)y->ne[1], (int)y->ne[2],
              divisor);
    CU_LAUNCHED("depth_resize");
    return LYRA_OK;
}
