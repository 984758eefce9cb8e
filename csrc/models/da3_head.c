/* DA3 DPT heads on the runtime ops: the any-view DualDPT main branch (depth + confidence, upstream DA3dual:30-364) and
 * the metric DPT (depth + sky, upstream DA3net:484). One view at a time: the heads process views independently
 * (upstream chunks of 8 have no numeric effect), which bounds the activation memory to one view's pyramid. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3.h"
#include "nn/ops.h"

/* Pyramid sizes: level k has hk×wk = 4gh×4gw, 2gh×2gw, gh×gw, ceil(gh/2)×ceil(gw/2) (ConvT ×4, ×2, identity,
 * conv stride 2 pad 1). */
static void level_size(int k, int64_t gh, int64_t gw, int64_t *hk, int64_t *wk) {
    static const int up[3] = {4, 2, 1};
    if (k < 3) *hk = gh * up[k], *wk = gw * up[k];
    else *hk = (gh - 1) / 2 + 1, *wk = (gw - 1) / 2 + 1;
}

size_t lyra_da3_head_arena_bytes(const lyra_da3_head *hd, int64_t gh, int64_t gw, int64_t h, int64_t w) {
    int64_t F = hd->features, G = gh * gw, A[4], hk, wk;
    for (int k = 0; k < 4; k++) level_size(k, gh, gw, &hk, &wk), A[k] = hk * wk;
    size_t levels = 0, stage = 0;
    for (int k = 0; k < 4; k++) {
        levels += lyra_arena_size(F * A[k] * 4);
        size_t s = lyra_arena_size(G * hd->dim_in * 4) + 2 * lyra_arena_size(G * hd->oc[k] * 4) +
                   lyra_arena_size(hd->oc[k] * A[k] * 4) + lyra_arena_size(hd->oc[k] * G * 4) /* UV table */;
        if (s > stage) stage = s;
    }
    size_t fused = lyra_arena_size(F * A[2] * 4) + lyra_arena_size(F * A[1] * 4) + lyra_arena_size(F * A[0] * 4) +
                   lyra_arena_size(F * 4 * A[0] * 4);
    size_t fuse_tmp = 6 * lyra_arena_size(F * A[0] * 4) + lyra_arena_size(F * 4 * A[0] * 4);
    size_t out = lyra_arena_size(F / 2 * 4 * A[0] * 4) + 2 * lyra_arena_size(F / 2 * h * w * 4) +
                 2 * lyra_arena_size(32 * h * w * 4) + 2 * lyra_arena_size(2 * h * w * 4);
    size_t tail = fuse_tmp > out ? fuse_tmp : out;
    return levels + (stage > fused + tail ? stage : fused + tail) + 16 * LYRA_ARENA_ALIGN;
}

double lyra_da3_head_flops(const lyra_da3_head *hd, int64_t gh, int64_t gw, int64_t h, int64_t w) {
    double F = (double)hd->features, G = (double)(gh * gw), A[4];
    int64_t hk, wk;
    for (int k = 0; k < 4; k++) level_size(k, gh, gw, &hk, &wk), A[k] = (double)(hk * wk);
    double f = 0;
    for (int k = 0; k < 4; k++) {
        double oc = (double)hd->oc[k];
        f += 2.0 * G * hd->dim_in * oc;                          /* projects */
        if (k == 0) f += 2.0 * G * oc * oc * 16.0;               /* ConvT 4×4 stride 4 */
        if (k == 1) f += 2.0 * G * oc * oc * 4.0;
        if (k == 3) f += 2.0 * A[3] * oc * oc * 9.0;             /* conv 3×3 stride 2 */
        f += 2.0 * A[k] * oc * F * 9.0;                          /* layer_rn */
    }
    double out_area[4] = {4.0 * A[0], A[0], A[1], A[2]};         /* refinenet1..4 output sizes */
    double in_area[4] = {A[0], A[1], A[2], A[3]};
    for (int r = 0; r < 4; r++)
        f += 2.0 * in_area[r] * F * F * 9.0 * (r == 3 ? 2.0 : 4.0) + 2.0 * out_area[r] * F * F;
    f += 2.0 * 4.0 * A[0] * F * (F / 2) * 9.0;                   /* output_conv1 */
    f += 2.0 * (double)(h * w) * ((F / 2) * 32.0 * 9.0 + 32.0 * (double)hd->out_dim);
    if (hd->sky) f += 2.0 * (double)(h * w) * ((F / 2) * 32.0 * 9.0 + 32.0);
    return f;
}

