/* Ray conditioning (upstream M:1830-1888, PL:28-74): the per-pixel arithmetic is nn/rays_math.h (shared with the
 * rays op's CUDA kernel). */
#include <math.h>

#include "geom/rays.h"
#include "nn/rays_math.h"

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
        float *row = out + (int64_t)vj * width * 6;
        for (int i = 0; i < width; i++) lyra_ray_pixel(K + 4 * v, c2w + 16 * v, i, j, moment, row + 6 * i);
    }
    return LYRA_OK;
}
