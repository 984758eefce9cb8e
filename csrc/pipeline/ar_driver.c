/* The autoregressive driver (upstream Z:157, EXP:105-110, EXP:39); see ar_driver.h. */
#include "pipeline/ar_driver.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "geom/camera.h"
#include "nn/ops.h"
#include "nn/warp.h"
#include "pipeline/depth_window.h"
#include "pipeline/prep.h"
#include "sample/cfg.h"
#include "sample/denoise.h"
#include "sample/dmd.h"
#include "sample/rng.h"
#include "sample/unipc.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct driver {
    lyra_ar_run *r;
    lyra_ar_models *m;
    const lyra_framepack *fp;
    int H, W, h, w, C, G, F, S, n_hist0, n_chunks;
    int64_t HW, hw;
    /* The chunk inputs are built on the VAE's backend (vb, the decoder stream's), where the frames and latents are:
     * host memory on the CPU, the device pool after placement. Kept there for the run: */
    lyra_backend *vb;
    float **frames;         /* (num_frames) pixel frames (3, H, W) in vb's memory; NULL unless a later chunk reads
                               the frame (frame 0, every spatial-memory frame, the next buffer frame, the next depth
                               window's frames: frame_needed) */
    float *latents;         /* (n_hist0 + G·k, C, h, w) history latents, frame-major, in vb's memory */
    int64_t n_latents;
    lyra_vae_session *enc, *dec;
    lyra_vae_session *fresh;    /* the prep's fresh encoder stream while one is open */
    lyra_scache cache;      /* host: its 1/4-resolution points drive the retrieval */
    float **cache_depth;    /* (cache capacity) each entry's full-resolution depth (H, W) in vb's memory */
    int cache_depth_cap;
    float *buffer_depth;    /* (H, W) in vb's memory */
    float *canon;           /* (S, 3, H, W) canonical coordinates in vb's memory (once per run) */
    float *lat_mean, *lat_inv; /* (C) the latent normalisation's −mean and inv_std in vb's memory */
    float *lat_mean_pos;    /* (C) its +mean there: the decoder's denormalisation z / inv_std + mean */
    uint8_t *u8;            /* (max(4, window), H, W, 3) uint8 frames in vb's memory, downloaded from there */
    uint8_t *warp_u8;       /* (F, H, W, 3) the buffer warp as uint8 (only when r->out_warp) */
    float *mu;              /* (C, h, w) one encoder push's latent, normalised there; in the decode, the decoder's
                               denormalised input latent */
    int pending_update;     /* the next chunk boundary b whose depth-window update (L = F·b) has not run */
    /* The DiT's inputs live where it runs (lyra_ar_backend: host memory on the CPU, the device pool after
     * placement); each is written once per run, chunk or network call, see dev_buffers. */
    lyra_backend *be;
    float *texts;           /* (k, 512, text_dim): per-chunk caption embeddings (once per run) */
    float *clip;            /* (tokens, clip width): CLIP of the chunk's last history frame (once per chunk) */
    float *frame;           /* (3, H, W): that frame, the CLIP input */
    float *x;               /* (C, T, h, w) the chunk's latent: the prep writes it, the sampler updates it in place,
                               the decoder reads the generated frames from it */
    /* The chunk's conditioning y and correspondence buffer (once per chunk), stored as cond_dtype: bf16 where the
     * DiT keeps bf16 activations, as upstream holds its assembled inputs in bf16 on the GPU (the VAE latents and the
     * Plücker rays cast to the video's bf16, upstream M:196, M:1171-1173, M:1888; the buffer to cond_latent's dtype,
     * M:2211-2214, M:2242, M:2262); f32 on the CPU and in the f32 parity mode. */
    void *y, *buf;
    lyra_dtype cond_dtype;
    /* The sampler's work memory (sample/unipc.h, sample/dmd.h: the velocity, UniPC's x0 history and corrected
     * sample; DMD's uploaded re-noise), and for CFG the unconditional velocity after it: sampler_work_numel. */
    float *work;
    float *pix;             /* (3, 4, H, W) in the VAE's memory: one latent's decoded frames (made uint8 and kept
                               from there); between decodes the staging block of the prep's encoder pushes */
    void *chunk_pix;        /* (G, 3, 4, H, W) in vb's memory, the VAE's activation dtype: the chunk's decoded frames
                               from the decode to the end of the re-encode (upstream's order: decode, then re-encode) */
    int depth_logged;
    /* per-network-call progress */
    int calls_done, calls_total;
} driver;

static lyra_status check_stop(driver *d) {
    if (d->r->interrupted && d->r->interrupted(d->r->interrupt_ctx))
        return lyra_error(LYRA_ERR_INTERRUPTED, "%s: interrupted", d->r->label ? d->r->label : "generate");
    return LYRA_OK;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void logf_(driver *d, const char *fmt, ...) {
    if (!d->r->log) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    d->r->log(d->r->report_ctx, buf);
}

/* ---- the DiT's inputs in its backend's memory ---- */

/* A contiguous descriptor of dims ne and dtype dt over `data` in the memory of d->be. */
static lyra_tensor dev_tensor_as(driver *d, void *data, lyra_dtype dt, int ndim, const int64_t *ne, const char *name) {
    lyra_tensor t = lyra_tensor_make(data, dt, ndim, ne);
    t.device = d->be->device;
    t.name = name;
    return t;
}

static lyra_tensor dev_tensor(driver *d, void *data, int ndim, const int64_t *ne, const char *name) {
    return dev_tensor_as(d, data, LYRA_DTYPE_F32, ndim, ne, name);
}

/* dst (in d->be's memory, contiguous, of dst's shape and dtype) <- host f32 array of the same size (converted on the
 * host when dst is not f32, so the bytes that cross are dst's). */
static lyra_status upload(driver *d, const lyra_tensor *dst, const float *host) {
    lyra_tensor h = lyra_tensor_make((void *)host, LYRA_DTYPE_F32, dst->ndim, dst->ne), t = *dst;
    h.name = dst->name;
    return lyra_backend_upload_as(d->be, &t, &h);
}

/* One buffer of be's memory (the DiT's, or the VAE's) for `elems` elements of dt; NULL with the error set. */
static void *dev_alloc_as(lyra_backend *be, int64_t elems, lyra_dtype dt, const char *what) {
    const size_t bytes = lyra_dtype_size(dt) * (size_t)(elems > 0 ? elems : 1);
    void *p = be->ops->alloc(be, bytes);
    if (!p) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        (void)lyra_error(LYRA_ERR_OOM, "generate: cannot allocate %s (%zu bytes, %.2f GiB) on the %s device (%s)", what,
                         bytes, (double)bytes / (1 << 30), be->ops->name, why);
    }
    return p;
}

static float *dev_alloc(lyra_backend *be, int64_t elems, const char *what) {
    return dev_alloc_as(be, elems, LYRA_DTYPE_F32, what);
}

static void dev_release(lyra_backend *be, void *p) {
    if (p) be->ops->release(be, p);
}

static void dev_free(lyra_backend *be, float **p) {
    dev_release(be, *p);
    *p = NULL;
}

/* ---- VAE streams ---- */

/* A contiguous f32 tensor over `data` in vb's memory. */
static lyra_tensor vb_tensor(driver *d, void *data, int ndim, const int64_t *ne, const char *name) {
    lyra_tensor t = lyra_tensor_make(data, LYRA_DTYPE_F32, ndim, ne);
    t.device = d->vb->device;
    t.name = name;
    return t;
}

/* frames[0..n) (3, H, W) in vb's memory -> video (1, 3, n, H, W), n <= 4, contiguous at the start of d->pix (the
 * CPU stream takes host arrays only contiguous): frame i, channel c at (c·n + i)·HW. */
