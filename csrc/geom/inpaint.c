/* Depth-aware push-pull hole filling (see inpaint.h). Level l holds, per pixel, the channels' values
 * (normalised, not premultiplied), a depth and a confidence in [0, 1]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom/inpaint.h"

#define MAX_LEVELS 32

void lyra_inpaint_scratch_free(lyra_inpaint_scratch *s) {
    free(s->buf);
    s->buf = NULL;
    s->capacity = 0;
}

typedef struct level {
    int h, w;
    float *val;  /* (C,h,w) */
    float *dep;  /* (h,w) */
    float *conf; /* (h,w) */
} level;

/* Weight of a child of depth d relative to the farthest child d_max: near surfaces count little
 * next to far ones, equal depths count equally. */
static float depth_preference(float d, float dmax) {
    float r = dmax > 0.0f ? d / dmax : 1.0f;
    r = r * r;
    r = r * r;
    return r * r; /* (d / d_max)^8 */
}

static void push(const level *fine, level *coarse, int C) {
    const int64_t fhw = (int64_t)fine->h * fine->w, chw = (int64_t)coarse->h * coarse->w;
    for (int y = 0; y < coarse->h; y++)
        for (int x = 0; x < coarse->w; x++) {
            int64_t idx[4];
            int n = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    int fy = 2 * y + dy, fx = 2 * x + dx;
                    if (fy < fine->h && fx < fine->w) idx[n++] = (int64_t)fy * fine->w + fx;
                }
            float dmax = 0.0f, csum = 0.0f;
            for (int k = 0; k < n; k++)
                if (fine->conf[idx[k]] > 0.0f) {
                    csum += fine->conf[idx[k]];
                    dmax = fine->dep[idx[k]] > dmax ? fine->dep[idx[k]] : dmax;
                }
            int64_t o = (int64_t)y * coarse->w + x;
            float g[4], gsum = 0.0f;
            for (int k = 0; k < n; k++) {
                g[k] = fine->conf[idx[k]] > 0.0f ? fine->conf[idx[k]] * depth_preference(fine->dep[idx[k]], dmax) : 0.0f;
                gsum += g[k];
            }
            coarse->conf[o] = csum < 1.0f ? csum : 1.0f;
            if (!(gsum > 0.0f)) {
                coarse->conf[o] = 0.0f;
                coarse->dep[o] = 0.0f;
                for (int c = 0; c < C; c++) coarse->val[c * chw + o] = 0.0f;
                continue;
            }
            float d = 0.0f;
            for (int k = 0; k < n; k++)
                if (g[k] > 0.0f) d += g[k] * fine->dep[idx[k]];
            coarse->dep[o] = d / gsum;
            for (int c = 0; c < C; c++) {
                float v = 0.0f;
                for (int k = 0; k < n; k++)
                    if (g[k] > 0.0f) v += g[k] * fine->val[c * fhw + idx[k]]; /* holes may hold anything */
                coarse->val[c * chw + o] = v / gsum;
            }
        }
}

