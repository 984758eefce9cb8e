/* Prompt cleaning (see text_clean.h). Each step is a pass from one buffer into another. */
#include "models/text_clean.h"

#include <stdint.h>

#include "models/clean_tables.h"
#include "models/spm_model.h"
#include "models/strbuf.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Value of entity `name` (n bytes) in a table sorted by name bytes, or NULL. */
static const char *entity_find(const lyra_entity *tab, size_t count, const char *name, size_t n) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *k = tab[mid].name;
        size_t kl = strlen(k);
        int c = memcmp(name, k, n < kl ? n : kl);
        if (c == 0) c = n < kl ? -1 : n > kl;
        if (c == 0) return tab[mid].value;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

static int is_alnum(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

static lyra_status add_cp(lyra_strbuf *b, uint32_t cp) {
    char u[4];
    return lyra_strbuf_add(b, u, (size_t)lyra_utf8_encode(cp, u));
}

/* html.unescape's numeric reference (digits in s[0..n), hex or decimal) -> text (html/__init__.py). */
static lyra_status charref(const char *s, size_t n, int hex, lyra_strbuf *out) {
    uint64_t num = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = is_digit(s[i]) ? (unsigned)(s[i] - '0') : (unsigned)((s[i] | 0x20) - 'a' + 10);
        num = num * (hex ? 16u : 10u) + d;
        if (num > 0x110000) num = 0x110000; /* any larger value is replaced the same way */
    }
    for (size_t i = 0; i < N_OF(lyra_html_invalid_charrefs); i++)
        if (lyra_html_invalid_charrefs[i].cp == num)
            return lyra_strbuf_add(out, lyra_html_invalid_charrefs[i].value, strlen(lyra_html_invalid_charrefs[i].value));
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return add_cp(out, 0xfffd);
    for (size_t i = 0; i < N_OF(lyra_html_invalid_codepoints); i++)
        if (lyra_html_invalid_codepoints[i] == num) return LYRA_OK;
    return add_cp(out, (uint32_t)num);
}

/* Python's html.unescape: &#N; &#xN; (';' optional) and named references, where a name without ';'
 * falls back to its longest prefix that is an entity (the legacy names such as "&ampx"). */
static lyra_status html_unescape(const char *s, size_t n, lyra_strbuf *out) {
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            LYRA_TRY(lyra_strbuf_add(out, s + i, 1));
            i++;
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            int hex = j + 1 < n && (s[j + 1] | 0x20) == 'x';
            size_t d = j + 1 + (size_t)hex, e = d;
            while (e < n && (hex ? is_hex(s[e]) : is_digit(s[e]))) e++;
            if (e > d) {
                LYRA_TRY(charref(s + d, e - d, hex, out));
                i = e + (e < n && s[e] == ';');
                continue;
            }
        } else {
            /* [^\t\n\f <&#;]{1,32};? counted in code points */
            size_t e = j, chars = 0;
            while (e < n && chars < 32 && !strchr("\t\n\f <&#;", s[e])) {
                int l = lyra_utf8_char_len((const uint8_t *)s + e, n - e);
                e += (size_t)(l ? l : 1);
                chars++;
            }
            if (chars > 0) {
                size_t end = e + (e < n && s[e] == ';');
                const char *v = entity_find(lyra_html5, N_OF(lyra_html5), s + j, end - j);
                size_t x = end - j;
                while (!v && x > 2) { /* longest prefix s[j..j+x), x from len-1 down to 2 (characters) */
                    x--;
                    while (x > 2 && ((uint8_t)s[j + x] & 0xc0) == 0x80) x--;
                    v = entity_find(lyra_html5, N_OF(lyra_html5), s + j, x);
                }
                if (v) {
                    LYRA_TRY(lyra_strbuf_add(out, v, strlen(v)));
                    i = j + x;
                    continue;
                }
            }
        }
        LYRA_TRY(lyra_strbuf_add(out, "&", 1));
        i++;
    }
    return LYRA_OK;
}

/* ftfy.fixes.unescape_html: only whole "&#?[0-9A-Za-z]{1,24};" references; a numeric one must be
 * consumed entirely by html.unescape. */
