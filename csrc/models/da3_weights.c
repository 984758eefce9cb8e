/* DA3 nested: configuration detection and weight loading (names: docs/REFERENCES.md#weight-names). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3.h"

#define WHAT "Depth Anything 3"
#define NAME_LEN 160

static const int DEFAULT_AV_TAPS[4] = {19, 27, 33, 39}; /* DA3cfg/da3-giant out_layers */
static const int DEFAULT_MET_TAPS[4] = {4, 11, 17, 23}; /* DA3cfg/da3metric-large out_layers */

static const lyra_tensor *lookup(const lyra_text_wsource *src, const char *prefix, const char *rel) {
    char name[NAME_LEN];
    snprintf(name, sizeof name, "%s%s", prefix, rel);
    return src->lookup(src->ctx, name);
}

static lyra_status need(const lyra_text_wsource *src, const char *prefix, const char *rel, int ndim,
                        const lyra_tensor **t) {
    char name[NAME_LEN];
    snprintf(name, sizeof name, "%s%s", prefix, rel);
    return lyra_text_weights_probe(src, name, ndim, WHAT, t);
}

/* Head geometry from the tensors: projects give dim_in and out_channels, layer1_rn the features,
 * output_conv2.2 the output channels. */
static lyra_status detect_head(lyra_da3_head *hd, const lyra_text_wsource *src, const char *prefix, int dual) {
    memset(hd, 0, sizeof *hd);
    hd->dual = hd->pos_embed = dual;
    const lyra_tensor *t;
    char rel[64];
    for (int k = 0; k < 4; k++) {
        snprintf(rel, sizeof rel, "projects.%d.weight", k);
        LYRA_TRY(need(src, prefix, rel, 4, &t));
        hd->oc[k] = t->ne[0];
        if (k == 0) hd->dim_in = t->ne[1];
    }
    LYRA_TRY(need(src, prefix, "scratch.layer1_rn.weight", 4, &t));
    hd->features = t->ne[0];
    if (hd->features < 2 || hd->features % 2)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: '%sscratch.layer1_rn.weight' has an odd feature count",
                          prefix);
    LYRA_TRY(need(src, prefix, "scratch.output_conv2.2.weight", 4, &t));
    hd->out_dim = t->ne[0];
    if (dual && hd->out_dim != 2)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: '%sscratch.output_conv2.2.weight' must have 2 outputs "
                          "(depth, confidence) in the any-view DualDPT", prefix);
    if (!dual && hd->out_dim != 1)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: '%sscratch.output_conv2.2.weight' must have 1 output "
                          "(metric depth)", prefix);
    hd->sky = !dual && lookup(src, prefix, "scratch.sky_output_conv2.0.weight") != NULL;
    if (!dual && !hd->sky)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: the metric head has no sky output "
                          "('%sscratch.sky_output_conv2.0.weight' is missing); Lyra needs it for the sky fill", prefix);
    return LYRA_OK;
}

#define ADD(dst, as_f32, ndim, ...)                                                                                \
    do {                                                                                                          \
        LYRA_TRY(lyra_vit_wlist_add(l, name, dst, as_f32, ndim, (int64_t[]){__VA_ARGS__}));                       \
    } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)

static lyra_status add_conv(lyra_vit_wlist *l, const char *prefix, const char *rel, lyra_tensor *w, lyra_tensor *b,
                            int64_t co, int64_t ci, int64_t k, int transposed) {
    char name[NAME_LEN];
    NAME("%s%s.weight", prefix, rel);
    if (transposed) ADD(w, 0, 4, ci, co, k, k);
    else ADD(w, 0, 4, co, ci, k, k);
    if (b) {
        NAME("%s%s.bias", prefix, rel);
        ADD(b, 1, 1, co);
    }
    return LYRA_OK;
}

