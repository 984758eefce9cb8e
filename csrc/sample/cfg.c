/* Classifier-free guidance (see cfg.h). The per-element formula is nn/latent_math.h's LYRA_LATENT_CFG, the one the
 * latent_update op's backends use. */
#include "sample/cfg.h"

#include "nn/latent_math.h"
#include "nn/ops.h"

void lyra_cfg_combine(const float *cond, const float *uncond, float guidance, int64_t n, float *out) {
    const lyra_latent_update p = {.kind = LYRA_LATENT_CFG, .guidance = guidance};
    for (int64_t e = 0; e < n; e++) out[e] = lyra_latent_elem(&p, cond[e], uncond[e], 0.0f, 0.0f);
}

lyra_status lyra_cfg_denoise(void *ctx, const lyra_latent_shape *shape, const float *x, float t, float *v_out) {
    lyra_cfg *cfg = ctx;
    LYRA_ASSERT(cfg && cfg->cond && cfg->uncond && cfg->scratch);
    LYRA_TRY(cfg->cond(cfg->cond_ctx, shape, x, t, v_out));
    LYRA_TRY(cfg->uncond(cfg->uncond_ctx, shape, x, t, cfg->scratch));
    lyra_cfg_combine(v_out, cfg->scratch, cfg->guidance, lyra_latent_gen_numel(shape), v_out);
    return LYRA_OK;
}

lyra_status lyra_cfg_tensor_denoise(void *ctx, const lyra_latent_shape *shape, const lyra_tensor *x, float t,
                                    lyra_tensor *v_out) {
    lyra_cfg_tensor *cfg = ctx;
    LYRA_ASSERT(cfg && cfg->be && cfg->cond && cfg->uncond && cfg->scratch);
    lyra_tensor u = *v_out;
    u.data = cfg->scratch;
    u.name = "unconditional velocity";
    LYRA_TRY(cfg->cond(cfg->cond_ctx, shape, x, t, v_out));
    LYRA_TRY(cfg->uncond(cfg->uncond_ctx, shape, x, t, &u));
    const lyra_latent_update p = {.kind = LYRA_LATENT_CFG, .guidance = cfg->guidance};
    const lyra_tensor *in[2] = {v_out, &u};
    return lyra_op_latent_update(cfg->be, v_out, in, 2, &p);
}
