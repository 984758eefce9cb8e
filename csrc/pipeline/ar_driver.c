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
    float **frames;         /* (num_frames) pixel frames (3, H, W); NULL until generated */
    float *latents;         /* (n_hist0 + G·k, C, h, w) history latents, frame-major */
    int64_t n_latents;
    lyra_vae_session *enc, *dec;
    lyra_scache cache;
    float *buffer_depth;    /* (H, W) */
    /* The DiT's inputs live where it runs (lyra_ar_backend: host memory on the CPU, the device pool after
     * placement); each is written once per run, chunk or network call, see dev_buffers. */
    lyra_backend *be;
    float *texts;           /* (k, 512, text_dim): per-chunk caption embeddings (once per run) */
    float *clip;            /* (tokens, clip width): CLIP of the chunk's last history frame (once per chunk) */
    float *frame;           /* (3, H, W): that frame, the CLIP input */
    float *x;               /* the chunk's latent (per network call) */
    /* The chunk's conditioning y and correspondence buffer (once per chunk), stored as cond_dtype: bf16 where the
     * DiT keeps bf16 activations, as upstream holds its assembled inputs in bf16 on the GPU (the VAE latents and the
     * Plücker rays cast to the video's bf16, upstream M:196, M:1171-1173, M:1888; the buffer to cond_latent's dtype,
     * M:2211-2214, M:2242, M:2262); f32 on the CPU and in the f32 parity mode. */
    void *y, *buf;
    lyra_dtype cond_dtype;
    float *v;               /* (C, G, h, w): the velocity of one network call */
    float *pix;             /* (3, 4, H, W) in the VAE's memory: one latent's decoded frames (downloaded from there) */
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

/* Packs frames[0..n) (3, H, W) into x (1, 3, n, H, W). */
static void pack_video(const float *const *frames, int n, int64_t HW, float *x) {
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < n; t++) memcpy(x + ((int64_t)c * n + t) * HW, frames[t] + c * HW, sizeof(float) * (size_t)HW);
}

/* One encoder push of x (1, 3, n, H, W), host frames -> L latents, normalised, written frame-major to out
 * (L, C, h, w). */
static lyra_status encode_tensor(driver *d, lyra_vae_session *s, const lyra_tensor *x, float *out) {
    int64_t L = 0;
    LYRA_TRY(lyra_vae_session_out_frames(s, x->ne[2], &L));
    float *mu = malloc(sizeof(float) * (size_t)(d->C * L * d->hw));
    if (!mu) return lyra_error(LYRA_ERR_OOM, "VAE encode: out of memory");
    lyra_tensor tm = lyra_tensor_5d(mu, LYRA_DTYPE_F32, 1, d->C, L, d->h, d->w);
    lyra_status st = lyra_vae_encode_push(s, x, &tm);
    if (st == LYRA_OK) st = lyra_vae_normalize(&tm, LYRA_VAE_CONST_BF16);
    if (st == LYRA_OK)
        for (int64_t l = 0; l < L; l++)
            for (int c = 0; c < d->C; c++)
                memcpy(out + (l * d->C + c) * d->hw, mu + ((int64_t)c * L + l) * d->hw, sizeof(float) * (size_t)d->hw);
    free(mu);
    return st;
}

/* One encoder push of host frames[0..n) (3, H, W) -> L latents, frame-major to out (L, C, h, w). */
static lyra_status encode_push(driver *d, lyra_vae_session *s, const float *const *frames, int n, float *out) {
    float *x = malloc(sizeof(float) * (size_t)(3 * n * d->HW));
    if (!x) return lyra_error(LYRA_ERR_OOM, "VAE encode: out of memory");
    pack_video(frames, n, d->HW, x);
    lyra_tensor tx = lyra_tensor_5d(x, LYRA_DTYPE_F32, 1, 3, n, d->H, d->W);
    lyra_status st = encode_tensor(d, s, &tx, out);
    free(x);
    return st;
}

/* The prep's fresh encode: video (T, 3, H, W) -> latents (C, 1 + (T−1)/4, h, w), frame 0 alone then windows of
 * 4 through a new encoder stream (the Wan encode upstream's model.encode runs). */
