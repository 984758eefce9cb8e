/* Internals of the Wan VAE: the layer list, the causal cache slots and the execution context.
 *
 * The network is a flat list of layers (in the module order of upstream TOK:306-401, TOK:404-546). The same list drives
 * the real forward pass and the dry-run planner: every op goes through the vx_* wrappers below, which count FLOPs/bytes
 * and, unless the context is dry, call the lyra_op_* runtime. All activations handled here are one batch element: (1,
 * C, T, H, W) f32, contiguous. */
#ifndef LYRA_MODELS_VAE_INTERNAL_H
#define LYRA_MODELS_VAE_INTERNAL_H

#include "models/vae.h"
#include "nn/ops.h"

typedef enum vae_kind {
    VAE_CONV = 0,   /* CausalConv3d 3×3×3 (encoder.conv1, decoder.conv1) */
    VAE_POINTWISE,  /* CausalConv3d 1×1×1 (top-level conv1 → mu, conv2) */
    VAE_RES,        /* ResidualBlock */
    VAE_ATTN,       /* AttentionBlock (per frame, single head) */
    VAE_DOWN2D,
    VAE_DOWN3D,
    VAE_UP2D,
    VAE_UP3D,
    VAE_HEAD,       /* RMS_norm → SiLU → CausalConv3d 3×3×3 */
    VAE_KIND_COUNT
} vae_kind;

/* Weight roles inside vae_layer.w, per kind:
 *   CONV, POINTWISE: W (Co, Ci, kt, kh, kw), B (Co)
 *   RES:  G0 (Ci), W2 (Co, Ci, 3,3,3), B2, G3 (Co), W6 (Co, Co, 3,3,3), B6, SCW (Co, Ci, 1,1,1), SCB (or no data)
 *   ATTN: G0 (C), QKV (3C, C), QKVB (3C), PROJ (C, C), PROJB (C)
 *   DOWN2D/3D, UP2D/3D: W (Co, Ci, 1, 3, 3) (the Conv2d as a 1-frame conv3d), B, TW (time conv (Co', C, 3, 1, 1)), TB
 *   HEAD: G0 (Ci), W (Co, Ci, 3, 3, 3), B */
enum { VW_W = 0, VW_B, VW_TW, VW_TB };
enum { VW_G0 = 0, VW_W2, VW_B2, VW_G3, VW_W6, VW_B6, VW_SCW, VW_SCB };
enum { VW_QKV = 1, VW_QKVB, VW_PROJ, VW_PROJB };
enum { VW_HW = 1, VW_HB };
#define VAE_W_MAX 8

typedef struct vae_layer {
    vae_kind kind;
    int cin, cout;            /* channels in and out */
    int slot;                 /* first causal cache slot (upstream feat_idx order, TOK:605-630), -1 when none */
    int nslots;
    char name[40];            /* upstream key prefix, e.g. "encoder.downsamples.5" */
    lyra_tensor w[VAE_W_MAX];
} vae_layer;

#define VAE_MAX_SLOTS 32

struct lyra_vae {
    int dim, z_dim;
    int n_enc, n_dec;
    vae_layer enc[LYRA_VAE_MAX_LAYERS]; /* encoder ... head, then the top-level conv1 (mu rows only) */
    vae_layer dec[LYRA_VAE_MAX_LAYERS]; /* top-level conv2, decoder.conv1 ... head */
    int enc_slots, dec_slots;
    lyra_dtype act;           /* storage of weights, activations and caches: f32, or bf16 on a device (upstream
                                 TOK:864, TOK:881, TOK:900-901 casts the model and its input to bf16;
                                 docs/PRECISION.md) */
    lyra_backend be;          /* owns the weight block (CPU) */
    void *block;              /* one allocation carved into every w[] (NULL for a shapes-only model) */
};

/* A causal cache slot: the last `frames` (<= 2) conv inputs of the sequence seen so far, per batch element.
 * t is (cap, B, C, h, w); m[b] frames of it are valid, oldest first. seen[b]: the slot has had its first chunk
 * (the resample time convs treat the first chunk specially, upstream TOK:605-630, M:1007-1046, TOK:623-630). */
typedef struct vae_slot {
    lyra_tensor t;
    int cap;
    int m[64];
    int seen[64];
    void *mem;
} vae_slot;
#define VAE_MAX_BATCH 64