static lyra_status stage_frames(driver *d, const lyra_tensor *const *frames, int n, lyra_tensor *video) {
    const int64_t ne[5] = {1, 3, n, d->H, d->W}, nf[3] = {3, d->H, d->W}, f4 = sizeof(float);
    *video = vb_tensor(d, d->pix, 5, ne, "encoder frames");
    for (int i = 0; i < n; i++) {
        lyra_tensor dst = vb_tensor(d, (char *)d->pix + i * d->HW * f4, 3, nf, "encoder frames");
        dst.nb[0] = n * d->HW * f4;
        LYRA_TRY(lyra_op_copy(d->vb, &dst, frames[i]));
    }
    return LYRA_OK;
}

/* One encoder push of x (1, 3, n, H, W) in vb's memory -> one latent, normalised (upstream TOK:810-848 with the
 * bf16 tables: (mu + (−mean))·inv_std, the host arithmetic of lyra_vae_normalize as two ops), copied into out (C, h, w)
 * (any strides) in vb's memory. The session may run on its own stream: it waits for vb's work before the push and vb
 * waits for it after. */
static lyra_status encode_dev(driver *d, lyra_vae_session *s, const lyra_tensor *x, lyra_tensor *out) {
    int64_t L = 0;
    LYRA_TRY(lyra_vae_session_out_frames(s, x->ne[2], &L));
    if (L != 1) return lyra_error(LYRA_ERR_INTERNAL, "VAE encode: a push of %lld frames gave %lld latents",
                                  (long long)x->ne[2], (long long)L);
    lyra_backend *sb = lyra_vae_session_backend(s);
    const int64_t ne[5] = {1, d->C, 1, d->h, d->w}, nc[5] = {1, d->C, 1, 1, 1};
    lyra_tensor mu = vb_tensor(d, d->mu, 5, ne, "latent"), mean = vb_tensor(d, d->lat_mean, 5, nc, "latent mean");
    lyra_tensor inv = vb_tensor(d, d->lat_inv, 5, nc, "latent scale");
    if (sb != d->vb) LYRA_TRY(lyra_op_synchronize(d->vb));
    LYRA_TRY(lyra_vae_encode_push(s, x, &mu));
    if (sb != d->vb) LYRA_TRY(lyra_op_synchronize(sb));
    LYRA_TRY(lyra_op_add(d->vb, &mu, &mu, &mean));
    LYRA_TRY(lyra_op_mul(d->vb, &mu, &mu, &inv));
    lyra_tensor m3;
    const int64_t ne3[3] = {d->C, d->h, d->w};
    LYRA_TRY(lyra_tensor_reshape(&m3, &mu, 3, ne3));
    return lyra_op_copy(d->vb, out, &m3);
}

/* The prep's fresh encoder stream (lyra_prep_encoder; the Wan encode upstream's model.encode runs): a new session per
 * stream, each push staged in d->pix (free while the prep runs: the decoded frames it held were copied out). */
static lyra_status fresh_begin(void *ctx) {
    driver *d = ctx;
    lyra_vae_session_free(d->fresh);
    d->fresh = NULL;
    return lyra_vae_session_new(&d->fresh, d->m->vae, 0, d->m->n_threads);
}

static lyra_status fresh_push(void *ctx, const lyra_tensor *const *frames, int n, lyra_tensor *out) {
    driver *d = ctx;
    lyra_tensor video;
    LYRA_TRY(stage_frames(d, frames, n, &video));
    return encode_dev(d, d->fresh, &video, out);
}

static lyra_status fresh_end(void *ctx, int ok) {
    driver *d = ctx;
    (void)ok;
    lyra_vae_session_free(d->fresh);
    d->fresh = NULL;
    return LYRA_OK;
}

/* Decodes one normalised latent z (1, C, 1, h, w), any strides in the device memory the VAE's backend reads (a
 * generated frame of the sampler's x in the DiT's memory, or a history latent in vb's), through the persistent
 * decoder into `keep` (1, 3, T, H, W) in vb's memory, where the frames stay: the uint8 conversion, the kept frames
 * and the chunk block the re-encode read them from there. The denormalisation z / inv_std + mean (upstream
 * TOK:810-848, the bf16 tables) runs on vb into d->mu (the latent_update op's LYRA_LATENT_DENORM:
 * lyra_vae_denormalize's arithmetic), which the decoder reads on the device: no latent crosses to or from the host. */
static lyra_status decode_push(driver *d, const lyra_tensor *z, lyra_tensor *keep) {
    int64_t T = 0;
    LYRA_TRY(lyra_vae_session_out_frames(d->dec, 1, &T));
    if (keep->ne[2] != T || T > LYRA_PREP_FRAMES_PER_LATENT)
        return lyra_error(LYRA_ERR_INTERNAL, "decode: %lld frames from one latent, expected %lld", (long long)T,
                          (long long)keep->ne[2]);
    const int64_t ne[5] = {1, d->C, 1, d->h, d->w}, nc[5] = {1, d->C, 1, 1, 1};
    lyra_tensor in = vb_tensor(d, d->mu, 5, ne, "decoder latent");
    lyra_tensor inv = vb_tensor(d, d->lat_inv, 5, nc, "latent scale"), mean = vb_tensor(d, d->lat_mean_pos, 5, nc,
                                                                                        "latent mean");
    const lyra_latent_update p = {.kind = LYRA_LATENT_DENORM};
    const lyra_tensor *x[3] = {z, &inv, &mean};
    LYRA_TRY(lyra_op_latent_update(d->vb, &in, x, 3, &p));
    return lyra_vae_decode_push(d->dec, &in, keep);
}

/* Gives back the device memory that sits idle between the chunk's phases: the DiT's activation arena and the
 * chunk's y and buffer after sampling, the VAE streams' arenas after their pushes, and their causal caches, parked
 * in host memory until the streams' next push. The decode, the depth window, CLIP and the next chunk's prep then do
 * not sit beside them. Each comes back with its next use (the DiT rebuilds its RoPE table in its arena, 10 MB at
 * 480p once per chunk; parked caches cross twice per chunk, 3.0 GB each way at 480p, so they are parked only when
 * the run's plan needs it: r->park_vae_caches). lyra2.memory_plan's stages count exactly this. */
static lyra_status release_scratch(driver *d) {
    lyra_dit_arena_release(&d->m->dit);
    dev_release(d->be, d->y);
    dev_release(d->be, d->buf);
    d->y = d->buf = NULL;
    lyra_vae_session_release_arena(d->enc);
    lyra_vae_session_release_arena(d->dec);
    if (!d->r->park_vae_caches) return LYRA_OK;
    LYRA_TRY(lyra_vae_session_park(d->enc));
    return lyra_vae_session_park(d->dec);
}

/* Makes stream s the only VAE stream with activations on the device: the other gives back its arena and, when the
 * run parks them, its caches go to host memory (s's own come back with its next push). */
static lyra_status vae_phase(driver *d, lyra_vae_session *s) {
    lyra_vae_session *other = s == d->enc ? d->dec : d->enc;
    lyra_vae_session_release_arena(other);
    return d->r->park_vae_caches ? lyra_vae_session_park(other) : LYRA_OK;
}

/* ---- the frames kept in vb's memory ---- */

/* Whether a later step reads frame f: frame 0 and every spatial-memory frame (retrieval, spatial slots), the buffer
 * frame of chunk next_chunk, and the frames of the depth-window updates not run yet (L − 8k, k < window). */
static int frame_needed(const driver *d, int64_t f, int next_chunk) {
    if (f == 0 || lyra_scache_find(&d->cache, f) >= 0) return 1;
    if (next_chunk < d->n_chunks && f == (int64_t)d->F * next_chunk) return 1;
    if (d->r->depth_model || d->r->depth_window)
        for (int b = d->pending_update; b < d->n_chunks; b++) {
            const int64_t back = (int64_t)d->F * b - f;
            if (back >= 0 && back % LYRA_AR_DEPTH_INTERVAL == 0 && back / LYRA_AR_DEPTH_INTERVAL < LYRA_AR_DEPTH_WINDOW)
                return 1;
        }
    return 0;
}