/* 0.1 · UV sin/cos embedding of DA3's DualDPT (head_utils create_uv_grid + position_grid_to_embed, upstream
 * DA3dual:30-364), in float32 like upstream (linspace as PyTorch's kernel: start + step·i for the first half,
 * end − step·(n−1−i) for the second). aspect = image w / h. Channel c of the (Cc, ph, pw) embedding reads only the
 * column's u (c < 2q, q = Cc / 4: sin then cos) or only the row's v (the rest), so it is kept as its two factors:
 * ue (2q, pw) and ve (Cc − 2q, ph). */
static int uv_embed(float *ue, float *ve, int64_t Cc, int64_t ph, int64_t pw, double aspect) {
    double diag = sqrt(aspect * aspect + 1.0);
    double sx = aspect / diag, sy = 1.0 / diag;
    int64_t q = Cc / 4;
    float *u = malloc(sizeof *u * (size_t)(pw + ph)), *v = u + pw;
    float *om = malloc(sizeof *om * (size_t)(q > 0 ? q : 1));
    if (!u || !om) {
        free(u);
        free(om);
        return -1;
    }
    struct { float *o; int64_t n; double span; } ax[2] = {{u, pw, sx}, {v, ph, sy}};
    for (int a = 0; a < 2; a++) {
        int64_t n = ax[a].n;
        float start = (float)(-ax[a].span * (double)(n - 1) / (double)n), end = -start;
        float step = n > 1 ? (end - start) / (float)(n - 1) : 0.0f;
        for (int64_t i = 0; i < n; i++)
            ax[a].o[i] = i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
        if (n == 1) ax[a].o[0] = start;
    }
    for (int64_t m = 0; m < q; m++) om[m] = 1.0f / powf(100.0f, (float)m / ((float)Cc / 4.0f));
    for (int64_t c = 0; c < Cc; c++) {
        int64_t blk = c / q, mm = c % q;
        const int col = blk < 2;
        const float *pos = col ? u : v;
        float *dst = col ? ue + c * pw : ve + (c - 2 * q) * ph;
        for (int64_t i = 0, n = col ? pw : ph; i < n; i++) {
            float p = pos[i] * om[mm];
            float e = (blk % 2 == 0) ? sinf(p) : cosf(p);
            dst[i] = e * 0.1f;
        }
    }
    free(u);
    free(om);
    return 0;
}

/* x (1, Cc, ph, pw) += 0.1·UV embedding: its two factors built on the host, uploaded into the arena (2q·pw +
 * (Cc − 2q)·ph floats, not Cc·ph·pw) and added broadcast over the rows / the columns, the same f32 sums. */
