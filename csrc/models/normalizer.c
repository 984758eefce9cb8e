/* HF's Precompiled + Strip(right) + Replace(" {2,}", "▁") normaliser (see normalizer.h). */
#include "models/normalizer.h"

#include "models/spm_model.h"

enum { LYRA_GCB_OTHER = 0, LYRA_GCB_CONTROL, LYRA_GCB_JOIN, LYRA_GCB_PREPEND };
#include "models/grapheme_table.h"

/* Clusters at least this long are normalised code point by code point (HF's `grapheme.len() < 6`). */
#define LYRA_HF_CLUSTER_BYTES 6

lyra_status lyra_charsmap_init(const uint8_t *blob, size_t len, const char *what, lyra_charsmap *out) {
    out->units = NULL;
    out->n_units = 0;
    out->pool = NULL;
    out->pool_len = 0;
    if (len <= 4) return lyra_error(LYRA_ERR_FORMAT, "%s: precompiled_charsmap of %zu bytes is too short", what, len);
    uint32_t trie_size = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
    if (trie_size == 0 || trie_size % 4 != 0 || trie_size > len - 4)
        return lyra_error(LYRA_ERR_FORMAT,
                          "%s: precompiled_charsmap trie size %u does not fit its %zu-byte blob (must be a positive "
                          "multiple of 4)",
                          what, (unsigned)trie_size, len);
    out->n_units = trie_size / 4;
    out->units = malloc(trie_size);
    if (!out->units) return lyra_error(LYRA_ERR_OOM, "%s: out of memory for the charsmap trie", what);
    for (size_t i = 0; i < out->n_units; i++) {
        const uint8_t *u = blob + 4 + 4 * i;
        out->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    out->pool = (const char *)blob + 4 + trie_size;
    out->pool_len = len - 4 - trie_size;
    return LYRA_OK;
}

void lyra_charsmap_free(lyra_charsmap *cm) {
    free(cm->units);
    cm->units = NULL;
    cm->n_units = 0;
}

static uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xffu); }
static int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }

int lyra_charsmap_first_match(const lyra_charsmap *cm, const char *s, size_t n, const char **repl, size_t *repl_len) {
    size_t pos = 0;
    uint32_t unit = cm->units[0];
    pos ^= unit_offset(unit);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == 0) return 0; /* HF's walk treats the key as NUL-terminated */
        pos ^= c;
        if (pos >= cm->n_units) return 0; /* outside the array: no key continues here */
        unit = cm->units[pos];
        if (unit_label(unit) != c) return 0;
        pos ^= unit_offset(unit);
        if (unit_has_leaf(unit)) {
            if (pos >= cm->n_units) goto corrupt;
            uint32_t v = unit_value(cm->units[pos]);
            if (v >= cm->pool_len) goto corrupt;
            const char *end = memchr(cm->pool + v, '\0', cm->pool_len - v);
            if (!end) goto corrupt;
            for (const char *q = cm->pool + v; q < end;) { /* the tokenizer relies on valid UTF-8 */
                int l = lyra_utf8_char_len((const uint8_t *)q, (size_t)(end - q));
                if (!l) goto corrupt;
                q += l;
            }
            *repl = cm->pool + v;
            *repl_len = (size_t)(end - (cm->pool + v));
            return 1;
        }
    }
    return 0;
corrupt:
    lyra_error(LYRA_ERR_FORMAT, "tokenizer model: a precompiled_charsmap leaf points outside its string pool or at invalid UTF-8");
    return -1;
}

static int gcb_class(uint32_t cp) {
    size_t lo = 0, hi = sizeof lyra_gcb_ranges / sizeof lyra_gcb_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < lyra_gcb_ranges[mid].lo) hi = mid;
        else if (cp > lyra_gcb_ranges[mid].hi) lo = mid + 1;
        else return lyra_gcb_ranges[mid].cls;
    }
    return LYRA_GCB_OTHER;
}

/* UAX #29 boundary between two code points, restricted to the rules that can build a cluster shorter
 * than 6 bytes (tools/gen_grapheme_table.py explains why the others cannot change the result). */
