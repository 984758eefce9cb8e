/* The per-splat and per-pixel arithmetic of the Gaussian-splat rasterizer (op gs_rasterize, nn/ops.h), shared
 * word for word by the CPU reference (cpu/cpu_splat.c) and the CUDA kernels (cuda/cuda_splat.cu), so the two
 * backends differ only in float rounding (nvcc's FMA contraction, libdevice's expf/logf within 2 ulp).
 *
 * The model is 3DGS's forward pass as gsplat's rasterization() runs it for Depth Anything 3's renderer
 * (`Depth-Anything-3 src/depth_anything_3/model/utils/gs_renderer.py`), with its defaults: near 0.01, eps2d 0.3,
 * no anti-aliasing compensation, SH colours + 0.5 clamped at 0, 16×16 tiles:
 *
 *   per splat:  camera-space mean t = W·m (culled when t.z < near), 3D covariance Σ = R S Sᵀ Rᵀ, 2D covariance
 *               J W Σ Wᵀ Jᵀ + 0.3·I (J the perspective Jacobian with |x/z|, |y/z| clamped at 1.3·tan(fov/2)),
 *               conic = its inverse, radius = ⌈3·√λmax⌉, colour = SH(view direction) + 0.5, ≥ 0;
 *   binning:    every splat into each 16×16 tile its square of `radius` touches; each tile's list sorted by the
 *               key (camera depth, splat index): one total order, so the result does not depend on the order in
 *               which a backend fills the lists;
 *   per pixel:  front to back over its tile's list with the pixel centre at (x + 0.5, y + 0.5):
 *               α = min(0.999, o·exp(−½ dᵀ·conic·d)), skipped when the exponent is positive or α < 1/255;
 *               stop before a splat that would take the transmittance T below 1e-4; C += α·T·c, T *= 1 − α;
 *               out = (C + T·background, 1 − T, Σ α·T·z).
 *
 * SPLAT_FN is `static inline` in C; the CUDA file defines it as `static __host__ __device__ inline` first. */
#ifndef LYRA_SPLAT_MATH_H
#define LYRA_SPLAT_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/backend.h"

#ifndef SPLAT_FN
#define SPLAT_FN static inline
#endif

#define SPLAT_TILE 16
#define SPLAT_EPS2D 0.3f
#define SPLAT_ALPHA_MIN (1.0f / 255.0f)
#define SPLAT_ALPHA_MAX 0.999f
#define SPLAT_T_MIN 1e-4f

/* One projected splat. radius 0 = culled. */
typedef struct splat2d {
    float mx, my;            /* mean in pixels */
    float ca, cb, cc;        /* conic (inverse 2D covariance) [[ca, cb], [cb, cc]] */
    float depth, opacity;
    float rgb[3];
    int x0, y0, x1, y1;      /* touched tiles, [x0, x1) × [y0, y1) */
    int radius;
} splat2d;

/* A splat as the per-pixel loop reads it: mean, conic, the exponent beyond which α < 1/255 (ln(255·o), so no exp
 * is taken there; −1 for a splat that can never reach 1/255: it is always skipped), opacity, colour, depth. */
typedef struct splat_packed { float mx, my, ca, cb, cc, cut, o, r, g, b, z; } splat_packed;

/* One pixel's running state. */
typedef struct splat_pixel { float T, c[3], d; } splat_pixel;

/* Sort key of a tile entry: depth (> 0, so its IEEE bits order as the values) above the splat index. */
SPLAT_FN uint64_t splat_key(float depth, uint32_t idx) {
    uint32_t bits;
    memcpy(&bits, &depth, sizeof bits);
    return ((uint64_t)bits << 32) | idx;
}

/* The camera centre −Rᵀ t of a row-major w2c. */
SPLAT_FN void splat_campos(const float *W, float *campos) {
    for (int a = 0; a < 3; a++) campos[a] = -(W[a] * W[3] + W[4 + a] * W[7] + W[8 + a] * W[11]);
}

