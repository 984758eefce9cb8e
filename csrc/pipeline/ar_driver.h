/* The autoregressive generator of one direction (upstream AR:469-677, AR:817-1066, M:1488-1493, M:1495-1523,
 * AR:491-544): one image, its depth and a camera path of N = 1 + F·k frames in, N frames out, generated k chunks of F =
 * 4G frames.
 *
 * State: the pixel history (absolute frames, unclamped decoder output), the history latents (the VAE encoder
 * stream primed with the image repeated 4(n_hist0 − 1) + 1 times, then the re-encoded chunks), the decoder stream
 * primed with the prefix latents, the spatial cache seeded with frame 0's depth, and the buffer depth.
 * Per chunk a: CLIP of the last frame, the chunk inputs (pipeline/prep.h), the sampler (UniPC + CFG against the
 * negative prompt, or DMD 4 steps with the DMD LoRA at weight 1), streaming decode, re-encode, and (except after
 * the last chunk) the depth-window update of upstream AR:1059-1060, AR:1071-1393, AR:261-366 through `depth_window`.
 *
 * Callbacks let the caller plug in what is not C here yet and report progress; they are called from the thread
 * running lyra_ar_generate. */
#ifndef LYRA_PIPELINE_AR_DRIVER_H
#define LYRA_PIPELINE_AR_DRIVER_H

#include <stdint.h>

#include "models/da3.h"
#include "pipeline/ar_models.h"

#define LYRA_AR_DEPTH_INTERVAL 8      /* DA3 window stride and cache insertion stride (Z:213, EXP:59) */
#define LYRA_AR_DEPTH_WINDOW 10       /* DA3 max history frames (Z:214) */
#define LYRA_AR_WARP_CHUNK 16         /* targets per soft z-buffer batch (EXP:61) */

/* Depth of a window of generated frames (upstream AR:1059-1060, AR:1071-1393, AR:261-366): images (n, H, W, 3) uint8,
 * their cameras w2c (n, 4, 4) and K (n, 3, 3) (pipeline units) -> depth (n, H, W) in pipeline units (DA3 aligned to the
 * input extrinsics). */
typedef lyra_status (*lyra_ar_depth_fn)(void *ctx, int n, const uint8_t *images, const float *w2c, const float *K,
                                        int height, int width, float *depth);
/* The depth-window model on the driver's device (pipeline/depth_window.c): the window's uint8 frames, DA3's input
 * pixels and DA3's forward stay where the frames are; the caller lends DA3 for the call and the small host steps
 * around it (camera matrices only). Every hook runs on the thread of lyra_ar_generate.
 *   acquire: DA3 for one call on n views of h x w (its network, backend and arena, the arena reserved for that call;
 *            held until release) and its cameras: w2c (n, 4, 4) (pipeline units, with the pose-alignment offsets)
 *            and K (n, 3, 3) at H x W -> ext_norm (n, 4, 4) DA3's normalised extrinsics, K_proc (n, 3, 3) at h x w
 *            (upstream DA3api:397-436, DA3in:219-257).
 *   release: gives DA3 back (a DA3 loaded for this call is freed). Called once after every acquire that succeeded.
 *   align:   the Umeyama Sim(3) scale s of DA3's estimated extrinsics est (n, 3, 4) onto w2c (n, 4, 4) (upstream
 *            DA3out:42-148; RANSAC from 10 views).
 *   record:  NULL, or the window's views as the Python API keeps them: images (n, H, W, 3) uint8, depth (n, H, W),
 *            w2c (n, 4, 4), K (n, 3, 3), all host. */
typedef struct lyra_ar_depth_model {
    void *ctx;
    lyra_status (*acquire)(void *ctx, int n, int height, int width, int h, int w, const float *w2c, const float *K,
                           float *ext_norm, float *K_proc, const lyra_da3 **m, lyra_backend **be, lyra_arena **arena);
    void (*release)(void *ctx);
    lyra_status (*align)(void *ctx, int n, const float *est, const float *w2c, double *s);
    lyra_status (*record)(void *ctx, int n, const uint8_t *images, const float *depth, const float *w2c,
                          const float *K);
} lyra_ar_depth_model;

