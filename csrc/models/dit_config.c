/* Configuration of the Lyra-2 DiT read from tensor names and shapes (upstream EXP:21-62, ML:48-50, NETCFG:30,
 * W:109-111). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

const char *dit_strip_net(const char *name) { return strncmp(name, "net.", 4) ? name : name + 4; }

const lyra_dit_named *dit_find(const lyra_dit_named *src, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(dit_strip_net(src[i].name), name)) return &src[i];
    return NULL;
}

/* The tensor `name`, which must be ndim-d; LYRA_ERR_FORMAT naming it otherwise. */
static lyra_status need(const lyra_dit_named *src, int n, const char *name, int ndim, const lyra_tensor **t) {
    const lyra_dit_named *s = dit_find(src, n, name);
    if (!s) return lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor '%s' is missing", name);
    if (s->t.ndim != ndim)
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor '%s' has %d dims, expected %d", name, s->t.ndim, ndim);
    *t = &s->t;
    return LYRA_OK;
}

/* Counts "<prefix><i>." names with consecutive i from 0 (blocks.N., clean_patch_embeddings.N.). A gap is an
 * error naming the first missing index. */
static lyra_status count_indexed(const lyra_dit_named *src, int n, const char *prefix, int *count) {
    size_t pl = strlen(prefix);
    long max = -1;
    for (int i = 0; i < n; i++) {
        const char *s = dit_strip_net(src[i].name);
        if (strncmp(s, prefix, pl)) continue;
        char *end;
        long v = strtol(s + pl, &end, 10);
        if (end == s + pl || *end != '.' || v < 0 || v > 100000)
            return lyra_error(LYRA_ERR_FORMAT, "dit weights: unexpected tensor '%s'", src[i].name);
        if (v > max) max = v;
    }
    for (long k = 0; k <= max; k++) {
        char want[64];
        int found = 0;
        snprintf(want, sizeof want, "%s%ld.", prefix, k);
        for (int i = 0; i < n && !found; i++) found = !strncmp(dit_strip_net(src[i].name), want, strlen(want));
        if (!found) return lyra_error(LYRA_ERR_FORMAT, "dit weights: no tensor '%s*' although index %ld exists", want, max);
    }
    *count = (int)(max + 1);
    return LYRA_OK;
}

