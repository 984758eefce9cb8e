/* Classifier-free guidance in velocity space (upstream M:641-647, WL:1006-1018, M:986-994): v = u + g·(c − u), float32.
 * Upstream's Lyra path always runs both passes, conditional first, with no shortcut for g = 1 or
 * g = 0; the two conditionings differ only in the T5 embedding, which the caller's denoisers carry. */
#ifndef LYRA_SAMPLE_CFG_H
#define LYRA_SAMPLE_CFG_H

#include <stdint.h>

#include "lyra2.h"
#include "sample/denoise.h"

/* out[e] = fl32(u + fl32(g·fl32(c − u))). cond, uncond, out: [n]; out may alias cond or uncond.
 * `guidance` is float32, as torch casts the Python scalar to the tensor's dtype. */
void lyra_cfg_combine(const float *cond, const float *uncond, float guidance, int64_t n, float *out);

/* A guided denoiser: pass &lyra_cfg as ctx and lyra_cfg_denoise as the lyra_denoise_fn. */
typedef struct lyra_cfg {
    lyra_denoise_fn cond;
    void *cond_ctx;
    lyra_denoise_fn uncond;
    void *uncond_ctx;
    float guidance;
    float *scratch; /* [C, t_new, H, W], owned by the caller: the unconditional velocity */
} lyra_cfg;

/* lyra_denoise_fn: cond into v_out, uncond into scratch, then v_out = u + g·(c − u). */
lyra_status lyra_cfg_denoise(void *cfg, const lyra_latent_shape *shape, const float *x, float t, float *v_out);

/* The guided denoiser over backend tensors (the AR driver's, state and velocities in the DiT's memory): cond into
 * v_out, uncond into scratch, then v_out = u + g·(c − u) as one latent_update op (LYRA_LATENT_CFG, the formula
 * lyra_cfg_combine uses). The same three steps as lyra_cfg_denoise, on tensors rather than host arrays (that one
 * serves the host API's Python callables; both end in nn/latent_math.h's formula). */
typedef struct lyra_cfg_tensor {
    struct lyra_backend *be; /* where the tensors live */
    lyra_denoise_tensor_fn cond;
    void *cond_ctx;
    lyra_denoise_tensor_fn uncond;
    void *uncond_ctx;
    float guidance;
    float *scratch; /* (C, t_new, H, W) f32 in be's memory, owned by the caller: the unconditional velocity */
} lyra_cfg_tensor;

lyra_status lyra_cfg_tensor_denoise(void *cfg, const lyra_latent_shape *shape, const lyra_tensor *x, float t,
                                    lyra_tensor *v_out);

#endif
