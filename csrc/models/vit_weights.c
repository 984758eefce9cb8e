/* Generic ViT: configuration detection from weight names/shapes and the shared weight list (vit.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/vit.h"

#define NAME_LEN 160

lyra_status lyra_vit_wlist_add(lyra_vit_wlist *l, const char *name, lyra_tensor *dst, int as_f32, int ndim,
                               const int64_t *ne) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        lyra_text_wspec *s = realloc(l->specs, sizeof *s * (size_t)cap);
        if (!s) return lyra_error(LYRA_ERR_OOM, "weight list: out of memory");
        l->specs = s;
        char **nm = realloc(l->names, sizeof *nm * (size_t)cap);
        if (!nm) return lyra_error(LYRA_ERR_OOM, "weight list: out of memory");
        l->names = nm;
        /* specs[i].name points at names[i] (heap strings), which realloc of the arrays does not move. */
        l->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = malloc(len + 1);
    if (!copy) return lyra_error(LYRA_ERR_OOM, "weight list: out of memory");
    memcpy(copy, name, len + 1);
    lyra_text_wspec *s = &l->specs[l->n];
    memset(s, 0, sizeof *s);
    s->name = copy;
    s->dst = dst;
    s->as_f32 = as_f32;
    s->ndim = ndim;
    memcpy(s->ne, ne, sizeof *ne * (size_t)ndim);
    l->names[l->n++] = copy;
    return LYRA_OK;
}

lyra_status lyra_vit_wlist_load(lyra_vit_wlist *l, const lyra_text_wsource *src, lyra_text_ignore_fn ignore,
                                const void *ignore_ctx, const char *what, void **mem) {
    return lyra_text_weights_load(l->specs, l->n, src, ignore, ignore_ctx, what, mem);
}

lyra_status lyra_vit_wlist_place(lyra_vit_wlist *l, lyra_backend *be, void **mem, const char *what) {
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    lyra_tensor **ts = malloc(sizeof *ts * (size_t)(l->n ? l->n : 1));
    if (!ts) return lyra_error(LYRA_ERR_OOM, "%s: out of memory", what);
    int k = 0;
    for (int i = 0; i < l->n; i++)
        if (l->specs[i].dst->data) ts[k++] = l->specs[i].dst;
    lyra_status s = lyra_backend_place_weights(be, mem, ts, k, what);
    free(ts);
    return s;
}

/* 1 when t is one of m's GEMM weights (patch conv, qkv, proj, FFN matrices). */
static int is_gemm_weight(const lyra_vit *m, const lyra_tensor *t) {
    if (t == &m->patch_w) return 1;
    for (int64_t i = 0; m->blocks && i < m->cfg.depth; i++) {
        const lyra_vit_block *b = &m->blocks[i];
        if (t == &b->qkv_w || t == &b->proj_w || t == &b->fc1_w || t == &b->fc2_w) return 1;
    }
    return 0;
}

int lyra_vit_gemm_weight(const lyra_vit *m, const lyra_tensor *t) {
    if (m->cfg.gemm == LYRA_DTYPE_F32 || !t->data) return -1;
    return is_gemm_weight(m, t) ? (int)m->cfg.gemm : -1;
}

size_t lyra_vit_wlist_placed_bytes(const lyra_vit_wlist *l, lyra_vit *const *vits, int n_vits, lyra_dtype gemm) {
    size_t total = 0;
    for (int i = 0; i < l->n; i++) {
        const lyra_tensor *t = l->specs[i].dst;
        if (!t->data) continue;
        int g = 0;
        for (int v = 0; v < n_vits && !g; v++) g = is_gemm_weight(vits[v], t);
        /* as lyra_backend_place_weights_as lays them out: each tensor from a LYRA_CARVE_ALIGN boundary */
        total += (size_t)lyra_tensor_numel(t) * lyra_dtype_size(g && gemm != LYRA_DTYPE_F32 ? gemm : t->dtype);
        total = (total + LYRA_CARVE_ALIGN - 1) & ~(size_t)(LYRA_CARVE_ALIGN - 1);
    }
    return total;
}

lyra_status lyra_vit_wlist_place_as(lyra_vit_wlist *l, lyra_backend *be, void **mem, const char *what,
                                    lyra_vit *const *vits, int n_vits) {
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    lyra_tensor **ts = malloc(sizeof *ts * (size_t)(l->n ? l->n : 1));
    lyra_dtype *dt = malloc(sizeof *dt * (size_t)(l->n ? l->n : 1));
    if (!ts || !dt) {
        free(ts);
        free(dt);
        return lyra_error(LYRA_ERR_OOM, "%s: out of memory", what);
    }
    int k = 0;
    for (int i = 0; i < l->n; i++) {
        lyra_tensor *t = l->specs[i].dst;
        if (!t->data) continue;
        int g = -1;
        for (int v = 0; v < n_vits && g < 0; v++) g = lyra_vit_gemm_weight(vits[v], t);
        dt[k] = g < 0 ? t->dtype : (lyra_dtype)g;
        ts[k++] = t;
    }
    lyra_status s = lyra_backend_place_weights_as(be, mem, ts, dt, k, what);
    free(ts);
    free(dt);
    return s;
}

