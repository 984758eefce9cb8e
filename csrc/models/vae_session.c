/* Streaming sessions: frame-count rules, the push driver (two ping-pong stream buffers at the bottom of the
 * arena, each layer's temporaries above them), cache ownership, copies for undo, and dry planning sessions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/vae_internal.h"

struct lyra_vae_session {
    const lyra_vae *vae;
    int decoder;
    int dry;
    lyra_backend be;
    lyra_arena arena;
    size_t arena_peak;            /* high-water mark over all pushes */
    int64_t B, H, W;              /* geometry of the pushed frames, fixed by the first push */
    int64_t frames_in;            /* frames pushed so far */
    vae_slot slots[VAE_MAX_SLOTS];
    void *parked[VAE_MAX_SLOTS];  /* host memory (page-locked on CUDA) the caches are parked in, allocated at the
                                   * first park and kept for the next ones (pinning GBs again every chunk is slow) */
    int is_parked;                /* the caches are in parked[], not on the device */
    lyra_vae_stats stats;
};

#define FAKE_ARENA_BASE ((void *)(uintptr_t)4096)
#define FAKE_ARENA_SIZE ((size_t)1 << 50)

static lyra_status session_alloc(lyra_vae_session **out, const lyra_vae *vae, int decoder, int dry, int n_threads) {
    *out = NULL;
    lyra_vae_session *s = calloc(1, sizeof *s);
    if (!s) return lyra_error(LYRA_ERR_OOM, "vae: out of host memory");
    s->vae = vae;
    s->decoder = decoder;
    s->dry = dry;
    /* A placed model's sessions run on its device (caches and arena in device memory); dry sessions only count. */
    lyra_status st = dry || vae->be.device == LYRA_DEVICE_CPU ? lyra_backend_cpu_init(&s->be, n_threads)
                                                             : lyra_backend_init(&s->be, vae->be.device, 0);
    if (st != LYRA_OK) { free(s); return st; }
    if (dry) lyra_arena_wrap(&s->arena, FAKE_ARENA_BASE, FAKE_ARENA_SIZE, LYRA_DEVICE_CPU);
    *out = s;
    return LYRA_OK;
}

lyra_status lyra_vae_session_new(lyra_vae_session **out, const lyra_vae *vae, int decoder, int n_threads) {
    if (!vae->block) return lyra_error(LYRA_ERR_ARG, "vae: this model has no weights (shapes only); it can only plan");
    return session_alloc(out, vae, decoder, 0, n_threads);
}

lyra_status lyra_vae_plan_session(lyra_vae_session **out, const lyra_vae *vae, int decoder) {
    return session_alloc(out, vae, decoder, 1, 1);
}

void lyra_vae_session_free(lyra_vae_session *s) {
    if (!s) return;
    for (int i = 0; i < VAE_MAX_SLOTS; i++)
        if (s->parked[i]) lyra_backend_host_release(&s->be, s->parked[i]);
    if (!s->dry)
        for (int i = 0; i < VAE_MAX_SLOTS; i++)
            if (s->slots[i].mem) s->be.ops->release(&s->be, s->slots[i].mem);
    if (!s->dry) lyra_backend_arena_free(&s->be, &s->arena);
    lyra_backend_free(&s->be);
    free(s);
}

void lyra_vae_session_release_arena(lyra_vae_session *s) {
    if (s && !s->dry) lyra_backend_arena_free(&s->be, &s->arena);
}

/* The cache slot tensor i as a host tensor over `data` (for the park copies). */
static lyra_tensor host_slot(const vae_slot *sl, void *data) {
    lyra_tensor h = lyra_tensor_make(data, sl->t.dtype, sl->t.ndim, sl->t.ne);
    h.name = "Wan VAE cache";
    return h;
}

lyra_status lyra_vae_session_park(lyra_vae_session *s) {
    if (!s || s->dry || s->is_parked || s->be.device == LYRA_DEVICE_CPU) return LYRA_OK;
    for (int i = 0; i < VAE_MAX_SLOTS; i++) { /* copies first: on failure the device caches stay as they were */
        vae_slot *sl = &s->slots[i];
        if (!sl->mem) continue;
        if (!s->parked[i] && !(s->parked[i] = lyra_backend_host_alloc(&s->be, lyra_tensor_nbytes(&sl->t), "Wan VAE cache")))
            return LYRA_ERR_OOM;
        lyra_tensor h = host_slot(sl, s->parked[i]);
        sl->t.name = "Wan VAE cache";
        LYRA_TRY(lyra_op_download(&s->be, &h, &sl->t));
    }
    for (int i = 0; i < VAE_MAX_SLOTS; i++)
        if (s->slots[i].mem) {
            s->be.ops->release(&s->be, s->slots[i].mem);
            s->slots[i].mem = s->slots[i].t.data = NULL;
        }
    s->is_parked = 1;
    return LYRA_OK;
}

