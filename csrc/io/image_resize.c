/* The upstream input resize: cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR) on uint8
 * (upstream Z:602-607, Z:67, Z:171), reproduced bit for bit.
 *
 * What OpenCV (4.11, x86 SIMD path) does for 8-bit INTER_LINEAR, and therefore what this does:
 *  - source coordinate per output index d: f = (float)((d + 0.5) * scale - 0.5) with
 *    scale = 1 / (dst / src) in double; s = floor(f), t = f - s (float);
 *  - weights are 11-bit fixed point, each rounded on its own: a0 = rint((1 - t) * 2048),
 *    a1 = rint(t * 2048);
 *  - columns: when s < 0 or s >= src - 1 the weight is clamped (t = 0, s to the edge) so the edge
 *    pixel is copied; rows keep their unclamped weights and only clamp the row index, which matters
 *    for rounding because of the next point;
 *  - horizontal pass in exact integers, h = S[s] * a0 + S[s + 1] * a1 (scale 2^11); the vertical
 *    pass is the SIMD form ((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16), then (v + 2) >> 2,
 *    which truncates differently from the exact (h0*b0 + h1*b1 + 2^21) >> 22 of OpenCV's scalar
 *    tail. Exact halving (2x down both ways, where OpenCV switches to INTER_AREA) gives the same
 *    values through this formula, so it needs no special case.
 * No antialiasing: downscaling by more than 2x skips source pixels, as upstream does. */
#include "media.h"

#include <math.h>
#include <stdlib.h>

#define COEF_SCALE 2048 /* 1 << INTER_RESIZE_COEF_BITS */
#define MAX_SIDE (1 << 16)

typedef struct axis_taps {
    int *i0, *i1;      /* source indices (clamped) */
    int16_t *w0, *w1;  /* fixed-point weights */
} axis_taps;

/* n taps for resizing src -> dst samples; clamp_weights is the column rule above. */
static void axis_taps_fill(axis_taps *a, int src, int dst, int clamp_weights) {
    double scale = 1.0 / ((double)dst / src);
    for (int d = 0; d < dst; d++) {
        /* separate statements: keep the compiler from fusing into an FMA that OpenCV does not do */
        double pos = (d + 0.5) * scale;
        float f = (float)(pos - 0.5);
        int s = (int)floorf(f);
        float t = f - (float)s;
        if (clamp_weights && s < 0) t = 0.f, s = 0;
        if (clamp_weights && s >= src - 1) t = 0.f, s = src - 1;
        float t0 = (1.f - t) * (float)COEF_SCALE, t1 = t * (float)COEF_SCALE;
        a->w0[d] = (int16_t)lrintf(t0);
        a->w1[d] = (int16_t)lrintf(t1);
        a->i0[d] = s < 0 ? 0 : s > src - 1 ? src - 1 : s;
        a->i1[d] = s + 1 < 0 ? 0 : s + 1 > src - 1 ? src - 1 : s + 1;
    }
}

static int axis_taps_alloc(axis_taps *a, int n) {
    a->i0 = malloc(sizeof(int) * n);
    a->i1 = malloc(sizeof(int) * n);
    a->w0 = malloc(sizeof(int16_t) * n);
    a->w1 = malloc(sizeof(int16_t) * n);
    return a->i0 && a->i1 && a->w0 && a->w1;
}

static void axis_taps_free(axis_taps *a) {
    free(a->i0);
    free(a->i1);
    free(a->w0);
    free(a->w1);
}

/* One source row (w0, c) -> horizontally resized fixed-point row (w, c). */
static void resize_row(const uint8_t *src, int c, const axis_taps *x, int w, int32_t *out) {
    for (int d = 0; d < w; d++) {
        const uint8_t *p0 = src + (size_t)x->i0[d] * c, *p1 = src + (size_t)x->i1[d] * c;
        for (int k = 0; k < c; k++) out[d * c + k] = p0[k] * x->w0[d] + p1[k] * x->w1[d];
    }
}

lyra_status lyra_image_resize(const uint8_t *src, int h0, int w0, int c, uint8_t *dst, int h, int w) {
    LYRA_ASSERT(src && dst);
    if (c < 1 || c > 4) return lyra_error(LYRA_ERR_ARG, "image_resize: channels must be 1..4, got %d", c);
    if (h0 < 1 || w0 < 1 || h0 > MAX_SIDE || w0 > MAX_SIDE)
        return lyra_error(LYRA_ERR_ARG, "image_resize: source size %dx%d must be 1..%d per side", h0, w0, MAX_SIDE);
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return lyra_error(LYRA_ERR_ARG, "image_resize: target size %dx%d must be 1..%d per side", h, w, MAX_SIDE);

    axis_taps xs = {0}, ys = {0};
    int32_t *rows = NULL;
    lyra_status st = LYRA_OK;
    if (!axis_taps_alloc(&xs, w) || !axis_taps_alloc(&ys, h)) {
        st = lyra_error(LYRA_ERR_OOM, "image_resize: out of memory");
        goto finally;
    }
    axis_taps_fill(&xs, w0, w, 1);
    axis_taps_fill(&ys, h0, h, 0);
    size_t n = (size_t)w * c;
    rows = malloc(sizeof(int32_t) * 2 * n);
    if (!rows) {
        st = lyra_error(LYRA_ERR_OOM, "image_resize: out of memory");
        goto finally;
    }
    int32_t *r0 = rows, *r1 = rows + n;
    int have0 = -1, have1 = -1; /* source rows now in r0 / r1: consecutive outputs reuse them */
    for (int d = 0; d < h; d++) {
        int y0 = ys.i0[d], y1 = ys.i1[d];
        if (have0 != y0) {
            if (have1 == y0) {
                int32_t *t = r0;
                r0 = r1, r1 = t, have0 = y0, have1 = -1;
            } else {
                resize_row(src + (size_t)y0 * w0 * c, c, &xs, w, r0);
                have0 = y0;
            }
        }
        if (have1 != y1) {
            resize_row(src + (size_t)y1 * w0 * c, c, &xs, w, r1);
            have1 = y1;
        }
        int32_t b0 = ys.w0[d], b1 = ys.w1[d];
        uint8_t *o = dst + (size_t)d * n;
        for (size_t i = 0; i < n; i++) {
            int32_t v = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16);
            v = (v + 2) >> 2;
            o[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
finally:
    axis_taps_free(&xs);
    axis_taps_free(&ys);
    free(rows);
    return st;
}
