/* One chunk's network inputs (upstream M:1488-1493, M:1495-1523, M:2024-2033, M:1955-1999); see prep.h. Every step
 * that touches pixels or latents is a backend op on the run's device (forward warps, ray images, strided copies for
 * the slot moves and the 8×8 pixel-unshuffle, fills, the depth range); only the retrieval and the 4×4 camera algebra
 * run on the host. Float32 throughout (the golden is float32; upstream stores the assembled tensors in bf16 on the
 * GPU). On the CPU backend the result is bit-identical to the host assembly it replaced: every op computes the same
 * f32 expressions in the same order. */
#include "pipeline/prep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom/camera.h"
#include "nn/ops.h"
#include "nn/warp.h"

void lyra_prep_temporal_indices(int64_t t_hist_total, int n_k, int64_t *out) {
    if (n_k <= 0) return;
    /* [0] ++ range(max(0, T − (n_k − 1)), T) (M:1488-1493) */
    int64_t start = t_hist_total - (n_k - 1);
    if (start < 0) start = 0;
    out[0] = 0;
    for (int i = 1; i < n_k; i++) out[i] = start + i - 1;
}

int64_t lyra_prep_latent_frame(int64_t latent, int n_hist0) {
    /* video_indices = [0] × R ++ [1 .. end−1] with R = 4(n_hist0 − 1) + 1; latent ℓ sits at position 4ℓ. */
    int64_t R = (int64_t)LYRA_PREP_FRAMES_PER_LATENT * (n_hist0 - 1) + 1, p = LYRA_PREP_FRAMES_PER_LATENT * latent;
    return p < R ? 0 : p - R + 1;
}

/* torch.linspace(-1, 1, n)[i] in float32: the first half counts up from the start, the second half down from
 * the end (torch's CPU kernel). */
static float linspace_pm1(int n, int i) {
    if (n == 1) return -1.0f;
    float step = 2.0f / (float)(n - 1);
    return i < n / 2 ? -1.0f + step * (float)i : 1.0f - step * (float)(n - 1 - i);
}

/* z code of spatial slot j of S (M:1540-1543): 0 for a single slot (not linspace's −1). */
static float slot_z(int S, int j) { return S == 1 ? 0.0f : linspace_pm1(S, j); }

/* ---- views of the backend tensors (nothing is copied until an op runs) ---- */

/* A strided f32 view of ndim dims at byte offset `off` of base's data, in base's memory. */
static lyra_tensor view(const void *base, int64_t off, lyra_device dev, int ndim, const int64_t *ne, const int64_t *nb,
                        const char *name) {
    lyra_tensor t = lyra_tensor_make((char *)base + off, LYRA_DTYPE_F32, ndim, ne);
    for (int i = 0; i < ndim; i++) t.nb[i] = nb[i];
    t.device = dev;
    t.name = name;
    return t;
}

/* A strided view of an output (y, buffer: f32, or the DiT's 16-bit condition dtype on a device) in its dtype. */
static lyra_tensor view_of(const lyra_tensor *dst, int64_t off, int ndim, const int64_t *ne, const int64_t *nb) {
    lyra_tensor t = view(dst->data, off, dst->device, ndim, ne, nb, dst->name);
    t.dtype = dst->dtype;
    return t;
}

/* Channels [ch0, ch0 + n) of slot t of dst (Cd, T, h, w) contiguous: (n, h, w). */
static lyra_tensor slot_channels(const lyra_tensor *dst, int64_t ch0, int64_t n, int64_t t) {
    const int64_t ne[3] = {n, dst->ne[2], dst->ne[3]}, nb[3] = {dst->nb[0], dst->nb[2], dst->nb[3]};
    return view_of(dst, ch0 * dst->nb[0] + t * dst->nb[1], 3, ne, nb);
}

/* Pixel-unshuffle 8×8 of n_planes planes (H, W) f32 at src (plane stride plane_bytes) into channels
 * ch0 + 64·p + r·8 + q of slot t of dst (Cd, T, h, w): one strided copy (p, r, q, h, w). */
