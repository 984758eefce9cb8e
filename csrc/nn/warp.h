/* Forward warping of one source view into N target cameras (upstream M:1601-1822, FW, FW:57-150): the CPU reference
 * of op warp_forward (nn/ops.h), in nn so that the backends can run it; the preview renderer, the spatial cache and
 * the chunk inputs above use it too.
 *
 * Conventions: OpenCV camera axes, w2c row-major 4x4 with the translation in column 3, K row-major 3x3,
 * images channel-first (C,H,W), integer pixel coordinates (x = column, y = row) for the warp (rays use
 * pixel centres, see rays.h). All arithmetic is float32 in upstream's op order so that points landing
 * exactly on integer pixels (the floor = ceil double splat, docs/REFERENCES.md#upstream-quirks-kept-on-purpose item
 * 13) land where upstream's do. */
#ifndef LYRA_NN_WARP_H
#define LYRA_NN_WARP_H

#include <stdint.h>

#include "lyra2.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- nn/cpu/cpu_warp_matrix.c ---- */

/* inv(a) for a row-major n x n float32 matrix (n = 3 or 4), rounded as torch 1.13 CPU `linalg.inv`
 * rounds it (upstream M:1601-1822, FW): LU of aᵀ with partial pivoting (column scaled by the pivot's reciprocal),
 * then the transposed triangular solves with sequential sums, then the row swaps undone in reverse.
 * a: (n,n), out: (n,n). LYRA_ERR_ARG (message names `what`) when a pivot is 0 or the result not finite. */
lyra_status lyra_warp_invert(const float *a, int n, float *out, const char *what);

/* ---- nn/cpu/cpu_warp_source.c ---- */

/* depth (H*W) -> out (H*W): clamp(nan_to_num(d, nan=1e4, inf=FLT_MAX), 0, 1e4) (FW:99-100). */
void lyra_warp_sanitize_depth(const float *depth, int64_t count, float *out);

/* Depth-continuity ("reliable") mask of a sanitized depth (FW:38-54): 1 where d > 0 and
 * (max5x5 - min5x5) / (mean5x5 + 1e-6) < 0.05; max/min ignore the border, the mean counts the zero
 * padding (divides by 25). depth: (H,W), mask: (H,W) 0/1. */
void lyra_warp_reliable_mask(const float *depth, int height, int width, uint8_t *mask);

/* World points of the valid pixels (FW:188-215): X = inv(w2c)·[d·inv(K)·(x,y,1); 1], 0 where
 * valid[p] == 0. depth: (H,W) sanitized, valid: (H,W) 0/1, K: (3,3), w2c: (4,4), points: (H,W,3). */
lyra_status lyra_warp_unproject(const float *depth, const uint8_t *valid, int height, int width,
                                const float *K, const float *w2c, float *points);

/* q = K·(w2c·[X;1])[:3] for `count` points (FW:280-299), before the perspective divide.
 * points: (count,3), w2c: (4,4), K: (3,3), out: (count,3). */
void lyra_warp_project(const float *points, int64_t count, const float *w2c, const float *K, float *out);

/* ---- nn/cpu/cpu_warp_splat.c ---- */

/* Largest projected depth max(q_z, 0) over all H*W source points, valid or not: upstream's depth-weight
 * normaliser max(log1p(z)) is taken over every point of the batch, masked ones included
 * (docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 6), and log1p is monotone, so log1p of this max is that
 * normaliser. points: (H*W,3). */
float lyra_warp_max_depth(const float *points, int64_t count, const float *w2c, const float *K);

/* Per-thread scratch of the splat of one target (allocated once per thread and reused). */
typedef struct lyra_warp_scratch {
    int64_t capacity_points, capacity_canvas;
    int32_t *corner_index; /* (P,4) canvas index of the nw, sw, ne, se corners */
    float *corner_weight;  /* (P,4) proximity weight / depth weight */
    int32_t *source_index; /* (P) source pixel of splatted point p */
    float *source_depth;   /* (P) its projected depth */
    float *canvas;         /* ((H+2)*(W+2), C+2): Σ value·w per channel, Σ depth·w, Σ w */
} lyra_warp_scratch;

lyra_status lyra_warp_scratch_reserve(lyra_warp_scratch *s, int channels, int height, int width);
void lyra_warp_scratch_free(lyra_warp_scratch *s);

/* One target of the splat (FW:136-149 + FW:302-419).
 * image: (C,H,W) source values; valid: (H,W) 0/1 source mask; points: (H,W,3) world points;
 * w2c: (4,4), K: (3,3) of the target; log_norm = max(log1p(z)) of the batch (see lyra_warp_max_depth).
 * Outputs (any may be NULL except out_mask): out_image (C,H,W) (holes hole_value, clamped to [-1,1]
 * when clamp_image), out_mask (H,W) 0/1, out_depth (H,W) (holes 0), out_flow (2,H,W) (target pixel
 * minus source grid, every pixel, valid or not). */
typedef struct lyra_warp_splat_args {
    int channels, height, width;
    const float *image;
    const uint8_t *valid;
    const float *points;
    const float *w2c, *K;
    float log_norm;
    int clamp_image;
    float hole_value;
    float *out_image, *out_mask, *out_depth, *out_flow;
} lyra_warp_splat_args;

void lyra_warp_splat(const lyra_warp_splat_args *a, lyra_warp_scratch *s);

/* ---- nn/cpu/cpu_warp_forward.c ---- */

/* The forward warp of one source view into N targets, as `forward_warp_multiframes` with v = 1,
 * is_image = True and render_depth = True, multithreaded (OpenMP) over targets.
 * image: (C,H,W) float32, values in [-1,1]; depth: (H,W) raw z-depth (NaN/inf/<=0 allowed);
 * src_w2c (4,4), src_K (3,3); tgt_w2c (N,4,4), tgt_K (N,3,3);
 * clean_points: apply the depth-continuity mask (upstream clean_points and clean_points_continuity);
 * norm_batch: targets per depth-weight normaliser batch, consecutive from target 0 (upstream computes
 *   max(log1p z) over each `warp_chunk_size` batch it warps; 0 = all N targets form one batch);
 * outputs: out_image (N,C,H,W), out_mask (N,H,W), out_depth (N,H,W) or NULL, out_flow (N,2,H,W) or NULL;
 * optional intermediates: out_depth_sanitized (H,W), out_reliable (H,W) (the continuity test alone),
 * out_points (H,W,3). */
typedef struct lyra_warp_forward_args {
    int channels, height, width, n_targets;
    const float *image, *depth, *src_w2c, *src_K, *tgt_w2c, *tgt_K;
    int clean_points;
    int norm_batch;
    float *out_image, *out_mask, *out_depth, *out_flow;
    float *out_depth_sanitized;
    uint8_t *out_reliable;
    float *out_points;
    int n_threads;            /* OpenMP threads; <= 0: OpenMP's default */
} lyra_warp_forward_args;

lyra_status lyra_warp_forward(const lyra_warp_forward_args *a);

#ifdef __cplusplus
}
#endif

#endif
