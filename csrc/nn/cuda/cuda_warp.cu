// The forward warp on the device (op warp_forward, upstream M:1601-1822, FW:38-54, FW:99-150, FW:188-215,
// FW:280-419): one source view with depth, soft-z-buffer splatted bilinearly into N target cameras. The CPU
// reference is the CPU backend's op (lyra_warp_forward and the steps named at each kernel below); every float
// operation here is the reference's, in its order, with explicit roundings (__fmul_rn / __fadd_rn) where nvcc would otherwise contract a product and a sum
// into an FMA, because the last bit of a splat position decides which points land exactly on integer pixels (the
// floor = ceil double splat, docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 13).
//
// Launches, all on the backend's stream:
//   1. sanitize: the depth, nan_to_num + clamp;
//   2. source: the 5x5 depth-continuity mask, the splat flags and the world points (one thread per pixel);
//   3. max depth: per target the largest projected depth over every source point (a block max per slice of the
//      points, then an atomicMax on the f32 bits, exact whatever the order: the values are >= 0);
//   4. normaliser: per target log1p(max) over its norm batch;
//   5. per sub-batch of targets: the canvases zeroed, then one splat launch per corner (all nw contributions, then
//      sw, ne, se: upstream's four index_put_ calls), each thread one (target, point) adding its C+2 values with
//      atomicAdd, then the normalise pass writing out_image / out_mask / out_depth.
// The cameras travel as kernel arguments (struct warp_cams, at most LYRA_WARP_MAX_SUB_BATCH targets per launch):
// no host->device copy per call. The temporaries (sizes in nn/measure/warp_device_temps.h, which the measuring
// backend records too) come from the pool and are released once the last launch is queued.
//
// Sums: on a GPU the atomics of one pixel land in an arbitrary order (upstream's index_put_(accumulate=True) on
// CUDA is atomic too), and libdevice's log1pf / expf differ from glibc's by an ulp or two, so CUDA agrees with
// the CPU within the tolerance tests/test_cuda_warp.py states. The kernel-emulation build runs the threads of a
// launch one at a time in index order (targets in blockIdx.y, points in x without a grid-stride loop), so each
// pixel sums its contributions in the CPU's order and the result is bit-identical.
#include <math.h>
#include <string.h>

#include "cuda_internal.h"
#include "nn/measure/warp_device_temps.h"
#include "nn/warp.h" /* lyra_warp_invert: the CPU reference's float32 inverse, rounded as upstream's torch.linalg.inv */