static lyra_status unshuffle(lyra_backend *be, const float *src, int64_t n_planes, int64_t plane_bytes, int H, int W,
                             const lyra_tensor *dst, int64_t ch0, int64_t t) {
    const int64_t h = H / 8, w = W / 8, f = sizeof(float);
    const int64_t ne[5] = {n_planes, 8, 8, h, w};
    const int64_t nb_s[5] = {plane_bytes, W * f, f, 8 * W * f, 8 * f};
    const int64_t nb_d[5] = {64 * dst->nb[0], 8 * dst->nb[0], dst->nb[0], dst->nb[2], dst->nb[3]};
    lyra_tensor s = view(src, 0, dst->device, 5, ne, nb_s, "unshuffle source");
    lyra_tensor d = view_of(dst, ch0 * dst->nb[0] + t * dst->nb[1], 5, ne, nb_d);
    return lyra_op_copy(be, &d, &s);
}

/* Sets channels g·256 + [c0, c0 + n) of groups [g0, g1) over slots [t0, t0 + nt) of the buffer (Cb, T, h, w). */
static lyra_status fill_groups(lyra_backend *be, const lyra_tensor *buf, int g0, int g1, int64_t c0, int64_t n,
                               int64_t t0, int64_t nt, float v) {
    if (g1 <= g0 || nt <= 0) return LYRA_OK;
    const int64_t ne[5] = {g1 - g0, n, nt, buf->ne[2], buf->ne[3]};
    const int64_t nb[5] = {LYRA_PREP_SLOT_CHANNELS * buf->nb[0], buf->nb[0], buf->nb[1], buf->nb[2], buf->nb[3]};
    lyra_tensor d = view_of(buf, ((int64_t)g0 * LYRA_PREP_SLOT_CHANNELS + c0) * buf->nb[0] + t0 * buf->nb[1], 5, ne, nb);
    return lyra_op_fill(be, &d, v);
}

/* Rays [origin, direction] of camera (w2c_f, K_f) relative to the reference camera w2c_ref (upstream M:1830-1888,
 * PL:28-74): c2w_rel = w2c_ref · inv(w2c_f) on the host, the image on the backend, written unshuffled into channels
 * ch0 .. ch0+383 of slot t of dst. */
static lyra_status ray_slot(lyra_backend *be, const float *w2c_ref, const float *w2c_f, const float *K_f, int H, int W,
                            const lyra_tensor *dst, int64_t ch0, int64_t t) {
    float c2w[16];
    lyra_ray_params p = {.K = {K_f[0], K_f[4], K_f[2], K_f[5]}, .moment = 0, .unshuffle = 8};
    LYRA_TRY(lyra_warp_invert(w2c_f, 4, c2w, "w2c"));
    lyra_mat4_mul(w2c_ref, c2w, p.c2w);
    lyra_tensor d = slot_channels(dst, ch0, LYRA_PREP_RAY_CHANNELS, t);
    return lyra_op_rays(be, &d, H, W, &p);
}

void lyra_prep_canonical_coords(int S, int H, int W, float *out) {
    const int64_t HW = (int64_t)H * W;
    for (int j = 0; j < S; j++) {
        float *coords = out + (int64_t)j * 3 * HW, z = slot_z(S, j);
        for (int yy = 0; yy < H; yy++)
            for (int xx = 0; xx < W; xx++) {
                int64_t i = (int64_t)yy * W + xx;
                coords[i] = linspace_pm1(W, xx);
                coords[HW + i] = linspace_pm1(H, yy);
                coords[2 * HW + i] = z;
            }
    }
}

/* Targets per warp call: warp_chunk when the encoder's windows of 4 fit its batches, else all F at once. Each call
 * recomputes the source's points, so batches of the normaliser's size give the single call's result. */
static int64_t warp_batch(int warp_chunk, int64_t F) {
    return warp_chunk > 0 && warp_chunk % LYRA_PREP_FRAMES_PER_LATENT == 0 && warp_chunk < F ? warp_chunk : F;
}