/* Frees the kept frames no later step reads. */
static void prune_frames(driver *d, int next_chunk) {
    for (int64_t f = 1; f < d->r->num_frames; f++)
        if (d->frames[f] && !frame_needed(d, f, next_chunk)) dev_free(d->vb, &d->frames[f]);
}

/* A (3, H, W) view of frame f. */
static lyra_tensor frame_tensor(driver *d, int64_t f) {
    const int64_t ne[3] = {3, d->H, d->W};
    return vb_tensor(d, d->frames[f], 3, ne, "kept frame");
}

/* The (1, 3, 4, H, W) block of latent j's frames in d->chunk_pix (the VAE's activation dtype). */
static lyra_tensor chunk_block(driver *d, int j) {
    const int64_t ne[5] = {1, 3, LYRA_PREP_FRAMES_PER_LATENT, d->H, d->W};
    const lyra_dtype act = lyra_vae_precision(d->m->vae);
    lyra_tensor t = lyra_tensor_make((char *)d->chunk_pix + (size_t)j * lyra_dtype_size(act) * 3 *
                                                                LYRA_PREP_FRAMES_PER_LATENT * (size_t)d->HW,
                                     act, 5, ne);
    t.device = d->vb->device;
    t.name = "chunk frames";
    return t;
}

/* x (N, 3, H, W) any strides in vb's memory -> out (N, H, W, 3) host uint8 through d->u8 (mode: lyra_u8_mode). */
static lyra_status frames_u8(driver *d, const lyra_tensor *x, lyra_u8_mode mode, uint8_t *out, const char *name) {
    const int64_t ne[4] = {x->ne[0], d->H, d->W, 3};
    lyra_tensor t = lyra_tensor_make(d->u8, LYRA_DTYPE_U8, 4, ne), h = lyra_tensor_make(out, LYRA_DTYPE_U8, 4, ne);
    t.device = d->vb->device;
    t.name = h.name = name;
    LYRA_TRY(lyra_op_to_u8(d->vb, &t, x, mode));
    return lyra_op_download(d->vb, &h, &t);
}

/* A slot in vb's memory for the newest spatial-memory entry's depth. */
static lyra_status cache_slot(driver *d, float **out) {
    if (d->cache.n > d->cache_depth_cap) {
        int cap = d->cache.n * 2;
        float **p = realloc(d->cache_depth, sizeof *p * (size_t)cap);
        if (!p) return lyra_error(LYRA_ERR_OOM, "spatial memory: out of host memory");
        for (int i = d->cache_depth_cap; i < cap; i++) p[i] = NULL;
        d->cache_depth = p;
        d->cache_depth_cap = cap;
    }
    float **slot = &d->cache_depth[d->cache.n - 1];
    if (!(*slot = dev_alloc(d->vb, d->HW, "a spatial-memory depth"))) return LYRA_ERR_OOM;
    *out = *slot;
    return LYRA_OK;
}

/* Adds frame fid to the spatial memory from a host depth (frame 0, the host depth callback): its retrieval points,
 * and a copy in vb's memory for the correspondence warps (upstream AR:1274-1348). */
static lyra_status cache_add(driver *d, const float *depth, int64_t fid) {
    LYRA_TRY(lyra_scache_add(&d->cache, depth, d->r->w2c + 16 * fid, d->r->K + 9 * fid, fid, fid));
    float *slot;
    LYRA_TRY(cache_slot(d, &slot));
    const int64_t ne[2] = {d->H, d->W};
    lyra_tensor t = vb_tensor(d, slot, 2, ne, "spatial-memory depth"), h = lyra_tensor_make((void *)depth,
                                                                                            LYRA_DTYPE_F32, 2, ne);
    return lyra_op_upload(d->vb, &t, &h);
}

/* The same from a depth (H, W) already in vb's memory (DA3's window depth): a device copy for the warps, and only
 * depth[::4, ::4] comes down for the retrieval points. */
static lyra_status cache_add_dev(driver *d, const lyra_tensor *depth, int64_t fid) {
    const int h4 = (d->H + LYRA_SCACHE_DOWNSAMPLE - 1) / LYRA_SCACHE_DOWNSAMPLE;
    const int w4 = (d->W + LYRA_SCACHE_DOWNSAMPLE - 1) / LYRA_SCACHE_DOWNSAMPLE;
    const int64_t n4[2] = {h4, w4};
    float *tmp = dev_alloc(d->vb, (int64_t)h4 * w4, "the spatial-memory points' depth"); /* says why if NULL */
    float *host = malloc(sizeof(float) * (size_t)h4 * w4);
    lyra_status st = !tmp ? LYRA_ERR_OOM
                          : host ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "spatial memory: out of host memory");
    lyra_tensor sub = *depth, ts = vb_tensor(d, tmp, 2, n4, "spatial-memory points' depth");
    lyra_tensor hs = lyra_tensor_make(host, LYRA_DTYPE_F32, 2, n4);
    hs.name = ts.name;
    sub.ne[0] = h4, sub.ne[1] = w4;
    sub.nb[0] = depth->nb[0] * LYRA_SCACHE_DOWNSAMPLE, sub.nb[1] = depth->nb[1] * LYRA_SCACHE_DOWNSAMPLE;
    if (st == LYRA_OK) st = lyra_op_copy(d->vb, &ts, &sub);
    if (st == LYRA_OK) st = lyra_op_download(d->vb, &hs, &ts);
    if (st == LYRA_OK) st = lyra_scache_add_sub(&d->cache, host, d->r->w2c + 16 * fid, d->r->K + 9 * fid, fid, fid);
    dev_free(d->vb, &tmp);
    free(host);
    float *slot;
    if (st == LYRA_OK) st = cache_slot(d, &slot);
    if (st == LYRA_OK) {
        const int64_t ne[2] = {d->H, d->W};
        lyra_tensor t = vb_tensor(d, slot, 2, ne, "spatial-memory depth");
        st = lyra_op_copy(d->vb, &t, depth);
    }
    return st;
}

/* The run's buffers in vb's memory (lyra2/memory.py _prep_run, through the chunk loop): the latent constants, the
 * canonical coordinates, the history latents, the buffer depth, the uint8 staging, frame 0 (the input image). */