static lyra_status fresh_encode(void *ctx, const float *video, int64_t T, int height, int width, float *latents) {
    driver *d = ctx;
    (void)height;
    (void)width;
    const int64_t L = 1 + (T - 1) / 4;
    lyra_vae_session *s = NULL;
    LYRA_TRY(lyra_vae_session_new(&s, d->m->vae, 0, d->m->n_threads));
    float *fm = malloc(sizeof(float) * (size_t)(L * d->C * d->hw));
    lyra_status st = fm ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "VAE encode: out of memory");
    for (int64_t t = 0; st == LYRA_OK && t < T;) {
        int n = t == 0 ? 1 : 4;
        const float *fr[4];
        for (int i = 0; i < n; i++) fr[i] = video + (t + i) * 3 * d->HW;
        st = encode_push(d, s, fr, n, fm + (t == 0 ? 0 : (1 + (t - 1) / 4)) * d->C * d->hw);
        t += n;
    }
    if (st == LYRA_OK)
        for (int64_t l = 0; l < L; l++)
            for (int c = 0; c < d->C; c++)
                memcpy(latents + ((int64_t)c * L + l) * d->hw, fm + (l * d->C + c) * d->hw, sizeof(float) * (size_t)d->hw);
    free(fm);
    lyra_vae_session_free(s);
    return st;
}

/* Decodes one normalised latent (C, h, w) through the persistent decoder: frames out[0..n) (3, H, W) or NULL
 * (priming discards them). With `keep` (1, 3, 4, H, W) in the VAE's memory the frames are decoded there (and
 * downloaded for out), so the re-encode reads them without another upload. */
