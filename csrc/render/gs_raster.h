/* CPU reference rasterizer for 3D Gaussian splats (the 3DGS forward pass as gsplat's rasterization() runs it for
 * Depth Anything 3's renderer, model/utils/gs_renderer.py, with its defaults: near 0.01, eps2d 0.3, no
 * anti-aliasing compensation, SH colours + 0.5 clamped at 0, 16×16 tiles).
 *
 *   per splat:  camera-space mean t = W·m (culled when t.z < near), 3D covariance Σ = R S Sᵀ Rᵀ, 2D covariance
 *               J W Σ Wᵀ Jᵀ + 0.3·I (J the perspective Jacobian with |x/z|, |y/z| clamped at 1.3·tan(fov/2)),
 *               conic = its inverse, radius = ⌈3·√λmax⌉, colour = SH(view direction) + 0.5, ≥ 0;
 *   binning:    every splat into each 16×16 tile its square of `radius` touches, each tile's list sorted by
 *               camera depth (ties by index);
 *   per pixel:  front to back over its tile's list with the pixel centre at (x + 0.5, y + 0.5):
 *               α = min(0.999, o·exp(−½ dᵀ·conic·d)), skipped when the exponent is positive or α < 1/255;
 *               stop before a splat that would take the transmittance T below 1e-4; C += α·T·c, T *= 1 − α;
 *               out = C + T·background.
 *
 * A CUDA rasterizer is not part of this runtime yet; this is the reference one. */
#ifndef LYRA_GS_RASTER_H
#define LYRA_GS_RASTER_H

#include <stdint.h>

#include "lyra2.h"

typedef struct lyra_gs_scene {
    int64_t n;
    const float *means;      /* (n, 3) world */
    const float *scales;     /* (n, 3) standard deviations */
    const float *rotations;  /* (n, 4) quaternions (w, x, y, z), normalised here */
    const float *harmonics;  /* (n, 3, d_sh) real SH per channel, 3DGS basis, d_sh = (sh_degree + 1)² */
    const float *opacities;  /* (n) */
    int sh_degree;           /* 0, 1 or 2 */
} lyra_gs_scene;

typedef struct lyra_gs_camera {
    float w2c[16];           /* row-major world-to-camera (OpenCV axes) */
    float K[9];              /* row-major pixel intrinsics; skew is ignored (gsplat's pinhole) */
    int width, height;
    float near_plane;        /* 0.01 in gsplat */
    float background[3];
} lyra_gs_camera;

/* rgb (H, W, 3), alpha (H, W) (1 − T) and depth (H, W) (Σ α·T·z, gsplat "RGB+D") host outputs; alpha and depth
 * may be NULL. threads <= 0: OpenMP's default. LYRA_ERR_ARG for a bad size or degree, LYRA_ERR_OOM. */
lyra_status lyra_gs_render(const lyra_gs_scene *scene, const lyra_gs_camera *cam, float *rgb, float *alpha,
                           float *depth, int threads);

#endif
