/* MoGe host-side geometry: the view-plane UV grid, the focal/shift recovery from a point map, infer()'s outputs
 * (upstream MOGE:286-299, MGT:40-52, MGN:79-112), and Lyra's post-processing and DA3 -> MoGe scale alignment (upstream
 * DU:75-80, Z:634-652, DU:33-89, MOGE:302-395, Z:624-626). These run on host float buffers: the point map comes back
 * from the backend once per image. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "models/moge.h"

#define LR 64 /* recover_focal_shift's downsample_size (64, 64) */

/* torch.linspace(start, end, n) in float32: step = (end − start)/(n − 1) in float, the first half counted up
 * from start and the second half down from end, each element start + step·i (end − step·(n−1−i)) with one
 * rounding (a fused multiply-add, as nvcc and the compiled CPU kernel evaluate it). PyTorch's AVX2 CPU path
 * computes only every 8th element this way and steps +step from it, which moves some values by a few ulp
 * (the golden's lm_uv differs by <= 6e-8 from this). */
static void linspace_f32(float *out, int64_t stride, double start_d, double end_d, int64_t n) {
    float start = (float)start_d, end = (float)end_d;
    if (n == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(n - 1);
    int64_t half = n / 2;
    for (int64_t i = 0; i < n; i++)
        out[i * stride] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - 1 - i), end);
}

void lyra_moge_uv(float *uv, int64_t H, int64_t W, double aspect) {
    if (aspect <= 0) aspect = (double)W / (double)H;
    double sx = aspect / sqrt(1.0 + aspect * aspect), sy = 1.0 / sqrt(1.0 + aspect * aspect);
    double ex = sx * (double)(W - 1) / (double)W, ey = sy * (double)(H - 1) / (double)H;
    linspace_f32(uv, 2, -ex, ex, W);                 /* row 0 holds u */
    for (int64_t i = 1; i < H; i++)
        for (int64_t j = 0; j < W; j++) uv[(i * W + j) * 2] = uv[j * 2];
    linspace_f32(uv + 1, 2 * W, -ey, ey, H);         /* column 0 holds v */
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 1; j < W; j++) uv[(i * W + j) * 2 + 1] = uv[i * W * 2 + 1];
}

/* PyTorch 'nearest' source index (docs/REFERENCES.md#resampling): identity for equal sizes, >> 1 for exact 2×, else
 * min(floor(dst·scale), in − 1) with scale = in/out in float32. */
static int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    float scale = (float)in / (float)out;
    int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

void lyra_moge_samples(const float *points, const uint8_t *mask, int64_t H, int64_t W, float *uv, float *xyz,
                       int64_t *n) {
    /* UV is generated at the full map size and then sampled, as upstream does (not generated at 64×64). */
    float *grid_u = malloc(sizeof(float) * (size_t)W), *grid_v = malloc(sizeof(float) * (size_t)H);
    int64_t k = 0;
    if (grid_u && grid_v) {
        double a = (double)W / (double)H, sx = a / sqrt(1.0 + a * a), sy = 1.0 / sqrt(1.0 + a * a);
        linspace_f32(grid_u, 1, -sx * (double)(W - 1) / (double)W, sx * (double)(W - 1) / (double)W, W);
        linspace_f32(grid_v, 1, -sy * (double)(H - 1) / (double)H, sy * (double)(H - 1) / (double)H, H);
        for (int64_t i = 0; i < LR; i++) {
            int64_t si = nearest_src(i, H, LR);
            for (int64_t j = 0; j < LR; j++) {
                int64_t sj = nearest_src(j, W, LR), p = si * W + sj;
                if (mask && !mask[p]) continue;
                uv[2 * k] = grid_u[sj];
                uv[2 * k + 1] = grid_v[si];
                for (int c = 0; c < 3; c++) xyz[3 * k + c] = points[3 * p + c];
                k++;
            }
        }
    }
    free(grid_u);
    free(grid_v);
    *n = k;
}

