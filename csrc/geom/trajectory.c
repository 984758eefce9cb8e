/* Preset dispatch (camera_traj_utils.build_camera_trajectory, CT:112-453), argument checks, and the
 * zoom-out upward tilt (Z:390-400). The builders themselves are in traj_presets.c. */
#include "geom/trajectory.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "geom/camera.h"
#include "geom/traj_presets.h"

static const char *const preset_names[LYRA_TRAJ_PRESET_COUNT] = {
    "original",
    "spiral",
    "spiral_center",
    "spiral_outwards",
    "horizontal",
    "horizontal_noise",
    "horizontal_lift",
    "horizontal_lift_noise",
    "horizontal_zoom",
    "horizontal_zoom_noise",
    "horizontal_zoom_bend",
    "horizontal_zoom_noise_bend",
    "horizontal_zoom_still",
    "horizontal_still",
    "horizontal_simple",
    "vertical_simple",
    "horizontal_outward",
    "back",
    "back_simple",
    "dolly_zoom",
    "horizontal_spiral",
    "orbit_horizontal",
    "orbit_vertical",
    "rotate_zoom_in",
    "rotate_zoom_out",
    "rotate_spot",
    "rotate_spot_noise",
};

static const char *const direction_names[] = {"right", "left", "up", "down"};

const char *lyra_traj_preset_name(lyra_traj_preset preset) {
    if ((int)preset < 0 || preset >= LYRA_TRAJ_PRESET_COUNT) return NULL;
    return preset_names[preset];
}

/* Why a preset cannot be built, or NULL when it can. */
static const char *preset_unsupported(lyra_traj_preset preset) {
    switch (preset) {
    case LYRA_TRAJ_HORIZONTAL_NOISE:
    case LYRA_TRAJ_HORIZONTAL_LIFT_NOISE:
    case LYRA_TRAJ_HORIZONTAL_ZOOM_NOISE:
    case LYRA_TRAJ_HORIZONTAL_ZOOM_NOISE_BEND:
        return "it adds torch.randn noise drawn from PyTorch's global RNG (camera_utils.py:371-372), "
               "whose stream depends on everything the process drew before; use the noise-free variant";
    case LYRA_TRAJ_SPIRAL_OUTWARDS:
        return "upstream crashes on it (create_spiral_trajectory with inwards=False passes an int64 "
               "camera position to look_at_matrix, camera_utils.py:219 and 45, and the float32 @ int64 "
               "matmul raises)";
    default:
        return NULL;
    }
}

lyra_status lyra_traj_preset_parse(const char *name, lyra_traj_preset *out) {
    for (int p = 0; p < LYRA_TRAJ_PRESET_COUNT; p++)
        if (name && strcmp(name, preset_names[p]) == 0) {
            *out = (lyra_traj_preset)p;
            return LYRA_OK;
        }
    char list[1024];
    size_t used = 0;
    list[0] = '\0';
    for (int p = 0; p < LYRA_TRAJ_PRESET_COUNT; p++) {
        if (preset_unsupported((lyra_traj_preset)p)) continue;
        int w = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", preset_names[p]);
        if (w < 0 || (size_t)w >= sizeof list - used) break;
        used += (size_t)w;
    }
    return lyra_error(LYRA_ERR_ARG, "preset: unknown trajectory '%s'; allowed: %s", name ? name : "(null)", list);
}

lyra_status lyra_traj_direction_parse(const char *name, lyra_traj_direction *out) {
    for (int d = 0; d < 4; d++)
        if (name && strcmp(name, direction_names[d]) == 0) {
            *out = (lyra_traj_direction)d;
            return LYRA_OK;
        }
    return lyra_error(LYRA_ERR_ARG, "direction: got '%s'; allowed: right, left, up, down", name ? name : "(null)");
}

int64_t lyra_traj_frame_count(lyra_traj_preset preset, int64_t n) {
    return preset == LYRA_TRAJ_BACK || preset == LYRA_TRAJ_BACK_SIMPLE ? 2 * n - 1 : n;
}

