/* Caption embeddings of a generate run (lyra_ar_encode_texts, pipeline/ar_models.h): the models' cache, then umT5
 * for the captions it lacks: on the CPU the loaded encoder; on a device an encoder loaded from its file and placed
 * for this call only, so that umT5 is never resident beside the DiT (upstream M:568-671 encodes once per prompt). */
#include <stdlib.h>
#include <string.h>

#include "models/text_clean.h"
#include "nn/ops.h"
#include "pipeline/ar_models.h"

/* Token ids and mask of a caption: cleaned, tokenised to 512 with </s> (upstream CL2:37-55). */
static lyra_status tokenize(lyra_ar_models *m, const char *caption, int32_t *ids, uint8_t *mask) {
    char *clean = NULL;
    size_t clean_len = 0;
    LYRA_TRY(lyra_text_clean(caption, strlen(caption), &clean, &clean_len));
    int64_t ids64[LYRA_AR_TEXT_LEN], mask64[LYRA_AR_TEXT_LEN];
    lyra_status st = lyra_tokenizer_encode(m->tok, clean, clean_len, LYRA_AR_TEXT_LEN, ids64, mask64);
    free(clean);
    LYRA_TRY(st);
    for (int i = 0; i < LYRA_AR_TEXT_LEN; i++) {
        ids[i] = (int32_t)ids64[i];
        mask[i] = (uint8_t)(mask64[i] != 0);
    }
    return LYRA_OK;
}

static int cached(const lyra_ar_models *m, const char *caption, lyra_device device, lyra_dtype policy) {
    for (int i = 0; i < LYRA_AR_TEXT_CACHE; i++)
        if (m->text_cache[i].caption && m->text_cache[i].device == device && m->text_cache[i].policy == policy &&
            !strcmp(m->text_cache[i].caption, caption))
            return i;
    return -1;
}

/* Keeps emb (512, text_dim) for the caption; a failed allocation only means no cache entry. */
static void remember(lyra_ar_models *m, const char *caption, lyra_device device, lyra_dtype policy, const float *emb) {
    const size_t bytes = sizeof(float) * LYRA_AR_TEXT_LEN * (size_t)m->text_dim;
    char *c = strdup(caption);
    float *e = malloc(bytes);
    if (!c || !e) {
        free(c);
        free(e);
        return;
    }
    memcpy(e, emb, bytes);
    int i = m->text_cache_next;
    m->text_cache_next = (i + 1) % LYRA_AR_TEXT_CACHE;
    free(m->text_cache[i].caption);
    free(m->text_cache[i].emb);
    m->text_cache[i].caption = c;
    m->text_cache[i].emb = e;
    m->text_cache[i].device = device;
    m->text_cache[i].policy = policy;
}

/* One caption through umT5 `u` on backend be with arena a (grown to the measured need): out host (512, D). */
static lyra_status encode_one(lyra_ar_models *m, const lyra_umt5 *u, lyra_backend *be, lyra_arena *a,
                              const char *caption, float *dev_out, float *out) {
    int32_t ids[LYRA_AR_TEXT_LEN];
    uint8_t mask[LYRA_AR_TEXT_LEN];
    LYRA_TRY(tokenize(m, caption, ids, mask));
    size_t need = 0;
    LYRA_TRY(lyra_umt5_arena_measure(u, be->device, ids, mask, 1, LYRA_AR_TEXT_LEN, 1, &need));
    LYRA_TRY(lyra_backend_arena_reserve(be, a, need, "umT5 activations"));
    lyra_tensor o = lyra_tensor_3d(dev_out ? (void *)dev_out : (void *)out, LYRA_DTYPE_F32, 1, LYRA_AR_TEXT_LEN,
                                   m->text_dim);
    o.device = be->device;
    o.name = "caption embedding";
    size_t mark = lyra_arena_mark(a);
    lyra_status st = lyra_umt5_encode(u, be, a, &o, ids, mask, 1, LYRA_AR_TEXT_LEN, 1);
    lyra_arena_reset(a, mark);
    if (st == LYRA_OK && dev_out) {
        lyra_tensor h = lyra_tensor_3d(out, LYRA_DTYPE_F32, 1, LYRA_AR_TEXT_LEN, m->text_dim);
        h.name = "caption embedding";
        st = lyra_op_download(be, &h, &o);
    }
    return st;
}