/* Brings parked caches back to the device (before a push, a copy or a read of the caches). */
static lyra_status unpark(lyra_vae_session *s) {
    if (!s->is_parked) return LYRA_OK;
    for (int i = 0; i < VAE_MAX_SLOTS; i++) {
        vae_slot *sl = &s->slots[i];
        if (!s->parked[i] || sl->mem) continue;
        size_t bytes = lyra_tensor_nbytes(&sl->t);
        if (!(sl->mem = s->be.ops->alloc(&s->be, bytes))) {
            char why[256];
            snprintf(why, sizeof why, "%s", lyra_error_message());
            return lyra_error(LYRA_ERR_OOM, "Wan VAE stream: cannot allocate %zu bytes on the %s device to bring its "
                              "causal cache slot %d back (%s)", bytes, s->be.ops->name, i, why);
        }
        sl->t.data = sl->mem;
        lyra_tensor h = host_slot(sl, s->parked[i]);
        LYRA_TRY(lyra_op_upload(&s->be, &sl->t, &h));
    }
    s->is_parked = 0;
    return LYRA_OK;
}

lyra_status lyra_vae_session_copy(lyra_vae_session **out, const lyra_vae_session *s) {
    if (s->is_parked)
        return lyra_error(LYRA_ERR_ARG, "Wan VAE stream copy: the stream's caches are parked in host memory; push to "
                          "it (which brings them back) before copying it");
    lyra_vae_session *c;
    LYRA_TRY(session_alloc(&c, s->vae, s->decoder, s->dry, s->be.n_threads));
    c->B = s->B;
    c->H = s->H;
    c->W = s->W;
    c->frames_in = s->frames_in;
    for (int i = 0; i < VAE_MAX_SLOTS; i++) {
        const vae_slot *from = &s->slots[i];
        vae_slot *to = &c->slots[i];
        *to = *from;
        if (!from->mem || s->dry) continue;
        size_t bytes = lyra_tensor_nbytes(&from->t);
        to->mem = c->be.ops->alloc(&c->be, bytes);
        if (!to->mem) {
            lyra_vae_session_free(c);
            return lyra_error(LYRA_ERR_OOM, "Wan VAE stream copy: cannot allocate %zu bytes for causal cache slot %d "
                              "on the %s device", bytes, i, s->be.ops->name);
        }
        to->t.data = to->mem;
        lyra_status st = lyra_op_copy(&c->be, &to->t, &from->t);
        if (st != LYRA_OK) { lyra_vae_session_free(c); return st; }
    }
    *out = c;
    return LYRA_OK;
}

lyra_status lyra_vae_session_out_frames(const lyra_vae_session *s, int64_t n, int64_t *n_out) {
    int first = s->frames_in == 0;
    if (s->decoder) {
        if (n < 1) return lyra_error(LYRA_ERR_ARG, "vae decode: a push needs at least 1 latent frame, got %lld", (long long)n);
        /* Latent 0 decodes to 1 frame (upstream TOK:605-630, M:1007-1046, TOK:623-630), every later latent to 4. */
        *n_out = first ? 1 + 4 * (n - 1) : 4 * n;
        return LYRA_OK;
    }
    if (first && (n < 1 || (n - 1) % 4 != 0))
        return lyra_error(LYRA_ERR_ARG,
                          "vae encode: the first push takes 1 + 4k frames (1, 5, 9, ..., 81), got %lld; the Wan VAE "
                          "compresses time by 4 after a lone first frame (upstream TOK:605-630)", (long long)n);
    if (!first && (n < 4 || n % 4 != 0))
        return lyra_error(LYRA_ERR_ARG,
                          "vae encode: after the first push the encoder takes groups of 4 frames (4, 8, ...), "
                          "got %lld", (long long)n);
    *n_out = first ? 1 + (n - 1) / 4 : n / 4;
    return LYRA_OK;
}

/* Runs the layer list over batch element b: input already in the arena's first stream buffer (uploaded by
 * the caller through `load`), output left in *final. */
