/* CLIP vision tower forward on the runtime ops (upstream CLIP:519-523, CLIP:261-282), plus its cost model. */
#include <math.h>
#include <string.h>

#include "models/clip.h"
#include "nn/ops.h"

#define LN_EPS 1e-5f
/* open-clip / OpenAI CLIP normalisation (Wan clip.py transforms, upstream CLIP:519-523). */
static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

size_t lyra_clip_arena_bytes(const lyra_clip_config *c, int64_t B) {
    return lyra_clip_arena_bytes_as(c, B, LYRA_DTYPE_F32);
}

size_t lyra_clip_arena_bytes_as(const lyra_clip_config *c, int64_t B, lyra_dtype act) {
    int64_t S = c->image_size, W = c->width, T = c->tokens, M = c->mlp, e = (int64_t)lyra_dtype_size(act);
    int f32 = act == LYRA_DTYPE_F32;
    /* a 16-bit model keeps its residual stream in the arena (the f32 output is written at the end), rounds the
     * f32 pixels once for the patch conv, and casts q/k/v to bf16 with a bf16 attention output */
    size_t x = f32 ? 0 : lyra_arena_size(B * T * W * e);
    size_t embed = lyra_arena_size(B * 3 * S * S * 4) + (f32 ? 0 : lyra_arena_size(B * 3 * S * S * e)) +
                   lyra_arena_size(B * W * c->grid * c->grid * e);
    size_t attn = lyra_arena_size(B * T * W * e) + lyra_arena_size(B * T * 3 * W * e) +
                  (f32 ? 0 : lyra_arena_size(B * T * 3 * W * 2) + lyra_arena_size(B * T * W * 2)) +
                  2 * lyra_arena_size(B * T * W * e);
    size_t mlp = lyra_arena_size(B * T * W * e) + lyra_arena_size(B * T * M * e) + lyra_arena_size(B * T * W * e);
    size_t peak = embed > attn ? embed : attn;
    return x + (peak > mlp ? peak : mlp);
}

int64_t lyra_clip_params(const lyra_clip_config *c) {
    int64_t W = c->width, M = c->mlp, P = c->patch;
    int64_t block = 4 * W + 3 * W * W + 3 * W + W * W + W + M * W + M + W * M + W;
    return W * 3 * P * P + W + c->tokens * W + 2 * W + c->used_layers * block;
}

double lyra_clip_flops(const lyra_clip_config *c, int64_t B) {
    double W = (double)c->width, M = (double)c->mlp, T = (double)c->tokens, Bd = (double)B;
    double patches = (double)(c->grid * c->grid);
    double embed = 2.0 * Bd * patches * W * 3.0 * (double)(c->patch * c->patch);
    double block = 2.0 * Bd * T * W * (3.0 * W + W + 2.0 * M) /* qkv, proj, mlp.0, mlp.2 */
                   + 2.0 * Bd * T * T * W * 2.0;              /* Q·Kᵀ and P·V over all heads */
    return embed + block * (double)c->used_layers;
}

lyra_status lyra_clip_preprocess(const lyra_clip *m, lyra_backend *be, lyra_tensor *y, const lyra_tensor *image) {
    int64_t S = m->cfg.image_size;
    if (image->ndim != 4 || image->ne[1] != 3 || image->ne[2] < 1 || image->ne[3] < 1)
        return lyra_error(LYRA_ERR_ARG, "CLIP: image must be (B, 3, H, W) with H, W >= 1");
    if (y->ndim != 4 || y->ne[0] != image->ne[0] || y->ne[1] != 3 || y->ne[2] != S || y->ne[3] != S)
        return lyra_error(LYRA_ERR_ARG, "CLIP: preprocess output must be (B, 3, %lld, %lld)", (long long)S,
                          (long long)S);
    /* Squeeze to S×S whatever the aspect ratio: PyTorch bicubic (A = −0.75), align_corners=False, no
     * antialias, no clamping of the result (upstream CLIP:519-523). */
    lyra_resize_params rp = {.mode = LYRA_RESIZE_BICUBIC, .align_corners = 0, .antialias = 0};
    LYRA_TRY(lyra_op_resize(be, y, image, &rp));
    LYRA_TRY(lyra_op_scale(be, y, y, 0.5f, 0.5f)); /* [−1, 1] -> [0, 1] */
    for (int ch = 0; ch < 3; ch++) {
        lyra_tensor v;
        LYRA_TRY(lyra_tensor_slice(&v, y, 1, ch, ch + 1));
        LYRA_TRY(lyra_op_scale(be, &v, &v, 1.0f, -CLIP_MEAN[ch])); /* torchvision Normalize: sub, then div */
        LYRA_TRY(lyra_op_scale(be, &v, &v, 1.0f / CLIP_STD[ch], 0.0f));
    }
    return LYRA_OK;
}

