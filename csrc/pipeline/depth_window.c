/* DA3 on one depth window where the frames are; see depth_window.h. What crosses per update: nothing goes up (the
 * pixels are built from the uint8 frames in the frames' memory); DA3's nested merge, the division by the Umeyama scale
 * and the resize to the frames' size run where the heads' maps are, so only the merge's four scalars and DA3's pose
 * come down (and the window's frames and depths once when the caller records the views). */
#include "pipeline/depth_window.h"

#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

lyra_status lyra_ar_da3_window(const lyra_ar_depth_model *dm, lyra_backend *vb, const lyra_tensor *u8,
                               const float *w2c, const float *K, lyra_ar_depth_take take, void *take_ctx) {
    const int n = (int)u8->ne[0], H = (int)u8->ne[1], W = (int)u8->ne[2];
    int h1, w1, h, w, r1, r2;
    /* DA3's InputProcessor at process_res = the longest side: no first resize, only the multiple-of-14 one */
    lyra_da3_processed_size(H, W, H > W ? H : W, &h1, &w1, &h, &w, &r1, &r2);
    if (r1 != 0 || h1 != H || w1 != W)
        return lyra_error(LYRA_ERR_INTERNAL, "depth update: DA3's first resize of %dx%d is not the identity", H, W);
    const int64_t hw = (int64_t)h * w;
    float *buf = malloc(sizeof(float) * (size_t)(n * (16 + 9 + 12 + 9)));
    if (!buf) return lyra_error(LYRA_ERR_OOM, "depth update: out of host memory");
    float *ext_norm = buf, *K_proc = ext_norm + 16 * n, *est = K_proc + 9 * n, *est_K = est + 12 * n;
    lyra_tensor dd;
    lyra_da3_out out = {.extrinsics = est, .intrinsics = est_K, .depth_dev = &dd};
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
    int held = 0;
    if (st == LYRA_OK) st = dm->acquire(dm->ctx, n, H, W, h, w, w2c, K, ext_norm, K_proc, &m, &be, &arena);
    if (st == LYRA_OK) {
        held = 1;
        if (be->device != vb->device)
            st = lyra_error(LYRA_ERR_ARG, "depth update: DA3 is on the %s but the frames are on the %s",
                            be->device == LYRA_DEVICE_CPU ? "CPU" : "GPU",
                            vb->device == LYRA_DEVICE_CPU ? "CPU" : "GPU");
        /* the forward's nested merge runs where its maps are (op da3_merge); its depth stays in the arena */
        if (st == LYRA_OK) st = lyra_da3_forward(m, be, arena, &tp, ext_norm, K_proc, &out, NULL);
    }
    vb->ops->release(vb, pix);
    double s = 1.0;
    if (st == LYRA_OK) st = dm->align(dm->ctx, n, est, w2c, &s);
    /* depth / s in f64, rounded to f32 (DepthAnything3.__call__), then to the frames' size (generate._bilinear), into
     * the arena behind the maps: the forward's peak (a head's 32-channel maps) leaves room for n x H x W */
    lyra_tensor depth;
    if (st == LYRA_OK)
        st = lyra_arena_tensor(arena, &depth, LYRA_DTYPE_F32, 3, (int64_t[]){n, H, W}, "depth window depth");
    if (st == LYRA_OK) st = lyra_op_depth_resize(be, &depth, &dd, s);
    if (st == LYRA_OK) st = lyra_op_synchronize(be); /* the frames' stream reads it */
    if (st == LYRA_OK) st = take(take_ctx, &depth);
    if (st == LYRA_OK) st = lyra_op_synchronize(vb); /* its copies have read the depths before the arena goes back */
    if (st == LYRA_OK && dm->record) {
        /* the Python API's recorded views (Video.point_cloud): the window's frames and depths come down once */
        uint8_t *img = malloc((size_t)n * H * W * 3);
        float *hd = malloc(sizeof(float) * (size_t)n * H * W);
        if (!img || !hd) st = lyra_error(LYRA_ERR_OOM, "depth update: out of host memory");
        lyra_tensor th = lyra_tensor_make(img, LYRA_DTYPE_U8, 4, u8->ne), tv = *u8;
        lyra_tensor dh = lyra_tensor_make(hd, LYRA_DTYPE_F32, 3, depth.ne), dv = depth;
        th.name = tv.name = "depth window views";
        dh.name = dv.name = "depth window view depths";
        if (st == LYRA_OK) st = lyra_op_download(vb, &th, &tv);
        if (st == LYRA_OK) st = lyra_op_download(be, &dh, &dv);
        if (st == LYRA_OK) st = dm->record(dm->ctx, n, img, hd, w2c, K);
        free(img);
        free(hd);
    }
    if (held) dm->release(dm->ctx); /* the arena (maps, depths) is given back here */
    free(buf);
    return st;
}