static lyra_status prep_buffers(driver *d) {
    const int64_t n_lat_max = d->n_hist0 + (int64_t)d->G * d->n_chunks;
    const int n_u8 = LYRA_AR_DEPTH_WINDOW > LYRA_PREP_FRAMES_PER_LATENT ? LYRA_AR_DEPTH_WINDOW : LYRA_PREP_FRAMES_PER_LATENT;
    if (!(d->lat_mean = dev_alloc(d->vb, d->C, "the latent constants")) ||
        !(d->lat_inv = dev_alloc(d->vb, d->C, "the latent constants")) ||
        !(d->lat_mean_pos = dev_alloc(d->vb, d->C, "the latent constants")) ||
        !(d->mu = dev_alloc(d->vb, d->C * d->hw, "an encoder latent")) ||
        !(d->canon = dev_alloc(d->vb, (int64_t)d->S * 3 * d->HW, "the canonical coordinates")) ||
        !(d->latents = dev_alloc(d->vb, n_lat_max * d->C * d->hw, "the history latents")) ||
        !(d->buffer_depth = dev_alloc(d->vb, d->HW, "the buffer depth")) ||
        !(d->u8 = (uint8_t *)dev_alloc(d->vb, (n_u8 * 3 * d->HW + 3) / 4, "the uint8 frames")) ||
        !(d->frames[0] = dev_alloc(d->vb, 3 * d->HW, "the input image")))
        return LYRA_ERR_OOM;
    if (d->r->out_warp && !(d->warp_u8 = (uint8_t *)dev_alloc(d->vb, ((int64_t)d->F * 3 * d->HW + 3) / 4, "the warp frames")))
        return LYRA_ERR_OOM;
    float mean[16], neg[16], inv[16];
    if (d->C != 16) return lyra_error(LYRA_ERR_ARG, "generate: %d latent channels; the Wan tables have 16", d->C);
    LYRA_TRY(lyra_vae_latent_constants(LYRA_VAE_CONST_BF16, d->C, mean, inv));
    for (int c = 0; c < d->C; c++) neg[c] = -mean[c];
    float *canon = malloc(sizeof(float) * (size_t)(d->S * 3 * d->HW));
    if (!canon) return lyra_error(LYRA_ERR_OOM, "generate: out of host memory");
    lyra_prep_canonical_coords(d->S, d->H, d->W, canon);
    const int64_t nc[1] = {d->C}, ncan[4] = {d->S, 3, d->H, d->W}, nf[3] = {3, d->H, d->W};
    struct { float *dev; const float *host; int ndim; const int64_t *ne; const char *name; } up[] = {
        {d->lat_mean, neg, 1, nc, "Wan VAE latent mean"}, {d->lat_inv, inv, 1, nc, "Wan VAE latent scale"},
        {d->lat_mean_pos, mean, 1, nc, "Wan VAE latent mean (decoder)"},
        {d->canon, canon, 4, ncan, "canonical coordinates"}, {d->frames[0], d->r->image, 3, nf, "input image"},
        {d->buffer_depth, d->r->depth, 2, nf + 1, "first-frame depth"},
    };
    lyra_status st = LYRA_OK;
    for (size_t i = 0; st == LYRA_OK && i < sizeof up / sizeof *up; i++) {
        lyra_tensor t = vb_tensor(d, up[i].dev, up[i].ndim, up[i].ne, up[i].name);
        lyra_tensor h = lyra_tensor_make((void *)up[i].host, LYRA_DTYPE_F32, up[i].ndim, up[i].ne);
        h.name = up[i].name;
        st = lyra_op_upload(d->vb, &t, &h);
    }
    free(canon);
    return st;
}

static void prep_buffers_free(driver *d) {
    if (!d->vb) return;
    if (d->frames)
        for (int64_t f = 0; f < d->r->num_frames; f++) dev_free(d->vb, &d->frames[f]);
    for (int i = 0; i < d->cache_depth_cap; i++) dev_free(d->vb, &d->cache_depth[i]);
    float **b[] = {&d->lat_mean, &d->lat_inv, &d->lat_mean_pos, &d->mu, &d->canon, &d->latents, &d->buffer_depth,
                   (float **)&d->u8, (float **)&d->warp_u8};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) dev_free(d->vb, b[i]);
}

/* ---- state initialisation (upstream AR:469-677) ---- */

static lyra_status prime(driver *d) {
    lyra_ar_run *r = d->r;
    double t0 = now();
    LYRA_TRY(lyra_vae_session_new(&d->enc, d->m->vae, 0, d->m->n_threads));
    LYRA_TRY(lyra_vae_session_new(&d->dec, d->m->vae, 1, d->m->n_threads));
    d->vb = lyra_vae_session_backend(d->dec);
    if (!(d->pix = dev_alloc(d->vb, 3 * LYRA_PREP_FRAMES_PER_LATENT * d->HW, "the decoded frames"))) return LYRA_ERR_OOM;
    LYRA_TRY(lyra_scache_init(&d->cache, d->H, d->W));
    LYRA_TRY(prep_buffers(d));
    lyra_tensor f0 = frame_tensor(d, 0), f0n;
    const int64_t n4[4] = {1, 3, d->H, d->W};
    LYRA_TRY(lyra_tensor_reshape(&f0n, &f0, 4, n4));
    LYRA_TRY(frames_u8(d, &f0n, LYRA_U8_VIDEO, r->out_frames, "video frames"));
    if (r->out_warp) memcpy(r->out_warp, r->out_frames, (size_t)(3 * d->HW));
    /* The image repeated 4(n_hist0 − 1) + 1 times through the encoder stream: alone, then groups of 4. */
    const lyra_tensor *fr[4] = {&f0, &f0, &f0, &f0};
    const int64_t nl[3] = {d->C, d->h, d->w};
    for (int l = 0; l < d->n_hist0; l++) {
        LYRA_TRY(check_stop(d));
        lyra_tensor video, out = vb_tensor(d, d->latents + (int64_t)l * d->C * d->hw, 3, nl, "history latent");
        LYRA_TRY(stage_frames(d, fr, l == 0 ? 1 : 4, &video));
        LYRA_TRY(encode_dev(d, d->enc, &video, &out));
    }
    d->n_latents = d->n_hist0;
    /* Decoder priming with those latents, output discarded (AR:517-527): read where the encoder left them, decoded
     * into the VAE's memory and left there. */
    LYRA_TRY(vae_phase(d, d->dec));
    for (int l = 0; l < d->n_hist0; l++) {
        int64_t T = 0;
        LYRA_TRY(check_stop(d));
        LYRA_TRY(lyra_vae_session_out_frames(d->dec, 1, &T));
        const int64_t nk[5] = {1, 3, T, d->H, d->W}, nz[5] = {1, d->C, 1, d->h, d->w};
        lyra_tensor keep = vb_tensor(d, d->pix, 5, nk, "decoded frames");
        lyra_tensor z = vb_tensor(d, d->latents + (int64_t)l * d->C * d->hw, 5, nz, "priming latent");
        LYRA_TRY(decode_push(d, &z, &keep));
    }
    LYRA_TRY(cache_add(d, r->depth, 0));
    d->pending_update = 1;
    LYRA_TRY(release_scratch(d));
    r->timings.prime += now() - t0;
    return LYRA_OK;
}

/* ---- the network as the sampler's denoiser ---- */

typedef struct dit_ctx {
    driver *d;
    float *text;            /* (512, text_dim) in d->be's memory: the caption's or the negative prompt's */
} dit_ctx;

/* One network call on the sampler's state in the DiT's memory: x (C, T, h, w) and the velocity v_out (C, G, h, w)
 * live there (the sampler's, sample/unipc.h lyra_unipc_run), as does the conditioning (y, buffer, text, CLIP):
 * nothing crosses to or from the host but the DiT's own time features. */
static lyra_status dit_denoise(void *ctx, const lyra_latent_shape *shape, const lyra_tensor *x, float t,
                               lyra_tensor *v_out) {
    dit_ctx *c = ctx;
    driver *d = c->d;
    LYRA_TRY(check_stop(d));
    const int64_t T = shape->t_hist + shape->t_new;
    const lyra_dit_config *cfg = &d->m->dit.cfg;
    const int64_t nx[5] = {1, d->C, T, d->h, d->w}, ny[5] = {1, LYRA_PREP_MASK_CHANNELS + d->C + LYRA_PREP_RAY_CHANNELS, T, d->h, d->w};
    const int64_t nb[5] = {1, (int64_t)LYRA_PREP_SLOT_CHANNELS * d->S, T, d->h, d->w};
    const int64_t nt[3] = {1, LYRA_AR_TEXT_LEN, cfg->text_dim}, nc[3] = {1, d->m->clip.cfg.tokens, d->m->clip.cfg.width};
    const int64_t nv[5] = {1, d->C, shape->t_new, d->h, d->w};
    lyra_tensor tx, to;
    LYRA_TRY(lyra_tensor_reshape(&tx, x, 5, nx));
    LYRA_TRY(lyra_tensor_reshape(&to, v_out, 5, nv));
    lyra_tensor ty = dev_tensor_as(d, d->y, d->cond_dtype, 5, ny, "condition y");
    lyra_tensor tb = dev_tensor_as(d, d->buf, d->cond_dtype, 5, nb, "correspondence buffer");
    lyra_tensor tt = dev_tensor(d, c->text, 3, nt, "text embedding"), tc = dev_tensor(d, d->clip, 3, nc, "clip tokens");
    lyra_dit_inputs in = {&tx, (double)t, &tt, &tc, &ty, &tb};
    double t0 = now();
    lyra_status st = lyra_dit_forward(&d->m->dit, &in, &to, NULL, NULL);
    if (st == LYRA_OK) st = lyra_op_synchronize(d->be); /* timings.dit: the forward's time, not its queueing */
    d->r->timings.dit += now() - t0;
    d->r->timings.dit_calls++;
    d->calls_done++;
    if (d->r->progress) d->r->progress(d->r->report_ctx, "denoise", d->calls_done, d->calls_total);
    return st;
}

