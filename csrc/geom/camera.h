/* Small camera helpers for the trajectory builders: 3-vectors, row-major 3x3 / 4x4 float matrices,
 * and upstream's look-at construction.
 *
 * Conventions (upstream FW:188-215, Z:377, CU:21-27): matrices are world-to-camera (w2c), row-major, OpenCV camera
 * axes (+x right, +y down, +z forward), translation in column 3 (w2c[r*4 + 3]).
 *
 * Everything is float32 with a fixed operation order: upstream builds its cameras from float32
 * tensors, and the trajectory goldens are compared at float32 rounding. Sums are sequential
 * ((a0*b0 + a1*b1) + a2*b2), which is what torch's small-matrix bmm does (the build uses -std=c11,
 * so GCC does not contract a*b + c into an FMA). */
#ifndef LYRA_GEOM_CAMERA_H
#define LYRA_GEOM_CAMERA_H

/* out = a x b (may alias neither input). */
void lyra_vec3_cross(const float a[3], const float b[3], float out[3]);

/* sqrt((x*x + y*y) + z*z) in float32. */
float lyra_vec3_norm(const float v[3]);

/* m (4,4) = identity. */
void lyra_mat4_identity(float m[16]);

/* out (4,4) = a (4,4) @ b (4,4); out may not alias a or b. */
void lyra_mat4_mul(const float a[16], const float b[16], float out[16]);

/* out (3) = R @ v, R the upper-left 3x3 of w2c (4,4). */
void lyra_mat4_rot_apply(const float w2c[16], const float v[3], float out[3]);

/* out (3) = R^T @ v, R the upper-left 3x3 of w2c (4,4). */
void lyra_mat4_rot_apply_t(const float w2c[16], const float v[3], float out[3]);

/* Camera centre C = -R^T t of a w2c (4,4). */
void lyra_camera_center(const float w2c[16], float center[3]);

/* Upstream look-at (camera_utils.look_at_matrix, upstream FW:188-215, Z:377, CU:21-27): f = normalize(target - pos),
 * r = normalize(cross((0,1,0), f)), u = cross(f, r); rotation rows [r; u; f].
 * Translation t = -R @ pos when invert_pos != 0; with invert_pos == 0 it is t = pos itself (an
 * upstream quirk used by the `back` preset, upstream CT:224-234, CU:291-330, CT:248-258). pos == target gives NaN rows,
 * as upstream. w2c (4,4) out. */
void lyra_camera_look_at(const float pos[3], const float target[3], int invert_pos, float w2c[16]);

/* w2c (4,4) = [[c,0,s,0],[0,1,0,0],[-s,0,c,0],[0,0,0,1]] with c, s the float32 roundings of
 * cos(angle), sin(angle) (double): a rotation about the camera y axis, as the rotate_* presets build it. */
void lyra_camera_rot_y(double angle, float w2c[16]);

#endif
