/* The sampler state in a backend's memory (sample/unipc.c, sample/dmd.c): tensor views of the latent layout of
 * denoise.h, the initial noise's upload, the x0 step over the generated frames and the host traces. */
#ifndef LYRA_SAMPLE_LATENT_STATE_H
#define LYRA_SAMPLE_LATENT_STATE_H

#include "nn/backend.h"
#include "sample/denoise.h"

/* (C, t_hist + t_new, H, W) and (C, t_new, H, W) f32 contiguous tensors over p in be's memory. */
lyra_tensor lyra_state_tensor(lyra_backend *be, const lyra_latent_shape *shape, float *p, const char *name);
lyra_tensor lyra_gen_tensor(lyra_backend *be, const lyra_latent_shape *shape, float *p, const char *name);
/* The generated frames of a state tensor: the strided (C, t_new, H, W) view of frames t_hist.. */
lyra_tensor lyra_state_gen(const lyra_latent_shape *shape, const lyra_tensor *state);

/* x's generated frames = noise ((C, t_new, H, W) host f32, C order): one upload into `staging` (a contiguous
 * generated-frames tensor in be's memory), then a strided copy on the device. */
lyra_status lyra_state_set_noise(lyra_backend *be, const lyra_latent_shape *shape, lyra_tensor *x,
                                 lyra_tensor *staging, const char *name, const float *noise);

/* The x0 prediction of the generated frames, m = x − σ·v (kind LYRA_LATENT_X0, f32, or LYRA_LATENT_X0_F64, f64 as
 * DMD), v (C, t_new, H, W); m's history frames = x's (v = 0 there). m may be x itself (in place: the history is
 * then left as it is). */
lyra_status lyra_state_x0(lyra_backend *be, const lyra_latent_shape *shape, lyra_latent_kind kind, float sigma,
                          lyra_tensor *m, const lyra_tensor *x, const lyra_tensor *v);

/* Traces for tests: t into the contiguous host array `host`; v (C, t_new, H, W) into host (C, T, H, W) with zeros on
 * the history. */
lyra_status lyra_state_trace(lyra_backend *be, const lyra_tensor *t, float *host);
lyra_status lyra_state_trace_v(lyra_backend *be, const lyra_latent_shape *shape, const lyra_tensor *v, float *host);

#endif
