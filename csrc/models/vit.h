/* A generic DINOv2-style vision transformer on the runtime ops (upstream DA3dino:22-64, DA3vit:454-466,
 * DA3cfg/da3-giant:6-17, DA3net:484): the backbone of DA3 (any-view ViT-g with alternating attention, metric ViT-L) and
 * of MoGe v1 (ViT-L).
 *
 *   tokens = [cls, registers..., conv_P×P(pixels) as row-major patch tokens]
 *   x[cls, patches] += interpolated pos_embed (registers get none, DINOv2 order)         (upstream DA3vit:220-280;
 * docs/REFERENCES.md#resampling)
 *   block i: x += ls1 ⊙ proj(attn(qk_norm/rope(qkv(LN1 x))))
 *            x += ls2 ⊙ ffn(LN2 x),  ffn = fc2(gelu_erf(fc1 ·)) or w3(silu(x1)·x2) with [x1|x2] = w12(·)
 *   final norm (separate eps: DA3 1e-5, MoGe 1e-6).
 *
 * Several views run together as x (S, N, C). A "local" block attends within each view; a "global" block
 * (alternating attention, DA3: odd i >= alt_start) attends over all S·N tokens as one sequence (upstream DA3blk:77-103,
 * DA3att:47-81). 2D RoPE (blocks >= rope_start) uses positions (r+1, c+1) for patch (r, c) and (0, 0) for special
 * tokens in local blocks, and (1, 1) for every patch in global blocks ("pos_nodiff", upstream DA3rope:23-200,
 * DA3vit:282-298).
 *
 * Configuration comes from the weight names/shapes under a prefix ("da3.backbone.pretrained.", "backbone."):
 *   {p}cls_token (1,1,C), {p}pos_embed (1,1+M²,C), {p}patch_embed.proj.{weight (C,3,P,P), bias (C)},
 *   optional {p}register_tokens (1,R,C), optional {p}camera_token (1,K,C) (DA3), {p}norm.{weight,bias} (C),
 *   {p}blocks.{i}.{norm1,norm2}.{weight,bias}, attn.qkv.{weight (3C,C), bias}, attn.proj.{weight,bias},
 *   optional attn.{q_norm,k_norm}.{weight,bias} (Dh), optional ls1.gamma / ls2.gamma (C),
 *   mlp.fc1/mlp.fc2 (GELU MLP) or mlp.w12 (2F,C) / mlp.w3 (C,F) (SwiGLU).
 * What the weights do not say (heads, eps, RoPE/alternation starts, the pos-embed offset) is in
 * lyra_vit_options.
 *
 * Typical use (MoGe, DA3 metric): lyra_vit_detect -> lyra_vit_add_weights into the owner's lyra_vit_wlist ->
 * lyra_vit_wlist_load -> lyra_vit_taps. DA3's any-view network drives the blocks itself (camera token injection,
 * concatenated local/global taps) with lyra_vit_embed / lyra_vit_run_block / lyra_vit_final_norm. */
#ifndef LYRA_VIT_H
#define LYRA_VIT_H

#include "core/arena.h"
#include "models/text_weights.h"
#include "nn/backend.h"

typedef enum lyra_vit_ffn { LYRA_VIT_FFN_MLP = 0, LYRA_VIT_FFN_SWIGLU } lyra_vit_ffn;

/* Set by the caller (not recoverable from the weights). lyra_vit_default_options gives DINOv2 defaults. */
typedef struct lyra_vit_options {
    int64_t heads;        /* attention heads (dim % heads == 0) */
    float ln_eps;         /* block LayerNorms (DINOv2: 1e-6) */
    float norm_eps;       /* final norm (DA3: 1e-5, plain nn.LayerNorm; MoGe: 1e-6) */
    float qk_norm_eps;    /* q/k LayerNorm (DA3: 1e-5) */
    int rope_start;       /* first block with 2D RoPE on q, k; -1: none */
    double rope_theta;    /* RoPE base frequency (DA3: 100) */
    int alt_start;        /* first block of alternating attention (i >= alt_start and odd -> global); -1 none */
    double pos_offset;    /* pos-embed interpolate_offset (0.1): ratio M/(g + offset), upstream DA3vit:220-280 */
    int pos_antialias;    /* 1: antialiased bicubic pos-embed resize (DINOv2 option; DA3 and MoGe: 0) */
} lyra_vit_options;

typedef struct lyra_vit_config {
    lyra_vit_options opt;
    int64_t dim, depth, heads, head_dim, patch;
    int64_t pos_grid;     /* M: pos_embed holds 1 + M² rows */
    int64_t registers;    /* R register tokens (0 for DA3/MoGe) */
    int64_t cam_tokens;   /* K rows of camera_token (0 when absent) */
    int64_t ffn_hidden;   /* MLP width, or SwiGLU F (w12 has 2F rows) */
    lyra_vit_ffn ffn;
    int qk_norm_start;    /* first block with q_norm/k_norm (all later blocks must have them); -1 none */
    int layer_scale;      /* 1 when ls1/ls2 gammas exist */
    lyra_dtype gemm;      /* storage of the GEMM weights, inputs and outputs (patch conv, qkv, proj, FFN) and of
                             the attention's q/k/v: f32, or the autocast dtype of upstream's GPU run (bf16 for DA3,
                             f16 for MoGe; lyra_vit_set_autocast). The block LayerNorms compute in f32 and store
                             their output in it (autocast's one cast at the GEMM); the residual stream, the q/k
                             norms, RoPE and the final norm (the taps) stay f32, as autocast keeps them. */
} lyra_vit_config;