lyra_status lyra_vit_set_autocast(lyra_vit *m, lyra_dtype gemm) {
    if (!lyra_dtype_is_float(gemm))
        return lyra_error(LYRA_ERR_ARG, "ViT: autocast dtype %s is not a float dtype", lyra_dtype_name(gemm));
    m->cfg.gemm = gemm;
    return LYRA_OK;
}

void lyra_vit_wlist_free(lyra_vit_wlist *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->specs);
    memset(l, 0, sizeof *l);
}

lyra_vit_options lyra_vit_default_options(int64_t heads) {
    lyra_vit_options o = {.heads = heads, .ln_eps = 1e-6f, .norm_eps = 1e-6f, .qk_norm_eps = 1e-5f,
                          .rope_start = -1, .rope_theta = 100.0, .alt_start = -1, .pos_offset = 0.1,
                          .pos_antialias = 0};
    return o;
}

static const lyra_tensor *find(const lyra_text_wsource *src, const char *prefix, const char *fmt, int i) {
    char rel[NAME_LEN], name[NAME_LEN];
    snprintf(rel, sizeof rel, fmt, i);
    snprintf(name, sizeof name, "%s%s", prefix, rel);
    return src->lookup(src->ctx, name);
}

static lyra_status probe(const lyra_text_wsource *src, const char *prefix, const char *rel, int ndim,
                         const char *what, const lyra_tensor **t) {
    char name[NAME_LEN];
    snprintf(name, sizeof name, "%s%s", prefix, rel);
    return lyra_text_weights_probe(src, name, ndim, what, t);
}

/* {prefix}{blocks_name}.{i}.{rel} */
static const lyra_tensor *findb(const lyra_vit *m, const lyra_text_wsource *src, const char *rel, int i) {
    char name[NAME_LEN];
    snprintf(name, sizeof name, "%s%s.%d.%s", m->prefix, m->blocks_name, i, rel);
    return src->lookup(src->ctx, name);
}

/* Depth, feed-forward kind, LayerScale and q/k-norm start from the block tensors; heads from the options. */
static lyra_status detect_blocks(lyra_vit *m, const lyra_text_wsource *src, const char *what) {
    lyra_vit_config *c = &m->cfg;
    const lyra_vit_options *opt = &c->opt;
    const char *prefix = m->prefix, *bn = m->blocks_name;
    const lyra_tensor *t;
    while (findb(m, src, "norm1.weight", (int)c->depth)) c->depth++;
    if (c->depth < 1)
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: no transformer blocks ('%s%s.0.norm1.weight' is missing)",
                          what, prefix, bn);
    if (opt->heads < 1 || c->dim % opt->heads)
        return lyra_error(LYRA_ERR_ARG, "%s: %lld heads do not divide the width %lld", what, (long long)opt->heads,
                          (long long)c->dim);
    c->heads = opt->heads;
    c->head_dim = c->dim / c->heads;
    if (opt->rope_start >= 0 && c->head_dim % 4)
        return lyra_error(LYRA_ERR_ARG, "%s: 2D RoPE needs a head width divisible by 4 (got %lld)", what,
                          (long long)c->head_dim);
    if ((t = findb(m, src, "mlp.w12.weight", 0))) {
        c->ffn = LYRA_VIT_FFN_SWIGLU;
        c->ffn_hidden = t->ndim == 2 ? t->ne[0] / 2 : 0;
    } else if ((t = findb(m, src, "mlp.fc1.weight", 0))) {
        c->ffn = LYRA_VIT_FFN_MLP;
        c->ffn_hidden = t->ndim == 2 ? t->ne[0] : 0;
    } else {
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: neither '%s%s.0.mlp.fc1.weight' (MLP) nor "
                          "'%s%s.0.mlp.w12.weight' (SwiGLU) exists", what, prefix, bn, prefix, bn);
    }
    if (c->ffn_hidden < 1)
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: bad feed-forward weight shape in block 0", what);
    c->layer_scale = findb(m, src, "ls1.gamma", 0) != NULL;
    c->qk_norm_start = -1;
    for (int i = 0; i < c->depth; i++) {
        int has = findb(m, src, "attn.q_norm.weight", i) != NULL;
        if (has && c->qk_norm_start < 0) c->qk_norm_start = i;
        if (!has && c->qk_norm_start >= 0)
            return lyra_error(LYRA_ERR_FORMAT, "%s weights: '%s%s.%d.attn.q_norm.weight' is missing (q/k norm "
                              "starts at block %d and must continue to the last block)", what, prefix, bn, i,
                              c->qk_norm_start);
    }
    m->blocks = calloc((size_t)c->depth, sizeof *m->blocks);
    if (!m->blocks) return lyra_error(LYRA_ERR_OOM, "%s: out of memory", what);
    return LYRA_OK;
}