namespace {

constexpr int WARP_THREADS = 256;

/* The cameras of one launch: rows 0..2 of each target's w2c (the last row is never used) and its K. */
struct warp_cams {
    float w2c[LYRA_WARP_MAX_SUB_BATCH][12];
    float K[LYRA_WARP_MAX_SUB_BATCH][9];
};

/* The source camera's inverses (host-computed by lyra_warp_invert). */
struct warp_src_cam {
    float kinv[9];
    float c2w[16];
};

/* q = K·(w2c·[X;1])[:3], each row a sequential f32 sum from 0 (lyra_warp_w2c_apply, then the K rows of the
 * reference's splat_prepare / lyra_warp_max_depth). */
__device__ __forceinline__ void warp_project(const float *w2c, const float *K, float X0, float X1, float X2,
                                             float q[3]) {
    float cam[3];
    for (int r = 0; r < 3; r++) {
        float s = 0.0f;
        s = __fadd_rn(s, __fmul_rn(w2c[4 * r + 0], X0));
        s = __fadd_rn(s, __fmul_rn(w2c[4 * r + 1], X1));
        s = __fadd_rn(s, __fmul_rn(w2c[4 * r + 2], X2));
        s = __fadd_rn(s, w2c[4 * r + 3]);
        cam[r] = s;
    }
    for (int r = 0; r < 3; r++) {
        float s = 0.0f;
        for (int k = 0; k < 3; k++) s = __fadd_rn(s, __fmul_rn(K[3 * r + k], cam[k]));
        q[r] = s;
    }
}

/* v < lo ? lo : (v > hi ? hi : v): NaN passes through, as the reference's clampf (fminf/fmaxf would drop it). */
__device__ __forceinline__ float warp_clamp(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* clamp(nan_to_num(d, nan=1e4, inf=FLT_MAX), 0, 1e4) (lyra_warp_sanitize_depth). */
__global__ void sanitize_kernel(int64_t n, const float *depth, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float d = depth[i];
        if (isnan(d)) d = 1e4f;
        out[i] = d < 0.0f ? 0.0f : (d > 1e4f ? 1e4f : d);
    }
}

/* Per pixel: the depth-continuity test over the 5x5 window (row-major window order; max/min over the pixels inside,
 * the mean over 25 with the zero padding), the splat flag, and the world point (0 when not splatted)
 * (lyra_warp_reliable_mask + lyra_warp_unproject). */
__global__ void source_kernel(int height, int width, const float *depth, int clean_points, warp_src_cam cam,
                              float *points, uint8_t *valid) {
    int64_t n = (int64_t)height * width;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int y = (int)(i / width), x = (int)(i % width);
        int y0 = y - 2 < 0 ? 0 : y - 2, y1 = y + 2 >= height ? height - 1 : y + 2;
        int x0 = x - 2 < 0 ? 0 : x - 2, x1 = x + 2 >= width ? width - 1 : x + 2;
        float d = depth[i];
        int ok = d > 0.0f;
        if (ok && clean_points) {
            float lo = depth[(int64_t)y0 * width + x0], hi = lo, sum = 0.0f;
            for (int yy = y0; yy <= y1; yy++)
                for (int xx = x0; xx <= x1; xx++) {
                    float v = depth[(int64_t)yy * width + xx];
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                    sum = __fadd_rn(sum, v);
                }
            float mean = sum / 25.0f;
            float ratio = __fadd_rn(hi, -lo) / __fadd_rn(mean, 1e-6f);
            ok = ratio < 0.05f;
        }
        valid[i] = (uint8_t)ok;
        float *X = points + 3 * i;
        if (!ok) {
            X[0] = X[1] = X[2] = 0.0f;
            continue;
        }
        float pix[3] = {(float)x, (float)y, 1.0f}, c[4];
        for (int r = 0; r < 3; r++) {
            float s = 0.0f;
            for (int k = 0; k < 3; k++) s = __fadd_rn(s, __fmul_rn(cam.kinv[3 * r + k], pix[k]));
            c[r] = __fmul_rn(d, s);
        }
        c[3] = 1.0f;
        for (int r = 0; r < 3; r++) {
            float s = 0.0f;
            for (int k = 0; k < 4; k++) s = __fadd_rn(s, __fmul_rn(cam.c2w[4 * r + k], c[k]));
            X[r] = s;
        }
    }
}

/* zmax_bits[t] = max(0, max over every source point of its projected depth in target t) as f32 bits
 * (lyra_warp_max_depth; masked points count, upstream quirk item 6). grid (slices, targets). */
__global__ void max_depth_kernel(int64_t n, const float *points, warp_cams cams, unsigned *zmax_bits) {
    __shared__ float sh[32];
    const int t = blockIdx.y;
    float v = 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float *X = points + 3 * i;
        float q[3];
        warp_project(cams.w2c[t], cams.K[t], X[0], X[1], X[2], q);
        v = q[2] > v ? q[2] : v; /* NaN never wins, as the reference's `if (z > zmax)` */
    }
    v = cu_block_max_nonneg(v, sh);
    if (threadIdx.x == 0) atomicMax(&zmax_bits[t], __float_as_uint(v)); /* >= 0: the bits order as the values */
}