lyra_status lyra_traj_check_frames(int64_t n) {
    if (n < 81 || (n - 1) % 80 != 0 || (n - 1) / 80 > LYRA_TRAJ_MAX_CHUNKS)
        return lyra_error(LYRA_ERR_ARG,
                          "num_frames: got %lld; must be 1 + 80k with 1 <= k <= %d (81, 161, 241, ...), "
                          "one anchor frame plus 80 per autoregressive chunk",
                          (long long)n, LYRA_TRAJ_MAX_CHUNKS);
    return LYRA_OK;
}

void lyra_traj_tilt_up(float *w2c, int64_t m, double ratio) {
    if (!(ratio > 0.0) || m <= 0) return;
    const float r = (float)ratio;
    float c0[3];
    lyra_camera_center(w2c, c0);
    for (int64_t i = 0; i < m; i++) {
        float *mat = w2c + (size_t)i * 16;
        float ctr[3], t[3];
        lyra_camera_center(mat, ctr);
        /* Only backward motion (camera z decreasing) lifts the camera: -y is up in OpenCV axes. */
        float backward = -(ctr[2] - c0[2]);
        if (backward < 0.0f) backward = 0.0f;
        ctr[1] = ctr[1] - backward * r;
        lyra_mat4_rot_apply(mat, ctr, t);
        for (int k = 0; k < 3; k++) mat[k * 4 + 3] = -t[k];
    }
}

static void repeat_k(const float K0[9], int64_t m, float *K) {
    for (int64_t i = 0; i < m; i++) memcpy(K + (size_t)i * 9, K0, 9 * sizeof(float));
}