lyra_status lyra_vit_detect(lyra_vit *m, const lyra_text_wsource *src, const char *prefix,
                            const lyra_vit_options *opt, const char *what) {
    memset(m, 0, sizeof *m);
    if (strlen(prefix) >= sizeof m->prefix)
        return lyra_error(LYRA_ERR_ARG, "%s: weight prefix '%s' is too long", what, prefix);
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);
    snprintf(m->blocks_name, sizeof m->blocks_name, "blocks");
    lyra_vit_config *c = &m->cfg;
    c->opt = *opt;
    const lyra_tensor *t;
    LYRA_TRY(probe(src, prefix, "cls_token", 3, what, &t));
    c->dim = t->ne[2];
    LYRA_TRY(probe(src, prefix, "patch_embed.proj.weight", 4, what, &t));
    c->patch = t->ne[2];
    if (t->ne[0] != c->dim || t->ne[1] != 3 || t->ne[3] != c->patch || c->patch < 1)
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%spatch_embed.proj.weight' must be (%lld, 3, P, P)",
                          what, prefix, (long long)c->dim);
    LYRA_TRY(probe(src, prefix, "pos_embed", 3, what, &t));
    int64_t rows = t->ne[1] - 1;
    while ((c->pos_grid + 1) * (c->pos_grid + 1) <= rows) c->pos_grid++;
    if (rows < 1 || c->pos_grid * c->pos_grid != rows)
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%spos_embed' has %lld rows; expected 1 + M·M", what,
                          prefix, (long long)t->ne[1]);
    if ((t = find(src, prefix, "register_tokens", 0))) c->registers = t->ndim == 3 ? t->ne[1] : -1;
    if ((t = find(src, prefix, "camera_token", 0))) c->cam_tokens = t->ndim == 3 ? t->ne[1] : -1;
    if (c->registers < 0 || c->cam_tokens < 0)
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: register_tokens / camera_token must be (1, K, %lld)", what,
                          (long long)c->dim);
    return detect_blocks(m, src, what);
}

lyra_status lyra_vit_detect_trunk(lyra_vit *m, const lyra_text_wsource *src, const char *prefix,
                                  const char *blocks_name, const lyra_vit_options *opt, const char *what) {
    memset(m, 0, sizeof *m);
    if (strlen(prefix) >= sizeof m->prefix || strlen(blocks_name) >= sizeof m->blocks_name)
        return lyra_error(LYRA_ERR_ARG, "%s: weight prefix '%s%s' is too long", what, prefix, blocks_name);
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);
    snprintf(m->blocks_name, sizeof m->blocks_name, "%s", blocks_name);
    m->trunk_only = 1;
    m->cfg.opt = *opt;
    const lyra_tensor *t = findb(m, src, "norm1.weight", 0);
    if (!t || t->ndim != 1)
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s%s.0.norm1.weight' is missing or not 1-d", what,
                          prefix, blocks_name);
    m->cfg.dim = t->ne[0];
    return detect_blocks(m, src, what);
}