static lyra_status ftfy_unescape(const char *s, size_t n, lyra_strbuf *out) {
    for (size_t i = 0; i < n;) {
        if (s[i] == '&') {
            size_t j = i + 1 + (i + 1 < n && s[i + 1] == '#'), e = j;
            while (e < n && is_alnum(s[e]) && e - j < 25) e++;
            if (e > j && e - j <= 24 && e < n && s[e] == ';') {
                const char *name = s + i + 1;
                size_t nl = e + 1 - (i + 1);
                const char *v = entity_find(lyra_html5, N_OF(lyra_html5), name, nl);
                if (!v) v = entity_find(lyra_ftfy_upper, N_OF(lyra_ftfy_upper), name, nl);
                if (!v || s[i + 1] == '#') v = NULL;
                if (v) {
                    LYRA_TRY(lyra_strbuf_add(out, v, strlen(v)));
                    i = e + 1;
                    continue;
                }
                if (s[i + 1] == '#') {
                    lyra_strbuf tmp = {0};
                    lyra_status st = html_unescape(s + i, e + 1 - i, &tmp);
                    int ok = st == LYRA_OK && !(tmp.len && memchr(tmp.data, ';', tmp.len));
                    if (ok) st = lyra_strbuf_add(out, tmp.data ? tmp.data : "", tmp.len);
                    lyra_strbuf_free(&tmp);
                    LYRA_TRY(st);
                    if (ok) {
                        i = e + 1;
                        continue;
                    }
                }
            }
        }
        LYRA_TRY(lyra_strbuf_add(out, s + i, 1));
        i++;
    }
    return LYRA_OK;
}

static const struct { uint32_t cp; const char *to; } ligatures[] = {
    {0x0132, "IJ"}, {0x0133, "ij"}, {0x0149, "\xca\xbcn"}, {0x01f1, "DZ"}, {0x01f2, "Dz"}, {0x01f3, "dz"},
    {0x01c4, "D\xc5\xbd"}, {0x01c5, "D\xc5\xbe"}, {0x01c6, "d\xc5\xbe"}, {0x01c7, "LJ"}, {0x01c8, "Lj"},
    {0x01c9, "lj"}, {0x01ca, "NJ"}, {0x01cb, "Nj"}, {0x01cc, "nj"}, {0xfb00, "ff"}, {0xfb01, "fi"},
    {0xfb02, "fl"}, {0xfb03, "ffi"}, {0xfb04, "ffl"}, {0xfb05, "\xc5\xbft"}, {0xfb06, "st"},
};

/* uncurl_quotes on one code point. */
static lyra_status add_quote_fixed(lyra_strbuf *out, uint32_t cp) {
    if (cp == 0x02bc || (cp >= 0x2018 && cp <= 0x201b)) return lyra_strbuf_add(out, "'", 1);
    if (cp >= 0x201c && cp <= 0x201f) return lyra_strbuf_add(out, "\"", 1);
    return add_cp(out, cp);
}

/* fix_character_width then uncurl_quotes on one code point. */
static lyra_status add_width_fixed(lyra_strbuf *out, uint32_t cp) {
    const char *w = cp == 0x3000 ? " " : cp >= 0xff01 && cp < 0xfff0 ? lyra_width[cp - 0xff01] : NULL;
    if (!w) return add_quote_fixed(out, cp);
    for (const uint8_t *p = (const uint8_t *)w; *p;) {
        int l = lyra_utf8_char_len(p, strlen((const char *)p));
        LYRA_TRY(add_quote_fixed(out, lyra_utf8_decode(p, l)));
        p += l;
    }
    return LYRA_OK;
}

/* The per-character fixers in ftfy's order: C1 controls, ligatures, width, quotes. */
static lyra_status map_chars(const char *s, size_t n, lyra_strbuf *out) {
    for (size_t i = 0; i < n;) {
        int l = lyra_utf8_char_len((const uint8_t *)s + i, n - i);
        uint32_t cp = lyra_utf8_decode((const uint8_t *)s + i, l);
        i += (size_t)l;
        if (cp >= 0x80 && cp <= 0x9f) cp = lyra_cp1252[cp - 0x80];
        const char *lig = NULL;
        for (size_t k = 0; k < N_OF(ligatures) && !lig; k++)
            if (ligatures[k].cp == cp) lig = ligatures[k].to;
        if (!lig) {
            LYRA_TRY(add_width_fixed(out, cp));
            continue;
        }
        for (const uint8_t *p = (const uint8_t *)lig; *p;) {
            int m = lyra_utf8_char_len(p, strlen((const char *)p));
            LYRA_TRY(add_width_fixed(out, lyra_utf8_decode(p, m)));
            p += m;
        }
    }
    return LYRA_OK;
}