lyra_status lyra_traj_build(lyra_traj_preset preset, lyra_traj_direction direction, int64_t n,
                            double strength, float c, const float K0[9], double upward_ratio,
                            float *w2c, float *K) {
    const char *name = lyra_traj_preset_name(preset);
    if (!name) return lyra_error(LYRA_ERR_ARG, "preset: invalid preset id %d", (int)preset);
    const char *why = preset_unsupported(preset);
    if (why) return lyra_error(LYRA_ERR_ARG, "preset: '%s' cannot be reproduced: %s", name, why);
    if ((int)direction < 0 || (int)direction > LYRA_TRAJ_DOWN)
        return lyra_error(LYRA_ERR_ARG, "direction: invalid direction id %d", (int)direction);
    LYRA_TRY(lyra_traj_check_frames(n));
    if (!isfinite(strength) || strength < 0.0)
        return lyra_error(LYRA_ERR_ARG, "strength: got %g; must be finite and >= 0", strength);
    if (!isfinite(c) || !(c > 0.0f))
        return lyra_error(LYRA_ERR_ARG,
                          "depth: subject depth (25th percentile of the valid depth) is %g; must be finite "
                          "and > 0",
                          (double)c);
    for (int k = 0; k < 9; k++)
        if (!isfinite(K0[k]))
            return lyra_error(LYRA_ERR_ARG, "intrinsics: entry [%d][%d] is %g; must be finite", k / 3, k % 3,
                              (double)K0[k]);
    if (!isfinite(upward_ratio) || upward_ratio < 0.0)
        return lyra_error(LYRA_ERR_ARG, "upward_ratio: got %g; must be finite and >= 0", upward_ratio);

    /* Upstream tests `right = (direction == "right")` (CT:133-388). */
    const int sign = direction == LYRA_TRAJ_RIGHT ? 1 : -1;
    const double s = strength;
    const int64_t m = lyra_traj_frame_count(preset, n);
    switch (preset) {
    case LYRA_TRAJ_ORIGINAL: lyra_traj_identity(n, w2c); break;
    case LYRA_TRAJ_SPIRAL: lyra_traj_spiral(c, n, 0.15 * s, 0.10 * s, sign, 1, 2, w2c); break;
    case LYRA_TRAJ_SPIRAL_CENTER:
        /* start_from_zero=False: frame 0 already sits 0.03c to the side (quirk kept). */
        lyra_traj_spiral(c, n, 0.03, 0.02, sign, 0, 1, w2c);
        break;
    case LYRA_TRAJ_HORIZONTAL: lyra_traj_horizontal(c, n, s, sign, 0, 0, w2c); break;
    case LYRA_TRAJ_HORIZONTAL_LIFT: lyra_traj_horizontal(c, n, s, sign, 1, 0, w2c); break;
    case LYRA_TRAJ_HORIZONTAL_ZOOM: lyra_traj_horizontal(c, n, s, sign, 2, 0, w2c); break;
    case LYRA_TRAJ_HORIZONTAL_ZOOM_BEND: lyra_traj_zoom_bend(c, n, s, sign, w2c); break;
    case LYRA_TRAJ_HORIZONTAL_ZOOM_STILL:
    case LYRA_TRAJ_HORIZONTAL_STILL: {
        /* Move over the first n//2 frames (with step i/(n//2)), then hold the last pose. */
        const int64_t half = n / 2;
        lyra_traj_horizontal(c, half, s, sign, preset == LYRA_TRAJ_HORIZONTAL_ZOOM_STILL ? 2 : 0, 0, w2c);
        for (int64_t i = half; i < n; i++) memcpy(w2c + i * 16, w2c + (half - 1) * 16, 16 * sizeof(float));
        break;
    }
    case LYRA_TRAJ_HORIZONTAL_SIMPLE: lyra_traj_simple_shift(c, n, s, 0, -sign, w2c); break;
    case LYRA_TRAJ_VERTICAL_SIMPLE:
        lyra_traj_simple_shift(c, n, s, 1, direction == LYRA_TRAJ_UP ? 1 : -1, w2c);
        break;
    case LYRA_TRAJ_HORIZONTAL_OUTWARD: lyra_traj_horizontal(c, n, s, sign, 0, 1, w2c); break;
    case LYRA_TRAJ_BACK: lyra_traj_back(c, n, 0.3, 0.2, sign, 0, w2c); break;
    case LYRA_TRAJ_BACK_SIMPLE: lyra_traj_back(c, n, 0.15, 0.1, sign, 1, w2c); break;
    case LYRA_TRAJ_DOLLY_ZOOM: lyra_traj_dolly_zoom(c, n, K0, w2c, K); break;
    case LYRA_TRAJ_HORIZONTAL_SPIRAL:
        lyra_traj_spiral_zoom(c, n, 0.15 * s * 0.25 * 0.5, 0.10 * s * 0.25 * 0.5, s, sign, 2, w2c);
        break;
    case LYRA_TRAJ_ORBIT_HORIZONTAL:
        /* angle = strength in radians; sweep -1 for right, +1 otherwise (CU:259-260). */
        lyra_traj_orbit(c, n, s, 1, direction == LYRA_TRAJ_RIGHT ? -1.0 : 1.0, w2c);
        break;
    case LYRA_TRAJ_ORBIT_VERTICAL: lyra_traj_orbit(c, n, s, 0, direction == LYRA_TRAJ_UP ? 1.0 : -1.0, w2c); break;
    case LYRA_TRAJ_ROTATE_ZOOM_IN: lyra_traj_rotate_zoom(c, n, (double)sign, 1.0, s, w2c); break;
    case LYRA_TRAJ_ROTATE_ZOOM_OUT: lyra_traj_rotate_zoom(c, n, (double)sign, -1.0, s, w2c); break;
    case LYRA_TRAJ_ROTATE_SPOT: lyra_traj_rotate_spot(c, n, (double)sign, 1.0 * s, 0, w2c); break;
    case LYRA_TRAJ_ROTATE_SPOT_NOISE: lyra_traj_rotate_spot(c, n, (double)sign, 1.0 * s, 1, w2c); break;
    default: return lyra_error(LYRA_ERR_INTERNAL, "internal error: preset '%s' has no builder", name);
    }
    if (preset != LYRA_TRAJ_DOLLY_ZOOM) repeat_k(K0, m, K);
    lyra_traj_tilt_up(w2c, m, upward_ratio);
    return LYRA_OK;
}
