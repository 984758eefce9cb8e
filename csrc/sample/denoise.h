/* The denoiser callback every sampler calls once per network evaluation, and the latent layout.
 *
 * A sampler state is one chunk laid out as upstream's [B=1, C, T, H, W] float32, C order, with
 * T = t_hist + t_new: the clean history frames first, then the frames being generated (upstream EXP:39, M:400-473,
 * M:1488-1523). The denoiser sees the whole state and returns the velocity v = ε − x0 of the generated frames only (the
 * network returns only those, upstream M:641-647, WL:1006-1018, M:986-994); the samplers put v = 0 on the history
 * themselves. The AR driver plugs the DiT in here; tests and lyra2.sampling plug in Python callables. */
#ifndef LYRA_SAMPLE_DENOISE_H
#define LYRA_SAMPLE_DENOISE_H

#include <stdint.h>

#include "lyra2.h"
#include "nn/backend.h"
#include "sample/rng.h"

typedef struct lyra_latent_shape {
    int64_t c;      /* latent channels (16 for Lyra 2) */
    int64_t t_hist; /* clean history frames (25) */
    int64_t t_new;  /* generated frames (20) */
    int64_t h, w;   /* latent height and width (pixels / 8) */
} lyra_latent_shape;

/* x:     [1, C, t_hist + t_new, H, W] float32, the whole current state (read only)
 * t:     the network timestep: an integer value 0..999 on the UniPC path, 1000·σ as float32 on DMD
 * v_out: [1, C, t_new, H, W] float32, to be filled with the velocity of the generated frames
 * Returns LYRA_OK, or a failing status (with its message set) that the sampler passes back unchanged. */
typedef lyra_status (*lyra_denoise_fn)(void *ctx, const lyra_latent_shape *shape, const float *x, float t,
                                       float *v_out);

/* The same denoiser over backend tensors: the samplers keep their state in a backend's memory (sample/unipc.h
 * lyra_unipc_run, sample/dmd.h lyra_dmd_run), the AR driver's DiT reads and writes it there with no host round trip.
 * x:     (C, t_hist + t_new, H, W) f32 contiguous in that memory (read only)
 * v_out: (C, t_new, H, W) f32 contiguous in that memory, to be filled; the work may still be queued on the backend
 *        when this returns (the sampler's next op runs after it on the same backend) */
typedef lyra_status (*lyra_denoise_tensor_fn)(void *ctx, const lyra_latent_shape *shape, const lyra_tensor *x,
                                              float t, lyra_tensor *v_out);

/* A host denoiser as a tensor denoiser over host memory: the host entry points (lyra_unipc_sample, lyra_dmd_sample)
 * run the tensor samplers on a CPU backend, so one sampler loop serves the host API and the device driver. */
typedef struct lyra_denoise_host {
    lyra_denoise_fn fn;
    void *ctx;
} lyra_denoise_host;
lyra_status lyra_denoise_host_call(void *host, const lyra_latent_shape *shape, const lyra_tensor *x, float t,
                                   lyra_tensor *v_out);

/* Elements of the full state [C, t_hist + t_new, H, W] and of the generated part [C, t_new, H, W]. */
int64_t lyra_latent_numel(const lyra_latent_shape *shape);
int64_t lyra_latent_gen_numel(const lyra_latent_shape *shape);

/* Checks that every size is in range (c, t_new, h, w >= 1, t_hist >= 0) and that the state's
 * element count fits; `what` names the caller's argument in the message. */
lyra_status lyra_latent_shape_check(const lyra_latent_shape *shape, const char *what);

/* Copies between the full state and its generated part.
 * full: [C, t_hist + t_new, H, W]; gen: [C, t_new, H, W]. */
void lyra_latent_gen_get(const lyra_latent_shape *shape, const float *full, float *gen);
void lyra_latent_gen_set(const lyra_latent_shape *shape, float *full, const float *gen);
/* Writes `hist` [C, t_hist, H, W] into the history frames of `full`. */
void lyra_latent_hist_set(const lyra_latent_shape *shape, float *full, const float *hist);

/* The initial state of a chunk (upstream M:615-626, AR:847, AR:922): x = [history ++ float32(standard_normal((1, C,
 * t_new, H, W)))] with the normals drawn from `rng` in C order (channel-major: all t_new·H·W values of channel 0
 * first). Upstream seeds rng with seed + chunk; it is left positioned after the draws. history: [1, C, t_hist, H, W];
 * x: [1, C, t_hist + t_new, H, W]. */
void lyra_latent_init(const lyra_latent_shape *shape, const float *history, lyra_rng *rng, float *x);

#endif
