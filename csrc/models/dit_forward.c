/* The forward pass of the Lyra-2 DiT (upstream WL:902-912, WL:555-803, WL:583-584): input checks, then the stages
 * in call order (dit_tokens.c, dit_rope.c, dit_embed.c, dit_block.c with dit_stream.c, dit_head.c, all built on the
 * run helpers of dit_run.c); last the public entry, which sizes the arena by measuring this same forward
 * (dit_measure.c) and runs it. */
#include <stdio.h>
#include <string.h>

#include "models/dit_internal.h"

/* Checks one input: f32 (or, with bf16_ok, bf16), on the model's device, shape (want[0..ndim-1]); a want entry of
 * -1 accepts any size >= 1. */
static lyra_status check_input_as(const lyra_dit *m, const lyra_tensor *t, const char *arg, int ndim,
                                  const int64_t *want, int bf16_ok) {
    if (!t || !t->data) return lyra_error(LYRA_ERR_ARG, "dit: %s is required", arg);
    if (t->dtype != LYRA_DTYPE_F32 && !(bf16_ok && t->dtype == LYRA_DTYPE_BF16))
        return lyra_error(LYRA_ERR_TYPE, "dit: %s must be float32%s", arg, bf16_ok ? " or bfloat16" : "");
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

static lyra_status check_input(const lyra_dit *m, const lyra_tensor *t, const char *arg, int ndim, const int64_t *want) {
    return check_input_as(m, t, arg, ndim, want, 0);
}

/* The forward on m's backend and arena, which must already be large enough (lyra_dit_forward sizes it by
 * measuring this same function, dit_measure.c). */
lyra_status dit_forward_run(lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out, lyra_dit_probe_fn probe,
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
    r.act = m->act_dtype;

    LYRA_TRY(check_input(m, in->x, "x_B_C_T_H_W", 5, (int64_t[]){1, cfg->out_dim, r.T, -1, -1}));
    r.H = in->x->ne[3];
    r.W = in->x->ne[4];
    LYRA_TRY(lyra_framepack_chunks(&m->fp, r.H, r.W, r.chunks, &r.L, &r.gen_start));
    r.Hb = r.H / 2;
    r.Wb = r.W / 2;
    int64_t Cy = cfg->in_dim - cfg->out_dim + cfg->cam_channels;
    /* the condition and the correspondence buffer may be stored in bf16, as upstream keeps them on the GPU
     * (dit_tokens.c widens each chunk's slots to f32 as it tokenizes them) */
    LYRA_TRY(check_input_as(m, in->y, "y_B_C_T_H_W", 5, (int64_t[]){1, Cy, r.T, r.H, r.W}, 1));
    LYRA_TRY(check_input_as(m, in->buffer, "y_buffer_B_C_T_H_W", 5, (int64_t[]){1, cfg->buffer_in_dim, r.T, r.H, r.W},
                            1));
    LYRA_TRY(check_input(m, in->text, "crossattn_emb", 3, (int64_t[]){1, LYRA_DIT_TEXT_TOKENS, cfg->text_dim}));
    LYRA_TRY(check_input(m, in->clip, "frame_cond_crossattn_emb_B_L_D", 3, (int64_t[]){1, -1, cfg->clip_dim}));
    LYRA_TRY(check_input(m, out, "output", 5, (int64_t[]){1, cfg->out_dim, m->fp.n_new, r.H, r.W}));
    if (!lyra_tensor_is_contiguous(out)) return lyra_error(LYRA_ERR_ARG, "dit: the output must be contiguous");
    r.Lc = in->clip->ne[1];

    m->arena.used = 0;
    int64_t L = r.L, D = cfg->dim;
    lyra_status st;
#define STEP(call) do { if ((st = (call)) != LYRA_OK) goto done; } while (0)
    STEP(dit_alloc_act(&r, &r.x, 3, (int64_t[]){1, L, D}, "residual stream"));
    STEP(dit_alloc_act(&r, &r.camtok, 3, (int64_t[]){1, L, cfg->cam_dim}, "camera tokens"));
    STEP(dit_alloc_act(&r, &r.buftok, 3, (int64_t[]){1, L, 4 * (int64_t)cfg->buffer_in_dim + 1}, "buffer tokens"));
    STEP(dit_alloc(&r, &r.phi, 2, (int64_t[]){L, cfg->head_dim / 2}, "rope angles"));
    STEP(dit_alloc(&r, &r.e, 2, (int64_t[]){1, D}, "time embedding"));
    STEP(dit_alloc(&r, &r.e0, 2, (int64_t[]){1, 6 * D}, "time projection"));
    STEP(dit_alloc_act(&r, &r.ctx_txt, 3, (int64_t[]){1, LYRA_DIT_TEXT_TOKENS, D}, "text context"));
    STEP(dit_alloc_act(&r, &r.ctx_img, 3, (int64_t[]){1, r.Lc, D}, "image context"));
    STEP(dit_tokenize(&r, in));
    STEP(dit_rope_table(&r));
    STEP(dit_time_embed(&r, in->t));
    STEP(dit_context(&r, in->text, in->clip));
    for (int i = 0; i < cfg->num_layers; i++) {
        const lyra_dit_block *blk;
        STEP(dit_stream_block(&r, i, &blk));
        STEP(dit_block_forward(&r, i, blk));
    }
    STEP(dit_head(&r, out));
#undef STEP
done:
    m->arena.used = 0;
    return st;
}

/* The forward sized by measuring itself first (dit_measure.c), then run. */
lyra_status lyra_dit_forward(lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out, lyra_dit_probe_fn probe,
                             void *probe_ctx) {
    LYRA_TRY(lyra_dit_random_materialize(m)); /* deferred random weights used on the CPU (models/dit.h) */
    size_t need;
    LYRA_TRY(dit_arena_need(m, dit_forward_run, in, out, &need));
    m->arena.used = 0;
    const void *base = m->arena.base;
    const size_t capacity = m->arena.capacity;
    LYRA_TRY(lyra_backend_arena_reserve(&m->be, &m->arena, need, "dit forward"));
    /* a new or regrown arena (or a first one after placement freed the old) holds no RoPE table */
    if (!base || base != m->arena.base || capacity != m->arena.capacity) m->rope_kept.data = NULL;
    lyra_status st = dit_forward_run(m, in, out, probe, probe_ctx);
    if (st != LYRA_OK) m->rope_kept.data = NULL; /* a failed forward may have stopped mid-upload */
    return st;
}

void lyra_dit_arena_release(lyra_dit *m) {
    if (m->be.device == LYRA_DEVICE_CPU || !m->arena.base) return;
    lyra_backend_arena_free(&m->be, &m->arena);
    m->rope_kept.data = NULL;
}
