/* Custom trajectories (upstream lyra2_custom_traj_inference.load_trajectory, CTI:61-96).
 *
 * Upstream does NOT rescale a custom trajectory by the depth: the poses are used as given, in the units
 * of the first frame's (MoGe-aligned) depth (Lyra-2 README:120), times a constant `pose_scale`
 * (script default 1.1, CTI:138). Intrinsics are rescaled from the file's image size to the target size. */
#include <math.h>

#include "geom/trajectory.h"

lyra_status lyra_traj_custom_rescale(float *w2c, float *K, int64_t n, double pose_scale, int64_t src_h,
                                     int64_t src_w, int64_t dst_h, int64_t dst_w) {
    if (n <= 0) return lyra_error(LYRA_ERR_ARG, "trajectory: w2c holds no pose; need at least one");
    if (!isfinite(pose_scale) || !(pose_scale > 0.0))
        return lyra_error(LYRA_ERR_ARG, "pose_scale: got %g; must be finite and > 0", pose_scale);
    if (dst_h <= 0 || dst_w <= 0)
        return lyra_error(LYRA_ERR_ARG, "height, width: got %lld x %lld; must be positive", (long long)dst_h,
                          (long long)dst_w);
    const int has_size = !(src_h == 0 && src_w == 0);
    if (has_size && (src_h <= 0 || src_w <= 0))
        return lyra_error(LYRA_ERR_ARG, "image_height, image_width: got %lld x %lld; must be positive",
                          (long long)src_h, (long long)src_w);
    for (int64_t i = 0; i < n * 16; i++)
        if (!isfinite(w2c[i]))
            return lyra_error(LYRA_ERR_ARG, "w2c: entry %lld of pose %lld is not finite", (long long)(i % 16),
                              (long long)(i / 16));
    for (int64_t i = 0; i < n * 9; i++)
        if (!isfinite(K[i]))
            return lyra_error(LYRA_ERR_ARG, "intrinsics: entry %lld of frame %lld is not finite",
                              (long long)(i % 9), (long long)(i / 9));

    /* `w2c[:, :3, 3] *= pose_scale` on float32: the scale is rounded to float32 first. */
    if (pose_scale != 1.0) {
        const float s = (float)pose_scale;
        for (int64_t i = 0; i < n; i++)
            for (int r = 0; r < 3; r++) w2c[i * 16 + r * 4 + 3] *= s;
    }
    if (has_size && (src_h != dst_h || src_w != dst_w)) {
        const float sx = (float)((double)dst_w / (double)src_w);
        const float sy = (float)((double)dst_h / (double)src_h);
        for (int64_t i = 0; i < n; i++) {
            float *k = K + i * 9;
            k[0] *= sx; /* fx */
            k[2] *= sx; /* cx */
            k[4] *= sy; /* fy */
            k[5] *= sy; /* cy */
        }
    }
    return LYRA_OK;
}