static lyra_status decode_push(driver *d, const float *latent, float **out, int *n_out, lyra_tensor *keep) {
    int64_t T = 0;
    LYRA_TRY(lyra_vae_session_out_frames(d->dec, 1, &T));
    float *z = malloc(sizeof(float) * (size_t)(d->C * d->hw));
    float *v = malloc(sizeof(float) * (size_t)(3 * T * d->HW));
    lyra_status st = LYRA_OK;
    if (!z || !v) {
        st = lyra_error(LYRA_ERR_OOM, "VAE decode: out of memory");
        goto done;
    }
    memcpy(z, latent, sizeof(float) * (size_t)(d->C * d->hw));
    lyra_tensor tz = lyra_tensor_5d(z, LYRA_DTYPE_F32, 1, d->C, 1, d->h, d->w);
    lyra_tensor tv = lyra_tensor_5d(v, LYRA_DTYPE_F32, 1, 3, T, d->H, d->W);
    if (keep && (keep->ne[2] != T || T > LYRA_PREP_FRAMES_PER_LATENT)) {
        st = lyra_error(LYRA_ERR_INTERNAL, "decode: %lld frames from one latent, expected %lld", (long long)T,
                        (long long)keep->ne[2]);
        goto done;
    }
    if ((st = lyra_vae_denormalize(&tz, LYRA_VAE_CONST_BF16)) != LYRA_OK) goto done;
    if ((st = lyra_vae_decode_push(d->dec, &tz, keep ? keep : &tv)) != LYRA_OK) goto done;
    if (keep && out) {
        tv.name = "decoded frames";
        if ((st = lyra_op_download(lyra_vae_session_backend(d->dec), &tv, keep)) != LYRA_OK) goto done;
    }
    if (out)
        for (int64_t t = 0; t < T; t++)
            for (int c = 0; c < 3; c++) memcpy(out[t] + c * d->HW, v + ((int64_t)c * T + t) * d->HW, sizeof(float) * (size_t)d->HW);
    if (n_out) *n_out = (int)T;
done:
    free(z);
    free(v);
    return st;
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

/* ---- state initialisation (upstream AR:469-677) ---- */

static lyra_status prime(driver *d) {
    lyra_ar_run *r = d->r;
    double t0 = now();
    LYRA_TRY(lyra_vae_session_new(&d->enc, d->m->vae, 0, d->m->n_threads));
    LYRA_TRY(lyra_vae_session_new(&d->dec, d->m->vae, 1, d->m->n_threads));
    lyra_backend *vb = lyra_vae_session_backend(d->dec);
    if (!(d->pix = dev_alloc(vb, 3 * LYRA_PREP_FRAMES_PER_LATENT * d->HW, "the decoded frames"))) return LYRA_ERR_OOM;
    /* The image repeated 4(n_hist0 − 1) + 1 times through the encoder stream: alone, then groups of 4. */
    const float *fr[4] = {d->frames[0], d->frames[0], d->frames[0], d->frames[0]};
    LYRA_TRY(encode_push(d, d->enc, fr, 1, d->latents));
    for (int l = 1; l < d->n_hist0; l++) {
        LYRA_TRY(check_stop(d));
        LYRA_TRY(encode_push(d, d->enc, fr, 4, d->latents + (int64_t)l * d->C * d->hw));
    }
    d->n_latents = d->n_hist0;
    /* Decoder priming with those latents, output discarded (AR:517-527): decoded into the VAE's memory and left
     * there. */
    LYRA_TRY(vae_phase(d, d->dec));
    for (int l = 0; l < d->n_hist0; l++) {
        LYRA_TRY(check_stop(d));
        int64_t T = 0;
        LYRA_TRY(lyra_vae_session_out_frames(d->dec, 1, &T));
        const int64_t np[5] = {1, 3, T, d->H, d->W};
        lyra_tensor keep = lyra_tensor_make(d->pix, LYRA_DTYPE_F32, 5, np);
        keep.device = vb->device;
        keep.name = "decoded frames";
        LYRA_TRY(decode_push(d, d->latents + (int64_t)l * d->C * d->hw, NULL, NULL, &keep));
    }
    LYRA_TRY(lyra_scache_init(&d->cache, d->H, d->W));
    LYRA_TRY(lyra_scache_add(&d->cache, r->depth, r->w2c, r->K, 0, 0));
    memcpy(d->buffer_depth, r->depth, sizeof(float) * (size_t)d->HW);
    LYRA_TRY(release_scratch(d));
    r->timings.prime += now() - t0;
    return LYRA_OK;
}

/* ---- the network as the sampler's denoiser ---- */

typedef struct dit_ctx {
    driver *d;
    float *text;            /* (512, text_dim) in d->be's memory: the caption's or the negative prompt's */
} dit_ctx;

/* One network call: the sampler's latent (host, a few MB) goes up, the velocity comes back; the conditioning
 * (y, buffer, text, CLIP) is already in the DiT's memory. */
static lyra_status dit_denoise(void *ctx, const lyra_latent_shape *shape, const float *x, float t, float *v_out) {
    dit_ctx *c = ctx;
    driver *d = c->d;
    LYRA_TRY(check_stop(d));
    const int64_t T = shape->t_hist + shape->t_new;
    const lyra_dit_config *cfg = &d->m->dit.cfg;
    const int64_t nx[5] = {1, d->C, T, d->h, d->w}, ny[5] = {1, LYRA_PREP_MASK_CHANNELS + d->C + LYRA_PREP_RAY_CHANNELS, T, d->h, d->w};
    const int64_t nb[5] = {1, (int64_t)LYRA_PREP_SLOT_CHANNELS * d->S, T, d->h, d->w};
    const int64_t nt[3] = {1, LYRA_AR_TEXT_LEN, cfg->text_dim}, nc[3] = {1, d->m->clip.cfg.tokens, d->m->clip.cfg.width};
    const int64_t nv[5] = {1, d->C, shape->t_new, d->h, d->w};
    lyra_tensor tx = dev_tensor(d, d->x, 5, nx, "latent x"), ty = dev_tensor_as(d, d->y, d->cond_dtype, 5, ny, "condition y");
    lyra_tensor tb = dev_tensor_as(d, d->buf, d->cond_dtype, 5, nb, "correspondence buffer");
    lyra_tensor tt = dev_tensor(d, c->text, 3, nt, "text embedding"), tc = dev_tensor(d, d->clip, 3, nc, "clip tokens");
    lyra_tensor to = dev_tensor(d, d->v, 5, nv, "velocity");
    lyra_dit_inputs in = {&tx, (double)t, &tt, &tc, &ty, &tb};
    double t0 = now();
    lyra_status st = upload(d, &tx, x);
    if (st == LYRA_OK) st = lyra_dit_forward(&d->m->dit, &in, &to, NULL, NULL);
    if (st == LYRA_OK) {
        lyra_tensor h = lyra_tensor_make(v_out, LYRA_DTYPE_F32, 5, nv);
        h.name = "velocity";
        st = lyra_op_download(d->be, &h, &to);
    }
    d->r->timings.dit += now() - t0;
    d->r->timings.dit_calls++;
    d->calls_done++;
    if (d->r->progress) d->r->progress(d->r->report_ctx, "denoise", d->calls_done, d->calls_total);
    return st;
}

/* ---- outputs ---- */

/* (3, H, W) in [−1, 1] -> (H, W, 3) uint8: (clamp(x, −1, 1) + 1) / 2 · 255 truncated (VID:45-97). */
static void to_u8(const float *f, int64_t HW, uint8_t *out) {
    for (int64_t i = 0; i < HW; i++)
        for (int c = 0; c < 3; c++) {
            float v = f[c * HW + i];
            v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
            out[3 * i + c] = (uint8_t)(((v + 1.0f) / 2.0f) * 255.0f);
        }
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

static lyra_status update_depth(driver *d, int64_t L) {
    lyra_ar_run *r = d->r;
    double t0 = now();
    lyra_status st = LYRA_OK;
    if (!r->depth_window) {
        /* No depth model: keep the cache at frame 0 and re-render frame 0's depth into the new buffer camera. */
        if (!d->depth_logged)
            logf_(d, "no depth model for the window updates (DA3): using the first-frame depth only, re-rendered "
                     "into each chunk's buffer camera; spatial memory keeps frame 0 only");
        d->depth_logged = 1;
        float *img = malloc(sizeof(float) * (size_t)d->HW), *mask = malloc(sizeof(float) * (size_t)d->HW);
        if (!img || !mask) {
            free(img);
            free(mask);
            return lyra_error(LYRA_ERR_OOM, "depth update: out of memory");
        }
        memset(img, 0, sizeof(float) * (size_t)d->HW);
        lyra_warp_forward_args wa = {
            .channels = 1, .height = d->H, .width = d->W, .n_targets = 1, .image = img, .depth = r->depth,
            .src_w2c = r->w2c, .src_K = r->K, .tgt_w2c = r->w2c + 16 * L, .tgt_K = r->K + 9 * L, .clean_points = 1,
            .out_image = img, .out_mask = mask, .out_depth = d->buffer_depth,
        };
        st = lyra_warp_forward(&wa);
        free(img);
        free(mask);
        r->timings.depth += now() - t0;
        return st;
    }
    int64_t fids[LYRA_AR_DEPTH_WINDOW];
    int n = 0;
    for (int k = LYRA_AR_DEPTH_WINDOW - 1; k >= 0; k--) /* ascending: L − 8k, f >= 0 (AR:294-311) */
        if (L - (int64_t)LYRA_AR_DEPTH_INTERVAL * k >= 0) fids[n++] = L - (int64_t)LYRA_AR_DEPTH_INTERVAL * k;
    uint8_t *img = malloc((size_t)n * 3 * d->HW);
    float *w2c = malloc(sizeof(float) * 16 * n), *K = malloc(sizeof(float) * 9 * n);
    float *depth = malloc(sizeof(float) * (size_t)(n * d->HW));
    if (!img || !w2c || !K || !depth) {
        st = lyra_error(LYRA_ERR_OOM, "depth update: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        /* (x·0.5 + 0.5).clamp(0, 1)·255 + 0.5, truncated (AR:325-328) */
        const float *f = d->frames[fids[i]];
        uint8_t *o = img + (int64_t)i * 3 * d->HW;
        for (int64_t p = 0; p < d->HW; p++)
            for (int c = 0; c < 3; c++) {
                float v = f[c * d->HW + p] * 0.5f + 0.5f;
                v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
                o[3 * p + c] = (uint8_t)(v * 255.0f + 0.5f);
            }
        memcpy(w2c + 16 * i, r->w2c + 16 * fids[i], sizeof(float) * 16);
        memcpy(K + 9 * i, r->K + 9 * fids[i], sizeof(float) * 9);
    }
    pose_alignment_offsets(w2c, n);
    if ((st = r->depth_window(r->depth_ctx, n, img, w2c, K, d->H, d->W, depth)) != LYRA_OK) goto done;
    for (int i = 0; i < n; i++) {
        const float *di = depth + (int64_t)i * d->HW;
        if (fids[i] == L) memcpy(d->buffer_depth, di, sizeof(float) * (size_t)d->HW);
        /* Insert every 8th frame not cached yet, with the pipeline's (not DA3's) camera (AR:1274-1348). */
        if ((fids[i] == 0 || fids[i] % LYRA_AR_DEPTH_INTERVAL == 0) && lyra_scache_find(&d->cache, fids[i]) < 0)
            if ((st = lyra_scache_add(&d->cache, di, r->w2c + 16 * fids[i], r->K + 9 * fids[i], fids[i], fids[i])) !=
                LYRA_OK)
                goto done;
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
    float *hist = malloc(sizeof(float) * (size_t)(d->C * t_hist_total * d->hw));
    float *x = malloc(sizeof(float) * (size_t)(d->C * T * d->hw));
    float *y = malloc(sizeof(float) * (size_t)(Ty * T * d->hw));
    float *buf = malloc(sizeof(float) * (size_t)(Tb * T * d->hw));
    float *warp = malloc(sizeof(float) * (size_t)((int64_t)d->F * 3 * d->HW));
    float *gen = malloc(sizeof(float) * (size_t)(d->C * d->G * d->hw));
    float *scratch = malloc(sizeof(float) * (size_t)(d->C * d->G * d->hw));
    lyra_prep_args *pa = calloc(1, sizeof *pa);
    if (!hist || !x || !y || !buf || !warp || !gen || !scratch || !pa) {
        st = lyra_error(LYRA_ERR_OOM, "chunk %d: out of memory for the network inputs", a);
        goto done;
    }
    /* CLIP of the last history frame (upstream M:568-671, CONDM:462-486, CL2:37-55) */
    double t0 = now();
    {
        const int64_t nf[4] = {1, 3, d->H, d->W}, nc[3] = {1, d->m->clip.cfg.tokens, d->m->clip.cfg.width};
        lyra_tensor tf = dev_tensor(d, d->frame, 4, nf, "clip frame"), tc = dev_tensor(d, d->clip, 3, nc, "clip tokens");
        if ((st = upload(d, &tf, d->frames[base])) != LYRA_OK) goto done;
        if ((st = lyra_ar_encode_image(d->m, &tf, &tc)) != LYRA_OK) goto done;
    }
    r->timings.clip += now() - t0;
    if ((st = check_stop(d)) != LYRA_OK) goto done;

    /* inputs (upstream M:1488-1493, M:1495-1523, M:2024-2033, M:1955-1999) */
    t0 = now();
    for (int c = 0; c < d->C; c++)
        for (int64_t l = 0; l < t_hist_total; l++)
            memcpy(hist + ((int64_t)c * t_hist_total + l) * d->hw, d->latents + (l * d->C + c) * d->hw,
                   sizeof(float) * (size_t)d->hw);
    *pa = (lyra_prep_args){
        .fp = d->fp, .height = d->H, .width = d->W, .latent_c = d->C, .chunk = a, .history = hist,
        .t_hist_total = t_hist_total, .frames = (const float *const *)d->frames, .w2c = r->w2c, .K = r->K,
        .buffer_depth = d->buffer_depth, .cache = &d->cache, .warp_chunk = r->warp_chunk, .encode = fresh_encode,
        .encode_ctx = d, .x = x, .y = y, .buffer = buf, .warp_rgb = warp,
    };
    if ((st = lyra_prep_chunk(pa)) != LYRA_OK) goto done;
    {   /* the conditioning, once per chunk (the latent x goes up with every network call) */
        const int64_t ny[4] = {Ty, T, d->h, d->w}, nb[4] = {Tb, T, d->h, d->w};
        if ((st = cond_buffers(d)) != LYRA_OK) goto done;
        lyra_tensor ty = dev_tensor_as(d, d->y, d->cond_dtype, 4, ny, "condition y");
        lyra_tensor tb = dev_tensor_as(d, d->buf, d->cond_dtype, 4, nb, "correspondence buffer");
        if ((st = upload(d, &ty, y)) != LYRA_OK || (st = upload(d, &tb, buf)) != LYRA_OK) goto done;
    }
    r->timings.prep += now() - t0;
    if (r->out_warp)
        for (int f = 0; f < d->F; f++)
            to_u8(warp + (int64_t)f * 3 * d->HW, d->HW, r->out_warp + (base + 1 + f) * 3 * d->HW);
    logf_(d, "%s chunk %d/%d: %d spatial-memory frame(s) retrieved", r->label ? r->label : "generate", a + 1,
          d->n_chunks, pa->n_retrieved);

    /* sampling (upstream M:568-671, CONDM:462-486, CL2:37-55, M:693-853) */
    lyra_latent_shape shape = {d->C, d->n_hist0, d->G, d->h, d->w};
    lyra_rng rng;
    lyra_rng_seed(&rng, r->seed + (uint32_t)a);
    lyra_rng_fill_normal_f32(&rng, gen, d->C * d->G * d->hw);
    lyra_latent_gen_set(&shape, x, gen);
    dit_ctx cond = {d, d->texts + (int64_t)a * LYRA_AR_TEXT_LEN * d->m->text_dim}, uncond = {d, d->m->negative};
    d->calls_done = 0;
    if (r->use_dmd) {
        if (d->m->dmd_adapter >= 0) d->m->dit.adapters[d->m->dmd_adapter].weight = 1.0f; /* else merged (fp8) */
        d->calls_total = LYRA_DMD_STEPS;
        st = lyra_dmd_sample(&shape, x, &rng, NULL, dit_denoise, &cond, NULL);
    } else {
        if (d->m->dmd_adapter >= 0) d->m->dit.adapters[d->m->dmd_adapter].weight = 0.0f;
        d->calls_total = 2 * r->num_steps;
        lyra_cfg cfg = {dit_denoise, &cond, dit_denoise, &uncond, r->guidance, scratch};
        st = lyra_unipc_sample(&shape, r->num_steps, r->shift, x, lyra_cfg_denoise, &cfg, NULL);
    }
    if (st != LYRA_OK || (st = release_scratch(d)) != LYRA_OK) goto done;
    lyra_latent_gen_get(&shape, x, gen);

    /* decode (upstream AR:989-1057, AR:98-198): the chunk's latents one at a time through the persistent decoder,
     * never clamped, then the re-encode of the decoded frames, 4 at a time, as history (the re-encoded latents, not
     * the sampled ones), in upstream's order: one stream's activations on the device at a time (vae_phase; the
     * other's caches wait in host memory when the run parks them). */
    if ((st = vae_phase(d, d->dec)) != LYRA_OK) goto done;
    for (int j = 0; j < d->G; j++) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        t0 = now();
        float *out[LYRA_PREP_FRAMES_PER_LATENT];
        for (int i = 0; i < LYRA_PREP_FRAMES_PER_LATENT; i++) {
            int64_t f = base + 1 + (int64_t)LYRA_PREP_FRAMES_PER_LATENT * j + i;
            d->frames[f] = malloc(sizeof(float) * (size_t)(3 * d->HW));
            if (!d->frames[f]) {
                st = lyra_error(LYRA_ERR_OOM, "decode: out of memory for frame %lld", (long long)f);
                goto done;
            }
            out[i] = d->frames[f];
        }
        float *lat = malloc(sizeof(float) * (size_t)(d->C * d->hw));
        if (!lat) {
            st = lyra_error(LYRA_ERR_OOM, "decode: out of memory");
            goto done;
        }
        for (int c = 0; c < d->C; c++)
            memcpy(lat + (int64_t)c * d->hw, gen + ((int64_t)c * d->G + j) * d->hw, sizeof(float) * (size_t)d->hw);
        const int64_t np[5] = {1, 3, LYRA_PREP_FRAMES_PER_LATENT, d->H, d->W};
        lyra_tensor keep = lyra_tensor_make(d->pix, LYRA_DTYPE_F32, 5, np);
        keep.device = lyra_vae_session_backend(d->dec)->device;
        keep.name = "decoded frames";
        int n_out = 0;
        st = decode_push(d, lat, out, &n_out, &keep);
        free(lat);
        if (st != LYRA_OK) goto done;
        r->timings.decode += now() - t0;
    }
    t0 = now();
    if ((st = vae_phase(d, d->enc)) != LYRA_OK) goto done;
    for (int j = 0; j < d->G; j++) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        const float *const *fr = (const float *const *)(d->frames + base + 1 + (int64_t)LYRA_PREP_FRAMES_PER_LATENT * j);
        if ((st = encode_push(d, d->enc, fr, LYRA_PREP_FRAMES_PER_LATENT, d->latents + (d->n_latents + j) * d->C * d->hw)) !=
            LYRA_OK)
            goto done;
    }
    r->timings.reencode += now() - t0;
    d->n_latents += d->G;
    if ((st = release_scratch(d)) != LYRA_OK) goto done;
    for (int f = 1; f <= d->F; f++) to_u8(d->frames[base + f], d->HW, r->out_frames + (base + f) * 3 * d->HW);

    /* depth window (upstream AR:1059-1060, AR:1071-1393, AR:261-366), not after the last chunk */
    if (a + 1 < d->n_chunks) {
        if ((st = check_stop(d)) != LYRA_OK) goto done;
        st = update_depth(d, (int64_t)d->F * (a + 1));
    }
done:
    free(hist);
    free(x);
    free(y);
    free(buf);
    free(warp);
    free(gen);
    free(scratch);
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
        {&d->v, d->C * (int64_t)d->G * hw, "the velocity"},
    };
    for (size_t i = 0; i < sizeof b / sizeof *b; i++)
        if (!(*b[i].p = dev_alloc(d->be, b[i].n, b[i].what))) return LYRA_ERR_OOM;
    d->cond_dtype = d->be->device == LYRA_DEVICE_CPU ? LYRA_DTYPE_F32 : d->m->dit.act_dtype;
    return LYRA_OK;
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
    if (r->models->fp8_dmd >= 0 && r->models->fp8_dmd != !!r->use_dmd) /* the DMD LoRA is in its fp8 codes, or not */
        return lyra_error(LYRA_ERR_ARG, "use_dmd=%s: the fp8 DiT was quantized for use_dmd=%s", r->use_dmd ? "True" :
                          "False", r->models->fp8_dmd ? "True" : "False");
    if (r->use_dmd && r->models->dmd_adapter < 0 && r->models->fp8_dmd != 1)
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
    const int64_t n_lat_max = d->n_hist0 + (int64_t)d->G * d->n_chunks;
    d->frames = calloc((size_t)r->num_frames, sizeof *d->frames);
    d->latents = malloc(sizeof(float) * (size_t)(n_lat_max * d->C * d->hw));
    d->buffer_depth = malloc(sizeof(float) * (size_t)d->HW);
    if (!d->frames || !d->latents || !d->buffer_depth || !(d->frames[0] = malloc(sizeof(float) * (size_t)(3 * d->HW)))) {
        st = lyra_error(LYRA_ERR_OOM, "generate: out of memory for the %dx%d history", d->H, d->W);
        goto done;
    }
    memcpy(d->frames[0], r->image, sizeof(float) * (size_t)(3 * d->HW));
    to_u8(d->frames[0], d->HW, r->out_frames);
    if (r->out_warp) memcpy(r->out_warp, r->out_frames, (size_t)(3 * d->HW));

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
        if (st == LYRA_OK) st = lyra_ar_models_place(d->m, r->device, r->policy);
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
    if (d->frames)
        for (int64_t f = 0; f < r->num_frames; f++) free(d->frames[f]);
    free(d->frames);
    free(d->latents);
    free(d->buffer_depth);
    dev_free(d->be, &d->texts);
    dev_free(d->be, &d->clip);
    dev_free(d->be, &d->frame);
    dev_free(d->be, &d->x);
    dev_release(d->be, d->y);
    dev_release(d->be, d->buf);
    dev_free(d->be, &d->v);
    if (d->dec) dev_free(lyra_vae_session_backend(d->dec), &d->pix);
    if (d->enc) lyra_vae_session_free(d->enc);
    if (d->dec) lyra_vae_session_free(d->dec);
    r->timings.cache_frames = d->cache.n;
    lyra_scache_free(&d->cache);
    return st;
}
