/* MoGe v1 forward on the runtime ops (upstream MOGE:269-283, MHUB:18-82, MVIT, MOGE:24-142): input resizes, DINOv2
 * taps, the head, the final resize; and its cost model. One image per call (Lyra runs one); every activation is (1, C,
 * h, w), so channel slices of a buffer are contiguous and the UV channels are written straight into the concatenation.
 * */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/moge.h"
#include "nn/ops.h"

static lyra_status map(lyra_arena *a, lyra_tensor *t, lyra_dtype dt, int64_t c, int64_t h, int64_t w,
                       const char *what) {
    return lyra_arena_tensor(a, t, dt, 4, (int64_t[]){1, c, h, w}, what);
}

/* Channels [c0, c1) of x (1, C, h, w): contiguous because the batch is 1. */
static lyra_status channels(lyra_tensor *v, const lyra_tensor *x, int64_t c0, int64_t c1) {
    return lyra_tensor_slice(v, x, 1, c0, c1);
}

/* dst (1, 2, h, w) <- the view-plane UV of an h×w map with the image aspect ratio (Head.forward: the UV is built
 * for the current map size with aspect img_w / img_h of the resized image, MOGE:112-130). */
static lyra_status put_uv(lyra_backend *be, lyra_tensor *dst, double aspect) {
    int64_t h = dst->ne[2], w = dst->ne[3];
    float *inter = malloc(sizeof(float) * (size_t)(h * w * 4));
    if (!inter) return lyra_error(LYRA_ERR_OOM, "MoGe: out of host memory for a %lldx%lld UV grid", (long long)h,
                                  (long long)w);
    float *planar = inter + 2 * h * w;
    lyra_moge_uv(inter, h, w, aspect);
    for (int64_t p = 0; p < h * w; p++) {
        planar[p] = inter[2 * p];
        planar[h * w + p] = inter[2 * p + 1];
    }
    lyra_tensor host = lyra_tensor_4d(planar, LYRA_DTYPE_F32, 1, 2, h, w);
    lyra_status s = lyra_backend_upload_as(be, dst, &host); /* UV in the head's dtype (dtype=x.dtype, MOGE:125) */
    free(inter);
    return s;
}

static lyra_status conv(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                        const lyra_tensor *b) {
    int p = (int)(w->ne[2] / 2); /* 3×3 pad 1 / k×k pad k//2, all replicate (padding_mode='replicate') */
    lyra_conv2d_params cp = {.stride_h = 1, .stride_w = 1, .pad_top = p, .pad_bottom = p, .pad_left = p,
                             .pad_right = p, .pad_mode = LYRA_PAD_REPLICATE};
    return lyra_op_conv2d(be, y, x, w, b, &cp);
}

