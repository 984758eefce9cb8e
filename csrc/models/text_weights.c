/* Named checkpoint tensors -> one carved host allocation (see text_weights.h). */
#include "models/text_weights.h"

#include "nn/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dtype_str(lyra_dtype d) { return d < LYRA_DTYPE_COUNT ? lyra_dtype_name(d) : "unsupported"; }

lyra_status lyra_text_weights_probe(const lyra_text_wsource *src, const char *name, int ndim, const char *what,
                                    const lyra_tensor **out) {
    const lyra_tensor *t = src->lookup(src->ctx, name);
    if (!t) return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s' is missing", what, name);
    if (!lyra_dtype_is_float(t->dtype))
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s' has dtype %s, expected f32, bf16 or f16", what,
                          name, dtype_str(t->dtype));
    if (t->ndim != ndim) {
        char got[96];
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s' has shape %s, expected %d dims", what, name,
                          lyra_tensor_shape_str(t, got, sizeof got), ndim);
    }
    *out = t;
    return LYRA_OK;
}

static lyra_status check_spec(const lyra_text_wspec *s, const lyra_tensor *t, const char *what) {
    if (!t) return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s' is missing", what, s->name);
    if (!lyra_dtype_is_float(t->dtype))
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s' has dtype %s, expected f32, bf16 or f16", what,
                          s->name, dtype_str(t->dtype));
    int ok = t->ndim == s->ndim;
    for (int i = 0; ok && i < s->ndim; i++) ok = s->ne[i] < 0 || s->ne[i] == t->ne[i];
    if (!ok) {
        lyra_tensor want = lyra_tensor_make(NULL, t->dtype, s->ndim, s->ne);
        char got_s[96], want_s[96];
        return lyra_error(LYRA_ERR_FORMAT, "%s weights: tensor '%s' has shape %s, expected %s", what, s->name,
                          lyra_tensor_shape_str(t, got_s, sizeof got_s),
                          lyra_tensor_shape_str(&want, want_s, sizeof want_s));
    }
    if (!lyra_tensor_is_contiguous(t))
        return lyra_error(LYRA_ERR_INTERNAL, "%s weights: source tensor '%s' is not contiguous", what, s->name);
    return LYRA_OK;
}

/* dst (f32, aligned) <- n elements of src (any float dtype, possibly unaligned): staged through an aligned
 * buffer so the converters only ever see aligned input. */
static void copy_to_f32(float *dst, const void *src, lyra_dtype dtype, int64_t n) {
    enum { CHUNK = 4096 };
    _Alignas(64) unsigned char tmp[CHUNK * 4];
    size_t es = lyra_dtype_size(dtype);
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t m = n - i < CHUNK ? n - i : CHUNK;
        memcpy(tmp, (const unsigned char *)src + (size_t)i * es, (size_t)m * es);
        lyra_convert_to_f32(dst + i, tmp, dtype, m);
    }
}

static int in_specs(const lyra_text_wspec *specs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(specs[i].name, name)) return 1;
    return 0;
}

lyra_status lyra_text_random_fill(lyra_backend *be, lyra_tensor *const *tensors, int n, const lyra_text_random *r) {
    for (int i = 0; i < n; i++) {
        lyra_tensor *t = tensors[i];
        if (!t->data) continue;
        lyra_random_fill f;
        lyra_random_fill_rule(&f, r->seed, t->name ? t->name : "", t->ndim, t->ne, r->bf16_values);
        LYRA_TRY(lyra_op_fill_random(be, t, &f));
    }
    return LYRA_OK;
}

