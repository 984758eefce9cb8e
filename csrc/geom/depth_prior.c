/* Heuristic ground-plane depth prior (see depth_prior.h for the recipe and why it exists). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom/depth_prior.h"

#define BACKDROP 25.0f

static float colour_distance(const uint8_t *a, const uint8_t *b) {
    return (fabsf((float)a[0] - b[0]) + fabsf((float)a[1] - b[1]) + fabsf((float)a[2] - b[2])) / 3.0f;
}

static float continuation(const uint8_t *a, const uint8_t *b) {
    return 0.9f * expf(-colour_distance(a, b) / 10.0f);
}

/* Sky colours: bright-ish and blue-dominant, or bright and nearly grey. */
static int sky_colour(const uint8_t *p) {
    float r = p[0], g = p[1], b = p[2];
    float luma = 0.299f * r + 0.587f * g + 0.114f * b;
    float mx = fmaxf(r, fmaxf(g, b)), mn = fminf(r, fminf(g, b));
    return (b >= r + 8.0f && b >= g - 4.0f && luma > 30.0f) || (mx - mn < 24.0f && luma > 150.0f);
}

lyra_status lyra_depth_prior_ground(const uint8_t *rgb, int H, int W, float *depth, uint8_t *mask) {
    if (H < 2 || W < 2) return lyra_error(LYRA_ERR_ARG, "image: heuristic depth needs at least 2x2 pixels, got %dx%d", H, W);
    const int64_t HW = (int64_t)H * W;
    int32_t *stack = malloc(sizeof(int32_t) * HW);
    float *logd = malloc(sizeof(float) * HW);
    if (!stack || !logd) {
        free(stack);
        free(logd);
        return lyra_error(LYRA_ERR_OOM, "heuristic depth: out of memory for a %dx%d image", H, W);
    }

    /* 1. Sky: flood fill from the top row over sky colours through small colour steps (mask 0 = sky). */
    memset(mask, 1, HW);
    const int sky_rows = (int)(0.85f * H) > 1 ? (int)(0.85f * H) : 1; /* the sky does not reach the bottom rows */
    int64_t top = 0;
    for (int x = 0; x < W; x++)
        if (sky_colour(rgb + 3 * x)) {
            mask[x] = 0;
            stack[top++] = x;
        }
    while (top > 0) {
        int32_t i = stack[--top];
        int y = i / W, x = i % W;
        const int nb[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
        for (int k = 0; k < 4; k++) {
            int ny = nb[k][0], nx = nb[k][1];
            if (ny < 0 || ny >= sky_rows || nx < 0 || nx >= W) continue;
            int32_t j = ny * W + nx;
            /* The sky is smooth: grow only across small colour steps. */
            if (mask[j] && sky_colour(rgb + 3 * (int64_t)j) && colour_distance(rgb + 3 * (int64_t)i, rgb + 3 * (int64_t)j) < 8.0f) {
                mask[j] = 0;
                stack[top++] = j;
            }
        }
    }

    /* 2. Horizon. */
    int h0 = -1;
    for (int y = 0; y < H; y++) {
        int n = 0;
        for (int x = 0; x < W; x++) n += !mask[(int64_t)y * W + x];
        if (10 * n >= 3 * W) h0 = y + 1;
    }
    int lo = (int)(0.25f * H), hi = (int)(0.85f * H);
    /* No sky: the camera looks down at the ground (a table, a floor, a field), so the horizon lies
     * above the frame. A virtual horizon 0.6 H above the top row bounds the depth range to about
     * 1..2.7: putting it inside the frame would stand the whole upper part up as a far backdrop. */
    h0 = h0 < 0 ? -(int)(0.6f * H) : (h0 < lo ? lo : (h0 > hi ? hi : h0));

    /* 3-4. Ground prior in log depth, continued upward through similar colours. */
    for (int y = H - 1; y >= 0; y--)
        for (int x = 0; x < W; x++) {
            int64_t i = (int64_t)y * W + x;
            float ground = y > h0 ? fminf((float)(H - h0) / (float)(y - h0 + 1), BACKDROP) : BACKDROP;
            float lg = logf(ground);
            if (!mask[i]) {
                logd[i] = logf(BACKDROP);
            } else if (y == H - 1) {
                logd[i] = lg;
            } else if (y <= h0) {
                logd[i] = logd[i + W]; /* above the horizon: stands on what is below it */
            } else {
                float a = continuation(rgb + 3 * i, rgb + 3 * (i + W));
                logd[i] = a * logd[i + W] + (1.0f - a) * lg;
            }
        }
    /* Above the horizon, a column whose own base is hidden behind sky pixels would jump to the
     * backdrop next to an upright object of the same colour: let near depth spread sideways through
     * non-sky pixels at a cost that grows with the colour difference (a geodesic erosion). */
    for (int y = 0; y <= h0 && y < H; y++) {
        float *row = logd + (int64_t)y * W;
        const uint8_t *px = rgb + 3 * (int64_t)y * W;
        const uint8_t *m = mask + (int64_t)y * W;
        for (int x = 1; x < W; x++)
            if (m[x] && m[x - 1]) row[x] = fminf(row[x], row[x - 1] + 0.05f + 0.05f * colour_distance(px + 3 * x, px + 3 * (x - 1)));
        for (int x = W - 2; x >= 0; x--)
            if (m[x] && m[x + 1]) row[x] = fminf(row[x], row[x + 1] + 0.05f + 0.05f * colour_distance(px + 3 * x, px + 3 * (x + 1)));
    }
    /* Edge-aware smoothing below the horizon only: above it, blending an upright object into the
     * backdrop would create pixels at in-between depths that fly apart when the camera moves. */
    for (int y = h0 + 1 > 0 ? h0 + 1 : 0; y < H; y++) {
        float *row = logd + (int64_t)y * W;
        const uint8_t *px = rgb + 3 * (int64_t)y * W;
        for (int x = 1; x < W; x++)
            if (mask[(int64_t)y * W + x] && mask[(int64_t)y * W + x - 1]) {
                float a = continuation(px + 3 * x, px + 3 * (x - 1)) * 0.5f;
                row[x] = a * row[x - 1] + (1.0f - a) * row[x];
            }
        for (int x = W - 2; x >= 0; x--)
            if (mask[(int64_t)y * W + x] && mask[(int64_t)y * W + x + 1]) {
                float a = continuation(px + 3 * x, px + 3 * (x + 1)) * 0.5f;
                row[x] = a * row[x + 1] + (1.0f - a) * row[x];
            }
    }
    for (int64_t i = 0; i < HW; i++) depth[i] = expf(logd[i]);
    free(stack);
    free(logd);
    return LYRA_OK;
}
