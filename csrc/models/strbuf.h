/* A growable byte string for the tokenizer and text cleaning (always NUL-terminated when len > 0). */
#ifndef LYRA_MODELS_STRBUF_H
#define LYRA_MODELS_STRBUF_H

#include <stdlib.h>
#include <string.h>

#include "lyra2.h"

typedef struct lyra_strbuf {
    char *data;
    size_t len, cap;
} lyra_strbuf;

static inline lyra_status lyra_strbuf_reserve(lyra_strbuf *b, size_t extra) {
    if (extra > (size_t)-1 / 2 - b->len) return lyra_error(LYRA_ERR_OOM, "text too long");
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return LYRA_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return lyra_error(LYRA_ERR_OOM, "out of memory for %zu bytes of text", cap);
    b->data = p;
    b->cap = cap;
    return LYRA_OK;
}

static inline lyra_status lyra_strbuf_add(lyra_strbuf *b, const void *s, size_t n) {
    LYRA_TRY(lyra_strbuf_reserve(b, n));
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return LYRA_OK;
}

static inline void lyra_strbuf_free(lyra_strbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