/* log_norm[t] = log1p(max of zmax over t's batch of norm_batch targets, counted from target 0). */
__global__ void normaliser_kernel(int n_targets, int batch, const unsigned *zmax_bits, float *log_norm) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_targets) return;
    int b0 = t / batch * batch, b1 = b0 + batch < n_targets ? b0 + batch : n_targets;
    float zmax = 0.0f;
    for (int u = b0; u < b1; u++) {
        float z = __uint_as_float(zmax_bits[u]);
        zmax = z > zmax ? z : zmax;
    }
    log_norm[t] = log1pf(zmax);
}

/* One corner of the splat (the reference's splat_prepare + the corner's accumulation in lyra_warp_splat): thread (point i, target
 * blockIdx.y) adds value·w for each channel, depth·w and w at its corner's canvas pixel. No grid-stride loop, so
 * that the emulation runs the points of a target in ascending order, as the reference's loop. */
__global__ void splat_kernel(int corner, int channels, int height, int width, const float *image,
                             const float *points, const uint8_t *valid, warp_cams cams, const float *log_norm,
                             float *canvas, int64_t canvas_target) {
    const int64_t HW = (int64_t)height * width;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int t = blockIdx.y;
    if (i >= HW || !valid[i]) return;
    const int x = (int)(i % width), y = (int)(i / width), Wc = width + 2;
    const float *X = points + 3 * i;
    float q[3];
    warp_project(cams.w2c[t], cams.K[t], X[0], X[1], X[2], q);
    const float z = q[2];
    /* points behind the camera carry weight 0 upstream: skipping them leaves every visible sum unchanged */
    if (!(z > 0.0f)) return;
    /* upstream recomputes the position as flow + grid: fl(fl(u - x) + x) (FW:142-143, FW:330-331) */
    float flow_x = __fadd_rn(q[0] / __fadd_rn(z, 1e-7f), -(float)x);
    float flow_y = __fadd_rn(q[1] / __fadd_rn(z, 1e-7f), -(float)y);
    float ox = __fadd_rn(__fadd_rn(flow_x, (float)x), 1.0f), oy = __fadd_rn(__fadd_rn(flow_y, (float)y), 1.0f);
    if (!isfinite(ox) || !isfinite(oy)) return; /* non-finite positions land in the cropped pad */
    const float fx = warp_clamp(floorf(ox), 0.0f, (float)(width + 1));
    const float cx = warp_clamp(ceilf(ox), 0.0f, (float)(width + 1));
    const float fy = warp_clamp(floorf(oy), 0.0f, (float)(height + 1));
    const float cy = warp_clamp(ceilf(oy), 0.0f, (float)(height + 1));
    if (cx < 1.0f || fx > (float)width || cy < 1.0f || fy > (float)height) return; /* all four corners in the pad */
    ox = warp_clamp(ox, 0.0f, (float)(width + 1));
    oy = warp_clamp(oy, 0.0f, (float)(height + 1));
    const float inv_scale = __fadd_rn(log_norm[t], 1e-7f);
    float e = __fmul_rn(log1pf(z) / inv_scale, 50.0f);
    if (e > 80.0f) e = 80.0f;
    const float dw = __fadd_rn(expf(e), 1e-7f);
    /* the proximity factors of the corner: 1 - (o - floor) toward the floor side, 1 - (ceil - o) toward the ceil */
    const float wy = corner & 1 ? __fadd_rn(1.0f, -__fadd_rn(cy, -oy)) : __fadd_rn(1.0f, -__fadd_rn(oy, -fy));
    const float wx = corner & 2 ? __fadd_rn(1.0f, -__fadd_rn(cx, -ox)) : __fadd_rn(1.0f, -__fadd_rn(ox, -fx));
    const float w = __fmul_rn(wy, wx) / dw;
    const int32_t py = (int32_t)(corner & 1 ? cy : fy), px = (int32_t)(corner & 2 ? cx : fx);
    const int stride = channels + 2;
    float *acc = canvas + (int64_t)t * canvas_target + ((int64_t)py * Wc + px) * stride;
    for (int c = 0; c < channels; c++) atomicAdd(&acc[c], __fmul_rn(image[c * HW + i], w));
    atomicAdd(&acc[channels], __fmul_rn(z, w));
    atomicAdd(&acc[channels + 1], w);
}

