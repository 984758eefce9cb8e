/* Classifier-free guidance (see cfg.h). */
#include "sample/cfg.h"

void lyra_cfg_combine(const float *cond, const float *uncond, float guidance, int64_t n, float *out) {
    for (int64_t e = 0; e < n; e++) {
        float u = uncond[e];
        out[e] = u + guidance * (cond[e] - u);
    }
}

lyra_status lyra_cfg_denoise(void *ctx, const lyra_latent_shape *shape, const float *x, float t, float *v_out) {
    lyra_cfg *cfg = ctx;
    LYRA_ASSERT(cfg && cfg->cond && cfg->uncond && cfg->scratch);
    LYRA_TRY(cfg->cond(cfg->cond_ctx, shape, x, t, v_out));
    LYRA_TRY(cfg->uncond(cfg->uncond_ctx, shape, x, t, cfg->scratch));
    lyra_cfg_combine(v_out, cfg->scratch, cfg->guidance, lyra_latent_gen_numel(shape), v_out);
    return LYRA_OK;
}
