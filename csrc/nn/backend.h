/* The backend table: every network op goes through a struct of function pointers, so the CPU reference
 * (csrc/nn/cpu) and the CUDA backend (csrc/nn/cuda) implement exactly the same operations.
 *
 * Networks never call a table entry directly: they call the lyra_op_* wrappers of nn/ops.h, which validate
 * shapes, dtypes and devices ONCE (with messages naming the op and the argument) and then dispatch. A table
 * entry may therefore assume: shapes are consistent as documented in ops.h, every tensor is on be->device,
 * optional tensors are NULL or valid. An entry still returns LYRA_ERR_TYPE for a dtype it does not implement
 * (the CPU backend computes in f32; CUDA adds bf16 activations) and LYRA_ERR_OOM when its scratch cannot grow.
 *
 * Dimension order everywhere: outermost first (see core/tensor.h). */
#ifndef LYRA_BACKEND_H
#define LYRA_BACKEND_H

#include "core/arena.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pointwise activations. GELU_TANH is 0.5·x·(1+tanh(√(2/π)(x+0.044715x³))); GELU_ERF is 0.5·x·(1+erf(x/√2)). */
typedef enum lyra_act {
    LYRA_ACT_IDENTITY = 0,
    LYRA_ACT_GELU_ERF,
    LYRA_ACT_GELU_TANH,
    LYRA_ACT_SILU,
    LYRA_ACT_RELU,
    LYRA_ACT_SIGMOID,
    LYRA_ACT_COUNT
} lyra_act;

typedef enum lyra_pad_mode {
    LYRA_PAD_ZERO = 0,
    LYRA_PAD_REPLICATE
} lyra_pad_mode;

/* RoPE pairings. INTERLEAVED: pair p = (x[2p], x[2p+1]) with angle[p] (GPT-J / Wan, upstream W:93-188, W:203-232,
 * WL:586-596). HALF: D is split into n_sections sections of size S = D/n_sections; inside section s the pair i is
 * (x[sS+i], x[sS+i+S/2]) with angle[s·S/2 + i] ("rotate-half" per section; DA3 2-D RoPE uses 2 sections, y then x,
 * upstream DA3rope:23-200, DA3vit:282-298). Both rotate (a, b) -> (a·cos φ − b·sin φ, a·sin φ + b·cos φ). */
typedef enum lyra_rope_mode {
    LYRA_ROPE_INTERLEAVED = 0,
    LYRA_ROPE_HALF
} lyra_rope_mode;

typedef enum lyra_resize_mode {
    LYRA_RESIZE_NEAREST = 0,   /* PyTorch "nearest": src = min(floor(dst·ratio), in−1) */
    LYRA_RESIZE_BILINEAR,
    LYRA_RESIZE_BICUBIC        /* Keys A = −0.75 (A = −0.5 with antialias, as PyTorch) */
} lyra_resize_mode;

typedef struct lyra_resize_params {
    lyra_resize_mode mode;
    int align_corners;         /* bilinear/bicubic only; antialias requires 0 */
    int antialias;             /* PyTorch antialias=True (separable, support widened when shrinking) */
    double ratio_h, ratio_w;   /* source-per-destination ratio; 0 means in/out. PyTorch uses 1/scale_factor
                                  when called with scale_factor (the DA3 pos-embed "+0.1" quirk,
                                  upstream DA3vit:220-280) */
} lyra_resize_params;

/* Patch vector order. C_SLOWEST: p[((c·kt + a)·kh + r)·kw + s] (patch embedding, pixel-shuffle tokens,
 * upstream WL:555-803, WL:600-619, WL:628-642, WL:700-740). C_FASTEST: p[((a·kh + r)·kw + s)·C + c] (the DiT head's
 * unpatchify, upstream W:532-566, WL:1001-1017). */
typedef enum lyra_patch_order {
    LYRA_PATCH_C_SLOWEST = 0,
    LYRA_PATCH_C_FASTEST
} lyra_patch_order;

typedef struct lyra_conv2d_params {
    int stride_h, stride_w;                          /* >= 1 */
    int pad_top, pad_bottom, pad_left, pad_right;    /* >= 0; asymmetric allowed (VAE downsample2d pads 0,1,0,1) */
    lyra_pad_mode pad_mode;                          /* MoGe convs use replicate padding */
} lyra_conv2d_params;

/* Time padding is causal in the Wan VAE: pad_front = 2·pt frames before, pad_back = 0 (upstream TOK:70-94, TOK:97-109,
 * TOK:120-198). When a cache ("prefix") of m <= pad_front earlier frames is given, it fills the LAST m of the front
 * padding frames (times −m..−1); the remaining pad_front − m frames are zeros. Spatial padding uses pad_mode. */
