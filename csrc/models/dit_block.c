/* One Lyra-2 attention block (upstream WL:150-212, W:280-437):
 * adaLN-modulated self-attention whose q/k inputs get the camera and buffer embeddings added (kq_only),
 * q/k RMSNorm over the full width, 3-D RoPE, gated residual; cross-attention to the text and CLIP tokens with two
 * separate softmaxes summed before the output projection; modulated FFN with a gated residual. */
#include <math.h>
#include <stdio.h>

#include "models/dit_internal.h"
#include "nn/measure/measure.h"

/* Rows per tile of the buffer sin/cos features, so the (rows, 20480) feature matrix stays ~16 MB. */
#define SINCOS_TILE_BYTES ((size_t)16 << 20)

/* kq (1, L, D) = cam_encoder(CamTok) + validity · buffer_encoder(sincos(BufTok)) (WL:166-196). */
static lyra_status kq_bias(dit_run *r, const lyra_dit_block *blk, lyra_tensor *kq) {
    const lyra_dit_config *cfg = &r->m->cfg;
    int64_t L = r->L, S = cfg->buffer_squeeze, E = cfg->buffer_embed_dim, Cb4 = 4 * (int64_t)cfg->buffer_in_dim;
    LYRA_TRY(dit_linear(r, kq, &r->camtok, &blk->cam));
    size_t mark = lyra_arena_mark(r->a);
    lyra_tensor hb, z, buf, val;
    int64_t tile = (int64_t)(SINCOS_TILE_BYTES / ((size_t)E * sizeof(float)));
    if (tile < 1) tile = 1;
    if (tile > L) tile = L;
    LYRA_TRY(dit_alloc_act(r, &hb, 3, (int64_t[]){1, L, S}, "buffer squeeze"));
    LYRA_TRY(dit_alloc_act(r, &z, 3, (int64_t[]){1, tile, E}, "buffer sin/cos"));
    for (int64_t l0 = 0; l0 < L; l0 += tile) {
        int64_t n = L - l0 < tile ? L - l0 : tile;
        lyra_tensor zt, rows, ut, ht;
        LYRA_TRY(lyra_tensor_slice(&zt, &z, 1, 0, n));
        LYRA_TRY(lyra_tensor_slice(&rows, &r->buftok, 1, l0, l0 + n));
        LYRA_TRY(lyra_tensor_slice(&ut, &rows, 2, 0, Cb4));
        LYRA_TRY(lyra_tensor_slice(&ht, &hb, 1, l0, l0 + n));
        LYRA_TRY(lyra_op_sincos(r->be, &zt, &ut, LYRA_DIT_BUFFER_MULTIRES));
        LYRA_TRY(dit_linear(r, &ht, &zt, &blk->buf0));
    }
    LYRA_TRY(dit_alloc_act(r, &buf, 3, (int64_t[]){1, L, cfg->dim}, "buffer embedding"));
    LYRA_TRY(dit_linear(r, &buf, &hb, &blk->buf1));
    LYRA_TRY(lyra_tensor_slice(&val, &r->buftok, 2, Cb4, Cb4 + 1)); /* (1, L, 1): 0 on 'k' history tokens */
    LYRA_TRY(lyra_op_mul(r->be, &buf, &buf, &val));
    LYRA_TRY(lyra_op_add(r->be, kq, kq, &buf));
    lyra_arena_reset(r->a, mark);
    return LYRA_OK;
}

/* (1, L, D) viewed as (1, L, heads, head_dim). */
static lyra_status heads(const dit_run *r, lyra_tensor *v, const lyra_tensor *t) {
    const lyra_dit_config *cfg = &r->m->cfg;
    return lyra_tensor_reshape(v, t, 4, (int64_t[]){1, t->ne[1], cfg->num_heads, cfg->head_dim});
}