typedef struct push_plan {
    const vae_layer *layers;
    int n;
    int first;
    vae_shape shape[LYRA_VAE_MAX_LAYERS + 1]; /* shape[0] = input, shape[i+1] = output of layer i */
    size_t stream;                             /* bytes of one stream buffer */
} push_plan;

static lyra_status plan_shapes(const lyra_vae_session *s, vae_shape in, push_plan *pp) {
    pp->layers = s->decoder ? s->vae->dec : s->vae->enc;
    pp->n = s->decoder ? s->vae->n_dec : s->vae->n_enc;
    pp->first = s->frames_in == 0;
    pp->shape[0] = in;
    pp->stream = vae_shape_bytes(in, s->vae->act);
    for (int i = 0; i < pp->n; i++) {
        LYRA_TRY(vae_layer_out(&pp->layers[i], pp->first, pp->shape[i], &pp->shape[i + 1]));
        size_t bytes = vae_shape_bytes(pp->shape[i + 1], s->vae->act);
        if (bytes > pp->stream) pp->stream = bytes;
    }
    return LYRA_OK;
}

static lyra_tensor stream_view(const lyra_arena *arena, void *data, vae_shape s, lyra_dtype act) {
    int64_t ne[5] = {1, s.C, s.T, s.H, s.W};
    lyra_tensor t = lyra_tensor_make(data, act, 5, ne);
    t.device = arena->device;
    return t;
}

static const char *stage_name(const lyra_vae_session *s) { return s->decoder ? "Wan VAE decode" : "Wan VAE encode"; }

/* One batch element through every layer. host_in / host_out are its (1, ...) slices (NULL data when dry). */
static lyra_status run_element(lyra_vae_session *s, lyra_arena *arena, int dry, int b, const push_plan *pp,
                               const lyra_tensor *host_in, lyra_tensor *host_out, lyra_vae_stats *stats) {
    lyra_dtype act = s->vae->act;
    vae_ctx c = {&s->be, arena, dry, b, s->B, s->slots, stats, NULL, 0, stage_name(s), act};
    arena->used = 0;
    void *buf[2];
    for (int i = 0; i < 2; i++) {
        buf[i] = lyra_arena_alloc(arena, pp->stream, "vae stream buffer");
        if (!buf[i]) return LYRA_ERR_OOM;
    }
    size_t base = lyra_arena_mark(arena);
    if (stats) stats->stream_bytes = base;
    lyra_tensor x = stream_view(arena, buf[0], pp->shape[0], act);
    /* The one upload of a push (named for the device's transfer log): the host frames into the stream buffer,
     * rounded to the activation dtype (upstream TOK:881: videos.to(bf16); TOK:891 the latents) on the host or,
     * staged, on the device. */
    x.name = s->decoder ? "Wan VAE latents" : "Wan VAE video";
    if (!dry && host_in->device == s->be.device && s->be.device != LYRA_DEVICE_CPU)
        LYRA_TRY(lyra_op_copy(&s->be, &x, host_in)); /* already staged on the device by the caller */
    else if (!dry)
        LYRA_TRY(lyra_backend_upload_as(&s->be, &x, host_in));
    for (int i = 0; i < pp->n; i++) {
        const vae_layer *L = &pp->layers[i];
        lyra_tensor y = stream_view(arena, buf[(i + 1) & 1], pp->shape[i + 1], act);
        if (stats) {
            lyra_vae_layer_stats *ls = &stats->layer[i];
            memcpy(ls->name, L->name, sizeof ls->name);
            ls->kind = vae_kind_name(L->kind);
            vae_shape a = pp->shape[i], o = pp->shape[i + 1];
            int64_t in4[4] = {a.C, a.T, a.H, a.W}, out4[4] = {o.C, o.T, o.H, o.W};
            memcpy(ls->in, in4, sizeof in4);
            memcpy(ls->out, out4, sizeof out4);
            ls->out_bytes = vae_shape_bytes(o, act);
            c.cur = ls;
        }
        c.temp_base = base;
        LYRA_TRY(vae_layer_run(&c, L, pp->first, &y, &x));
        lyra_arena_reset(arena, base);
        x = y;
    }
    if (stats) stats->n_layers = pp->n;
    x.name = s->decoder ? "Wan VAE frames" : "Wan VAE mu";
    if (dry) return LYRA_OK;
    if (host_out->device == s->be.device && s->be.device != LYRA_DEVICE_CPU) return lyra_op_copy(&s->be, host_out, &x);
    return lyra_backend_download_as(&s->be, host_out, &x);
}

