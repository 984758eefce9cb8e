/* DA3 GSDPT head (Depth-Anything-3 @ 1ed6cb8, src/depth_anything_3/model/gsdpt.py:76 _forward_impl) on the runtime
 * ops: the DPT pyramid of da3_head.c, then at the GS resolution the image features (gsdpt.py:108-118) and the
 * final convs. One view at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3_gs.h"
#include "nn/ops.h"

#define WHAT "Depth Anything 3 GS head"
#define PREFIX "da3.gs_head."

static size_t al(int64_t bytes) { return ((size_t)bytes + LYRA_ARENA_ALIGN - 1) & ~(size_t)(LYRA_ARENA_ALIGN - 1); }

/* ---------------------------------------------------------------- weights */

static const lyra_tensor *find(const lyra_text_wsource *src, const char *rel) {
    char name[160];
    snprintf(name, sizeof name, PREFIX "%s", rel);
    return src->lookup(src->ctx, name);
}

static lyra_status need4(const lyra_text_wsource *src, const char *rel, const lyra_tensor **t) {
    char name[160];
    snprintf(name, sizeof name, PREFIX "%s", rel);
    return lyra_text_weights_probe(src, name, 4, WHAT, t);
}

static int only_gs_head(const void *ctx, const char *name) {
    (void)ctx;
    return strncmp(name, PREFIX, strlen(PREFIX)) != 0;
}

lyra_status lyra_da3_gs_load(lyra_da3_gs *g, const lyra_text_wsource *src) {
    memset(g, 0, sizeof *g);
    lyra_da3_head *hd = &g->head;
    const lyra_tensor *t;
    char rel[64];
    if (!find(src, "projects.0.weight"))
        return lyra_error(LYRA_ERR_FORMAT, WHAT ": the weights have no '" PREFIX "*' tensors. The released DA3 "
                          "nested checkpoint and Lyra-2's recon checkpoint carry them; convert one with "
                          "`lyra2 convert` (the DA3 GS keys are kept)");
    for (int k = 0; k < 4; k++) {
        snprintf(rel, sizeof rel, "projects.%d.weight", k);
        LYRA_TRY(need4(src, rel, &t));
        hd->oc[k] = t->ne[0];
        if (k == 0) hd->dim_in = t->ne[1];
    }
    LYRA_TRY(need4(src, "scratch.layer1_rn.weight", &t));
    hd->features = t->ne[0];
    if (hd->features < 8 || hd->features % 8)
        return lyra_error(LYRA_ERR_FORMAT, WHAT ": '" PREFIX "scratch.layer1_rn.weight' has %lld features; the "
                          "images merger needs a multiple of 8", (long long)hd->features);
    LYRA_TRY(need4(src, "scratch.output_conv2.2.weight", &t));
    hd->out_dim = t->ne[0];
    /* out_dim = 2 (xy) + 3 (scale) + 4 (rotation) + 3·(deg+1)² (SH) + 1 (depth offset) + 1 (density) */
    int64_t sh = hd->out_dim - 11;
    g->sh_degree = -1;
    for (int d = 0; d <= 2; d++)
        if (sh == 3 * (d + 1) * (d + 1)) g->sh_degree = d;
    if (g->sh_degree < 0)
        return lyra_error(LYRA_ERR_FORMAT, WHAT ": '" PREFIX "scratch.output_conv2.2.weight' has %lld outputs; expected "
                          "11 + 3·(d+1)² for SH degree d <= 2 (offset xy and depth, scales, quaternion, SH, density; "
                          "DA3-giant: 38, degree 2)", (long long)hd->out_dim);
    hd->pos_embed = 1; /* GSDPT pos_embed=True, norm_type "idt", no sky head */
    lyra_vit_wlist *l = &g->wlist;
    LYRA_TRY(lyra_da3_head_add_weights(hd, l, PREFIX));
    int64_t F2 = hd->features / 2, ch[4] = {3, F2 / 4, F2 / 2, F2};
    for (int i = 0; i < 3; i++) {
        char name[160];
        snprintf(name, sizeof name, PREFIX "images_merger.%d.weight", 2 * i);
        LYRA_TRY(lyra_vit_wlist_add(l, name, &g->merge_w[i], 0, 4, (int64_t[]){ch[i + 1], ch[i], 3, 3}));
        snprintf(name, sizeof name, PREFIX "images_merger.%d.bias", 2 * i);
        LYRA_TRY(lyra_vit_wlist_add(l, name, &g->merge_b[i], 1, 1, (int64_t[]){ch[i + 1]}));
    }
    return lyra_vit_wlist_load(l, src, only_gs_head, g, WHAT, &g->mem);
}