/* umT5 loaded from its file (or its random weights, filled on the device) onto a fresh backend of `device` for the
 * captions marked in todo, then freed. */
static lyra_status encode_on_device(lyra_ar_models *m, lyra_device device, lyra_dtype policy, int n,
                                    const char *const *captions, const int *todo, float *out) {
    lyra_backend be;
    LYRA_TRY(lyra_backend_init(&be, device, 0));
    lyra_umt5 u;
    memset(&u, 0, sizeof u);
    lyra_arena arena;
    memset(&arena, 0, sizeof arena);
    float *dev_out = NULL;
    const size_t bytes = sizeof(float) * LYRA_AR_TEXT_LEN * (size_t)m->text_dim;
    lyra_status st = lyra_ar_umt5_load_models(m, &u, 1);
    if (st == LYRA_OK) st = lyra_umt5_place(&u, &be, policy == LYRA_DTYPE_F32 ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16);
    if (st == LYRA_OK && !(dev_out = be.ops->alloc(&be, bytes)))
        st = lyra_error(LYRA_ERR_OOM, "umT5: cannot allocate the caption embedding (%zu bytes) on the %s device",
                        bytes, be.ops->name);
    for (int i = 0; i < n && st == LYRA_OK; i++)
        if (todo[i]) st = encode_one(m, &u, &be, &arena, captions[i], dev_out, out + (size_t)i * (bytes / sizeof(float)));
    if (dev_out) be.ops->release(&be, dev_out);
    lyra_backend_arena_free(&be, &arena);
    lyra_umt5_free(&u); /* the weights' device block, before its backend */
    lyra_backend_free(&be);
    return st;
}

int lyra_ar_texts_missing(const lyra_ar_models *m, lyra_device device, lyra_dtype policy, int n,
                          const char *const *captions) {
    int missing = 0;
    for (int i = 0; i < n; i++) {
        int seen = cached(m, captions[i], device, policy) >= 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(captions[i], captions[j]);
        missing += !seen;
    }
    return missing;
}

lyra_status lyra_ar_encode_texts(lyra_ar_models *m, lyra_device device, lyra_dtype policy, int n,
                                 const char *const *captions, float *out, int *n_encoded) {
    const int64_t per = (int64_t)LYRA_AR_TEXT_LEN * m->text_dim;
    /* src[i]: -1 = encode it, i = from the cache (copied now), j < i = the same caption as caption j */
    int *todo = calloc((size_t)(n > 0 ? n : 1), sizeof *todo), *src = calloc((size_t)(n > 0 ? n : 1), sizeof *src);
    if (!todo || !src) {
        free(todo);
        free(src);
        return lyra_error(LYRA_ERR_OOM, "umT5: out of memory");
    }
    int missing = 0;
    for (int i = 0; i < n; i++) {
        int c = cached(m, captions[i], device, policy);
        src[i] = i;
        for (int j = 0; j < i && src[i] == i; j++)
            if (!strcmp(captions[i], captions[j])) src[i] = j;
        if (src[i] != i) continue;
        if (c >= 0) memcpy(out + i * per, m->text_cache[c].emb, sizeof(float) * (size_t)per);
        else todo[i] = 1, missing++;
    }
    lyra_status st = LYRA_OK;
    if (missing && device == LYRA_DEVICE_CPU) {
        if (!m->umt5.mem)
            st = lyra_error(LYRA_ERR_UNSUPPORTED, "umT5: the models were placed on a device; load them again for the "
                            "CPU");
        for (int i = 0; i < n && st == LYRA_OK; i++)
            if (todo[i]) st = encode_one(m, &m->umt5, &m->be, &m->arena, captions[i], NULL, out + i * per);
    } else if (missing) {
        st = encode_on_device(m, device, policy, n, captions, todo, out);
    }
    for (int i = 0; i < n && st == LYRA_OK; i++) {
        if (src[i] != i) memcpy(out + i * per, out + src[i] * per, sizeof(float) * (size_t)per);
        if (todo[i]) remember(m, captions[i], device, policy, out + i * per);
    }
    free(todo);
    free(src);
    if (n_encoded) *n_encoded = missing;
    return st;
}
