/* Bilinear splatting with the soft z-buffer, one target camera (upstream M:1601-1822, FW:136-149,
 * FW:302-419).
 *
 * Upstream quirks kept on purpose:
 * - the splat position is recomputed as flow + grid, i.e. fl(fl(u - x) + x), not u (FW:142-143, FW:330-331);
 * - the four corners are floor(o) and ceil(o) per axis, so a coordinate that is exactly an integer puts
 *   two (or four) corners on the same pixel, each with proximity factor 1: the point counts twice (four
 *   times) in that pixel's sums (docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 13);
 * - the depth-weight normaliser is max(log1p z) over the whole batch the caller warps
 * (docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 6);
 * - the accumulation runs corner by corner (all nw contributions, then sw, ne, se), as upstream's four
 *   index_put_ calls, so each pixel sums its contributions in upstream's order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/warp.h"
#include "nn/warp_w2c.h"

float lyra_warp_max_depth(const float *points, int64_t count, const float *w2c, const float *K) {
    float zmax = 0.0f;
    for (int64_t i = 0; i < count; i++) {
        const float *X = points + 3 * i;
        float cam[3];
        lyra_warp_w2c_apply(w2c, X, cam);
        float z = 0.0f;
        for (int k = 0; k < 3; k++) z += K[6 + k] * cam[k];
        if (z > zmax) zmax = z;
    }
    return zmax;
}

lyra_status lyra_warp_scratch_reserve(lyra_warp_scratch *s, int channels, int height, int width) {
    int64_t points = (int64_t)height * width;
    int64_t canvas = (int64_t)(height + 2) * (width + 2) * (channels + 2);
    if (points > s->capacity_points) {
        free(s->corner_index);
        free(s->corner_weight);
        free(s->source_index);
        free(s->source_depth);
        s->corner_index = malloc(sizeof(int32_t) * 4 * points);
        s->corner_weight = malloc(sizeof(float) * 4 * points);
        s->source_index = malloc(sizeof(int32_t) * points);
        s->source_depth = malloc(sizeof(float) * points);
        s->capacity_points = points;
        if (!s->corner_index || !s->corner_weight || !s->source_index || !s->source_depth) {
            s->capacity_points = 0;
            return lyra_error(LYRA_ERR_OOM, "forward warp: out of memory for %lld splat points", (long long)points);
        }
    }
    if (canvas > s->capacity_canvas) {
        free(s->canvas);
        s->canvas = malloc(sizeof(float) * canvas);
        s->capacity_canvas = s->canvas ? canvas : 0;
        if (!s->canvas)
            return lyra_error(LYRA_ERR_OOM, "forward warp: out of memory for a %dx%d canvas", height + 2, width + 2);
    }
    return LYRA_OK;
}

void lyra_warp_scratch_free(lyra_warp_scratch *s) {
    free(s->corner_index);
    free(s->corner_weight);
    free(s->source_index);
    free(s->source_depth);
    free(s->canvas);
    memset(s, 0, sizeof(*s));
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Projects every source point, writes the flow, and records the four corners and weights of each
 * splatted (valid, in front of the camera) point. Returns the number of splatted points. */
