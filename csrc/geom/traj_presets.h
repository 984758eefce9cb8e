/* Internal: one builder per upstream camera_utils trajectory function (CU = camera_utils.py,
 * CT = camera_traj_utils.py, upstream FW:188-215, Z:377, CU:21-27). Used only by trajectory.c, which validates the
 * arguments and picks the builder and its parameters for a preset.
 *
 * Common arguments: c = subject depth (float32, as upstream's tensor), n = frames, w2c (n,4,4) out.
 * `sign` is +1 for upstream's right=True, -1 otherwise. */
#ifndef LYRA_GEOM_TRAJ_PRESETS_H
#define LYRA_GEOM_TRAJ_PRESETS_H

#include <stdint.h>

/* w2c (n,4,4) = identity (the "original" preset, and the first n matrices of `back`). */
void lyra_traj_identity(int64_t n, float *w2c);

/* create_horizontal_trajectory (CU:291-330): pos_i[axis] = sign * i*distance*c / n (note: n, not n-1),
 * looking at (0,0,c) for axis x/y and at (0,0,c(distance+1)) for axis z (0=x, 1=y, 2=z); with
 * `outwards` the target moves by 2 pos_i. w2c (n,4,4). */
void lyra_traj_horizontal(float c, int64_t n, double distance, int sign, int axis, int outwards, float *w2c);

/* create_horizontal_zoom_with_bend_trajectory (CU:404-493), axis z with the bend on y:
 * pos_i = (0, sign*b*distance*c*i/n, sign*i*distance*c/n), b = 0.04 (right) or 0.12 (otherwise).
 * w2c (n,4,4). */
void lyra_traj_zoom_bend(float c, int64_t n, double distance, int sign, float *w2c);

/* create_spiral_trajectory (CU:162-222) with inwards=True, radius_z=0: theta_i = 2 pi circles i/(n-1);
 * x = rx (cos theta - 1) sign c (start_from_zero) or rx cos theta c; y = ry sin theta c; z = 0;
 * looking at (0,0,c). w2c (n,4,4). */
void lyra_traj_spiral(float c, int64_t n, double rx, double ry, int sign, int start_from_zero, int circles,
                      float *w2c);

/* create_orbit_trajectory (CU:225-288): theta_i = pi + sweep * angle * i/(n-1), radius c about (0,0,c);
 * axis 1 (y, horizontal) puts the camera at (c sin, 0, c + c cos), axis 0 (x, vertical) at
 * (0, c sin, c + c cos). w2c (n,4,4). */
void lyra_traj_orbit(float c, int64_t n, double angle, int axis, double sweep, float *w2c);

/* create_back_trajectory (CU:596-629) on n identities: returns the n identities followed by n-1
 * back-spiral poses theta_j = 2 pi j/(n-2), pos_j = (rx (cos - 1) sign, ry sin, 0) in absolute units
 * (not depth-scaled), looking at (0,0,c); with invert_pos == 0 the translation is pos itself (quirk).
 * w2c (2n-1,4,4). */
void lyra_traj_back(float c, int64_t n, double rx, double ry, int sign, int invert_pos, float *w2c);

/* create_dolly_zoom_trajectory (CU:632-678): c' = 0.185 c; camera at (0,0,3i/(n-1)) looking at
 * (0,0,c'); fx_i, fy_i = f * c'/(c' + 3i/(n-1)). K0 (3,3) in, w2c (n,4,4) and K (n,3,3) out. */
void lyra_traj_dolly_zoom(float c, int64_t n, const float K0[9], float *w2c, float *K);

/* create_spiral_horizontal_trajectory (CU:681-752) with axis z, inwards=True: two-circle spiral of
 * radii rx c, ry c plus a zoom offset sign*t*distance*c, t = i/(n-1), looking at (0,0,c(distance+1)).
 * w2c (n,4,4). */
void lyra_traj_spiral_zoom(float c, int64_t n, double rx, double ry, double distance, int sign, int circles,
                           float *w2c);

/* create_rotate_then_zoom_trajectory (CU:755-874): first n/2 frames rotate about y to rot_sign*20 deg,
 * then translate by zoom_sign*distance*c*t. w2c (n,4,4). */
void lyra_traj_rotate_zoom(float c, int64_t n, double rot_sign, double zoom_sign, double distance, float *w2c);

/* create_rotate_spot_trajectory (CU:877-939) and, with `orbit`, create_rotate_spot_with_noise_trajectory
 * (CU:942-1027): rotate about y by rot_sign*degrees*i/(n-1); the second adds a tiny deterministic orbit
 * of radius 1e-5 c (no RNG despite its name). w2c (n,4,4). */
void lyra_traj_rotate_spot(float c, int64_t n, double rot_sign, double degrees, int orbit, float *w2c);

/* horizontal_simple / vertical_simple (CT:324-343): identity with w2c[:, row, 3] += sign *
 * linspace(0, strength, n) * c. w2c (n,4,4). */
void lyra_traj_simple_shift(float c, int64_t n, double strength, int row, int sign, float *w2c);

#endif