lyra_status lyra_da3_gs_place(lyra_da3_gs *g, lyra_backend *be) {
    if (be->device == LYRA_DEVICE_CPU || g->placed) return LYRA_OK;
    LYRA_TRY(lyra_vit_wlist_place(&g->wlist, be, &g->mem, WHAT " weights"));
    g->placed = be;
    return LYRA_OK;
}

void lyra_da3_gs_free(lyra_da3_gs *g) {
    if (!g) return;
    if (g->placed) g->placed->ops->release(g->placed, g->mem);
    else free(g->mem);
    lyra_vit_wlist_free(&g->wlist);
    memset(g, 0, sizeof *g);
}

/* ---------------------------------------------------------------- forward */

size_t lyra_da3_gs_arena_bytes(const lyra_da3_gs *g, int64_t gh, int64_t gw, int down_ratio) {
    const lyra_da3_head *hd = &g->head;
    int64_t h = 14 * gh, w = 14 * gw, ho = h / down_ratio, wo = w / down_ratio, F2 = hd->features / 2;
    int64_t G = gh * gw;
    size_t taps = 4 * al(G * hd->dim_in * 4);
    size_t neck = lyra_da3_head_arena_bytes(hd, gh, gw, ho, wo);
    size_t merger = al(3 * h * w * 4) + al(F2 / 4 * h * w * 4) + al(F2 / 2 * h * w * 4) + al(F2 * h * w * 4);
    size_t tail = 2 * al(F2 * ho * wo * 4) + al(32 * ho * wo * 4) + al(hd->out_dim * ho * wo * 4) +
                  al(F2 * ho * wo * 4) /* UV table */;
    return taps + neck + merger + tail + 16 * LYRA_ARENA_ALIGN;
}

static lyra_status conv3(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                         const lyra_tensor *b, int pad) {
    lyra_conv2d_params p = {.stride_h = 1, .stride_w = 1, .pad_top = pad, .pad_bottom = pad, .pad_left = pad,
                            .pad_right = pad};
    return lyra_op_conv2d(be, y, x, w, b, &p);
}

static lyra_status new4(lyra_arena *a, lyra_tensor *t, int64_t c, int64_t h, int64_t w, const char *what) {
    return lyra_arena_tensor(a, t, LYRA_DTYPE_F32, 4, (int64_t[]){1, c, h, w}, what);
}

/* images_merger at full resolution, then adaptive_avg_pool2d to ho × wo (gs_ds_feature_mode). h = r·ho exactly,
 * so the adaptive pool is a plain r×r average. */