static lyra_status self_attention(dit_run *r, const lyra_dit_block *blk, lyra_tensor *kq, const lyra_tensor *mod) {
    const lyra_dit_config *cfg = &r->m->cfg;
    int64_t L = r->L, D = cfg->dim;
    lyra_tensor shift, scale, gate, y, q, k, v, o, q4, k4, v4, o3;
    LYRA_TRY(lyra_tensor_slice(&shift, mod, 1, 0, 1));
    LYRA_TRY(lyra_tensor_slice(&scale, mod, 1, 1, 2));
    LYRA_TRY(lyra_tensor_slice(&gate, mod, 1, 2, 3));
    size_t mark = lyra_arena_mark(r->a);
    int64_t ne[3] = {1, L, D};
    LYRA_TRY(dit_alloc_act(r, &y, 3, ne, "norm1"));
    LYRA_TRY(dit_alloc_act(r, &q, 3, ne, "q"));
    LYRA_TRY(dit_alloc_act(r, &k, 3, ne, "k"));
    LYRA_TRY(dit_alloc_act(r, &v, 3, ne, "v"));
    LYRA_TRY(dit_alloc_act(r, &o, 4, (int64_t[]){1, L, cfg->num_heads, cfg->head_dim}, "attention out"));
    LYRA_TRY(lyra_op_layer_norm(r->be, &y, &r->x, NULL, NULL, cfg->eps));
    LYRA_TRY(lyra_op_modulate(r->be, &y, &y, &shift, &scale));
    /* kq_only: camera and buffer embeddings enter q and k, not v (W:337-343). */
    LYRA_TRY(lyra_op_add(r->be, kq, kq, &y));
    LYRA_TRY(dit_linear(r, &q, kq, &blk->sa_q));
    LYRA_TRY(lyra_op_rms_norm(r->be, &q, &q, &blk->sa_norm_q, cfg->eps));
    LYRA_TRY(dit_linear(r, &k, kq, &blk->sa_k));
    LYRA_TRY(lyra_op_rms_norm(r->be, &k, &k, &blk->sa_norm_k, cfg->eps));
    LYRA_TRY(dit_linear(r, &v, &y, &blk->sa_v));
    LYRA_TRY(heads(r, &q4, &q));
    LYRA_TRY(heads(r, &k4, &k));
    LYRA_TRY(heads(r, &v4, &v));
    LYRA_TRY(lyra_op_rope(r->be, &q4, &q4, &r->phi, LYRA_ROPE_INTERLEAVED, 1));
    LYRA_TRY(lyra_op_rope(r->be, &k4, &k4, &r->phi, LYRA_ROPE_INTERLEAVED, 1));
    LYRA_TRY(lyra_op_attention(r->be, &o, &q4, &k4, &v4, NULL, NULL, 1.0f / sqrtf((float)cfg->head_dim)));
    LYRA_TRY(lyra_tensor_reshape(&o3, &o, 3, ne));
    LYRA_TRY(dit_linear(r, &y, &o3, &blk->sa_o)); /* y is free once v exists */
    LYRA_TRY(lyra_op_gate(r->be, &r->x, &r->x, &gate, &y));
    lyra_arena_reset(r->a, mark);
    return LYRA_OK;
}

static lyra_status cross_attention(dit_run *r, const lyra_dit_block *blk) {
    const lyra_dit_config *cfg = &r->m->cfg;
    int64_t L = r->L, D = cfg->dim, Lt = LYRA_DIT_TEXT_TOKENS;
    size_t mark = lyra_arena_mark(r->a);
    int64_t ne[3] = {1, L, D};
    lyra_tensor xn, q, kt, vt, ki, vi, ot, oi, q4, kt4, vt4, ki4, vi4, ot3;
    LYRA_TRY(dit_alloc_act(r, &xn, 3, ne, "norm3"));
    LYRA_TRY(dit_alloc_act(r, &q, 3, ne, "cross q"));
    LYRA_TRY(dit_alloc_act(r, &kt, 3, (int64_t[]){1, Lt, D}, "text k"));
    LYRA_TRY(dit_alloc_act(r, &vt, 3, (int64_t[]){1, Lt, D}, "text v"));
    LYRA_TRY(dit_alloc_act(r, &ki, 3, (int64_t[]){1, r->Lc, D}, "image k"));
    LYRA_TRY(dit_alloc_act(r, &vi, 3, (int64_t[]){1, r->Lc, D}, "image v"));
    LYRA_TRY(dit_alloc_act(r, &ot, 4, (int64_t[]){1, L, cfg->num_heads, cfg->head_dim}, "text attention"));
    LYRA_TRY(dit_alloc_act(r, &oi, 4, (int64_t[]){1, L, cfg->num_heads, cfg->head_dim}, "image attention"));
    LYRA_TRY(lyra_op_layer_norm(r->be, &xn, &r->x, &blk->norm3_w, &blk->norm3_b, cfg->eps));
    LYRA_TRY(dit_linear(r, &q, &xn, &blk->ca_q));
    LYRA_TRY(lyra_op_rms_norm(r->be, &q, &q, &blk->ca_norm_q, cfg->eps));
    LYRA_TRY(dit_linear(r, &kt, &r->ctx_txt, &blk->ca_k));
    LYRA_TRY(lyra_op_rms_norm(r->be, &kt, &kt, &blk->ca_norm_k, cfg->eps));
    LYRA_TRY(dit_linear(r, &vt, &r->ctx_txt, &blk->ca_v));
    LYRA_TRY(dit_linear(r, &ki, &r->ctx_img, &blk->ca_k_img));
    LYRA_TRY(lyra_op_rms_norm(r->be, &ki, &ki, &blk->ca_norm_k_img, cfg->eps));
    LYRA_TRY(dit_linear(r, &vi, &r->ctx_img, &blk->ca_v_img));
    LYRA_TRY(heads(r, &q4, &q));
    LYRA_TRY(heads(r, &kt4, &kt));
    LYRA_TRY(heads(r, &vt4, &vt));
    LYRA_TRY(heads(r, &ki4, &ki));
    LYRA_TRY(heads(r, &vi4, &vi));
    float scale = 1.0f / sqrtf((float)cfg->head_dim);
    LYRA_TRY(lyra_op_attention(r->be, &ot, &q4, &kt4, &vt4, NULL, NULL, scale));
    LYRA_TRY(lyra_op_attention(r->be, &oi, &q4, &ki4, &vi4, NULL, NULL, scale));
    LYRA_TRY(lyra_op_add(r->be, &ot, &ot, &oi)); /* two softmaxes, summed before the projection (W:428-436) */
    LYRA_TRY(lyra_tensor_reshape(&ot3, &ot, 3, ne));
    LYRA_TRY(dit_linear(r, &xn, &ot3, &blk->ca_o)); /* xn is free once q exists */
    LYRA_TRY(lyra_op_add(r->be, &r->x, &r->x, &xn));
    lyra_arena_reset(r->a, mark);
    return LYRA_OK;
}