static int gcb_break(uint32_t prev, int pc, uint32_t cur, int cc) {
    if (prev == '\r' && cur == '\n') return 0;                  /* GB3 */
    if (pc == LYRA_GCB_CONTROL || cc == LYRA_GCB_CONTROL) return 1; /* GB4, GB5 */
    if (cc == LYRA_GCB_JOIN) return 0;                          /* GB9, GB9a */
    if (pc == LYRA_GCB_PREPEND) return 0;                       /* GB9b */
    return 1;
}

static lyra_status precompiled(const lyra_charsmap *cm, const char *s, size_t n, lyra_strbuf *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t pos = 0;
    while (pos < n) {
        int len = lyra_utf8_char_len(u + pos, n - pos);
        if (!len) return lyra_error(LYRA_ERR_ARG, "text is not valid UTF-8 (byte %zu)", pos);
        uint32_t prev = lyra_utf8_decode(u + pos, len);
        int pc = gcb_class(prev);
        size_t end = pos + (size_t)len;
        while (end < n) {
            int l = lyra_utf8_char_len(u + end, n - end);
            if (!l) return lyra_error(LYRA_ERR_ARG, "text is not valid UTF-8 (byte %zu)", end);
            uint32_t cur = lyra_utf8_decode(u + end, l);
            int cc = gcb_class(cur);
            if (gcb_break(prev, pc, cur, cc)) break;
            prev = cur;
            pc = cc;
            end += (size_t)l;
        }
        const char *repl;
        size_t repl_len;
        if (end - pos < LYRA_HF_CLUSTER_BYTES) {
            int r = lyra_charsmap_first_match(cm, s + pos, end - pos, &repl, &repl_len);
            if (r < 0) return LYRA_ERR_FORMAT;
            if (r) {
                LYRA_TRY(lyra_strbuf_add(out, repl, repl_len));
                pos = end;
                continue;
            }
        }
        while (pos < end) {
            int l = lyra_utf8_char_len(u + pos, end - pos);
            int r = lyra_charsmap_first_match(cm, s + pos, (size_t)l, &repl, &repl_len);
            if (r < 0) return LYRA_ERR_FORMAT;
            if (r) LYRA_TRY(lyra_strbuf_add(out, repl, repl_len));
            else LYRA_TRY(lyra_strbuf_add(out, s + pos, (size_t)l));
            pos += (size_t)l;
        }
    }
    return LYRA_OK;
}

/* Rust's char::is_whitespace (the Unicode White_Space property), which HF's Strip uses. */
static int is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* Start of the trailing White_Space run of the valid UTF-8 text s[0..n). */
static size_t trim_end(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t keep = 0, pos = 0;
    while (pos < n) {
        int l = lyra_utf8_char_len(u + pos, n - pos);
        if (!l) l = 1; /* unreachable: input and replacements are checked UTF-8 */
        if (!is_white_space(lyra_utf8_decode(u + pos, l))) keep = pos + (size_t)l;
        pos += (size_t)l;
    }
    return keep;
}

lyra_status lyra_hf_normalize(const lyra_charsmap *cm, const char *s, size_t n, lyra_strbuf *out) {
    lyra_strbuf tmp = {0};
    lyra_status st = LYRA_OK;
    if (cm) {
        st = precompiled(cm, s, n, &tmp);
        s = tmp.data;
        n = tmp.len;
    }
    if (st == LYRA_OK) {
        n = trim_end(s, n);
        static const char meta[] = "\xe2\x96\x81"; /* U+2581 */
        for (size_t i = 0; i < n && st == LYRA_OK;) {
            size_t j = i;
            while (j < n && s[j] == ' ') j++;
            if (j - i >= 2) st = lyra_strbuf_add(out, meta, 3);
            else if (j > i) st = lyra_strbuf_add(out, " ", 1);
            else st = lyra_strbuf_add(out, s + i, 1), j = i + 1;
            i = j;
        }
    }
    lyra_strbuf_free(&tmp);
    return st;
}
