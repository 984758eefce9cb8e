/* Ray conditioning (upstream M:1830-1888, PL:28-74). Float32 in upstream's op order: (i - cx) / fx, the norm as
 * sqrt((x² + y²) + z²), then R·dir as a sequential sum over the inner index. */
#include <math.h>

#include "geom/rays.h"

lyra_status lyra_rays_compute(const float *K, const float *c2w, int views, int height, int width, int moment,
                              float *out) {
    if (views < 0 || height < 1 || width < 1)
        return lyra_error(LYRA_ERR_ARG, "rays: bad sizes V=%d H=%d W=%d", views, height, width);
    for (int v = 0; v < views; v++) {
        const float fx = K[4 * v + 0], fy = K[4 * v + 1], cx = K[4 * v + 2], cy = K[4 * v + 3];
        if (!(fx != 0.0f && fy != 0.0f) || !isfinite(fx) || !isfinite(fy) || !isfinite(cx) || !isfinite(cy))
            return lyra_error(LYRA_ERR_ARG, "K[%d]: fx and fy must be finite and non-zero, cx and cy finite", v);
        for (int k = 0; k < 16; k++)
            if (!isfinite(c2w[16 * v + k])) return lyra_error(LYRA_ERR_ARG, "c2w[%d]: must be finite", v);
    }
#pragma omp parallel for schedule(static) if ((long long)views * height * width > 65536)
    for (int vj = 0; vj < views * height; vj++) {
        const int v = vj / height, j = vj % height;
        const float *M = c2w + 16 * v;
        const float fx = K[4 * v + 0], fy = K[4 * v + 1], cx = K[4 * v + 2], cy = K[4 * v + 3];
        const float o[3] = {M[3], M[7], M[11]};
        const float ys = ((float)j + 0.5f - cy) / fy;
        float *row = out + (int64_t)vj * width * 6;
        for (int i = 0; i < width; i++) {
            float dir[3] = {((float)i + 0.5f - cx) / fx, ys, 1.0f};
            float norm = sqrtf((dir[0] * dir[0] + dir[1] * dir[1]) + dir[2] * dir[2]);
            for (int k = 0; k < 3; k++) dir[k] /= norm;
            float d[3];
            for (int r = 0; r < 3; r++) {
                float s = 0.0f;
                for (int k = 0; k < 3; k++) s += dir[k] * M[4 * r + k];
                d[r] = s;
            }
            float *px = row + 6 * i;
            if (moment) {
                px[0] = o[1] * d[2] - o[2] * d[1];
                px[1] = o[2] * d[0] - o[0] * d[2];
                px[2] = o[0] * d[1] - o[1] * d[0];
            } else {
                px[0] = o[0];
                px[1] = o[1];
                px[2] = o[2];
            }
            px[3] = d[0];
            px[4] = d[1];
            px[5] = d[2];
        }
    }
    return LYRA_OK;
}
