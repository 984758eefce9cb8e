/* The per-pixel arithmetic of op u8_pixels (nn/ops.h): OpenCV's uint8 INTER_AREA / INTER_CUBIC resampling as DA3's
 * InputProcessor uses it (upstream DA3in:219-257, DA3in:316-383), then ToTensor and the mean/std normalisation. The
 * row-streaming reference is models/da3_preproc.c (lyra_da3_resize_u8, lyra_da3_normalize); this is the same
 * arithmetic reordered per output pixel, which changes no rounding: the area filter's horizontal sums run over the
 * same table entries in the same order, its vertical sum starts from the first row's term (0 + x = x), and the cubic
 * filter is integer arithmetic horizontally and the same four-term float sum vertically. Shared word for word by the
 * CPU kernel (nn/cpu/cpu_prep.c) and the CUDA kernel (nn/cuda/cuda_prep.cu): U8P_MUL / U8P_ADD / U8P_SUB (and the
 * f64 U8P_DMUL / U8P_DADD of the source coordinates) are plain operators in C (no FMA contraction on the x86-64
 * baseline) and __fmul_rn / __fadd_rn / __fsub_rn / __dmul_rn / __dadd_rn in the CUDA file, U8P_RINT lrintf /
 * __float2int_rn (both round half to even), '/' is IEEE-rounded under nvcc's defaults: the
 * backends agree bit for bit.
 *
 * U8P_FN is `static inline` in C; the CUDA file defines it (`static __device__ inline`, with the operators) first. */
#ifndef LYRA_NN_U8_PIXELS_MATH_H
#define LYRA_NN_U8_PIXELS_MATH_H

#include <math.h>
#include <stdint.h>

#ifndef U8P_FN
#define U8P_FN static inline
#define U8P_MUL(a, b) ((a) * (b))
#define U8P_ADD(a, b) ((a) + (b))
#define U8P_SUB(a, b) ((a) - (b))
#define U8P_RINT(v) ((int)lrintf(v))
#define U8P_DMUL(a, b) ((a) * (b))
#define U8P_DADD(a, b) ((a) + (b))
#endif

