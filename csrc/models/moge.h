/* MoGe v1 (microsoft/MoGe @ 0744441, moge/model/v1.py; upstream MOGE:214-242, DU:46, MCFG:25-35) as Lyra-2 uses it: the
 * affine-invariant point map whose depth gives the first frame's depth its global scale (upstream DU:33-89,
 * MOGE:302-395, Z:624-626).
 *
 *   image (3, H, W) in [0, 1]
 *     -> bicubic antialias to (h1, w1) = (int(H·f), int(W·f)), f = sqrt(num_tokens·196/(H·W))   (upstream Z:378)
 *     -> ImageNet normalisation -> bilinear antialias to (h1/14·14, w1/14·14)
 *     -> DINOv2 ViT backbone, last n_features blocks final-normed (taps)                        (upstream Z:199,
 * Z:253-317, Z:320-349)
 *     -> head: summed 1×1 projections, UV-conditioned ConvTranspose upsampling stages with
 *        GroupNorm residual blocks, bilinear to (h1, w1), point (x', y', log z) and mask heads    (upstream
 * MOGE:24-142)
 *     -> bilinear to (H, W), exp remap, focal/shift recovery, depth = z + shift                  (upstream
 * MOGE:286-299, MGT:40-52, MGN:79-112)
 *
 * Files: moge_weights.c (configuration from the weights and loading), moge_head.c (the head on the runtime
 * ops), moge.c (preprocessing, backbone call, forward), moge_geom.c (UV grid, focal/shift recovery, infer()
 * post-processing, Lyra's depth post-processing and DA3 alignment), moge_lm.c (the MINPACK n = 1 solver). */
#ifndef LYRA_MOGE_H
#define LYRA_MOGE_H

#include "core/arena.h"
#include "core/tensor.h"
#include "models/vit.h"
#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- focal / shift (upstream MGT:40-52, MGN:79-112) */

typedef struct lyra_moge_lm_info {
    double shift;   /* the minimiser as MINPACK returns it (float64) */
    double cost;    /* 0.5·‖r(shift)‖² */
    int nfev;       /* residual evaluations made by lmdif (including the finite-difference ones) */
    int status;     /* MINPACK info: 1-3 converged (ftol / xtol / both), 4 gtol, 5 maxfev, 6-8 eps-level tolerances */
} lyra_moge_lm_info;

/* MoGe's solve_optimal_focal_shift least squares: minimise ‖F(s)·xy/(z+s) − uv‖² over the shift s (the focal
 * F(s) in closed form), by scipy least_squares(method='lm', x0=0, ftol=1e-3), i.e. MINPACK lmdif with n = 1.
 * uv (n, 2), xyz (n, 3) f32 host arrays, n >= 1. trace: NULL or (trace_cap, 2) f64 receiving (s, ‖r(s)‖) for
 * each of the first trace_cap residual evaluations, in call order. */
lyra_status lyra_moge_lm_solve(const float *uv, const float *xyz, int64_t n, lyra_moge_lm_info *info,
                               double *trace, int trace_cap);
/* The focal F at the float32 shift (upstream recomputes it after rounding the shift, in float32). uv (n, 2),
 * xyz (n, 3). */
lyra_status lyra_moge_lm_focal(const float *uv, const float *xyz, int64_t n, float shift, float *focal);

/* The normalised view-plane UV of a W×H map (MGT normalized_view_plane_uv): uv (H, W, 2) f32 with
 * uv[i][j] = (u_j, v_i), u = linspace(−sx·(W−1)/W, +sx·(W−1)/W, W), v likewise with sy, sx = a/√(1+a²),
 * sy = 1/√(1+a²), in torch.linspace's float32 arithmetic. aspect <= 0 means W/H. */
void lyra_moge_uv(float *uv, int64_t H, int64_t W, double aspect);

/* recover_focal_shift (MGT:115-170): points (H, W, 3) f32, mask (H, W) u8 (nonzero = valid) or NULL.
 * Nearest 64×64 samples of points, UV and mask, then lyra_moge_lm_solve on the valid ones; fewer than 2
 * valid samples give focal 1, shift 0. n_valid (optional) receives the sample count. */
lyra_status lyra_moge_recover_focal_shift(const float *points, const uint8_t *mask, int64_t H, int64_t W,
                                          float *focal, float *shift, lyra_moge_lm_info *info, int64_t *n_valid);
/* The nearest 64×64 samples themselves (for tests): uv (64·64, 2), xyz (64·64, 3) receive the valid samples
 * in row-major order of the 64×64 grid; returns their count in *n. */
void lyra_moge_samples(const float *points, const uint8_t *mask, int64_t H, int64_t W, float *uv, float *xyz,
                       int64_t *n);

/* ---------------------------------------------------------------- infer() outputs (upstream MOGE:286-299) */

