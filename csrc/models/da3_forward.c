/* DA3 nested forward: any-view backbone with camera-token injection and concatenated local/global taps
 * (upstream DA3vit:314-342, DA3vit:352-357), DualDPT, CameraDec, metric ViT + DPT, then the nested merge (upstream
 * DA3net:499-567, DA3aln). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3.h"
#include "nn/measure/measure.h"
#include "nn/ops.h"

size_t lyra_da3_arena_bytes(const lyra_da3 *m, int64_t S, int64_t h, int64_t w) {
    const lyra_vit_config *ac = &m->anyview.cfg, *mc = &m->metric.cfg;
    int64_t gh = h / ac->patch, gw = w / ac->patch, G = gh * gw, C = ac->dim, N = 1 + ac->registers + G;
    size_t taps = 4 * lyra_arena_size(S * G * 2 * C * 4) + 4 * lyra_arena_size(S * 2 * C * 4) +
                  lyra_arena_size(S * C * 4);
    size_t cam_enc = 0;
    if (m->has_cam_enc)
        cam_enc = lyra_arena_size(S * 9 * 4) + lyra_arena_size(S * C / 2 * 4) + lyra_arena_size(S * C * 4) +
                  lyra_vit_arena_bytes(&m->cam_enc.trunk.cfg, 1, 1, S);
    size_t backbone = lyra_arena_size(S * N * C * 4) + lyra_arena_size(S * G * C * 4) +
                      lyra_vit_arena_bytes(ac, S, gh, gw);
    size_t head = lyra_da3_head_arena_bytes(&m->head, gh, gw, h, w) + lyra_arena_size(S * 9 * 4) +
                  2 * lyra_arena_size(S * 2 * C * 4);
    size_t anyview = taps + lyra_size_max(lyra_size_max(cam_enc, backbone), head);
    size_t mtaps = 4 * lyra_arena_size(S * G * mc->dim * 4);
    size_t metric = mtaps + lyra_size_max(lyra_vit_arena_bytes(mc, S, gh, gw),
                                          lyra_da3_head_arena_bytes(&m->metric_head, gh, gw, h, w));
    size_t maps = lyra_arena_size(4 * S * h * w * 4) + lyra_arena_size(4 * 4); /* the heads' maps, the scalars */
    return maps + lyra_size_max(anyview, metric) + 16 * LYRA_ARENA_ALIGN;
}

int64_t lyra_da3_params(const lyra_da3 *m) {
    int64_t n = lyra_vit_params(&m->anyview.cfg) + lyra_vit_params(&m->metric.cfg);
    int64_t D = m->cam_dec.dim;
    n += 2 * (D * D + D) + 9 * D + 9;
    const lyra_da3_head *hs[2] = {&m->head, &m->metric_head};
    for (int i = 0; i < 2; i++) {
        const lyra_da3_head *hd = hs[i];
        int64_t F = hd->features;
        n += hd->dual ? 2 * hd->dim_in : 0;
        for (int k = 0; k < 4; k++) n += hd->oc[k] * hd->dim_in + hd->oc[k] + F * hd->oc[k] * 9;
        n += hd->oc[0] * hd->oc[0] * 16 + hd->oc[0] + hd->oc[1] * hd->oc[1] * 4 + hd->oc[1] + hd->oc[3] * hd->oc[3] * 9 +
             hd->oc[3];
        n += 14 * (F * F * 9 + F) + 4 * (F * F + F); /* 3 fusion blocks x 2 RCUs + 1 x 1 RCU, 2 convs each */
        n += F / 2 * F * 9 + F / 2 + 32 * (F / 2) * 9 + 32 + hd->out_dim * 32 + hd->out_dim;
        if (hd->sky) n += 32 * (F / 2) * 9 + 32 + 32 + 1;
    }
    if (m->has_cam_enc) {
        const lyra_vit_config *c = &m->cam_enc.trunk.cfg;
        int64_t C = c->dim, F = c->ffn_hidden;
        n += 9 * (C / 2) + C / 2 + (C / 2) * C + C + 4 * C;
        n += c->depth * (4 * C + 3 * C * C + 3 * C + C * C + C + 2 * C * F + F + C + 2 * C);
    }
    return n;
}