lyra_status lyra_da3_head_add_weights(lyra_da3_head *hd, lyra_vit_wlist *l, const char *prefix) {
    char name[NAME_LEN], rel[96];
    int64_t F = hd->features, D = hd->dim_in;
    if (hd->dual) {
        NAME("%snorm.weight", prefix);
        ADD(&hd->norm_w, 1, 1, D);
        NAME("%snorm.bias", prefix);
        ADD(&hd->norm_b, 1, 1, D);
    }
    for (int k = 0; k < 4; k++) {
        snprintf(rel, sizeof rel, "projects.%d", k);
        LYRA_TRY(add_conv(l, prefix, rel, &hd->proj_w[k], &hd->proj_b[k], hd->oc[k], D, 1, 0));
        snprintf(rel, sizeof rel, "scratch.layer%d_rn", k + 1);
        LYRA_TRY(add_conv(l, prefix, rel, &hd->rn_w[k], NULL, F, hd->oc[k], 3, 0));
    }
    LYRA_TRY(add_conv(l, prefix, "resize_layers.0", &hd->rs0_w, &hd->rs0_b, hd->oc[0], hd->oc[0], 4, 1));
    LYRA_TRY(add_conv(l, prefix, "resize_layers.1", &hd->rs1_w, &hd->rs1_b, hd->oc[1], hd->oc[1], 2, 1));
    LYRA_TRY(add_conv(l, prefix, "resize_layers.3", &hd->rs3_w, &hd->rs3_b, hd->oc[3], hd->oc[3], 3, 0));
    for (int r = 0; r < 4; r++) {
        lyra_da3_fusion *f = &hd->fuse[r];
        f->has_rcu1 = r != 3; /* refinenet4 has no residual (lateral) unit */
        for (int u = f->has_rcu1 ? 1 : 2; u <= 2; u++) {
            lyra_da3_rcu *c = u == 1 ? &f->rcu1 : &f->rcu2;
            snprintf(rel, sizeof rel, "scratch.refinenet%d.resConfUnit%d.conv1", r + 1, u);
            LYRA_TRY(add_conv(l, prefix, rel, &c->c1_w, &c->c1_b, F, F, 3, 0));
            snprintf(rel, sizeof rel, "scratch.refinenet%d.resConfUnit%d.conv2", r + 1, u);
            LYRA_TRY(add_conv(l, prefix, rel, &c->c2_w, &c->c2_b, F, F, 3, 0));
        }
        snprintf(rel, sizeof rel, "scratch.refinenet%d.out_conv", r + 1);
        LYRA_TRY(add_conv(l, prefix, rel, &f->out_w, &f->out_b, F, F, 1, 0));
    }
    LYRA_TRY(add_conv(l, prefix, "scratch.output_conv1", &hd->oc1_w, &hd->oc1_b, F / 2, F, 3, 0));
    LYRA_TRY(add_conv(l, prefix, "scratch.output_conv2.0", &hd->oc2a_w, &hd->oc2a_b, 32, F / 2, 3, 0));
    LYRA_TRY(add_conv(l, prefix, "scratch.output_conv2.2", &hd->oc2b_w, &hd->oc2b_b, hd->out_dim, 32, 1, 0));
    if (hd->sky) {
        LYRA_TRY(add_conv(l, prefix, "scratch.sky_output_conv2.0", &hd->sky_a_w, &hd->sky_a_b, 32, F / 2, 3, 0));
        LYRA_TRY(add_conv(l, prefix, "scratch.sky_output_conv2.2", &hd->sky_b_w, &hd->sky_b_b, 1, 32, 1, 0));
    }
    return LYRA_OK;
}

static lyra_status add_linear(lyra_vit_wlist *l, const char *full, lyra_tensor *w, lyra_tensor *b, int64_t out,
                              int64_t in) {
    char name[NAME_LEN];
    NAME("%s.weight", full);
    ADD(w, 0, 2, out, in);
    NAME("%s.bias", full);
    ADD(b, 1, 1, out);
    return LYRA_OK;
}

static lyra_status add_vec(lyra_vit_wlist *l, const char *full, lyra_tensor *w, lyra_tensor *b, int64_t n) {
    char name[NAME_LEN];
    NAME("%s.weight", full);
    ADD(w, 1, 1, n);
    NAME("%s.bias", full);
    ADD(b, 1, 1, n);
    return LYRA_OK;
}

/* Present in the checkpoints, not used by Lyra's calls (upstream DA3net:245-248): the DualDPT aux (ray) branch, the GS
 * head and adapter, DINOv2 mask tokens. Anything else outside the listed tensors is an error. */
static int ignore_unused(const void *ctx, const char *name) {
    const lyra_da3 *m = ctx;
    if (!strncmp(name, "da3.gs_head.", 12) || !strncmp(name, "da3.gs_adapter.", 15)) return 1;
    if (!strncmp(name, "da3.head.scratch.", 17) && strstr(name, "_aux")) return 1;
    return lyra_vit_unused_tensor(&m->anyview, name) || lyra_vit_unused_tensor(&m->metric, name);
}