/* q, k or v (B, T, H, Dh) as a strided view of the fused (B, T, 3W) projection: which = 0, 1, 2 selects the
 * column block [which·W, (which+1)·W); head n uses its columns [n·Dh, (n+1)·Dh) (upstream CLIP:261-282). */
static lyra_tensor qkv_view(const lyra_tensor *qkv, int which, int64_t H) {
    int64_t B = qkv->ne[0], T = qkv->ne[1], W = qkv->ne[2] / 3, Dh = W / H, e = (int64_t)lyra_dtype_size(qkv->dtype);
    lyra_tensor v = *qkv;
    v.ndim = 4;
    v.ne[0] = B, v.ne[1] = T, v.ne[2] = H, v.ne[3] = Dh;
    v.nb[0] = qkv->nb[0], v.nb[1] = qkv->nb[1], v.nb[2] = Dh * e, v.nb[3] = e;
    v.data = (char *)qkv->data + (size_t)which * (size_t)W * (size_t)e;
    return v;
}

static lyra_status embed(const lyra_clip *m, lyra_backend *be, lyra_arena *a, lyra_tensor *x,
                         const lyra_tensor *image) {
    const lyra_clip_config *c = &m->cfg;
    int64_t B = image->ne[0], S = c->image_size, G = c->grid, W = c->width, P = c->patch;
    size_t mark = lyra_arena_mark(a);
    lyra_tensor px, p, pf, pt, xc, xp, cls;
    LYRA_TRY(lyra_arena_tensor(a, &px, LYRA_DTYPE_F32, 4, (int64_t[]){B, 3, S, S}, "CLIP pixels"));
    LYRA_TRY(lyra_clip_preprocess(m, be, &px, image));
    if (m->act != LYRA_DTYPE_F32) { /* the preprocessing runs in f32 before autocast, the conv's input is cast */
        lyra_tensor p16;
        LYRA_TRY(lyra_arena_tensor(a, &p16, m->act, 4, (int64_t[]){B, 3, S, S}, "CLIP pixels (cast)"));
        LYRA_TRY(lyra_op_copy(be, &p16, &px));
        px = p16;
    }
    LYRA_TRY(lyra_arena_tensor(a, &p, m->act, 4, (int64_t[]){B, W, G, G}, "CLIP patches"));
    lyra_conv2d_params cp = {.stride_h = (int)P, .stride_w = (int)P};
    LYRA_TRY(lyra_op_conv2d(be, &p, &px, &m->patch_w, NULL, &cp));
    /* tokens: [cls, patch (0,0), (0,1), …] (row-major grid), then + pos, then pre-LayerNorm. */
    LYRA_TRY(lyra_tensor_reshape(&pf, &p, 3, (int64_t[]){B, W, G * G}));
    LYRA_TRY(lyra_tensor_permute(&pt, &pf, (int[]){0, 2, 1}));
    LYRA_TRY(lyra_tensor_slice(&xp, x, 1, 1, c->tokens));
    LYRA_TRY(lyra_op_copy(be, &xp, &pt));
    LYRA_TRY(lyra_tensor_slice(&xc, x, 1, 0, 1));
    LYRA_TRY(lyra_tensor_expand(&cls, &m->cls, 3, (int64_t[]){B, 1, W}));
    LYRA_TRY(lyra_op_copy(be, &xc, &cls));
    lyra_arena_reset(a, mark);
    LYRA_TRY(lyra_op_add(be, x, x, &m->pos));
    return lyra_op_layer_norm(be, x, x, &m->pre_w, &m->pre_b, LN_EPS);
}

