/* MoGe v1: configuration from the weight names and shapes, and loading (upstream MOGE:214-242, DU:46, MCFG:25-35,
 * MOGE:24-142; docs/REFERENCES.md#weight-names). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/moge.h"

#define WHAT "MoGe"
#define NAME_LEN 128

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

static const lyra_tensor *lookupf(const lyra_text_wsource *src, const char *fmt, ...) {
    char name[NAME_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return src->lookup(src->ctx, name);
}

/* The float tensor `name` with ndim dims, or a FORMAT error naming it. */
static lyra_status probe(const lyra_text_wsource *src, int ndim, const lyra_tensor **t, const char *fmt, ...) {
    char name[NAME_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return lyra_text_weights_probe(src, name, ndim, WHAT, t);
}

/* Counts i = first, first+1, ... while the formatted name exists. */
static int64_t count(const lyra_text_wsource *src, const char *fmt, int64_t first) {
    int64_t i = first;
    while (lookupf(src, fmt, (int)i)) i++;
    return i - first;
}

static lyra_status detect_head(lyra_moge_config *c, const lyra_text_wsource *src) {
    const lyra_tensor *t;
    c->n_features = count(src, "head.projects.%d.weight", 0);
    if (c->n_features < 1 || c->n_features > LYRA_MOGE_MAX_FEATURES)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: %lld head.projects.{k} convolutions; expected 1..%d",
                          (long long)c->n_features, LYRA_MOGE_MAX_FEATURES);
    LYRA_TRY(probe(src, 4, &t, "head.projects.0.weight"));
    c->dim_proj = t->ne[0];
    c->n_stages = count(src, "head.upsample_blocks.%d.0.0.weight", 0);
    if (c->n_stages < 1 || c->n_stages > LYRA_MOGE_MAX_STAGES)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: %lld head.upsample_blocks; expected 1..%d",
                          (long long)c->n_stages, LYRA_MOGE_MAX_STAGES);
    c->n_res = count(src, "head.upsample_blocks.0.%d.layers.0.weight", 1);
    if (c->n_res > LYRA_MOGE_MAX_RES)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: %lld residual blocks per upsample stage; at most %d",
                          (long long)c->n_res, LYRA_MOGE_MAX_RES);
    for (int b = 0; b < (int)c->n_stages; b++) {
        LYRA_TRY(probe(src, 4, &t, "head.upsample_blocks.%d.0.0.weight", b));
        c->dim_up[b] = t->ne[1];
        c->hidden[b] = c->dim_up[b];
        if (c->n_res > 0) {
            LYRA_TRY(probe(src, 4, &t, "head.upsample_blocks.%d.1.layers.2.weight", b));
            c->hidden[b] = t->ne[0];
        }
    }
    if (count(src, "head.output_block.%d.0.weight", 0) != 2)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: expected 2 head.output_block.{0,1} (points, mask)");
    LYRA_TRY(probe(src, 4, &t, "head.output_block.0.0.weight"));
    c->last_ch = t->ne[0];
    c->last_res = count(src, "head.output_block.0.%d.layers.0.weight", 1);
    if (c->last_res > LYRA_MOGE_MAX_RES)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: %lld residual blocks in the output blocks; at most %d",
                          (long long)c->last_res, LYRA_MOGE_MAX_RES);
    c->last_hidden = c->last_ch;
    if (c->last_res > 0) {
        LYRA_TRY(probe(src, 4, &t, "head.output_block.0.1.layers.2.weight"));
        c->last_hidden = t->ne[0];
    }
    /* output_block: conv3x3, last_res residual blocks, ReLU, final conv (index last_res + 2). */
    LYRA_TRY(probe(src, 4, &t, "head.output_block.0.%d.weight", (int)c->last_res + 2));
    c->last_k = t->ne[2];
    if (c->last_k < 1 || c->last_k % 2 == 0 || t->ne[3] != c->last_k)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: the final output convolution must have an odd square "
                          "kernel, got %lldx%lld", (long long)t->ne[2], (long long)t->ne[3]);
    /* ResidualConvBlock's second GroupNorm has hidden // 32 groups (res_block_norm 'group_norm', the released
     * config); fewer than 32 hidden channels would give 0 groups, which upstream cannot build either. */
    for (int b = 0; b < (int)c->n_stages; b++)
        if (c->n_res > 0 && (c->hidden[b] < 32 || c->hidden[b] % (c->hidden[b] / 32)))
            return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: upsample stage %d has %lld hidden channels; the "
                              "group_norm residual block needs a multiple of hidden/32 >= 1", b,
                              (long long)c->hidden[b]);
    if (c->last_res > 0 && (c->last_hidden < 32 || c->last_hidden % (c->last_hidden / 32)))
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: output-block residual hidden width %lld is not usable "
                          "with group_norm", (long long)c->last_hidden);
    return LYRA_OK;
}