/* 3DGS SH evaluation up to degree 2 (gaussian-splatting utils/sh_utils.py constants), + 0.5, clamped at 0. */
SPLAT_FN void splat_sh_color(const float *sh, int deg, const float *dir, float *rgb) {
    const float C0 = 0.28209479177387814f, C1 = 0.4886025119029199f;
    const float C2[5] = {1.0925484305920792f, -1.0925484305920792f, 0.31539156525252005f, -1.0925484305920792f,
                         0.5462742152960396f};
    int d_sh = (deg + 1) * (deg + 1);
    float x = dir[0], y = dir[1], z = dir[2];
    float b[9] = {C0, -C1 * y, C1 * z, -C1 * x, C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * z * z - x * x - y * y),
                  C2[3] * x * z, C2[4] * (x * x - y * y)};
    for (int c = 0; c < 3; c++) {
        float v = 0;
        for (int k = 0; k < d_sh; k++) v += b[k] * sh[c * d_sh + k];
        v += 0.5f;
        rgb[c] = v > 0 ? v : 0;
    }
}

/* Splat i of the scene (means (n,3), scales (n,3), rotations (n,4) wxyz, harmonics (n,3,d_sh), opacities (n))
 * seen by `cam` at width × height: fills *o (radius 0 when culled or off screen). */
SPLAT_FN void splat_project(const float *means, const float *scales, const float *rotations, const float *harmonics,
                            const float *opacities, int sh_degree, int64_t i, const lyra_splat_camera *cam,
                            int width, int height, const float *campos, int tiles_x, int tiles_y, splat2d *o) {
    memset(o, 0, sizeof *o);
    const float *W = cam->w2c, *m = means + 3 * i;
    float t[3];
    for (int a = 0; a < 3; a++) t[a] = W[4 * a] * m[0] + W[4 * a + 1] * m[1] + W[4 * a + 2] * m[2] + W[4 * a + 3];
    if (!(t[2] >= cam->near_plane)) return;
    /* Σ = R S² Rᵀ from the normalised quaternion (w, x, y, z) */
    const float *q = rotations + 4 * i;
    float qn = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (!(qn > 0)) return;
    float w = q[0] / qn, x = q[1] / qn, y = q[2] / qn, z = q[3] / qn;
    float R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                  2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                  2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)};
    const float *sc = scales + 3 * i;
    float M[9]; /* (W_R · R) · S */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            float v = W[4 * a] * R[b] + W[4 * a + 1] * R[3 + b] + W[4 * a + 2] * R[6 + b];
            M[3 * a + b] = v * sc[b];
        }
    float C[9]; /* camera-space covariance M Mᵀ */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            C[3 * a + b] = M[3 * a] * M[3 * b] + M[3 * a + 1] * M[3 * b + 1] + M[3 * a + 2] * M[3 * b + 2];
    float fx = cam->K[0], fy = cam->K[4], cx = cam->K[2], cy = cam->K[5];
    float limx = 1.3f * 0.5f * (float)width / fx, limy = 1.3f * 0.5f * (float)height / fy;
    float rz = 1.0f / t[2];
    float tx = t[2] * fminf(limx, fmaxf(-limx, t[0] * rz)), ty = t[2] * fminf(limy, fmaxf(-limy, t[1] * rz));
    float J[6] = {fx * rz, 0, -fx * tx * rz * rz, 0, fy * rz, -fy * ty * rz * rz};
    float JC[6];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) JC[3 * a + b] = J[3 * a] * C[b] + J[3 * a + 1] * C[3 + b] + J[3 * a + 2] * C[6 + b];
    float c00 = JC[0] * J[0] + JC[1] * J[1] + JC[2] * J[2] + SPLAT_EPS2D;
    float c01 = JC[0] * J[3] + JC[1] * J[4] + JC[2] * J[5];
    float c11 = JC[3] * J[3] + JC[4] * J[4] + JC[5] * J[5] + SPLAT_EPS2D;
    float det = c00 * c11 - c01 * c01;
    if (!(det > 0)) return;
    float mid = 0.5f * (c00 + c11), lam = mid + sqrtf(fmaxf(0.1f, mid * mid - det));
    int radius = (int)ceilf(3.0f * sqrtf(lam));
    o->mx = fx * t[0] * rz + cx;
    o->my = fy * t[1] * rz + cy;
    o->x0 = (int)fminf((float)tiles_x, fmaxf(0.0f, floorf((o->mx - radius) / SPLAT_TILE)));
    o->x1 = (int)fminf((float)tiles_x, fmaxf(0.0f, ceilf((o->mx + radius) / SPLAT_TILE)));
    o->y0 = (int)fminf((float)tiles_y, fmaxf(0.0f, floorf((o->my - radius) / SPLAT_TILE)));
    o->y1 = (int)fminf((float)tiles_y, fmaxf(0.0f, ceilf((o->my + radius) / SPLAT_TILE)));
    if (o->x0 >= o->x1 || o->y0 >= o->y1) return;
    o->ca = c11 / det, o->cb = -c01 / det, o->cc = c00 / det;
    o->depth = t[2];
    o->opacity = opacities[i];
    float dir[3] = {m[0] - campos[0], m[1] - campos[1], m[2] - campos[2]};
    float dn = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
    for (int a = 0; a < 3; a++) dir[a] = dn > 0 ? dir[a] / dn : 0;
    int d_sh = (sh_degree + 1) * (sh_degree + 1);
    splat_sh_color(harmonics + i * 3 * d_sh, sh_degree, dir, o->rgb);
    o->radius = radius;
}