/* The normalised outputs of one sub-batch (lyra_warp_splat's last loop); out_image, out_mask and
 * out_depth point at the sub-batch's first target; mask and depth may be NULL. */
__global__ void normalise_kernel(int channels, int height, int width, const float *canvas, int64_t canvas_target,
                                 float *out_image, float *out_mask, float *out_depth) {
    const int64_t HW = (int64_t)height * width;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int t = blockIdx.y;
    if (i >= HW) return;
    const int x = (int)(i % width), y = (int)(i / width), C = channels;
    const float *acc = canvas + (int64_t)t * canvas_target + ((int64_t)(y + 1) * (width + 2) + (x + 1)) * (C + 2);
    float wsum = acc[C + 1];
    if (isnan(wsum)) wsum = 1000.0f; /* upstream nan_to_num(weights, nan=1000) */
    const int hit = wsum > 0.0f;
    if (out_mask) out_mask[t * HW + i] = hit ? 1.0f : 0.0f;
    float *img = out_image + (int64_t)t * C * HW + i;
    for (int c = 0; c < C; c++) img[c * HW] = warp_clamp(hit ? acc[c] / wsum : -1.0f, -1.0f, 1.0f);
    if (out_depth) out_depth[t * HW + i] = hit ? acc[C] / wsum : 0.0f;
}

/* The cameras of targets [t0, t0 + n) as kernel arguments. */
warp_cams cams_of(const lyra_warp_params *p, int t0, int n) {
    warp_cams c;
    memset(&c, 0, sizeof c);
    for (int j = 0; j < n; j++) {
        memcpy(c.w2c[j], p->tgt_w2c + 16 * (int64_t)(t0 + j), sizeof c.w2c[j]);
        memcpy(c.K[j], p->tgt_K + 9 * (int64_t)(t0 + j), sizeof c.K[j]);
    }
    return c;
}

lyra_status launched(const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? LYRA_OK : cu_error(e, what);
}

