/* The trajectory builders, one per upstream camera_utils function (see traj_presets.h).
 *
 * Rounding rule used throughout (it is how the torch code evaluates): Python scalars (angles, radii,
 * i/N fractions) are doubles; where one meets the float32 subject depth c it is rounded to float32
 * first ("f32(x) * c") and the rest of the expression is float32, left to right as upstream writes
 * it. Positions built by torch.tensor([...]) from doubles are rounded to float32 per component.
 * upstream's final `apply_transformation(traj, initial_w2c)` multiplies by the identity, which is
 * exact, so it is skipped. */
#include "geom/traj_presets.h"

#include <math.h>
#include <string.h>

#include "geom/camera.h"

#define MAT(w2c, i) ((w2c) + (size_t)(i) * 16)

void lyra_traj_identity(int64_t n, float *w2c) {
    for (int64_t i = 0; i < n; i++) lyra_mat4_identity(MAT(w2c, i));
}

void lyra_traj_horizontal(float c, int64_t n, double distance, int sign, int axis, int outwards, float *w2c) {
    const float look[3] = {0.0f, 0.0f, axis == 2 ? (float)(distance + 1.0) * c : c};
    for (int64_t i = 0; i < n; i++) {
        /* i * distance * center_depth / n_steps * (1 if right else -1): the step is i/n, so the last
         * frame stops at (n-1)/n of the distance (docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 1). */
        float step = (float)((double)i * distance) * c / (float)n * (float)sign;
        float pos[3] = {0.0f, 0.0f, 0.0f};
        pos[axis] = step;
        float target[3] = {look[0], look[1], look[2]};
        if (outwards)
            for (int k = 0; k < 3; k++) target[k] = look[k] + pos[k] * 2.0f;
        lyra_camera_look_at(pos, target, 1, MAT(w2c, i));
    }
}

void lyra_traj_zoom_bend(float c, int64_t n, double distance, int sign, float *w2c) {
    const float look[3] = {0.0f, 0.0f, (float)(distance + 1.0) * c};
    /* Bend fraction 0.04 for zoom-in (right), 0.12 otherwise (CU:404-405 defaults). The bend is
     * linear in i, so the path is a straight diagonal line, not an arc. */
    const double bend_fraction = sign > 0 ? 0.04 : 0.12;
    const float bend_magnitude = (float)(bend_fraction * distance) * c;
    for (int64_t i = 0; i < n; i++) {
        float primary = (float)((double)i * distance) * c / (float)n * (float)sign;
        float bend = bend_magnitude * (float)i / (float)n;
        float pos[3] = {0.0f, sign > 0 ? bend : -bend, primary};
        lyra_camera_look_at(pos, look, 1, MAT(w2c, i));
    }
}

void lyra_traj_spiral(float c, int64_t n, double rx, double ry, int sign, int start_from_zero, int circles,
                      float *w2c) {
    const float look[3] = {0.0f, 0.0f, c};
    const double theta_max = 2.0 * M_PI * (double)circles;
    for (int64_t i = 0; i < n; i++) {
        double theta = theta_max * (double)i / (double)(n - 1);
        /* radius_z = 0: the spiral has no z motion (docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 4). */
        double x = start_from_zero ? rx * (cos(theta) - 1.0) * (double)sign : rx * cos(theta);
        float pos[3] = {(float)x * c, (float)(ry * sin(theta)) * c, (float)(0.0 * sin(theta)) * c};
        lyra_camera_look_at(pos, look, 1, MAT(w2c, i));
    }
}

void lyra_traj_orbit(float c, int64_t n, double angle, int axis, double sweep, float *w2c) {
    /* Upstream converts the radius to a Python float and builds the position in double. */
    const double r = (double)c;
    const float look[3] = {0.0f, 0.0f, c};
    for (int64_t i = 0; i < n; i++) {
        double frac = n <= 1 ? 0.0 : (double)i / (double)(n - 1);
        double theta = M_PI + sweep * (angle * frac);
        float lateral = (float)(r * sin(theta));
        float pos[3] = {axis == 1 ? lateral : 0.0f, axis == 0 ? lateral : 0.0f, (float)(r + r * cos(theta))};
        lyra_camera_look_at(pos, look, 1, MAT(w2c, i));
    }
}

void lyra_traj_back(float c, int64_t n, double rx, double ry, int sign, int invert_pos, float *w2c) {
    const float look[3] = {0.0f, 0.0f, c};
    /* The n "forward" matrices are identities; the n-1 appended ones are multiplied by the flipped
     * identities, which is exact. */
    lyra_traj_identity(n, w2c);
    const int64_t steps = n - 1;
    for (int64_t i = 0; i < steps; i++) {
        double theta = 2.0 * M_PI * (double)i / (double)(steps - 1);
        float pos[3] = {(float)(rx * (cos(theta) - 1.0) * (double)sign), (float)(ry * sin(theta)),
                        (float)(0.0 * sin(theta))};
        lyra_camera_look_at(pos, look, invert_pos, MAT(w2c, n + i));
    }
}

