/* Camera helpers (see camera.h for conventions and why the op order is fixed). */
#include "geom/camera.h"

#include <math.h>
#include <string.h>

void lyra_vec3_cross(const float a[3], const float b[3], float out[3]) {
    /* torch.cross's CPU kernel, as compiled with FMA: the second product is rounded, the first is
     * fused (a1*b2 - a2*b1 = fma(a1, b2, -(a2*b1))); this reproduces the goldens bit for bit. */
    out[0] = fmaf(a[1], b[2], -(a[2] * b[1]));
    out[1] = fmaf(a[2], b[0], -(a[0] * b[2]));
    out[2] = fmaf(a[0], b[1], -(a[1] * b[0]));
}

float lyra_vec3_norm(const float v[3]) {
    /* torch.norm's float32 CPU kernel accumulates x*x with fused multiply-adds (its AVX2 build
     * contracts them); matching that makes the look-at rows bit-identical to the goldens. */
    float acc = fmaf(v[0], v[0], 0.0f);
    acc = fmaf(v[1], v[1], acc);
    acc = fmaf(v[2], v[2], acc);
    return sqrtf(acc);
}

void lyra_mat4_identity(float m[16]) {
    memset(m, 0, 16 * sizeof(float));
    m[0] = m[5] = m[10] = m[15] = 1.0f;
}

void lyra_mat4_mul(const float a[16], const float b[16], float out[16]) {
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            float acc = 0.0f;
            for (int k = 0; k < 4; k++) acc = acc + a[r * 4 + k] * b[k * 4 + c];
            out[r * 4 + c] = acc;
        }
}

void lyra_mat4_rot_apply(const float w2c[16], const float v[3], float out[3]) {
    for (int r = 0; r < 3; r++) {
        float acc = 0.0f;
        for (int k = 0; k < 3; k++) acc = acc + w2c[r * 4 + k] * v[k];
        out[r] = acc;
    }
}

void lyra_mat4_rot_apply_t(const float w2c[16], const float v[3], float out[3]) {
    for (int r = 0; r < 3; r++) {
        float acc = 0.0f;
        for (int k = 0; k < 3; k++) acc = acc + w2c[k * 4 + r] * v[k];
        out[r] = acc;
    }
}

void lyra_camera_center(const float w2c[16], float center[3]) {
    float t[3] = {w2c[3], w2c[7], w2c[11]};
    lyra_mat4_rot_apply_t(w2c, t, center);
    for (int i = 0; i < 3; i++) center[i] = -center[i];
}

void lyra_camera_look_at(const float pos[3], const float target[3], int invert_pos, float w2c[16]) {
    static const float up_axis[3] = {0.0f, 1.0f, 0.0f};
    float f[3] = {target[0] - pos[0], target[1] - pos[1], target[2] - pos[2]};
    float fn = lyra_vec3_norm(f);
    for (int i = 0; i < 3; i++) f[i] = f[i] / fn;
    float r[3], u[3];
    lyra_vec3_cross(up_axis, f, r);
    float rn = lyra_vec3_norm(r);
    for (int i = 0; i < 3; i++) r[i] = r[i] / rn;
    lyra_vec3_cross(f, r, u);

    lyra_mat4_identity(w2c);
    for (int i = 0; i < 3; i++) {
        w2c[0 * 4 + i] = r[i];
        w2c[1 * 4 + i] = u[i];
        w2c[2 * 4 + i] = f[i];
    }
    if (invert_pos) {
        float t[3];
        lyra_mat4_rot_apply(w2c, pos, t);
        for (int i = 0; i < 3; i++) w2c[i * 4 + 3] = -t[i];
    } else {
        for (int i = 0; i < 3; i++) w2c[i * 4 + 3] = pos[i];
    }
}

void lyra_camera_rot_y(double angle, float w2c[16]) {
    float c = (float)cos(angle), s = (float)sin(angle);
    lyra_mat4_identity(w2c);
    w2c[0] = c;
    w2c[2] = s;
    w2c[8] = -s;
    w2c[10] = c;
}
