/* One chunk's network inputs (upstream M:1488-1493, M:1495-1523, M:2024-2033, M:1955-1999); see prep.h. Float32
 * throughout (the golden is float32; upstream stores the assembled tensors in bf16 on the GPU, the CPU reference keeps
 * float32). */
#include "pipeline/prep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom/camera.h"
#include "geom/rays.h"
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

/* Pixel-unshuffle 8×8 of one plane (H, W) into channels ch0 + r·8 + q, slot t, of dst (Cd, T, h, w). */
static void unshuffle_plane(const float *plane, int H, int W, float *dst, int64_t ch0, int64_t T, int64_t t) {
    const int h = H / 8, w = W / 8;
    const int64_t hw = (int64_t)h * w;
    for (int r = 0; r < 8; r++)
        for (int q = 0; q < 8; q++) {
            float *o = dst + ((ch0 + r * 8 + q) * T + t) * hw;
            for (int hh = 0; hh < h; hh++)
                for (int ww = 0; ww < w; ww++) o[(int64_t)hh * w + ww] = plane[(int64_t)(8 * hh + r) * W + 8 * ww + q];
        }
}

/* Sets channels [ch0, ch0 + n) of slot t of dst (Cd, T, h, w) to v. */
static void fill_channels(float *dst, int64_t ch0, int64_t n, int64_t T, int64_t t, int64_t hw, float v) {
    for (int64_t c = ch0; c < ch0 + n; c++) {
        float *o = dst + (c * T + t) * hw;
        for (int64_t i = 0; i < hw; i++) o[i] = v;
    }
}

/* Latent frame `src_t` of src (C, Ts, h, w) -> slot `t` of channels [ch0, ch0 + C) of dst (Cd, T, h, w). */
static void copy_latent(const float *src, int64_t C, int64_t Ts, int64_t src_t, float *dst, int64_t ch0, int64_t T,
                        int64_t t, int64_t hw) {
    for (int64_t c = 0; c < C; c++)
        memcpy(dst + ((ch0 + c) * T + t) * hw, src + (c * Ts + src_t) * hw, sizeof(float) * (size_t)hw);
}

/* Rays [origin, direction] of camera (w2c_f, K_f) relative to the reference camera w2c_ref (upstream M:1830-1888,
 * PL:28-74): c2w_rel = w2c_ref · inv(w2c_f), written unshuffled into channels ch0 .. ch0+383 of slot t of dst. */
static lyra_status ray_slot(const float *w2c_ref, const float *w2c_f, const float *K_f, int H, int W, float *rays,
                            float *plane, float *dst, int64_t ch0, int64_t T, int64_t t) {
    float c2w[16], rel[16];
    LYRA_TRY(lyra_warp_invert(w2c_f, 4, c2w, "w2c"));
    lyra_mat4_mul(w2c_ref, c2w, rel);
    const float kv[4] = {K_f[0], K_f[4], K_f[2], K_f[5]};
    LYRA_TRY(lyra_rays_compute(kv, rel, 1, H, W, 0, rays));
    const int64_t HW = (int64_t)H * W;
    for (int c = 0; c < 6; c++) {
        for (int64_t i = 0; i < HW; i++) plane[i] = rays[6 * i + c];
        unshuffle_plane(plane, H, W, dst, ch0 + 64 * c, T, t);
    }
    return LYRA_OK;
}

/* Canonical coordinate image (x, y, z) of spatial slot j (M:1525-1546): coords (3, H, W). */
static void canonical_coords(int H, int W, float z, float *coords) {
    const int64_t HW = (int64_t)H * W;
    for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++) {
            int64_t i = (int64_t)yy * W + xx;
            coords[i] = linspace_pm1(W, xx);
            coords[HW + i] = linspace_pm1(H, yy);
            coords[2 * HW + i] = z;
        }
}

static lyra_status check_args(const lyra_prep_args *a) {
    const lyra_framepack *fp = a->fp;
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
    if (!a->encode) return lyra_error(LYRA_ERR_ARG, "prepare: no encoder");
    return LYRA_OK;
}

