/* Latent normalisation (upstream TOK:810-848): per-channel mean / inverse std of the Wan 2.1 VAE.
 *
 * Lyra builds the VAE wrapper in bf16 (wan2pt1.py:899-901), so the tables it normalises with are bf16 tensors:
 * mean rounded to bf16 and inv_std = bf16(1 / bf16(std)) (wan2pt1.py:846-848). Those are the latents the Lyra
 * DiT was trained on, so LYRA_VAE_CONST_BF16 is the default; the plain fp32 tables (what a dtype=float32
 * wrapper uses) are kept for comparison with fp32 references. The arithmetic itself is fp32 in both cases
 * (the latents are fp32 on the way in and out, lyra2_ar_inference.py:116-148). These host functions serve the
 * Python API; the generate driver runs the same arithmetic on the device (the encoder side as add and mul ops, the
 * decoder side as the latent_update op's LYRA_LATENT_DENORM, whose per-element formula nn/latent_math.h this file
 * uses too). */
#include "models/vae.h"

#include "nn/latent_math.h"

/* wan2pt1.py:810-845 (the Wan 2.1 statistics, as Python floats). */
static const double WAN_MEAN[16] = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653,  -0.1517, 1.5508,
                                    0.4134,  -0.0715, 0.5517,  -0.3632, -0.1922, -0.9497, 0.2503,  -0.2921};
static const double WAN_STD[16] = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                                   3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160};

static float bf16_round(float x) { return lyra_bf16_to_f32(lyra_f32_to_bf16(x)); }

lyra_status lyra_vae_latent_constants(lyra_vae_constants which, int z_dim, float *mean, float *inv_std) {
    if (z_dim != 16)
        return lyra_error(LYRA_ERR_ARG, "vae: latent normalisation tables exist for z_dim 16 only, this model has %d",
                          z_dim);
    if (which != LYRA_VAE_CONST_BF16 && which != LYRA_VAE_CONST_FP32)
        return lyra_error(LYRA_ERR_ARG, "vae: unknown constant set %d", (int)which);
    for (int k = 0; k < 16; k++) {
        float m = (float)WAN_MEAN[k], sd = (float)WAN_STD[k];
        if (which == LYRA_VAE_CONST_BF16) {
            mean[k] = bf16_round(m);
            inv_std[k] = bf16_round(1.0f / bf16_round(sd));
        } else {
            mean[k] = m;
            inv_std[k] = 1.0f / sd;
        }
    }
    return LYRA_OK;
}

static lyra_status latent_apply(lyra_tensor *x, lyra_vae_constants which, int inverse) {
    if (x->ndim != 5 || x->dtype != LYRA_DTYPE_F32 || !lyra_tensor_is_contiguous(x))
        return lyra_error(LYRA_ERR_ARG, "vae: latents must be a contiguous (B, 16, L, h, w) f32 array");
    float mean[16], inv[16];
    LYRA_TRY(lyra_vae_latent_constants(which, (int)x->ne[1], mean, inv));
    int64_t inner = x->ne[2] * x->ne[3] * x->ne[4];
    float *p = x->data;
    for (int64_t b = 0; b < x->ne[0]; b++)
        for (int64_t k = 0; k < 16; k++, p += inner) {
            /* Separate sub/mul and div/add steps, as upstream: no fused or reciprocal shortcuts. */
            if (inverse) {
                const lyra_latent_update d = {.kind = LYRA_LATENT_DENORM};
                for (int64_t i = 0; i < inner; i++) p[i] = lyra_latent_elem(&d, p[i], inv[k], mean[k], 0.0f);
            } else
                for (int64_t i = 0; i < inner; i++) p[i] = (p[i] - mean[k]) * inv[k];
        }
    return LYRA_OK;
}

lyra_status lyra_vae_normalize(lyra_tensor *x, lyra_vae_constants which) { return latent_apply(x, which, 0); }
lyra_status lyra_vae_denormalize(lyra_tensor *x, lyra_vae_constants which) { return latent_apply(x, which, 1); }
