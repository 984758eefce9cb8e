/* Preview renderer (see warp_preview.h): warp + fill per frame, one frame per thread at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom/inpaint.h"
#include "nn/warp.h"
#include "geom/warp_preview.h"

static lyra_status check_finite(const float *v, int64_t count, const char *what) {
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(v[i])) return lyra_error(LYRA_ERR_ARG, "%s: element %lld is not finite", what, (long long)i);
    return LYRA_OK;
}

/* Drops pixels on a depth edge: max/min of the 3x3 neighbourhood above 1 + ratio. Such pixels mix
 * foreground and background (anti-aliasing, smooth depth priors) and would fly apart into streaks
 * between the two surfaces; dropped, their area is filled from the background. */
static void drop_depth_edges(const float *depth, int H, int W, float ratio, uint8_t *valid) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float lo = depth[(int64_t)y * W + x], hi = lo;
            for (int yy = y > 0 ? y - 1 : 0; yy <= y + 1 && yy < H; yy++)
                for (int xx = x > 0 ? x - 1 : 0; xx <= x + 1 && xx < W; xx++) {
                    float v = depth[(int64_t)yy * W + xx];
                    if (v <= 0.0f) continue;
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
            if (lo > 0.0f && hi > (1.0f + ratio) * lo) valid[(int64_t)y * W + x] = 0;
        }
}

static uint8_t to_u8(float v) {
    float s = (v + 1.0f) * 127.5f + 0.5f; /* [-1, 1] -> [0, 255], rounded */
    return (uint8_t)(s < 0.0f ? 0.0f : (s > 255.0f ? 255.0f : s));
}

lyra_status lyra_warp_preview_render(const lyra_preview_args *a) {
    const int H = a->height, W = a->width, T = a->frames;
    if (H < 1 || W < 1 || T < 1) return lyra_error(LYRA_ERR_ARG, "preview: bad sizes H=%d W=%d T=%d", H, W, T);
    if ((int64_t)(H + 2) * (W + 2) > INT32_MAX / 2) return lyra_error(LYRA_ERR_ARG, "preview: image %dx%d is too large", H, W);
    LYRA_TRY(check_finite(a->w2c, 16 * (int64_t)T, "w2c"));
    LYRA_TRY(check_finite(a->K, 9 * (int64_t)T, "K"));
    const int64_t HW = (int64_t)H * W;
    const int N = T - 1; /* targets */
    lyra_status st = LYRA_OK;
    float *image = malloc(sizeof(float) * 3 * HW), *depth = malloc(sizeof(float) * HW);
    float *points = malloc(sizeof(float) * 3 * HW), *log_norm = malloc(sizeof(float) * (N > 0 ? N : 1));
    uint8_t *valid = malloc(HW);
    if (!image || !depth || !points || !log_norm || !valid) {
        st = lyra_error(LYRA_ERR_OOM, "preview: out of memory for a %dx%d image", H, W);
        goto done;
    }
    for (int64_t i = 0; i < HW; i++)
        for (int c = 0; c < 3; c++) image[c * HW + i] = (float)a->rgb[3 * i + c] / 127.5f - 1.0f;
    memcpy(a->out, a->rgb, 3 * HW);
    lyra_warp_sanitize_depth(a->depth, HW, depth);
    lyra_warp_reliable_mask(depth, H, W, valid);
    for (int64_t i = 0; i < HW; i++) valid[i] = (uint8_t)(depth[i] > 0.0f && (!a->clean_points || valid[i]));
    if (a->edge_ratio > 0.0f) drop_depth_edges(depth, H, W, a->edge_ratio, valid);
    st = lyra_warp_unproject(depth, valid, H, W, a->K, a->w2c, points);
    if (st != LYRA_OK) goto done;

#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) log_norm[t] = lyra_warp_max_depth(points, HW, a->w2c + 16 * (t + 1), a->K + 9 * (t + 1));
    const int batch = a->norm_batch > 0 ? a->norm_batch : (N > 0 ? N : 1);
    for (int b0 = 0; b0 < N; b0 += batch) {
        int b1 = b0 + batch < N ? b0 + batch : N;
        float zmax = 0.0f;
        for (int t = b0; t < b1; t++) zmax = log_norm[t] > zmax ? log_norm[t] : zmax;
        for (int t = b0; t < b1; t++) log_norm[t] = log1pf(zmax);
    }

    int failed = 0;
#pragma omp parallel
    {
        lyra_warp_scratch ws;
        lyra_inpaint_scratch is;
        memset(&ws, 0, sizeof(ws));
        memset(&is, 0, sizeof(is));
        float *frame = malloc(sizeof(float) * 5 * HW); /* image (3,H,W), mask, depth */
        int ok = frame && lyra_warp_scratch_reserve(&ws, 3, H, W) == LYRA_OK;
#pragma omp atomic
        failed += !ok;
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < N; t++) {
                float *img = frame, *mask = frame + 3 * HW, *dep = frame + 4 * HW;
                lyra_warp_splat_args sa = {
                    .channels = 3, .height = H, .width = W, .image = image, .valid = valid, .points = points,
                    .w2c = a->w2c + 16 * (t + 1), .K = a->K + 9 * (t + 1), .log_norm = log_norm[t],
                    .clamp_image = 1, .hole_value = -1.0f, .out_image = img, .out_mask = mask, .out_depth = dep,
                };
                lyra_warp_splat(&sa, &ws);
                if (lyra_inpaint_pushpull(img, mask, dep, 3, H, W, &is) != LYRA_OK) {
#pragma omp atomic
                    failed++;
                    continue;
                }
                uint8_t *o = a->out + (int64_t)(t + 1) * 3 * HW;
                for (int64_t i = 0; i < HW; i++)
                    for (int c = 0; c < 3; c++) o[3 * i + c] = to_u8(img[c * HW + i]);
            }
        }
        free(frame);
        lyra_warp_scratch_free(&ws);
        lyra_inpaint_scratch_free(&is);
    }
    if (failed) st = lyra_error(LYRA_ERR_OOM, "preview: out of memory for the per-thread frame buffers");
done:
    free(image);
    free(depth);
    free(points);
    free(log_norm);
    free(valid);
    return st;
}
