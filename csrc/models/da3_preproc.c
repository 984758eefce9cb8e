/* DA3 input preprocessing (upstream DA3in:219-257, DA3in:316-383): upper-bound resize, nearest multiple of 14, and the
 * two OpenCV uint8 resamplers it uses (INTER_AREA when shrinking, INTER_CUBIC when a side grows), then
 * ToTensor + ImageNet normalisation. OpenCV's SIMD summation order is not reproduced: results may differ from
 * cv2 by 1 LSB at a few pixels (the golden tolerance allows it, README §7). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3.h"

const float lyra_da3_mean[3] = {0.485f, 0.456f, 0.406f};
const float lyra_da3_std[3] = {0.229f, 0.224f, 0.225f};

static int nearest_multiple(int x, int p) {
    int down = (x / p) * p, up = down + p;
    return abs(up - x) <= abs(x - down) ? up : down; /* ties go up */
}

void lyra_da3_processed_size(int h0, int w0, int process_res, int *h1, int *w1, int *h, int *w, int *resample1,
                             int *resample2) {
    int longest = h0 > w0 ? h0 : w0, a = h0, b = w0, r1 = 0, r2 = 0;
    if (longest != process_res) {
        double scale = (double)process_res / (double)longest;
        a = (int)nearbyint((double)h0 * scale); /* Python round(): half to even */
        b = (int)nearbyint((double)w0 * scale);
        if (a < 1) a = 1;
        if (b < 1) b = 1;
        r1 = scale > 1.0 ? 2 : 1;
    }
    int c = nearest_multiple(a, 14), d = nearest_multiple(b, 14);
    if (c < 1) c = 1;
    if (d < 1) d = 1;
    if (c != a || d != b) r2 = (c > a || d > b) ? 2 : 1;
    *h1 = a, *w1 = b, *h = c, *w = d;
    if (resample1) *resample1 = r1;
    if (resample2) *resample2 = r2;
}

/* OpenCV computeResizeAreaTab: (source index, weight) pairs per output index; weights are fractions of the
 * cell, partial overlaps kept only above 1e-3. Returns the count; tab has room for (src + dst) · 2 entries. */
typedef struct area_tab { int di, si; float alpha; } area_tab;
static int area_table(int ssize, int dsize, double scale, area_tab *tab) {
    int k = 0;
    for (int dx = 0; dx < dsize; dx++) {
        double fsx1 = dx * scale, fsx2 = fsx1 + scale;
        double cell = fmin(scale, ssize - fsx1);
        int sx1 = (int)ceil(fsx1), sx2 = (int)floor(fsx2);
        if (sx2 > ssize - 1) sx2 = ssize - 1;
        if (sx1 > sx2) sx1 = sx2;
        if (sx1 - fsx1 > 1e-3) tab[k++] = (area_tab){dx, sx1 - 1, (float)((sx1 - fsx1) / cell)};
        for (int sx = sx1; sx < sx2; sx++) tab[k++] = (area_tab){dx, sx, (float)(1.0 / cell)};
        if (fsx2 - sx2 > 1e-3) tab[k++] = (area_tab){dx, sx2, (float)(fmin(fmin(fsx2 - sx2, 1.0), cell) / cell)};
    }
    return k;
}