lyra_status lyra_prep_chunk(lyra_prep_args *a) {
    LYRA_TRY(check_args(a));
    const lyra_framepack *fp = a->fp;
    const int H = a->height, W = a->width, h = H / 8, w = W / 8, S = fp->n_spatial, G = fp->n_new;
    const int n_k = fp->n_temporal, n_hist0 = fp->n_history;
    const int64_t C = a->latent_c, T = fp->n_total, hw = (int64_t)h * w, HW = (int64_t)H * W;
    const int64_t F = (int64_t)LYRA_PREP_FRAMES_PER_LATENT * G;
    const int64_t buf_frame = F * a->chunk, end = F * (a->chunk + 1) + 1;
    const int64_t Cb = (int64_t)LYRA_PREP_SLOT_CHANNELS * S;
    const float *w2c_ref = a->w2c + 16 * buf_frame;

    int64_t temporal[LYRA_FP_MAX_COUNT], spatial_ids[LYRA_FP_MAX_COUNT];
    lyra_prep_temporal_indices(a->t_hist_total, n_k, temporal);

    lyra_status st = LYRA_OK;
    float *warp_rgb = a->warp_rgb ? a->warp_rgb : malloc(sizeof(float) * (size_t)(F * 3 * HW));
    float *video = malloc(sizeof(float) * (size_t)((F + 1) * 3 * HW));
    float *cam_lat = malloc(sizeof(float) * (size_t)(C * (G + 1) * hw));
    float *sp_lat = malloc(sizeof(float) * (size_t)(C * (S > 0 ? S : 1) * hw));
    float *mask = malloc(sizeof(float) * (size_t)(F * HW));
    float *coords = malloc(sizeof(float) * (size_t)(F * 3 * HW));
    float *wdepth = malloc(sizeof(float) * (size_t)(F * HW));
    float *kept_depth = malloc(sizeof(float) * (size_t)((S > 0 ? S : 1) * G * HW));
    float *canon = malloc(sizeof(float) * (size_t)(4 * HW));
    float *rays = malloc(sizeof(float) * (size_t)(6 * HW));
    float *plane = malloc(sizeof(float) * (size_t)HW);
    if (!warp_rgb || !video || !cam_lat || !sp_lat || !mask || !coords || !wdepth || !kept_depth || !canon || !rays ||
        !plane) {
        st = lyra_error(LYRA_ERR_OOM, "prepare: out of memory for the %dx%d chunk inputs", H, W);
        goto done;
    }

    /* ---- retrieval (upstream M:1955-1999, M:2646-2849): target = the chunk's last camera ---- */
    a->n_retrieved = 0;
    a->n_groups = 0;
    if (S > 0) {
        st = lyra_scache_retrieve(a->cache, a->w2c + 16 * (end - 1), a->K + 9 * (end - 1), S, a->retrieved_latent,
                                  a->retrieved_frame, &a->n_retrieved);
        if (st != LYRA_OK) goto done;
    }
    const int n = a->n_retrieved;
    for (int k = 0; k < n; k++)
        if (a->retrieved_frame[k] < 0 || a->retrieved_frame[k] > buf_frame) {
            st = lyra_error(LYRA_ERR_ARG, "prepare: retrieved frame %lld is not a generated frame 0..%lld",
                            (long long)a->retrieved_frame[k], (long long)buf_frame);
            goto done;
        }

    /* ---- buffer warp of frame F·a into the F target cameras (upstream M:1601-1822, FW A) ---- */
    {
        lyra_warp_forward_args wa = {
            .channels = 3, .height = H, .width = W, .n_targets = (int)F, .image = a->frames[buf_frame],
            .depth = a->buffer_depth, .src_w2c = w2c_ref, .src_K = a->K + 9 * buf_frame,
            .tgt_w2c = a->w2c + 16 * (buf_frame + 1), .tgt_K = a->K + 9 * (buf_frame + 1), .clean_points = 1,
            .norm_batch = a->warp_chunk, .out_image = warp_rgb, .out_mask = mask,
        };
        st = lyra_warp_forward(&wa);
        if (st != LYRA_OK) goto done;
    }

    /* ---- camera latent (upstream M:1184-1206, M:1823-1828): encode [warp_0, warp_0 .. warp_{F−1}], drop the first
     * latent ---- */
    memcpy(video, warp_rgb, sizeof(float) * (size_t)(3 * HW));
    memcpy(video + 3 * HW, warp_rgb, sizeof(float) * (size_t)(F * 3 * HW));
    st = a->encode(a->encode_ctx, video, F + 1, H, W, cam_lat);
    if (st != LYRA_OK) goto done;

    /* ---- spatial image latents (upstream M:2077-2187): R left-padded with frame 0, one fresh single-frame encode
     * each ---- */
    for (int j = 0; j < S; j++) spatial_ids[j] = j < S - n ? 0 : a->retrieved_frame[j - (S - n)];
    for (int j = 0; j < S; j++) {
        float *one = video; /* reuse: (1, 3, H, W) */
        memcpy(one, a->frames[spatial_ids[j]], sizeof(float) * (size_t)(3 * HW));
        st = a->encode(a->encode_ctx, one, 1, H, W, sp_lat + (int64_t)j * C * hw);
        if (st != LYRA_OK) goto done;
    }

    /* ---- correspondence warps (upstream M:1601-1822, FW), buffer tail ---- */
    memset(a->buffer, 0, sizeof(float) * (size_t)(Cb * T * hw));
    if (S > 0) {
        /* Distinct frame ids, first occurrence kept with its slot (M:1734-1744). */
        int keep[LYRA_FP_MAX_COUNT], n_u = 0;
        for (int k = 0; k < n; k++) {
            int dup = 0;
            for (int u = 0; u < n_u; u++) dup |= a->retrieved_frame[keep[u]] == a->retrieved_frame[k];
            if (!dup) keep[n_u++] = k;
        }
        float dmin = INFINITY, dmax = -INFINITY;
        for (int g = 0; g < n_u; g++) {
            const int k = keep[n_u - 1 - g]; /* group 0 = the last entry returned = the best pick */
            const int64_t fid = a->retrieved_frame[k];
            const int e = lyra_scache_find(a->cache, fid);
            if (e < 0) {
                st = lyra_error(LYRA_ERR_INTERNAL, "prepare: retrieved frame %lld is not in the cache", (long long)fid);
                goto done;
            }
            canonical_coords(H, W, slot_z(S, S - n + k), canon);
            lyra_warp_forward_args wa = {
                .channels = 3, .height = H, .width = W, .n_targets = (int)F, .image = canon,
                .depth = a->cache->entries[e].depth, .src_w2c = a->w2c + 16 * fid, .src_K = a->K + 9 * fid,
                .tgt_w2c = a->w2c + 16 * (buf_frame + 1), .tgt_K = a->K + 9 * (buf_frame + 1), .clean_points = 1,
                .norm_batch = a->warp_chunk, .out_image = coords, .out_mask = mask, .out_depth = wdepth,
            };
            st = lyra_warp_forward(&wa);
            if (st != LYRA_OK) goto done;
            if (a->warp_coords) memcpy(a->warp_coords + (int64_t)g * F * 3 * HW, coords, sizeof(float) * (size_t)(F * 3 * HW));
            /* min / max over every frame and pixel of every group, holes (0) included (M:1787-1793) */
            for (int64_t i = 0; i < F * HW; i++) {
                dmin = wdepth[i] < dmin ? wdepth[i] : dmin;
                dmax = wdepth[i] > dmax ? wdepth[i] : dmax;
            }
            for (int j = 0; j < G; j++) {
                const int64_t f = (int64_t)LYRA_PREP_FRAMES_PER_LATENT * j + LYRA_PREP_FRAMES_PER_LATENT - 1;
                memcpy(kept_depth + ((int64_t)g * G + j) * HW, wdepth + f * HW, sizeof(float) * (size_t)HW);
                for (int c = 0; c < 3; c++)
                    unshuffle_plane(coords + (f * 3 + c) * HW, H, W, a->buffer,
                                    (int64_t)g * LYRA_PREP_SLOT_CHANNELS + 64 * c, T, n_hist0 + j);
            }
        }
        const float range = dmax - dmin > 1e-6f ? dmax - dmin : 1e-6f;
        for (int g = 0; g < n_u; g++)
            for (int j = 0; j < G; j++) {
                const float *d = kept_depth + ((int64_t)g * G + j) * HW;
                for (int64_t i = 0; i < HW; i++) plane[i] = 2.0f * (d[i] - dmin) / range - 1.0f;
                unshuffle_plane(plane, H, W, a->buffer, (int64_t)g * LYRA_PREP_SLOT_CHANNELS + 192, T, n_hist0 + j);
            }
        /* Missing groups: coordinates −1, depth +1 (M:1802-1812). */
        for (int g = n_u; g < S; g++)
            for (int j = 0; j < G; j++) {
                fill_channels(a->buffer, (int64_t)g * LYRA_PREP_SLOT_CHANNELS, 192, T, n_hist0 + j, hw, -1.0f);
                fill_channels(a->buffer, (int64_t)g * LYRA_PREP_SLOT_CHANNELS + 192, 64, T, n_hist0 + j, hw, 1.0f);
            }
        a->n_groups = n_u;
    }

    /* ---- slot assembly (upstream M:2046-2265) ---- */
    memset(a->x, 0, sizeof(float) * (size_t)(C * T * hw));
    /* mask: ones everywhere (docs/REFERENCES.md#upstream-quirks-kept-on-purpose) */
    fill_channels(a->y, 0, LYRA_PREP_MASK_CHANNELS, 1, 0, T * hw, 1.0f);
    {
        int slot = 0, ki = 0, sj = 0;
        for (int s = 0; s < fp->n_segments; s++)
            for (int i = 0; i < fp->seg[s].frames; i++, slot++) {
                const float *wf, *kf;
                if (fp->seg[s].type == 'k') {
                    const int64_t l = temporal[ki++];
                    copy_latent(a->history, C, a->t_hist_total, l, a->x, 0, T, slot, hw);
                    const int64_t f = lyra_prep_latent_frame(l, n_hist0);
                    wf = a->w2c + 16 * f;
                    kf = a->K + 9 * f;
                } else {
                    copy_latent(sp_lat + (int64_t)sj * C * hw, C, 1, 0, a->x, 0, T, slot, hw);
                    wf = a->w2c + 16 * spatial_ids[sj];
                    kf = a->K + 9 * spatial_ids[sj];
                    /* History buffer of s-slot j: its canonical coordinates in every group, depth −1 in group 0
                     * and +1 in the others (M:2189-2239). */
                    canonical_coords(H, W, slot_z(S, sj), canon);
                    for (int g = 0; g < S; g++) {
                        for (int c = 0; c < 3; c++)
                            unshuffle_plane(canon + c * HW, H, W, a->buffer, (int64_t)g * LYRA_PREP_SLOT_CHANNELS + 64 * c,
                                            T, slot);
                        fill_channels(a->buffer, (int64_t)g * LYRA_PREP_SLOT_CHANNELS + 192, 64, T, slot, hw,
                                      g == 0 ? -1.0f : 1.0f);
                    }
                    sj++;
                }
                copy_latent(a->x, C, T, slot, a->y, LYRA_PREP_MASK_CHANNELS, T, slot, hw);
                st = ray_slot(w2c_ref, wf, kf, H, W, rays, plane, a->y, LYRA_PREP_MASK_CHANNELS + C, T, slot);
                if (st != LYRA_OK) goto done;
            }
        for (int j = 0; j < G; j++) {
            copy_latent(cam_lat, C, G + 1, 1 + j, a->y, LYRA_PREP_MASK_CHANNELS, T, n_hist0 + j, hw);
            const int64_t f = lyra_prep_latent_frame(a->t_hist_total + j, n_hist0);
            st = ray_slot(w2c_ref, a->w2c + 16 * f, a->K + 9 * f, H, W, rays, plane, a->y, LYRA_PREP_MASK_CHANNELS + C, T,
                          n_hist0 + j);
            if (st != LYRA_OK) goto done;
        }
    }

done:
    if (warp_rgb != a->warp_rgb) free(warp_rgb);
    free(video);
    free(cam_lat);
    free(sp_lat);
    free(mask);
    free(coords);
    free(wdepth);
    free(kept_depth);
    free(canon);
    free(rays);
    free(plane);
    return st;
}