/* Execution context of one push for one batch element. */
typedef struct vae_ctx {
    lyra_backend *be;
    lyra_arena *arena;
    int dry;                  /* count only: no data is read or written */
    int b;                    /* batch element */
    int64_t B;                /* batch size (for slot allocation) */
    vae_slot *slots;          /* the session's slots for this direction */
    lyra_vae_stats *stats;
    lyra_vae_layer_stats *cur; /* the layer being run (accounting target) */
    size_t temp_base;         /* arena offset where the layer's temporaries start */
    const char *stage;        /* "Wan VAE encode" / "Wan VAE decode", for out-of-memory messages */
    lyra_dtype act;           /* activation and cache storage (the model's act) */
} vae_ctx;

/* 5-d (1, C, T, H, W) shape helpers. */
typedef struct vae_shape {
    int64_t C, T, H, W;
} vae_shape;
size_t vae_shape_bytes(vae_shape s, lyra_dtype dt);

/* ---- vae_weights.c ---- */
/* Fills vae->enc/dec (kinds, channels, names, slots) for the given widths. */
void vae_build_layers(lyra_vae *vae, int dim, int z_dim);

/* ---- vae_exec.c: allocation, cache slots and op wrappers ---- */
/* A contiguous (1, C, T, H, W) tensor of the activation dtype from the arena (a counted placeholder when dry). */
lyra_status vx_alloc(vae_ctx *c, lyra_tensor *t, vae_shape s, const char *what);
/* Frames [t0, t1) of a (1, C, T, H, W) tensor: a strided view unless it is all of T or C == 1. */
/* Any contiguous tensor of the activation dtype from the arena (token layouts of the attention block). */
lyra_status vx_alloc_tokens(vae_ctx *c, lyra_tensor *t, int ndim, const int64_t *ne, const char *what);
lyra_tensor vx_frames(const lyra_tensor *x, int64_t t0, int64_t t1);
vae_shape vx_shape(const lyra_tensor *x);
/* Slot `i` for batch element c->b: allocated on first use as (cap, B, C, h, w) with C/h/w taken from `like`. */
lyra_status vx_slot(vae_ctx *c, int i, int cap, const lyra_tensor *like, vae_slot **out);
/* The valid frames of slot i for the current batch element, as a conv3d prefix (NULL when empty). */
const lyra_tensor *vx_slot_prefix(vae_ctx *c, vae_slot *s, lyra_tensor *view);
/* After a causal conv consumed x (1, C, n, h, w): keep the last min(cap, frames seen) frames (CACHE_T rule). */
lyra_status vx_slot_push(vae_ctx *c, vae_slot *s, const lyra_tensor *x);

lyra_status vx_conv3d(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, const lyra_tensor *b,
                      const lyra_tensor *prefix, const lyra_conv3d_params *p);
/* Causal 3×3×3 (or (3,1,1)) conv with slot `i` as the time prefix, then the slot update from x. */
lyra_status vx_causal_conv(vae_ctx *c, int slot, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b);
/* y = SiLU(RMS_norm(x)·gamma) (upstream TOK:70-94, TOK:97-109, TOK:120-198: L2 over channels, ·sqrt(C), eps 1e-12); y
 * may be x. */
lyra_status vx_norm_silu(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *gamma, int silu);
lyra_status vx_add(vae_ctx *c, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b);
lyra_status vx_copy(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x);
lyra_status vx_linear(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, const lyra_tensor *b);
lyra_status vx_attention(vae_ctx *c, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                         const lyra_tensor *v, float scale);
lyra_status vx_upsample2x(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x);

/* ---- vae_blocks.c / vae_resample.c: one layer, y allocated by the caller with vae_layer_out's shape ---- */
/* Output shape of a layer for input `in`; `first` = the stream's first chunk. LYRA_ERR_ARG when the frame count
 * does not fit the layer (callers validate the push first, so this only guards the invariant). */
lyra_status vae_layer_out(const vae_layer *L, int first, vae_shape in, vae_shape *out);
lyra_status vae_layer_run(vae_ctx *c, const vae_layer *L, int first, lyra_tensor *y, const lyra_tensor *x);
lyra_status vae_run_resample(vae_ctx *c, const vae_layer *L, int first, lyra_tensor *y, const lyra_tensor *x);
const char *vae_kind_name(vae_kind k);

#endif
