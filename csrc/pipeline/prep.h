/* The inputs of one autoregressive chunk: upstream's `_prepare_lyra2_inputs` (upstream M:1488-1493, M:1495-1523,
 * M:2024-2033, M:1955-1999, upstream WL:827-828, M:616-626, M:595-597, M:1488-1599, M:1601-1888) for any FramePack
 * layout.
 *
 * With n_k temporal slots, S spatial slots and G generated latents (F = 4G frames), chunk a, T = n_k + S + G:
 *   x      (C, T, h, w)          history latents in slot order (temporal picks and spatial image latents), 0 on
 *                                the generated slots (the driver puts the noise there)
 *   y      (4 + C + 384, T, h, w) mask (all ones) | conditioning latents (history = x, generated = VAE latents of
 *                                the buffer warp) | rays [origin, direction] pixel-unshuffled 8×8
 *   buffer (256·S, T, h, w)      correspondence buffer: 0 on temporal slots, the canonical slotted coordinates on
 *                                spatial slots, the warped coordinates + normalised depth of each retrieved frame
 *                                on the generated slots (padded groups −1 / +1)
 * Pixel frames are channel-first (3, H, W) in [−1, 1] (unclamped decoder output), cameras row-major w2c (4, 4)
 * and K (3, 3) of absolute frames. h = H/8, w = W/8. */
#ifndef LYRA_PIPELINE_PREP_H
#define LYRA_PIPELINE_PREP_H

#include <stdint.h>

#include "models/framepack.h"
#include "nn/backend.h"
#include "pipeline/spatial_cache.h"

#define LYRA_PREP_RAY_CHANNELS 384   /* 6 ray components × 8 × 8 */
#define LYRA_PREP_MASK_CHANNELS 4
#define LYRA_PREP_SLOT_CHANNELS 256  /* (x, y, z, depth) × 8 × 8 per spatial slot */
#define LYRA_PREP_FRAMES_PER_LATENT 4

/* A fresh (cache-less) VAE encoder stream, as upstream's model.encode runs one: begin, pushes of frame 0 alone and
 * then of windows of 4 frames, each giving one latent, then end. frames[i] (3, H, W) f32 contiguous in the prep
 * backend's memory (valid during the push only); out (C, h, w) f32 contiguous there, normalised, written by the
 * time `end` returns (a stand-in may encode the whole video at the end). end(ctx, 0) abandons the stream. The driver
 * plugs the Wan VAE in; the parity test a linear stand-in. */
typedef struct lyra_prep_encoder {
    lyra_status (*begin)(void *ctx);
    lyra_status (*push)(void *ctx, const lyra_tensor *const *frames, int n, lyra_tensor *out);
    lyra_status (*end)(void *ctx, int ok);
    void *ctx;
} lyra_prep_encoder;

/* Every tensor and pointer marked "dev" lives in the memory of `be` (the device of the run: the VAE's backend in the
 * driver, whose frames and latents are there; the outputs may be another backend's memory of the same device, the
 * DiT's); the ops run on `be`. The cameras and the spatial cache's retrieval points stay on the host. */
typedef struct lyra_prep_args {
    struct lyra_backend *be;
    const lyra_framepack *fp;
    int height, width;            /* pixels, multiples of 8 */
    int latent_c;                 /* C (16) */
    int64_t chunk;                /* a >= 0 */
    const lyra_tensor *history;   /* dev (t_hist_total, C, h, w) f32, any strides; t_hist_total = n_k + S + G·a */
    int64_t t_hist_total;
    float *const *frames;         /* dev frames[f]: (3, H, W) f32 contiguous of absolute frames f = 0 .. F·a; NULL
                                     for a frame not kept (an error when the chunk reads it: the buffer frame F·a, frame
                                     0 and each retrieved frame) */
    const float *w2c;             /* host (F·(a+1) + 1, 4, 4) absolute frames 0 .. end−1 */
    const float *K;               /* host (F·(a+1) + 1, 3, 3) */
    const float *buffer_depth;    /* dev (H, W) depth of the buffer frame F·a */
    const lyra_scache *cache;     /* host spatial memory (full-resolution H×W entries): retrieval */
    float *const *cache_depth;    /* dev cache_depth[e]: (H, W) the depth of cache entry e */
    const float *canon;           /* dev (S, 3, H, W): lyra_prep_canonical_coords, once per run */
    int warp_chunk;               /* targets per soft z-buffer normaliser batch (16); the warps run in batches of
                                     this many targets when it is a multiple of 4 (the encoder's windows), so only
                                     one batch of warped frames is in memory at a time */
    lyra_prep_encoder encoder;

    lyra_tensor *x;               /* out dev (C, T, h, w) f32 contiguous */
    lyra_tensor *y;               /* out dev (4 + C + 384, T, h, w) contiguous, f32 or (on a device) the DiT's 16-bit
                                     condition dtype: every value computed in f32 and rounded once */
    lyra_tensor *buffer;          /* out dev (256·S, T, h, w) contiguous, y's dtype */
    lyra_tensor *warp_rgb;        /* out dev (F, 3, H, W) f32 the buffer warp (holes −1), or NULL */
    lyra_tensor *warp_coords;     /* out dev (S, F, 3, H, W) f32 warped coordinates in group order, or NULL */
    lyra_tensor *warp_u8;         /* out dev (F, H, W, 3) u8 the buffer warp as video frames, or NULL */

    int n_retrieved;              /* out: retrieval result in upstream's order */
    int64_t retrieved_latent[LYRA_FP_MAX_COUNT];
    int64_t retrieved_frame[LYRA_FP_MAX_COUNT];
    int n_groups;                 /* out: warped coordinate groups (distinct retrieved frames) */
} lyra_prep_args;

/* Fills the outputs of *a (see above) through backend ops. LYRA_ERR_ARG for inconsistent sizes or a missing
 * frame / depth (named), LYRA_ERR_OOM, or what the encoder or an op returns. */
lyra_status lyra_prep_chunk(lyra_prep_args *a);

/* Bytes of the backend memory lyra_prep_chunk allocates for its temporaries (one batch of warped images and depths,
 * the encoder latents, the depth range) at this layout, size and warp_chunk, when the caller gives no warp_rgb. */
int64_t lyra_prep_scratch_bytes(const lyra_framepack *fp, int height, int width, int latent_c, int warp_chunk);

/* The canonical coordinate images of the S spatial slots (upstream M:1525-1546), host (S, 3, H, W): x = linspace(−1,
 * 1, W) per column, y = linspace(−1, 1, H) per row, z = the slot's code. Constant per run: the driver uploads them
 * once. */
void lyra_prep_canonical_coords(int S, int height, int width, float *out);

/* Temporal history picks in k-slot order (upstream M:1488-1493, M:1495-1523, M:2024-2033): [0, T−(n_k−1), …, T−1]. out:
 * (n_k). */
void lyra_prep_temporal_indices(int64_t t_hist_total, int n_k, int64_t *out);

/* Absolute frame of latent ℓ of the virtual timeline (upstream M:1488-1493, M:1495-1523, M:2024-2033): 0 for the
 * n_hist0 prefix latents, then 4(ℓ − n_hist0 + 1). */
int64_t lyra_prep_latent_frame(int64_t latent, int n_hist0);

#endif
