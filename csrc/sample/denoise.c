/* Latent-layout helpers shared by the samplers (see denoise.h). */
#include "sample/denoise.h"

#include <string.h>

int64_t lyra_latent_numel(const lyra_latent_shape *s) {
    return s->c * (s->t_hist + s->t_new) * s->h * s->w;
}

int64_t lyra_latent_gen_numel(const lyra_latent_shape *s) { return s->c * s->t_new * s->h * s->w; }

lyra_status lyra_latent_shape_check(const lyra_latent_shape *s, const char *what) {
    /* Each size below 2^20 keeps every product far from int64 overflow before the total check. */
    const int64_t lim = (int64_t)1 << 20;
    if (s->c < 1 || s->c > lim || s->t_hist < 0 || s->t_hist > lim || s->t_new < 1 || s->t_new > lim ||
        s->h < 1 || s->h > lim || s->w < 1 || s->w > lim)
        return lyra_error(LYRA_ERR_ARG,
                          "%s: latent sizes C=%lld, T_hist=%lld, T_new=%lld, H=%lld, W=%lld out of range "
                          "(each >= 1, T_hist >= 0, each < 2^20)",
                          what, (long long)s->c, (long long)s->t_hist, (long long)s->t_new,
                          (long long)s->h, (long long)s->w);
    int64_t hw = s->h * s->w, ct = s->c * (s->t_hist + s->t_new);
    if (hw > ((int64_t)1 << 31) / ct)
        return lyra_error(LYRA_ERR_ARG, "%s: latent state of %lld x %lld elements is too large (limit 2^31)",
                          what, (long long)ct, (long long)hw);
    return LYRA_OK;
}

void lyra_latent_gen_get(const lyra_latent_shape *s, const float *full, float *gen) {
    const int64_t hw = s->h * s->w, t = s->t_hist + s->t_new;
    for (int64_t c = 0; c < s->c; c++)
        memcpy(gen + c * s->t_new * hw, full + (c * t + s->t_hist) * hw, (size_t)(s->t_new * hw) * sizeof(float));
}

void lyra_latent_gen_set(const lyra_latent_shape *s, float *full, const float *gen) {
    const int64_t hw = s->h * s->w, t = s->t_hist + s->t_new;
    for (int64_t c = 0; c < s->c; c++)
        memcpy(full + (c * t + s->t_hist) * hw, gen + c * s->t_new * hw, (size_t)(s->t_new * hw) * sizeof(float));
}

void lyra_latent_hist_set(const lyra_latent_shape *s, float *full, const float *hist) {
    const int64_t hw = s->h * s->w, t = s->t_hist + s->t_new;
    if (s->t_hist == 0) return;
    for (int64_t c = 0; c < s->c; c++)
        memcpy(full + c * t * hw, hist + c * s->t_hist * hw, (size_t)(s->t_hist * hw) * sizeof(float));
}

void lyra_latent_init(const lyra_latent_shape *s, const float *history, lyra_rng *rng, float *x) {
    const int64_t hw = s->h * s->w, t = s->t_hist + s->t_new;
    lyra_latent_hist_set(s, x, history);
    /* C order of (1, C, t_new, H, W) = channel by channel, each a contiguous run of the state. */
    for (int64_t c = 0; c < s->c; c++) lyra_rng_fill_normal_f32(rng, x + (c * t + s->t_hist) * hw, s->t_new * hw);
}

lyra_status lyra_denoise_host_call(void *host, const lyra_latent_shape *shape, const lyra_tensor *x, float t,
                                   lyra_tensor *v_out) {
    const lyra_denoise_host *h = host;
    LYRA_ASSERT(x->device == LYRA_DEVICE_CPU && v_out->device == LYRA_DEVICE_CPU);
    return h->fn(h->ctx, shape, x->data, t, v_out->data);
}