static uint8_t sat_round(float v) {
    long r = lrintf(v); /* cvRound: nearest, ties to even */
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

static lyra_status resize_area(uint8_t *dst, int Ho, int Wo, const uint8_t *src, int H, int W) {
    double sx = (double)W / Wo, sy = (double)H / Ho;
    if (sx == floor(sx) && sy == floor(sy)) {
        /* integer ratios: block average (resizeAreaFast) */
        int ix = (int)sx, iy = (int)sy, area = ix * iy;
        for (int y = 0; y < Ho; y++)
            for (int x = 0; x < Wo; x++)
                for (int c = 0; c < 3; c++) {
                    int sum = 0;
                    for (int dy = 0; dy < iy; dy++)
                        for (int dx = 0; dx < ix; dx++) sum += src[((y * iy + dy) * W + x * ix + dx) * 3 + c];
                    dst[(y * Wo + x) * 3 + c] = (uint8_t)((sum + area / 2) / area);
                }
        return LYRA_OK;
    }
    area_tab *xt = malloc(sizeof *xt * (size_t)(2 * (W + Wo) + 4)), *yt = malloc(sizeof *yt * (size_t)(2 * (H + Ho) + 4));
    float *buf = malloc(sizeof *buf * (size_t)Wo * 3), *sum = malloc(sizeof *sum * (size_t)Wo * 3);
    if (!xt || !yt || !buf || !sum) {
        free(xt), free(yt), free(buf), free(sum);
        return lyra_error(LYRA_ERR_OOM, "DA3 area resize: out of memory");
    }
    int nx = area_table(W, Wo, sx, xt), ny = area_table(H, Ho, sy, yt);
    int prev = yt[0].di;
    for (int i = 0; i < Wo * 3; i++) sum[i] = 0.0f;
    for (int j = 0; j < ny; j++) {
        float beta = yt[j].alpha;
        int dy = yt[j].di;
        const uint8_t *S = src + (size_t)yt[j].si * W * 3;
        for (int i = 0; i < Wo * 3; i++) buf[i] = 0.0f;
        for (int k = 0; k < nx; k++)
            for (int c = 0; c < 3; c++) buf[xt[k].di * 3 + c] += (float)S[xt[k].si * 3 + c] * xt[k].alpha;
        if (dy != prev) {
            for (int i = 0; i < Wo * 3; i++) {
                dst[(size_t)prev * Wo * 3 + i] = sat_round(sum[i]);
                sum[i] = beta * buf[i];
            }
            prev = dy;
        } else {
            for (int i = 0; i < Wo * 3; i++) sum[i] += beta * buf[i];
        }
    }
    for (int i = 0; i < Wo * 3; i++) dst[(size_t)prev * Wo * 3 + i] = sat_round(sum[i]);
    free(xt), free(yt), free(buf), free(sum);
    return LYRA_OK;
}

/* OpenCV interpolateCubic (A = −0.75), then 11-bit fixed point weights. */
static void cubic_weights(float x, short *w) {
    const float A = -0.75f;
    float c[4];
    c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    c[3] = 1.f - c[0] - c[1] - c[2];
    for (int k = 0; k < 4; k++) {
        long r = lrintf(c[k] * 2048.0f);
        w[k] = (short)(r < -32768 ? -32768 : r > 32767 ? 32767 : r);
    }
}

static lyra_status resize_cubic(uint8_t *dst, int Ho, int Wo, const uint8_t *src, int H, int W) {
    double scale_x = 1.0 / ((double)Wo / W), scale_y = 1.0 / ((double)Ho / H);
    int *xs = malloc(sizeof *xs * (size_t)Wo);
    short *xw = malloc(sizeof *xw * (size_t)Wo * 4);
    if (!xs || !xw) {
        free(xs), free(xw);
        return lyra_error(LYRA_ERR_OOM, "DA3 cubic resize: out of memory");
    }
    for (int dx = 0; dx < Wo; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = (int)floorf(fx);
        xs[dx] = sx;
        cubic_weights(fx - (float)sx, xw + dx * 4);
    }
    int *hrow = malloc(sizeof *hrow * (size_t)Wo * 3 * 4);
    if (!hrow) {
        free(xs), free(xw);
        return lyra_error(LYRA_ERR_OOM, "DA3 cubic resize: out of memory");
    }
    for (int dy = 0; dy < Ho; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = (int)floorf(fy);
        short bw[4];
        cubic_weights(fy - (float)sy, bw);
        for (int k = 0; k < 4; k++) {
            int r = sy - 1 + k;
            r = r < 0 ? 0 : r > H - 1 ? H - 1 : r;
            const uint8_t *S = src + (size_t)r * W * 3;
            int *D = hrow + (size_t)k * Wo * 3;
            for (int dx = 0; dx < Wo; dx++)
                for (int c = 0; c < 3; c++) {
                    int acc = 0;
                    for (int j = 0; j < 4; j++) {
                        int q = xs[dx] - 1 + j;
                        q = q < 0 ? 0 : q > W - 1 ? W - 1 : q;
                        acc += S[q * 3 + c] * xw[dx * 4 + j];
                    }
                    D[dx * 3 + c] = acc;
                }
        }
        /* vertical pass as OpenCV's SIMD VResizeCubicVec_32s8u: float weights beta/2^22, rounded */
        float b[4];
        for (int k = 0; k < 4; k++) b[k] = (float)bw[k] * (1.0f / (2048.0f * 2048.0f));
        for (int i = 0; i < Wo * 3; i++) {
            float v = (float)hrow[3 * (size_t)Wo * 3 + i] * b[3];
            v = (float)hrow[2 * (size_t)Wo * 3 + i] * b[2] + v;
            v = (float)hrow[1 * (size_t)Wo * 3 + i] * b[1] + v;
            v = (float)hrow[i] * b[0] + v;
            dst[(size_t)dy * Wo * 3 + i] = sat_round(v);
        }
    }
    free(xs), free(xw), free(hrow);
    return LYRA_OK;
}

lyra_status lyra_da3_resize_u8(uint8_t *dst, int Ho, int Wo, const uint8_t *src, int H, int W, int method) {
    if (H < 1 || W < 1 || Ho < 1 || Wo < 1) return lyra_error(LYRA_ERR_ARG, "DA3 resize: empty image");
    if (method == 1) {
        if (Ho > H || Wo > W)
            return lyra_error(LYRA_ERR_ARG, "DA3 resize: INTER_AREA here only shrinks (%dx%d -> %dx%d)", H, W, Ho, Wo);
        return resize_area(dst, Ho, Wo, src, H, W);
    }
    if (method == 2) return resize_cubic(dst, Ho, Wo, src, H, W);
    return lyra_error(LYRA_ERR_ARG, "DA3 resize: method must be 1 (area) or 2 (cubic)");
}

void lyra_da3_normalize(float *pixels, const uint8_t *img, int h, int w) {
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < h * w; i++) {
            float v = (float)img[i * 3 + c] / 255.0f;     /* ToTensor */
            pixels[(size_t)c * h * w + i] = (v - lyra_da3_mean[c]) / lyra_da3_std[c]; /* Normalize: sub then div */
        }
}
