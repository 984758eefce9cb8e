/* Depth Anything 3 nested (DA3NESTED-GIANT-LARGE as Lyra runs it; upstream Z:211, DU:119-146, DU:162): an any-view
 * DINOv2 ViT with alternating attention + DualDPT (depth, confidence) + CameraEnc / CameraDec, and a metric ViT + DPT
 * (depth, sky), merged into scaled depth with the sky filled (upstream DA3net:499-567, DA3aln).
 *
 * Weights use the NestedDepthAnything3Net names ("da3.*", "da3_metric.*"; a leading "model." is stripped by the
 * glue). Configuration from names and shapes; what the weights cannot say (heads of the metric ViT and of the
 * camera encoder, the tap blocks) is in lyra_da3_options. Unused sub-networks (DualDPT aux/ray branch, GS head and
 * adapter) are accepted and ignored.
 *
 * The forward runs on normalised pixels (S, 3, h, w) (lyra_da3_preprocess makes them from uint8 images) with
 * optional normalised w2c extrinsics and preprocessed intrinsics, and returns the nested outputs at h×w. The API
 * steps around it (extrinsics normalisation, Umeyama alignment to the input poses) are in lyra2/models/depth.py. */
#ifndef LYRA_DA3_H
#define LYRA_DA3_H

#include "models/vit.h"

typedef struct lyra_da3_options {
    int64_t anyview_heads;   /* <= 0: width / q_norm width (head width from the q/k-norm weights) */
    int64_t metric_heads;    /* <= 0: width / 64 (DINOv2 ViT-L) */
    int64_t cam_enc_heads;   /* <= 0: width / 96 (DA3-giant: 16 heads of 96) */
    int anyview_taps[4];     /* all 0: [19, 27, 33, 39] (needs 40 blocks) */
    int metric_taps[4];      /* all 0: [4, 11, 17, 23] (needs 24 blocks) */
} lyra_da3_options;

/* One DPT / DualDPT head (upstream DA3dual:30-364, DA3net:484). */
typedef struct lyra_da3_rcu { lyra_tensor c1_w, c1_b, c2_w, c2_b; } lyra_da3_rcu;
typedef struct lyra_da3_fusion {
    int has_rcu1;
    lyra_da3_rcu rcu1, rcu2;
    lyra_tensor out_w, out_b;           /* 1×1 (F, F) */
} lyra_da3_fusion;

typedef struct lyra_da3_head {
    int64_t dim_in, features, oc[4], out_dim;
    int dual;                           /* 1: DualDPT (head.norm, UV pos-embed, depth + conf); 0: DPT (+ sky) */
    int pos_embed;                      /* UV pos-embed after the projects and the upsample (DualDPT, GSDPT) */
    int sky;                            /* DPT sky head present */
    lyra_tensor norm_w, norm_b;         /* (dim_in), DualDPT only */
    lyra_tensor proj_w[4], proj_b[4];   /* (oc, dim_in, 1, 1) */
    lyra_tensor rs0_w, rs0_b;           /* ConvT (oc0, oc0, 4, 4) */
    lyra_tensor rs1_w, rs1_b;           /* ConvT (oc1, oc1, 2, 2) */
    lyra_tensor rs3_w, rs3_b;           /* conv (oc3, oc3, 3, 3) stride 2 */
    lyra_tensor rn_w[4];                /* layer{k}_rn (F, oc, 3, 3), no bias */
    lyra_da3_fusion fuse[4];            /* refinenet1..4 */
    lyra_tensor oc1_w, oc1_b;           /* output_conv1 (F/2, F, 3, 3) */
    lyra_tensor oc2a_w, oc2a_b;         /* output_conv2.0 (32, F/2, 3, 3) */
    lyra_tensor oc2b_w, oc2b_b;         /* output_conv2.2 (out_dim, 32, 1, 1) */
    lyra_tensor sky_a_w, sky_a_b, sky_b_w, sky_b_b; /* sky_output_conv2.0 / .2 */
} lyra_da3_head;

typedef struct lyra_da3_cam_enc {
    lyra_vit trunk;                     /* trunk.{i}: pre-norm blocks over the S view tokens */
    lyra_tensor fc1_w, fc1_b, fc2_w, fc2_b;            /* pose_branch (C/2, 9), (C, C/2) */
    lyra_tensor token_norm_w, token_norm_b, trunk_norm_w, trunk_norm_b;
} lyra_da3_cam_enc;

typedef struct lyra_da3_cam_dec {
    int64_t dim;                        /* 2C */
    lyra_tensor b0_w, b0_b, b2_w, b2_b; /* backbone.0 / .2 (D, D) */
    lyra_tensor t_w, t_b, q_w, q_b, fov_w, fov_b;      /* fc_t (3, D), fc_qvec (4, D), fc_fov.0 (2, D) */
} lyra_da3_cam_dec;