/* Arena bytes a push needs: a dry walk of batch element 0 on a copy of the cache state. */
static lyra_status measure(lyra_vae_session *s, const push_plan *pp, size_t *need) {
    vae_slot *saved = malloc(sizeof s->slots);
    if (!saved) return lyra_error(LYRA_ERR_OOM, "vae: out of host memory");
    memcpy(saved, s->slots, sizeof s->slots);
    lyra_arena fake;
    lyra_arena_wrap(&fake, FAKE_ARENA_BASE, FAKE_ARENA_SIZE, LYRA_DEVICE_CPU);
    lyra_status st = run_element(s, &fake, 1, 0, pp, NULL, NULL, NULL);
    memcpy(s->slots, saved, sizeof s->slots); /* the dry walk may have "allocated" slots: drop them */
    free(saved);
    *need = fake.peak;
    return st;
}

static lyra_status check_geometry(lyra_vae_session *s, const lyra_tensor *x, const char *what) {
    if (x->ne[0] < 1 || x->ne[0] > VAE_MAX_BATCH)
        return lyra_error(LYRA_ERR_ARG, "vae: %s batch must be 1..%d, got %lld", what, VAE_MAX_BATCH, (long long)x->ne[0]);
    if (s->frames_in && (x->ne[0] != s->B || x->ne[3] != s->H || x->ne[4] != s->W))
        return lyra_error(LYRA_ERR_ARG,
                          "vae: %s (B=%lld, H=%lld, W=%lld) differs from the stream's first push (B=%lld, H=%lld, "
                          "W=%lld); start a new stream", what, (long long)x->ne[0], (long long)x->ne[3],
                          (long long)x->ne[4], (long long)s->B, (long long)s->H, (long long)s->W);
    return LYRA_OK;
}

static lyra_status check_host(const lyra_vae_session *s, const lyra_tensor *t, const char *what, int64_t c1, int64_t t2,
                              int64_t h3, int64_t w4) {
    /* Host arrays are contiguous; device tensors (views of the caller's staging block) may be strided. */
    int on_device = t->device != LYRA_DEVICE_CPU;
    if (on_device && (s->dry || t->device != s->be.device))
        return lyra_error(LYRA_ERR_ARG, "vae: %s is in device memory but this stream runs on the %s backend", what,
                          s->be.ops->name);
    if (t->ndim != 5 || (!s->dry && !on_device && !lyra_tensor_is_contiguous(t)))
        return lyra_error(LYRA_ERR_ARG, "vae: %s must be a contiguous 5-d f32 array", what);
    if (t->dtype != LYRA_DTYPE_F32 && !(on_device && t->dtype == s->vae->act))
        return lyra_error(LYRA_ERR_ARG, "vae: %s has dtype %s; host arrays are f32, device tensors f32 or the "
                          "model's %s", what, lyra_dtype_name(t->dtype), lyra_dtype_name(s->vae->act));
    if (t->ne[1] != c1 || t->ne[2] != t2 || t->ne[3] != h3 || t->ne[4] != w4) {
        char got[96];
        return lyra_error(LYRA_ERR_ARG, "vae: %s has shape %s, expected (B, %lld, %lld, %lld, %lld)", what,
                          lyra_tensor_shape_str(t, got, sizeof got), (long long)c1, (long long)t2, (long long)h3,
                          (long long)w4);
    }
    return LYRA_OK;
}