/* Everything after the temporaries are in hand; returns at the first failed launch. */
lyra_status warp_launches(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask, lyra_tensor *out_depth,
                          const lyra_tensor *image, const lyra_tensor *depth, const lyra_warp_params *p,
                          const warp_src_cam &src, const lyra_warp_device_temps &tm, char *source, float *canvas) {
    cudaStream_t stream = cu_st(be)->stream;
    const int C = (int)image->ne[0], H = (int)image->ne[1], W = (int)image->ne[2], N = p->n_targets;
    const int64_t HW = (int64_t)H * W;
    float *dsan = (float *)source, *points = (float *)(source + tm.off_points);
    uint8_t *valid = (uint8_t *)(source + tm.off_valid);
    unsigned *zmax_bits = (unsigned *)(source + tm.off_zmax);
    float *log_norm = (float *)(source + tm.off_log_norm);
    const unsigned px_blocks = (unsigned)((HW + WARP_THREADS - 1) / WARP_THREADS);

    cu_launch(sanitize_kernel, dim3(cu_blocks(HW, WARP_THREADS)), dim3(WARP_THREADS), 0, stream, HW,
              (const float *)depth->data, dsan);
    LYRA_TRY(launched("warp_forward sanitize"));
    cu_launch(source_kernel, dim3(cu_blocks(HW, WARP_THREADS)), dim3(WARP_THREADS), 0, stream, H, W,
              (const float *)dsan, p->clean_points, src, points, valid);
    LYRA_TRY(launched("warp_forward source points"));

    CU_TRY(cudaMemsetAsync(zmax_bits, 0, sizeof(unsigned) * (size_t)N, stream), "warp_forward");
    int64_t slices = (HW + 16 * WARP_THREADS - 1) / (16 * WARP_THREADS); /* ~16 points per thread */
    if (slices > 64) slices = 64;
    for (int t0 = 0; t0 < N; t0 += LYRA_WARP_MAX_SUB_BATCH) {
        int n = N - t0 < LYRA_WARP_MAX_SUB_BATCH ? N - t0 : LYRA_WARP_MAX_SUB_BATCH;
        cu_launch(max_depth_kernel, dim3((unsigned)slices, (unsigned)n), dim3(WARP_THREADS), 0, stream, HW,
                  (const float *)points, cams_of(p, t0, n), zmax_bits + t0);
        LYRA_TRY(launched("warp_forward max depth"));
    }
    const int batch = p->norm_batch > 0 ? p->norm_batch : N;
    cu_launch(normaliser_kernel, dim3(cu_blocks(N, WARP_THREADS)), dim3(WARP_THREADS), 0, stream, N, batch,
              (const unsigned *)zmax_bits, log_norm);
    LYRA_TRY(launched("warp_forward normaliser"));

    const int64_t ct = (int64_t)tm.canvas_target_floats;
    for (int t0 = 0; t0 < N; t0 += tm.sub_batch) {
        int n = N - t0 < tm.sub_batch ? N - t0 : tm.sub_batch;
        CU_TRY(cudaMemsetAsync(canvas, 0, sizeof(float) * (size_t)ct * (size_t)n, stream), "warp_forward canvas");
        warp_cams cams = cams_of(p, t0, n);
        for (int corner = 0; corner < 4; corner++) { /* nw (floor y, floor x), sw (ceil y), ne (ceil x), se */
            cu_launch(splat_kernel, dim3(px_blocks, (unsigned)n), dim3(WARP_THREADS), 0, stream, corner, C, H, W,
                      (const float *)image->data, (const float *)points, (const uint8_t *)valid, cams,
                      (const float *)log_norm + t0, canvas, ct);
            LYRA_TRY(launched("warp_forward splat"));
        }
        cu_launch(normalise_kernel, dim3(px_blocks, (unsigned)n), dim3(WARP_THREADS), 0, stream, C, H, W,
                  (const float *)canvas, ct, (float *)out_image->data + (int64_t)t0 * C * HW,
                  out_mask ? (float *)out_mask->data + (int64_t)t0 * HW : (float *)NULL,
                  out_depth ? (float *)out_depth->data + (int64_t)t0 * HW : (float *)NULL);
        LYRA_TRY(launched("warp_forward normalise"));
    }
    return LYRA_OK;
}

} // namespace

lyra_status cu_op_warp_forward(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask,
                               lyra_tensor *out_depth, const lyra_tensor *image, const lyra_tensor *depth,
                               const lyra_warp_params *p) {
    const int C = (int)image->ne[0], H = (int)image->ne[1], W = (int)image->ne[2];
    /* the source inverses on the host, as the CPU reference's lyra_warp_unproject (same function, same errors) */
    warp_src_cam src;
    LYRA_TRY(lyra_warp_invert(p->src_K, 3, src.kinv, "src_K"));
    LYRA_TRY(lyra_warp_invert(p->src_w2c, 4, src.c2w, "src_w2c"));
    const lyra_warp_device_temps tm = lyra_warp_device_temps_of(C, H, W, p->n_targets);
    char *source = (char *)cu_alloc(be, tm.source_bytes, "warp_forward source points");
    if (!source) return LYRA_ERR_OOM;
    float *canvas = (float *)cu_alloc(be, tm.canvas_bytes, "warp_forward canvases");
    if (!canvas) {
        cu_free(be, source);
        return LYRA_ERR_OOM;
    }
    lyra_status s = warp_launches(be, out_image, out_mask, out_depth, image, depth, p, src, tm, source, canvas);
    cu_free(be, canvas); /* stream-ordered reuse: later users of the blocks run after these kernels */
    cu_free(be, source);
    return s;
}