/* ResidualConvBlock in place on x (1, c, h, w): x += conv(relu(GN_{h/32}(conv(relu(GN_1(x)))))) (MOGE:24-58). */
static lyra_status res_block(lyra_backend *be, lyra_arena *a, lyra_tensor *x, const lyra_moge_res *r,
                             int64_t hidden) {
    int64_t c = x->ne[1], h = x->ne[2], w = x->ne[3];
    size_t mark = lyra_arena_mark(a);
    lyra_tensor g, c1, g2, c2;
    lyra_dtype dt = x->dtype; /* GroupNorm in f32 inside the kernel, cast for the conv as autocast does */
    LYRA_TRY(map(a, &g, dt, c, h, w, "MoGe res-block norm"));
    LYRA_TRY(lyra_op_group_norm(be, &g, x, 1, &r->gn1_w, &r->gn1_b, 1e-5f));
    LYRA_TRY(lyra_op_unary(be, &g, &g, LYRA_ACT_RELU));
    LYRA_TRY(map(a, &c1, dt, hidden, h, w, "MoGe res-block hidden"));
    LYRA_TRY(conv(be, &c1, &g, &r->conv1_w, &r->conv1_b));
    LYRA_TRY(map(a, &g2, dt, hidden, h, w, "MoGe res-block hidden norm"));
    LYRA_TRY(lyra_op_group_norm(be, &g2, &c1, (int)(hidden / 32), &r->gn2_w, &r->gn2_b, 1e-5f));
    LYRA_TRY(lyra_op_unary(be, &g2, &g2, LYRA_ACT_RELU));
    LYRA_TRY(map(a, &c2, dt, c, h, w, "MoGe res-block out"));
    LYRA_TRY(conv(be, &c2, &g2, &r->conv2_w, &r->conv2_b));
    LYRA_TRY(lyra_op_add(be, x, x, &c2));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

static lyra_status capture(lyra_backend *be, float *host, const lyra_tensor *t) {
    if (!host) return LYRA_OK;
    lyra_tensor h = lyra_tensor_make(host, LYRA_DTYPE_F32, t->ndim, t->ne);
    return lyra_backend_download_as(be, &h, t);
}

/* x0 (1, P + 2, gh, gw) with channels [0, P) = Σ_k proj_k(tap_k) (1×1 convs as Linear over the tokens). */
static lyra_status project(const lyra_moge *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *taps,
                           const lyra_moge_geometry *g, lyra_tensor *x0) {
    const lyra_moge_config *c = &m->cfg;
    int64_t P = c->dim_proj, G = g->gh * g->gw;
    size_t mark = lyra_arena_mark(a);
    lyra_tensor acc, t, tap, w, accp, acc4, y;
    LYRA_TRY(lyra_arena_tensor(a, &acc, x0->dtype, 3, (int64_t[]){1, G, P}, "MoGe projections"));
    LYRA_TRY(lyra_arena_tensor(a, &t, x0->dtype, 3, (int64_t[]){1, G, P}, "MoGe projection"));
    for (int k = 0; k < (int)c->n_features; k++) {
        LYRA_TRY(lyra_tensor_slice(&tap, taps, 0, k, k + 1));
        LYRA_TRY(lyra_tensor_reshape(&w, &m->proj_w[k], 2, (int64_t[]){P, c->dim}));
        LYRA_TRY(lyra_op_linear(be, k ? &t : &acc, &tap, &w, &m->proj_b[k]));
        if (k) LYRA_TRY(lyra_op_add(be, &acc, &acc, &t));
    }
    /* tokens are row-major over the patch grid: (1, gh·gw, P) -> (1, P, gh, gw) */
    LYRA_TRY(lyra_tensor_reshape(&acc4, &acc, 4, (int64_t[]){1, g->gh, g->gw, P}));
    LYRA_TRY(lyra_tensor_permute(&accp, &acc4, (int[]){0, 3, 1, 2}));
    LYRA_TRY(channels(&y, x0, 0, P));
    LYRA_TRY(lyra_op_copy(be, &y, &accp));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

lyra_status lyra_moge_forward(const lyra_moge *m, lyra_backend *be, lyra_arena *arena, const float *image,
                              int64_t H, int64_t W, float *raw, lyra_moge_capture *cap) {
    const lyra_moge_config *c = &m->cfg;
    lyra_moge_geometry g;
    LYRA_TRY(lyra_moge_geometry_of(c, H, W, &g));
    lyra_moge_capture none;
    memset(&none, 0, sizeof none);
    if (!cap) cap = &none;
    size_t mark0 = lyra_arena_mark(arena);
    lyra_arena *a = arena;
    lyra_tensor img, rs, p14, taps, ch;

    /* upstream MOGE:269-283: bicubic (a = −0.5) antialias to (h1, w1), ImageNet normalisation, bilinear antialias to
     * ·/14·14. */
    /* under upstream's fp16 autocast (MOGE:348) the resizes and the normalisation stay in the image's f32, the
     * backbone's GEMMs and the whole head run in f16 (m->vit.cfg.gemm) */
    lyra_dtype act = m->vit.cfg.gemm;
    LYRA_TRY(map(a, &img, LYRA_DTYPE_F32, 3, H, W, "MoGe image"));
    lyra_tensor host = lyra_tensor_4d((void *)image, LYRA_DTYPE_F32, 1, 3, H, W);
    LYRA_TRY(be->ops->upload(be, &img, &host));
    LYRA_TRY(map(a, &rs, LYRA_DTYPE_F32, 3, g.h1, g.w1, "MoGe resized image"));
    lyra_resize_params cubic = {.mode = LYRA_RESIZE_BICUBIC, .antialias = 1};
    LYRA_TRY(lyra_op_resize(be, &rs, &img, &cubic));
    for (int k = 0; k < 3; k++) {
        LYRA_TRY(channels(&ch, &rs, k, k + 1));
        LYRA_TRY(lyra_op_scale(be, &ch, &ch, 1.0f, -m->mean[k]));
        LYRA_TRY(lyra_op_scale(be, &ch, &ch, 1.0f / m->std[k], 0.0f));
    }
    LYRA_TRY(capture(be, cap->image_resized, &rs));
    LYRA_TRY(map(a, &p14, LYRA_DTYPE_F32, 3, g.h14, g.w14, "MoGe backbone input"));
    lyra_resize_params lin = {.mode = LYRA_RESIZE_BILINEAR, .antialias = 1};
    LYRA_TRY(lyra_op_resize(be, &p14, &rs, &lin));
    LYRA_TRY(capture(be, cap->image_14, &p14));

    /* upstream MHUB:18-82, MVIT: the last n_features blocks, final-normed, class token dropped. */
    int64_t F = c->n_features, G = g.gh * g.gw, depth = m->vit.cfg.depth;
    /* the taps feed only the head's projections: stored in their dtype (autocast's one rounding) */
    LYRA_TRY(lyra_arena_tensor(a, &taps, act, 3, (int64_t[]){F, G, c->dim}, "MoGe taps"));
    lyra_tensor tap_views[LYRA_MOGE_MAX_FEATURES], *tap_ptrs[LYRA_MOGE_MAX_FEATURES];
    int idx[LYRA_MOGE_MAX_FEATURES];
    for (int k = 0; k < (int)F; k++) {
        LYRA_TRY(lyra_tensor_slice(&tap_views[k], &taps, 0, k, k + 1));
        tap_ptrs[k] = &tap_views[k];
        idx[k] = (int)(depth - F + k);
    }
    LYRA_TRY(lyra_vit_taps(&m->vit, be, a, &p14, (int)F, idx, tap_ptrs, NULL));
    LYRA_TRY(capture(be, cap->taps, &taps));

    /* upstream MOGE:24-142: head. The UV aspect is that of the resized image the head is given (h1, w1), not of the
     * patch grid. */
    double aspect = (double)g.w1 / (double)g.h1;
    lyra_tensor x, y, uv, t;
    int64_t cin = c->dim_proj;
    LYRA_TRY(map(a, &x, act, cin + 2, g.gh, g.gw, "MoGe head input"));
    LYRA_TRY(project(m, be, a, &taps, &g, &x));
    LYRA_TRY(channels(&uv, &x, cin, cin + 2));
    LYRA_TRY(put_uv(be, &uv, aspect));
    for (int b = 0; b < (int)c->n_stages; b++) {
        const lyra_moge_stage *s = &m->stages[b];
        int64_t out = c->dim_up[b], h = 2 * x.ne[2], w = 2 * x.ne[3], extra = b + 1 < c->n_stages ? 2 : 0;
        lyra_tensor xb;
        LYRA_TRY(map(a, &xb, act, out + extra, h, w, "MoGe upsample stage"));
        LYRA_TRY(channels(&y, &xb, 0, out));
        size_t mark = lyra_arena_mark(a);
        LYRA_TRY(map(a, &t, act, out, h, w, "MoGe transposed conv"));
        LYRA_TRY(lyra_op_conv_transpose2d(be, &t, &x, &s->up_w, &s->up_b, 2, 0));
        LYRA_TRY(conv(be, &y, &t, &s->conv_w, &s->conv_b));
        lyra_arena_reset(a, mark);
        for (int r = 0; r < (int)c->n_res; r++) LYRA_TRY(res_block(be, a, &y, &s->res[r], c->hidden[b]));
        LYRA_TRY(capture(be, cap->stages[b], &y));
        if (extra) {
            LYRA_TRY(channels(&uv, &xb, out, out + 2));
            LYRA_TRY(put_uv(be, &uv, aspect));
        }
        x = xb;
        cin = out;
    }
    lyra_tensor xf, heads, last;
    LYRA_TRY(channels(&last, &x, 0, cin));
    LYRA_TRY(map(a, &xf, act, cin + 2, g.h1, g.w1, "MoGe head at image size"));
    LYRA_TRY(channels(&y, &xf, 0, cin));
    lyra_resize_params bil = {.mode = LYRA_RESIZE_BILINEAR};
    LYRA_TRY(lyra_op_resize(be, &y, &last, &bil));
    LYRA_TRY(channels(&uv, &xf, cin, cin + 2));
    LYRA_TRY(put_uv(be, &uv, aspect));
    LYRA_TRY(map(a, &heads, act, 4, g.h1, g.w1, "MoGe head outputs"));
    for (int o = 0; o < 2; o++) {
        const lyra_moge_out *ob = &m->out[o];
        size_t mark = lyra_arena_mark(a);
        LYRA_TRY(map(a, &t, act, c->last_ch, g.h1, g.w1, "MoGe output block"));
        LYRA_TRY(conv(be, &t, &xf, &ob->conv0_w, &ob->conv0_b));
        for (int r = 0; r < (int)c->last_res; r++) LYRA_TRY(res_block(be, a, &t, &ob->res[r], c->last_hidden));
        LYRA_TRY(lyra_op_unary(be, &t, &t, LYRA_ACT_RELU));
        LYRA_TRY(channels(&y, &heads, o ? 3 : 0, o ? 4 : 3)); /* (x', y', log z), then the mask logit */
        LYRA_TRY(conv(be, &y, &t, &ob->conv_w, &ob->conv_b));
        lyra_arena_reset(a, mark);
    }
    LYRA_TRY(capture(be, cap->head, &heads));

    /* upstream MOGE:286-299: bilinear (no antialias) back to the input size; the exp remap and the rest happen on the
     * host. */
    lyra_tensor outhw;
    LYRA_TRY(map(a, &outhw, act, 4, H, W, "MoGe outputs at the input size"));
    LYRA_TRY(lyra_op_resize(be, &outhw, &heads, &bil));
    lyra_tensor hraw = lyra_tensor_4d(raw, LYRA_DTYPE_F32, 1, 4, H, W);
    LYRA_TRY(lyra_backend_download_as(be, &hraw, &outhw)); /* f16 maps widened as infer's x.float() (MOGE:354) */
    lyra_arena_reset(arena, mark0);
    return LYRA_OK;
}

lyra_status lyra_moge_infer(const float *raw, int64_t H, int64_t W, float threshold, float *fwd_points,
                            float *depth, uint8_t *mask, float *K, float *points, float *focal, float *shift) {
    int64_t n = H * W;
    float *pts = fwd_points ? fwd_points : malloc(sizeof(float) * (size_t)(3 * n));
    if (!pts) return lyra_error(LYRA_ERR_OOM, "MoGe: out of host memory for a %lldx%lld point map", (long long)H,
                                (long long)W);
    /* remap 'exp' (MOGE _remap_points): z = exp(ℓ), points = (x'·z, y'·z, z). */
    for (int64_t p = 0; p < n; p++) {
        float z = expf(raw[2 * n + p]);
        pts[3 * p] = raw[p] * z;
        pts[3 * p + 1] = raw[n + p] * z;
        pts[3 * p + 2] = z;
    }
    lyra_status s = lyra_moge_finish(pts, raw + 3 * n, H, W, threshold, depth, mask, K, points, focal, shift);
    if (!fwd_points) free(pts);
    return s;
}

/* ---------------------------------------------------------------- cost model */

static size_t res_temps(int64_t c, int64_t hid, int64_t area, int64_t e) {
    return 2 * lyra_arena_size(c * area * e) + 2 * lyra_arena_size(hid * area * e);
}

size_t lyra_moge_arena_bytes(const lyra_moge_config *c, const lyra_vit_config *vc, int64_t H, int64_t W) {
    lyra_moge_geometry g;
    if (lyra_moge_geometry_of(c, H, W, &g) != LYRA_OK) return 0;
    int64_t G = g.gh * g.gw, P = c->dim_proj, A1 = g.h1 * g.w1, e = (int64_t)lyra_dtype_size(vc->gemm);
    /* mirrors lyra_moge_forward's allocation order; the head's maps in the autocast dtype (vc->gemm) */
    size_t cur = lyra_arena_f32(3 * H * W) + lyra_arena_f32(3 * A1) + lyra_arena_f32(3 * g.h14 * g.w14) +
                 lyra_arena_size(c->n_features * G * c->dim * e);
    size_t peak = cur + lyra_vit_arena_bytes(vc, 1, g.gh, g.gw);
    cur += lyra_arena_size((P + 2) * G * e);
    peak = lyra_size_max(peak, cur + 2 * lyra_arena_size(G * P * e));
    int64_t h = g.gh, w = g.gw, cin = P;
    for (int b = 0; b < (int)c->n_stages; b++) {
        int64_t out = c->dim_up[b], extra = b + 1 < c->n_stages ? 2 : 0;
        h *= 2, w *= 2;
        cur += lyra_arena_size((out + extra) * h * w * e);
        size_t tmp = lyra_arena_size(out * h * w * e);
        if (c->n_res > 0) tmp = lyra_size_max(tmp, res_temps(out, c->hidden[b], h * w, e));
        peak = lyra_size_max(peak, cur + tmp);
        cin = out;
    }
    cur += lyra_arena_size((cin + 2) * A1 * e) + lyra_arena_size(4 * A1 * e);
    size_t tmp = lyra_arena_size(c->last_ch * A1 * e) +
                 (c->last_res > 0 ? res_temps(c->last_ch, c->last_hidden, A1, e) : 0);
    peak = lyra_size_max(peak, cur + tmp);
    peak = lyra_size_max(peak, cur + lyra_arena_size(4 * H * W * e));
    return peak + 8 * LYRA_ARENA_ALIGN;
}

static int64_t res_params(int64_t c, int64_t hid) { return 2 * c + hid * c * 9 + hid + 2 * hid + c * hid * 9 + c; }

int64_t lyra_moge_params(const lyra_moge_config *c, const lyra_vit_config *vc) {
    int64_t n = lyra_vit_params(vc) + c->n_features * (c->dim_proj * c->dim + c->dim_proj), in = c->dim_proj;
    for (int b = 0; b < (int)c->n_stages; b++) {
        int64_t out = c->dim_up[b];
        n += (in + 2) * out * 4 + out + out * out * 9 + out + c->n_res * res_params(out, c->hidden[b]);
        in = out;
    }
    for (int o = 0; o < 2; o++) {
        int64_t d = o ? 1 : 3;
        n += c->last_ch * (in + 2) * 9 + c->last_ch + c->last_res * res_params(c->last_ch, c->last_hidden) +
             d * c->last_ch * c->last_k * c->last_k + d;
    }
    return n;
}

size_t lyra_moge_weight_bytes(const lyra_moge_config *c, const lyra_vit_config *vc) {
    int64_t conv = c->n_features * c->dim_proj * c->dim, in = c->dim_proj;
    for (int b = 0; b < (int)c->n_stages; b++) {
        int64_t out = c->dim_up[b], hid = c->hidden[b];
        conv += (in + 2) * out * 4 + out * out * 9 + c->n_res * 2 * hid * out * 9;
        in = out;
    }
    for (int o = 0; o < 2; o++)
        conv += c->last_ch * (in + 2) * 9 + c->last_res * 2 * c->last_hidden * c->last_ch * 9 +
                (o ? 1 : 3) * c->last_ch * c->last_k * c->last_k;
    int64_t gemm = conv + lyra_vit_gemm_params(vc);
    return (size_t)lyra_moge_params(c, vc) * 4 - (size_t)gemm * (4 - lyra_dtype_size(vc->gemm));
}

double lyra_moge_flops(const lyra_moge_config *c, const lyra_vit_config *vc, int64_t H, int64_t W) {
    lyra_moge_geometry g;
    if (lyra_moge_geometry_of(c, H, W, &g) != LYRA_OK) return 0;
    double G = (double)(g.gh * g.gw), A1 = (double)(g.h1 * g.w1);
    double f = lyra_vit_flops(vc, 1, g.gh, g.gw, (int)vc->depth);
    f += 2.0 * (double)c->n_features * G * (double)(c->dim * c->dim_proj);
    double in = (double)c->dim_proj, area = G;
    for (int b = 0; b < (int)c->n_stages; b++) {
        double out = (double)c->dim_up[b], hid = (double)c->hidden[b];
        f += 2.0 * area * (in + 2) * out * 4.0; /* ConvTranspose 2×2 stride 2: 4 outputs per input pixel */
        area *= 4.0;
        f += 2.0 * area * out * out * 9.0 + (double)c->n_res * 2.0 * area * 2.0 * out * hid * 9.0;
        in = out;
    }
    double lc = (double)c->last_ch, lh = (double)c->last_hidden, k2 = (double)(c->last_k * c->last_k);
    for (int o = 0; o < 2; o++)
        f += 2.0 * A1 * (lc * (in + 2) * 9.0 + (double)c->last_res * 2.0 * lc * lh * 9.0 + (o ? 1.0 : 3.0) * lc * k2);
    return f;
}
