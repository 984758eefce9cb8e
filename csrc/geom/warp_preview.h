/* Preview rendering without network weights: the input image forward-warped into every camera of a
 * trajectory (the warp of upstream M:1601-1822, FW), with holes filled by the push-pull inpainting of inpaint.h. */
#ifndef LYRA_GEOM_WARP_PREVIEW_H
#define LYRA_GEOM_WARP_PREVIEW_H

#include <stdint.h>

#include "lyra2.h"

/* rgb: (H,W,3) uint8 input = frame 0; depth: (H,W) float32 z-depth of the input in camera 0 (NaN,
 * inf, <= 0 handled as in the warp: sanitized, pixels at depth 0 not splatted);
 * w2c: (T,4,4), K: (T,3,3): frame 0's camera is the source, frames 1..T-1 the targets;
 * clean_points: drop depth-discontinuity pixels (upstream's continuity test) before splatting;
 * edge_ratio: if > 0, also drop pixels whose 3x3 depth max/min exceeds 1 + edge_ratio (depth edges);
 * norm_batch: targets per depth-weight normaliser batch (0 = all T-1 targets, see warp.h);
 * out: (T,H,W,3) uint8; frame 0 is a copy of rgb. Threaded (OpenMP) over frames. */
typedef struct lyra_preview_args {
    int height, width, frames;
    const uint8_t *rgb;
    const float *depth, *w2c, *K;
    int clean_points, norm_batch;
    float edge_ratio;
    uint8_t *out;
} lyra_preview_args;

lyra_status lyra_warp_preview_render(const lyra_preview_args *a);

#endif
