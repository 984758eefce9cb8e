/* Classical hole filling for the preview renderer: a depth-aware push-pull pyramid. */
#ifndef LYRA_GEOM_INPAINT_H
#define LYRA_GEOM_INPAINT_H

#include <stdint.h>

#include "lyra2.h"

/* Scratch of one fill (reused across frames by one thread). */
typedef struct lyra_inpaint_scratch {
    int64_t capacity;
    float *buf;
} lyra_inpaint_scratch;

void lyra_inpaint_scratch_free(lyra_inpaint_scratch *s);

/* Fills the pixels of `image` where mask == 0 and leaves the others bit-for-bit unchanged.
 * Push: a pyramid of 2x2 reductions carries (colour, depth, confidence = min(1, Σ child confidence)),
 * where the children are weighted by confidence · (d / d_max)^8: when a hole borders both a near and a
 * far surface, the far one (the disoccluded background) supplies the colour.
 * Pull: from the coarsest level down, each pixel becomes conf · own + (1 − conf) · bilinear(coarser)
 * (the bilinear weights again scaled by (d / d_max)^8, so the far side fills a hole across its width),
 * which is smooth inside holes and exact on known pixels (conf = 1).
 * image: (C,H,W) float32, filled in place; mask: (H,W) float32, > 0.5 = known; depth: (H,W) float32
 * positive depth of the known pixels, or NULL (all equal). A frame with no known pixel becomes 0. */
lyra_status lyra_inpaint_pushpull(float *image, const float *mask, const float *depth, int channels, int height,
                                  int width, lyra_inpaint_scratch *scratch);

#endif
