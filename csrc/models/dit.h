/* The Lyra-2 diffusion transformer (Lyra2WanModel, a Wan 2.1 I2V DiT with camera, correspondence-buffer and
 * FramePack history inputs): configuration detected from the weights, loading, run-time LoRA, forward pass.
 * References are upstream file:line at nv-tlabs/lyra@9fffc9a (tags WL, W, ... in docs/REFERENCES.md).
 *
 * 14B values (the released checkpoint, upstream EXP:21-62, ML:48-50, NETCFG:30): dim 5120, ffn 13824, 40 heads of 128,
 * 40 layers, in_dim 36 (16 latent + 4 mask + 16 conditioning), out_dim 16, text_dim 4096, freq_dim 256, CLIP 1280,
 * camera 1536 (384 Plücker channels unshuffled 2×2), buffer 1280 channels (5 spatial slots × 256) with 2 sin/cos
 * octaves (20480 features) squeezed to 256, 6 clean patch embeddings; patch (1, 2, 2), eps 1e-6.
 *
 * Everything runs through the lyra_op_* ops of nn/ops.h on the model's backend (the CPU reference: f32
 * activations; matrices are kept in the checkpoint's float dtype). Dimension order is outermost first. */
#ifndef LYRA_MODELS_DIT_H
#define LYRA_MODELS_DIT_H

#include "core/arena.h"
#include "models/framepack.h"
#include "nn/backend.h"

#define LYRA_DIT_MAX_ADAPTERS 8
#define LYRA_DIT_TEXT_TOKENS 512          /* T5_CONTEXT_TOKEN_NUMBER: the cross-attention split (W:417-419) */
#define LYRA_DIT_CHANNELS_PER_SLOT 256    /* correspondence channels per spatial slot, 4·8·8 (M:48) */
#define LYRA_DIT_BUFFER_MULTIRES 2        /* sin/cos octaves of the buffer features (M:46) */

typedef struct lyra_dit_config {
    int dim;              /* D (5120) */
    int ffn_dim;          /* 13824 */
    int num_heads;        /* 40; not stored in the weights: given, else dim / 128 */
    int head_dim;         /* 128 */
    int num_layers;       /* 40 */
    int in_dim;           /* 36: channels per latent pixel entering the patch embedding */
    int out_dim;          /* 16 */
    int text_dim;         /* 4096 */
    int freq_dim;         /* 256 */
    int clip_dim;         /* 1280 */
    int cam_dim;          /* 1536 = cam_channels · 4 */
    int cam_channels;     /* 384: the last channels of y, split off before the patch embedding (upstream WL:902-912) */
    int buffer_in_dim;    /* 1280: channels of y_buffer */
    int buffer_embed_dim; /* 20480 = buffer_in_dim · 4 · 2 · multires */
    int buffer_squeeze;   /* 256 */
    int n_clean;          /* clean patch embeddings (= history segments of the layout) */
    int64_t clean_in[LYRA_FP_MAX_SEGMENTS]; /* their in-features: in_dim · pt · ph · pw */
    float eps;            /* 1e-6 */
} lyra_dit_config;

/* One LoRA term of a Linear: y += weight · (b·(a·x) + bias). alpha/rank is already folded into a and b. */
typedef struct lyra_dit_lora_term {
    lyra_tensor a;        /* (r, in); data NULL when this adapter does not touch the Linear */
    lyra_tensor b;        /* (out, r) */
    lyra_tensor bias;     /* (out) or data NULL (from a ".diff_b" key) */
} lyra_dit_lora_term;

/* A Linear y = x·wᵀ + b with its LoRA terms (one slot per adapter). */
typedef struct lyra_dit_linear {
    lyra_tensor w;        /* (out, in), f32/bf16/f16 */
    lyra_tensor b;        /* (out) f32, or data NULL when the Linear has no bias */
    lyra_dit_lora_term lora[LYRA_DIT_MAX_ADAPTERS];
    int fp8;              /* 1: w holds e4m3 codes (u8, (out, in)) with w_scale, and the input is quantized per
                             token on the model's backend (dit_fp8.c) */
    lyra_tensor w_scale;  /* fp8: (out) f32 per-output-channel scales, w ≈ w_scale[n]·e4m3(w[n, :]) */
} lyra_dit_linear;