/* The packed form of a projected splat; 0 when it can never reach α >= 1/255 (then p->cut = −1: skipped). */
SPLAT_FN int splat_pack(const splat2d *g, splat_packed *p) {
    int visible = g->opacity * 255.0f >= 1.0f;
    /* the cut-off has a margin: exactly at the edge the α test of splat_blend decides, as without it */
    p->mx = g->mx, p->my = g->my, p->ca = g->ca, p->cb = g->cb, p->cc = g->cc;
    p->cut = visible ? logf(255.0f * g->opacity) + 1e-3f : -1.0f;
    p->o = g->opacity, p->r = g->rgb[0], p->g = g->rgb[1], p->b = g->rgb[2], p->z = g->depth;
    return visible;
}

SPLAT_FN void splat_pixel_init(splat_pixel *px) {
    px->T = 1.0f;
    px->c[0] = px->c[1] = px->c[2] = 0.0f;
    px->d = 0.0f;
}

/* Composites splat g (the next in depth order) into the pixel whose centre is (fx, fy); 1 when the ray is done
 * (g would take T to 1e-4 or below: g and everything behind it are left out). */
SPLAT_FN int splat_blend(const splat_packed *g, float fx, float fy, splat_pixel *px) {
    float dx = g->mx - fx, dy = g->my - fy;
    float sigma = 0.5f * (g->ca * dx * dx + g->cc * dy * dy) + g->cb * dx * dy;
    if (!(sigma >= 0 && sigma <= g->cut)) return 0; /* behind the mean's peak, past the cut-off, or NaN */
    float a = fminf(SPLAT_ALPHA_MAX, g->o * expf(-sigma));
    if (a < SPLAT_ALPHA_MIN) return 0; /* at the cut-off's rounding edge */
    float next = px->T * (1.0f - a);
    if (next <= SPLAT_T_MIN) return 1;
    float w = a * px->T;
    px->c[0] += g->r * w, px->c[1] += g->g * w, px->c[2] += g->b * w;
    px->d += g->z * w;
    px->T = next;
    return 0;
}

/* out[0..4] = (C + T·background, 1 − T, depth) */
SPLAT_FN void splat_pixel_store(const splat_pixel *px, const float *background, float *out) {
    for (int ch = 0; ch < 3; ch++) out[ch] = px->c[ch] + px->T * background[ch];
    out[3] = 1.0f - px->T;
    out[4] = px->d;
}

#endif
