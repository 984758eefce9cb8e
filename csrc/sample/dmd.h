/* The DMD 4-step sampler of upstream's `--use_dmd` path (upstream M:710-728, SF:11-49, SF:40-43): one conditional
 * denoiser call per step, x0 in float64, re-noise to the next σ, history restored exactly.
 *
 * DELIBERATE DEVIATION (upstream M:832, M:816-817, Z:502): upstream's re-noise ε_k comes from torch.randn_like on the
 * global CUDA Philox generator, whose state depends on the GPU model and every earlier draw, so it cannot be
 * reproduced. Here ε_k continues the chunk's numpy-legacy stream (seeded with seed + chunk) right after the initial
 * noise: per step it draws a full [T, C, H, W] block (upstream's [B·T, C, H, W] memory order) and uses frames t_hist..
 * of it. Outputs are therefore deterministic and seedable, and identical to golden/sampler.npz, but not to any
 * particular upstream GPU run. */
#ifndef LYRA_SAMPLE_DMD_H
#define LYRA_SAMPLE_DMD_H

#include <stdint.h>

#include "lyra2.h"
#include "sample/denoise.h"
#include "sample/rng.h"
#include "sample/schedules.h"

/* Per-step intermediates for tests (any pointer may be NULL). T = t_hist + t_new. */
typedef struct lyra_dmd_trace {
    float *x_in; /* [4, C, T, H, W]: the state each denoiser call sees */
    float *t_in; /* [4]: the timestep of each call */
    float *v;    /* [4, C, t_new, H, W]: the denoiser's velocity */
    float *x0;   /* [4, C, T, H, W]: x0 prediction (history = the history) */
    float *eps;  /* [3, T, C, H, W]: re-noise noise of steps 0..2 (all frames, as drawn) */
} lyra_dmd_trace;

/* x:       [1, C, T, H, W] float32; in: the initial state (history ++ noise, lyra_latent_init); out:
 *          history ++ the final x0 (its generated frames are the chunk's result)
 * rng:     the chunk's stream positioned after the initial noise (used when renoise is NULL)
 * renoise: NULL, or [3, T, C, H, W] float32 fixed ε_k (tests; only frames t_hist.. are read)
 * The denoiser gets t_k = 1000·σ_k as float32: 1000, 937.5, 833.3333, 625. */
lyra_status lyra_dmd_sample(const lyra_latent_shape *shape, float *x, lyra_rng *rng, const float *renoise,
                            lyra_denoise_fn denoise, void *ctx, lyra_dmd_trace *trace);

/* The same sampler with its state in be's memory (what lyra_dmd_sample runs on a CPU backend over host memory, and
 * the AR driver on the DiT's backend): x0 and the re-noise are latent_update ops. The noise stays on the host: the
 * numpy-legacy MT19937 stream is sequential (each normal needs the generator state the previous one left), and it is
 * what makes a run reproducible and seedable and equal to golden/sampler.npz; each re-noise step draws its [T, C, H,
 * W] block there (while the device runs that step's network call) and uploads the generated frames' part, t_new·C·H·W
 * f32 (8.0 MB per step at 480p, 3 steps per chunk: negligible beside the DiT's forward).
 * x:     (C, T, H, W) f32 contiguous in be's memory, in/out as lyra_dmd_sample's
 * work:  lyra_dmd_work_numel(shape) f32 in be's memory: the velocity, then each step's uploaded ε (C, t_new, H, W)
 * noise: NULL (x holds the initial state), or (C, t_new, H, W) host f32: uploaded once into x's generated frames
 * trace: NULL or host buffers (filled by downloads). */
int64_t lyra_dmd_work_numel(const lyra_latent_shape *shape);
lyra_status lyra_dmd_run(struct lyra_backend *be, const lyra_latent_shape *shape, float *x, float *work,
                         const float *noise, lyra_rng *rng, const float *renoise, lyra_denoise_tensor_fn denoise,
                         void *ctx, lyra_dmd_trace *trace);

#endif