typedef struct lyra_da3 {
    lyra_da3_options opt;
    lyra_vit anyview, metric;
    lyra_da3_head head, metric_head;
    lyra_da3_cam_enc cam_enc;
    lyra_da3_cam_dec cam_dec;
    int has_cam_enc;
    lyra_vit_wlist wlist;
    void *mem;              /* the one weight allocation: host, or device memory of `placed` */
    lyra_backend *placed;   /* the device backend holding mem after lyra_da3_place, else NULL */
} lyra_da3;

/* Loads every needed tensor (one allocation). Errors name the tensor (LYRA_ERR_FORMAT) or option (LYRA_ERR_ARG).
 * Free with lyra_da3_free, also after a failure. */
lyra_status lyra_da3_load(lyra_da3 *m, const lyra_text_wsource *src, const lyra_da3_options *opt);
void lyra_da3_free(lyra_da3 *m);
/* Moves the weights into be's device memory once (a no-op on the CPU backend or when already placed); be must
 * outlive the model. LYRA_ERR_OOM naming the weights and their size when the device has no room. `autocast`:
 * LYRA_DTYPE_BF16 is upstream's GPU policy (the two backbones under torch.autocast(bfloat16), upstream
 * DA3api:143-145: their GEMM weights and outputs and the attention's q/k/v bf16, residual stream, LayerNorms and
 * RoPE f32; the camera encoder and every head with autocast disabled, upstream DA3net:139-140, DA3net:155, so
 * f32); LYRA_DTYPE_F32 is a parity mode. */
lyra_status lyra_da3_place(lyra_da3 *m, lyra_backend *be, lyra_dtype autocast);

/* ---- preprocessing (upstream DA3in:219-257) ---- */
/* Processed size for an h0×w0 image: longest side scaled to process_res (round()), then each side to the nearest
 * multiple of 14 (ties up). *resample1/2 (may be NULL) get 0 none, 1 INTER_AREA, 2 INTER_CUBIC per step. */
void lyra_da3_processed_size(int h0, int w0, int process_res, int *h1, int *w1, int *h, int *w, int *resample1,
                             int *resample2);
/* cv2.resize of uint8 (H, W, 3) -> (Ho, Wo, 3) with INTER_AREA (shrinking, non-integer ratios as OpenCV's generic
 * area path) or INTER_CUBIC (OpenCV's fixed-point bicubic); method 1 AREA, 2 CUBIC. */
lyra_status lyra_da3_resize_u8(uint8_t *dst, int Ho, int Wo, const uint8_t *src, int H, int W, int method);
/* pixels (3, h, w) f32 <- ImageNet normalisation of img (h, w, 3) uint8: (x/255 − mean)/std. */
void lyra_da3_normalize(float *pixels, const uint8_t *img, int h, int w);
/* The ImageNet normalisation lyra_da3_normalize applies (per RGB channel; op u8_pixels takes them too). */
extern const float lyra_da3_mean[3], lyra_da3_std[3];

/* ---- forward ---- */
/* Optional intermediates for tests (each NULL or a host buffer of the given shape; S views, G = gh·gw,
 * C / Cm the any-view / metric widths). */
typedef struct lyra_da3_trace {
    float *av_pos_embed;       /* (1 + G, C) */
    float *av_taps[4];         /* (S, G, 2C) */
    float *av_cams[4];         /* (S, 2C) */
    float *cam_enc_pose;       /* (S, 9) */
    float *cam_enc_tokens;     /* (S, C) */
    float *av_output_conv1;    /* (S, F/2, 8·gh, 8·gw)... exactly refinenet1 size: (S, F/2, 2·4·gh, 2·4·gw) */
    float *av_depth, *av_conf; /* (S, h, w) raw head outputs */
    float *pose_enc;           /* (S, 9) CameraDec output */
    float *met_taps[4];        /* (S, G, Cm) */
    float *met_depth;          /* (S, h, w) exp head output before metric scaling */
    float *met_depth_scaled;   /* (S, h, w) */
    uint8_t *non_sky;          /* (S, h, w) sky < 0.3 */
    uint8_t *align_mask;       /* (S, h, w) */
    float median_conf, scale, sky_fill;   /* merge scalars (always filled) */
} lyra_da3_trace;

typedef struct lyra_da3_out {
    float *depth;       /* (S, h, w) nested depth (σ-scaled, sky filled) */
    float *conf;        /* (S, h, w) */
    float *sky;         /* (S, h, w) metric sky (ReLU output) */
    float *extrinsics;  /* (S, 3, 4) predicted w2c, translations σ-scaled */
    float *intrinsics;  /* (S, 3, 3) predicted K at h×w */
    float scale;        /* σ */
    /* NULL: the host form (depth, conf and sky above are filled, the maps come down for the merge on the host).
     * Else the device form: op da3_merge runs where the maps are, depth / conf / sky are not touched, and *depth_dev
     * receives the merged depth (S, h, w) f32 in the arena, valid until the caller resets it (only the merge's four
     * scalars come down; the trace's map fields are not filled). */
    lyra_tensor *depth_dev;
} lyra_da3_out;

