/* DA3 on one depth window where the frames are; see depth_window.h. What crosses per update: nothing goes up (the
 * pixels are built from the uint8 frames in the frames' memory); DA3's forward brings its heads' maps down for the
 * nested merge (models/da3_forward.c), and the window's frames come down once when the caller records the views. */
#include "pipeline/depth_window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* The source indices and fractions of one axis, as generate._bilinear's axis(): s = (i + 0.5)·(n_in / n_out) − 0.5
 * in f64, clipped at 0; i0 = min(floor(s), n_in − 1), i1 = min(i0 + 1, n_in − 1), frac = f32(s − i0). */
static void axis(int n_in, int n_out, int64_t *i0, int64_t *i1, float *frac) {
    const double ratio = (double)n_in / (double)n_out;
    for (int i = 0; i < n_out; i++) {
        double s = ((double)i + 0.5) * ratio - 0.5;
        if (s < 0.0) s = 0.0;
        i0[i] = imin((int64_t)floor(s), n_in - 1);
        i1[i] = imin(i0[i] + 1, n_in - 1);
        frac[i] = (float)(s - (double)i0[i]);
    }
}

lyra_status lyra_ar_depth_bilinear(const float *x, int n, int h, int w, float *y, int H, int W) {
    int64_t *y0 = malloc(sizeof *y0 * (size_t)(2 * H + 2 * W));
    float *fy = malloc(sizeof *fy * (size_t)(H + W));
    if (!y0 || !fy) {
        free(y0);
        free(fy);
        return lyra_error(LYRA_ERR_OOM, "depth update: out of host memory for the resize tables");
    }
    int64_t *y1 = y0 + H, *x0 = y1 + H, *x1 = x0 + W;
    float *fx = fy + H;
    axis(h, H, y0, y1, fy);
    axis(w, W, x0, x1, fx);
    for (int v = 0; v < n; v++) {
        const float *m = x + (int64_t)v * h * w;
        float *o = y + (int64_t)v * H * W;
        for (int r = 0; r < H; r++) {
            const float *a = m + y0[r] * w, *b = m + y1[r] * w, gy = fy[r], gy0 = 1.0f - gy;
            for (int c = 0; c < W; c++) {
                /* top = x[y0, x0]·(1 − fx) + x[y0, x1]·fx, bottom alike, then top·(1 − fy) + bottom·fy, each step
                 * an f32 rounding as numpy's */
                const float gx = fx[c], gx0 = 1.0f - gx;
                const float top = a[x0[c]] * gx0 + a[x1[c]] * gx, bot = b[x0[c]] * gx0 + b[x1[c]] * gx;
                o[(int64_t)r * W + c] = top * gy0 + bot * gy;
            }
        }
    }
    free(y0);
    free(fy);
    return LYRA_OK;
}

lyra_status lyra_ar_da3_window(const lyra_ar_depth_model *dm, lyra_backend *vb, const lyra_tensor *u8,
                               const float *w2c, const float *K, float *depth) {
    const int n = (int)u8->ne[0], H = (int)u8->ne[1], W = (int)u8->ne[2];
    int h1, w1, h, w, r1, r2;
    /* DA3's InputProcessor at process_res = the longest side: no first resize, only the multiple-of-14 one */
    lyra_da3_processed_size(H, W, H > W ? H : W, &h1, &w1, &h, &w, &r1, &r2);
    if (r1 != 0 || h1 != H || w1 != W)
        return lyra_error(LYRA_ERR_INTERNAL, "depth update: DA3's first resize of %dx%d is not the identity", H, W);
    const int64_t hw = (int64_t)h * w;
    float *buf = malloc(sizeof(float) * (size_t)(n * (3 * hw + 16 + 9 + 12 + 9)));
    if (!buf) return lyra_error(LYRA_ERR_OOM, "depth update: out of host memory");
    float *dmap = buf, *conf = dmap + n * hw, *sky = conf + n * hw, *ext_norm = sky + n * hw;
    float *K_proc = ext_norm + 16 * n, *est = K_proc + 9 * n, *est_K = est + 12 * n;
    lyra_da3_out out = {.depth = dmap, .conf = conf, .sky = sky, .extrinsics = est, .intrinsics = est_K};
    /* the pixels (n, 3, h, w) f32 in the frames' memory, from the uint8 frames */
    const int64_t np[4] = {n, 3, h, w};
    void *pix = vb->ops->alloc(vb, sizeof(float) * (size_t)(n * 3 * hw));
    if (!pix) {
        free(buf);
        return lyra_error(LYRA_ERR_OOM, "depth update: cannot allocate DA3's pixels (%lld bytes) on the %s device",
                          (long long)(4 * n * 3 * hw), vb->ops->name);
    }
    lyra_tensor tp = lyra_tensor_make(pix, LYRA_DTYPE_F32, 4, np);
    tp.device = vb->device;
    tp.name = "DA3 pixels";
    lyra_u8_pixels_params pp = {.resample = (lyra_u8_resample)r2};
    for (int c = 0; c < 3; c++) pp.mean[c] = lyra_da3_mean[c], pp.std[c] = lyra_da3_std[c];
    lyra_status st = lyra_op_u8_pixels(vb, &tp, u8, &pp);
    if (st == LYRA_OK) st = lyra_op_synchronize(vb); /* DA3's stream reads them */
    const lyra_da3 *m = NULL;
    lyra_backend *be = NULL;
    lyra_arena *arena = NULL;
    if (st == LYRA_OK) st = dm->acquire(dm->ctx, n, H, W, h, w, w2c, K, ext_norm, K_proc, &m, &be, &arena);
    if (st == LYRA_OK) {
        if (be->device != vb->device)
            st = lyra_error(LYRA_ERR_ARG, "depth update: DA3 is on the %s but the frames are on the %s",
                            be->device == LYRA_DEVICE_CPU ? "CPU" : "GPU",
                            vb->device == LYRA_DEVICE_CPU ? "CPU" : "GPU");
        if (st == LYRA_OK) st = lyra_da3_forward(m, be, arena, &tp, ext_norm, K_proc, &out, NULL);
        dm->release(dm->ctx);
    }
    vb->ops->release(vb, pix);
    double s = 1.0;
    if (st == LYRA_OK) st = dm->align(dm->ctx, n, est, w2c, &s);
    if (st == LYRA_OK) {
        /* depth / s in f64, rounded to f32 (DepthAnything3.__call__), then to the frames' size */
        for (int64_t i = 0; i < n * hw; i++) dmap[i] = (float)((double)dmap[i] / s);
        if (h == H && w == W) memcpy(depth, dmap, sizeof(float) * (size_t)(n * hw));
        else st = lyra_ar_depth_bilinear(dmap, n, h, w, depth, H, W);
    }
    if (st == LYRA_OK && dm->record) {
        uint8_t *img = malloc((size_t)n * H * W * 3);
        if (!img) st = lyra_error(LYRA_ERR_OOM, "depth update: out of host memory");
        lyra_tensor th = lyra_tensor_make(img, LYRA_DTYPE_U8, 4, u8->ne), tv = *u8;
        th.name = tv.name = "depth window views";
        if (st == LYRA_OK) st = lyra_op_download(vb, &th, &tv);
        if (st == LYRA_OK) st = dm->record(dm->ctx, n, img, depth, w2c, K);
        free(img);
    }
    free(buf);
    return st;
}
