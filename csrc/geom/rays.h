/* Ray conditioning of the network (upstream M:1830-1888, PL:28-74 `ray_condition`). */
#ifndef LYRA_GEOM_RAYS_H
#define LYRA_GEOM_RAYS_H

#include "lyra2.h"

/* Per-pixel rays through pixel centres (column i + 0.5, row j + 0.5):
 * dir = normalize(((i+0.5-cx)/fx, (j+0.5-cy)/fy, 1)), d = R·dir with R = c2w[:3,:3], o = c2w[:3,3].
 * K: (V,4) = (fx, fy, cx, cy); c2w: (V,4,4) row-major; out: (V,H,W,6) = [o, d] (upstream use_ray_o=True,
 * the inference setting), or [o×d, d] (the Plücker moment, use_ray_o=False) when `moment` is set. */
lyra_status lyra_rays_compute(const float *K, const float *c2w, int views, int height, int width, int moment,
                              float *out);

#endif