/* ---- depth-cache update (upstream AR:1059-1060, AR:1071-1393, AR:261-366) ---- */

/* Tiny translation offsets when the window's camera centres coincide (AR:201-258). w2c (n, 4, 4) in place. */
static void pose_alignment_offsets(float *w2c, int n) {
    double c[LYRA_AR_DEPTH_WINDOW][3], mean[3] = {0, 0, 0}, var = 0;
    for (int i = 0; i < n; i++) {
        float cc[3];
        lyra_camera_center(w2c + 16 * i, cc);
        for (int k = 0; k < 3; k++) {
            c[i][k] = cc[k];
            mean[k] += cc[k] / n;
        }
    }
    for (int k = 0; k < 3; k++) {
        double v = 0;
        for (int i = 0; i < n; i++) v += (c[i][k] - mean[k]) * (c[i][k] - mean[k]);
        var += v / n;
    }
    if (var >= 1e-10) return;
    const double pi2 = 2.0 * 3.14159265358979323846;
    for (int i = 0; i < n; i++) {
        const double off[3] = {1e-6 * sin(pi2 * i * 1e-5), 1e-6 * cos(pi2 * i * 1.3e-5), 1e-6 * sin(pi2 * i * 7e-6)};
        float *M = w2c + 16 * i;
        for (int r = 0; r < 3; r++)
            M[4 * r + 3] = (float)(M[4 * r + 3] - (M[4 * r] * off[0] + M[4 * r + 1] * off[1] + M[4 * r + 2] * off[2]));
    }
}

/* The device form's window depths (n, H, W) in vb's memory -> the buffer depth (frame L) and the spatial memory's new
 * entries (every 8th frame not cached yet, with the pipeline's, not DA3's, camera; AR:1274-1348). */
typedef struct window_take {
    driver *d;
    const int64_t *fids;
    int n;
    int64_t L;
} window_take;

static lyra_status take_window_depth(void *ctx, const lyra_tensor *depth) {
    window_take *w = ctx;
    driver *d = w->d;
    const int64_t nhw[2] = {d->H, d->W};
    for (int i = 0; i < w->n; i++) {
        lyra_tensor di;
        LYRA_TRY(lyra_tensor_select(&di, depth, 0, i));
        if (w->fids[i] == w->L) {
            lyra_tensor t = vb_tensor(d, d->buffer_depth, 2, nhw, "buffer depth");
            LYRA_TRY(lyra_op_copy(d->vb, &t, &di));
        }
        const int64_t f = w->fids[i];
        if ((f == 0 || f % LYRA_AR_DEPTH_INTERVAL == 0) && lyra_scache_find(&d->cache, f) < 0)
            LYRA_TRY(cache_add_dev(d, &di, f));
    }
    return LYRA_OK;
}

static lyra_status update_depth(driver *d, int64_t L) {
    lyra_ar_run *r = d->r;
    double t0 = now();
    lyra_status st = LYRA_OK;
    const int64_t nhw[2] = {d->H, d->W};
    if (!r->depth_model && !r->depth_window) {
        /* No depth model: keep the cache at frame 0 and re-render frame 0's depth into the new buffer camera. */
        if (!d->depth_logged)
            logf_(d, "no depth model for the window updates (DA3): using the first-frame depth only, re-rendered "
                     "into each chunk's buffer camera; spatial memory keeps frame 0 only");
        d->depth_logged = 1;
        float *img = dev_alloc(d->vb, 2 * d->HW, "the depth re-render");
        if (!img) return LYRA_ERR_OOM;
        const int64_t ni[3] = {1, d->H, d->W}, no[4] = {1, 1, d->H, d->W}, nd[3] = {1, d->H, d->W};
        lyra_tensor ti = vb_tensor(d, img, 3, ni, "zero image"), to = vb_tensor(d, img + d->HW, 4, no, "re-render");
        lyra_tensor src = vb_tensor(d, d->cache_depth[0], 2, nhw, "first-frame depth");
        lyra_tensor td = vb_tensor(d, d->buffer_depth, 3, nd, "buffer depth");
        lyra_warp_params wp = {.n_targets = 1, .clean_points = 1, .src_w2c = r->w2c, .src_K = r->K,
                               .tgt_w2c = r->w2c + 16 * L, .tgt_K = r->K + 9 * L};
        st = lyra_op_fill(d->vb, &ti, 0.0f);
        if (st == LYRA_OK) st = lyra_op_warp_forward(d->vb, &to, NULL, &td, &ti, &src, &wp);
        dev_free(d->vb, &img);
        r->timings.depth += now() - t0;
        return st;
    }
    int64_t fids[LYRA_AR_DEPTH_WINDOW];
    int n = 0;
    for (int k = LYRA_AR_DEPTH_WINDOW - 1; k >= 0; k--) /* ascending: L − 8k, f >= 0 (AR:294-311) */
        if (L - (int64_t)LYRA_AR_DEPTH_INTERVAL * k >= 0) fids[n++] = L - (int64_t)LYRA_AR_DEPTH_INTERVAL * k;
    const int on_device = r->depth_model != NULL; /* else the host form: the frames come down for the callback */
    uint8_t *img = on_device ? NULL : malloc((size_t)n * 3 * d->HW);
    float *w2c = malloc(sizeof(float) * 16 * n), *K = malloc(sizeof(float) * 9 * n);
    float *depth = on_device ? NULL : malloc(sizeof(float) * (size_t)(n * d->HW));
    if ((!on_device && (!img || !depth)) || !w2c || !K) {
        st = lyra_error(LYRA_ERR_OOM, "depth update: out of memory");
        goto done;
    }
    const int64_t nu[4] = {n, d->H, d->W, 3};
    lyra_tensor u8 = lyra_tensor_make(d->u8, LYRA_DTYPE_U8, 4, nu);
    u8.device = d->vb->device;
    u8.name = "depth window frames";
    for (int i = 0; i < n; i++) {
        /* (x·0.5 + 0.5).clamp(0, 1)·255 + 0.5, truncated (AR:325-328), on the device into the uint8 staging */
        if (!d->frames[fids[i]]) {
            st = lyra_error(LYRA_ERR_INTERNAL, "depth update: frame %lld was not kept", (long long)fids[i]);
            goto done;
        }
        lyra_tensor f = frame_tensor(d, fids[i]), f4, ui;
        const int64_t n4[4] = {1, 3, d->H, d->W};
        if ((st = lyra_tensor_reshape(&f4, &f, 4, n4)) != LYRA_OK) goto done;
        if (on_device) {
            if ((st = lyra_tensor_slice(&ui, &u8, 0, i, i + 1)) != LYRA_OK ||
                (st = lyra_op_to_u8(d->vb, &ui, &f4, LYRA_U8_ROUND)) != LYRA_OK)
                goto done;
        } else if ((st = frames_u8(d, &f4, LYRA_U8_ROUND, img + (int64_t)i * 3 * d->HW, "depth window frames")) !=
                   LYRA_OK) {
            goto done;
        }
        memcpy(w2c + 16 * i, r->w2c + 16 * fids[i], sizeof(float) * 16);
        memcpy(K + 9 * i, r->K + 9 * fids[i], sizeof(float) * 9);
    }
    pose_alignment_offsets(w2c, n);
    /* DA3 reads the window where the frames are (pipeline/depth_window.c); the host form gets them as uint8 */
    if (on_device) {
        /* DA3's depths stay in the device's memory: copied into the buffer depth and the new spatial-memory slots */
        window_take wt = {.d = d, .fids = fids, .n = n, .L = L};
        st = lyra_ar_da3_window(r->depth_model, d->vb, &u8, w2c, K, take_window_depth, &wt);
        goto done;
    }
    st = r->depth_window(r->depth_ctx, n, img, w2c, K, d->H, d->W, depth);
    if (st != LYRA_OK) goto done;
    for (int i = 0; i < n; i++) {
        const float *di = depth + (int64_t)i * d->HW;
        if (fids[i] == L) {
            lyra_tensor t = vb_tensor(d, d->buffer_depth, 2, nhw, "buffer depth");
            lyra_tensor h = lyra_tensor_make((void *)di, LYRA_DTYPE_F32, 2, nhw);
            h.name = t.name;
            if ((st = lyra_op_upload(d->vb, &t, &h)) != LYRA_OK) goto done;
        }
        /* Insert every 8th frame not cached yet, with the pipeline's (not DA3's) camera (AR:1274-1348). */
        if ((fids[i] == 0 || fids[i] % LYRA_AR_DEPTH_INTERVAL == 0) && lyra_scache_find(&d->cache, fids[i]) < 0)
            if ((st = cache_add(d, di, fids[i])) != LYRA_OK) goto done;
    }
done:
    free(img);
    free(w2c);
    free(K);
    free(depth);
    r->timings.depth += now() - t0;
    return st;
}