double lyra_da3_flops(const lyra_da3 *m, int64_t S, int64_t h, int64_t w, int poses) {
    const lyra_vit_config *ac = &m->anyview.cfg;
    int64_t gh = h / ac->patch, gw = w / ac->patch;
    double f = lyra_vit_flops(ac, S, gh, gw, m->opt.anyview_taps[3] + 1);
    f += lyra_vit_flops(&m->metric.cfg, S, gh, gw, m->opt.metric_taps[3] + 1) - 0.0;
    f += (double)S * (lyra_da3_head_flops(&m->head, gh, gw, h, w) + lyra_da3_head_flops(&m->metric_head, gh, gw, h, w));
    double D = (double)m->cam_dec.dim;
    f += 2.0 * (double)S * (2.0 * D * D + 9.0 * D);
    if (poses && m->has_cam_enc) {
        const lyra_vit_config *c = &m->cam_enc.trunk.cfg;
        double C = (double)c->dim, F = (double)c->ffn_hidden, L = (double)S;
        f += 2.0 * L * (9.0 * C / 2 + C / 2 * C) + c->depth * (2.0 * L * (4.0 * C * C + 2.0 * C * F) + 4.0 * L * L * C);
    }
    return f;
}

static lyra_status to_host(lyra_backend *be, float *dst, const lyra_tensor *src) {
    lyra_tensor h = lyra_tensor_make(dst, LYRA_DTYPE_F32, src->ndim, src->ne);
    return be->ops->download(be, &h, src);
}

/* token 0 of every view <- cam (S, C) (poses) or camera_token[0] for view 0 and camera_token[1] for the others. */
static lyra_status inject(const lyra_vit *v, lyra_backend *be, lyra_tensor *x, const lyra_tensor *cam) {
    int64_t S = x->ne[0];
    lyra_tensor t0;
    LYRA_TRY(lyra_tensor_select(&t0, x, 1, 0)); /* (S, C) */
    if (cam) return lyra_op_copy(be, &t0, cam);
    lyra_tensor ref3, src, ref, d0, dn;
    LYRA_TRY(lyra_tensor_slice(&ref3, &v->camera_token, 1, 0, 1));
    LYRA_TRY(lyra_tensor_slice(&src, &v->camera_token, 1, 1, 2));
    LYRA_TRY(lyra_tensor_reshape(&ref, &ref3, 2, (int64_t[]){1, v->cfg.dim}));
    LYRA_TRY(lyra_tensor_slice(&d0, &t0, 0, 0, 1));
    LYRA_TRY(lyra_op_copy(be, &d0, &ref));
    if (S > 1) {
        lyra_tensor s2, sx;
        LYRA_TRY(lyra_tensor_reshape(&s2, &src, 2, (int64_t[]){1, v->cfg.dim}));
        LYRA_TRY(lyra_tensor_expand(&sx, &s2, 2, (int64_t[]){S - 1, v->cfg.dim}));
        LYRA_TRY(lyra_tensor_slice(&dn, &t0, 0, 1, S));
        LYRA_TRY(lyra_op_copy(be, &dn, &sx));
    }
    return LYRA_OK;
}

/* Any-view backbone (DA3vit _get_intermediate_layers_not_chunked): feats[k] (S, G, 2C) = [local patches |
 * normed global patches], cams[k] (S, 2C) = [local token 0 | global token 0] (both un-normed). */
