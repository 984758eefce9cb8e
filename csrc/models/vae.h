/* The Wan 2.1 causal 3-D VAE (upstream TOK:717-725, TOK:974-980, TOK:968-972) on the lyra2 runtime: weights, streaming
 * sessions, latent normalisation and a dry-run planner.
 *
 * The network only ever runs as a causal stream (upstream does the same, wan2pt1.py:605-677): a session keeps
 * one cache per causal layer and accepts
 *   encoder: pixel frames, 1 + 4k on the first push, 4k (k >= 1) on every later push;
 *   decoder: latent frames, n >= 1 per push (upstream pushes one at a time).
 * A push of several groups at once equals pushing them one group at a time (the full-sequence definition of
 * upstream TOK:605-630, M:1007-1046, TOK:623-630); only peak memory differs. Frames are float32, video values in [-1,
 * 1]; the decoder output is never clamped (upstream TOK:404-546: Lyra keeps unclamped frames as history).
 *
 * Shapes are outermost first: video (B, 3, T, H, W), latents (B, z_dim, L, H/8, W/8), L = 1 + (T-1)/4. */
#ifndef LYRA_MODELS_VAE_H
#define LYRA_MODELS_VAE_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lyra_vae lyra_vae;
typedef struct lyra_vae_session lyra_vae_session;

/* ---- weights ---- */

/* Loads the 194 upstream tensors (named as the encoder and decoder modules of upstream TOK:306-546) found through
 * `lookup`. `names` lists every tensor the source holds so that an unexpected one is reported. The base width `dim` is
 * read from encoder.conv1.weight (dim, 3, 3, 3, 3) and z_dim from conv2.weight (z, z, 1, 1, 1); dim_mult [1,2,4,4], 2
 * residual blocks and temporal downsampling [F,T,T] are the fixed Wan 2.1 structure. Tensors may be f32/bf16/f16 host
 * arrays; they are copied into one f32 allocation of the CPU backend. Missing / extra / wrong-shape / wrong-dtype
 * tensors: LYRA_ERR_FORMAT naming the tensor. */
lyra_status lyra_vae_load(lyra_vae **out, lyra_tensor_lookup_fn lookup, void *source, const char *const *names,
                          int n_names);
/* A weightless model of the given widths, for lyra_vae_plan_session (its weight descriptors have no data), planned
 * with weights and activations stored as `act` (f32, or bf16 as a placed model runs on a device). */
lyra_status lyra_vae_shapes(lyra_vae **out, int dim, int z_dim, lyra_dtype act);
/* Uploads the weights once to a backend of `device` that the model then owns (lyra_backend_place_weights_as); its
 * sessions run there, with their caches and arena in that device's memory, and their pushes take host frames
 * (uploaded into the arena) and return host frames (downloaded). `precision` is the storage of weights,
 * activations and caches there: LYRA_DTYPE_BF16 is upstream's GPU policy (the model and its input cast to bf16,
 * upstream TOK:864, TOK:881, TOK:900-901; norm statistics and softmax in f32 inside the kernels,
 * docs/PRECISION.md), LYRA_DTYPE_F32 a parity mode. Host frames stay f32 either way. No-op for the CPU (which
 * computes f32 only). On failure (LYRA_ERR_OOM naming the bytes) the model is unchanged and stays usable on the
 * CPU. */
lyra_status lyra_vae_place(lyra_vae *vae, lyra_device device, lyra_dtype precision);
void lyra_vae_free(lyra_vae *vae);
int lyra_vae_dim(const lyra_vae *vae);
int lyra_vae_z_dim(const lyra_vae *vae);
/* Storage dtype of the weights, activations and caches: f32, or bf16 on a device (lyra_vae_place). */
lyra_dtype lyra_vae_precision(const lyra_vae *vae);

/* ---- streaming sessions ---- */

/* A fresh stream with empty caches. n_threads <= 0 uses every core. */
lyra_status lyra_vae_session_new(lyra_vae_session **out, const lyra_vae *vae, int decoder, int n_threads);
/* A session that runs nothing: pushes only walk the network, counting FLOPs and bytes (see stats below).
 * x/y arguments of its pushes may have NULL data. Works on a lyra_vae_shapes model. */
lyra_status lyra_vae_plan_session(lyra_vae_session **out, const lyra_vae *vae, int decoder);
/* Deep copy of the caches and counters (the GUI's undo snapshot, lyra2_ar_inference.py:683-798). */
lyra_status lyra_vae_session_copy(lyra_vae_session **out, const lyra_vae_session *s);
void lyra_vae_session_free(lyra_vae_session *s);
/* Gives the session's activation arena back to its backend; the causal caches stay, and the next push reserves the
 * arena again. The generate driver calls it between its VAE phases so the DiT and the depth window do not sit
 * beside idle VAE temporaries (lyra2.memory_plan counts them so). */
