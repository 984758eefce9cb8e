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
#include "pipeline/spatial_cache.h"

#define LYRA_PREP_RAY_CHANNELS 384   /* 6 ray components × 8 × 8 */
#define LYRA_PREP_MASK_CHANNELS 4
#define LYRA_PREP_SLOT_CHANNELS 256  /* (x, y, z, depth) × 8 × 8 per spatial slot */
#define LYRA_PREP_FRAMES_PER_LATENT 4

/* A fresh (cache-less) VAE encode: video (T, 3, H, W) frame-major, T = 1 + 4k -> latents (C, 1 + k, H/8, W/8),
 * normalised. The driver plugs the Wan VAE in; the parity test a linear stand-in. */
typedef lyra_status (*lyra_prep_encode_fn)(void *ctx, const float *video, int64_t T, int height, int width,
                                           float *latents);

typedef struct lyra_prep_args {
    const lyra_framepack *fp;
    int height, width;            /* pixels, multiples of 8 */
    int latent_c;                 /* C (16) */
    int64_t chunk;                /* a >= 0 */
    const float *history;         /* (C, t_hist_total, h, w) history latents, t_hist_total = n_k + S + G·a */
    int64_t t_hist_total;
    const float *const *frames;   /* frames[f]: (3, H, W) of absolute frames f = 0 .. F·a */
    const float *w2c;             /* (F·(a+1) + 1, 4, 4) absolute frames 0 .. end−1 */
    const float *K;               /* (F·(a+1) + 1, 3, 3) */
    const float *buffer_depth;    /* (H, W) depth of the buffer frame F·a */
    const lyra_scache *cache;     /* spatial memory (full-resolution H×W entries) */
    int warp_chunk;               /* targets per soft z-buffer normaliser batch (16) */
    lyra_prep_encode_fn encode;
    void *encode_ctx;

    float *x;                     /* out (C, T, h, w) */
    float *y;                     /* out (4 + C + 384, T, h, w) */
    float *buffer;                /* out (256·S, T, h, w) */
    float *warp_rgb;              /* out (F, 3, H, W) the buffer warp (holes −1), or NULL */
    float *warp_coords;           /* out (S, F, 3, H, W) warped coordinates in group order, or NULL */

    int n_retrieved;              /* out: retrieval result in upstream's order */
    int64_t retrieved_latent[LYRA_FP_MAX_COUNT];
    int64_t retrieved_frame[LYRA_FP_MAX_COUNT];
    int n_groups;                 /* out: warped coordinate groups (distinct retrieved frames) */
} lyra_prep_args;

/* Fills the outputs of *a (see above). LYRA_ERR_ARG for inconsistent sizes (named), LYRA_ERR_OOM, or what the
 * encoder returns. */
lyra_status lyra_prep_chunk(lyra_prep_args *a);

/* Temporal history picks in k-slot order (upstream M:1488-1493, M:1495-1523, M:2024-2033): [0, T−(n_k−1), …, T−1]. out:
 * (n_k). */
void lyra_prep_temporal_indices(int64_t t_hist_total, int n_k, int64_t *out);

/* Absolute frame of latent ℓ of the virtual timeline (upstream M:1488-1493, M:1495-1523, M:2024-2033): 0 for the
 * n_hist0 prefix latents, then 4(ℓ − n_hist0 + 1). */
int64_t lyra_prep_latent_frame(int64_t latent, int n_hist0);

#endif