lyra_status lyra_moge_recover_focal_shift(const float *points, const uint8_t *mask, int64_t H, int64_t W,
                                          float *focal, float *shift, lyra_moge_lm_info *info, int64_t *n_valid) {
    if (H < 1 || W < 1) return lyra_error(LYRA_ERR_ARG, "MoGe focal/shift: empty point map %lldx%lld", (long long)H,
                                          (long long)W);
    float *buf = malloc(sizeof(float) * LR * LR * 5);
    if (!buf) return lyra_error(LYRA_ERR_OOM, "MoGe focal/shift: out of memory");
    int64_t n;
    lyra_moge_samples(points, mask, H, W, buf, buf + 2 * LR * LR, &n);
    lyra_moge_lm_info li = {0};
    lyra_status s = LYRA_OK;
    if (n < 2) { /* MGT: too few samples -> focal 1, shift 0 */
        *focal = 1.0f;
        *shift = 0.0f;
    } else {
        s = lyra_moge_lm_solve(buf, buf + 2 * LR * LR, n, &li, NULL, 0);
        if (s == LYRA_OK) {
            *shift = (float)li.shift;
            s = lyra_moge_lm_focal(buf, buf + 2 * LR * LR, n, *shift, focal);
        }
    }
    free(buf);
    if (info) *info = li;
    if (n_valid) *n_valid = n;
    return s;
}

lyra_status lyra_moge_finish(const float *points, const float *mask_logit, int64_t H, int64_t W, float threshold,
                             float *depth, uint8_t *mask, float *K, float *out_points, float *focal, float *shift) {
    int64_t n = H * W;
    uint8_t *m = mask ? mask : malloc((size_t)n);
    if (!m) return lyra_error(LYRA_ERR_OOM, "MoGe: out of memory for the mask");
    for (int64_t p = 0; p < n; p++) m[p] = mask_logit[p] > threshold;
    lyra_status s = lyra_moge_recover_focal_shift(points, m, H, W, focal, shift, NULL, NULL);
    if (s == LYRA_OK) {
        /* infer(): intrinsics from the focal relative to the half diagonal, in float32 like torch. */
        float a = (float)((double)W / (double)H), d = (float)sqrt(1.0 + (double)W / H * ((double)W / H));
        float fx = *focal / 2.0f * d / a, fy = *focal / 2.0f * d;
        if (K) {
            const float k[9] = {fx, 0, 0.5f, 0, fy, 0.5f, 0, 0, 1};
            for (int i = 0; i < 9; i++) K[i] = k[i];
        }
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++) {
                int64_t p = i * W + j;
                float z = points[3 * p + 2] + *shift;
                if (depth) depth[p] = m[p] ? z : INFINITY;
                if (out_points) {
                    /* force_projection: unproject the pixel centre ((j + 0.5)/W, (i + 0.5)/H) at depth z. */
                    float u = ((float)j + 0.5f) / (float)W, v = ((float)i + 0.5f) / (float)H;
                    float *o = out_points + 3 * p;
                    o[0] = m[p] ? (u - 0.5f) / fx * z : INFINITY;
                    o[1] = m[p] ? (v - 0.5f) / fy * z : INFINITY;
                    o[2] = m[p] ? z : INFINITY;
                }
            }
    }
    if (!mask) free(m);
    return s;
}

void lyra_moge_lyra_depth(float *depth, const uint8_t *mask, int64_t n) {
    for (int64_t p = 0; p < n; p++) {
        float d = depth[p];
        if (isnan(d)) d = 1e4f;                           /* torch.nan_to_num(nan=1e4): ±inf -> ±FLT_MAX, */
        d = d < 0.0f ? 0.0f : d > 1e4f ? 1e4f : d;        /* which the clamp then maps to 0 / 1e4 anyway */
        depth[p] = mask[p] ? d : 1000.0f;
    }
}

void lyra_moge_align(const float *da3_depth, const float *da3_mask, const float *moge_depth,
                     const uint8_t *moge_mask, int64_t n, float *out, lyra_moge_align_info *info) {
    /* Terms in float32 as torch computes them; the sums in double (torch's float32 reductions differ from any
     * fixed order by ~1e-7 relative, the golden allows 3e-5). */
    double num = 0.0, den = 0.0;
    int64_t valid = 0;
    for (int64_t p = 0; p < n; p++) {
        if (!(da3_mask[p] > 0.5f) || !moge_mask[p]) continue;
        float a = 1.0f / (da3_depth[p] + 1e-6f), b = 1.0f / (moge_depth[p] + 1e-6f);
        num += (double)(a * b);
        den += (double)(a * a);
        valid++;
    }
    lyra_moge_align_info r = {valid, (float)num, (float)den, 1.0f, 0};
    if (valid > 10 && r.denominator > 1e-8f) {
        float s = r.numerator / r.denominator;
        if (s > 1e-6f) {
            r.scale = s;
            r.applied = 1;
        }
    }
    for (int64_t p = 0; p < n; p++) out[p] = r.applied ? da3_depth[p] / r.scale : da3_depth[p];
    if (info) *info = r;
}