typedef struct lyra_conv3d_params {
    int stride_t, stride_h, stride_w;
    int pad_front, pad_back;
    int pad_top, pad_bottom, pad_left, pad_right;
    lyra_pad_mode pad_mode;
} lyra_conv3d_params;

/* The camera of a Gaussian-splat render (op gs_rasterize; the model is in nn/splat_math.h). */
typedef struct lyra_splat_camera {
    float w2c[16];           /* row-major world-to-camera (OpenCV axes) */
    float K[9];              /* row-major pixel intrinsics; skew is ignored (gsplat's pinhole) */
    float near_plane;        /* > 0; gsplat's default is 0.01 */
    float background[3];
} lyra_splat_camera;

/* The cameras of a forward warp (op warp_forward; the model is nn/warp.h's lyra_warp_forward). Host memory:
 * a few floats per target, read when the op is queued. */
typedef struct lyra_warp_params {
    int n_targets;            /* N >= 1 */
    int clean_points;         /* drop source points that fail the depth-continuity test (upstream clean_points) */
    int norm_batch;           /* targets per depth-weight normaliser batch, from target 0 (0: all N in one) */
    const float *src_w2c;     /* (4, 4) row-major world-to-camera of the source view */
    const float *src_K;       /* (3, 3) row-major pixel intrinsics of the source view */
    const float *tgt_w2c;     /* (N, 4, 4) of the targets */
    const float *tgt_K;       /* (N, 3, 3) of the targets */
} lyra_warp_params;

/* The camera of a ray image (op rays; the per-pixel model is nn/rays_math.h). Host memory, read when the op is
 * queued. */
typedef struct lyra_ray_params {
    float K[4];               /* fx, fy, cx, cy (pixels; fx, fy finite and non-zero) */
    float c2w[16];            /* row-major camera-to-world (finite) */
    int moment;               /* 0: [origin, direction] (upstream use_ray_o, the inference setting); 1: [o x d, d] */
    int unshuffle;            /* u >= 1: y is (6·u·u, H/u, W/u), channel c·u² + r·u + q holding pixel (u·i + r, u·j + q) */
} lyra_ray_params;

/* The uint8 conversion of frames in [-1, 1] (op to_u8). */
typedef enum lyra_u8_mode {
    LYRA_U8_VIDEO = 0,        /* (clamp(x, -1, 1) + 1) / 2 · 255, truncated (the output video, upstream VID:45-97) */
    LYRA_U8_ROUND             /* clamp(x·0.5 + 0.5, 0, 1) · 255 + 0.5, truncated (the depth window's DA3 input,
                                 upstream AR:325-328) */
} lyra_u8_mode;

/* The elementwise latent updates of the samplers and of the decoder's input (op latent_update; the per-element
 * formulas are nn/latent_math.h, shared by the host sampler, the CPU reference and the CUDA kernel). Inputs x[0..n),
 * n fixed by the kind; "order" picks UniPC's first- or second-order form (it sets n too). */
typedef enum lyra_latent_kind {
    LYRA_LATENT_CFG = 0,       /* y = u + g·(c − u): x = (c, u) (classifier-free guidance, sample/cfg.h) */
    LYRA_LATENT_X0,            /* y = x − σ·v: x = (x, v) (UniPC's x0 prediction, f32) */
    LYRA_LATENT_X0_F64,        /* y = f32(f64(x) − f64(σ)·f64(v)): x = (x, v) (DMD's x0, upstream's f64 round trip) */
    LYRA_LATENT_RENOISE,       /* y = α·x + σ·ε: x = (x, ε) (DMD's re-noise to the next σ) */
    LYRA_LATENT_UNIPC_CORRECT, /* UniC: x = (L, M_i, M_{i−1}) (order 1) or (L, M_i, M_{i−1}, M_{i−2}) (order 2) */
    LYRA_LATENT_UNIPC_PREDICT, /* UniP: x = (X^c, M_i) (order 1) or (X^c, M_i, M_{i−1}) (order 2) */
    LYRA_LATENT_DENORM,        /* y = z / inv_std + mean: x = (z, inv_std, mean) (the Wan VAE's denormalisation) */
    LYRA_LATENT_KIND_COUNT
} lyra_latent_kind;

