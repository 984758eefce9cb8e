/* CLIP vision tower: configuration detection and weight loading (names: the visual.* modules of upstream CLIP:309-400).
 * */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/clip.h"

#define WHAT "CLIP vision tower"
#define NAME_LEN LYRA_TEXT_NAME_LEN
#define HEAD_WIDTH 80 /* open-clip ViT-H/14: 1280 wide, 16 heads (Wan clip.py vision_heads=16) */

static lyra_status detect_config(lyra_clip_config *c, const lyra_text_wsource *src, int64_t heads) {
    memset(c, 0, sizeof *c);
    const lyra_tensor *t;
    LYRA_TRY(lyra_text_weights_probe(src, "visual.cls_embedding", 3, WHAT, &t));
    c->width = t->ne[2];
    LYRA_TRY(lyra_text_weights_probe(src, "visual.patch_embedding.weight", 4, WHAT, &t));
    c->patch = t->ne[2];
    if (c->patch < 1 || t->ne[3] != c->patch || t->ne[1] != 3)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: tensor 'visual.patch_embedding.weight' must be "
                          "(width, 3, P, P)");
    LYRA_TRY(lyra_text_weights_probe(src, "visual.pos_embedding", 3, WHAT, &t));
    c->tokens = t->ne[1];
    while ((c->grid + 1) * (c->grid + 1) <= c->tokens - 1) c->grid++;
    if (c->tokens < 2 || c->grid * c->grid != c->tokens - 1)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: tensor 'visual.pos_embedding' has %lld tokens; expected "
                          "1 + G·G (class token + a square patch grid)", (long long)c->tokens);
    c->image_size = c->grid * c->patch;
    char name[NAME_LEN];
    for (;;) {
        snprintf(name, sizeof name, "visual.transformer.%lld.norm1.weight", (long long)c->layers);
        if (!src->lookup(src->ctx, name)) break;
        c->layers++;
    }
    /* use_31_block runs transformer[:-1] (upstream CLIP:453-478). */
    if (c->layers < 2)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: %lld transformer blocks (visual.transformer.{i}); Lyra "
                          "uses all but the last, so at least 2 are needed", (long long)c->layers);
    c->used_layers = c->layers - 1;
    LYRA_TRY(lyra_text_weights_probe(src, "visual.transformer.0.mlp.0.weight", 2, WHAT, &t));
    c->mlp = t->ne[0];
    if (heads <= 0) {
        if (c->width % HEAD_WIDTH)
            return lyra_error(LYRA_ERR_ARG, WHAT ": width %lld is not a multiple of ViT-H's head width %d; pass the "
                              "number of heads explicitly", (long long)c->width, HEAD_WIDTH);
        heads = c->width / HEAD_WIDTH;
    }
    if (c->width % heads)
        return lyra_error(LYRA_ERR_ARG, WHAT ": %lld heads do not divide the width %lld", (long long)heads,
                          (long long)c->width);
    c->heads = heads;
    return LYRA_OK;
}

/* Present in the checkpoint, unused by Lyra: the text tower (`textual.*`), log_scale, the last block, post_norm
 * and head (upstream CLIP:309-400). */
static int ignore_unused(const void *ctx, const char *name) {
    const lyra_clip_config *c = ctx;
    if (strncmp(name, "visual.", 7) != 0) return 1;
    if (!strcmp(name, "visual.post_norm.weight") || !strcmp(name, "visual.post_norm.bias") ||
        !strcmp(name, "visual.head"))
        return 1;
    char last[NAME_LEN];
    int n = snprintf(last, sizeof last, "visual.transformer.%lld.", (long long)(c->layers - 1));
    return strncmp(name, last, (size_t)n) == 0;
}

