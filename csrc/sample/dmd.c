/* DMD 4-step sampler (see dmd.h). Op order per upstream M:815-850, M:765-769, M:673-691: x0 = float32(fl64(X −
 * fl64(σ·v))), then X = fl32(fl32(fl32(1 − σ')·x0) + fl32(σ'·ε)) on the generated frames only. */
#include "sample/dmd.h"

#include <stdlib.h>
#include <string.h>

lyra_status lyra_dmd_sample(const lyra_latent_shape *shape, float *x, lyra_rng *rng, const float *renoise,
                            lyra_denoise_fn denoise, void *ctx, lyra_dmd_trace *trace) {
    LYRA_TRY(lyra_latent_shape_check(shape, "DMD state"));
    LYRA_ASSERT(rng || renoise);
    const int64_t n = lyra_latent_numel(shape), ngen = lyra_latent_gen_numel(shape);
    const int64_t hw = shape->h * shape->w, tt = shape->t_hist + shape->t_new;
    const size_t fbytes = (size_t)n * sizeof(float);
    float ts[LYRA_DMD_STEPS], sig[LYRA_DMD_STEPS];
    lyra_dmd_schedule(ts, sig);

    lyra_status st = LYRA_OK;
    float *vgen = malloc((size_t)ngen * sizeof(float)), *eps_buf = NULL;
    if (!renoise) eps_buf = malloc(fbytes);
    if (!vgen || (!renoise && !eps_buf)) {
        st = lyra_error(LYRA_ERR_OOM, "DMD: cannot allocate the sampler state (%lld floats)", (long long)(2 * n));
        goto finally;
    }

    for (int k = 0; k < LYRA_DMD_STEPS; k++) {
        if (trace && trace->x_in) memcpy(trace->x_in + (size_t)k * (size_t)n, x, fbytes);
        if (trace && trace->t_in) trace->t_in[k] = ts[k];
        if ((st = denoise(ctx, shape, x, ts[k], vgen)) != LYRA_OK) goto finally;
        if (trace && trace->v) memcpy(trace->v + (size_t)k * (size_t)ngen, vgen, (size_t)ngen * sizeof(float));

        /* x0 of the generated frames, written over x (history stays: v = 0 there gives x0 = x). The
         * product of two float32 is exact in float64; the difference rounds once in float64, then
         * once more to float32, as upstream's double() round trip does. */
        const double sk = (double)sig[k];
        for (int64_t c = 0; c < shape->c; c++) {
            float *xc = x + (c * tt + shape->t_hist) * hw;
            const float *vc = vgen + c * shape->t_new * hw;
            for (int64_t e = 0; e < shape->t_new * hw; e++) xc[e] = (float)((double)xc[e] - sk * (double)vc[e]);
        }
        if (trace && trace->x0) memcpy(trace->x0 + (size_t)k * (size_t)n, x, fbytes);
        if (k == LYRA_DMD_STEPS - 1) break; /* the last step returns x0 */

        /* Re-noise to σ_{k+1} with ε_k laid out [T, C, H, W] (upstream's [B·T, C, H, W]). */
        const float *eps = renoise ? renoise + (size_t)k * (size_t)n : eps_buf;
        if (!renoise) lyra_rng_fill_normal_f32(rng, eps_buf, n);
        if (trace && trace->eps) memcpy(trace->eps + (size_t)k * (size_t)n, eps, fbytes);
        const float s_next = sig[k + 1], a_next = 1.0f - s_next;
        for (int64_t c = 0; c < shape->c; c++)
            for (int64_t t = 0; t < shape->t_new; t++) {
                float *xr = x + (c * tt + shape->t_hist + t) * hw;
                const float *er = eps + ((shape->t_hist + t) * shape->c + c) * hw;
                for (int64_t e = 0; e < hw; e++) xr[e] = a_next * xr[e] + s_next * er[e];
            }
    }
finally:
    free(vgen);
    free(eps_buf);
    return st;
}