typedef struct lyra_dit_block {
    lyra_tensor modulation;                       /* (1, 6, D) */
    lyra_dit_linear sa_q, sa_k, sa_v, sa_o;       /* (D, D) + (D) */
    lyra_tensor sa_norm_q, sa_norm_k;             /* (D): RMSNorm over the full width */
    lyra_tensor norm3_w, norm3_b;                 /* (D) */
    lyra_dit_linear ca_q, ca_k, ca_v, ca_o, ca_k_img, ca_v_img;
    lyra_tensor ca_norm_q, ca_norm_k, ca_norm_k_img;
    lyra_dit_linear ffn0;                         /* (ffn, D) */
    lyra_dit_linear ffn2;                         /* (D, ffn) */
    lyra_dit_linear cam;                          /* (D, cam_dim), no bias */
    lyra_dit_linear buf0;                         /* (squeeze, buffer_embed_dim), no bias */
    lyra_dit_linear buf1;                         /* (D, squeeze), no bias */
} lyra_dit_block;

typedef struct lyra_dit_weights {
    lyra_dit_linear patch;                        /* (D, in_dim·4) */
    lyra_dit_linear clean[LYRA_FP_MAX_SEGMENTS];  /* (D, clean_in[k]) */
    lyra_dit_linear text0, text2;                 /* (D, text_dim), (D, D) */
    lyra_dit_linear time0, time2;                 /* (D, freq_dim), (D, D) */
    lyra_dit_linear tproj;                        /* (6D, D) */
    lyra_tensor img_ln0_w, img_ln0_b;             /* (clip) */
    lyra_dit_linear img1;                         /* (clip, clip) */
    lyra_dit_linear img3;                         /* (D, clip) */
    lyra_tensor img_ln4_w, img_ln4_b;             /* (D) */
    lyra_dit_linear head;                         /* (4·out_dim, D) */
    lyra_tensor head_modulation;                  /* (1, 2, D) */
    lyra_dit_block *blocks;                       /* num_layers */
} lyra_dit_weights;

/* A checkpoint tensor handed to the loader: host memory, contiguous, f32/bf16/f16; data may be unaligned
 * (safetensors mmap). Names are upstream parameter names; a leading "net." is accepted. */
typedef struct lyra_dit_named {
    const char *name;
    lyra_tensor t;
} lyra_dit_named;

typedef struct lyra_dit_param lyra_dit_param; /* private: one entry of the parameter table */

typedef struct lyra_dit_adapter {
    char name[96];
    float weight;         /* activation weight w_a (PEFT scaling), settable */
    int rank;
    int n_modules;
    void *mem;            /* the adapter's tensors: host memory, or a device block once the model is placed */
    size_t bytes;         /* size of mem */
} lyra_dit_adapter;

/* Block streaming state (dit_stream.c). */
typedef struct lyra_dit_stream {
    int resident;             /* blocks [0, resident) are used in place, the others stream; = num_layers: off */
    size_t span;              /* bytes of one block's weights (one contiguous span of the weight allocation) */
    void *slot[2];            /* the two block buffers on the backend (be->ops->alloc) */
    void *host;               /* after placement: the streamed blocks' weights, in host memory */
    lyra_dit_block view[2];   /* the streamed block's descriptors rebased into its buffer */
    int prefetched;           /* the block already on its way into its buffer (lyra_op_upload_async), or -1 */
    int64_t uploads;          /* blocks uploaded since load */
    size_t upload_bytes;
} lyra_dit_stream;