lyra_status lyra_dit_config_detect(lyra_dit_config *cfg, const lyra_dit_named *src, int n, const lyra_framepack *fp,
                                   int num_heads) {
    memset(cfg, 0, sizeof *cfg);
    cfg->eps = 1e-6f;
    const lyra_tensor *t = NULL;

    /* Patch (1, 2, 2) is the constructor default the Lyra path relies on (WL:226): in-features = in_dim·4. */
    LYRA_TRY(need(src, n, "patch_embedding.weight", 2, &t));
    cfg->dim = (int)t->ne[0];
    if (t->ne[1] % 4)
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: patch_embedding.weight has %lld in-features, expected "
                          "in_dim·4 for patch (1, 2, 2)", (long long)t->ne[1]);
    cfg->in_dim = (int)(t->ne[1] / 4);

    LYRA_TRY(need(src, n, "head.head.weight", 2, &t));
    if (t->ne[0] % 4) return lyra_error(LYRA_ERR_FORMAT, "dit weights: head.head.weight rows %lld not out_dim·4",
                                        (long long)t->ne[0]);
    cfg->out_dim = (int)(t->ne[0] / 4);
    LYRA_TRY(need(src, n, "text_embedding.0.weight", 2, &t));
    cfg->text_dim = (int)t->ne[1];
    LYRA_TRY(need(src, n, "time_embedding.0.weight", 2, &t));
    cfg->freq_dim = (int)t->ne[1];
    if (cfg->freq_dim % 2)
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: time_embedding.0.weight in-features %d must be even",
                          cfg->freq_dim);
    LYRA_TRY(need(src, n, "img_emb.proj.1.weight", 2, &t));
    cfg->clip_dim = (int)t->ne[1];

    LYRA_TRY(count_indexed(src, n, "blocks.", &cfg->num_layers));
    if (cfg->num_layers < 1) return lyra_error(LYRA_ERR_FORMAT, "dit weights: no 'blocks.0.*' tensors");
    LYRA_TRY(need(src, n, "blocks.0.ffn.0.weight", 2, &t));
    cfg->ffn_dim = (int)t->ne[0];
    LYRA_TRY(need(src, n, "blocks.0.cam_encoder.weight", 2, &t));
    cfg->cam_dim = (int)t->ne[1];
    if (cfg->cam_dim % 4)
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: blocks.0.cam_encoder.weight in-features %d are not "
                          "Plücker channels × 2×2", cfg->cam_dim);
    cfg->cam_channels = cfg->cam_dim / 4;
    if (!dit_find(src, n, "blocks.0.buffer_encoder.0.weight"))
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor 'blocks.0.buffer_encoder.0.weight' is missing (the "
                          "Lyra-2 DiT squeezes the buffer features with a two-layer encoder, M:256-271)");
    LYRA_TRY(need(src, n, "blocks.0.buffer_encoder.0.weight", 2, &t));
    cfg->buffer_squeeze = (int)t->ne[0];
    cfg->buffer_embed_dim = (int)t->ne[1];
    /* buffer_embed_dim = buffer_in_dim · (1·2·2 pixel shuffle) · 2 (sin, cos) · multires (WL:99-115). */
    int per_channel = 4 * 2 * LYRA_DIT_BUFFER_MULTIRES;
    if (cfg->buffer_embed_dim % per_channel)
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: blocks.0.buffer_encoder.0.weight in-features %d are not "
                          "buffer channels × %d (2×2 shuffle, sin/cos, %d octaves)", cfg->buffer_embed_dim,
                          per_channel, LYRA_DIT_BUFFER_MULTIRES);
    cfg->buffer_in_dim = cfg->buffer_embed_dim / per_channel;

    LYRA_TRY(count_indexed(src, n, "clean_patch_embeddings.", &cfg->n_clean));
    if (cfg->n_clean != fp->n_segments)
        return lyra_error(LYRA_ERR_FORMAT, "dit weights: %d clean_patch_embeddings but the framepack layout has %d "
                          "history segments", cfg->n_clean, fp->n_segments);
    for (int k = 0; k < cfg->n_clean; k++) {
        char name[64];
        snprintf(name, sizeof name, "clean_patch_embeddings.%d.weight", k);
        LYRA_TRY(need(src, n, name, 2, &t));
        const lyra_fp_segment *s = &fp->seg[k];
        int64_t pt = s->type == 'k' ? s->kernel : 1, ph = 2 * (int64_t)s->kernel;
        cfg->clean_in[k] = dit_clean_in_features(cfg->in_dim, s);
        if (t->ne[1] != cfg->clean_in[k])
            return lyra_error(LYRA_ERR_FORMAT, "dit weights: %s has %lld in-features; layout segment %d ('%c', K=%d) "
                              "needs in_dim·%lld·%lld·%lld = %lld", name, (long long)t->ne[1], k, s->type, s->kernel,
                              (long long)pt, (long long)ph, (long long)ph, (long long)cfg->clean_in[k]);
    }

    if (num_heads <= 0) {
        if (cfg->dim % 128)
            return lyra_error(LYRA_ERR_ARG, "dit: the head count is not stored in the weights and width %d is not a "
                              "multiple of 128 (the head_dim of every released Wan model); pass num_heads", cfg->dim);
        num_heads = cfg->dim / 128;
    }
    if (cfg->dim % num_heads)
        return lyra_error(LYRA_ERR_ARG, "dit: num_heads %d does not divide the width %d", num_heads, cfg->dim);
    cfg->num_heads = num_heads;
    cfg->head_dim = cfg->dim / num_heads;
    /* RoPE splits head_dim into t/h/w parts of head_dim − 4·(head_dim/6), 2·(head_dim/6), 2·(head_dim/6); the
     * NTK exponent divides by (part − 2), so every part must be even and > 2 (W:109-118). */
    int dh = 2 * (cfg->head_dim / 6), dt = cfg->head_dim - 2 * dh;
    if (cfg->head_dim % 2 || dh <= 2 || dt <= 2 || cfg->head_dim > 512)
        return lyra_error(LYRA_ERR_ARG, "dit: head_dim %d (width %d / %d heads) must be even and in 12..512 for the "
                          "3-axis RoPE", cfg->head_dim, cfg->dim, num_heads);
    return LYRA_OK;
}