/* Blends each fine pixel with the bilinear sample of the (already filled) coarser level. */
static void pull(level *fine, const level *coarse, int C) {
    const int64_t fhw = (int64_t)fine->h * fine->w, chw = (int64_t)coarse->h * coarse->w;
    for (int y = 0; y < fine->h; y++) {
        float sy = (y + 0.5f) * 0.5f - 0.5f;
        sy = sy < 0.0f ? 0.0f : (sy > coarse->h - 1 ? (float)(coarse->h - 1) : sy);
        int y0 = (int)sy, y1 = y0 + 1 < coarse->h ? y0 + 1 : y0;
        float ty = sy - (float)y0;
        for (int x = 0; x < fine->w; x++) {
            int64_t o = (int64_t)y * fine->w + x;
            float a = fine->conf[o];
            if (a >= 1.0f) continue; /* known: untouched */
            float sx = (x + 0.5f) * 0.5f - 0.5f;
            sx = sx < 0.0f ? 0.0f : (sx > coarse->w - 1 ? (float)(coarse->w - 1) : sx);
            int x0 = (int)sx, x1 = x0 + 1 < coarse->w ? x0 + 1 : x0;
            float tx = sx - (float)x0;
            float w00 = (1 - ty) * (1 - tx), w01 = (1 - ty) * tx, w10 = ty * (1 - tx), w11 = ty * tx;
            int64_t i00 = (int64_t)y0 * coarse->w + x0, i01 = (int64_t)y0 * coarse->w + x1;
            int64_t i10 = (int64_t)y1 * coarse->w + x0, i11 = (int64_t)y1 * coarse->w + x1;
            /* The bilinear footprint also prefers the far samples, so a hole next to both a near and
             * a far surface is filled from the far one across its width, not half and half. */
            const float *cd = coarse->dep;
            float dmax = fmaxf(fmaxf(cd[i00], cd[i01]), fmaxf(cd[i10], cd[i11]));
            w00 *= depth_preference(cd[i00], dmax);
            w01 *= depth_preference(cd[i01], dmax);
            w10 *= depth_preference(cd[i10], dmax);
            w11 *= depth_preference(cd[i11], dmax);
            float wn = w00 + w01 + w10 + w11;
            if (wn > 0.0f) {
                w00 /= wn;
                w01 /= wn;
                w10 /= wn;
                w11 /= wn;
            }
            for (int c = 0; c < C; c++) {
                const float *cv = coarse->val + c * chw;
                float s = w00 * cv[i00] + w01 * cv[i01] + w10 * cv[i10] + w11 * cv[i11];
                /* a == 0: the pixel is a hole whose own value may be anything (NaN included). */
                fine->val[c * fhw + o] = a > 0.0f ? a * fine->val[c * fhw + o] + (1.0f - a) * s : s;
            }
            float sd = w00 * cd[i00] + w01 * cd[i01] + w10 * cd[i10] + w11 * cd[i11];
            fine->dep[o] = a > 0.0f ? a * fine->dep[o] + (1.0f - a) * sd : sd;
            fine->conf[o] = 1.0f;
        }
    }
}

lyra_status lyra_inpaint_pushpull(float *image, const float *mask, const float *depth, int C, int H, int W,
                                  lyra_inpaint_scratch *s) {
    if (C < 1 || H < 1 || W < 1) return lyra_error(LYRA_ERR_ARG, "inpaint: bad sizes C=%d H=%d W=%d", C, H, W);
    level lv[MAX_LEVELS];
    int nl = 1;
    int64_t need = 2 * (int64_t)H * W; /* level 0: depth and confidence (values live in `image`) */
    lv[0].h = H;
    lv[0].w = W;
    while (lv[nl - 1].h > 1 || lv[nl - 1].w > 1) {
        lv[nl].h = (lv[nl - 1].h + 1) / 2;
        lv[nl].w = (lv[nl - 1].w + 1) / 2;
        need += (int64_t)(C + 2) * lv[nl].h * lv[nl].w;
        nl++;
    }
    if (need > s->capacity) {
        free(s->buf);
        s->buf = malloc(sizeof(float) * need);
        s->capacity = s->buf ? need : 0;
        if (!s->buf) return lyra_error(LYRA_ERR_OOM, "inpaint: out of memory for a %dx%d pyramid", H, W);
    }
    float *p = s->buf;
    const int64_t HW = (int64_t)H * W;
    lv[0].val = image;
    lv[0].dep = p;
    lv[0].conf = p + HW;
    p += 2 * HW;
    int holes = 0;
    for (int64_t i = 0; i < HW; i++) {
        int known = mask[i] > 0.5f;
        holes |= !known;
        lv[0].conf[i] = known ? 1.0f : 0.0f;
        float d = depth ? depth[i] : 1.0f;
        lv[0].dep[i] = known && d > 0.0f && isfinite(d) ? d : (known ? 1.0f : 0.0f);
    }
    if (!holes) return LYRA_OK;
    for (int l = 1; l < nl; l++) {
        int64_t n = (int64_t)lv[l].h * lv[l].w;
        lv[l].val = p;
        lv[l].dep = p + C * n;
        lv[l].conf = p + (C + 1) * n;
        p += (C + 2) * n;
        push(&lv[l - 1], &lv[l], C);
    }
    /* The 1x1 top is all there is for a frame without any known pixel: it is 0 (mid-grey in [-1, 1]). */
    for (int l = nl - 2; l >= 0; l--) pull(&lv[l], &lv[l + 1], C);
    return LYRA_OK;
}