static lyra_status merger(const lyra_da3_gs *g, lyra_backend *be, lyra_arena *a, const lyra_tensor *px, int r,
                          lyra_tensor *out) {
    int64_t h = px->ne[2], w = px->ne[3], F2 = g->head.features / 2;
    int64_t ch[3] = {F2 / 4, F2 / 2, F2};
    LYRA_TRY(new4(a, out, F2, h / r, w / r, "GS images merger out"));
    size_t mark = lyra_arena_mark(a);
    lyra_tensor x[3];
    const lyra_tensor *in = px;
    for (int i = 0; i < 3; i++) {
        LYRA_TRY(new4(a, &x[i], ch[i], h, w, "GS images merger"));
        LYRA_TRY(conv3(be, &x[i], in, &g->merge_w[i], &g->merge_b[i], 1));
        LYRA_TRY(lyra_op_gelu(be, &x[i], &x[i], 0)); /* nn.GELU(): exact erf */
        in = &x[i];
    }
    if (r == 1) LYRA_TRY(lyra_op_copy(be, out, in));
    else LYRA_TRY(lyra_op_avg_pool3d(be, out, in, 1, r, r));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

lyra_status lyra_da3_gs_head_run(const lyra_da3_gs *g, lyra_backend *be, lyra_arena *a, const float *const *taps,
                                 const float *pixels, int64_t gh, int64_t gw, int down_ratio, float *out) {
    const lyra_da3_head *hd = &g->head;
    if (down_ratio < 1 || 14 % down_ratio)
        return lyra_error(LYRA_ERR_ARG, WHAT ": down_ratio %d is not allowed; it must divide the patch size 14 "
                          "(1, 2, 7 or 14) so that the GS grid is whole", down_ratio);
    int64_t h = 14 * gh, w = 14 * gw, ho = h / down_ratio, wo = w / down_ratio, F2 = hd->features / 2;
    double aspect = (double)w / (double)h;
    size_t mark = lyra_arena_mark(a);
    lyra_tensor feat[4], px, c1, u, img, hm, lo;
    const lyra_tensor *fp[4];
    lyra_status s = LYRA_OK;
    for (int k = 0; k < 4 && s == LYRA_OK; k++) {
        s = lyra_arena_tensor(a, &feat[k], LYRA_DTYPE_F32, 3, (int64_t[]){1, gh * gw, hd->dim_in}, "GS head taps");
        lyra_tensor host = lyra_tensor_make((void *)taps[k], LYRA_DTYPE_F32, 3, feat[k].ne);
        if (s == LYRA_OK) s = lyra_op_upload(be, &feat[k], &host);
        fp[k] = &feat[k];
    }
    if (s == LYRA_OK) s = new4(a, &px, 3, h, w, "GS head pixels");
    if (s == LYRA_OK) {
        lyra_tensor host = lyra_tensor_4d((void *)pixels, LYRA_DTYPE_F32, 1, 3, h, w);
        s = lyra_op_upload(be, &px, &host);
    }
    if (s == LYRA_OK) s = lyra_da3_head_neck(hd, be, a, fp, gh, gw, aspect, &c1);
    if (s == LYRA_OK) s = new4(a, &u, F2, ho, wo, "GS head upsample");
    lyra_resize_params rp = {.mode = LYRA_RESIZE_BILINEAR, .align_corners = 1}; /* custom_interpolate */
    if (s == LYRA_OK) s = lyra_op_resize(be, &u, &c1, &rp);
    if (s == LYRA_OK) s = merger(g, be, a, &px, down_ratio, &img);
    if (s == LYRA_OK) s = lyra_op_add(be, &u, &u, &img);
    if (s == LYRA_OK) s = lyra_da3_add_uv(be, a, &u, aspect);
    if (s == LYRA_OK) s = new4(a, &hm, 32, ho, wo, "GS output_conv2");
    if (s == LYRA_OK) s = conv3(be, &hm, &u, &hd->oc2a_w, &hd->oc2a_b, 1);
    if (s == LYRA_OK) s = lyra_op_unary(be, &hm, &hm, LYRA_ACT_RELU);
    if (s == LYRA_OK) s = new4(a, &lo, hd->out_dim, ho, wo, "GS head logits");
    if (s == LYRA_OK) s = conv3(be, &lo, &hm, &hd->oc2b_w, &hd->oc2b_b, 0);
    if (s == LYRA_OK) {
        lyra_tensor host = lyra_tensor_4d(out, LYRA_DTYPE_F32, 1, hd->out_dim, ho, wo);
        s = lyra_op_download(be, &host, &lo);
    }
    lyra_arena_reset(a, mark);
    return s;
}