/* The chunk's y and buffer in the DiT's memory, from the chunk's prep until its sampling is done (release_scratch
 * gives them back; the layout's T slots every chunk). */
static lyra_status cond_buffers(driver *d) {
    const int64_t T = d->fp->n_total, hw = d->hw;
    if (!d->y && !(d->y = dev_alloc_as(d->be, (LYRA_PREP_MASK_CHANNELS + d->C + LYRA_PREP_RAY_CHANNELS) * T * hw,
                                       d->cond_dtype, "the condition")))
        return LYRA_ERR_OOM;
    if (!d->buf && !(d->buf = dev_alloc_as(d->be, (int64_t)LYRA_PREP_SLOT_CHANNELS * d->S * T * hw, d->cond_dtype,
                                           "the correspondence buffer")))
        return LYRA_ERR_OOM;
    return LYRA_OK;
}

/* ---- one chunk (upstream AR:817-1066) ---- */

static lyra_status run_chunk(driver *d, int a) {
    lyra_ar_run *r = d->r;
    const int64_t T = d->fp->n_total, Ty = LYRA_PREP_MASK_CHANNELS + d->C + LYRA_PREP_RAY_CHANNELS;
    const int64_t t_hist_total = d->n_latents, base = (int64_t)d->F * a;
    lyra_status st = LYRA_OK;
    const int64_t Tb = (int64_t)LYRA_PREP_SLOT_CHANNELS * d->S;
    float *gen = malloc(sizeof(float) * (size_t)(d->C * d->G * d->hw)), *renoise = NULL; /* host noise */
    lyra_prep_args *pa = calloc(1, sizeof *pa);
    if (!gen || !pa) {
        st = lyra_error(LYRA_ERR_OOM, "chunk %d: out of memory for the network inputs", a);
        goto done;
    }
    if (!d->frames[base]) {
        st = lyra_error(LYRA_ERR_INTERNAL, "chunk %d: the buffer frame %lld was not kept", a, (long long)base);
        goto done;
    }
    /* CLIP of the last history frame (upstream M:568-671, CONDM:462-486, CL2:37-55), copied from vb's memory */
    double t0 = now();
    {
        const int64_t nf[4] = {1, 3, d->H, d->W}, nc[3] = {1, d->m->clip.cfg.tokens, d->m->clip.cfg.width};
        lyra_tensor tf = dev_tensor(d, d->frame, 4, nf, "clip frame"), tc = dev_tensor(d, d->clip, 3, nc, "clip tokens");
        lyra_tensor src = vb_tensor(d, d->frames[base], 4, nf, "buffer frame");
        if ((st = lyra_op_synchronize(d->vb)) != LYRA_OK || (st = lyra_op_copy(d->be, &tf, &src)) != LYRA_OK) goto done;
        if ((st = lyra_ar_encode_image(d->m, &tf, &tc)) != LYRA_OK) goto done;
    }
    r->timings.clip += now() - t0;
    if ((st = check_stop(d)) != LYRA_OK) goto done;

    /* inputs (upstream M:1488-1493, M:1495-1523, M:2024-2033, M:1955-1999), built on vb straight into the DiT's
     * buffers (y and the buffer allocated for this chunk in cond_dtype, which the prep writes, rounding once); x's
     * history frames are the sampler's initial state there */
    t0 = now();
    if ((st = cond_buffers(d)) != LYRA_OK) goto done;
    {
        const int64_t nh[4] = {t_hist_total, d->C, d->h, d->w}, nx[4] = {d->C, T, d->h, d->w};
        const int64_t ny[4] = {Ty, T, d->h, d->w}, nb[4] = {Tb, T, d->h, d->w}, nw[4] = {d->F, d->H, d->W, 3};
        lyra_tensor th = vb_tensor(d, d->latents, 4, nh, "history latents");
        lyra_tensor tx = dev_tensor(d, d->x, 4, nx, "chunk latent x");
        lyra_tensor ty = dev_tensor_as(d, d->y, d->cond_dtype, 4, ny, "condition y");
        lyra_tensor tb = dev_tensor_as(d, d->buf, d->cond_dtype, 4, nb, "correspondence buffer");
        lyra_tensor tw = lyra_tensor_make(d->warp_u8, LYRA_DTYPE_U8, 4, nw);
        tw.device = d->vb->device;
        tw.name = "warp frames";
        *pa = (lyra_prep_args){
            .be = d->vb, .fp = d->fp, .height = d->H, .width = d->W, .latent_c = d->C, .chunk = a, .history = &th,
            .t_hist_total = t_hist_total, .frames = d->frames, .w2c = r->w2c, .K = r->K,
            .buffer_depth = d->buffer_depth, .cache = &d->cache, .cache_depth = d->cache_depth, .canon = d->canon,
            .warp_chunk = r->warp_chunk, .encoder = {fresh_begin, fresh_push, fresh_end, d}, .x = &tx, .y = &ty,
            .buffer = &tb,
            .warp_u8 = r->out_warp ? &tw : NULL,
        };
        if ((st = lyra_prep_chunk(pa)) != LYRA_OK) goto done;
        if ((st = lyra_op_synchronize(d->vb)) != LYRA_OK) goto done; /* the DiT's stream reads x, y and the buffer */
        if (r->out_warp) {
            lyra_tensor hw = lyra_tensor_make(r->out_warp + (base + 1) * 3 * d->HW, LYRA_DTYPE_U8, 4, nw);
            hw.name = tw.name;
            if ((st = lyra_op_download(d->vb, &hw, &tw)) != LYRA_OK) goto done;
        }
    }
    r->timings.prep += now() - t0;
    logf_(d, "%s chunk %d/%d: %d spatial-memory frame(s) retrieved", r->label ? r->label : "generate", a + 1,
          d->n_chunks, pa->n_retrieved);

    /* sampling (upstream M:568-671, CONDM:462-486, CL2:37-55, M:693-853), on the DiT's backend: the state x, the
     * velocities and the sampler's history stay in its memory (lyra_unipc_run, lyra_dmd_run). The noise is drawn
     * here on the host, all of the chunk's at once, and uploaded: the numpy-legacy MT19937 stream (sample/rng.h) is
     * sequential, and it makes the run reproducible, seedable and equal to golden/sampler.npz. What crosses is the
     * initial noise (C·G·h·w f32 once) and, on the DMD path, the generated frames' part of each re-noise block (the
     * same size, 3 steps): 4 × 8.0 MB per chunk at 480p, negligible beside the DiT's forward. */
    lyra_latent_shape shape = {d->C, d->n_hist0, d->G, d->h, d->w};
    const int64_t n_state = lyra_latent_numel(&shape);
    lyra_rng rng;
    lyra_rng_seed(&rng, r->seed + (uint32_t)a);
    lyra_rng_fill_normal_f32(&rng, gen, d->C * d->G * d->hw);
    if (r->use_dmd) {
        /* ε_0..2, [T, C, h, w] each, continuing the stream after the initial noise (sample/dmd.h) */
        if (!(renoise = malloc(sizeof(float) * (size_t)((LYRA_DMD_STEPS - 1) * n_state)))) {
            st = lyra_error(LYRA_ERR_OOM, "chunk %d: out of host memory for the re-noise blocks", a);
            goto done;
        }
        lyra_rng_fill_normal_f32(&rng, renoise, (LYRA_DMD_STEPS - 1) * n_state);
    }
    dit_ctx cond = {d, d->texts + (int64_t)a * LYRA_AR_TEXT_LEN * d->m->text_dim}, uncond = {d, d->m->negative};
    d->calls_done = 0;
    if (r->use_dmd) {
        if (d->m->dmd_adapter >= 0) d->m->dit.adapters[d->m->dmd_adapter].weight = 1.0f; /* else folded */
        d->calls_total = LYRA_DMD_STEPS;
        st = lyra_dmd_run(d->be, &shape, d->x, d->work, gen, &rng, renoise, dit_denoise, &cond, NULL);
    } else {
        if (d->m->dmd_adapter >= 0) d->m->dit.adapters[d->m->dmd_adapter].weight = 0.0f;
        d->calls_total = 2 * r->num_steps;
        lyra_cfg_tensor cfg = {d->be, dit_denoise, &cond, dit_denoise, &uncond, r->guidance,
                               d->work + lyra_unipc_work_numel(&shape)};
        st = lyra_unipc_run(d->be, &shape, r->num_steps, r->shift, d->x, d->work, gen, lyra_cfg_tensor_denoise, &cfg,
                            NULL);
    }
    /* the decoder (vb) reads x's generated frames in the DiT's memory */
    if (st != LYRA_OK || (st = lyra_op_synchronize(d->be)) != LYRA_OK || (st = release_scratch(d)) != LYRA_OK)
        goto done;

    /* decode (upstream AR:989-1057, AR:98-198): the chunk's latents one at a time through the persistent decoder,
     * never clamped, then the re-encode of the decoded frames, 4 at a time, as history (the re-encoded latents, not
     * the sampled ones), in upstream's order: one stream's activations on the device at a time (vae_phase; the
     * other's caches wait in host memory when the run parks them). Each latent's frames are decoded into d->pix (vb's
     * memory), made uint8 there (only those come down), copied out where a later step reads them (the kept frames),
     * and copied into d->chunk_pix, the whole chunk in the VAE's activation dtype, which the re-encode reads: the
     * encoder rounds its input to that dtype anyway, so the latents are the ones the f32 frames give. */
    d->pending_update = a + 1;
    if ((st = vae_phase(d, d->dec)) != LYRA_OK) goto done;
    const lyra_dtype act = lyra_vae_precision(d->m->vae);
    const int64_t per_latent = 3 * (int64_t)LYRA_PREP_FRAMES_PER_LATENT * d->HW;
    const int64_t np[5] = {1, 3, LYRA_PREP_FRAMES_PER_LATENT, d->H, d->W};
    if (!(d->chunk_pix = dev_alloc_as(d->vb, per_latent * d->G, act, "the chunk's decoded frames"))) {
        st = LYRA_ERR_OOM;
        goto done;
    }
    for (int j = 0; j < d->G; j++) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        t0 = now();
        /* generated latent j: frame n_hist0 + j of x (1, C, T, h, w) in the DiT's memory, a strided view */
        const int64_t nx5[5] = {1, d->C, T, d->h, d->w};
        lyra_tensor x5 = dev_tensor(d, d->x, 5, nx5, "generated latent"), z;
        lyra_tensor keep = vb_tensor(d, d->pix, 5, np, "decoded frames");
        if ((st = lyra_tensor_slice(&z, &x5, 2, d->n_hist0 + j, d->n_hist0 + j + 1)) != LYRA_OK ||
            (st = decode_push(d, &z, &keep)) != LYRA_OK)
            goto done;
        if ((st = lyra_op_synchronize(lyra_vae_session_backend(d->dec))) != LYRA_OK) goto done;
        const int64_t f0 = base + 1 + (int64_t)LYRA_PREP_FRAMES_PER_LATENT * j;
        lyra_tensor fr; /* (4, 3, H, W): frame i, channel c at (c·4 + i)·HW */
        const int perm[4] = {1, 0, 2, 3};
        const int64_t n4[4] = {3, LYRA_PREP_FRAMES_PER_LATENT, d->H, d->W};
        lyra_tensor k4 = vb_tensor(d, d->pix, 4, n4, "decoded frames");
        if ((st = lyra_tensor_permute(&fr, &k4, perm)) != LYRA_OK) goto done;
        if ((st = frames_u8(d, &fr, LYRA_U8_VIDEO, r->out_frames + f0 * 3 * d->HW, "video frames")) != LYRA_OK)
            goto done;
        for (int i = 0; i < LYRA_PREP_FRAMES_PER_LATENT; i++) {
            const int64_t f = f0 + i;
            if (!frame_needed(d, f, a + 1)) continue;
            if (!(d->frames[f] = dev_alloc(d->vb, 3 * d->HW, "a kept frame"))) {
                st = LYRA_ERR_OOM;
                goto done;
            }
            lyra_tensor src, dst = frame_tensor(d, f);
            if ((st = lyra_tensor_select(&src, &fr, 0, i)) != LYRA_OK || (st = lyra_op_copy(d->vb, &dst, &src)) != LYRA_OK)
                goto done;
        }
        lyra_tensor blk = chunk_block(d, j);
        if ((st = lyra_op_copy(d->vb, &blk, &keep)) != LYRA_OK) goto done;
        r->timings.decode += now() - t0;
    }
    t0 = now();
    if ((st = vae_phase(d, d->enc)) != LYRA_OK) goto done;
    for (int j = 0; j < d->G; j++) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        const int64_t nl[3] = {d->C, d->h, d->w};
        lyra_tensor blk = chunk_block(d, j);
        lyra_tensor out = vb_tensor(d, d->latents + (d->n_latents + j) * d->C * d->hw, 3, nl, "history latent");
        if ((st = encode_dev(d, d->enc, &blk, &out)) != LYRA_OK) goto done;
    }
    r->timings.reencode += now() - t0;
    d->n_latents += d->G;
    if ((st = lyra_op_synchronize(d->vb)) != LYRA_OK) goto done; /* the re-encode read the block */
    dev_release(d->vb, d->chunk_pix);
    d->chunk_pix = NULL;
    if ((st = release_scratch(d)) != LYRA_OK) goto done;

    /* depth window (upstream AR:1059-1060, AR:1071-1393, AR:261-366), not after the last chunk */
    if (a + 1 < d->n_chunks) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        st = update_depth(d, (int64_t)d->F * (a + 1));
        d->pending_update = a + 2;
    }
    prune_frames(d, a + 1);