static lyra_status check_taps(const lyra_vit *v, int *taps, const int *defaults, const char *which) {
    if (!taps[0] && !taps[1] && !taps[2] && !taps[3]) memcpy(taps, defaults, 4 * sizeof *taps);
    for (int k = 0; k < 4; k++)
        if (taps[k] < 0 || taps[k] >= v->cfg.depth || (k && taps[k] <= taps[k - 1]))
            return lyra_error(LYRA_ERR_ARG, WHAT ": %s taps must be 4 increasing block indices below %lld (the "
                              "default [%d, %d, %d, %d] needs %d blocks); pass them explicitly for other depths",
                              which, (long long)v->cfg.depth, defaults[0], defaults[1], defaults[2], defaults[3],
                              defaults[3] + 1);
    return LYRA_OK;
}

lyra_status lyra_da3_load(lyra_da3 *m, const lyra_text_wsource *src, const lyra_da3_options *opt) {
    memset(m, 0, sizeof *m);
    m->opt = *opt;
    const lyra_tensor *t, *cls;
    /* any-view ViT: heads from the q/k-norm width (alt/qk-norm/RoPE all start at the same block, DA3cfg/da3-giant) */
    LYRA_TRY(need(src, "da3.backbone.pretrained.", "cls_token", 3, &cls));
    int64_t heads = opt->anyview_heads;
    if (heads <= 0) {
        int i = 0;
        char rel[64];
        for (;; i++) {
            snprintf(rel, sizeof rel, "blocks.%d.norm1.weight", i);
            if (!lookup(src, "da3.backbone.pretrained.", rel)) break;
            snprintf(rel, sizeof rel, "blocks.%d.attn.q_norm.weight", i);
            if ((t = lookup(src, "da3.backbone.pretrained.", rel))) break;
        }
        if (!t || t->ndim != 1 || t->ne[0] < 1 || cls->ne[2] % t->ne[0])
            return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: cannot infer the any-view head count: no block has a "
                              "1-d 'attn.q_norm.weight' dividing the width");
        heads = cls->ne[2] / t->ne[0];
    }
    lyra_vit_options vo = lyra_vit_default_options(heads);
    vo.norm_eps = 1e-5f; /* plain nn.LayerNorm final norm (DA3vit:141) */
    LYRA_TRY(lyra_vit_detect(&m->anyview, src, "da3.backbone.pretrained.", &vo, WHAT " any-view ViT"));
    lyra_vit_config *ac = &m->anyview.cfg;
    if (ac->qk_norm_start < 1)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: the any-view ViT has no q/k-norm blocks, so the start of "
                          "alternating attention is unknown (expected 'blocks.13.attn.q_norm.weight' onwards)");
    if (ac->cam_tokens != 2)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: 'da3.backbone.pretrained.camera_token' must be (1, 2, %lld)",
                          (long long)ac->dim);
    /* alt_start = qknorm_start = rope_start (upstream DA3cfg/da3-giant:13-15, DA3dino:22-64, DA3vit:454-466,
     * DA3cfg/da3-giant:6-17) */
    ac->opt.rope_start = ac->opt.alt_start = ac->qk_norm_start;
    LYRA_TRY(check_taps(&m->anyview, m->opt.anyview_taps, DEFAULT_AV_TAPS, "any-view"));
    LYRA_TRY(detect_head(&m->head, src, "da3.head.", 1));
    if (m->head.dim_in != 2 * ac->dim)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: 'da3.head.projects.0.weight' takes %lld channels, the "
                          "concatenated taps have %lld", (long long)m->head.dim_in, (long long)(2 * ac->dim));

    LYRA_TRY(need(src, "da3_metric.backbone.pretrained.", "cls_token", 3, &cls));
    heads = opt->metric_heads > 0 ? opt->metric_heads : cls->ne[2] / 64;
    lyra_vit_options mo = lyra_vit_default_options(heads);
    mo.norm_eps = 1e-5f;
    LYRA_TRY(lyra_vit_detect(&m->metric, src, "da3_metric.backbone.pretrained.", &mo, WHAT " metric ViT"));
    LYRA_TRY(check_taps(&m->metric, m->opt.metric_taps, DEFAULT_MET_TAPS, "metric"));
    LYRA_TRY(detect_head(&m->metric_head, src, "da3_metric.head.", 0));
    if (m->metric_head.dim_in != m->metric.cfg.dim)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: 'da3_metric.head.projects.0.weight' takes %lld channels, "
                          "the metric ViT has %lld", (long long)m->metric_head.dim_in, (long long)m->metric.cfg.dim);

    /* camera encoder (poses) and decoder (intrinsics) */
    m->has_cam_enc = lookup(src, "da3.cam_enc.", "trunk.0.norm1.weight") != NULL;
    if (m->has_cam_enc) {
        LYRA_TRY(need(src, "da3.cam_enc.", "trunk.0.norm1.weight", 1, &t));
        heads = opt->cam_enc_heads > 0 ? opt->cam_enc_heads : t->ne[0] / 96;
        lyra_vit_options co = lyra_vit_default_options(heads);
        co.ln_eps = 1e-5f; /* model/utils/block.py: nn.LayerNorm default */
        LYRA_TRY(lyra_vit_detect_trunk(&m->cam_enc.trunk, src, "da3.cam_enc.", "trunk", &co, WHAT " camera encoder"));
        if (m->cam_enc.trunk.cfg.dim != ac->dim)
            return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: the camera encoder width %lld differs from the ViT's %lld",
                              (long long)m->cam_enc.trunk.cfg.dim, (long long)ac->dim);
    }
    m->cam_dec.dim = 2 * ac->dim;

    lyra_vit_wlist *l = &m->wlist;
    LYRA_TRY(lyra_vit_add_weights(&m->anyview, l));
    LYRA_TRY(lyra_da3_head_add_weights(&m->head, l, "da3.head."));
    LYRA_TRY(lyra_vit_add_weights(&m->metric, l));
    LYRA_TRY(lyra_da3_head_add_weights(&m->metric_head, l, "da3_metric.head."));
    int64_t C = ac->dim, D = 2 * C;
    if (m->has_cam_enc) {
        lyra_da3_cam_enc *e = &m->cam_enc;
        LYRA_TRY(lyra_vit_add_weights(&e->trunk, l));
        LYRA_TRY(add_linear(l, "da3.cam_enc.pose_branch.fc1", &e->fc1_w, &e->fc1_b, C / 2, 9));
        LYRA_TRY(add_linear(l, "da3.cam_enc.pose_branch.fc2", &e->fc2_w, &e->fc2_b, C, C / 2));
        LYRA_TRY(add_vec(l, "da3.cam_enc.token_norm", &e->token_norm_w, &e->token_norm_b, C));
        LYRA_TRY(add_vec(l, "da3.cam_enc.trunk_norm", &e->trunk_norm_w, &e->trunk_norm_b, C));
    }
    lyra_da3_cam_dec *d = &m->cam_dec;
    LYRA_TRY(add_linear(l, "da3.cam_dec.backbone.0", &d->b0_w, &d->b0_b, D, D));
    LYRA_TRY(add_linear(l, "da3.cam_dec.backbone.2", &d->b2_w, &d->b2_b, D, D));
    LYRA_TRY(add_linear(l, "da3.cam_dec.fc_t", &d->t_w, &d->t_b, 3, D));
    LYRA_TRY(add_linear(l, "da3.cam_dec.fc_qvec", &d->q_w, &d->q_b, 4, D));
    LYRA_TRY(add_linear(l, "da3.cam_dec.fc_fov.0", &d->fov_w, &d->fov_b, 2, D));
    return lyra_vit_wlist_load(l, src, ignore_unused, m, WHAT, &m->mem);
}