/* From the forward outputs at the input size: points (H, W, 3) after the exp remap and mask logits (H, W):
 * mask = logit > threshold; (focal, shift) recovered; depth (H, W) = z + shift (+inf where masked);
 * K (3, 3) normalised intrinsics (fx = focal/2·√(1+a²)/a, fy = focal/2·√(1+a²), c = 0.5, a = W/H);
 * out_points (H, W, 3) = depth unprojected through K at pixel centres (force_projection), +inf where masked.
 * Any output pointer may be NULL except focal and shift. */
lyra_status lyra_moge_finish(const float *points, const float *mask_logit, int64_t H, int64_t W, float threshold,
                             float *depth, uint8_t *mask, float *K, float *out_points, float *focal, float *shift);

/* Lyra's depth_utils post-processing (DU:75-80): depth (H·W) in place: NaN -> 1e4, ±inf -> ±FLT_MAX, clamp to
 * [0, 1e4], 1000 where mask == 0. */
void lyra_moge_lyra_depth(float *depth, const uint8_t *mask, int64_t n);

/* Lyra's inverse-depth least-squares alignment of the DA3 depth to MoGe (upstream Z:634-652, DU:33-89, MOGE:302-395,
 * Z:624-626): valid = (da3_mask > 0.5) & moge_mask; with more than 10 valid pixels, a = 1/(d_da3 + 1e-6), b = 1/(d_moge
 * + 1e-6), s = Σab / Σa² (float32 sums); out (n) = d_da3 / s when Σa² > 1e-8 and s > 1e-6, else d_da3 unchanged.
 * Returns via *scale the s applied (1 when not applied), *applied 0/1, and the sums. */
typedef struct lyra_moge_align_info {
    int64_t n_valid;
    float numerator, denominator, scale;
    int applied;
} lyra_moge_align_info;
void lyra_moge_align(const float *da3_depth, const float *da3_mask, const float *moge_depth,
                     const uint8_t *moge_mask, int64_t n, float *out, lyra_moge_align_info *info);

/* ---------------------------------------------------------------- the network */

#define LYRA_MOGE_MAX_FEATURES 8
#define LYRA_MOGE_MAX_STAGES 6
#define LYRA_MOGE_MAX_RES 4

/* What the weights do not say (upstream: the checkpoint's model_config and the DINOv2 hub entry). */
typedef struct lyra_moge_options {
    int64_t heads;               /* backbone attention heads; <= 0: dim / 64 (every DINOv2 size has 64-wide heads) */
    int64_t tokens_min, tokens_max; /* num_tokens_range (released v1: 1200, 2500) */
    float mask_threshold;        /* 0.5 */
} lyra_moge_options;

typedef struct lyra_moge_config {
    lyra_moge_options opt;
    int64_t dim;                 /* backbone width C */
    int64_t n_features;          /* head.projects: taps of the last n_features blocks */
    int64_t dim_proj;            /* P */
    int64_t n_stages;            /* head.upsample_blocks */
    int64_t dim_up[LYRA_MOGE_MAX_STAGES], hidden[LYRA_MOGE_MAX_STAGES]; /* stage widths, res-block hidden widths */
    int64_t n_res;               /* residual blocks per stage */
    int64_t last_ch, last_res, last_hidden, last_k; /* output blocks: conv3x3 width, res blocks, their hidden, final kernel */
} lyra_moge_config;

typedef struct lyra_moge_res {
    lyra_tensor gn1_w, gn1_b;    /* (c) f32, GroupNorm(1, c) */
    lyra_tensor conv1_w, conv1_b; /* (h, c, 3, 3), (h) */
    lyra_tensor gn2_w, gn2_b;    /* (h) f32, GroupNorm(h / 32, h) */
    lyra_tensor conv2_w, conv2_b; /* (c, h, 3, 3), (c) */
} lyra_moge_res;

typedef struct lyra_moge_stage {
    lyra_tensor up_w, up_b;      /* ConvTranspose2d (in + 2, out, 2, 2), (out) */
    lyra_tensor conv_w, conv_b;  /* (out, out, 3, 3), (out), replicate padding */
    lyra_moge_res res[LYRA_MOGE_MAX_RES];
} lyra_moge_stage;

typedef struct lyra_moge_out {
    lyra_tensor conv0_w, conv0_b; /* (last_ch, dim_up[-1] + 2, 3, 3), (last_ch) */
    lyra_moge_res res[LYRA_MOGE_MAX_RES];
    lyra_tensor conv_w, conv_b;  /* (d, last_ch, k, k), (d): d = 3 points, 1 mask */
} lyra_moge_out;

