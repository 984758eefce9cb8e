/* The per-pixel arithmetic of the ray conditioning (upstream M:1830-1888, PL:28-74), shared word for word by the
 * CPU reference (geom/rays.c, nn/cpu/cpu_prep.c) and the CUDA kernel (nn/cuda/cuda_prep.cu). Float32 in upstream's
 * op order: (i + 0.5 − cx) / fx, the norm as sqrt((x² + y²) + z²), then R·dir as a sequential sum over the inner
 * index. Every product and sum is one rounded f32 step: RAYS_MUL / RAYS_ADD are plain operators in C (no FMA
 * contraction on the x86-64 baseline) and __fmul_rn / __fadd_rn in the CUDA file, so the backends agree bit for bit
 * ('/' and sqrtf are IEEE-rounded under nvcc's defaults).
 *
 * RAYS_FN is `static inline` in C; the CUDA file defines it (`static __device__ inline`, with RAYS_MUL and RAYS_ADD)
 * first. */
#ifndef LYRA_NN_RAYS_MATH_H
#define LYRA_NN_RAYS_MATH_H

#include <math.h>

#ifndef RAYS_FN
#define RAYS_FN static inline
#define RAYS_MUL(a, b) ((a) * (b))
#define RAYS_ADD(a, b) ((a) + (b))
#endif

/* px[0..6) = [o, d] (or [o×d, d] with moment) of the pixel centre (i + 0.5, j + 0.5), column i, row j, of the
 * camera K4 = (fx, fy, cx, cy) and row-major c2w M (4, 4). */
RAYS_FN void lyra_ray_pixel(const float *K4, const float *M, int i, int j, int moment, float *px) {
    const float fx = K4[0], fy = K4[1], cx = K4[2], cy = K4[3];
    const float o[3] = {M[3], M[7], M[11]};
    float dir[3] = {RAYS_ADD(RAYS_ADD((float)i, 0.5f), -cx) / fx, RAYS_ADD(RAYS_ADD((float)j, 0.5f), -cy) / fy, 1.0f};
    const float norm = sqrtf(RAYS_ADD(RAYS_ADD(RAYS_MUL(dir[0], dir[0]), RAYS_MUL(dir[1], dir[1])),
                                      RAYS_MUL(dir[2], dir[2])));
    for (int k = 0; k < 3; k++) dir[k] /= norm;
    float d[3];
    for (int r = 0; r < 3; r++) {
        float s = 0.0f;
        for (int k = 0; k < 3; k++) s = RAYS_ADD(s, RAYS_MUL(dir[k], M[4 * r + k]));
        d[r] = s;
    }
    if (moment) {
        px[0] = RAYS_ADD(RAYS_MUL(o[1], d[2]), -RAYS_MUL(o[2], d[1]));
        px[1] = RAYS_ADD(RAYS_MUL(o[2], d[0]), -RAYS_MUL(o[0], d[2]));
        px[2] = RAYS_ADD(RAYS_MUL(o[0], d[1]), -RAYS_MUL(o[1], d[0]));
    } else {
        px[0] = o[0];
        px[1] = o[1];
        px[2] = o[2];
    }
    px[3] = d[0];
    px[4] = d[1];
    px[5] = d[2];
}

#endif