void lyra_vae_session_release_arena(lyra_vae_session *s);
/* Moves the session's causal caches to host memory (page-locked on CUDA) and gives their device memory back; the
 * next push brings them back first, so the stream goes on bit for bit. A no-op on the CPU backend. The generate
 * driver parks its two streams outside the VAE phases, so the DiT's forward and the depth window do not sit beside
 * them (3.0 GB at 480p in bf16, 2 × 3.0 GB of transfers per chunk). On failure nothing has moved. */
lyra_status lyra_vae_session_park(lyra_vae_session *s);

/* Frames a push of n_in frames returns, or LYRA_ERR_ARG naming the allowed counts. */
lyra_status lyra_vae_session_out_frames(const lyra_vae_session *s, int64_t n_in, int64_t *n_out);
/* Encoder push. x (B, 3, T, H, W) f32 host, H and W multiples of 8, B/H/W equal on every push;
 * mu (B, z_dim, T', H/8, W/8) f32 host (raw encoder mean, conv1 channels [0, z_dim), not normalised).
 * On a placed model x and mu (here and in the decoder push) may instead be tensors in the session's device memory
 * (any strides, e.g. frame ranges of one staged block; f32 or the model's precision): they are then copied on the
 * device, not transferred. */
lyra_status lyra_vae_encode_push(lyra_vae_session *s, const lyra_tensor *x, lyra_tensor *mu);
/* Decoder push. z (B, z_dim, n, h, w) f32 host (un-normalised latents, before conv2);
 * video (B, 3, T', 8h, 8w) f32 host. */
lyra_status lyra_vae_decode_push(lyra_vae_session *s, const lyra_tensor *z, lyra_tensor *video);

/* Accounting of the last push, per layer of the layer list (one batch element; the batch loops over it). */
typedef struct lyra_vae_layer_stats {
    char name[40];           /* upstream key prefix, e.g. "encoder.downsamples.5" */
    const char *kind;        /* "conv", "residual", "attention", "downsample2d", ... */
    int64_t in[4], out[4];   /* (C, T, H, W) */
    double flops;            /* 2·MACs of convolutions, linears and attention products */
    double elementwise;      /* elements read by norms, activations, adds, copies and resampling */
    size_t out_bytes;        /* the layer's output activation */
    size_t temp_bytes;       /* peak arena bytes of the layer's temporaries (above the two stream buffers) */
    size_t cache_bytes;      /* the layer's causal cache slots (per batch element) */
    size_t im2col_bytes;     /* largest explicit im2col matrix one of its convs would need: K·To·Ho·Wo·4 */
    size_t score_bytes;      /* attention score matrix if materialised: T·n·n·4 */
} lyra_vae_layer_stats;

#define LYRA_VAE_MAX_LAYERS 24
typedef struct lyra_vae_stats {
    int n_layers;
    lyra_vae_layer_stats layer[LYRA_VAE_MAX_LAYERS];
    size_t stream_bytes;     /* the two ping-pong activation buffers at the bottom of the arena */
    size_t arena_peak;       /* stream_bytes + the largest temporaries */
    size_t cache_bytes;      /* all cache slots of the session (all batch elements) */
} lyra_vae_stats;
/* Stats of the session's last push (zeroed before each push). */
const lyra_vae_stats *lyra_vae_session_stats(const lyra_vae_session *s);
/* The backend the session runs on (the model's device after lyra_vae_place): where callers stage device inputs. */
struct lyra_backend;
struct lyra_backend *lyra_vae_session_backend(lyra_vae_session *s);
/* Marks the stream unusable (later pushes fail with LYRA_ERR_ARG): for callers whose several pushes form one
 * call and failed after some of them advanced the caches. */
void lyra_vae_session_abandon(lyra_vae_session *s);
/* Bytes of the activation arena the session holds (its high-water mark over all pushes). */
size_t lyra_vae_session_arena_peak(const lyra_vae_session *s);

/* ---- latent normalisation (host side, upstream TOK:810-848) ---- */

typedef enum lyra_vae_constants {
    LYRA_VAE_CONST_BF16 = 0, /* what Lyra runs with: mean rounded to bf16, inv_std = bf16(1 / bf16(std)) */
    LYRA_VAE_CONST_FP32      /* plain Wan tables: fp32 mean, inv_std = 1 / fp32(std) */
} lyra_vae_constants;
/* mean[16], inv_std[16] of the chosen set (z_dim must be 16: the tables are the Wan 2.1 ones). */
lyra_status lyra_vae_latent_constants(lyra_vae_constants which, int z_dim, float *mean, float *inv_std);
/* In place over x (B, 16, L, h, w) contiguous f32: latent = (mu − mean)·inv_std. */
lyra_status lyra_vae_normalize(lyra_tensor *x, lyra_vae_constants which);
/* In place: z = latent / inv_std + mean (a division by the rounded inverse, as upstream). */
lyra_status lyra_vae_denormalize(lyra_tensor *x, lyra_vae_constants which);

#ifdef __cplusplus
}
#endif
#endif
