/* Private pieces shared by the csrc/models/dit_*.c files. The files depend downward only, in this order:
 *   dit_config.c   names and the configuration detected from the weights
 *   dit_weights.c  the parameter table, loading, freeing
 *   dit_lora.c     LoRA adapters: attach, merge
 *   dit_run.c      the helpers of one forward pass (arena tensors, probe, upload, Linear + LoRA terms)
 *   dit_tokens.c, dit_rope.c, dit_embed.c, dit_block.c, dit_head.c   the stages, each on dit_run.c only
 *   dit_forward.c  lyra_dit_forward: checks, arena size, the stages in call order */
#ifndef LYRA_MODELS_DIT_INTERNAL_H
#define LYRA_MODELS_DIT_INTERNAL_H

#include "models/dit.h"
#include "nn/ops.h"

/* One checkpoint tensor of the model: where it goes and what shape it must have. */
struct lyra_dit_param {
    char name[96];
    lyra_tensor *dst;
    int ndim;
    int64_t ne[3];
    int matrix;               /* 1: a Linear weight, kept in the checkpoint's float dtype; 0: stored as f32 */
    lyra_dit_linear *linear;  /* for "<module>.weight" of a Linear: the LoRA target */
};

/* ---- dit_config.c */

/* "net.xxx" -> "xxx" (DCP keys carry the prefix, network.md §5.1); other names unchanged. */
const char *dit_strip_net(const char *name);
/* The tensor called `name` (after dit_strip_net on the source names), or NULL. */
const lyra_dit_named *dit_find(const lyra_dit_named *src, int n, const char *name);

/* ---- dit_weights.c */

/* Fills m->params / m->n_params from m->cfg (the table the loader and the LoRA attacher use). */
lyra_status dit_params_build(lyra_dit *m);
/* The Linear whose module path is `module` ("blocks.3.self_attn.q"), or NULL. */
lyra_dit_linear *dit_find_linear(lyra_dit *m, const char *module, const lyra_dit_param **param);

/* State of one forward pass. The persistent activations live at the bottom of the arena; each phase marks and
 * resets above them. */
typedef struct dit_run {
    lyra_dit *m;
    lyra_backend *be;
    lyra_arena *a;
    lyra_fp_chunk chunks[LYRA_FP_MAX_SEGMENTS + 1];
    int n_chunks;
    int64_t T, H, W, Hb, Wb, L, gen_start, Lc;
    lyra_dit_probe_fn probe;
    void *probe_ctx;
    lyra_tensor x;        /* (1, L, D) residual stream */
    lyra_tensor camtok;   /* (1, L, cam_dim) */
    lyra_tensor buftok;   /* (1, L, 4·buffer_in_dim + 1), last channel = validity */
    lyra_tensor phi;      /* (L, head_dim/2) RoPE angles */
    lyra_tensor e;        /* (1, D) time embedding */
    lyra_tensor e0;       /* (1, 6D) time projection */
    lyra_tensor ctx_txt;  /* (1, 512, D) */
    lyra_tensor ctx_img;  /* (1, Lc, D) */
} dit_run;

/* ---- dit_run.c */

/* A contiguous f32 activation of shape ne from the run's arena. */
lyra_status dit_alloc(dit_run *r, lyra_tensor *t, int ndim, const int64_t *ne, const char *what);
/* Reports a tensor to the probe when one is installed. */
void dit_probe(dit_run *r, const char *name, const lyra_tensor *t);

/* y (..., out) = lin(x (..., in)) including the active LoRA terms (unmerged: y = Wx + b + Σ w_a (B_a A_a x + bias_a)). */
lyra_status dit_linear(dit_run *r, lyra_tensor *y, const lyra_tensor *x, const lyra_dit_linear *lin);

/* Host <-> backend copies for small host-built tables. The CPU backend shares host memory; other backends
 * are not wired yet (candidate for csrc/nn: an upload wrapper in ops.h). */
lyra_status dit_upload(dit_run *r, lyra_tensor *dst, const void *host, size_t bytes);

/* ---- the stages, in the forward's call order (dit_tokens.c, dit_rope.c, dit_embed.c, dit_block.c, dit_head.c) */

/* §3.1-3.4: r->x, r->camtok, r->buftok from the inputs. */
lyra_status dit_tokenize(dit_run *r, const lyra_dit_inputs *in);
/* §3.5: r->phi (host table copied to the backend). */
lyra_status dit_rope_table(dit_run *r);
/* §3.6: r->e, r->e0. */
lyra_status dit_time_embed(dit_run *r, double t);
/* §3.7: r->ctx_txt, r->ctx_img. */
lyra_status dit_context(dit_run *r, const lyra_tensor *text, const lyra_tensor *clip);
/* §3.8: block i on r->x, in place. */
lyra_status dit_block_forward(dit_run *r, int i);
/* §3.9: head + unpatchify of the generated tokens into out (1, out_dim, N, H, W). */
lyra_status dit_head(dit_run *r, lyra_tensor *out);

#endif
