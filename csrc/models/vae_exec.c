/* Every op the VAE issues, behind one switch: a dry context only counts (FLOPs, bytes) and walks the same code
 * as a real one, so the planner's numbers are those of the forward pass itself. Also the causal cache slots. */
#include <math.h>
#include <stdio.h>
#include <stdint.h>

#include "models/vae_internal.h"

/* Dry contexts still build descriptors and views (the arithmetic must run); their data points into a fake
 * region that is never dereferenced. */
#define VAE_FAKE_BASE ((void *)(uintptr_t)4096)

size_t vae_shape_bytes(vae_shape s, lyra_dtype dt) { return (size_t)(s.C * s.T * s.H * s.W) * lyra_dtype_size(dt); }

vae_shape vx_shape(const lyra_tensor *x) {
    vae_shape s = {x->ne[1], x->ne[2], x->ne[3], x->ne[4]};
    return s;
}

static void note_temp(vae_ctx *c) {
    if (c->cur && c->arena->used - c->temp_base > c->cur->temp_bytes) c->cur->temp_bytes = c->arena->used - c->temp_base;
}

static lyra_status alloc_nd(vae_ctx *c, lyra_tensor *t, int ndim, const int64_t *ne, const char *what) {
    LYRA_TRY(lyra_arena_tensor(c->arena, t, c->act, ndim, ne, what));
    note_temp(c);
    return LYRA_OK;
}

lyra_status vx_alloc(vae_ctx *c, lyra_tensor *t, vae_shape s, const char *what) {
    int64_t ne[5] = {1, s.C, s.T, s.H, s.W};
    return alloc_nd(c, t, 5, ne, what);
}

lyra_tensor vx_frames(const lyra_tensor *x, int64_t t0, int64_t t1) {
    lyra_tensor v = *x;
    v.data = (char *)x->data + t0 * x->nb[2];
    v.ne[2] = t1 - t0;
    return v;
}

/* ---- causal cache slots ---- */

lyra_status vx_slot(vae_ctx *c, int i, int cap, const lyra_tensor *like, vae_slot **out) {
    LYRA_ASSERT(i >= 0 && i < VAE_MAX_SLOTS);
    vae_slot *s = &c->slots[i];
    if (!s->mem) {
        /* Frames outermost, (cap, B, C, h, w): each cached frame is one contiguous block, so shifting a frame
         * inside the slot is a copy between disjoint ranges. */
        int64_t ne[5] = {cap, c->B, like->ne[1], like->ne[3], like->ne[4]};
        s->t = lyra_tensor_make(NULL, c->act, 5, ne);
        s->t.device = c->be->device;
        s->cap = cap;
        size_t bytes = lyra_tensor_nbytes(&s->t);
        s->mem = c->dry ? VAE_FAKE_BASE : c->be->ops->alloc(c->be, bytes);
        if (!s->mem) {
            char why[256];
            snprintf(why, sizeof why, "%s", lyra_error_message());
            return lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes for causal cache slot %d on the %s device (%s)",
                              c->stage, bytes, i, c->be->ops->name, why);
        }
        s->t.data = s->mem;
        memset(s->m, 0, sizeof s->m);
    }
    LYRA_ASSERT(s->cap == cap && s->t.ne[2] == like->ne[1] && s->t.ne[3] == like->ne[3] && s->t.ne[4] == like->ne[4]);
    if (c->cur) c->cur->cache_bytes += lyra_tensor_nbytes(&s->t) / (size_t)c->B;
    *out = s;
    return LYRA_OK;
}

/* Frames [t0, t1) of the slot for the current batch element, as a (1, C, t1 - t0, h, w) strided view. */
static lyra_tensor slot_frames(const vae_ctx *c, const vae_slot *s, int64_t t0, int64_t t1) {
    lyra_tensor v = s->t;
    int64_t ne[5] = {1, s->t.ne[2], t1 - t0, s->t.ne[3], s->t.ne[4]};
    int64_t nb[5] = {s->t.nb[1], s->t.nb[2], s->t.nb[0], s->t.nb[3], s->t.nb[4]};
    memcpy(v.ne, ne, sizeof ne);
    memcpy(v.nb, nb, sizeof nb);
    v.data = (char *)s->t.data + t0 * s->t.nb[0] + c->b * s->t.nb[1];
    return v;
}

const lyra_tensor *vx_slot_prefix(vae_ctx *c, vae_slot *s, lyra_tensor *view) {
    if (s->m[c->b] == 0) return NULL;
    *view = slot_frames(c, s, 0, s->m[c->b]);
    return view;
}