typedef struct lyra_dit {
    lyra_dit_config cfg;
    lyra_framepack fp;
    lyra_dit_weights w;
    lyra_dit_param *params;   /* every checkpoint tensor, in checkpoint order */
    int n_params;
    void *weight_mem;         /* every weight: host memory, or one device block after lyra_dit_place */
    size_t weight_bytes;
    lyra_dit_adapter adapters[LYRA_DIT_MAX_ADAPTERS];
    int n_adapters;
    lyra_backend be;
    lyra_arena arena;
    lyra_dit_stream stream;
    int fp8;                  /* the attention blocks' Linears are fp8 (lyra_dit_quantize_fp8) */
    int lora_fold;            /* the adapters are folded into the weights at placement, on the device
                                 (lyra_dit_lora_fold_at_placement) */
    struct {                  /* random weights (lyra_dit_load_random) */
        int pending;          /* the host block is reserved but unwritten: placement fills on the device */
        uint64_t seed;
        int bf16_values;      /* the values a bf16 checkpoint would hold */
    } random;
    size_t arena_need;        /* measured activation peak for arena_key (H, W, Lc, max LoRA rank, adapters,
                                 activation dtype, fp8, device) */
    int64_t arena_key[8];
    lyra_dtype act_dtype;     /* activation storage (docs/PRECISION.md): f32, or bf16 on a device backend */
    struct {                  /* the RoPE table left in the arena by the last forward (dit_rope.c) */
        const void *data;     /* where it lies; NULL: none (the arena was reserved again since) */
        int64_t H, W;         /* the latent grid it is for (the layout is fixed per model) */
    } rope_kept;
} lyra_dit;

/* Detects the configuration from the tensors (src[0..n-1]) and checks it against the layout: the clean patch
 * embedding count and shapes must match its history segments, the buffer encoder its sin/cos width.
 * num_heads <= 0 selects dim / 128 (every released Wan size has head_dim 128). */
lyra_status lyra_dit_config_detect(lyra_dit_config *cfg, const lyra_dit_named *src, int n, const lyra_framepack *fp,
                                   int num_heads);

/* Loads a model: config, every tensor copied into one allocation (matrices keep their dtype, vectors become
 * f32), strict name/shape checks (missing, unexpected and mis-shaped tensors are LYRA_ERR_FORMAT naming the
 * tensor), CPU backend with n_threads (0 = all). On failure *m is left freed. */
lyra_status lyra_dit_load(lyra_dit *m, const lyra_dit_named *src, int n, const char *layout, int num_heads,
                          int n_threads);
/* The same model with random weights of the real shapes and no checkpoint (lyra2.testing.random_weights): src
 * names the tensors with their shapes and dtypes (data NULL, not read); each tensor's values are the rule of nn/ops.h
 * lyra_random_fill_rule for (seed, its name, its shape), bf16-rounded when its source dtype is bf16. defer = 0:
 * written into the host block now (the CPU backend's fill_random); defer = 1: the host block is reserved but never
 * written (untouched pages cost no RAM) and lyra_dit_place fills every tensor on the device instead of uploading
 * — no host copy, no transfer (with block streaming: the resident part there, the streamed blocks in their pinned
 * host copy). A deferred model is written in host memory when it first needs the host copy (a CPU forward, merging
 * LoRAs: lyra_dit_random_materialize). */
lyra_status lyra_dit_load_random(lyra_dit *m, const lyra_dit_named *src, int n, const char *layout, int num_heads,
                                 int n_threads, uint64_t seed, int defer);
/* Writes a deferred random model's values into its host block (no-op otherwise; the model must be on the CPU). */
lyra_status lyra_dit_random_materialize(lyra_dit *m);
/* The stored tensor of parameter `name` (host or device memory), or NULL; *fp8_scale: its row scales when it is an
 * fp8 Linear's codes, else NULL. */
const lyra_tensor *lyra_dit_param_tensor(const lyra_dit *m, const char *name, const lyra_tensor **fp8_scale);
void lyra_dit_free(lyra_dit *m);

/* Moves the model to `device` (LYRA_DEVICE_CUDA: the GPU, or the emulated device under LYRA2_EMULATED_CUDA=1):
 * a backend of that device, the weights and every LoRA adapter uploaded once (one device block each; the host
 * copies are freed), the activation arena in device memory from the next forward on. This is the one place
 * the DiT's weights go to the device (block streaming replaces it for budgets below the resident size). After
 * it, lyra_dit_forward takes device tensors; adapters added later are uploaded when added. A no-op when the model
 * is already there; LYRA_DEVICE_CPU after a placement is LYRA_ERR_UNSUPPORTED (the host copy is gone). */