typedef struct lyra_latent_update {
    lyra_latent_kind kind;
    int order;                 /* UniPC kinds: 1 or 2 */
    float sigma;               /* X0, X0_F64: σ; RENOISE: σ of ε */
    float alpha;               /* RENOISE: α of x */
    float guidance;            /* CFG: g */
    float c1, c2, rinv;        /* UniPC: the step's σ_t/σ_s, α_t·expm1(−h) (= c3 under bh2), 1/r (sample/unipc.h) */
    float rho0, rho1;          /* UNIPC_CORRECT: the corrector's weights */
} lyra_latent_update;

/* Image preprocessing from uint8 (op u8_pixels, the per-pixel arithmetic nn/u8_pixels_math.h): OpenCV's uint8
 * resampling, then ToTensor and a per-channel mean/std normalisation (DA3's InputProcessor, upstream DA3in:219-257,
 * DA3in:316-383). */
typedef enum lyra_u8_resample {
    LYRA_U8_RESAMPLE_NONE = 0,  /* same size */
    LYRA_U8_RESAMPLE_AREA = 1,  /* cv2.INTER_AREA, shrinking only */
    LYRA_U8_RESAMPLE_CUBIC = 2  /* cv2.INTER_CUBIC */
} lyra_u8_resample;

typedef struct lyra_u8_pixels_params {
    lyra_u8_resample resample;
    float mean[4], std[4];      /* per channel (the first C used); std finite and non-zero */
} lyra_u8_pixels_params;

/* The values of one random weight tensor (op fill_random, nn/ops.h lyra_op_fill_random). */
typedef struct lyra_random_fill {
    uint64_t key;    /* the seed mixed with the tensor's name (lyra_random_fill_rule) */
    float scale;     /* std·√3/65536: s·scale has standard deviation std */
    float mean;
    int bf16_values; /* round each value to bf16 first: the values a bf16 checkpoint holds, whatever y's dtype */
} lyra_random_fill;

typedef struct lyra_backend lyra_backend;

