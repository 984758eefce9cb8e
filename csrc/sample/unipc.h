/* UniPC flow-matching solver of upstream's non-DMD path (upstream UNI:88-107, UNI:265-266, UNI:399-400): order 2, bh2,
 * predict-x0, lower-order first and final steps, corrector (UniC) on every step after the first.
 *
 * Every per-step scalar is computed once, in float32 host arithmetic in upstream's operation order
 * (lyra_unipc_plan); the run then applies them elementwise to the whole float32 state, history frames
 * included (v = 0 there, and the history drifts by float32 ulps exactly as upstream's does, upstream M:616-626, M:671).
 * */
#ifndef LYRA_SAMPLE_UNIPC_H
#define LYRA_SAMPLE_UNIPC_H

#include <stdint.h>

#include "lyra2.h"
#include "sample/denoise.h"

/* Scalars of step i (grid point i -> i+1). */
typedef struct lyra_unipc_step {
    float sigma;      /* σ_i: x0 conversion M_i = X_i − σ_i·V_i (upstream UNI:272-324) */
    float lambda;     /* λ_i = log32(α_i) − log32(σ_i), α_i = 1 − σ_i (upstream UNI:265-266, UNI:399-400, UNI:422) */
    int order;        /* predictor order p_i = min(2, N − i, i + 1) (upstream UNI:214-224, UNI:636-719, M:656-668) */
    float c1;         /* σ_{i+1} / σ_i */
    float c2;         /* α_{i+1}·expm1(−h), h = λ_{i+1} − λ_i; bh2 makes c3 = c2 bit for bit */
    float r;          /* p_i = 2: (λ_{i−1} − λ_i) / h; else 0 */
    float rinv;       /* p_i = 2: fl32(1/r) (CUDA divides by a host scalar as a multiply, upstream UNI:214-224) */
    int corr_order;   /* q_i = p_{i−1} for i >= 1; 0 at i = 0 (no corrector) */
    float rho0, rho1; /* corrector weights of step i: q = 1: (0, 0.5); q = 2: the 2x2 solve (upstream UNI:636-719) */
} lyra_unipc_step;

/* Fills the per-step scalars for a solver grid.
 * sigmas: [n + 1] float32 (lyra_flow_schedule's, last = 0, strictly decreasing in (0, 1))
 * steps:  [n]
 * lambda_last: λ_n (+inf for σ_n = 0), or NULL. */
lyra_status lyra_unipc_plan(const float *sigmas, int n, lyra_unipc_step *steps, float *lambda_last);

/* Per-step intermediates for tests (any pointer may be NULL). T = t_hist + t_new. */
typedef struct lyra_unipc_trace {
    float *x;           /* [n + 1, C, T, H, W]: the state before step 0, then after each step */
    float *v;           /* [n, C, T, H, W]: velocity given to the solver (0 on history) */
    float *x0;          /* [n, C, T, H, W]: x0 prediction M_i */
    float *x_corrected; /* [n, C, T, H, W]: corrected sample X_i^c (= X_0 at i = 0) */
    int64_t *order;     /* [n]: predictor order p_i */
} lyra_unipc_trace;

/* Runs set_timesteps(num_steps, shift) and the n solver steps, one denoiser call per step (CFG, if
 * any, lives inside the denoiser: see cfg.h). The denoiser gets the int64 network timestep t_i as a
 * float (exact: 0..999).
 * x: [1, C, T, H, W] float32; in: the initial state (history ++ noise, lyra_latent_init), out: the
 *    state after the last step (its generated frames are the chunk's result).
 * trace: NULL or buffers to fill. */
lyra_status lyra_unipc_sample(const lyra_latent_shape *shape, int num_steps, double shift, float *x,
                              lyra_denoise_fn denoise, void *ctx, lyra_unipc_trace *trace);

/* The same solver with its state in be's memory (what lyra_unipc_sample runs on a CPU backend over host memory, and
 * the AR driver on the DiT's backend): every elementwise update is a latent_update op, so per network call nothing
 * crosses between host and device.
 * x:     (C, T, H, W) f32 contiguous in be's memory, in/out as lyra_unipc_sample's
 * work:  lyra_unipc_work_numel(shape) f32 in be's memory: the x0 predictions M_i, M_{i−1}, M_{i−2}, the corrected
 *        sample and the denoiser's velocity (C, t_new, H, W)
 * noise: NULL (x holds the initial state), or (C, t_new, H, W) host f32 normals: uploaded once (through the velocity
 *        buffer) into x's generated frames before the first step
 * trace: NULL or host buffers (filled by downloads). */
int64_t lyra_unipc_work_numel(const lyra_latent_shape *shape);
lyra_status lyra_unipc_run(struct lyra_backend *be, const lyra_latent_shape *shape, int num_steps, double shift,
                           float *x, float *work, const float *noise, lyra_denoise_tensor_fn denoise, void *ctx,
                           lyra_unipc_trace *trace);

#endif