static lyra_status anyview(const lyra_da3 *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                           const lyra_tensor *cam_tok, lyra_tensor *feats, lyra_tensor *cams, lyra_da3_trace *tr) {
    const lyra_vit *v = &m->anyview;
    const lyra_vit_config *c = &v->cfg;
    int64_t C = c->dim, special = 1 + c->registers;
    size_t mark = lyra_arena_mark(a);
    lyra_tensor x, lx;
    lyra_vit_run run;
    lyra_status s = lyra_vit_embed(v, be, a, pixels, &x, &run);
    if (s == LYRA_OK) s = lyra_arena_tensor(a, &lx, LYRA_DTYPE_F32, 3, x.ne, "DA3 local tokens");
    if (s == LYRA_OK && tr && tr->av_pos_embed) {
        size_t m2 = lyra_arena_mark(a);
        lyra_tensor pe;
        s = lyra_arena_tensor(a, &pe, LYRA_DTYPE_F32, 3, (int64_t[]){1, 1 + run.gh * run.gw, C}, "DA3 pos-embed");
        if (s == LYRA_OK) s = lyra_vit_pos_embed(v, be, a, &pe, run.gh, run.gw);
        if (s == LYRA_OK) s = to_host(be, tr->av_pos_embed, &pe);
        lyra_arena_reset(a, m2);
    }
    int alt = c->opt.alt_start;
    for (int i = 0, k = 0; s == LYRA_OK && k < 4; i++) {
        if (i == alt) {
            /* DA3vit: `x[:, :, 0] = cam_token` writes into the tensor the last local block returned, which
             * `local_x` still aliases, so the local half of a tap right after alt_start sees the camera token. */
            s = inject(v, be, &x, cam_tok);
            if (s == LYRA_OK) s = inject(v, be, &lx, cam_tok);
            if (s != LYRA_OK) break;
        }
        s = lyra_vit_run_block(v, be, a, &x, &run, i);
        if (s == LYRA_OK && !lyra_vit_block_is_global(c, i)) s = lyra_op_copy(be, &lx, &x);
        if (s != LYRA_OK || i != m->opt.anyview_taps[k]) continue;
        lyra_tensor lp, gp, dl, dg, cl, cg, dcl, dcg;
        s = lyra_tensor_slice(&lp, &lx, 1, special, run.N);
        if (s == LYRA_OK) s = lyra_tensor_slice(&gp, &x, 1, special, run.N);
        if (s == LYRA_OK) s = lyra_tensor_slice(&dl, &feats[k], 2, 0, C);
        if (s == LYRA_OK) s = lyra_tensor_slice(&dg, &feats[k], 2, C, 2 * C);
        if (s == LYRA_OK) s = lyra_op_copy(be, &dl, &lp);
        if (s == LYRA_OK) s = lyra_vit_final_norm(v, be, &dg, &gp);
        if (s == LYRA_OK) s = lyra_tensor_select(&cl, &lx, 1, 0);
        if (s == LYRA_OK) s = lyra_tensor_select(&cg, &x, 1, 0);
        if (s == LYRA_OK) s = lyra_tensor_slice(&dcl, &cams[k], 1, 0, C);
        if (s == LYRA_OK) s = lyra_tensor_slice(&dcg, &cams[k], 1, C, 2 * C);
        if (s == LYRA_OK) s = lyra_op_copy(be, &dcl, &cl);
        if (s == LYRA_OK) s = lyra_op_copy(be, &dcg, &cg);
        if (s == LYRA_OK && tr && tr->av_taps[k]) s = to_host(be, tr->av_taps[k], &feats[k]);
        if (s == LYRA_OK && tr && tr->av_cams[k]) s = to_host(be, tr->av_cams[k], &cams[k]);
        k++;
    }
    lyra_arena_reset(a, mark);
    return s;
}

/* The head on one view at a time: feats[k] (S, G, D) sliced to (1, G, D); its maps into view v of map0 / map1
 * (S, h, w) in the arena. */
static lyra_status heads_per_view(const lyra_da3_head *hd, lyra_backend *be, lyra_arena *a, const lyra_tensor *feats,
                                  int64_t gh, int64_t gw, int64_t h, int64_t w, const lyra_tensor *map0,
                                  const lyra_tensor *map1, float *conv1_trace) {
    int64_t S = feats[0].ne[0], F = hd->features;
    for (int64_t v = 0; v < S; v++) {
        lyra_tensor fv[4], o[2], o4[2];
        const lyra_tensor *fp[4];
        for (int k = 0; k < 4; k++) {
            LYRA_TRY(lyra_tensor_slice(&fv[k], &feats[k], 0, v, v + 1));
            fp[k] = &fv[k];
        }
        const lyra_tensor *maps[2] = {map0, map1};
        for (int i = 0; i < 2; i++) {
            LYRA_TRY(lyra_tensor_slice(&o[i], maps[i], 0, v, v + 1));
            LYRA_TRY(lyra_tensor_reshape(&o4[i], &o[i], 4, (int64_t[]){1, 1, h, w}));
        }
        float *c1 = conv1_trace ? conv1_trace + v * (F / 2) * (8 * gh) * (8 * gw) : NULL;
        LYRA_TRY(lyra_da3_head_run(hd, be, a, fp, gh, gw, h, w, &o4[0], &o4[1], c1));
    }
    return LYRA_OK;
}

/* The host form's end: the four maps down, the activations (exp; exp + 1) and the merge on the host
 * (models/da3_merge.c), the traces of the raw head outputs. */