done:
    free(gen);
    free(renoise);
    free(pa);
    return st;
}

/* The run's buffers in the DiT's memory (sizes fixed for the run: the layout's T slots every chunk); y and the
 * buffer live per chunk (cond_buffers). */
static lyra_status dev_buffers(driver *d) {
    const int64_t T = d->fp->n_total, hw = d->hw;
    struct { float **p; int64_t n; const char *what; } b[] = {
        {&d->texts, (int64_t)d->n_chunks * LYRA_AR_TEXT_LEN * d->m->text_dim, "the caption embeddings"},
        {&d->clip, (int64_t)d->m->clip.cfg.tokens * d->m->clip.cfg.width, "the CLIP tokens"},
        {&d->frame, 3 * d->HW, "the CLIP frame"},
        {&d->x, d->C * T * hw, "the latent"},
        {&d->work, lyra_ar_sampler_work_numel(d->C, d->n_hist0, d->G, d->h, d->w, d->r->use_dmd),
         "the sampler's state"},
    };
    for (size_t i = 0; i < sizeof b / sizeof *b; i++)
        if (!(*b[i].p = dev_alloc(d->be, b[i].n, b[i].what))) return LYRA_ERR_OOM;
    d->cond_dtype = d->be->device == LYRA_DEVICE_CPU ? LYRA_DTYPE_F32 : d->m->dit.act_dtype;
    return LYRA_OK;
}