static lyra_status add(lyra_vit_wlist *l, lyra_tensor *dst, int as_f32, int ndim, const int64_t *ne,
                       const char *fmt, ...) {
    char name[NAME_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return lyra_vit_wlist_add(l, name, dst, as_f32, ndim, ne);
}

#define V1(n) ((int64_t[]){(n)})
#define V4(a, b, c, d) ((int64_t[]){(a), (b), (c), (d)})

/* ResidualConvBlock(c, c, hidden h) under `base` ("head.upsample_blocks.0.1"). */
static lyra_status add_res(lyra_vit_wlist *l, lyra_moge_res *r, const char *base, int64_t c, int64_t h) {
    LYRA_TRY(add(l, &r->gn1_w, 1, 1, V1(c), "%s.layers.0.weight", base));
    LYRA_TRY(add(l, &r->gn1_b, 1, 1, V1(c), "%s.layers.0.bias", base));
    LYRA_TRY(add(l, &r->conv1_w, 0, 4, V4(h, c, 3, 3), "%s.layers.2.weight", base));
    LYRA_TRY(add(l, &r->conv1_b, 1, 1, V1(h), "%s.layers.2.bias", base));
    LYRA_TRY(add(l, &r->gn2_w, 1, 1, V1(h), "%s.layers.3.weight", base));
    LYRA_TRY(add(l, &r->gn2_b, 1, 1, V1(h), "%s.layers.3.bias", base));
    LYRA_TRY(add(l, &r->conv2_w, 0, 4, V4(c, h, 3, 3), "%s.layers.5.weight", base));
    return add(l, &r->conv2_b, 1, 1, V1(c), "%s.layers.5.bias", base);
}

static lyra_status add_head(lyra_moge *m, lyra_vit_wlist *l) {
    const lyra_moge_config *c = &m->cfg;
    char base[NAME_LEN];
    for (int k = 0; k < (int)c->n_features; k++) {
        LYRA_TRY(add(l, &m->proj_w[k], 0, 4, V4(c->dim_proj, c->dim, 1, 1), "head.projects.%d.weight", k));
        LYRA_TRY(add(l, &m->proj_b[k], 1, 1, V1(c->dim_proj), "head.projects.%d.bias", k));
    }
    int64_t in = c->dim_proj;
    for (int b = 0; b < (int)c->n_stages; b++) {
        lyra_moge_stage *s = &m->stages[b];
        int64_t out = c->dim_up[b];
        LYRA_TRY(add(l, &s->up_w, 0, 4, V4(in + 2, out, 2, 2), "head.upsample_blocks.%d.0.0.weight", b));
        LYRA_TRY(add(l, &s->up_b, 1, 1, V1(out), "head.upsample_blocks.%d.0.0.bias", b));
        LYRA_TRY(add(l, &s->conv_w, 0, 4, V4(out, out, 3, 3), "head.upsample_blocks.%d.0.1.weight", b));
        LYRA_TRY(add(l, &s->conv_b, 1, 1, V1(out), "head.upsample_blocks.%d.0.1.bias", b));
        for (int r = 0; r < (int)c->n_res; r++) {
            snprintf(base, sizeof base, "head.upsample_blocks.%d.%d", b, r + 1);
            LYRA_TRY(add_res(l, &s->res[r], base, out, c->hidden[b]));
        }
        in = out;
    }
    const int64_t dims[2] = {3, 1};
    for (int o = 0; o < 2; o++) {
        lyra_moge_out *ob = &m->out[o];
        LYRA_TRY(add(l, &ob->conv0_w, 0, 4, V4(c->last_ch, in + 2, 3, 3), "head.output_block.%d.0.weight", o));
        LYRA_TRY(add(l, &ob->conv0_b, 1, 1, V1(c->last_ch), "head.output_block.%d.0.bias", o));
        for (int r = 0; r < (int)c->last_res; r++) {
            snprintf(base, sizeof base, "head.output_block.%d.%d", o, r + 1);
            LYRA_TRY(add_res(l, &ob->res[r], base, c->last_ch, c->last_hidden));
        }
        int last = (int)c->last_res + 2;
        LYRA_TRY(add(l, &ob->conv_w, 0, 4, V4(dims[o], c->last_ch, c->last_k, c->last_k), "head.output_block.%d.%d.weight",
                     o, last));
        LYRA_TRY(add(l, &ob->conv_b, 1, 1, V1(dims[o]), "head.output_block.%d.%d.bias", o, last));
    }
    return LYRA_OK;
}

static int ignore_unused(const void *ctx, const char *name) { return lyra_vit_unused_tensor(ctx, name); }

lyra_status lyra_moge_load(lyra_moge *m, const lyra_text_wsource *src, const lyra_moge_options *opt) {
    memset(m, 0, sizeof *m);
    if (opt->tokens_min < 1 || opt->tokens_max < opt->tokens_min)
        return lyra_error(LYRA_ERR_ARG, WHAT ": num_tokens_range (%lld, %lld) must satisfy 1 <= min <= max",
                          (long long)opt->tokens_min, (long long)opt->tokens_max);
    m->cfg.opt = *opt;
    const lyra_tensor *t;
    LYRA_TRY(probe(src, 3, &t, "backbone.cls_token"));
    int64_t dim = t->ne[2], heads = opt->heads > 0 ? opt->heads : dim / 64;
    if (heads < 1 || dim % heads)
        return lyra_error(LYRA_ERR_ARG, WHAT ": %lld attention heads do not divide the backbone width %lld",
                          (long long)heads, (long long)dim);
    m->cfg.opt.heads = heads;
    m->cfg.dim = dim;
    /* MoGe's DINOv2 copy: every LayerNorm eps 1e-6 (final norm included), pos-embed offset 0.1, no antialias. */
    lyra_vit_options vo = lyra_vit_default_options(heads);
    LYRA_TRY(lyra_vit_detect(&m->vit, src, "backbone.", &vo, WHAT));
    LYRA_TRY(detect_head(&m->cfg, src));
    if (m->cfg.n_features > m->vit.cfg.depth)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: %lld head projections but only %lld backbone blocks",
                          (long long)m->cfg.n_features, (long long)m->vit.cfg.depth);
    lyra_vit_wlist *l = &m->wl; /* kept until lyra_moge_free: the loaded tensors' names point into it */
    lyra_tensor mean, std;
    memset(&mean, 0, sizeof mean);
    memset(&std, 0, sizeof std);
    LYRA_TRY(lyra_vit_add_weights(&m->vit, l));
    LYRA_TRY(add_head(m, l));
    /* The normalisation buffers are in MoGeModel.state_dict() but not in named_parameters(): optional. */
    if (src->lookup(src->ctx, "image_mean")) LYRA_TRY(add(l, &mean, 1, 4, V4(1, 3, 1, 1), "image_mean"));
    if (src->lookup(src->ctx, "image_std")) LYRA_TRY(add(l, &std, 1, 4, V4(1, 3, 1, 1), "image_std"));
    LYRA_TRY(lyra_vit_wlist_load(l, src, ignore_unused, &m->vit, WHAT, &m->mem));
    for (int ch = 0; ch < 3; ch++) {
        m->mean[ch] = mean.data ? ((const float *)mean.data)[ch] : IMAGENET_MEAN[ch];
        m->std[ch] = std.data ? ((const float *)std.data)[ch] : IMAGENET_STD[ch];
        if (!(m->std[ch] != 0.0f))
            return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: image_std[%d] is %g", ch, (double)m->std[ch]);
    }
    return LYRA_OK;
}