lyra_status lyra_text_weights_load(lyra_text_wspec *specs, int n, const lyra_text_wsource *src,
                                   lyra_text_ignore_fn ignore, const void *ignore_ctx, const char *what,
                                   void **mem) {
    *mem = NULL;
    const lyra_tensor **found = malloc(sizeof *found * (size_t)(n > 0 ? n : 1));
    if (!found) return lyra_error(LYRA_ERR_OOM, "%s weights: out of memory", what);
    lyra_status s = LYRA_OK;
    for (int i = 0; i < n && s == LYRA_OK; i++) {
        found[i] = src->lookup(src->ctx, specs[i].name);
        s = check_spec(&specs[i], found[i], what);
    }
    for (int64_t i = 0; i < src->n_names && s == LYRA_OK; i++) {
        const char *name = src->names[i];
        if (!in_specs(specs, n, name) && !(ignore && ignore(ignore_ctx, name)))
            s = lyra_error(LYRA_ERR_FORMAT, "%s weights: unexpected tensor '%s' (not part of the %s)", what, name,
                           what);
    }
    if (s != LYRA_OK) {
        free(found);
        return s;
    }

    /* Two carving passes: measure, then place. */
    lyra_carver c;
    lyra_carver_init(&c, NULL, 0, LYRA_DEVICE_CPU);
    for (int i = 0; i < n && s == LYRA_OK; i++) {
        lyra_dtype dt = specs[i].as_f32 ? LYRA_DTYPE_F32 : found[i]->dtype;
        s = lyra_carve(&c, specs[i].dst, specs[i].name, dt, found[i]->ndim, found[i]->ne);
    }
    if (s != LYRA_OK) {
        free(found);
        return s;
    }
    size_t bytes = (c.used + LYRA_CARVE_ALIGN - 1) & ~(size_t)(LYRA_CARVE_ALIGN - 1);
    void *base = NULL;
    if (posix_memalign(&base, LYRA_CARVE_ALIGN, bytes ? bytes : LYRA_CARVE_ALIGN) != 0) {
        free(found);
        return lyra_error(LYRA_ERR_OOM, "%s weights: cannot allocate %zu bytes", what, bytes);
    }
    lyra_carver_init(&c, base, bytes, LYRA_DEVICE_CPU);
    for (int i = 0; i < n && s == LYRA_OK; i++) {
        lyra_tensor *d = specs[i].dst;
        s = lyra_carve(&c, d, specs[i].name, specs[i].as_f32 ? LYRA_DTYPE_F32 : found[i]->dtype, found[i]->ndim,
                       found[i]->ne);
        if (s != LYRA_OK) break;
        if (src->random) continue; /* no data: random values, filled below or at placement */
        if (d->dtype == found[i]->dtype) memcpy(d->data, found[i]->data, lyra_tensor_nbytes(d));
        else copy_to_f32(d->data, found[i]->data, found[i]->dtype, lyra_tensor_numel(d));
    }
    if (src->random && s == LYRA_OK && !src->random->pending) { /* now, in host memory */
        lyra_text_random r = *src->random;
        lyra_tensor **ts = malloc(sizeof *ts * (size_t)(n > 0 ? n : 1));
        lyra_backend be;
        s = ts ? lyra_backend_cpu_init(&be, 0) : lyra_error(LYRA_ERR_OOM, "%s weights: out of memory", what);
        if (s == LYRA_OK) {
            for (int i = 0; i < n; i++) ts[i] = specs[i].dst;
            s = lyra_text_random_fill(&be, ts, n, &r);
            lyra_backend_free(&be);
        }
        free(ts);
    }
    free(found);
    if (s != LYRA_OK) {
        free(base);
        return s;
    }
    *mem = base;
    return LYRA_OK;
}

lyra_status lyra_text_wlist_init(lyra_text_wlist *l, int cap, const char *what) {
    memset(l, 0, sizeof *l);
    l->cap = cap;
    l->specs = malloc(sizeof *l->specs * (size_t)(cap > 0 ? cap : 1));
    l->names = malloc((size_t)(cap > 0 ? cap : 1) * LYRA_TEXT_NAME_LEN);
    if (!l->specs || !l->names) {
        free(l->specs);
        free(l->names);
        memset(l, 0, sizeof *l);
        return lyra_error(LYRA_ERR_OOM, "%s: out of memory", what);
    }
    return LYRA_OK;
}

void lyra_text_wlist_add(lyra_text_wlist *l, const char *name, lyra_tensor *dst, int as_f32, int ndim,
                         const int64_t *ne) {
    if (l->n == l->cap || ndim < 0 || ndim > LYRA_MAX_DIMS) {
        l->overflow = 1;
        return;
    }
    lyra_text_wspec *s = &l->specs[l->n];
    char *slot = l->names + (size_t)l->n * LYRA_TEXT_NAME_LEN;
    snprintf(slot, LYRA_TEXT_NAME_LEN, "%s", name);
    memset(s, 0, sizeof *s);
    s->name = slot;
    s->dst = dst;
    s->as_f32 = as_f32;
    s->ndim = ndim;
    memcpy(s->ne, ne, sizeof *ne * (size_t)ndim);
    l->n++;
}

lyra_status lyra_text_wlist_load(lyra_text_wlist *l, const lyra_text_wsource *src, lyra_text_ignore_fn ignore,
                                 const void *ignore_ctx, const char *what, void **mem) {
    *mem = NULL;
    memset(&l->random, 0, sizeof l->random);
    lyra_text_wsource s2 = *src;
    if (src->random) { /* the values are bf16-rounded when every tensor of the spec is bf16 */
        l->random = *src->random;
        l->random.bf16_values = 1;
        for (int i = 0; i < l->n; i++) {
            const lyra_tensor *t = src->lookup(src->ctx, l->specs[i].name);
            if (t && t->dtype != LYRA_DTYPE_BF16) l->random.bf16_values = 0;
        }
        s2.random = &l->random;
    }
    lyra_status s = l->overflow ? lyra_error(LYRA_ERR_INTERNAL, "%s weights: internal error: spec list too short",
                                             what)
                                : lyra_text_weights_load(l->specs, l->n, &s2, ignore, ignore_ctx, what, mem);
    free(l->specs);
    l->specs = NULL;
    return s;
}