typedef struct lyra_vit_block {
    lyra_tensor norm1_w, norm1_b, norm2_w, norm2_b;   /* (C) f32 */
    lyra_tensor qkv_w, qkv_b;                         /* (3C, C), (3C): rows q | k | v, heads contiguous */
    lyra_tensor proj_w, proj_b;                       /* (C, C), (C) */
    lyra_tensor q_norm_w, q_norm_b, k_norm_w, k_norm_b; /* (Dh) f32, data NULL when absent */
    lyra_tensor ls1, ls2;                             /* (C) f32, data NULL without LayerScale */
    lyra_tensor fc1_w, fc1_b, fc2_w, fc2_b;           /* MLP: (F, C), (F), (C, F), (C); SwiGLU: w12 (2F, C), (2F), w3 (C, F), (C) */
} lyra_vit_block;

typedef struct lyra_vit {
    lyra_vit_config cfg;
    char prefix[96];
    lyra_tensor patch_w, patch_b;   /* (C, 3, P, P), (C) */
    lyra_tensor cls;                /* (1, 1, C) f32 */
    lyra_tensor registers;          /* (1, R, C) f32 or data NULL */
    lyra_tensor camera_token;       /* (1, K, C) f32 or data NULL */
    lyra_tensor pos;                /* (1, 1 + M², C) f32 */
    lyra_tensor norm_w, norm_b;     /* (C) f32 */
    lyra_vit_block *blocks;         /* cfg.depth */
    int trunk_only;                 /* 1: blocks only (no embedding / final norm), see lyra_vit_detect_trunk */
    char blocks_name[16];           /* "blocks" ({prefix}blocks.{i}.*) or the trunk's name ("trunk") */
} lyra_vit;

/* ---- weight lists: several sub-networks (ViT + heads) load into ONE allocation ---- */
typedef struct lyra_vit_wlist {
    lyra_text_wspec *specs;
    int n, cap;
    char **names;         /* owned copies; spec names and the loaded tensors' names point at them */
} lyra_vit_wlist;

/* Appends one needed tensor `name` (copied) with the expected shape; as_f32 as lyra_text_wspec. */
lyra_status lyra_vit_wlist_add(lyra_vit_wlist *l, const char *name, lyra_tensor *dst, int as_f32, int ndim,
                               const int64_t *ne);
/* lyra_text_weights_load over the list (checks every tensor, rejects source tensors neither listed nor
 * ignored, one allocation in *mem). */
lyra_status lyra_vit_wlist_load(lyra_vit_wlist *l, const lyra_text_wsource *src, lyra_text_ignore_fn ignore,
                                const void *ignore_ctx, const char *what, void **mem);
/* Uploads the loaded weight block *mem (from lyra_vit_wlist_load) into one block of be's device memory and
 * re-points every listed tensor (lyra_backend_place_weights; *mem becomes the device block, released with
 * be->ops->release). A no-op on the CPU backend. */
lyra_status lyra_vit_wlist_place(lyra_vit_wlist *l, lyra_backend *be, void **mem, const char *what);
/* As lyra_vit_wlist_place, with the GEMM weights of the listed ViTs (patch conv, qkv, proj, FFN matrices) stored
 * in each ViT's cfg.gemm dtype (lyra_backend_place_weights_as); everything else keeps its loaded dtype. */
lyra_status lyra_vit_wlist_place_as(lyra_vit_wlist *l, lyra_backend *be, void **mem, const char *what,
                                    lyra_vit *const *vits, int n_vits);
/* The bytes lyra_vit_wlist_place_as gives the loaded tensors of l (alignment included) when the listed ViTs' GEMM
 * weights are stored as `gemm` (f32: every tensor keeps its loaded dtype). */
size_t lyra_vit_wlist_placed_bytes(const lyra_vit_wlist *l, lyra_vit *const *vits, int n_vits, lyra_dtype gemm);
/* Frees the spec array and the names (only after the loaded tensors are no longer used). */
void lyra_vit_wlist_free(lyra_vit_wlist *l);
/* cfg.gemm when t is one of m's GEMM weights (patch conv, qkv, proj, FFN matrices) and cfg.gemm is not f32, else
 * -1. */
int lyra_vit_gemm_weight(const lyra_vit *m, const lyra_tensor *t);
/* Sets the dtype the ViT's GEMMs store their weights and outputs in (cfg.gemm): upstream's autocast on a device.
 * Call before the weights are placed (lyra_vit_wlist_place_as reads it). f32, bf16 or f16. */
