/* The forward pass of the Lyra-2 DiT (network.md §3): input checks, arena sizing, then the stages in call order
 * (dit_tokens.c, dit_rope.c, dit_embed.c, dit_block.c, dit_head.c, all built on the run helpers of dit_run.c). */
#include <stdio.h>
#include <string.h>

#include "models/dit_internal.h"

/* Checks one input: f32, on the model's device, shape (want[0..ndim-1]); a want entry of -1 accepts any size >= 1. */
static lyra_status check_input(const lyra_dit *m, const lyra_tensor *t, const char *arg, int ndim, const int64_t *want) {
    if (!t || !t->data) return lyra_error(LYRA_ERR_ARG, "dit: %s is required", arg);
    if (t->dtype != LYRA_DTYPE_F32) return lyra_error(LYRA_ERR_TYPE, "dit: %s must be float32", arg);
    if (t->device != m->be.device) return lyra_error(LYRA_ERR_ARG, "dit: %s is not on the model's device", arg);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = want[i] < 0 ? t->ne[i] >= 1 : t->ne[i] == want[i];
    if (!ok) {
        char got[96], exp[128];
        int o = snprintf(exp, sizeof exp, "(");
        for (int i = 0; i < ndim && o < (int)sizeof exp; i++)
            o += want[i] < 0 ? snprintf(exp + o, sizeof exp - (size_t)o, "%s*", i ? ", " : "")
                             : snprintf(exp + o, sizeof exp - (size_t)o, "%s%lld", i ? ", " : "", (long long)want[i]);
        if (o < (int)sizeof exp) snprintf(exp + o, sizeof exp - (size_t)o, ")");
        return lyra_error(LYRA_ERR_ARG, "dit: %s has shape %s, expected %s", arg,
                          lyra_tensor_shape_str(t, got, sizeof got), exp);
    }
    return LYRA_OK;
}

/* The two LoRA temporaries of dit_linear for `rows` rows and `out` outputs. */
static size_t lora_bytes(int64_t rows, int64_t out, int max_rank) {
    return max_rank > 0 ? lyra_arena_f32(rows * max_rank) + lyra_arena_f32(rows * out) : 0;
}

size_t lyra_dit_arena_bytes(const lyra_dit_config *c, const lyra_framepack *fp, int64_t H, int64_t W, int64_t Lc,
                            int max_rank) {
    lyra_fp_chunk ch[LYRA_FP_MAX_SEGMENTS + 1];
    int64_t L, gen_start;
    if (lyra_framepack_chunks(fp, H, W, ch, &L, &gen_start) != LYRA_OK) return 0;
    int64_t D = c->dim, T = fp->n_total, Hb = H / 2, Wb = W / 2, Cb = c->buffer_in_dim, C = c->cam_dim;
    int64_t Lt = LYRA_DIT_TEXT_TOKENS, E = c->buffer_embed_dim;
    size_t persistent = lyra_arena_f32(L * D) + lyra_arena_f32(L * C) + lyra_arena_f32(L * (4 * Cb + 1)) +
                        lyra_arena_f32(L * c->head_dim / 2) + lyra_arena_f32(D) + lyra_arena_f32(6 * D) +
                        lyra_arena_f32(Lt * D) + lyra_arena_f32(Lc * D);
    /* Tokenization: x+y, then per chunk the patch, camera and buffer temporaries. */
    size_t chunk = 0;
    for (int k = 0; k <= fp->n_segments; k++) {
        const lyra_fp_chunk *q = &ch[k];
        int64_t in = (int64_t)c->in_dim * q->pt * q->ph * q->pw;
        size_t b = lyra_arena_f32(c->in_dim * q->f * q->pt * q->h * q->ph * q->w * q->pw) +
                   lyra_arena_f32(q->n_tokens * in) + lora_bytes(q->n_tokens, D, max_rank);
        b += lyra_arena_f32(q->frames * Hb * Wb * C) + lyra_arena_f32(C * q->f * q->qt * q->h * q->qh * q->w * q->qw) +
             lyra_arena_f32(C * q->n_tokens);
        b += lyra_arena_f32(Cb * q->frames * (H / q->K + 1) * (W / q->K + 1)) * 2 +
             lyra_arena_f32(q->n_tokens * 4 * Cb);
        chunk = lyra_size_max(chunk, b);
    }
    size_t tokenize = lyra_arena_f32(c->in_dim * T * H * W) + chunk;
    size_t time = lyra_arena_f32(c->freq_dim) + 2 * lyra_arena_f32(D) + lora_bytes(1, 6 * D, max_rank);
    size_t context = lyra_size_max(lyra_arena_f32(Lt * D) + lora_bytes(Lt, D, max_rank),
                                   2 * lyra_arena_f32(Lc * c->clip_dim) +
                                       lora_bytes(Lc, lyra_size_max((size_t)c->clip_dim, (size_t)D), max_rank));
    int64_t tile = (int64_t)(((size_t)16 << 20) / ((size_t)E * 4));
    tile = tile < 1 ? 1 : tile > L ? L : tile;
    size_t attn_self = 5 * lyra_arena_f32(L * D) + lora_bytes(L, D, max_rank);
    size_t attn_cross = 4 * lyra_arena_f32(L * D) + 2 * lyra_arena_f32(Lt * D) + 2 * lyra_arena_f32(Lc * D) +
                        lora_bytes(L, D, max_rank);
    size_t ffn = lyra_arena_f32(L * D) + lyra_arena_f32(L * c->ffn_dim) +
                 lora_bytes(L, lyra_size_max((size_t)c->ffn_dim, (size_t)D), max_rank);
    size_t bufstage = lyra_arena_f32(L * c->buffer_squeeze) + lyra_arena_f32(tile * E) + lyra_arena_f32(L * D) +
                      lora_bytes(L, lyra_size_max((size_t)c->buffer_squeeze, (size_t)D), max_rank);
    size_t block = lyra_arena_f32(6 * D) + lyra_arena_f32(L * D) +
                   lyra_size_max(lyra_size_max(bufstage, attn_self), lyra_size_max(attn_cross, ffn));
    size_t head = lyra_arena_f32(2 * D) + lyra_arena_f32(L * D) + lyra_arena_f32(L * 4 * c->out_dim) +
                  lora_bytes(L, 4 * c->out_dim, max_rank);
    return persistent +
           lyra_size_max(lyra_size_max(tokenize, time), lyra_size_max(lyra_size_max(context, block), head)) +
           ((size_t)1 << 16);
}