/* cvRound then saturate to [0, 255]. */
U8P_FN uint8_t lyra_u8p_sat(float v) {
    const int r = U8P_RINT(v);
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

/* OpenCV computeResizeAreaTab for output index d of a shrink ssize -> dsize (scale = ssize / dsize): the first source
 * index and count of its entries; entry k is (si0 + k, lyra_u8p_area_alpha(..., k)). */
U8P_FN int lyra_u8p_area_span(int ssize, double scale, int d, int *si0) {
    const double f1 = U8P_DMUL((double)d, scale), f2 = U8P_DADD(f1, scale);
    int s1 = (int)ceil(f1), s2 = (int)floor(f2);
    if (s2 > ssize - 1) s2 = ssize - 1;
    if (s1 > s2) s1 = s2;
    const int head = s1 - f1 > 1e-3, tail = f2 - s2 > 1e-3;
    *si0 = s1 - head;
    return head + (s2 - s1) + tail;
}

U8P_FN float lyra_u8p_area_alpha(int ssize, double scale, int d, int k) {
    const double f1 = U8P_DMUL((double)d, scale), f2 = U8P_DADD(f1, scale), cell = fmin(scale, ssize - f1);
    int s1 = (int)ceil(f1), s2 = (int)floor(f2);
    if (s2 > ssize - 1) s2 = ssize - 1;
    if (s1 > s2) s1 = s2;
    const int head = s1 - f1 > 1e-3;
    if (head && k == 0) return (float)((s1 - f1) / cell);
    if (k - head < s2 - s1) return (float)(1.0 / cell);
    return (float)(fmin(fmin(f2 - s2, 1.0), cell) / cell);
}

/* INTER_AREA shrink of src (H, W, C) u8 to (Ho, Wo): channel c of output pixel (y, x). */
U8P_FN uint8_t lyra_u8p_area(const uint8_t *src, int H, int W, int C, int Ho, int Wo, int y, int x, int c) {
    const double sx = (double)W / Wo, sy = (double)H / Ho;
    if (sx == floor(sx) && sy == floor(sy)) { /* integer ratios: block average (resizeAreaFast) */
        const int ix = (int)sx, iy = (int)sy, area = ix * iy;
        int sum = 0;
        for (int dy = 0; dy < iy; dy++)
            for (int dx = 0; dx < ix; dx++) sum += src[((int64_t)(y * iy + dy) * W + x * ix + dx) * C + c];
        return (uint8_t)((sum + area / 2) / area);
    }
    int xs0, ys0;
    const int nx = lyra_u8p_area_span(W, sx, x, &xs0), ny = lyra_u8p_area_span(H, sy, y, &ys0);
    float sum = 0.0f;
    for (int j = 0; j < ny; j++) {
        const uint8_t *row = src + (int64_t)(ys0 + j) * W * C;
        float buf = 0.0f;
        for (int k = 0; k < nx; k++)
            buf = U8P_ADD(buf, U8P_MUL((float)row[(int64_t)(xs0 + k) * C + c], lyra_u8p_area_alpha(W, sx, x, k)));
        const float t = U8P_MUL(lyra_u8p_area_alpha(H, sy, y, j), buf);
        sum = j == 0 ? t : U8P_ADD(sum, t);
    }
    return lyra_u8p_sat(sum);
}

/* OpenCV interpolateCubic (A = −0.75) at fraction x, as 11-bit fixed-point weights. */
U8P_FN void lyra_u8p_cubic_weights(float x, int *w) {
    const float A = -0.75f, x1 = U8P_ADD(x, 1.0f), y1 = U8P_SUB(1.0f, x);
    float c[4];
    c[0] = U8P_SUB(U8P_MUL(U8P_ADD(U8P_MUL(U8P_SUB(U8P_MUL(A, x1), 5 * A), x1), 8 * A), x1), 4 * A);
    c[1] = U8P_ADD(U8P_MUL(U8P_MUL(U8P_SUB(U8P_MUL(A + 2, x), A + 3), x), x), 1.0f);
    c[2] = U8P_ADD(U8P_MUL(U8P_MUL(U8P_SUB(U8P_MUL(A + 2, y1), A + 3), y1), y1), 1.0f);
    c[3] = U8P_SUB(U8P_SUB(U8P_SUB(1.f, c[0]), c[1]), c[2]);
    for (int k = 0; k < 4; k++) {
        const int r = U8P_RINT(c[k] * 2048.0f); /* a power of two: exact */
        w[k] = r < -32768 ? -32768 : r > 32767 ? 32767 : r;
    }
}

/* INTER_CUBIC resize of src (H, W, C) u8 to (Ho, Wo): channel c of output pixel (y, x); the vertical pass as
 * OpenCV's SIMD VResizeCubicVec_32s8u (float weights beta / 2^22, summed from the last row). */
U8P_FN uint8_t lyra_u8p_cubic(const uint8_t *src, int H, int W, int C, int Ho, int Wo, int y, int x, int c) {
    const double scale_x = 1.0 / ((double)Wo / W), scale_y = 1.0 / ((double)Ho / H);
    const float fx = (float)U8P_DADD(U8P_DMUL(x + 0.5, scale_x), -0.5);
    const float fy = (float)U8P_DADD(U8P_DMUL(y + 0.5, scale_y), -0.5);
    const int sx = (int)floorf(fx), sy = (int)floorf(fy);
    int xw[4], yw[4];
    lyra_u8p_cubic_weights(U8P_SUB(fx, (float)sx), xw);
    lyra_u8p_cubic_weights(U8P_SUB(fy, (float)sy), yw);
    float v = 0.0f;
    for (int k = 3; k >= 0; k--) {
        int r = sy - 1 + k;
        r = r < 0 ? 0 : r > H - 1 ? H - 1 : r;
        const uint8_t *row = src + (int64_t)r * W * C;
        int acc = 0;
        for (int j = 0; j < 4; j++) {
            int q = sx - 1 + j;
            q = q < 0 ? 0 : q > W - 1 ? W - 1 : q;
            acc += row[(int64_t)q * C + c] * xw[j];
        }
        const float t = U8P_MUL((float)acc, (float)yw[k] * (1.0f / (2048.0f * 2048.0f)));
        v = k == 3 ? t : U8P_ADD(t, v);
    }
    return lyra_u8p_sat(v);
}

/* Output element (c, y, x) of one image: resampled (0 none, 1 area, 2 cubic), then (v / 255 − mean) / std. */
U8P_FN float lyra_u8p_pixel(const uint8_t *src, int H, int W, int C, int Ho, int Wo, int resample, int y, int x,
                            int c, float mean, float std) {
    const uint8_t u = resample == 1   ? lyra_u8p_area(src, H, W, C, Ho, Wo, y, x, c)
                      : resample == 2 ? lyra_u8p_cubic(src, H, W, C, Ho, Wo, y, x, c)
                                      : src[((int64_t)y * W + x) * C + c];
    return U8P_SUB((float)u / 255.0f, mean) / std; /* ToTensor, then Normalize: sub then div */
}

#endif
