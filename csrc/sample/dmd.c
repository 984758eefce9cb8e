/* DMD 4-step sampler (see dmd.h). Op order per upstream M:815-850, M:765-769, M:673-691: x0 = float32(fl64(X −
 * fl64(σ·v))), then X = fl32(fl32(fl32(1 − σ')·x0) + fl32(σ'·ε)) on the generated frames only (the per-element
 * formulas: nn/latent_math.h LYRA_LATENT_X0_F64 and LYRA_LATENT_RENOISE). */
#include "sample/dmd.h"

#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "sample/latent_state.h"

int64_t lyra_dmd_work_numel(const lyra_latent_shape *shape) { return lyra_latent_gen_numel(shape); }

lyra_status lyra_dmd_run(lyra_backend *be, const lyra_latent_shape *shape, float *x, float *work, const float *noise,
                         lyra_rng *rng, const float *renoise, lyra_denoise_tensor_fn denoise, void *ctx,
                         lyra_dmd_trace *trace) {
    LYRA_TRY(lyra_latent_shape_check(shape, "DMD state"));
    LYRA_ASSERT(rng || renoise);
    const int64_t n = lyra_latent_numel(shape), ngen = lyra_latent_gen_numel(shape);
    const int64_t hw = shape->h * shape->w;
    float ts[LYRA_DMD_STEPS], sig[LYRA_DMD_STEPS];
    lyra_dmd_schedule(ts, sig);

    lyra_status st = LYRA_OK;
    float *eps_buf = NULL;
    if (!renoise && !(eps_buf = malloc((size_t)n * sizeof(float))))
        return lyra_error(LYRA_ERR_OOM, "DMD: cannot allocate the re-noise block (%lld floats)", (long long)n);
    lyra_tensor tx = lyra_state_tensor(be, shape, x, "sampler state x");
    lyra_tensor xg = lyra_state_gen(shape, &tx);
    /* the velocity; once a step's x0 is taken, the same buffer receives that step's ε */
    lyra_tensor v = lyra_gen_tensor(be, shape, work, "velocity");
    /* ε as uploaded: frames t_hist.. of the [T, C, H, W] block, i.e. (t_new, C, H, W); read as (C, t_new, H, W) */
    lyra_tensor eps_up = lyra_tensor_4d(work, LYRA_DTYPE_F32, shape->t_new, shape->c, shape->h, shape->w), eps;
    eps_up.device = be->device;
    eps_up.name = "re-noise";
    const int perm[4] = {1, 0, 2, 3};
    if ((st = lyra_tensor_permute(&eps, &eps_up, perm)) != LYRA_OK) goto finally;
    if (noise && (st = lyra_state_set_noise(be, shape, &tx, &v, "initial noise", noise)) != LYRA_OK) goto finally;

    for (int k = 0; k < LYRA_DMD_STEPS; k++) {
        if (trace && trace->x_in && (st = lyra_state_trace(be, &tx, trace->x_in + (size_t)k * (size_t)n)) != LYRA_OK)
            goto finally;
        if (trace && trace->t_in) trace->t_in[k] = ts[k];
        if ((st = denoise(ctx, shape, &tx, ts[k], &v)) != LYRA_OK) goto finally;
        if (trace && trace->v && (st = lyra_state_trace(be, &v, trace->v + (size_t)k * (size_t)ngen)) != LYRA_OK)
            goto finally;

        /* x0 of the generated frames, written over x (history stays: v = 0 there gives x0 = x). */
        if ((st = lyra_state_x0(be, shape, LYRA_LATENT_X0_F64, sig[k], &tx, &tx, &v)) != LYRA_OK) goto finally;
        if (trace && trace->x0 && (st = lyra_state_trace(be, &tx, trace->x0 + (size_t)k * (size_t)n)) != LYRA_OK)
            goto finally;
        if (k == LYRA_DMD_STEPS - 1) break; /* the last step returns x0 */

        /* Re-noise to σ_{k+1} with ε_k laid out [T, C, H, W] (upstream's [B·T, C, H, W]), drawn on the host while the
         * device may still run this step's work (the upload waits for it: v is read by the x0 op). */
        const float *e = renoise ? renoise + (size_t)k * (size_t)n : eps_buf;
        if (!renoise) lyra_rng_fill_normal_f32(rng, eps_buf, n);
        if (trace && trace->eps) memcpy(trace->eps + (size_t)k * (size_t)n, e, (size_t)n * sizeof(float));
        lyra_tensor h = lyra_tensor_4d((void *)(e + shape->t_hist * shape->c * hw), LYRA_DTYPE_F32, shape->t_new,
                                       shape->c, shape->h, shape->w);
        h.name = eps_up.name;
        if ((st = lyra_op_upload(be, &eps_up, &h)) != LYRA_OK) goto finally;
        const float s_next = sig[k + 1], a_next = 1.0f - s_next;
        const lyra_latent_update p = {.kind = LYRA_LATENT_RENOISE, .alpha = a_next, .sigma = s_next};
        const lyra_tensor *in[2] = {&xg, &eps};
        if ((st = lyra_op_latent_update(be, &xg, in, 2, &p)) != LYRA_OK) goto finally;
    }
finally:
    free(eps_buf);
    return st;
}

lyra_status lyra_dmd_sample(const lyra_latent_shape *shape, float *x, lyra_rng *rng, const float *renoise,
                            lyra_denoise_fn denoise, void *ctx, lyra_dmd_trace *trace) {
    LYRA_TRY(lyra_latent_shape_check(shape, "DMD state"));
    lyra_backend cpu;
    LYRA_TRY(lyra_backend_cpu_init(&cpu, 1));
    float *work = malloc((size_t)lyra_dmd_work_numel(shape) * sizeof(float));
    lyra_status st = work ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "DMD: cannot allocate the sampler state (%lld floats)",
                                                  (long long)lyra_dmd_work_numel(shape));
    lyra_denoise_host host = {denoise, ctx};
    if (st == LYRA_OK)
        st = lyra_dmd_run(&cpu, shape, x, work, NULL, rng, renoise, lyra_denoise_host_call, &host, trace);
    free(work);
    lyra_backend_free(&cpu);
    return st;
}