lyra_status lyra_dit_forward(lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out, lyra_dit_probe_fn probe,
                             void *probe_ctx) {
    const lyra_dit_config *cfg = &m->cfg;
    dit_run r;
    memset(&r, 0, sizeof r);
    r.m = m;
    r.be = &m->be;
    r.a = &m->arena;
    r.probe = probe;
    r.probe_ctx = probe_ctx;
    r.n_chunks = m->fp.n_segments + 1;
    r.T = m->fp.n_total;

    LYRA_TRY(check_input(m, in->x, "x_B_C_T_H_W", 5, (int64_t[]){1, cfg->out_dim, r.T, -1, -1}));
    r.H = in->x->ne[3];
    r.W = in->x->ne[4];
    LYRA_TRY(lyra_framepack_chunks(&m->fp, r.H, r.W, r.chunks, &r.L, &r.gen_start));
    r.Hb = r.H / 2;
    r.Wb = r.W / 2;
    int64_t Cy = cfg->in_dim - cfg->out_dim + cfg->cam_channels;
    LYRA_TRY(check_input(m, in->y, "y_B_C_T_H_W", 5, (int64_t[]){1, Cy, r.T, r.H, r.W}));
    LYRA_TRY(check_input(m, in->buffer, "y_buffer_B_C_T_H_W", 5,
                         (int64_t[]){1, cfg->buffer_in_dim, r.T, r.H, r.W}));
    LYRA_TRY(check_input(m, in->text, "crossattn_emb", 3, (int64_t[]){1, LYRA_DIT_TEXT_TOKENS, cfg->text_dim}));
    LYRA_TRY(check_input(m, in->clip, "frame_cond_crossattn_emb_B_L_D", 3, (int64_t[]){1, -1, cfg->clip_dim}));
    LYRA_TRY(check_input(m, out, "output", 5, (int64_t[]){1, cfg->out_dim, m->fp.n_new, r.H, r.W}));
    if (!lyra_tensor_is_contiguous(out)) return lyra_error(LYRA_ERR_ARG, "dit: the output must be contiguous");
    r.Lc = in->clip->ne[1];

    int max_rank = 0;
    for (int a = 0; a < m->n_adapters; a++) max_rank = m->adapters[a].rank > max_rank ? m->adapters[a].rank : max_rank;
    size_t need = lyra_dit_arena_bytes(cfg, &m->fp, r.H, r.W, r.Lc, max_rank);
    m->arena.used = 0;
    LYRA_TRY(lyra_arena_reserve(&m->arena, need));

    int64_t L = r.L, D = cfg->dim;
    lyra_status st;
#define STEP(call) do { if ((st = (call)) != LYRA_OK) goto done; } while (0)
    STEP(dit_alloc(&r, &r.x, 3, (int64_t[]){1, L, D}, "residual stream"));
    STEP(dit_alloc(&r, &r.camtok, 3, (int64_t[]){1, L, cfg->cam_dim}, "camera tokens"));
    STEP(dit_alloc(&r, &r.buftok, 3, (int64_t[]){1, L, 4 * (int64_t)cfg->buffer_in_dim + 1}, "buffer tokens"));
    STEP(dit_alloc(&r, &r.phi, 2, (int64_t[]){L, cfg->head_dim / 2}, "rope angles"));
    STEP(dit_alloc(&r, &r.e, 2, (int64_t[]){1, D}, "time embedding"));
    STEP(dit_alloc(&r, &r.e0, 2, (int64_t[]){1, 6 * D}, "time projection"));
    STEP(dit_alloc(&r, &r.ctx_txt, 3, (int64_t[]){1, LYRA_DIT_TEXT_TOKENS, D}, "text context"));
    STEP(dit_alloc(&r, &r.ctx_img, 3, (int64_t[]){1, r.Lc, D}, "image context"));
    STEP(dit_tokenize(&r, in));
    STEP(dit_rope_table(&r));
    STEP(dit_time_embed(&r, in->t));
    STEP(dit_context(&r, in->text, in->clip));
    for (int i = 0; i < cfg->num_layers; i++) STEP(dit_block_forward(&r, i));
    STEP(dit_head(&r, out));
#undef STEP
done:
    m->arena.used = 0;
    return st;
}
