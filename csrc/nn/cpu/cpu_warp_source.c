/* Source side of the forward warp: depth sanitising, the depth-continuity mask, unprojection, and the
 * projection into a target camera (upstream M:1601-1822, FW:38-54, FW:99-124, FW:188-215, FW:280-299). */
#include <float.h>
#include <math.h>

#include "nn/warp.h"
#include "nn/warp_w2c.h"

void lyra_warp_sanitize_depth(const float *depth, int64_t count, float *out) {
    for (int64_t i = 0; i < count; i++) {
        float d = depth[i];
        if (isnan(d)) d = 1e4f; /* nan_to_num(nan=1e4): +-inf become +-FLT_MAX, then the clamp */
        out[i] = d < 0.0f ? 0.0f : (d > 1e4f ? 1e4f : d);
    }
}

void lyra_warp_reliable_mask(const float *depth, int height, int width, uint8_t *mask) {
    for (int y = 0; y < height; y++) {
        int y0 = y - 2 < 0 ? 0 : y - 2, y1 = y + 2 >= height ? height - 1 : y + 2;
        for (int x = 0; x < width; x++) {
            int x0 = x - 2 < 0 ? 0 : x - 2, x1 = x + 2 >= width ? width - 1 : x + 2;
            float lo = depth[(int64_t)y0 * width + x0], hi = lo, sum = 0.0f;
            /* Row-major window order as torch's CPU pooling kernels; the zero padding adds nothing to
             * the sum but counts in the divisor (avg_pool2d count_include_pad = True). */
            for (int yy = y0; yy <= y1; yy++)
                for (int xx = x0; xx <= x1; xx++) {
                    float v = depth[(int64_t)yy * width + xx];
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                    sum += v;
                }
            float mean = sum / 25.0f;
            float ratio = (hi - lo) / (mean + 1e-6f);
            float d = depth[(int64_t)y * width + x];
            mask[(int64_t)y * width + x] = (uint8_t)(ratio < 0.05f && d > 0.0f);
        }
    }
}

lyra_status lyra_warp_unproject(const float *depth, const uint8_t *valid, int height, int width,
                                const float *K, const float *w2c, float *points) {
    float kinv[9], c2w[16];
    LYRA_TRY(lyra_warp_invert(K, 3, kinv, "src_K"));
    LYRA_TRY(lyra_warp_invert(w2c, 4, c2w, "src_w2c"));
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            int64_t i = (int64_t)y * width + x;
            float *X = points + 3 * i;
            if (!valid[i]) {
                X[0] = X[1] = X[2] = 0.0f;
                continue;
            }
            float pix[3] = {(float)x, (float)y, 1.0f}, cam[4];
            /* Each product is a sequential float32 sum over the inner index (torch bmm on CPU). */
            for (int r = 0; r < 3; r++) {
                float s = 0.0f;
                for (int k = 0; k < 3; k++) s += kinv[3 * r + k] * pix[k];
                cam[r] = depth[i] * s;
            }
            cam[3] = 1.0f;
            for (int r = 0; r < 3; r++) {
                float s = 0.0f;
                for (int k = 0; k < 4; k++) s += c2w[4 * r + k] * cam[k];
                X[r] = s;
            }
        }
    return LYRA_OK;
}

void lyra_warp_project(const float *points, int64_t count, const float *w2c, const float *K, float *out) {
    for (int64_t i = 0; i < count; i++) {
        const float *X = points + 3 * i;
        float cam[3];
        lyra_warp_w2c_apply(w2c, X, cam);
        for (int r = 0; r < 3; r++) {
            float s = 0.0f;
            for (int k = 0; k < 3; k++) s += K[3 * r + k] * cam[k];
            out[3 * i + r] = s;
        }
    }
}
