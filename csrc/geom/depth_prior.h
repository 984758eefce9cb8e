/* A heuristic depth prior for the preview mode when no depth model or depth= argument is available.
 * It is NOT a model: it encodes "the camera looks at a ground plane, with things standing on it". */
#ifndef LYRA_GEOM_DEPTH_PRIOR_H
#define LYRA_GEOM_DEPTH_PRIOR_H

#include <stdint.h>

#include "lyra2.h"

/* Ground-plane prior refined by image edges ("ground-plane-popup-v1"), in arbitrary units (the
 * bottom row is at depth 1, the far backdrop at 25; trajectories rescale by the subject depth anyway).
 * 1. Sky: pixels connected to the top row through blue-ish or bright grey pixels, each step between
 *    neighbours a colour difference < 8 (the sky is smooth), within the top 85 % of the rows. They get
 *    the backdrop depth and mask 0.
 * 2. Horizon row h0: just below the lowest row that is at least 30 % sky, clamped to [0.25 H, 0.85 H];
 *    with no sky the camera is taken to look down at the ground and the horizon sits 0.6 H above the
 *    top row (depth then spans about 1 to 2.7).
 * 3. Ground: below the horizon, depth(y) = (H − h0) / (y − h0 + 1) (a plane seen by a level camera),
 *    capped at the backdrop.
 * 4. Pop-up: below the horizon, going up each column, log-depth continues from the pixel below with
 *    weight 0.9 · exp(−colour difference / 10), else falls back to the ground prior, so a region of
 *    uniform colour that stands on the ground keeps the depth of its contact row; at and above the
 *    horizon every non-sky pixel keeps the depth of the pixel below it (things stand upright), and
 *    near depth spreads sideways through non-sky pixels at a cost of 0.05 + 0.05 · colour difference
 *    per pixel (log units), so an upright object's edge columns stay with it. Below the horizon, one
 *    edge-aware horizontal smoothing pass each way (same weights, halved) removes column streaks.
 * rgb: (H,W,3) uint8; depth: (H,W) float32; mask: (H,W) uint8 (1 valid, 0 sky-like). */
lyra_status lyra_depth_prior_ground(const uint8_t *rgb, int height, int width, float *depth, uint8_t *mask);

#endif
