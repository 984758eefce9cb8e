/* Camera trajectories of the Lyra-2 zoom script (upstream Z:378, FW:188-215, Z:377, CU:21-27), built exactly as
 * upstream builds them (lyra_2/_src/inference/camera_traj_utils.py + camera_utils.py), plus the subject depth that
 * scales them and the custom-trajectory (trajectory.npz) rescaling.
 *
 * Layouts: w2c (M,4,4) and K (M,3,3), row-major float32; world = camera of frame 0 (initial w2c = I).
 * M = lyra_traj_frame_count(preset, n): n for every preset except `back` / `back_simple` (2n-1).
 *
 * Numerics follow upstream's dtypes: upstream mixes Python doubles (angles, i/N fractions, radii) with
 * float32 tensors (the subject depth c, positions, matrices). A double that meets c is first rounded
 * to float32 (torch casts the Python scalar to the tensor's dtype), and the products and sums are done
 * in float32 in upstream's order. */
#ifndef LYRA_GEOM_TRAJECTORY_H
#define LYRA_GEOM_TRAJECTORY_H

#include <stdint.h>

#include "lyra2.h"

/* Every preset of upstream's CAMERA_TRAJECTORY_CHOICES (CT:28-56), in that order. Some cannot be
 * built (lyra_traj_build says why): the *_noise presets draw from torch's global RNG and
 * spiral_outwards crashes upstream. */
typedef enum lyra_traj_preset {
    LYRA_TRAJ_ORIGINAL = 0,
    LYRA_TRAJ_SPIRAL,
    LYRA_TRAJ_SPIRAL_CENTER,
    LYRA_TRAJ_SPIRAL_OUTWARDS,
    LYRA_TRAJ_HORIZONTAL,
    LYRA_TRAJ_HORIZONTAL_NOISE,
    LYRA_TRAJ_HORIZONTAL_LIFT,
    LYRA_TRAJ_HORIZONTAL_LIFT_NOISE,
    LYRA_TRAJ_HORIZONTAL_ZOOM,
    LYRA_TRAJ_HORIZONTAL_ZOOM_NOISE,
    LYRA_TRAJ_HORIZONTAL_ZOOM_BEND,
    LYRA_TRAJ_HORIZONTAL_ZOOM_NOISE_BEND,
    LYRA_TRAJ_HORIZONTAL_ZOOM_STILL,
    LYRA_TRAJ_HORIZONTAL_STILL,
    LYRA_TRAJ_HORIZONTAL_SIMPLE,
    LYRA_TRAJ_VERTICAL_SIMPLE,
    LYRA_TRAJ_HORIZONTAL_OUTWARD,
    LYRA_TRAJ_BACK,
    LYRA_TRAJ_BACK_SIMPLE,
    LYRA_TRAJ_DOLLY_ZOOM,
    LYRA_TRAJ_HORIZONTAL_SPIRAL,
    LYRA_TRAJ_ORBIT_HORIZONTAL,
    LYRA_TRAJ_ORBIT_VERTICAL,
    LYRA_TRAJ_ROTATE_ZOOM_IN,
    LYRA_TRAJ_ROTATE_ZOOM_OUT,
    LYRA_TRAJ_ROTATE_SPOT,
    LYRA_TRAJ_ROTATE_SPOT_NOISE,
    LYRA_TRAJ_PRESET_COUNT
} lyra_traj_preset;

/* Upstream's --direction (CT:93-98). The zoom script uses right for zoom-in, left for zoom-out
 * (Z:187-192). Presets read it as `right = (direction == "right")`, except vertical_simple and
 * orbit_vertical, which test for "up". */
typedef enum lyra_traj_direction {
    LYRA_TRAJ_RIGHT = 0,
    LYRA_TRAJ_LEFT,
    LYRA_TRAJ_UP,
    LYRA_TRAJ_DOWN
} lyra_traj_direction;

/* The zoom script's zoom-out upward tilt ratio (Z:206-209); zoom-in uses 0 (upstream Z:206-209, Z:760, Z:371). */
#define LYRA_TRAJ_ZOOM_OUT_UPWARD_RATIO 0.15

/* Name <-> preset ("horizontal_zoom", ...). lyra_traj_preset_parse fails with LYRA_ERR_ARG naming
 * the value and listing the allowed names; lyra_traj_preset_name returns NULL when out of range. */
const char *lyra_traj_preset_name(lyra_traj_preset preset);
lyra_status lyra_traj_preset_parse(const char *name, lyra_traj_preset *out);
lyra_status lyra_traj_direction_parse(const char *name, lyra_traj_direction *out);

/* Matrices the preset returns for n frames: 2n-1 for back / back_simple (upstream appends n-1
 * back-spiral poses after n identities; the AR loop only reads the first n, upstream CT:224-234, CU:291-330,
 * CT:248-258), else n. */
int64_t lyra_traj_frame_count(lyra_traj_preset preset, int64_t n);

/* Checks the frame-count rule n = 1 + 80k, 1 <= k <= LYRA_TRAJ_MAX_CHUNKS (upstream AR:1472-1476, AR:1478-1479,
 * AR:1484-1487). */
#define LYRA_TRAJ_MAX_CHUNKS 10000
lyra_status lyra_traj_check_frames(int64_t n);

/* Builds preset for n frames (n = 1 + 80k), strength s (finite, >= 0), subject depth c (finite, > 0),
 * frame-0 intrinsics K0 (3,3), direction, then applies the zoom-out upward tilt with upward_ratio
 * (0 for zoom-in, LYRA_TRAJ_ZOOM_OUT_UPWARD_RATIO for zoom-out; upstream Z:206-209, Z:760, Z:371).
 * w2c (M,4,4), K (M,3,3) out with M = lyra_traj_frame_count(preset, n). */
lyra_status lyra_traj_build(lyra_traj_preset preset, lyra_traj_direction direction, int64_t n,
                            double strength, float c, const float K0[9], double upward_ratio,
                            float *w2c, float *K);

/* Zoom-out upward tilt (upstream Z:386-400, Z:206-209, Z:760, Z:371), in place on w2c (m,4,4): camera centres C_i =
 * -R^T t;
 * back_i = max(-(C_i.z - C_0.z), 0); C_i.y -= ratio * back_i; t_i = -R_i C_i (rotation kept). */
void lyra_traj_tilt_up(float *w2c, int64_t m, double ratio);

/* Subject depth (upstream Z:378): torch.quantile(depth[mask > 0.5], 0.25), linear interpolation at
 * rank 0.25 (n - 1) over the selected values, n = count. depth (count), mask (count) or NULL = all
 * selected. Fails with LYRA_ERR_ARG when nothing is selected or a selected value is NaN (torch would
 * return NaN; upstream's caller never passes NaN, it maps NaN to 1e4 first). */
lyra_status lyra_traj_subject_depth(const float *depth, const float *mask, int64_t count, float *out);

/* Custom trajectory (CTI:61-96, `load_trajectory`), in place: translations w2c[:, :3, 3] *= pose_scale
 * (skipped when pose_scale == 1, as upstream), and when (src_h, src_w) != (dst_h, dst_w):
 * fx, cx *= dst_w / src_w and fy, cy *= dst_h / src_h (the ratios in double, applied in float32).
 * src_h = src_w = 0 means the file has no image size: intrinsics are left as they are.
 * w2c (n,4,4), K (n,3,3). */
lyra_status lyra_traj_custom_rescale(float *w2c, float *K, int64_t n, double pose_scale, int64_t src_h,
                                     int64_t src_w, int64_t dst_h, int64_t dst_w);

#endif