static int64_t splat_prepare(const lyra_warp_splat_args *a, lyra_warp_scratch *s) {
    const int H = a->height, W = a->width, Wc = W + 2;
    const int64_t HW = (int64_t)H * W;
    const float *w2c = a->w2c, *K = a->K;
    const float inv_scale = a->log_norm + 1e-7f;
    int64_t n = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int64_t i = (int64_t)y * W + x;
            const float *X = a->points + 3 * i;
            float cam[3], q[3];
            for (int r = 0; r < 3; r++) {
                float t = 0.0f;
                t += w2c[4 * r + 0] * X[0];
                t += w2c[4 * r + 1] * X[1];
                t += w2c[4 * r + 2] * X[2];
                t += w2c[4 * r + 3];
                cam[r] = t;
            }
            for (int r = 0; r < 3; r++) {
                float t = 0.0f;
                for (int k = 0; k < 3; k++) t += K[3 * r + k] * cam[k];
                q[r] = t;
            }
            float z = q[2];
            float flow_x = q[0] / (z + 1e-7f) - (float)x;
            float flow_y = q[1] / (z + 1e-7f) - (float)y;
            if (a->out_flow) {
                a->out_flow[i] = flow_x;
                a->out_flow[HW + i] = flow_y;
            }
            /* Masked points and points behind the camera carry weight 0 upstream: skipping them
             * leaves every visible sum unchanged. Non-finite positions land in the cropped pad. */
            if (!a->valid[i] || !(z > 0.0f)) continue;
            float ox = (flow_x + (float)x) + 1.0f, oy = (flow_y + (float)y) + 1.0f;
            if (!isfinite(ox) || !isfinite(oy)) continue;
            float fx = clampf(floorf(ox), 0.0f, (float)(W + 1)), cx = clampf(ceilf(ox), 0.0f, (float)(W + 1));
            float fy = clampf(floorf(oy), 0.0f, (float)(H + 1)), cy = clampf(ceilf(oy), 0.0f, (float)(H + 1));
            /* All four corners in the pad (cropped away): nothing visible to add. */
            if (cx < 1.0f || fx > (float)W || cy < 1.0f || fy > (float)H) continue;
            ox = clampf(ox, 0.0f, (float)(W + 1));
            oy = clampf(oy, 0.0f, (float)(H + 1));
            float e = log1pf(z) / inv_scale * 50.0f;
            if (e > 80.0f) e = 80.0f;
            float dw = expf(e) + 1e-7f;
            float *wt = s->corner_weight + 4 * n;
            int32_t *ix = s->corner_index + 4 * n;
            wt[0] = ((1.0f - (oy - fy)) * (1.0f - (ox - fx))) / dw; /* nw at (fy, fx) */
            wt[1] = ((1.0f - (cy - oy)) * (1.0f - (ox - fx))) / dw; /* sw at (cy, fx) */
            wt[2] = ((1.0f - (oy - fy)) * (1.0f - (cx - ox))) / dw; /* ne at (fy, cx) */
            wt[3] = ((1.0f - (cy - oy)) * (1.0f - (cx - ox))) / dw; /* se at (cy, cx) */
            ix[0] = (int32_t)fy * Wc + (int32_t)fx;
            ix[1] = (int32_t)cy * Wc + (int32_t)fx;
            ix[2] = (int32_t)fy * Wc + (int32_t)cx;
            ix[3] = (int32_t)cy * Wc + (int32_t)cx;
            s->source_index[n] = (int32_t)i;
            s->source_depth[n] = z;
            n++;
        }
    return n;
}

void lyra_warp_splat(const lyra_warp_splat_args *a, lyra_warp_scratch *s) {
    const int C = a->channels, H = a->height, W = a->width, Wc = W + 2, stride = C + 2;
    const int64_t HW = (int64_t)H * W;
    int64_t n = splat_prepare(a, s);
    float *canvas = s->canvas;
    memset(canvas, 0, sizeof(float) * (size_t)(H + 2) * Wc * stride);
    for (int corner = 0; corner < 4; corner++) {
        if (C == 3) { /* the RGB case, unrolled (same sums in the same order) */
            for (int64_t p = 0; p < n; p++) {
                float w = s->corner_weight[4 * p + corner];
                float *acc = canvas + (int64_t)s->corner_index[4 * p + corner] * 5;
                const float *src = a->image + s->source_index[p];
                acc[0] += src[0] * w;
                acc[1] += src[HW] * w;
                acc[2] += src[2 * HW] * w;
                acc[3] += s->source_depth[p] * w;
                acc[4] += w;
            }
            continue;
        }
        for (int64_t p = 0; p < n; p++) {
            float w = s->corner_weight[4 * p + corner];
            float *acc = canvas + (int64_t)s->corner_index[4 * p + corner] * stride;
            const float *src = a->image + s->source_index[p];
            for (int c = 0; c < C; c++) acc[c] += src[c * HW] * w;
            acc[C] += s->source_depth[p] * w;
            acc[C + 1] += w;
        }
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const float *acc = canvas + ((int64_t)(y + 1) * Wc + (x + 1)) * stride;
            int64_t i = (int64_t)y * W + x;
            float wsum = acc[C + 1];
            if (isnan(wsum)) wsum = 1000.0f; /* upstream nan_to_num(weights, nan=1000) */
            int hit = wsum > 0.0f;
            a->out_mask[i] = hit ? 1.0f : 0.0f;
            if (a->out_image)
                for (int c = 0; c < C; c++) {
                    float v = hit ? acc[c] / wsum : a->hole_value;
                    if (a->clamp_image) v = clampf(v, -1.0f, 1.0f);
                    a->out_image[c * HW + i] = v;
                }
            if (a->out_depth) a->out_depth[i] = hit ? acc[C] / wsum : 0.0f;
        }
}
