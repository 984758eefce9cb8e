/* Private pieces shared by the csrc/models/dit_*.c files. The files depend downward only, in this order:
 *   dit_config.c   names and the configuration detected from the weights
 *   dit_fp8.c      fp8 (e4m3) block weights: quantization, the block's Linear list
 *   dit_stream.c   block streaming (weights of streamed blocks stay in host memory)
 *   dit_device.c   placement on a device backend: weights and adapters uploaded once (lyra_dit_place)
 *   dit_weights.c  the parameter table, loading, freeing
 *   dit_lora.c     LoRA adapters: attach, merge
 *   dit_lora_fold.c  the LoRA fold at placement, with the ops of the backend that holds each weight
 *   dit_run.c      the helpers of one forward pass (arena tensors, probe, upload, Linear + LoRA terms, fp8 Linear)
 *   dit_tokens.c, dit_rope.c, dit_embed.c, dit_block.c, dit_head.c   the stages, each on dit_run.c only
 *   dit_measure.c  the arena a forward needs, measured by running the forward it is given on a measuring backend
 *   dit_forward.c  dit_forward_run (checks, then the stages in call order) and lyra_dit_forward (measure, reserve,
 *                  run)
 *   dit_plan.c     the full-size plan without weights (lyra_dit_measure), through the public forward */
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

/* "net.xxx" -> "xxx" (DCP keys carry the prefix, upstream ML:74-92, Z:464-486, CTI:181-199); other names unchanged. */
const char *dit_strip_net(const char *name);
/* The tensor called `name` (after dit_strip_net on the source names), or NULL. */
const lyra_dit_named *dit_find(const lyra_dit_named *src, int n, const char *name);

/* ---- dit_device.c */

/* Uploads adapter a to the model's device when the model is placed (no-op on the CPU); on failure the adapter
 * is removed again. */
lyra_status dit_adapter_place(lyra_dit *m, int a);
/* Random weights (dit_random.c): fills every parameter on be, each descriptor read as if the host block starting at
 * `host` lay at `base` on be's device (base == host: the host block itself). */
lyra_status dit_random_fill(lyra_dit *m, lyra_backend *be, const void *host, void *base);
/* The same with each parameter where `where` says: it rebases a copy of the host-block descriptor t (codes and fp8
 * scales alike) and returns the backend whose memory that is (block streaming: device or pinned host memory). */
typedef lyra_backend *(*dit_random_where_fn)(void *ctx, lyra_tensor *t);
lyra_status dit_random_fill_at(lyra_dit *m, dit_random_where_fn where, void *ctx);
/* Frees adapter a's tensors wherever they live. */
void dit_adapter_free(lyra_dit *m, int a);

/* ---- dit_lora_fold.c */

/* LYRA_ERR_UNSUPPORTED (prefixed with `what`) when an adapter of nonzero weight adds a .diff_b to a Linear without a
 * bias: such a set cannot be folded. */
lyra_status dit_lora_check_foldable(const lyra_dit *m, const char *what);
/* 1 when an adapter of nonzero weight touches lin. */
int dit_lora_folds(const lyra_dit *m, const lyra_dit_linear *lin);
/* Folds lin's adapters of nonzero weight into w (NULL: skipped) and bias (NULL: skipped), tensors on be laid out as
 * lin's: w = round(f32(w) + Σ w_a·B_a·A_a) (one GEMM over the packed factors, one rounding), bias += w_a·diff_b_a.
 * The adapters' tensors are read in host memory; be's transient is one f32 (out, in) delta + the factors. */
lyra_status dit_lora_fold_linear(lyra_dit *m, lyra_backend *be, lyra_dit_linear *lin, lyra_tensor *w,
                                 lyra_tensor *bias);
/* After placement (m->lora_fold): folds every Linear where its weight now lies (cpu: the streamed blocks' pinned
 * host copy; dev: the device block) and frees the adapters. fp8_done: the fp8 weights were folded as they were
 * filled (only their biases are left). */
lyra_status dit_lora_fold_placed(lyra_dit *m, lyra_backend *cpu, lyra_backend *dev, int fp8_done);

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
    lyra_dtype act;       /* storage dtype of the bf16-policy activations (m->act_dtype) */
} dit_run;

/* ---- dit_run.c */

/* A contiguous f32 activation of shape ne from the run's arena: what upstream keeps in fp32 (time embedding and
 * projection, modulation, head, tokenizer temporaries). */