lyra_status lyra_dit_place(lyra_dit *m, lyra_device device);

/* The activation storage dtype (docs/PRECISION.md): LYRA_DTYPE_F32 (the CPU reference, and a device f32 parity
 * mode) or LYRA_DTYPE_BF16 (upstream's GPU policy: bf16 residual stream, projections, attention inputs and
 * context; f32 time embedding/projection, modulation, head, and f32 statistics inside norms and softmax).
 * bf16 needs a device backend (LYRA_ERR_UNSUPPORTED on the CPU backend, whose kernels compute f32). */
lyra_status lyra_dit_set_precision(lyra_dit *m, lyra_dtype act);

/* Adds a LoRA adapter from its tensors (upstream T2V:353-432, Z:525-530, T2V:379-380 key formats: lora_A/lora_B or
 * lora_down/lora_up, optional .alpha and .diff_b, prefixes diffusion_model. / net., musubi lora_unet_*). Full-weight
 * ".diff" deltas are ignored as upstream does; their count is returned in *n_ignored. Unknown modules, bad shapes and
 * ranks are LYRA_ERR_FORMAT naming the key. */
lyra_status lyra_dit_lora_add(lyra_dit *m, const lyra_dit_named *src, int n, const char *name, float weight,
                              int *n_ignored);
/* Folds every adapter into the base weights, W += Σ w_a·B_a·A_a and b += Σ w_a·bias_a (computed in f32, stored
 * in W's dtype: one rounding per weight), then drops the adapters (one at weight 0 is dropped without touching a
 * weight). Linears without a bias that receive a .diff_b of an adapter of nonzero weight cannot be merged
 * (LYRA_ERR_UNSUPPORTED, nothing changed). */
lyra_status lyra_dit_lora_merge(lyra_dit *m);
/* Asks lyra_dit_place to fold every adapter into the weights where they land, with the ops of the backend that
 * holds them (the device's GEMM; the streamed blocks' pinned host copy on the CPU), one Linear at a time, and to
 * free the adapters instead of uploading them (models/dit_lora_fold.c: the same sums as lyra_dit_lora_merge, one
 * rounding per weight, only the GEMM's summation order differs). A random DiT (lyra_dit_load_random, deferred) is
 * never written in host memory; with lyra_dit_quantize_fp8 after this call its block Linears are filled, folded and
 * quantized on the device. Checks now what lyra_dit_lora_merge refuses (LYRA_ERR_UNSUPPORTED, nothing changed);
 * before placement only. */
lyra_status lyra_dit_lora_fold_at_placement(lyra_dit *m);

/* Streams the weights of blocks [resident, num_layers) through two block buffers allocated on the model's
 * backend (resident = num_layers turns streaming off and frees them). Each forward then uploads every streamed
 * block once, from its place in the weight allocation (host memory). LYRA_ERR_ARG outside 0..num_layers. */
lyra_status lyra_dit_set_streaming(lyra_dit *m, int resident);

/* Makes the attention blocks' Linears fp8 e4m3 (per-output-channel weight scales, per-token activation scales,
 * see dit_fp8.c): their weights become 1-byte codes + one f32 scale per row in a new weight allocation, and
 * their inputs are quantized per token by lyra_op_quantize_fp8_rows on the model's backend (the CPU reference
 * and every device run the same ops). The weights must still be in host memory (quantize before lyra_dit_place)
 * and the LoRA adapters merged (LYRA_ERR_ARG naming merge_lora otherwise; a deferred random model whose adapters
 * are folded at placement, lyra_dit_lora_fold_at_placement, is quantized there after the fold), streaming not set
 * yet (set it after).
 * Irreversible; a second call does nothing. */
lyra_status lyra_dit_quantize_fp8(lyra_dit *m);