typedef struct lyra_backend_ops {
    const char *name;
    void (*destroy)(lyra_backend *be);

    /* memory (the CPU backend uses host memory; CUDA device memory) */
    void *(*alloc)(lyra_backend *be, size_t bytes);
    void (*release)(lyra_backend *be, void *ptr);
    lyra_status (*upload)(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src);
    lyra_status (*download)(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src);
    lyra_status (*synchronize)(lyra_backend *be);

    /* layout */
    lyra_status (*copy)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x);
    lyra_status (*fill)(lyra_backend *be, lyra_tensor *y, float value);
    lyra_status (*concat)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim);
    lyra_status (*pad)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *pads,
                       lyra_pad_mode mode);
    lyra_status (*patchify)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                            lyra_patch_order order);
    lyra_status (*unpatchify)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                              lyra_patch_order order);
    lyra_status (*embedding)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *table, const lyra_tensor *ids);

    /* GEMM */
    lyra_status (*linear)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                          const lyra_tensor *b);
    /* y = act(x·wᵀ + b): CUDA fuses bias + GELU-tanh into the GEMM epilogue for 16-bit outputs */
    lyra_status (*linear_act)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b, lyra_act act);
    lyra_status (*matmul)(lyra_backend *be, lyra_tensor *c, const lyra_tensor *a, const lyra_tensor *b,
                          int trans_b, float alpha);
    lyra_status (*attention)(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                             const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask,
                             float scale);
    /* FP8 (e4m3): per-token quantization q (M, K) u8, s (M) f32 of x (..., K); the scaled FP8 GEMM
     * y (..., N) = (q·w8ᵀ)·s[m]·ws[n] + b with w8 (N, K) u8, ws (N) f32 (see lyra_op_quantize_fp8_rows) */
    lyra_status (*quantize_fp8_rows)(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x);
    lyra_status (*linear_fp8)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                              const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b);

    /* normalisation */
    lyra_status (*rms_norm)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, float eps);
    lyra_status (*layer_norm)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b, float eps);
    lyra_status (*l2norm_channels)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x,
                                   const lyra_tensor *gamma, const lyra_tensor *beta, float eps);
    lyra_status (*group_norm)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int groups,
                              const lyra_tensor *w, const lyra_tensor *b, float eps);
    lyra_status (*softmax)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float scale);

    /* pointwise (inputs may broadcast through stride-0 dims) */
    lyra_status (*unary)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act act);
    lyra_status (*glu)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act);
    lyra_status (*add)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b);
    lyra_status (*mul)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b);
    lyra_status (*scale)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float alpha, float beta);
    lyra_status (*modulate)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *shift,
                            const lyra_tensor *scale);
    lyra_status (*gate)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *g,
                        const lyra_tensor *a);
    lyra_status (*rope)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *angles,
                        lyra_rope_mode mode, int n_sections);
    lyra_status (*sincos)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves);

    /* convolution and resampling */
    lyra_status (*conv2d)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                          const lyra_tensor *b, const lyra_conv2d_params *p);
    lyra_status (*conv3d)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                          const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p);
    lyra_status (*conv_transpose2d)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                    const lyra_tensor *b, int stride, int padding);
    lyra_status (*upsample_nearest2x)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x);
    lyra_status (*resize)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p);
    lyra_status (*avg_pool3d)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw);

    /* rendering: y (H, W, 5) f32 = (r, g, b, alpha, depth) of the Gaussian splats means (N, 3), scales (N, 3),
     * rotations (N, 4) wxyz, harmonics (N, 3, d_sh) with d_sh 1, 4 or 9, opacities (N), all contiguous f32,
     * seen by cam (nn/splat_math.h). Deterministic: each tile's splats in the total order (depth, index). */
    lyra_status (*gs_rasterize)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means,
                                const lyra_tensor *scales, const lyra_tensor *rotations,
                                const lyra_tensor *harmonics, const lyra_tensor *opacities,
                                const lyra_splat_camera *cam);

    /* overlapped uploads (optional: NULL falls back to the synchronous upload, lyra_op_upload_async below) */
    lyra_status (*upload_async)(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src, int ticket);
    lyra_status (*upload_wait)(lyra_backend *be, int ticket);
    /* host memory the device copies from asynchronously (pinned on CUDA); NULL: malloc / free */
    void *(*host_alloc)(lyra_backend *be, size_t bytes);
    void (*host_release)(lyra_backend *be, void *ptr);

    /* geometry: the forward warp (soft z-buffer bilinear splat) of one source view into N targets, see
     * lyra_op_warp_forward; out_mask and out_depth may be NULL. NULL entry: the backend has no kernel. */
    lyra_status (*warp_forward)(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask,
                                lyra_tensor *out_depth, const lyra_tensor *image, const lyra_tensor *depth,
                                const lyra_warp_params *p);

    /* chunk inputs (pipeline/prep.c; see nn/ops.h): ray images, uint8 frames, a running min/max and the
     * min/max range normalisation of the correspondence depth */
    lyra_status (*rays)(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p);
    lyra_status (*to_u8)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode);
    lyra_status (*minmax)(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev);
    lyra_status (*range_norm)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm,
                              float eps);

    /* the samplers' elementwise updates (see lyra_op_latent_update): y and x[0..n) f32 of y's shape, any strides
     * (stride 0 for a broadcast dim), y == x[i] in place allowed */
    lyra_status (*latent_update)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                                 const lyra_latent_update *p);
    /* the depth window's DA3 pixels from the uint8 frames (see nn/ops.h) */
    lyra_status (*u8_pixels)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_u8_pixels_params *p);
    /* random weights of the real shapes, written where they are used (lyra_op_fill_random) */
    lyra_status (*fill_random)(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r);
    /* DA3's activations and nested merge, and the depth maps' resize (see nn/ops.h); tensors validated there */
    lyra_status (*da3_merge)(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                             lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor);
    lyra_status (*depth_resize)(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor);
} lyra_backend_ops;

struct lyra_backend {
    const lyra_backend_ops *ops;
    lyra_device device;
    int n_threads;          /* CPU worker threads (OpenMP); 0 = all available */
    lyra_arena scratch;     /* CPU backend workspaces (im2col tiles, score tiles, converted weights); the CUDA
                               backend keeps its temporaries in its device memory pool instead */
    void *impl;             /* backend private state (CUDA stream, cuBLAS handle, ...) */
};

/* The CPU reference backend. n_threads <= 0 uses every core OpenMP reports. */
lyra_status lyra_backend_cpu_init(lyra_backend *be, int n_threads);
/* The backend of `device`: CPU (arg = n_threads) or CUDA (arg = device index, see nn/cuda/lyra_cuda.h).
 * LYRA_ERR_UNSUPPORTED naming the reason when this build has no CUDA part, LYRA_ERR_CUDA when no GPU answers. */
lyra_status lyra_backend_init(lyra_backend *be, lyra_device device, int arg);
/* Frees the backend's scratch and private state; safe on a zeroed struct. */
void lyra_backend_free(lyra_backend *be);

/* Grows an EMPTY activation arena to at least `bytes` of the backend's memory: host memory on the CPU backend,
 * one block of the device pool otherwise (the networks' arenas live where their ops run). Contents are not kept.
 * LYRA_ERR_OOM naming `what` (the network or stage) and the size. Release with lyra_backend_arena_free. */