void lyra_traj_dolly_zoom(float c, int64_t n, const float K0[9], float *w2c, float *K) {
    const float subject = c * (float)0.185;
    const float look[3] = {0.0f, 0.0f, subject};
    for (int64_t i = 0; i < n; i++) {
        /* shift_z * i / (n_steps - 1) with shift_z = -3 (int): exact integer numerator, one rounding. */
        double shift = (double)(-3 * i) / (double)(n - 1);
        float cam[3] = {0.0f, 0.0f, 0.0f - (float)shift};
        /* D0 / Di with Di = Z_subject - zi, zi = -camera_z (camera moves forward, zi <= 0). */
        float zi = -cam[2];
        float ratio = subject / (subject - zi);
        float *k = K + (size_t)i * 9;
        memcpy(k, K0, 9 * sizeof(float));
        k[0] = K0[0] * ratio;
        k[4] = K0[4] * ratio;
        /* Once the camera passes z = c' the look-at flips it 180 degrees (R = diag(-1,1,-1)), and at
         * z == c' exactly the rows are NaN: upstream quirks kept (upstream CT:224-234, CU:291-330, CT:248-258;
         * docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 3). */
        lyra_camera_look_at(cam, look, 1, MAT(w2c, i));
    }
}

void lyra_traj_spiral_zoom(float c, int64_t n, double rx, double ry, double distance, int sign, int circles,
                           float *w2c) {
    const float look[3] = {0.0f, 0.0f, c * (float)(distance + 1.0)};
    const double theta_max = 2.0 * M_PI * (double)circles;
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / (double)(n - 1);
        double theta = theta_max * t;
        float x = (float)(rx * (cos(theta) - 1.0) * (double)sign) * c;
        float y = (float)(ry * sin(theta)) * c;
        float offset = (float)(t * distance) * c * (float)sign;
        float pos[3] = {x, y, 0.0f + offset};
        lyra_camera_look_at(pos, look, 1, MAT(w2c, i));
    }
}

void lyra_traj_rotate_zoom(float c, int64_t n, double rot_sign, double zoom_sign, double distance, float *w2c) {
    const double rotation = 20.0 * (M_PI / 180.0); /* math.radians(20.0) */
    const int64_t half = n / 2;
    float transition[16];
    lyra_camera_rot_y(rot_sign * rotation, transition);
    /* The camera moves along the (normalised) third row of its final rotation. */
    float forward[3] = {transition[8], transition[9], transition[10]};
    float norm = lyra_vec3_norm(forward);
    for (int k = 0; k < 3; k++) forward[k] = forward[k] / norm;
    for (int64_t i = 0; i < n; i++) {
        float *m = MAT(w2c, i);
        if (i < half) {
            double t = (double)i / (double)(half - 1 > 1 ? half - 1 : 1);
            lyra_camera_rot_y(rot_sign * rotation * t, m);
        } else {
            int64_t span = n - half - 1 > 1 ? n - half - 1 : 1;
            double t_zoom = (double)(i - half) / (double)span;
            float offset = (float)(zoom_sign * distance) * c * (float)t_zoom;
            float pos[3] = {0.0f + forward[0] * offset, 0.0f + forward[1] * offset, 0.0f + forward[2] * offset};
            /* Quirk (CU:866): the translation is -R^T pos, not -R pos, so for a rotation by a the
             * camera centre moves along a direction rotated by 2a instead of its viewing axis. */
            float t[3];
            memcpy(m, transition, sizeof transition);
            lyra_mat4_rot_apply_t(transition, pos, t);
            for (int k = 0; k < 3; k++) m[k * 4 + 3] = -t[k];
        }
    }
}

void lyra_traj_rotate_spot(float c, int64_t n, double rot_sign, double degrees, int orbit, float *w2c) {
    const double rotation = degrees * (M_PI / 180.0);
    const float look[3] = {0.0f, 0.0f, c};
    /* noise_percentage * distance * center_depth with the defaults 0.0001 and 0.1. */
    const float radius = (float)(0.0001 * 0.1) * c;
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / (double)(n - 1 > 1 ? n - 1 : 1);
        float rot[16], view[16];
        lyra_camera_rot_y(rot_sign * rotation * t, rot);
        if (orbit) {
            double orbit_angle = 2.0 * M_PI * (double)i * 0.001;
            float pos[3] = {radius * (float)cos(orbit_angle), radius * (float)sin(orbit_angle), 0.0f};
            lyra_camera_look_at(pos, look, 1, view);
            lyra_mat4_mul(rot, view, MAT(w2c, i));
        } else {
            /* The look-at from the origin towards (0,0,c) is the identity, so rot @ view = rot. */
            memcpy(MAT(w2c, i), rot, sizeof rot);
        }
    }
}

void lyra_traj_simple_shift(float c, int64_t n, double strength, int row, int sign, float *w2c) {
    /* torch.linspace(0, strength, n) in float32, evaluated from both ends as torch's scalar kernel
     * does (start + step*i below n/2, end - step*(n-1-i) above). torch's vectorised CPU path rounds
     * a few entries differently (by one ulp); the CUDA kernel, which upstream runs on, uses this form. */
    const float start = 0.0f, end = (float)strength;
    const float step = (end - start) / (float)(n - 1);
    const int64_t halfway = n / 2;
    lyra_traj_identity(n, w2c);
    for (int64_t i = 0; i < n; i++) {
        float value = i < halfway ? start + step * (float)i : end - step * (float)(n - i - 1);
        float shift = value * c;
        float *m = MAT(w2c, i);
        m[row * 4 + 3] = sign > 0 ? m[row * 4 + 3] + shift : m[row * 4 + 3] - shift;
    }
}
