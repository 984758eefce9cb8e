/* Rendering of 3D Gaussian splats on a backend: the scene goes to the backend's memory once and every camera is
 * one gs_rasterize op (nn/ops.h; the model, 3DGS's forward pass as gsplat runs it for Depth Anything 3, is in
 * nn/splat_math.h): the CPU reference (nn/cpu/cpu_splat.c) or the CUDA kernels (nn/cuda/cuda_splat.cu). */
#ifndef LYRA_GS_RASTER_H
#define LYRA_GS_RASTER_H

#include <stdint.h>

#include "nn/backend.h"

typedef struct lyra_gs_scene {
    int64_t n;
    const float *means;      /* (n, 3) world */
    const float *scales;     /* (n, 3) standard deviations */
    const float *rotations;  /* (n, 4) quaternions (w, x, y, z), normalised by the op */
    const float *harmonics;  /* (n, 3, d_sh) real SH per channel, 3DGS basis, d_sh = (sh_degree + 1)² */
    const float *opacities;  /* (n) */
    int sh_degree;           /* 0, 1 or 2 */
} lyra_gs_scene;

/* n_cams frames of `scene` (host arrays) at width × height on `be`: rgb (n_cams, H, W, 3), alpha (n_cams, H, W)
 * (1 − T) and depth (n_cams, H, W) (Σ α·T·z, gsplat "RGB+D") host outputs; alpha and depth may be NULL.
 * LYRA_ERR_ARG for a bad size, degree or camera, LYRA_ERR_OOM (host or device memory), the backend's errors. */
lyra_status lyra_gs_render(lyra_backend *be, const lyra_gs_scene *scene, const lyra_splat_camera *cams, int64_t n_cams,
                           int width, int height, float *rgb, float *alpha, float *depth);

#endif