lyra_status lyra_backend_arena_reserve(lyra_backend *be, lyra_arena *a, size_t bytes, const char *what);
/* Frees an arena made by lyra_backend_arena_reserve (or lyra_arena_init) on `be`; safe on a zeroed arena. */
void lyra_backend_arena_free(lyra_backend *be, lyra_arena *a);

/* The precision argument of a network's placement: f32 (the parity mode, and the only one of the CPU) or the
 * network's 16-bit device dtype `device16`. LYRA_ERR_ARG for another dtype, LYRA_ERR_UNSUPPORTED for a 16-bit one
 * on the CPU backend (which computes f32); `what` names the network. */
lyra_status lyra_place_precision_check(const lyra_backend *be, lyra_dtype act, lyra_dtype device16, const char *what);

/* Weight placement: uploads the host weight block of a network, *mem up to the end of its last tensor, into one
 * block of be's device memory, re-points each of the n descriptors (data and device; every non-NULL one must have
 * been carved from *mem, NULL ones are skipped), frees the host block (free()) and sets *mem to the device block
 * (release with be->ops->release). On failure nothing changed. LYRA_ERR_OOM naming `what` and the size when the
 * device has no room. A no-op on the CPU backend. */
lyra_status lyra_backend_place_weights(lyra_backend *be, void **mem, lyra_tensor *const *tensors, int n,
                                       const char *what);
/* As lyra_backend_place_weights, with tensor i stored on the device as dtypes[i] (float dtypes; when any dtype
 * changes, every tensor must be contiguous and share no bytes with another): the block is re-laid out and converted
 * on the host (f32 -> bf16/f16 rounds to nearest even, as torch's .to()), then uploaded once. A network's 16-bit
 * device policy (docs/PRECISION.md) stores its weights this way; descriptors get the new dtype and contiguous
 * strides. */
lyra_status lyra_backend_place_weights_as(lyra_backend *be, void **mem, lyra_tensor *const *tensors,
                                          const lyra_dtype *dtypes, int n, const char *what);
/* As lyra_backend_place_weights_as for random weights (lyra2.testing.random_weights) whose host block was reserved
 * but never written: the same device layout, each tensor filled there with the values of nn/ops.h
 * lyra_random_fill_rule(seed, its name, its shape, bf16_values) in dtypes[i] — nothing staged, nothing uploaded;
 * the host block is freed. On the CPU backend the host block itself is filled. */
lyra_status lyra_backend_place_weights_random(lyra_backend *be, void **mem, lyra_tensor *const *tensors,
                                              const lyra_dtype *dtypes, int n, const char *what, uint64_t seed,
                                              int bf16_values);
/* Transfers between a host tensor and a device tensor of the same shape whose float dtypes may differ (host f32
 * frames into bf16 activations and back): the conversion runs on the host around one transfer of the device
 * dtype's bytes, so no device memory is needed for it. Equal dtypes: lyra_op_upload / lyra_op_download. The host
 * side must be contiguous when the dtypes differ. */
lyra_status lyra_backend_upload_as(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src);
lyra_status lyra_backend_download_as(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src);

/* Overlapped upload (DiT block streaming): starts copying host_src into dst (both contiguous) on the backend's copy
 * stream once the work queued so far has finished with dst (it may still be reading it), so the copy runs beside the
 * work queued next. `ticket` (0 or 1) names the copy; lyra_op_upload_wait(ticket) makes the work queued after it
 * wait for the copy. host_src must stay unchanged until then, and should come from lyra_backend_host_alloc (pinned:
 * a pageable source is copied synchronously by CUDA). Backends without a copy stream upload synchronously. */
lyra_status lyra_op_upload_async(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src, int ticket);
lyra_status lyra_op_upload_wait(lyra_backend *be, int ticket);
/* Host memory for lyra_op_upload_async sources (page-locked on CUDA, malloc elsewhere); NULL + LYRA_ERR_OOM
 * message. Release with lyra_backend_host_release on the same backend. */
void *lyra_backend_host_alloc(lyra_backend *be, size_t bytes, const char *what);
void lyra_backend_host_release(lyra_backend *be, void *ptr);

/* One workspace buffer of at least `bytes` bytes (64-byte aligned), valid until the next call; an op that
 * needs several workspaces asks once for their sum and partitions it. The buffer only grows (when a call asks
 * for more than ever before), so steady-state forward passes never allocate. NULL + LYRA_ERR_OOM message. */
void *lyra_backend_scratch(lyra_backend *be, size_t bytes, const char *what);

#ifdef __cplusplus
}
#endif
#endif