int64_t lyra_prep_scratch_bytes(const lyra_framepack *fp, int height, int width, int latent_c, int warp_chunk) {
    const int64_t HW = (int64_t)height * width, hw = HW / 64, F = (int64_t)LYRA_PREP_FRAMES_PER_LATENT * fp->n_new;
    const int64_t S = fp->n_spatial > 0 ? fp->n_spatial : 1, nb = warp_batch(warp_chunk, F);
    /* one batch of warped images (nb, 3, H, W) and depths (nb, H, W), the kept warped depths (S, G, H, W), camera
     * latents (G + 1, C, h, w), spatial latents (S, C, h, w), the depth range (2) */
    return (int64_t)sizeof(float) * (nb * 3 * HW + nb * HW + S * fp->n_new * HW + latent_c * (fp->n_new + 1) * hw +
                                     S * latent_c * hw + 2);
}

static lyra_status check_args(const lyra_prep_args *a) {
    const lyra_framepack *fp = a->fp;
    if (!a->be) return lyra_error(LYRA_ERR_ARG, "prepare: no backend");
    if (!fp || a->height < 8 || a->width < 8 || a->height % 8 || a->width % 8)
        return lyra_error(LYRA_ERR_ARG, "prepare: image %dx%d must be a positive multiple of 8 in both sides",
                          a->height, a->width);
    if (a->latent_c < 1) return lyra_error(LYRA_ERR_ARG, "prepare: latent channels must be >= 1");
    if (a->chunk < 0) return lyra_error(LYRA_ERR_ARG, "prepare: chunk index must be >= 0");
    if (a->t_hist_total != fp->n_history + (int64_t)fp->n_new * a->chunk)
        return lyra_error(LYRA_ERR_ARG, "prepare: %lld history latents given; chunk %lld of this layout needs %lld",
                          (long long)a->t_hist_total, (long long)a->chunk,
                          (long long)(fp->n_history + (int64_t)fp->n_new * a->chunk));
    if (fp->n_temporal < 1) return lyra_error(LYRA_ERR_ARG, "prepare: the layout needs a temporal (k) slot");
    if (a->warp_chunk < 0) return lyra_error(LYRA_ERR_ARG, "prepare: warp_chunk must be >= 0");
    if (fp->n_spatial > 0 && (!a->cache || a->cache->height != a->height || a->cache->width != a->width))
        return lyra_error(LYRA_ERR_ARG, "prepare: the spatial cache must hold %dx%d depths", a->height, a->width);
    if (fp->n_spatial > 0 && (!a->cache_depth || !a->canon))
        return lyra_error(LYRA_ERR_ARG, "prepare: the cache depths and canonical coordinates must be on the backend");
    if (!a->encoder.begin || !a->encoder.push || !a->encoder.end)
        return lyra_error(LYRA_ERR_ARG, "prepare: no encoder");
    if (!a->history || !a->frames || !a->buffer_depth || !a->x || !a->y || !a->buffer)
        return lyra_error(LYRA_ERR_ARG, "prepare: history, frames, buffer depth and the outputs x, y, buffer are "
                          "required");
    const int64_t C = a->latent_c, h = a->height / 8, w = a->width / 8, T = fp->n_total;
    const struct { const lyra_tensor *t; int64_t c; const char *what; } out[3] = {
        {a->x, C, "x"}, {a->y, LYRA_PREP_MASK_CHANNELS + C + LYRA_PREP_RAY_CHANNELS, "y"},
        {a->buffer, (int64_t)LYRA_PREP_SLOT_CHANNELS * fp->n_spatial, "buffer"}};
    for (int i = 0; i < 3; i++) {
        const lyra_tensor *t = out[i].t;
        if (t->ndim != 4 || t->ne[0] != out[i].c || t->ne[1] != T || t->ne[2] != h || t->ne[3] != w ||
            !lyra_dtype_is_float(t->dtype) || (i == 0 && t->dtype != LYRA_DTYPE_F32) || !lyra_tensor_is_contiguous(t))
            return lyra_error(LYRA_ERR_ARG, "prepare: %s must be a contiguous %s (%lld, %lld, %lld, %lld) tensor",
                              out[i].what, i == 0 ? "f32" : "float", (long long)out[i].c, (long long)T, (long long)h,
                              (long long)w);
    }
    const lyra_tensor *hi = a->history;
    if (hi->ndim != 4 || hi->ne[0] != a->t_hist_total || hi->ne[1] != C || hi->ne[2] != h || hi->ne[3] != w ||
        hi->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_ARG, "prepare: history must be an f32 (%lld, %lld, %lld, %lld) tensor",
                          (long long)a->t_hist_total, (long long)C, (long long)h, (long long)w);
    return LYRA_OK;
}