lyra_status lyra_vit_set_autocast(lyra_vit *m, lyra_dtype gemm);

lyra_vit_options lyra_vit_default_options(int64_t heads);

/* Detects the configuration under `prefix` (e.g. "backbone.") and allocates m->blocks. `what` names the network
 * in messages. Free with lyra_vit_free. */
lyra_status lyra_vit_detect(lyra_vit *m, const lyra_text_wsource *src, const char *prefix,
                            const lyra_vit_options *opt, const char *what);
/* A bare stack of ViT blocks with the same block layout under {prefix}{blocks_name}.{i}. (DA3 CameraEnc
 * trunk: "da3.cam_enc." + "trunk"): no patch embedding, tokens, pos-embed or final norm; width from norm1.
 * Run it with lyra_vit_run_block on x (1, L, C) and a run {S = 1, N = L} without RoPE. */
lyra_status lyra_vit_detect_trunk(lyra_vit *m, const lyra_text_wsource *src, const char *prefix,
                                  const char *blocks_name, const lyra_vit_options *opt, const char *what);
/* Lists every tensor of the ViT into l (the descriptors in m are filled by lyra_vit_wlist_load). */
lyra_status lyra_vit_add_weights(lyra_vit *m, lyra_vit_wlist *l);
/* 1 for tensors under the prefix a ViT checkpoint carries but no forward uses (DINOv2 mask_token). */
int lyra_vit_unused_tensor(const lyra_vit *m, const char *name);
void lyra_vit_free(lyra_vit *m);

/* 1 when block i attends over all views jointly (alternating attention, upstream DA3dino:22-64, DA3vit:454-466,
 * DA3cfg/da3-giant:6-17). */
int lyra_vit_block_is_global(const lyra_vit_config *c, int i);

/* Per-run geometry and RoPE tables (allocated in the arena by lyra_vit_embed). */
typedef struct lyra_vit_run {
    int64_t S, gh, gw;          /* views, patch grid */
    int64_t N;                  /* tokens per view: 1 + R + gh·gw */
    lyra_tensor rope_local;     /* (N, Dh/2) angles, data NULL without RoPE */
    lyra_tensor rope_global;    /* (S·N, Dh/2) angles with pos_nodiff */
} lyra_vit_run;

/* The interpolated position embedding pos (1, 1 + gh·gw, C) (f32, contiguous; upstream DA3vit:220-280 /
 * docs/REFERENCES.md#resampling): row 0 is the cls row, the M×M grid is bicubically resized (align_corners False) with
 * ratio M/(g + offset); when gh = gw = M the table is used as is (DINOv2 shortcut). */
lyra_status lyra_vit_pos_embed(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_tensor *pos, int64_t gh,
                               int64_t gw);

/* x (S, N, C) f32 contiguous, allocated here from the arena, <- pixels (S, 3, h, w) (normalised, h and w
 * multiples of P). Also fills run (its tables live in the arena below x). */
lyra_status lyra_vit_embed(const lyra_vit *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                           lyra_tensor *x, lyra_vit_run *run);

/* Block i in place on x (S, N, C); temporaries are released before returning. */
lyra_status lyra_vit_run_block(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_tensor *x,
                           const lyra_vit_run *run, int i);

/* y = final norm(x); any shapes (..., C), y may equal x. */
lyra_status lyra_vit_final_norm(const lyra_vit *m, lyra_backend *be, lyra_tensor *y, const lyra_tensor *x);

/* The usual intermediate-layer call (DINOv2 get_intermediate_layers with norm=True): runs blocks 0..max(idx)
 * and writes, for tap t, taps[t] (S, gh·gw, C) = final norm(output of block idx[t]) without cls and registers.
 * cls (n_taps, S, C) or NULL receives the normed class token of each tap. idx strictly increasing. */
lyra_status lyra_vit_taps(const lyra_vit *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                          int n_taps, const int *idx, lyra_tensor *const *taps, lyra_tensor *cls);

/* Arena bytes for lyra_vit_taps / lyra_vit_embed + blocks (residual stream, tables, one block's temporaries,
 * the pos-embed resize), for S views of gh×gw patches, with the GEMM outputs stored as c->gemm. */
size_t lyra_vit_arena_bytes(const lyra_vit_config *c, int64_t S, int64_t gh, int64_t gw);
/* Parameters of the ViT and FLOPs (2 per MAC) of embedding + `blocks` blocks on S views of gh×gw patches
 * (global blocks attend over S·N tokens; counted per alternation when alt_start >= 0). */
int64_t lyra_vit_params(const lyra_vit_config *c);
/* The GEMM weights among them (patch conv, qkv, proj, FFN matrices), and the bytes of all parameters with those
 * stored as c->gemm and the rest f32 (as lyra_vit_wlist_place_as places them; per-tensor alignment not counted). */
int64_t lyra_vit_gemm_params(const lyra_vit_config *c);
size_t lyra_vit_weight_bytes(const lyra_vit_config *c);
double lyra_vit_flops(const lyra_vit_config *c, int64_t S, int64_t gh, int64_t gw, int blocks);

#endif