lyra_status dit_alloc(dit_run *r, lyra_tensor *t, int ndim, const int64_t *ne, const char *what);
/* The same in the run's activation dtype (r->act): what upstream keeps in bf16 on the GPU (residual stream,
 * projections, attention inputs/outputs, context, tokens). */
lyra_status dit_alloc_act(dit_run *r, lyra_tensor *t, int ndim, const int64_t *ne, const char *what);
/* Reports a tensor to the probe when one is installed. */
void dit_probe(dit_run *r, const char *name, const lyra_tensor *t);

/* y (..., out) = lin(x (..., in)) including the active LoRA terms (unmerged: y = Wx + b + Σ w_a (B_a A_a x + bias_a)). */
lyra_status dit_linear(dit_run *r, lyra_tensor *y, const lyra_tensor *x, const lyra_dit_linear *lin);

/* Uploads a small host-built table (RoPE angles, time sinusoid) into dst on the model's backend (a copy on
 * every backend, logged by the emulated device under dst's name). */
lyra_status dit_upload(dit_run *r, lyra_tensor *dst, const void *host, size_t bytes);

/* ---- the stages, in the forward's call order (dit_tokens.c, dit_rope.c, dit_embed.c, dit_block.c, dit_head.c) */

/* upstream WL:902-912, WL:555-803, WL:661-667, WL:766-789: r->x, r->camtok, r->buftok from the inputs. */
lyra_status dit_tokenize(dit_run *r, const lyra_dit_inputs *in);
/* upstream W:93-188, W:203-232, WL:586-596: r->phi (host table copied to the backend). */
lyra_status dit_rope_table(dit_run *r);
/* upstream W:191-200, WL:962-964: r->e, r->e0. */
lyra_status dit_time_embed(dit_run *r, double t);
/* upstream WL:966-971, W:569-598, W:698: r->ctx_txt, r->ctx_img. */
lyra_status dit_context(dit_run *r, const lyra_tensor *text, const lyra_tensor *clip);
/* upstream WL:150-212, W:280-437: block i (weights blk) on r->x, in place. */
lyra_status dit_block_forward(dit_run *r, int i, const lyra_dit_block *blk);
/* upstream W:532-566, WL:1001-1017: head + unpatchify of the generated tokens into out (1, out_dim, N, H, W). */
lyra_status dit_head(dit_run *r, lyra_tensor *out);

/* ---- dit_fp8.c */

/* The 15 Linears of a block (out[0..14]); returns 15. */
int dit_block_linears(lyra_dit_block *b, lyra_dit_linear **out);

/* ---- dit_stream.c: block streaming */

/* Block i's weights for this forward: in place when resident, else uploaded into a stream buffer. */
lyra_status dit_stream_block(dit_run *r, int i, const lyra_dit_block **blk);
/* Frees the stream buffers (streaming off). */
void dit_stream_release(lyra_dit *m);
/* Placement with streaming on: uploads every weight but the streamed blocks into one block on dev (*w), keeps
 * the streamed blocks in a host copy, moves the two buffers to dev and re-points the weight descriptors. On
 * failure nothing is re-pointed. */
lyra_status dit_stream_place(lyra_dit *m, lyra_backend *dev, void **w);

/* ---- dit_forward.c / dit_measure.c: the forward and its arena size */

/* The forward on m's backend and arena (sized by the caller). */
lyra_status dit_forward_run(lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out, lyra_dit_probe_fn probe,
                            void *probe_ctx);
/* A forward pass over m's backend and arena (dit_forward_run is the one). */
typedef lyra_status (*dit_forward_fn)(lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out,
                                      lyra_dit_probe_fn probe, void *probe_ctx);
/* The activation arena bytes one forward of m on these inputs needs: measured (dit_measure.c) by running
 * `forward` on the measuring backend, cached per input geometry. */
lyra_status dit_arena_need(lyra_dit *m, dit_forward_fn forward, const lyra_dit_inputs *in, const lyra_tensor *out,
                           size_t *need);
/* In-features of the clean patch embedding of history segment s: in_dim · (K or 1) · 2K · 2K (upstream WL:498-534). */
static inline int64_t dit_clean_in_features(int in_dim, const lyra_fp_segment *s) {
    int64_t pt = s->type == 'k' ? s->kernel : 1, ph = 2 * (int64_t)s->kernel;
    return (int64_t)in_dim * pt * ph * ph;
}

#endif