/* Nonzero: stop at the next check (between network evaluations and stages). */
typedef int (*lyra_ar_interrupt_fn)(void *ctx);
typedef void (*lyra_ar_progress_fn)(void *ctx, const char *stage, int done, int total);
typedef void (*lyra_ar_log_fn)(void *ctx, const char *message);

typedef struct lyra_ar_timings {
    double text, clip, prep, dit, decode, reencode, depth, prime; /* seconds */
    int dit_calls;
    int cache_frames;   /* frames in the spatial memory at the end (1 + the depth-window insertions) */
} lyra_ar_timings;

typedef struct lyra_ar_run {
    lyra_ar_models *models;
    lyra_device device;             /* where the networks run: the captions are embedded first (umT5 alone on the
                                       device), then the models are placed there (lyra_ar_models_place) */
    lyra_dtype policy;              /* on a device: LYRA_DTYPE_BF16 = upstream's precision, F32 = parity mode */
    int height, width;              /* multiples of 16 */
    int64_t num_frames;             /* 1 + F·k, k >= 1 */
    const float *image;             /* (3, H, W) in [−1, 1] */
    const float *depth;             /* (H, W) first-frame depth (pipeline units) */
    const float *w2c, *K;           /* (num_frames, 4, 4), (num_frames, 3, 3) */
    const char *const *captions;    /* (k) caption of each chunk */
    int use_dmd;
    float guidance;                 /* CFG scale (UniPC path) */
    int num_steps;                  /* UniPC steps */
    double shift;                   /* 5.0 */
    uint32_t seed;                  /* chunk a draws its noise with seed + a */
    int warp_chunk;                 /* LYRA_AR_WARP_CHUNK */
    const char *label;              /* progress stage name, e.g. "zoom-in" */
    int park_vae_caches;            /* nonzero: each VAE stream's causal caches wait in pinned host memory outside
                                       its own phase (3.0 GB each way per 480p chunk), the memory plan's choice when
                                       the run would not fit the budget or the card otherwise (lyra2.memory_plan
                                       "vae_parked"); 0: they stay on the device for the run */

    const lyra_ar_depth_model *depth_model; /* DA3 on the device (preferred); NULL: depth_window, if any */
    lyra_ar_depth_fn depth_window;  /* the host form: frames down, depths up (custom depth functions); NULL with no
                                       depth_model: no depth model, see lyra_ar_generate */
    void *depth_ctx;
    lyra_ar_interrupt_fn interrupted;
    void *interrupt_ctx;
    lyra_ar_progress_fn progress;
    lyra_ar_log_fn log;
    void *report_ctx;

    uint8_t *out_frames;            /* (num_frames, H, W, 3): (clamp(x, −1, 1) + 1)/2 · 255, truncated (upstream Z:767-777) */
    uint8_t *out_warp;              /* (num_frames, H, W, 3) the buffer warps (frame 0 = the input), or NULL */
    lyra_ar_timings timings;        /* out */
} lyra_ar_run;

/* Runs the direction. Without depth_window the cache keeps frame 0 only and each chunk's buffer depth is frame
 * 0's depth re-rendered into the buffer camera (logged once): a stand-in until the DA3 model is plugged in.
 * LYRA_ERR_INTERRUPTED when `interrupted` said stop (nothing is written past the last finished chunk). */
lyra_status lyra_ar_generate(lyra_ar_run *r);

/* Floats of the sampler's work memory the driver keeps in the DiT's backend beside the latent x (C, t_hist + t_new,
 * h, w) for a run (lyra2.memory_plan counts it): DMD's velocity / re-noise buffer (lyra_dmd_work_numel), or UniPC's
 * state (lyra_unipc_work_numel) and CFG's unconditional velocity (C, t_new, h, w). */
int64_t lyra_ar_sampler_work_numel(int64_t c, int64_t t_hist, int64_t t_new, int64_t h, int64_t w, int use_dmd);

#endif