/* 1 when t is one of the head's convolution weights (the projections, transposed convs, 3×3 convs). */
static int head_conv(const lyra_moge *m, const lyra_tensor *t) {
    const lyra_moge_config *c = &m->cfg;
    for (int k = 0; k < (int)c->n_features; k++)
        if (t == &m->proj_w[k]) return 1;
    for (int b = 0; b < (int)c->n_stages; b++) {
        const lyra_moge_stage *s = &m->stages[b];
        if (t == &s->up_w || t == &s->conv_w) return 1;
        for (int r = 0; r < (int)c->n_res; r++)
            if (t == &s->res[r].conv1_w || t == &s->res[r].conv2_w) return 1;
    }
    for (int o = 0; o < 2; o++) {
        const lyra_moge_out *ob = &m->out[o];
        if (t == &ob->conv0_w || t == &ob->conv_w) return 1;
        for (int r = 0; r < (int)c->last_res; r++)
            if (t == &ob->res[r].conv1_w || t == &ob->res[r].conv2_w) return 1;
    }
    return 0;
}

lyra_status lyra_moge_place(lyra_moge *m, lyra_backend *be, lyra_dtype autocast) {
    LYRA_TRY(lyra_place_precision_check(be, autocast, LYRA_DTYPE_F16, WHAT));
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    if (m->placed) return LYRA_OK;
    LYRA_TRY(lyra_vit_set_autocast(&m->vit, autocast));
    int n = m->wl.n;
    lyra_tensor **ts = malloc(sizeof *ts * (size_t)(n ? n : 1));
    lyra_dtype *dt = malloc(sizeof *dt * (size_t)(n ? n : 1));
    lyra_status s = ts && dt ? LYRA_OK : lyra_error(LYRA_ERR_OOM, WHAT ": out of memory");
    int k = 0;
    for (int i = 0; s == LYRA_OK && i < n; i++) {
        lyra_tensor *t = m->wl.specs[i].dst;
        if (!t->data) continue;
        /* the backbone's GEMM weights and the head's convs in the autocast dtype; norms and biases f32 */
        int g = lyra_vit_gemm_weight(&m->vit, t);
        dt[k] = g >= 0 ? (lyra_dtype)g : head_conv(m, t) ? autocast : t->dtype;
        ts[k++] = t;
    }
    if (s == LYRA_OK) s = lyra_backend_place_weights_as(be, &m->mem, ts, dt, k, WHAT " weights");
    free(ts);
    free(dt);
    if (s != LYRA_OK) {
        m->vit.cfg.gemm = LYRA_DTYPE_F32; /* unplaced: the CPU runs f32 */
        return s;
    }
    m->placed = be;
    return LYRA_OK;
}