lyra_status lyra_clip_load(lyra_clip *m, const lyra_text_wsource *src, int64_t heads) {
    memset(m, 0, sizeof *m);
    LYRA_TRY(detect_config(&m->cfg, src, heads));
    const lyra_clip_config *c = &m->cfg;
    m->blocks = calloc((size_t)c->used_layers, sizeof *m->blocks);
    if (!m->blocks) return lyra_error(LYRA_ERR_OOM, WHAT ": out of memory");
    lyra_text_wlist l;
    LYRA_TRY(lyra_text_wlist_init(&l, 5 + 12 * (int)c->used_layers, WHAT));
    m->names = l.names;
    int64_t W = c->width, M = c->mlp, P = c->patch;
    lyra_text_wlist_add(&l, "visual.patch_embedding.weight", &m->patch_w, 0, 4, (int64_t[]){W, 3, P, P});
    lyra_text_wlist_add(&l, "visual.cls_embedding", &m->cls, 1, 3, (int64_t[]){1, 1, W});
    lyra_text_wlist_add(&l, "visual.pos_embedding", &m->pos, 1, 3, (int64_t[]){1, c->tokens, W});
    lyra_text_wlist_add(&l, "visual.pre_norm.weight", &m->pre_w, 1, 1, (int64_t[]){W});
    lyra_text_wlist_add(&l, "visual.pre_norm.bias", &m->pre_b, 1, 1, (int64_t[]){W});
    char name[NAME_LEN];
#define BLOCK(field, suffix, as_f32, ndim, ...)                                                                   \
    do {                                                                                                          \
        snprintf(name, sizeof name, "visual.transformer.%d.%s", i, suffix);                                       \
        lyra_text_wlist_add(&l, name, &b->field, as_f32, ndim, (int64_t[]){__VA_ARGS__});                         \
    } while (0)
    for (int i = 0; i < (int)c->used_layers; i++) {
        lyra_clip_block *b = &m->blocks[i];
        BLOCK(norm1_w, "norm1.weight", 1, 1, W);
        BLOCK(norm1_b, "norm1.bias", 1, 1, W);
        BLOCK(qkv_w, "attn.to_qkv.weight", 0, 2, 3 * W, W);
        BLOCK(qkv_b, "attn.to_qkv.bias", 1, 1, 3 * W);
        BLOCK(proj_w, "attn.proj.weight", 0, 2, W, W);
        BLOCK(proj_b, "attn.proj.bias", 1, 1, W);
        BLOCK(norm2_w, "norm2.weight", 1, 1, W);
        BLOCK(norm2_b, "norm2.bias", 1, 1, W);
        BLOCK(fc1_w, "mlp.0.weight", 0, 2, M, W);
        BLOCK(fc1_b, "mlp.0.bias", 1, 1, M);
        BLOCK(fc2_w, "mlp.2.weight", 0, 2, W, M);
        BLOCK(fc2_b, "mlp.2.bias", 1, 1, W);
    }
#undef BLOCK
    lyra_status s = lyra_text_wlist_load(&l, src, ignore_unused, c, WHAT, &m->mem);
    if (s == LYRA_OK) m->random = l.random;
    return s;
}

lyra_status lyra_clip_place(lyra_clip *m, lyra_backend *be, lyra_dtype act) {
    LYRA_TRY(lyra_place_precision_check(be, act, LYRA_DTYPE_F16, WHAT));
    if (be->device == LYRA_DEVICE_CPU && !m->random.pending) return LYRA_OK;
    if (m->placed) return LYRA_OK;
    int64_t n = 5 + 12 * m->cfg.used_layers;
    lyra_tensor **ts = malloc(sizeof *ts * (size_t)n);
    lyra_dtype *dt = malloc(sizeof *dt * (size_t)n);
    if (!ts || !dt) {
        free(ts);
        free(dt);
        return lyra_error(LYRA_ERR_OOM, WHAT ": out of memory");
    }
    int k = 0;
    lyra_tensor *top[5] = {&m->patch_w, &m->cls, &m->pos, &m->pre_w, &m->pre_b};
    for (int j = 0; j < 5; j++) ts[k++] = top[j];
    for (int64_t i = 0; i < m->cfg.used_layers; i++) {
        lyra_clip_block *b = &m->blocks[i];
        lyra_tensor *bt[12] = {&b->norm1_w, &b->norm1_b, &b->qkv_w, &b->qkv_b, &b->proj_w, &b->proj_b,
                               &b->norm2_w, &b->norm2_b, &b->fc1_w, &b->fc1_b, &b->fc2_w, &b->fc2_b};
        for (int j = 0; j < 12; j++) ts[k++] = bt[j];
    }
    /* f16: every parameter, vectors included (upstream's model is fp16 throughout, upstream CLIP:429, CLIP:496) */
    for (int j = 0; j < k; j++) dt[j] = act == LYRA_DTYPE_F32 ? ts[j]->dtype : act;
    /* random weights (pending): filled where they go, nothing uploaded; on the CPU the host block itself */
    lyra_status s = m->random.pending ? lyra_backend_place_weights_random(be, &m->mem, ts, dt, k, WHAT " weights",
                                                                          m->random.seed, m->random.bf16_values)
                                      : lyra_backend_place_weights_as(be, &m->mem, ts, dt, k, WHAT " weights");
    free(ts);
    free(dt);
    if (s == LYRA_OK) m->random.pending = 0;
    if (s == LYRA_OK && be->device != LYRA_DEVICE_CPU) {
        m->placed = be;
        m->act = act;
    }
    return s;
}

void lyra_clip_free(lyra_clip *m) {
    if (!m) return;
    if (m->placed) m->placed->ops->release(m->placed, m->mem);
    else free(m->mem);
    free(m->blocks);
    free(m->names);
    memset(m, 0, sizeof *m);
}