static lyra_status block(const lyra_clip *m, lyra_backend *be, lyra_arena *a, lyra_tensor *x,
                         const lyra_clip_block *b) {
    const lyra_clip_config *c = &m->cfg;
    int64_t B = x->ne[0], T = x->ne[1], W = c->width, H = c->heads;
    const int64_t new[3] = {B, T, W};
    size_t mark = lyra_arena_mark(a);
    lyra_tensor h, qkv, o, t, u;
    LYRA_TRY(lyra_arena_tensor(a, &h, m->act, 3, new, "CLIP norm1"));
    LYRA_TRY(lyra_op_layer_norm(be, &h, x, &b->norm1_w, &b->norm1_b, LN_EPS));
    LYRA_TRY(lyra_arena_tensor(a, &qkv, m->act, 3, (int64_t[]){B, T, 3 * W}, "CLIP qkv"));
    LYRA_TRY(lyra_op_linear(be, &qkv, &h, &b->qkv_w, &b->qkv_b));
    /* upstream's attention() casts q/k/v to bf16 and returns bf16 (upstream ATT:101-112); the proj input is cast
     * back to the autocast dtype */
    lyra_dtype att = m->act == LYRA_DTYPE_F32 ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16;
    lyra_tensor qkv_a = qkv, o_a;
    if (att != m->act) {
        LYRA_TRY(lyra_arena_tensor(a, &qkv_a, att, 3, (int64_t[]){B, T, 3 * W}, "CLIP qkv (bf16)"));
        LYRA_TRY(lyra_op_copy(be, &qkv_a, &qkv));
    }
    LYRA_TRY(lyra_arena_tensor(a, &o_a, att, 3, new, "CLIP attention"));
    lyra_tensor q4 = qkv_view(&qkv_a, 0, H), k4 = qkv_view(&qkv_a, 1, H), v4 = qkv_view(&qkv_a, 2, H), o4;
    LYRA_TRY(lyra_tensor_reshape(&o4, &o_a, 4, (int64_t[]){B, T, H, W / H}));
    LYRA_TRY(lyra_op_attention(be, &o4, &q4, &k4, &v4, NULL, NULL, 1.0f / sqrtf((float)(W / H))));
    o = o_a;
    if (att != m->act) {
        LYRA_TRY(lyra_arena_tensor(a, &o, m->act, 3, new, "CLIP attention (cast)"));
        LYRA_TRY(lyra_op_copy(be, &o, &o_a));
    }
    LYRA_TRY(lyra_arena_tensor(a, &t, m->act, 3, new, "CLIP attention projection"));
    LYRA_TRY(lyra_op_linear(be, &t, &o, &b->proj_w, &b->proj_b));
    LYRA_TRY(lyra_op_add(be, x, x, &t));
    lyra_arena_reset(a, mark);

    LYRA_TRY(lyra_arena_tensor(a, &h, m->act, 3, new, "CLIP norm2"));
    LYRA_TRY(lyra_op_layer_norm(be, &h, x, &b->norm2_w, &b->norm2_b, LN_EPS));
    LYRA_TRY(lyra_arena_tensor(a, &u, m->act, 3, (int64_t[]){B, T, c->mlp}, "CLIP mlp"));
    LYRA_TRY(lyra_op_linear(be, &u, &h, &b->fc1_w, &b->fc1_b));
    LYRA_TRY(lyra_op_gelu(be, &u, &u, 0)); /* exact erf GELU (activation="gelu", upstream CLIP:453-478) */
    LYRA_TRY(lyra_arena_tensor(a, &t, m->act, 3, new, "CLIP mlp out"));
    LYRA_TRY(lyra_op_linear(be, &t, &u, &b->fc2_w, &b->fc2_b));
    LYRA_TRY(lyra_op_add(be, x, x, &t));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

lyra_status lyra_clip_encode(const lyra_clip *m, lyra_backend *be, lyra_arena *arena, lyra_tensor *out,
                             const lyra_tensor *image) {
    if (m->random.pending) /* deferred random weights (clip.h): lyra_clip_place fills them, on any backend */
        return lyra_error(LYRA_ERR_INTERNAL, "CLIP: its random weights are not filled yet (lyra_clip_place)");
    const lyra_clip_config *c = &m->cfg;
    if (image->ndim != 4 || image->ne[0] < 1)
        return lyra_error(LYRA_ERR_ARG, "CLIP: image must be (B, 3, H, W) with B >= 1");
    int64_t B = image->ne[0];
    if (out->dtype != LYRA_DTYPE_F32 || out->ndim != 3 || out->ne[0] != B || out->ne[1] != c->tokens ||
        out->ne[2] != c->width || !lyra_tensor_is_contiguous(out))
        return lyra_error(LYRA_ERR_ARG, "CLIP: out must be a contiguous f32 (%lld, %lld, %lld) tensor", (long long)B,
                          (long long)c->tokens, (long long)c->width);
    size_t mark = lyra_arena_mark(arena);
    /* The residual stream: the f32 output itself, or a 16-bit arena tensor widened into it at the end. */
    lyra_tensor x = *out;
    lyra_status s = LYRA_OK;
    if (m->act != LYRA_DTYPE_F32) {
        s = lyra_arena_tensor(arena, &x, m->act, 3, out->ne, "CLIP residual");
        x.device = out->device;
    }
    if (s == LYRA_OK) s = embed(m, be, arena, &x, image);
    /* All blocks but the last (use_31_block): the output is the residual stream, no post-norm (upstream CLIP:261-282).
     * */
    for (int64_t l = 0; l < c->used_layers && s == LYRA_OK; l++) s = block(m, be, arena, &x, &m->blocks[l]);
    if (s == LYRA_OK && m->act != LYRA_DTYPE_F32) s = lyra_op_copy(be, out, &x);
    lyra_arena_reset(arena, mark);
    return s;
}