void lyra_moge_free(lyra_moge *m) {
    if (!m) return;
    lyra_vit_free(&m->vit);
    lyra_vit_wlist_free(&m->wl);
    if (m->placed) m->placed->ops->release(m->placed, m->mem);
    else free(m->mem);
    memset(m, 0, sizeof *m);
}

lyra_status lyra_moge_geometry_of(const lyra_moge_config *c, int64_t H, int64_t W, lyra_moge_geometry *g) {
    if (H < 1 || W < 1) return lyra_error(LYRA_ERR_ARG, WHAT ": image must be at least 1x1, got %lldx%lld",
                                          (long long)H, (long long)W);
    g->H = H, g->W = W;
    /* resolution_level 9: int(min + (9/9)·(max − min)) = max (MOGE infer). */
    g->tokens = (int64_t)((double)c->opt.tokens_min + (9.0 / 9.0) * (double)(c->opt.tokens_max - c->opt.tokens_min));
    double f = pow((double)(g->tokens * 196) / (double)(H * W), 0.5);
    g->h1 = (int64_t)((double)H * f), g->w1 = (int64_t)((double)W * f);
    g->gh = g->h1 / 14, g->gw = g->w1 / 14;
    g->h14 = g->gh * 14, g->w14 = g->gw * 14;
    if (g->gh < 1 || g->gw < 1)
        return lyra_error(LYRA_ERR_ARG, WHAT ": a %lldx%lld image resizes to %lldx%lld for %lld tokens, smaller than "
                          "one 14x14 patch", (long long)H, (long long)W, (long long)g->h1, (long long)g->w1,
                          (long long)g->tokens);
    return LYRA_OK;
}