/* The device frame f, or LYRA_ERR_ARG naming it when the caller did not keep it. */
static lyra_status frame_of(const lyra_prep_args *a, int64_t f, const char *why, lyra_tensor *out) {
    if (!a->frames[f])
        return lyra_error(LYRA_ERR_ARG, "prepare: frame %lld (%s) is not in the backend's memory", (long long)f, why);
    const int64_t ne[3] = {3, a->height, a->width};
    *out = lyra_tensor_make(a->frames[f], LYRA_DTYPE_F32, 3, ne);
    out->device = a->be->device;
    out->name = "frame";
    return LYRA_OK;
}

static void *scratch(lyra_backend *be, int64_t floats, lyra_status *st) {
    if (*st != LYRA_OK) return NULL;
    void *p = be->ops->alloc(be, sizeof(float) * (size_t)(floats > 0 ? floats : 1));
    if (!p) *st = lyra_error(LYRA_ERR_OOM, "prepare: cannot allocate %lld bytes for the chunk inputs on %s (%s)",
                             (long long)(sizeof(float) * floats), be->ops->name, lyra_error_message());
    return p;
}

lyra_status lyra_prep_chunk(lyra_prep_args *a) {
    LYRA_TRY(check_args(a));
    lyra_backend *be = a->be;
    const lyra_device dev = be->device;
    const lyra_framepack *fp = a->fp;
    const int H = a->height, W = a->width, h = H / 8, w = W / 8, S = fp->n_spatial, G = fp->n_new;
    const int n_k = fp->n_temporal, n_hist0 = fp->n_history;
    const int64_t C = a->latent_c, T = fp->n_total, hw = (int64_t)h * w, HW = (int64_t)H * W, f4 = sizeof(float);
    const int64_t F = (int64_t)LYRA_PREP_FRAMES_PER_LATENT * G;
    const int64_t buf_frame = F * a->chunk, end = F * (a->chunk + 1) + 1;
    const float *w2c_ref = a->w2c + 16 * buf_frame;
    const lyra_tensor *X = a->x, *Y = a->y, *B = a->buffer;

    int64_t temporal[LYRA_FP_MAX_COUNT], spatial_ids[LYRA_FP_MAX_COUNT];
    lyra_prep_temporal_indices(a->t_hist_total, n_k, temporal);

    /* ---- retrieval (upstream M:1955-1999, M:2646-2849): target = the chunk's last camera; host, 1/4 resolution ---- */
    a->n_retrieved = 0;
    a->n_groups = 0;
    if (S > 0)
        LYRA_TRY(lyra_scache_retrieve(a->cache, a->w2c + 16 * (end - 1), a->K + 9 * (end - 1), S, a->retrieved_latent,
                                      a->retrieved_frame, &a->n_retrieved));
    const int n = a->n_retrieved;
    for (int k = 0; k < n; k++)
        if (a->retrieved_frame[k] < 0 || a->retrieved_frame[k] > buf_frame)
            return lyra_error(LYRA_ERR_ARG, "prepare: retrieved frame %lld is not a generated frame 0..%lld",
                              (long long)a->retrieved_frame[k], (long long)buf_frame);
    for (int j = 0; j < S; j++) spatial_ids[j] = j < S - n ? 0 : a->retrieved_frame[j - (S - n)];
    lyra_tensor fbuf, fsp[LYRA_FP_MAX_COUNT];
    LYRA_TRY(frame_of(a, buf_frame, "the buffer frame", &fbuf));
    for (int j = 0; j < S; j++) LYRA_TRY(frame_of(a, spatial_ids[j], "a spatial-memory frame", &fsp[j]));

    lyra_status st = LYRA_OK;
    const int64_t nb = warp_batch(a->warp_chunk, F);
    float *rgb = a->warp_rgb ? NULL : scratch(be, nb * 3 * HW, &st);
    float *coords = a->warp_rgb ? scratch(be, nb * 3 * HW, &st) : rgb; /* the warp image is encoded before the groups */
    float *wdepth = scratch(be, nb * HW, &st);
    float *kd = scratch(be, (S > 0 ? S : 1) * G * HW, &st); /* the kept frames' warped depths, normalised at the end */
    float *cam_lat = scratch(be, C * (G + 1) * hw, &st);
    float *sp_lat = scratch(be, (S > 0 ? S : 1) * C * hw, &st);
    float *mm = scratch(be, 2, &st);
    if (st != LYRA_OK) goto done;
    const int64_t nb_img[4] = {3 * HW * f4, HW * f4, W * f4, f4}, nb_dep[3] = {HW * f4, W * f4, f4};
    const int64_t ne_hw[2] = {H, W}, nb_hw[2] = {W * f4, f4}, ne_lat[3] = {C, h, w}, nb_lat[3] = {hw * f4, w * f4, f4};
    const int64_t two = 2, one = f4;
    lyra_tensor t_mm = view(mm, 0, dev, 1, &two, &one, "correspondence depth range");
    const float *tgt_w2c = a->w2c + 16 * (buf_frame + 1), *tgt_K = a->K + 9 * (buf_frame + 1);

    /* ---- buffer warp of frame F·a into the F target cameras (upstream M:1601-1822, FW A), one batch of nb targets
     * at a time, each batch's frames straight into the camera latent's encoder stream (upstream M:1184-1206,
     * M:1823-1828: encode [warp_0, warp_0 .. warp_{F−1}], the first latent dropped) ---- */
    {
        lyra_tensor dep = view(a->buffer_depth, 0, dev, 2, ne_hw, nb_hw, "buffer depth");
        if ((st = a->encoder.begin(a->encoder.ctx)) != LYRA_OK) goto done;
        for (int64_t b0 = 0; b0 < F; b0 += nb) {
            const int64_t n_b = F - b0 < nb ? F - b0 : nb, ne_b[4] = {n_b, 3, H, W};
            float *dst = a->warp_rgb ? (float *)a->warp_rgb->data + b0 * 3 * HW : rgb;
            lyra_tensor t_rgb = view(dst, 0, dev, 4, ne_b, nb_img, "buffer warp");
            lyra_warp_params wp = {.n_targets = (int)n_b, .clean_points = 1, .norm_batch = a->warp_chunk,
                                   .src_w2c = w2c_ref, .src_K = a->K + 9 * buf_frame, .tgt_w2c = tgt_w2c + 16 * b0,
                                   .tgt_K = tgt_K + 9 * b0};
            st = lyra_op_warp_forward(be, &t_rgb, NULL, NULL, &fbuf, &dep, &wp);
            if (st == LYRA_OK && a->warp_u8) {
                const int64_t ne_u[4] = {n_b, H, W, 3};
                lyra_tensor u = lyra_tensor_make((uint8_t *)a->warp_u8->data + b0 * 3 * HW, LYRA_DTYPE_U8, 4, ne_u);
                u.device = dev;
                u.name = a->warp_u8->name;
                st = lyra_op_to_u8(be, &u, &t_rgb, LYRA_U8_VIDEO);
            }
            lyra_tensor fr[LYRA_PREP_FRAMES_PER_LATENT];
            const lyra_tensor *win[LYRA_PREP_FRAMES_PER_LATENT];
            for (int64_t f = 0; f < n_b; f++) {
                fr[f % LYRA_PREP_FRAMES_PER_LATENT] = view(dst, f * 3 * HW * f4, dev, 3, ne_b + 1, nb_img + 1,
                                                           "buffer warp frame");
                win[f % LYRA_PREP_FRAMES_PER_LATENT] = &fr[f % LYRA_PREP_FRAMES_PER_LATENT];
                if (st == LYRA_OK && b0 + f == 0) { /* the video's frame 0: warp_0 alone */
                    lyra_tensor out = view(cam_lat, 0, dev, 3, ne_lat, nb_lat, "camera latent");
                    st = a->encoder.push(a->encoder.ctx, win, 1, &out);
                }
                if (st == LYRA_OK && f % LYRA_PREP_FRAMES_PER_LATENT == LYRA_PREP_FRAMES_PER_LATENT - 1) {
                    const int64_t l = 1 + (b0 + f) / LYRA_PREP_FRAMES_PER_LATENT;
                    lyra_tensor out = view(cam_lat, l * C * hw * f4, dev, 3, ne_lat, nb_lat, "camera latent");
                    st = a->encoder.push(a->encoder.ctx, win, LYRA_PREP_FRAMES_PER_LATENT, &out);
                }
            }
            if (st != LYRA_OK) break;
        }
        lyra_status end_st = a->encoder.end(a->encoder.ctx, st == LYRA_OK);
        if (st == LYRA_OK) st = end_st;
        if (st != LYRA_OK) goto done;
    }

    /* ---- spatial image latents (upstream M:2077-2187): R left-padded with frame 0, one fresh single-frame encode
     * each ---- */
    for (int j = 0; j < S; j++) {
        lyra_tensor out = view(sp_lat, (int64_t)j * C * hw * f4, dev, 3, ne_lat, nb_lat, "spatial latent");
        const lyra_tensor *one_frame = &fsp[j];
        if ((st = a->encoder.begin(a->encoder.ctx)) != LYRA_OK) goto done;
        st = a->encoder.push(a->encoder.ctx, &one_frame, 1, &out);
        lyra_status end_st = a->encoder.end(a->encoder.ctx, st == LYRA_OK);
        if (st == LYRA_OK) st = end_st;
        if (st != LYRA_OK) goto done;
    }

    /* ---- correspondence warps (upstream M:1601-1822, FW), buffer tail ---- */
    if ((st = lyra_op_fill(be, (lyra_tensor *)B, 0.0f)) != LYRA_OK) goto done;
    if (S > 0) {
        /* Distinct frame ids, first occurrence kept with its slot (M:1734-1744). */
        int keep[LYRA_FP_MAX_COUNT], n_u = 0;
        for (int k = 0; k < n; k++) {
            int dup = 0;
            for (int u = 0; u < n_u; u++) dup |= a->retrieved_frame[keep[u]] == a->retrieved_frame[k];
            if (!dup) keep[n_u++] = k;
        }
        for (int g = 0; g < n_u; g++) {
            const int k = keep[n_u - 1 - g]; /* group 0 = the last entry returned = the best pick */
            const int64_t fid = a->retrieved_frame[k];
            const int e = lyra_scache_find(a->cache, fid);
            if (e < 0 || !a->cache_depth[e]) {
                st = lyra_error(LYRA_ERR_INTERNAL, "prepare: retrieved frame %lld has no depth in the backend's memory",
                                (long long)fid);
                goto done;
            }
            const int64_t ne_c[3] = {3, H, W};
            lyra_tensor canon = view(a->canon, (int64_t)(S - n + k) * 3 * HW * f4, dev, 3, ne_c, nb_img + 1,
                                     "canonical coordinates");
            lyra_tensor dep = view(a->cache_depth[e], 0, dev, 2, ne_hw, nb_hw, "spatial-memory depth");
            for (int64_t b0 = 0; b0 < F; b0 += nb) {
                const int64_t n_b = F - b0 < nb ? F - b0 : nb, ne_b[4] = {n_b, 3, H, W};
                lyra_tensor t_coords = view(coords, 0, dev, 4, ne_b, nb_img, "correspondence warp");
                const int64_t ne_d[3] = {n_b, H, W};
                lyra_tensor t_wdepth = view(wdepth, 0, dev, 3, ne_d, nb_dep, "correspondence depth");
                lyra_warp_params wp = {.n_targets = (int)n_b, .clean_points = 1, .norm_batch = a->warp_chunk,
                                       .src_w2c = a->w2c + 16 * fid, .src_K = a->K + 9 * fid,
                                       .tgt_w2c = tgt_w2c + 16 * b0, .tgt_K = tgt_K + 9 * b0};
                if ((st = lyra_op_warp_forward(be, &t_coords, NULL, &t_wdepth, &canon, &dep, &wp)) != LYRA_OK) goto done;
                if (a->warp_coords) {
                    lyra_tensor dst = view(a->warp_coords->data, ((int64_t)g * F + b0) * 3 * HW * f4, dev, 4, ne_b,
                                           nb_img, "warp coordinates");
                    if ((st = lyra_op_copy(be, &dst, &t_coords)) != LYRA_OK) goto done;
                }
                /* min / max over every frame and pixel of every group, holes (0) included (M:1787-1793) */
                if ((st = lyra_op_minmax(be, &t_mm, &t_wdepth, g || b0 ? &t_mm : NULL)) != LYRA_OK) goto done;
                for (int j = 0; j < G; j++) {
                    const int64_t f = (int64_t)LYRA_PREP_FRAMES_PER_LATENT * j + LYRA_PREP_FRAMES_PER_LATENT - 1 - b0;
                    const int64_t ch = (int64_t)g * LYRA_PREP_SLOT_CHANNELS;
                    if (f < 0 || f >= n_b) continue;
                    lyra_tensor src = view(wdepth, f * HW * f4, dev, 2, ne_hw, nb_hw, "correspondence depth");
                    lyra_tensor dst = view(kd, ((int64_t)g * G + j) * HW * f4, dev, 2, ne_hw, nb_hw, "kept depth");
                    if ((st = unshuffle(be, coords + f * 3 * HW, 3, HW * f4, H, W, B, ch, n_hist0 + j)) != LYRA_OK ||
                        (st = lyra_op_copy(be, &dst, &src)) != LYRA_OK)
                        goto done;
                }
            }
        }
        /* the kept depths, normalised to [-1, 1] over the range of all groups and pixel-unshuffled into channels
         * 192 + r·8 + q of each group's generated slots: one op per group, (G, 8, 8, h, w) */
        for (int g = 0; g < n_u; g++) {
            const int64_t ne[5] = {G, 8, 8, h, w}, nb_s[5] = {HW * f4, W * f4, f4, 8 * W * f4, 8 * f4};
            const int64_t nb_d[5] = {B->nb[1], 8 * B->nb[0], B->nb[0], B->nb[2], B->nb[3]};
            lyra_tensor src = view(kd, (int64_t)g * G * HW * f4, dev, 5, ne, nb_s, "kept depth");
            lyra_tensor d = view_of(B, ((int64_t)g * LYRA_PREP_SLOT_CHANNELS + 192) * B->nb[0] + n_hist0 * B->nb[1], 5,
                                    ne, nb_d);
            if ((st = lyra_op_range_norm(be, &d, &src, &t_mm, 1e-6f)) != LYRA_OK) goto done;
        }
        /* Missing groups: coordinates −1, depth +1 (M:1802-1812). */
        if ((st = fill_groups(be, B, n_u, S, 0, 192, n_hist0, G, -1.0f)) != LYRA_OK ||
            (st = fill_groups(be, B, n_u, S, 192, 64, n_hist0, G, 1.0f)) != LYRA_OK)
            goto done;
        a->n_groups = n_u;
    }

    /* ---- slot assembly (upstream M:2046-2265) ---- */
    if ((st = lyra_op_fill(be, (lyra_tensor *)X, 0.0f)) != LYRA_OK) goto done;
    {   /* mask: ones everywhere (docs/REFERENCES.md#upstream-quirks-kept-on-purpose) */
        const int64_t ne[2] = {LYRA_PREP_MASK_CHANNELS, T * hw}, nb[2] = {Y->nb[0], Y->nb[3]};
        lyra_tensor m = view_of(Y, 0, 2, ne, nb);
        if ((st = lyra_op_fill(be, &m, 1.0f)) != LYRA_OK) goto done;
    }
    {
        int slot = 0, ki = 0, sj = 0;
        for (int s = 0; s < fp->n_segments; s++)
            for (int i = 0; i < fp->seg[s].frames; i++, slot++) {
                const float *wf, *kf;
                lyra_tensor xs = slot_channels(X, 0, C, slot), src;
                if (fp->seg[s].type == 'k') {
                    const int64_t l = temporal[ki++];
                    if ((st = lyra_tensor_select(&src, a->history, 0, l)) != LYRA_OK) goto done;
                    const int64_t f = lyra_prep_latent_frame(l, n_hist0);
                    wf = a->w2c + 16 * f;
                    kf = a->K + 9 * f;
                } else {
                    src = view(sp_lat, (int64_t)sj * C * hw * f4, dev, 3, ne_lat, nb_lat, "spatial latent");
                    wf = a->w2c + 16 * spatial_ids[sj];
                    kf = a->K + 9 * spatial_ids[sj];
                    /* History buffer of s-slot j: its canonical coordinates in every group, depth −1 in group 0
                     * and +1 in the others (M:2189-2239). */
                    for (int g = 0; g < S; g++)
                        if ((st = unshuffle(be, a->canon + (int64_t)sj * 3 * HW, 3, HW * f4, H, W, B,
                                            (int64_t)g * LYRA_PREP_SLOT_CHANNELS, slot)) != LYRA_OK)
                            goto done;
                    if ((st = fill_groups(be, B, 0, 1, 192, 64, slot, 1, -1.0f)) != LYRA_OK ||
                        (st = fill_groups(be, B, 1, S, 192, 64, slot, 1, 1.0f)) != LYRA_OK)
                        goto done;
                    sj++;
                }
                lyra_tensor ys = slot_channels(Y, LYRA_PREP_MASK_CHANNELS, C, slot);
                if ((st = lyra_op_copy(be, &xs, &src)) != LYRA_OK || (st = lyra_op_copy(be, &ys, &xs)) != LYRA_OK)
                    goto done;
                if ((st = ray_slot(be, w2c_ref, wf, kf, H, W, Y, LYRA_PREP_MASK_CHANNELS + C, slot)) != LYRA_OK)
                    goto done;
            }
        for (int j = 0; j < G; j++) {
            lyra_tensor src = view(cam_lat, (int64_t)(1 + j) * C * hw * f4, dev, 3, ne_lat, nb_lat, "camera latent");
            lyra_tensor ys = slot_channels(Y, LYRA_PREP_MASK_CHANNELS, C, n_hist0 + j);
            if ((st = lyra_op_copy(be, &ys, &src)) != LYRA_OK) goto done;
            const int64_t f = lyra_prep_latent_frame(a->t_hist_total + j, n_hist0);
            st = ray_slot(be, w2c_ref, a->w2c + 16 * f, a->K + 9 * f, H, W, Y, LYRA_PREP_MASK_CHANNELS + C, n_hist0 + j);
            if (st != LYRA_OK) goto done;
        }
    }

done:
    if (coords) be->ops->release(be, coords); /* rgb, when it is the scratch */
    if (wdepth) be->ops->release(be, wdepth);
    if (kd) be->ops->release(be, kd);
    if (cam_lat) be->ops->release(be, cam_lat);
    if (sp_lat) be->ops->release(be, sp_lat);
    if (mm) be->ops->release(be, mm);
    return st;
}
