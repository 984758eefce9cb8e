/* Depth Anything 3's Gaussian-splat branch (the GS head "GSDPT" and the GaussianAdapter) as Lyra-2's
 * reconstruction step runs it (`Lyra-2/lyra_2/_src/inference/vipe_da3_gs_recon.py`, DA3 with infer_gs=True).
 *
 * GSDPT (Depth-Anything-3 src/depth_anything_3/model/gsdpt.py) is a DPT head on the any-view taps with the UV
 * pos-embed, no token norm and no sky branch, whose fused map (output_conv1, upsampled to h/r × w/r) gets an image
 * feature added before the final convs: images_merger = 3 × (conv 3×3 + exact GELU) on the normalised pixels at
 * full resolution, average-pooled to h/r × w/r (gs_ds_feature_mode, which the recon script sets), then the UV
 * pos-embed again, output_conv2 (conv 3×3, ReLU, conv 1×1) -> out_dim raw channels: [offset_xy 2, scales 3,
 * quaternion xyzw 4, SH 3·d_sh, depth offset 1 | density logit 1].
 *
 * The adapter (model/gs_adapter.py) turns the raw maps into world-space Gaussians given the depth and the cameras.
 * Weights: "da3.gs_head.*" of the NestedDepthAnything3Net names (a leading "model." is stripped by the glue); the
 * adapter has none. */
#ifndef LYRA_DA3_GS_H
#define LYRA_DA3_GS_H

#include "models/da3.h"

typedef struct lyra_da3_gs {
    lyra_da3_head head;                 /* GSDPT geometry; head.out_dim = raw channels + 1 (density) */
    lyra_tensor merge_w[3], merge_b[3]; /* images_merger.{0,2,4}: (F/8, 3, 3, 3), (F/4, F/8, 3, 3), (F/2, F/4, 3, 3) */
    int sh_degree;                      /* from out_dim: 2 + 3 + 4 + 3·(deg+1)² + 1 (+ 1 density) */
    lyra_vit_wlist wlist;
    void *mem;
    lyra_backend *placed;               /* the device backend holding mem after lyra_da3_gs_place, else NULL */
} lyra_da3_gs;

/* Loads "da3.gs_head.*" from src (other tensors are ignored: the same file holds the whole DA3). Errors name the
 * tensor. Free with lyra_da3_gs_free, also after a failure. */
lyra_status lyra_da3_gs_load(lyra_da3_gs *g, const lyra_text_wsource *src);
void lyra_da3_gs_free(lyra_da3_gs *g);
/* Moves the weights into be's device memory once (a no-op on the CPU backend); head runs on be then read them
 * there. LYRA_ERR_OOM naming the head when the device has no room (the weights stay on the host then). */
lyra_status lyra_da3_gs_place(lyra_da3_gs *g, lyra_backend *be);

/* One view. taps: 4 × (G, dim_in) host floats (the any-view taps, G = gh·gw), pixels (3, h, w) host (the normalised
 * network input, h = 14·gh, w = 14·gw); out (out_dim, h/r, w/r) host: the head's raw logits (no activation).
 * down_ratio r >= 1 must divide 7 (h/r and w/r stay integers as upstream's int(ph·14/r)). */
lyra_status lyra_da3_gs_head_run(const lyra_da3_gs *g, lyra_backend *be, lyra_arena *a, const float *const *taps,
                                 const float *pixels, int64_t gh, int64_t gw, int down_ratio, float *out);
size_t lyra_da3_gs_arena_bytes(const lyra_da3_gs *g, int64_t gh, int64_t gw, int down_ratio);

/* ---- adapter (host, float32 as upstream) ---- */
typedef struct lyra_da3_gs_adapt_params {
    int sh_degree;            /* 2 for DA3-giant */
    float scale_min, scale_max; /* gaussian_scale_min / max (1e-5, 30 · gs_scale_extra_multiplier) */
    float offset_scale;       /* the raw depth offset is multiplied by this (1 / Umeyama s) */
} lyra_da3_gs_adapt_params;

/* Gaussians of one view, N = hg·wg, in pixel order. raw (out_dim, hg, wg) head logits, depth (hg, wg) (already
 * strided to the GS grid and divided by s), c2w (4, 4) row-major camera-to-world, K (3, 3) pixel intrinsics at
 * hg × wg. Outputs: means (N, 3), scales (N, 3), rotations (N, 4) as upstream stores them (see adapter.c),
 * harmonics (N, 3, d_sh) world-frame SH, opacities (N). */
void lyra_da3_gs_adapt(const lyra_da3_gs_adapt_params *p, const float *raw, int64_t out_dim, int64_t hg, int64_t wg,
                       const float *depth, const float *c2w, const float *K, float *means, float *scales,
                       float *rotations, float *harmonics, float *opacities);

/* Rotation matrices of real SH bands 1 and 2 (3DGS basis and order) for the rotation R (3, 3): rotating a
 * function f to f'(d) = f(Rᵀd) maps its coefficients c to D·c. D1 (3, 3), D2 (5, 5). */
void lyra_sh_rotation(const double *R, double *D1, double *D2);

#endif