lyra_status vx_slot_push(vae_ctx *c, vae_slot *s, const lyra_tensor *x) {
    int64_t n = x->ne[2], cap = s->cap, m = s->m[c->b];
    if (n >= cap) {
        lyra_tensor dst = slot_frames(c, s, 0, cap), src = vx_frames(x, n - cap, n);
        LYRA_TRY(vx_copy(c, &dst, &src));
        s->m[c->b] = (int)cap;
        return LYRA_OK;
    }
    /* Fewer new frames than the cache holds (a 1-frame chunk): keep the newest old frames in front of them.
     * Upstream concatenates the previous cache's last frame with the chunk (wan2pt1.py CACHE_T rule, upstream
     * TOK:605-630, M:1007-1046, TOK:623-630). */
    int64_t keep = m < cap - n ? m : cap - n;
    if (keep > 0 && m - keep > 0) {
        lyra_tensor dst = slot_frames(c, s, 0, keep), src = slot_frames(c, s, m - keep, m);
        LYRA_TRY(vx_copy(c, &dst, &src));
    }
    lyra_tensor dst = slot_frames(c, s, keep, keep + n);
    LYRA_TRY(vx_copy(c, &dst, x));
    s->m[c->b] = (int)(keep + n);
    return LYRA_OK;
}

/* ---- ops ---- */

static double numel(const lyra_tensor *t) { return (double)lyra_tensor_numel(t); }

lyra_status vx_conv3d(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, const lyra_tensor *b,
                      const lyra_tensor *prefix, const lyra_conv3d_params *p) {
    if (c->cur) {
        double k = (double)(w->ne[1] * w->ne[2] * w->ne[3] * w->ne[4]);
        c->cur->flops += 2.0 * k * numel(y);
        size_t col = (size_t)(k * numel(y) / (double)w->ne[0]) * lyra_dtype_size(y->dtype);
        if (col > c->cur->im2col_bytes) c->cur->im2col_bytes = col;
    }
    return c->dry ? LYRA_OK : lyra_op_conv3d(c->be, y, x, w, b, prefix, p);
}

lyra_status vx_causal_conv(vae_ctx *c, int slot, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b) {
    vae_slot *s;
    lyra_tensor pv;
    LYRA_TRY(vx_slot(c, slot, 2, x, &s));
    /* kt = 3 causal: 2 frames in front (cache first, zeros for what the cache lacks); spatial "same" padding. */
    int ps = (int)(w->ne[3] - 1) / 2;
    lyra_conv3d_params p = {1, 1, 1, 2, 0, ps, ps, ps, ps, LYRA_PAD_ZERO};
    LYRA_TRY(vx_conv3d(c, y, x, w, b, vx_slot_prefix(c, s, &pv), &p));
    return vx_slot_push(c, s, x);
}

lyra_status vx_norm_silu(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *gamma, int silu) {
    if (c->cur) c->cur->elementwise += numel(x) * (silu ? 2 : 1);
    if (c->dry) return LYRA_OK;
    LYRA_TRY(lyra_op_l2norm_channels(c->be, y, x, gamma, NULL, 1e-12f));
    return silu ? lyra_op_silu(c->be, y, y) : LYRA_OK;
}

lyra_status vx_add(vae_ctx *c, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    if (c->cur) c->cur->elementwise += numel(y);
    return c->dry ? LYRA_OK : lyra_op_add(c->be, y, a, b);
}

lyra_status vx_copy(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x) {
    if (c->cur) c->cur->elementwise += numel(y);
    return c->dry ? LYRA_OK : lyra_op_copy(c->be, y, x);
}

lyra_status vx_linear(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, const lyra_tensor *b) {
    if (c->cur) c->cur->flops += 2.0 * numel(y) * (double)w->ne[1];
    return c->dry ? LYRA_OK : lyra_op_linear(c->be, y, x, w, b);
}

lyra_status vx_attention(vae_ctx *c, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                         const lyra_tensor *v, float scale) {
    if (c->cur) {
        double bh = (double)(q->ne[0] * q->ne[2]), lq = (double)q->ne[1], lk = (double)k->ne[1];
        c->cur->flops += 2.0 * bh * lq * lk * (double)(q->ne[3] + v->ne[3]);
        c->cur->elementwise += bh * lq * lk; /* softmax */
        c->cur->score_bytes = (size_t)(bh * lq * lk) * sizeof(float);
    }
    return c->dry ? LYRA_OK : lyra_op_attention(c->be, o, q, k, v, NULL, NULL, scale);
}

lyra_status vx_upsample2x(vae_ctx *c, lyra_tensor *y, const lyra_tensor *x) {
    if (c->cur) c->cur->elementwise += numel(y);
    return c->dry ? LYRA_OK : lyra_op_upsample_nearest2x(c->be, y, x);
}

lyra_status vx_alloc_tokens(vae_ctx *c, lyra_tensor *t, int ndim, const int64_t *ne, const char *what) {
    return alloc_nd(c, t, ndim, ne, what);
}