lyra_status lyra_da3_place(lyra_da3 *m, lyra_backend *be, lyra_dtype autocast) {
    LYRA_TRY(lyra_place_precision_check(be, autocast, LYRA_DTYPE_BF16, WHAT));
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    if (m->placed) return LYRA_OK;
    lyra_vit *vits[2] = {&m->anyview, &m->metric};
    for (int i = 0; i < 2; i++) LYRA_TRY(lyra_vit_set_autocast(vits[i], autocast));
    lyra_status s = lyra_vit_wlist_place_as(&m->wlist, be, &m->mem, WHAT " weights", vits, 2);
    if (s != LYRA_OK) {
        for (int i = 0; i < 2; i++) vits[i]->cfg.gemm = LYRA_DTYPE_F32; /* unplaced: the CPU runs f32 */
        return s;
    }
    m->placed = be;
    return LYRA_OK;
}

void lyra_da3_free(lyra_da3 *m) {
    if (!m) return;
    if (m->placed) m->placed->ops->release(m->placed, m->mem);
    else free(m->mem);
    lyra_vit_free(&m->anyview);
    lyra_vit_free(&m->metric);
    lyra_vit_free(&m->cam_enc.trunk);
    lyra_vit_wlist_free(&m->wlist);
    memset(m, 0, sizeof *m);
}