typedef struct lyra_moge {
    lyra_moge_config cfg;
    lyra_vit vit;                /* the DINOv2 backbone under "backbone." */
    lyra_tensor proj_w[LYRA_MOGE_MAX_FEATURES], proj_b[LYRA_MOGE_MAX_FEATURES]; /* (P, C, 1, 1), (P) */
    lyra_moge_stage stages[LYRA_MOGE_MAX_STAGES];
    lyra_moge_out out[2];        /* points, mask */
    float mean[3], std[3];       /* image_mean / image_std buffers, ImageNet when absent */
    lyra_vit_wlist wl;           /* the weight names (the loaded descriptors point at them) */
    void *mem;                   /* the one weight allocation: host, or device memory of `placed` */
    lyra_backend *placed;        /* the device backend holding mem after lyra_moge_place, else NULL */
} lyra_moge;

/* Detects the configuration from the weights (names as MoGeModel.state_dict(): backbone.*, head.*, optional
 * image_mean / image_std) and loads them into one allocation. Free with lyra_moge_free (also after failure). */
lyra_status lyra_moge_load(lyra_moge *m, const lyra_text_wsource *src, const lyra_moge_options *opt);
void lyra_moge_free(lyra_moge *m);
/* Moves the weights into be's device memory once (a no-op on the CPU backend or when already placed); be must
 * outlive the model. LYRA_ERR_OOM naming the weights and their size when the device has no room. `autocast`:
 * LYRA_DTYPE_F16 is upstream's GPU policy (infer(use_fp16=True) runs the forward under fp16 autocast, upstream
 * MOGE:348: the backbone's GEMMs and the attention in f16 with its residual stream, LayerNorms and RoPE f32, the
 * whole head (its convs, the UV planes, the skip adds) in f16 with GroupNorm statistics f32, the input resizes in
 * f32; the outputs widened to f32 for the host-side solve, MOGE:353-354); LYRA_DTYPE_F32 is a parity mode. */
lyra_status lyra_moge_place(lyra_moge *m, lyra_backend *be, lyra_dtype autocast);

/* Sizes of one forward on an H×W image (upstream Z:378): tokens, the bicubic size (h1, w1), the backbone input
 * (h14, w14) and its patch grid. */
typedef struct lyra_moge_geometry {
    int64_t H, W, tokens, h1, w1, h14, w14, gh, gw;
} lyra_moge_geometry;
lyra_status lyra_moge_geometry_of(const lyra_moge_config *c, int64_t H, int64_t W, lyra_moge_geometry *g);

/* Optional host copies of intermediate results (for parity tests); NULL members are skipped.
 * image_resized (3, h1, w1) normalised; image_14 (3, h14, w14); taps (n_features, gh·gw, C); stages[b]
 * (dim_up[b], gh·2^(b+1), gw·2^(b+1)); head (4, h1, w1) = (x', y', log z, mask logit). */
typedef struct lyra_moge_capture {
    float *image_resized, *image_14, *taps, *stages[LYRA_MOGE_MAX_STAGES], *head;
} lyra_moge_capture;

/* The forward pass: raw (4, H, W) host f32 = (x', y', log z, mask logit) bilinearly resized to the input size,
 * from image (3, H, W) host f32 in [0, 1]. arena must have lyra_moge_arena_bytes free. */
lyra_status lyra_moge_forward(const lyra_moge *m, lyra_backend *be, lyra_arena *arena, const float *image,
                              int64_t H, int64_t W, float *raw, lyra_moge_capture *cap);

/* infer(): points (H, W, 3) after the exp remap from raw (4, H, W), then lyra_moge_finish. Outputs as there;
 * fwd_points (H, W, 3) / fwd_mask (H, W) may be NULL. */
lyra_status lyra_moge_infer(const float *raw, int64_t H, int64_t W, float threshold, float *fwd_points,
                            float *depth, uint8_t *mask, float *K, float *points, float *focal, float *shift);

/* Arena bytes of lyra_moge_forward on an H×W image; parameters (backbone + head, as loaded: without the unused
 * mask_token) and FLOPs (2 per MAC: backbone, head convs and transposed convs; resizes and norms left out).
 * They take the configurations only, so costs can be planned without weights (vc: the backbone's). */
size_t lyra_moge_arena_bytes(const lyra_moge_config *c, const lyra_vit_config *vc, int64_t H, int64_t W);
int64_t lyra_moge_params(const lyra_moge_config *c, const lyra_vit_config *vc);
/* Bytes of those parameters as lyra_moge_place stores them: the backbone's GEMM weights and the head's convs in
 * vc->gemm, the rest f32 (per-tensor alignment not counted). */
size_t lyra_moge_weight_bytes(const lyra_moge_config *c, const lyra_vit_config *vc);
double lyra_moge_flops(const lyra_moge_config *c, const lyra_vit_config *vc, int64_t H, int64_t W);

#ifdef __cplusplus
}
#endif
#endif