/* fix_line_breaks, remove_terminal_escapes ("\033[" [0-9;]* [A-Za-z]), remove_control_chars. */
static lyra_status breaks_escapes_controls(const char *s, size_t n, lyra_strbuf *out) {
    lyra_strbuf a = {0};
    lyra_status st = LYRA_OK;
    for (size_t i = 0; i < n && st == LYRA_OK;) {
        int l = lyra_utf8_char_len((const uint8_t *)s + i, n - i);
        uint32_t cp = lyra_utf8_decode((const uint8_t *)s + i, l);
        if (cp == '\r' && i + 1 < n && s[i + 1] == '\n') l = 2, cp = '\n';
        if (cp == '\r' || cp == 0x2028 || cp == 0x2029 || cp == 0x85) cp = '\n';
        st = add_cp(&a, cp);
        i += (size_t)l;
    }
    for (size_t i = 0; i < a.len && st == LYRA_OK;) {
        if (a.data[i] == 0x1b && i + 1 < a.len && a.data[i + 1] == '[') {
            size_t e = i + 2;
            while (e < a.len && (is_digit(a.data[e]) || a.data[e] == ';')) e++;
            if (e < a.len && ((a.data[e] | 0x20) >= 'a' && (a.data[e] | 0x20) <= 'z')) {
                i = e + 1;
                continue;
            }
        }
        int l = lyra_utf8_char_len((const uint8_t *)a.data + i, a.len - i);
        uint32_t cp = lyra_utf8_decode((const uint8_t *)a.data + i, l);
        int drop = cp <= 0x08 || cp == 0x0b || (cp >= 0x0e && cp <= 0x1f) || cp == 0x7f ||
                   (cp >= 0x206a && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffc);
        if (!drop) st = lyra_strbuf_add(out, a.data + i, (size_t)l);
        i += (size_t)l;
    }
    lyra_strbuf_free(&a);
    return st;
}

/* One line through ftfy's fixers, repeated until it stops changing (fix_and_explain). */
static lyra_status fix_line(const char *s, size_t n, int html, lyra_strbuf *out) {
    lyra_strbuf cur = {0}, a = {0}, b = {0};
    lyra_status st = lyra_strbuf_add(&cur, s, n);
    for (int round = 0; st == LYRA_OK; round++) {
        a.len = b.len = 0;
        if (html) st = ftfy_unescape(cur.data, cur.len, &a);
        else st = lyra_strbuf_add(&a, cur.data, cur.len);
        if (st == LYRA_OK) st = map_chars(a.data, a.len, &b);
        a.len = 0;
        if (st == LYRA_OK) st = breaks_escapes_controls(b.data, b.len, &a);
        if (st != LYRA_OK) break;
        int same = a.len == cur.len && memcmp(a.data, cur.data, a.len) == 0;
        lyra_strbuf t = cur;
        cur = a;
        a = t;
        if (same || round > 64) break; /* every fixer only shrinks or settles; 64 is a safety net */
    }
    if (st == LYRA_OK) st = lyra_strbuf_add(out, cur.data, cur.len);
    lyra_strbuf_free(&cur);
    lyra_strbuf_free(&a);
    lyra_strbuf_free(&b);
    return st;
}

/* str.isspace() (strip) and the `regex` module's \s (the collapse): both are White_Space, plus
 * U+001C..U+001F for isspace, which ftfy has removed already. */
static int is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

static lyra_status collapse_whitespace(const char *s, size_t n, lyra_strbuf *out) {
    int pending = 0;
    for (size_t i = 0; i < n;) {
        int l = lyra_utf8_char_len((const uint8_t *)s + i, n - i);
        if (is_space(lyra_utf8_decode((const uint8_t *)s + i, l))) {
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

static lyra_status clean(const char *in, size_t len, lyra_strbuf *out) {
    for (size_t i = 0; i < len;) {
        int l = lyra_utf8_char_len((const uint8_t *)in + i, len - i);
        if (!l) return lyra_error(LYRA_ERR_ARG, "text is not valid UTF-8 (byte %zu)", i);
        i += (size_t)l;
    }
    lyra_strbuf a = {0}, b = {0};
    lyra_status st = LYRA_OK;
    int html = 1;
    for (size_t i = 0; i < len && st == LYRA_OK;) {
        const char *nl = memchr(in + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - in) + 1 : len;
        if (memchr(in + i, '<', e - i)) html = 0; /* ftfy: and for every later line too */
        st = fix_line(in + i, e - i, html, &a);
        i = e;
    }
    if (st == LYRA_OK) st = html_unescape(a.data, a.len, &b);
    a.len = 0;
    if (st == LYRA_OK) st = html_unescape(b.data, b.len, &a);
    if (st == LYRA_OK) st = collapse_whitespace(a.data, a.len, out);
    lyra_strbuf_free(&a);
    lyra_strbuf_free(&b);
    return st;
}

lyra_status lyra_text_clean(const char *in, size_t len, char **out, size_t *out_len) {
    lyra_strbuf b = {0};
    lyra_status st = clean(in, len, &b);
    if (st == LYRA_OK) st = lyra_strbuf_add(&b, "", 0); /* always a NUL-terminated buffer */
    if (st != LYRA_OK) {
        lyra_strbuf_free(&b);
        return st;
    }
    *out = b.data;
    *out_len = b.len;
    return LYRA_OK;
}