typedef struct lyra_dit_inputs {
    const lyra_tensor *x;      /* x_B_C_T_H_W (1, out_dim, T, H, W) */
    double t;                  /* timesteps_B_T[0, 0], flow time in [0, 1000] */
    const lyra_tensor *text;   /* crossattn_emb (1, 512, text_dim) */
    const lyra_tensor *clip;   /* frame_cond_crossattn_emb_B_L_D (1, Lc, clip_dim), Lc = 257 */
    const lyra_tensor *y;      /* y_B_C_T_H_W (1, in_dim − out_dim + cam_channels, T, H, W), f32 or bf16 */
    const lyra_tensor *buffer; /* y_buffer_B_C_T_H_W (1, buffer_in_dim, T, H, W), f32 or bf16 */
} lyra_dit_inputs;

/* Called during the forward with intermediate tensors (contiguous, on the backend's device): "tokens" (1, L, D),
 * "freqs" (L, head_dim/2), "camera_tokens" (1, L, cam_dim), "buffer_tokens" (1, L, 4·buffer_in_dim + 1),
 * "time_embedding" (1, D), "time_projection" (1, 6D), "text_embedding" (1, 512, D), "img_emb" (1, Lc, D),
 * "block<i>" (1, L, D), "head" (1, L, 4·out_dim). */
typedef void (*lyra_dit_probe_fn)(void *ctx, const char *name, const lyra_tensor *t);

/* The velocity of the generated frames: out (1, out_dim, N, H, W) f32 (upstream WL:902-912, WL:555-803, WL:583-584). T
 * = the layout's total frames. */
lyra_status lyra_dit_forward(lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out, lyra_dit_probe_fn probe,
                             void *probe_ctx);
/* Gives the activation arena of a model on a device back to its pool (the next forward reserves it again and
 * rebuilds the RoPE table kept there). The generate driver calls it once a chunk's sampling is done, so the VAE
 * decode and the depth window do not sit beside the DiT's activations (lyra2.memory_plan counts it so). A no-op on
 * the CPU, where the arena is host memory reused by every forward. */
void lyra_dit_arena_release(lyra_dit *m);

/* RoPE angles of the packed sequence (upstream W:93-188, W:203-232, WL:586-596), host memory: phi (L, head_dim/2) for
 * the chunks of a latent grid, pooled history tokens getting the average of their cell's (replicate-padded) angles. */
void lyra_dit_rope_angles(float *phi, const lyra_fp_chunk *chunks, int n_chunks, int64_t Hb, int64_t Wb,
                          int head_dim);

/* What one forward costs at full size, from running it on the measuring backend (nn/measure/measure.h) with
 * weights of the real shapes that occupy no memory: nothing is restated by hand. */
typedef struct lyra_dit_measurement {
    int64_t tokens;            /* L: packed sequence length */
    size_t arena_peak;         /* activation arena high-water mark of one forward (bytes) */
    size_t io_bytes;           /* the forward's inputs and output (x, text, clip, y, buffer, velocity): f32, y and the
                                * buffer bf16 on a device (as the generate driver stores them) */
    size_t weight_bytes;       /* every parameter as the loader carves it (matrices in matrix_dtype, vectors f32) */
    size_t block_bytes;        /* one attention block's parameters, carved alike (all blocks have the same shapes) */
    int64_t matrix_elems, matrix_rows, vector_elems;       /* whole model: Linear weights, their rows, f32 vectors */
    int64_t block_matrix_elems, block_matrix_rows, block_vector_elems; /* the same for one block */
    double flops;              /* of the measured forward (GEMMs, attention) */
    int64_t n_ops;
} lyra_dit_measurement;

/* Measures one forward of a DiT of configuration cfg (the fields lyra_dit_config_detect reads from weights;
 * n_clean, clean_in, head_dim, cam_channels and buffer_in_dim are derived here from the layout as detection
 * does) on an H×W latent grid with Lc CLIP tokens, matrices stored as matrix_dtype, the forward taking the
 * paths (activation dtypes) it takes on `device`. */
lyra_status lyra_dit_measure(const lyra_dit_config *cfg, const char *layout, int64_t H, int64_t W, int64_t Lc,
                             lyra_dtype matrix_dtype, lyra_device device, lyra_dit_measurement *out);

#endif