static lyra_status merge_on_host(lyra_backend *be, const lyra_tensor *maps, float *met, lyra_da3_out *out,
                                 lyra_da3_trace *tr) {
    const int64_t S = maps->ne[1], h = maps->ne[2], w = maps->ne[3], n = S * h * w;
    float *dst[4] = {out->depth, out->conf, met, out->sky};
    for (int k = 0; k < 4; k++) {
        lyra_tensor mk;
        LYRA_TRY(lyra_tensor_select(&mk, maps, 0, k));
        LYRA_TRY(to_host(be, dst[k], &mk));
    }
    for (int64_t i = 0; i < n; i++) {
        out->depth[i] = expf(out->depth[i]);
        out->conf[i] = expf(out->conf[i]) + 1.0f;
        met[i] = expf(met[i]);
    }
    if (tr && tr->av_depth) memcpy(tr->av_depth, out->depth, sizeof(float) * (size_t)n);
    if (tr && tr->av_conf) memcpy(tr->av_conf, out->conf, sizeof(float) * (size_t)n);
    if (tr && tr->met_depth) memcpy(tr->met_depth, met, sizeof(float) * (size_t)n);
    return lyra_da3_merge(S, h, w, out->depth, out->conf, met, out->sky, out->extrinsics, out->intrinsics, tr,
                          &out->scale);
}

/* The device form's end: op da3_merge where the maps are; only its four scalars come down. */
static lyra_status merge_on_device(lyra_backend *be, const lyra_tensor *maps, const lyra_tensor *stats,
                                   lyra_da3_out *out, lyra_da3_trace *tr) {
    const int64_t S = maps->ne[1];
    lyra_tensor mk[4];
    for (int k = 0; k < 4; k++) LYRA_TRY(lyra_tensor_select(&mk[k], maps, 0, k));
    float *factor = malloc(sizeof *factor * (size_t)S), st[4] = {0, 0, 0, 0};
    if (!factor) return lyra_error(LYRA_ERR_OOM, "Depth Anything 3: out of memory");
    for (int64_t v = 0; v < S; v++) { /* mean predicted focal / 300 (DA3aln apply_metric_scaling) */
        const float *K = out->intrinsics + v * 9, f = (K[0] + K[4]) / 2.0f;
        factor[v] = f / 300.0f;
    }
    lyra_tensor ts = *stats;
    lyra_status s = lyra_op_da3_merge(be, &ts, &mk[0], &mk[1], &mk[2], &mk[3], factor);
    free(factor);
    *out->depth_dev = mk[0];
    if (s != LYRA_OK || lyra_backend_is_measuring(be)) return s;
    LYRA_TRY(to_host(be, st, stats));
    LYRA_TRY(lyra_da3_merge_check((int64_t)st[3]));
    lyra_da3_scale_extrinsics(out->extrinsics, S, st[1]);
    if (tr) tr->median_conf = st[0], tr->scale = st[1], tr->sky_fill = st[2];
    out->scale = st[1];
    return LYRA_OK;
}

