/* Prompt cleaning (see text_clean.h). */
#include "models/text_clean.h"

#include "models/spm_model.h"
#include "models/strbuf.h"

/* Python's str.isspace(), which both strip() and the `regex` module's \s use: White_Space plus the
 * separators U+001C..U+001F. */
static int py_isspace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* Step A.3-4: strip, then every whitespace run -> one ASCII space. */
static lyra_status collapse_whitespace(const char *s, size_t n, lyra_strbuf *out) {
    const uint8_t *u = (const uint8_t *)s;
    int pending = 0;
    for (size_t i = 0; i < n;) {
        int l = lyra_utf8_char_len(u + i, n - i);
        if (!l) return lyra_error(LYRA_ERR_ARG, "text is not valid UTF-8 (byte %zu)", i);
        if (py_isspace(lyra_utf8_decode(u + i, l))) {
            pending = out->len > 0;
        } else {
            if (pending) LYRA_TRY(lyra_strbuf_add(out, " ", 1));
            pending = 0;
            LYRA_TRY(lyra_strbuf_add(out, s + i, (size_t)l));
        }
        i += (size_t)l;
    }
    return LYRA_OK;
}

lyra_status lyra_text_clean(const char *in, size_t len, char **out, size_t *out_len) {
    lyra_strbuf b = {0};
    lyra_status st = collapse_whitespace(in, len, &b);
    if (st == LYRA_OK) st = lyra_strbuf_add(&b, "", 0); /* always a NUL-terminated buffer */
    if (st != LYRA_OK) {
        lyra_strbuf_free(&b);
        return st;
    }
    *out = b.data;
    *out_len = b.len;
    return LYRA_OK;
}