lyra_status lyra_da3_add_uv(lyra_backend *be, lyra_arena *a, lyra_tensor *x, double aspect) {
    int64_t Cc = x->ne[1], ph = x->ne[2], pw = x->ne[3], q = Cc / 4, cu = 2 * q, cv = Cc - cu;
    if (q < 1) return lyra_error(LYRA_ERR_ARG, "DA3 UV embedding: %lld channels, at least 4 needed", (long long)Cc);
    size_t mark = lyra_arena_mark(a);
    lyra_tensor tu, tv, xu, xv;
    LYRA_TRY(lyra_arena_tensor(a, &tu, LYRA_DTYPE_F32, 4, (int64_t[]){1, cu, 1, pw}, "DA3 UV embedding"));
    LYRA_TRY(lyra_arena_tensor(a, &tv, LYRA_DTYPE_F32, 4, (int64_t[]){1, cv, ph, 1}, "DA3 UV embedding"));
    float *host = malloc(sizeof *host * (size_t)(cu * pw + cv * ph));
    if (!host) return lyra_error(LYRA_ERR_OOM, "DA3 UV embedding: out of memory");
    lyra_tensor hu = lyra_tensor_4d(host, LYRA_DTYPE_F32, 1, cu, 1, pw);
    lyra_tensor hv = lyra_tensor_4d(host + cu * pw, LYRA_DTYPE_F32, 1, cv, ph, 1);
    lyra_status s = uv_embed(host, host + cu * pw, Cc, ph, pw, aspect) == 0
                        ? be->ops->upload(be, &tu, &hu)
                        : lyra_error(LYRA_ERR_OOM, "DA3 UV embedding: out of memory");
    if (s == LYRA_OK) s = be->ops->upload(be, &tv, &hv);
    free(host);
    if (s == LYRA_OK) s = lyra_tensor_slice(&xu, x, 1, 0, cu);
    if (s == LYRA_OK) s = lyra_tensor_slice(&xv, x, 1, cu, Cc);
    if (s == LYRA_OK) s = lyra_op_add(be, &xu, &xu, &tu);
    if (s == LYRA_OK) s = lyra_op_add(be, &xv, &xv, &tv);
    lyra_arena_reset(a, mark);
    return s;
}

static lyra_status conv(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                        const lyra_tensor *b, int stride, int pad) {
    lyra_conv2d_params p = {.stride_h = stride, .stride_w = stride, .pad_top = pad, .pad_bottom = pad,
                            .pad_left = pad, .pad_right = pad};
    return lyra_op_conv2d(be, y, x, w, b, &p);
}

static lyra_status new4(lyra_arena *a, lyra_tensor *t, int64_t c, int64_t h, int64_t w, const char *what) {
    return lyra_arena_tensor(a, t, LYRA_DTYPE_F32, 4, (int64_t[]){1, c, h, w}, what);
}