/* pixels (S, 3, h, w) f32 on be's device; ext (S, 4, 4) normalised w2c and K (S, 3, 3) at h×w (host, both or
 * neither). Without poses and S >= 3, upstream would reorder views (reference-view selection, never used by Lyra):
 * refused with LYRA_ERR_ARG. The arena must hold lyra_da3_arena_bytes(m, S, h, w). */
lyra_status lyra_da3_forward(const lyra_da3 *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                             const float *ext, const float *K, lyra_da3_out *out, lyra_da3_trace *trace);
size_t lyra_da3_arena_bytes(const lyra_da3 *m, int64_t S, int64_t h, int64_t w);
/* The arena one call on S views of h x w (with poses or not) really uses, from running the forward on the measuring
 * backend presenting `device` (da3_measure.c); lyra_da3_arena_bytes bounds it. */
lyra_status lyra_da3_arena_measure(const lyra_da3 *m, lyra_device device, int64_t S, int64_t h, int64_t w, int poses,
                                   size_t *need);

/* The nested merge alone (upstream DA3net:499-567, DA3aln) on host arrays: scales metric_depth in place by mean focal /
 * 300, fits σ, scales depth and the extrinsics' translations, fills sky. Fails (LYRA_ERR_ARG) with <= 10 non-sky
 * pixels. */
lyra_status lyra_da3_merge(int64_t S, int64_t h, int64_t w, float *depth, float *conf, float *metric_depth,
                           const float *sky, float *extrinsics, const float *intrinsics, lyra_da3_trace *trace,
                           float *scale);

/* LYRA_ERR_ARG unless more than 10 pixels are non-sky (upstream asserts). */
lyra_status lyra_da3_merge_check(int64_t non_sky);
/* The predicted extrinsics' (S, 3, 4) translations ·= σ (the nested merge's metric scale). */
void lyra_da3_scale_extrinsics(float *extrinsics, int64_t S, float sigma);

/* ---- cost model ---- */
/* Parameters used by Lyra's calls and FLOPs (2 per MAC) of one forward on S views at h×w (poses: camera encoder
 * included). */
int64_t lyra_da3_params(const lyra_da3 *m);
double lyra_da3_flops(const lyra_da3 *m, int64_t S, int64_t h, int64_t w, int poses);

/* internal pieces shared by the da3_*.c files */
/* One view's head: out0 (1, 1, h, w) the first logit channel (depth), out1 (1, 1, h, w) the second (the DualDPT's
 * confidence) or the sky map (ReLU'd, a DPT with sky), both in the backend's memory; no activation on the logits. */
lyra_status lyra_da3_head_run(const lyra_da3_head *hd, lyra_backend *be, lyra_arena *a, const lyra_tensor *const *feats,
                              int64_t gh, int64_t gw, int64_t h, int64_t w, lyra_tensor *out0, lyra_tensor *out1,
                              float *output_conv1);
/* The head's first half for one view: levels, top-down fusion and output_conv1 into *c1 (1, F/2, 8gh, 8gw),
 * allocated in the arena (the caller resets it). aspect = image w / h (UV embedding). */
lyra_status lyra_da3_head_neck(const lyra_da3_head *hd, lyra_backend *be, lyra_arena *a,
                               const lyra_tensor *const *feats, int64_t gh, int64_t gw, double aspect, lyra_tensor *c1);
/* x (1, Cc, ph, pw) += 0.1·UV sin/cos embedding (upstream DA3dpt _add_pos_embed, DA3hu create_uv_grid). */
lyra_status lyra_da3_add_uv(lyra_backend *be, lyra_arena *a, lyra_tensor *x, double aspect);
/* Lists the tensors of a DPT-style head under `prefix` (geometry already in *hd) into l. */
lyra_status lyra_da3_head_add_weights(lyra_da3_head *hd, lyra_vit_wlist *l, const char *prefix);
size_t lyra_da3_head_arena_bytes(const lyra_da3_head *hd, int64_t gh, int64_t gw, int64_t h, int64_t w);
double lyra_da3_head_flops(const lyra_da3_head *hd, int64_t gh, int64_t gw, int64_t h, int64_t w);
lyra_status lyra_da3_cam_enc_run(const lyra_da3 *m, lyra_backend *be, lyra_arena *a, const float *ext,
                                 const float *K, int64_t S, int64_t h, int64_t w, lyra_tensor *tokens, float *pose_out);
void lyra_da3_pose_encoding(const float *ext, const float *K, int64_t S, int64_t h, int64_t w, float *enc);
void lyra_da3_pose_decode(const float *enc, int64_t S, int64_t h, int64_t w, float *extrinsics, float *intrinsics);
lyra_status lyra_da3_cam_dec_run(const lyra_da3_cam_dec *d, lyra_backend *be, lyra_arena *a, const lyra_tensor *cam,
                                 float *pose_enc);

#endif