int64_t lyra_ar_sampler_work_numel(int64_t c, int64_t t_hist, int64_t t_new, int64_t h, int64_t w, int use_dmd) {
    const lyra_latent_shape shape = {c, t_hist, t_new, h, w};
    return use_dmd ? lyra_dmd_work_numel(&shape) : lyra_unipc_work_numel(&shape) + lyra_latent_gen_numel(&shape);
}

static lyra_status check_run(const lyra_ar_run *r) {
    const lyra_framepack *fp = &r->models->dit.fp;
    const int F = 4 * fp->n_new;
    if (r->height < 16 || r->width < 16 || r->height % 16 || r->width % 16)
        return lyra_error(LYRA_ERR_ARG, "image size %dx%d: height and width must be multiples of 16", r->height,
                          r->width);
    if (r->num_frames < 1 + F || (r->num_frames - 1) % F)
        return lyra_error(LYRA_ERR_ARG, "num_frames %lld: must be 1 + %d·k with k >= 1 (%d frames per chunk)",
                          (long long)r->num_frames, F, F);
    /* folded LoRAs: the DMD LoRA is in the weights, or not */
    if (r->models->folded_dmd >= 0 && r->models->folded_dmd != !!r->use_dmd)
        return lyra_error(LYRA_ERR_ARG, "use_dmd=%s: the DiT's LoRAs were folded into its weights for use_dmd=%s (at "
                          "placement, or for fp8); load the models again", r->use_dmd ? "True" : "False",
                          r->models->folded_dmd ? "True" : "False");
    if (r->use_dmd && r->models->dmd_adapter < 0 && r->models->folded_dmd != 1)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "use_dmd: the checkpoint folder has no DMD LoRA (lora_dmd.safetensors);"
                          " pass use_dmd=False or convert the LoRA");
    if (!r->use_dmd && (r->num_steps < 1 || r->num_steps > LYRA_FLOW_MAX_STEPS))
        return lyra_error(LYRA_ERR_ARG, "num_inference_steps %d: must be in [1, %d]", r->num_steps, LYRA_FLOW_MAX_STEPS);
    if (fp->n_spatial < 1)
        return lyra_error(LYRA_ERR_ARG, "the DiT layout has no spatial slot; Lyra-2 needs spatial memory");
    return LYRA_OK;
}

lyra_status lyra_ar_generate(lyra_ar_run *r) {
    LYRA_TRY(check_run(r));
    driver D, *d = &D;
    memset(d, 0, sizeof D);
    d->r = r;
    d->m = r->models;
    d->be = lyra_ar_backend(d->m); /* until the placement below */
    d->fp = &d->m->dit.fp;
    d->H = r->height;
    d->W = r->width;
    d->h = r->height / 8;
    d->w = r->width / 8;
    d->HW = (int64_t)d->H * d->W;
    d->hw = (int64_t)d->h * d->w;
    d->C = d->m->dit.cfg.out_dim;
    d->G = d->fp->n_new;
    d->F = 4 * d->G;
    d->S = d->fp->n_spatial;
    d->n_hist0 = d->fp->n_history;
    d->n_chunks = (int)((r->num_frames - 1) / d->F);
    if (r->warp_chunk <= 0) r->warp_chunk = LYRA_AR_WARP_CHUNK;
    memset(&r->timings, 0, sizeof r->timings);
    lyra_status st = LYRA_OK;
    d->frames = calloc((size_t)r->num_frames, sizeof *d->frames);
    if (!d->frames) {
        st = lyra_error(LYRA_ERR_OOM, "generate: out of memory for the %dx%d history", d->H, d->W);
        goto done;
    }

    /* Text once before the loop, each distinct caption once (upstream M:568-671, CONDM:462-486, CL2:37-55), before
     * the models are placed: on a device umT5 runs alone and is freed (lyra_ar_encode_texts). */
    double t0 = now();
    {
        const int64_t per = (int64_t)LYRA_AR_TEXT_LEN * d->m->text_dim;
        float *texts = malloc(sizeof(float) * (size_t)(d->n_chunks * per));
        int n_encoded = 0;
        st = texts ? lyra_ar_encode_texts(d->m, r->device, r->policy, d->n_chunks, r->captions, texts, &n_encoded)
                   : lyra_error(LYRA_ERR_OOM, "generate: out of memory for the caption embeddings");
        if (st == LYRA_OK && r->device != LYRA_DEVICE_CPU) {
            if (n_encoded) logf_(d, "text: %d new caption(s) through umT5 on the device (loaded for them, then freed)",
                                 n_encoded);
            else logf_(d, "text: every caption embedded before (cached), umT5 not loaded");
        }
        if (st == LYRA_OK) st = lyra_ar_models_place(d->m, r->device, r->policy, r->use_dmd);
        d->be = lyra_ar_backend(d->m);
        if (st == LYRA_OK) logf_(d, "generate: networks on the %s backend", d->be->ops->name);
        if (st == LYRA_OK) st = dev_buffers(d);
        if (st == LYRA_OK) {
            const int64_t nt[3] = {d->n_chunks, LYRA_AR_TEXT_LEN, d->m->text_dim};
            lyra_tensor t = dev_tensor(d, d->texts, 3, nt, "text embeddings");
            st = upload(d, &t, texts);
        }
        free(texts);
        if (st != LYRA_OK) goto done;
    }
    r->timings.text += now() - t0;

    if ((st = check_stop(d)) != LYRA_OK) goto done;
    if ((st = prime(d)) != LYRA_OK) goto done;
    for (int a = 0; a < d->n_chunks; a++) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        if ((st = run_chunk(d, a)) != LYRA_OK) goto done;
        if (r->progress) r->progress(r->report_ctx, r->label ? r->label : "generate", a + 1, d->n_chunks);
    }
done:
    prep_buffers_free(d);
    free(d->frames);
    free(d->cache_depth);
    dev_free(d->be, &d->texts);
    dev_free(d->be, &d->clip);
    dev_free(d->be, &d->frame);
    dev_free(d->be, &d->x);
    dev_release(d->be, d->y);
    dev_release(d->be, d->buf);
    dev_free(d->be, &d->work);
    if (d->dec) dev_free(lyra_vae_session_backend(d->dec), &d->pix);
    if (d->dec) dev_release(lyra_vae_session_backend(d->dec), d->chunk_pix);
    lyra_vae_session_free(d->fresh);
    if (d->enc) lyra_vae_session_free(d->enc);
    if (d->dec) lyra_vae_session_free(d->dec);
    r->timings.cache_frames = d->cache.n;
    lyra_scache_free(&d->cache);
    return st;
}