/* y = x + conv2(relu(conv1(relu(x)))) (ResidualConvUnit, no norm; ReLU not in place, DA3dpt). y is new. */
static lyra_status rcu(const lyra_da3_rcu *u, lyra_backend *be, lyra_arena *a, lyra_tensor *y, const lyra_tensor *x) {
    LYRA_TRY(new4(a, y, x->ne[1], x->ne[2], x->ne[3], "DA3 RCU out"));
    size_t mark = lyra_arena_mark(a);
    lyra_tensor t, t2;
    LYRA_TRY(new4(a, &t, x->ne[1], x->ne[2], x->ne[3], "DA3 RCU relu"));
    LYRA_TRY(lyra_op_unary(be, &t, x, LYRA_ACT_RELU));
    LYRA_TRY(new4(a, &t2, x->ne[1], x->ne[2], x->ne[3], "DA3 RCU conv1"));
    LYRA_TRY(conv(be, &t2, &t, &u->c1_w, &u->c1_b, 1, 1));
    LYRA_TRY(lyra_op_unary(be, &t2, &t2, LYRA_ACT_RELU));
    LYRA_TRY(conv(be, y, &t2, &u->c2_w, &u->c2_b, 1, 1));
    LYRA_TRY(lyra_op_add(be, y, y, x));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

/* FeatureFusionBlock: out = out_conv(up_align_corners(RCU2(top + RCU1(lateral)), (oh, ow))). */
static lyra_status fuse(const lyra_da3_fusion *f, lyra_backend *be, lyra_arena *a, lyra_tensor *out,
                        const lyra_tensor *top, const lyra_tensor *lat, int64_t oh, int64_t ow) {
    int64_t F = top->ne[1];
    LYRA_TRY(new4(a, out, F, oh, ow, "DA3 fusion out"));
    size_t mark = lyra_arena_mark(a);
    lyra_tensor y, r, up;
    const lyra_tensor *in = top;
    if (f->has_rcu1 && lat) {
        LYRA_TRY(rcu(&f->rcu1, be, a, &r, lat));
        LYRA_TRY(lyra_op_add(be, &r, &r, top));
        in = &r;
    }
    LYRA_TRY(rcu(&f->rcu2, be, a, &y, in));
    LYRA_TRY(new4(a, &up, F, oh, ow, "DA3 fusion upsample"));
    lyra_resize_params rp = {.mode = LYRA_RESIZE_BILINEAR, .align_corners = 1};
    LYRA_TRY(lyra_op_resize(be, &up, &y, &rp));
    LYRA_TRY(conv(be, out, &up, &f->out_w, &f->out_b, 1, 0));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

/* Level k: [LayerNorm] -> 1×1 project -> [+UV] -> resize layer -> layerk_rn, into l (1, F, hk, wk). */
static lyra_status level(const lyra_da3_head *hd, lyra_backend *be, lyra_arena *a, int k, const lyra_tensor *feat,
                         int64_t gh, int64_t gw, double aspect, lyra_tensor *l) {
    int64_t F = hd->features, G = gh * gw, oc = hd->oc[k], hk, wk;
    level_size(k, gh, gw, &hk, &wk);
    LYRA_TRY(new4(a, l, F, hk, wk, "DA3 head level"));
    size_t mark = lyra_arena_mark(a);
    lyra_tensor xn, p, pc, rs, pw2, pt;
    const lyra_tensor *x = feat;
    if (hd->dual) {
        LYRA_TRY(lyra_arena_tensor(a, &xn, LYRA_DTYPE_F32, 3, feat->ne, "DA3 head norm"));
        LYRA_TRY(lyra_op_layer_norm(be, &xn, feat, &hd->norm_w, &hd->norm_b, 1e-5f));
        x = &xn;
    }
    LYRA_TRY(lyra_arena_tensor(a, &p, LYRA_DTYPE_F32, 3, (int64_t[]){1, G, oc}, "DA3 head project"));
    LYRA_TRY(lyra_tensor_reshape(&pw2, &hd->proj_w[k], 2, (int64_t[]){oc, hd->dim_in}));
    LYRA_TRY(lyra_op_linear(be, &p, x, &pw2, &hd->proj_b[k])); /* 1×1 conv over tokens */
    LYRA_TRY(new4(a, &pc, oc, gh, gw, "DA3 head project map"));
    LYRA_TRY(lyra_tensor_permute(&pt, &p, (int[]){0, 2, 1}));
    lyra_tensor pc3;
    LYRA_TRY(lyra_tensor_reshape(&pc3, &pc, 3, (int64_t[]){1, oc, G}));
    LYRA_TRY(lyra_op_copy(be, &pc3, &pt));
    if (hd->pos_embed) LYRA_TRY(lyra_da3_add_uv(be, a, &pc, aspect));
    const lyra_tensor *r = &pc;
    if (k != 2) {
        LYRA_TRY(new4(a, &rs, oc, hk, wk, "DA3 head resize"));
        if (k == 0) LYRA_TRY(lyra_op_conv_transpose2d(be, &rs, &pc, &hd->rs0_w, &hd->rs0_b, 4, 0));
        else if (k == 1) LYRA_TRY(lyra_op_conv_transpose2d(be, &rs, &pc, &hd->rs1_w, &hd->rs1_b, 2, 0));
        else LYRA_TRY(conv(be, &rs, &pc, &hd->rs3_w, &hd->rs3_b, 2, 1));
        r = &rs;
    }
    LYRA_TRY(conv(be, l, r, &hd->rn_w[k], NULL, 1, 1));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

static lyra_status to_host(lyra_backend *be, float *dst, const lyra_tensor *src) {
    lyra_tensor h = lyra_tensor_make(dst, LYRA_DTYPE_F32, src->ndim, src->ne);
    return be->ops->download(be, &h, src);
}

lyra_status lyra_da3_head_neck(const lyra_da3_head *hd, lyra_backend *be, lyra_arena *a,
                               const lyra_tensor *const *feats, int64_t gh, int64_t gw, double aspect, lyra_tensor *c1) {
    int64_t F = hd->features;
    lyra_tensor l[4], o4, o3, o2, o1;
    for (int k = 0; k < 4; k++) LYRA_TRY(level(hd, be, a, k, feats[k], gh, gw, aspect, &l[k]));
    /* top-down fusion: refinenet4 to level-3 size, 3 to level-2, 2 to level-1, 1 to twice level 1 */
    LYRA_TRY(fuse(&hd->fuse[3], be, a, &o4, &l[3], NULL, l[2].ne[2], l[2].ne[3]));
    LYRA_TRY(fuse(&hd->fuse[2], be, a, &o3, &o4, &l[2], l[1].ne[2], l[1].ne[3]));
    LYRA_TRY(fuse(&hd->fuse[1], be, a, &o2, &o3, &l[1], l[0].ne[2], l[0].ne[3]));
    LYRA_TRY(fuse(&hd->fuse[0], be, a, &o1, &o2, &l[0], 2 * l[0].ne[2], 2 * l[0].ne[3]));
    LYRA_TRY(new4(a, c1, F / 2, o1.ne[2], o1.ne[3], "DA3 output_conv1"));
    return conv(be, c1, &o1, &hd->oc1_w, &hd->oc1_b, 1, 1);
}

lyra_status lyra_da3_head_run(const lyra_da3_head *hd, lyra_backend *be, lyra_arena *a, const lyra_tensor *const *feats,
                              int64_t gh, int64_t gw, int64_t h, int64_t w, lyra_tensor *out0, lyra_tensor *out1,
                              float *output_conv1) {
    int64_t F = hd->features;
    double aspect = (double)w / (double)h;
    size_t mark = lyra_arena_mark(a);
    lyra_tensor c1, u, hm, lo, sk;
    lyra_status s = lyra_da3_head_neck(hd, be, a, feats, gh, gw, aspect, &c1);
    if (s == LYRA_OK && output_conv1) s = to_host(be, output_conv1, &c1);
    /* to the patch-aligned image size, bilinear align_corners=True (custom_interpolate) */
    if (s == LYRA_OK) s = new4(a, &u, F / 2, h, w, "DA3 head upsample");
    lyra_resize_params rp = {.mode = LYRA_RESIZE_BILINEAR, .align_corners = 1};
    if (s == LYRA_OK) s = lyra_op_resize(be, &u, &c1, &rp);
    if (s == LYRA_OK && hd->pos_embed) s = lyra_da3_add_uv(be, a, &u, aspect);
    if (s == LYRA_OK) s = new4(a, &hm, 32, h, w, "DA3 output_conv2");
    if (s == LYRA_OK) s = conv(be, &hm, &u, &hd->oc2a_w, &hd->oc2a_b, 1, 1);
    if (s == LYRA_OK) s = lyra_op_unary(be, &hm, &hm, LYRA_ACT_RELU);
    if (s == LYRA_OK) s = new4(a, &lo, hd->out_dim, h, w, "DA3 head logits");
    if (s == LYRA_OK) s = conv(be, &lo, &hm, &hd->oc2b_w, &hd->oc2b_b, 1, 0);
    if (s == LYRA_OK && hd->sky) {
        s = new4(a, &sk, 32, h, w, "DA3 sky hidden");
        if (s == LYRA_OK) s = conv(be, &sk, &u, &hd->sky_a_w, &hd->sky_a_b, 1, 1);
        if (s == LYRA_OK) s = lyra_op_unary(be, &sk, &sk, LYRA_ACT_RELU);
        if (s == LYRA_OK) s = conv(be, out1, &sk, &hd->sky_b_w, &hd->sky_b_b, 1, 0);
        if (s == LYRA_OK) s = lyra_op_unary(be, out1, out1, LYRA_ACT_RELU); /* sky activation "relu" */
    }
    if (s == LYRA_OK) {
        /* the logits stay where they are: exp / exp + 1 run with the nested merge (op da3_merge, or the host path) */
        lyra_tensor ch;
        s = lyra_tensor_slice(&ch, &lo, 1, 0, 1);
        if (s == LYRA_OK) s = lyra_op_copy(be, out0, &ch);
        if (s == LYRA_OK && hd->dual) {
            s = lyra_tensor_slice(&ch, &lo, 1, 1, 2);
            if (s == LYRA_OK) s = lyra_op_copy(be, out1, &ch);
        }
    }
    lyra_arena_reset(a, mark);
    return s;
}