lyra_status lyra_da3_forward(const lyra_da3 *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                             const float *ext, const float *K, lyra_da3_out *out, lyra_da3_trace *tr) {
    const lyra_vit_config *ac = &m->anyview.cfg, *mc = &m->metric.cfg;
    if (pixels->ndim != 4 || pixels->ne[1] != 3 || pixels->ne[0] < 1)
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: pixels must be (S, 3, h, w)");
    int64_t S = pixels->ne[0], h = pixels->ne[2], w = pixels->ne[3], P = ac->patch;
    if (h % P || w % P || h < P || w < P)
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: the processed size %lldx%lld must be a positive multiple "
                          "of the patch size %lld", (long long)h, (long long)w, (long long)P);
    if ((ext == NULL) != (K == NULL))
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: pass extrinsics and intrinsics together, or neither");
    if (!ext && S >= 3)
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: %lld views without poses would need upstream's "
                          "reference-view selection (S >= 3), which Lyra never uses and this port does not implement; "
                          "pass extrinsics and intrinsics, or at most 2 views", (long long)S);
    int64_t gh = h / P, gw = w / P, G = gh * gw, C = ac->dim;
    const int on_device = out->depth_dev != NULL;
    /* the heads' maps (any-view depth and confidence logits, metric depth logits, sky) and the merge's scalars stay
     * in the arena to the end: the device form hands the depth back there */
    size_t mark_in = lyra_arena_mark(a);
    lyra_tensor maps, stats, mv[4];
    LYRA_TRY(lyra_arena_tensor(a, &maps, LYRA_DTYPE_F32, 4, (int64_t[]){4, S, h, w}, "DA3 head maps"));
    LYRA_TRY(lyra_arena_tensor(a, &stats, LYRA_DTYPE_F32, 1, (int64_t[]){4}, "DA3 merge scalars"));
    for (int k = 0; k < 4; k++) LYRA_TRY(lyra_tensor_select(&mv[k], &maps, 0, k));
    size_t mark0 = lyra_arena_mark(a);
    float *met = on_device ? NULL : malloc(sizeof *met * (size_t)(S * h * w));
    float *pose = malloc(sizeof *pose * (size_t)(S * 9));
    if ((!on_device && !met) || !pose) {
        free(met);
        free(pose);
        lyra_arena_reset(a, mark_in);
        return lyra_error(LYRA_ERR_OOM, "Depth Anything 3: out of memory");
    }
    lyra_tensor feats[4], cams[4], camtok;
    lyra_status s = LYRA_OK;
    for (int k = 0; k < 4 && s == LYRA_OK; k++) {
        s = lyra_arena_tensor(a, &feats[k], LYRA_DTYPE_F32, 3, (int64_t[]){S, G, 2 * C}, "DA3 taps");
        if (s == LYRA_OK) s = lyra_arena_tensor(a, &cams[k], LYRA_DTYPE_F32, 2, (int64_t[]){S, 2 * C}, "DA3 cam taps");
    }
    const lyra_tensor *cam_tok = NULL;
    if (s == LYRA_OK && ext) {
        s = lyra_arena_tensor(a, &camtok, LYRA_DTYPE_F32, 2, (int64_t[]){S, C}, "DA3 camera tokens");
        lyra_tensor ct3;
        if (s == LYRA_OK) s = lyra_tensor_reshape(&ct3, &camtok, 3, (int64_t[]){1, S, C});
        if (s == LYRA_OK)
            s = lyra_da3_cam_enc_run(m, be, a, ext, K, S, h, w, &ct3, tr ? tr->cam_enc_pose : NULL);
        if (s == LYRA_OK && tr && tr->cam_enc_tokens) s = to_host(be, tr->cam_enc_tokens, &camtok);
        cam_tok = &camtok;
    }
    if (s == LYRA_OK) s = anyview(m, be, a, pixels, cam_tok, feats, cams, tr);
    if (s == LYRA_OK)
        s = heads_per_view(&m->head, be, a, feats, gh, gw, h, w, &mv[0], &mv[1], tr ? tr->av_output_conv1 : NULL);
    if (s == LYRA_OK) s = lyra_da3_cam_dec_run(&m->cam_dec, be, a, &cams[3], pose);
    if (s == LYRA_OK) {
        lyra_da3_pose_decode(pose, S, h, w, out->extrinsics, out->intrinsics);
        if (tr && tr->pose_enc) memcpy(tr->pose_enc, pose, sizeof *pose * (size_t)(S * 9));
    }
    lyra_arena_reset(a, mark0);

    /* metric branch: plain ViT taps (final-normed), DPT depth + sky */
    lyra_tensor mt[4];
    lyra_tensor *mtp[4];
    for (int k = 0; k < 4 && s == LYRA_OK; k++) {
        s = lyra_arena_tensor(a, &mt[k], LYRA_DTYPE_F32, 3, (int64_t[]){S, G, mc->dim}, "DA3 metric taps");
        mtp[k] = &mt[k];
    }
    if (s == LYRA_OK) s = lyra_vit_taps(&m->metric, be, a, pixels, 4, m->opt.metric_taps, mtp, NULL);
    for (int k = 0; k < 4 && s == LYRA_OK && tr; k++)
        if (tr->met_taps[k]) s = to_host(be, tr->met_taps[k], &mt[k]);
    if (s == LYRA_OK) s = heads_per_view(&m->metric_head, be, a, mt, gh, gw, h, w, &mv[2], &mv[3], NULL);
    lyra_arena_reset(a, mark0);
    if (s == LYRA_OK && on_device) s = merge_on_device(be, &maps, &stats, out, tr);
    /* the host merge is arithmetic on the downloaded maps: a measured forward (da3_measure.c) has none to merge */
    else if (s == LYRA_OK && !lyra_backend_is_measuring(be)) s = merge_on_host(be, &maps, met, out, tr);
    if (!on_device || s != LYRA_OK) lyra_arena_reset(a, mark_in);
    free(met);
    free(pose);
    return s;
}