lyra_status lyra_vit_add_weights(lyra_vit *m, lyra_vit_wlist *l) {
    const lyra_vit_config *c = &m->cfg;
    int64_t C = c->dim, P = c->patch, F = c->ffn_hidden, Dh = c->head_dim;
    char name[NAME_LEN];
#define ADD(dst, as_f32, ndim, rel, ...)                                                                          \
    do {                                                                                                          \
        snprintf(name, sizeof name, "%s%s", m->prefix, rel);                                                      \
        LYRA_TRY(lyra_vit_wlist_add(l, name, dst, as_f32, ndim, (int64_t[]){__VA_ARGS__}));                       \
    } while (0)
    if (!m->trunk_only) {
        ADD(&m->patch_w, 0, 4, "patch_embed.proj.weight", C, 3, P, P);
        ADD(&m->patch_b, 1, 1, "patch_embed.proj.bias", C);
        ADD(&m->cls, 1, 3, "cls_token", 1, 1, C);
        ADD(&m->pos, 1, 3, "pos_embed", 1, 1 + c->pos_grid * c->pos_grid, C);
        if (c->registers) ADD(&m->registers, 1, 3, "register_tokens", 1, c->registers, C);
        if (c->cam_tokens) ADD(&m->camera_token, 1, 3, "camera_token", 1, c->cam_tokens, C);
        ADD(&m->norm_w, 1, 1, "norm.weight", C);
        ADD(&m->norm_b, 1, 1, "norm.bias", C);
    }
    char rel[48];
#define BLK(dst, as_f32, ndim, suffix, ...)                                                                       \
    do {                                                                                                          \
        snprintf(rel, sizeof rel, "%s.%d.%s", m->blocks_name, i, suffix);                                                     \
        ADD(dst, as_f32, ndim, rel, __VA_ARGS__);                                                                 \
    } while (0)
    for (int i = 0; i < (int)c->depth; i++) {
        lyra_vit_block *b = &m->blocks[i];
        BLK(&b->norm1_w, 1, 1, "norm1.weight", C);
        BLK(&b->norm1_b, 1, 1, "norm1.bias", C);
        BLK(&b->qkv_w, 0, 2, "attn.qkv.weight", 3 * C, C);
        BLK(&b->qkv_b, 1, 1, "attn.qkv.bias", 3 * C);
        BLK(&b->proj_w, 0, 2, "attn.proj.weight", C, C);
        BLK(&b->proj_b, 1, 1, "attn.proj.bias", C);
        if (c->qk_norm_start >= 0 && i >= c->qk_norm_start) {
            BLK(&b->q_norm_w, 1, 1, "attn.q_norm.weight", Dh);
            BLK(&b->q_norm_b, 1, 1, "attn.q_norm.bias", Dh);
            BLK(&b->k_norm_w, 1, 1, "attn.k_norm.weight", Dh);
            BLK(&b->k_norm_b, 1, 1, "attn.k_norm.bias", Dh);
        }
        if (c->layer_scale) {
            BLK(&b->ls1, 1, 1, "ls1.gamma", C);
            BLK(&b->ls2, 1, 1, "ls2.gamma", C);
        }
        BLK(&b->norm2_w, 1, 1, "norm2.weight", C);
        BLK(&b->norm2_b, 1, 1, "norm2.bias", C);
        if (c->ffn == LYRA_VIT_FFN_SWIGLU) {
            BLK(&b->fc1_w, 0, 2, "mlp.w12.weight", 2 * F, C);
            BLK(&b->fc1_b, 1, 1, "mlp.w12.bias", 2 * F);
            BLK(&b->fc2_w, 0, 2, "mlp.w3.weight", C, F);
            BLK(&b->fc2_b, 1, 1, "mlp.w3.bias", C);
        } else {
            BLK(&b->fc1_w, 0, 2, "mlp.fc1.weight", F, C);
            BLK(&b->fc1_b, 1, 1, "mlp.fc1.bias", F);
            BLK(&b->fc2_w, 0, 2, "mlp.fc2.weight", C, F);
            BLK(&b->fc2_b, 1, 1, "mlp.fc2.bias", C);
        }
    }
#undef BLK
#undef ADD
    return LYRA_OK;
}

int lyra_vit_unused_tensor(const lyra_vit *m, const char *name) {
    size_t n = strlen(m->prefix);
    return strncmp(name, m->prefix, n) == 0 && strcmp(name + n, "mask_token") == 0;
}

void lyra_vit_free(lyra_vit *m) {
    if (!m) return;
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

int lyra_vit_block_is_global(const lyra_vit_config *c, int i) {
    return c->opt.alt_start >= 0 && i >= c->opt.alt_start && (i % 2) == 1;
}

int64_t lyra_vit_params(const lyra_vit_config *c) {
    int64_t C = c->dim, F = c->ffn_hidden, P = c->patch;
    int64_t ffn = c->ffn == LYRA_VIT_FFN_SWIGLU ? (2 * F * C + 2 * F + C * F + C) : (F * C + F + C * F + C);
    int64_t block = 4 * C + 3 * C * C + 3 * C + C * C + C + ffn + (c->layer_scale ? 2 * C : 0);
    int64_t qk = c->qk_norm_start >= 0 ? (c->depth - c->qk_norm_start) * 4 * c->head_dim : 0;
    return C * 3 * P * P + C + C + (c->registers + c->cam_tokens) * C + (1 + c->pos_grid * c->pos_grid) * C +
           2 * C + c->depth * block + qk;
}

int64_t lyra_vit_gemm_params(const lyra_vit_config *c) {
    int64_t C = c->dim, F = c->ffn_hidden, P = c->patch;
    int64_t ffn = c->ffn == LYRA_VIT_FFN_SWIGLU ? 3 * F * C : 2 * F * C;
    return C * 3 * P * P + c->depth * (4 * C * C + ffn);
}

size_t lyra_vit_weight_bytes(const lyra_vit_config *c) {
    int64_t g = lyra_vit_gemm_params(c);
    return (size_t)g * lyra_dtype_size(c->gemm) + (size_t)(lyra_vit_params(c) - g) * 4;
}