static lyra_status push(lyra_vae_session *s, const lyra_tensor *in, lyra_tensor *out) {
    push_plan pp;
    LYRA_TRY(unpark(s));
    vae_shape sin = {in->ne[1], in->ne[2], in->ne[3], in->ne[4]};
    LYRA_TRY(plan_shapes(s, sin, &pp));
    if (!s->dry) {
        size_t need = 0;
        LYRA_TRY(measure(s, &pp, &need));
        /* Before any cache moves: a failure here leaves the stream (and the model) usable. */
        if (need > s->arena.capacity)
            LYRA_TRY(lyra_backend_arena_reserve(&s->be, &s->arena, need + need / 8, stage_name(s)));
    }
    s->B = in->ne[0];
    s->H = in->ne[3];
    s->W = in->ne[4];
    memset(&s->stats, 0, sizeof s->stats);
    s->arena.peak = 0;
    for (int64_t b = 0; b < s->B; b++) {
        lyra_tensor hi = *in, ho = *out;
        if (!s->dry) {
            LYRA_TRY(lyra_tensor_slice(&hi, in, 0, b, b + 1));
            LYRA_TRY(lyra_tensor_slice(&ho, out, 0, b, b + 1));
        }
        lyra_status st = run_element(s, &s->arena, s->dry, (int)b, &pp, &hi, &ho, b == 0 ? &s->stats : NULL);
        if (st != LYRA_OK) {
            s->arena.used = 0;
            /* The caches are now partly advanced: the stream cannot continue consistently. */
            s->frames_in = -1;
            return st;
        }
    }
    s->arena.used = 0;
    s->stats.arena_peak = s->arena.peak;
    if (s->arena.peak > s->arena_peak) s->arena_peak = s->arena.peak;
    s->stats.cache_bytes = 0;
    for (int i = 0; i < VAE_MAX_SLOTS; i++)
        if (s->slots[i].mem) s->stats.cache_bytes += lyra_tensor_nbytes(&s->slots[i].t);
    s->frames_in += in->ne[2];
    return LYRA_OK;
}

static lyra_status usable(const lyra_vae_session *s, int decoder) {
    if (s->frames_in < 0)
        return lyra_error(LYRA_ERR_ARG, "vae: this stream failed in an earlier push and cannot continue; start a new one");
    if (s->decoder != decoder)
        return lyra_error(LYRA_ERR_ARG, "vae: this is %s stream", s->decoder ? "a decoder" : "an encoder");
    return LYRA_OK;
}

lyra_status lyra_vae_encode_push(lyra_vae_session *s, const lyra_tensor *x, lyra_tensor *mu) {
    LYRA_TRY(usable(s, 0));
    int64_t T;
    if (x->ndim != 5) return lyra_error(LYRA_ERR_ARG, "vae encode: video must be 5-d (B, 3, T, H, W)");
    LYRA_TRY(lyra_vae_session_out_frames(s, x->ne[2], &T));
    if (x->ne[3] < 8 || x->ne[4] < 8 || x->ne[3] % 8 || x->ne[4] % 8)
        return lyra_error(LYRA_ERR_ARG, "vae encode: H and W must be positive multiples of 8, got %lld x %lld",
                          (long long)x->ne[3], (long long)x->ne[4]);
    LYRA_TRY(check_host(s, x, "video", 3, x->ne[2], x->ne[3], x->ne[4]));
    LYRA_TRY(check_geometry(s, x, "video"));
    LYRA_TRY(check_host(s, mu, "mu (output)", s->vae->z_dim, T, x->ne[3] / 8, x->ne[4] / 8));
    if (mu->ne[0] != x->ne[0]) return lyra_error(LYRA_ERR_ARG, "vae encode: output batch differs from input batch");
    return push(s, x, mu);
}

lyra_status lyra_vae_decode_push(lyra_vae_session *s, const lyra_tensor *z, lyra_tensor *video) {
    LYRA_TRY(usable(s, 1));
    int64_t T;
    if (z->ndim != 5) return lyra_error(LYRA_ERR_ARG, "vae decode: latents must be 5-d (B, %d, L, h, w)", s->vae->z_dim);
    LYRA_TRY(lyra_vae_session_out_frames(s, z->ne[2], &T));
    if (z->ne[3] < 1 || z->ne[4] < 1) return lyra_error(LYRA_ERR_ARG, "vae decode: empty latent frame");
    LYRA_TRY(check_host(s, z, "latents", s->vae->z_dim, z->ne[2], z->ne[3], z->ne[4]));
    LYRA_TRY(check_geometry(s, z, "latents"));
    LYRA_TRY(check_host(s, video, "video (output)", 3, T, 8 * z->ne[3], 8 * z->ne[4]));
    if (video->ne[0] != z->ne[0]) return lyra_error(LYRA_ERR_ARG, "vae decode: output batch differs from input batch");
    return push(s, z, video);
}

const lyra_vae_stats *lyra_vae_session_stats(const lyra_vae_session *s) { return &s->stats; }
size_t lyra_vae_session_arena_peak(const lyra_vae_session *s) { return s->arena_peak; }
lyra_backend *lyra_vae_session_backend(lyra_vae_session *s) { return &s->be; }
void lyra_vae_session_abandon(lyra_vae_session *s) { s->frames_in = -1; }