static lyra_status feed_forward(dit_run *r, const lyra_dit_block *blk, const lyra_tensor *mod) {
    const lyra_dit_config *cfg = &r->m->cfg;
    int64_t L = r->L, D = cfg->dim;
    lyra_tensor shift, scale, gate, n2, h;
    LYRA_TRY(lyra_tensor_slice(&shift, mod, 1, 3, 4));
    LYRA_TRY(lyra_tensor_slice(&scale, mod, 1, 4, 5));
    LYRA_TRY(lyra_tensor_slice(&gate, mod, 1, 5, 6));
    size_t mark = lyra_arena_mark(r->a);
    LYRA_TRY(dit_alloc_act(r, &n2, 3, (int64_t[]){1, L, D}, "norm2"));
    LYRA_TRY(dit_alloc_act(r, &h, 3, (int64_t[]){1, L, cfg->ffn_dim}, "ffn hidden"));
    LYRA_TRY(lyra_op_layer_norm(r->be, &n2, &r->x, NULL, NULL, cfg->eps));
    LYRA_TRY(lyra_op_modulate(r->be, &n2, &n2, &shift, &scale));
    LYRA_TRY(dit_linear(r, &h, &n2, &blk->ffn0));
    LYRA_TRY(lyra_op_gelu(r->be, &h, &h, 1));
    LYRA_TRY(dit_linear(r, &n2, &h, &blk->ffn2)); /* n2 is free once h exists */
    LYRA_TRY(lyra_op_gate(r->be, &r->x, &r->x, &gate, &n2));
    lyra_arena_reset(r->a, mark);
    return LYRA_OK;
}

lyra_status dit_block_forward(dit_run *r, int i, const lyra_dit_block *blk) {
    const lyra_dit_config *cfg = &r->m->cfg;
    size_t mark = lyra_arena_mark(r->a);
    lyra_tensor mod, e0, kq;
    /* m = modulation + e0, f32; rows: shift1, scale1, gate1, shift2, scale2, gate2 (WL:162-165). */
    LYRA_TRY(dit_alloc(r, &mod, 3, (int64_t[]){1, 6, cfg->dim}, "modulation"));
    LYRA_TRY(lyra_tensor_reshape(&e0, &r->e0, 3, (int64_t[]){1, 6, cfg->dim}));
    LYRA_TRY(lyra_op_add(r->be, &mod, &blk->modulation, &e0));
    LYRA_TRY(dit_alloc_act(r, &kq, 3, (int64_t[]){1, r->L, cfg->dim}, "kq bias"));
    LYRA_TRY(kq_bias(r, blk, &kq));
    LYRA_TRY(self_attention(r, blk, &kq, &mod));
    LYRA_TRY(cross_attention(r, blk));
    LYRA_TRY(feed_forward(r, blk, &mod));
    lyra_arena_reset(r->a, mark);
    char name[32];
    snprintf(name, sizeof name, "block%d", i);
    dit_probe(r, name, &r->x);
    return LYRA_OK;
}
