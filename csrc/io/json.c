/* Strict JSON parser behind json.h: recursive descent over a bounded buffer, DOM in one arena. */
#include "io/json.h"

#include <stdlib.h>
#include <string.h>

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct lyra_json_doc {
    arena_block *blocks;
    lyra_json *root;
};

typedef struct parser {
    const char *p, *end, *begin;
    const char *what;
    lyra_json_doc *doc;
    lyra_status status;
} parser;

static void *arena_alloc(lyra_json_doc *doc, size_t size) {
    size = (size + 15) & ~(size_t)15;
    arena_block *b = doc->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = doc->blocks;
        b->used = 0;
        b->cap = cap;
        doc->blocks = b;
    }
    void *ptr = b->data + b->used;
    b->used += size;
    return ptr;
}

static int fail(parser *ps, const char *problem) {
    if (ps->status == LYRA_OK)
        ps->status = lyra_error(LYRA_ERR_FORMAT, "%s: invalid JSON header: %s at byte %zu", ps->what,
                                problem, (size_t)(ps->p - ps->begin));
    return -1;
}

static int oom(parser *ps) {
    if (ps->status == LYRA_OK)
        ps->status = lyra_error(LYRA_ERR_OOM, "%s: out of memory while parsing the JSON header", ps->what);
    return -1;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hex4(parser *ps, unsigned *out) {
    if (ps->end - ps->p < 4) return fail(ps, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = ps->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(ps, "bad hex digit in \\u escape");
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned char *dst, unsigned cp) {
    if (cp < 0x80) { dst[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { dst[0] = (unsigned char)(0xC0 | (cp >> 6)); dst[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        dst[0] = (unsigned char)(0xE0 | (cp >> 12));
        dst[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (unsigned char)(0xF0 | (cp >> 18));
    dst[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (0 when invalid: overlong, surrogate, > U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end) {
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - s) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
}

/* Parses a string at ps->p (which points at the opening quote). */
static int parse_string(parser *ps, const char **out, size_t *out_len) {
    ps->p++; /* opening quote */
    const char *start = ps->p;
    /* Worst case the decoded form is as long as the raw text (escapes only shrink). */
    const char *q = start;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= ps->end) return fail(ps, "unterminated string");
    unsigned char *dst = arena_alloc(ps->doc, (size_t)(q - start) + 1);
    if (!dst) return oom(ps);
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) return fail(ps, "control character in string");
        if (c == '\\') {
            ps->p++;
            char e = *ps->p++;
            switch (e) {
            case '"': dst[n++] = '"'; break;
            case '\\': dst[n++] = '\\'; break;
            case '/': dst[n++] = '/'; break;
            case 'b': dst[n++] = '\b'; break;
            case 'f': dst[n++] = '\f'; break;
            case 'n': dst[n++] = '\n'; break;
            case 'r': dst[n++] = '\r'; break;
            case 't': dst[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (hex4(ps, &cp) < 0) return -1;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, "lone low surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                        return fail(ps, "high surrogate without a low surrogate");
                    ps->p += 2;
                    if (hex4(ps, &lo) < 0) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(ps, "high surrogate without a low surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                /* a \u escape is 6 raw bytes and encodes to at most 4 (a pair: 12 raw, 4 out) */
                n += put_utf8(dst + n, cp);
                break;
            }
            default: ps->p--; return fail(ps, "bad escape in string");
            }
        } else {
            size_t k = utf8_seq((const unsigned char *)ps->p, (const unsigned char *)q);
            if (k == 0) return fail(ps, "invalid UTF-8 in string");
            memcpy(dst + n, ps->p, k);
            n += k;
            ps->p += k;
        }
    }
    ps->p++; /* closing quote */
    dst[n] = '\0';
    *out = (const char *)dst;
    *out_len = n;
    return 0;
}

static int parse_number(parser *ps, lyra_json *v) {
    const char *s = ps->p;
    int neg = 0, integral = 1, overflow = 0;
    uint64_t mag = 0;
    if (ps->p < ps->end && *ps->p == '-') { neg = 1; ps->p++; }
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail(ps, "bad number");
    if (*ps->p == '0') {
        ps->p++;
    } else {
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
            unsigned d = (unsigned)(*ps->p - '0');
            if (mag > (UINT64_MAX - d) / 10) overflow = 1;
            else mag = mag * 10 + d;
            ps->p++;
        }
    }
    if (ps->p < ps->end && *ps->p == '.') {
        integral = 0;
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail(ps, "bad fraction in number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        integral = 0;
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail(ps, "bad exponent in number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    (void)s;
    v->kind = LYRA_JSON_NUMBER;
    if (integral && !overflow && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
        v->is_int = 1;
        v->integer = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
    return 0;
}

static int match_word(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return fail(ps, "unexpected character");
    ps->p += n;
    return 0;
}

/* Collected children are linked through a temporary list, then copied into an arena array. */
typedef struct child_node {
    lyra_json *v;
    struct child_node *next;
} child_node;

static int parse_value(parser *ps, lyra_json **out, int depth);

static int finish_children(parser *ps, lyra_json *v, child_node *head, size_t count) {
    v->n = count;
    if (count == 0) return 0;
    v->items = arena_alloc(ps->doc, count * sizeof *v->items);
    if (!v->items) return oom(ps);
    size_t i = 0;
    for (child_node *c = head; c; c = c->next) v->items[i++] = c->v;
    return 0;
}

static int parse_container(parser *ps, lyra_json *v, int depth, int object) {
    char close = object ? '}' : ']';
    v->kind = object ? LYRA_JSON_OBJECT : LYRA_JSON_ARRAY;
    ps->p++;
    child_node *head = NULL, *tail = NULL;
    size_t count = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        skip_ws(ps);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a string key");
            if (parse_string(ps, &key, &key_len) < 0) return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
            ps->p++;
        }
        lyra_json *child;
        if (parse_value(ps, &child, depth + 1) < 0) return -1;
        child->key = key;
        child->key_len = key_len;
        child_node *node = arena_alloc(ps->doc, sizeof *node);
        if (!node) return oom(ps);
        node->v = child;
        node->next = NULL;
        if (tail) tail->next = node;
        else head = node;
        tail = node;
        count++;
        skip_ws(ps);
        if (ps->p >= ps->end) return fail(ps, object ? "unterminated object" : "unterminated array");
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == close) { ps->p++; break; }
        return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    return finish_children(ps, v, head, count);
}

static int parse_value(parser *ps, lyra_json **out, int depth) {
    if (depth > LYRA_JSON_MAX_DEPTH) return fail(ps, "nesting too deep");
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "unexpected end of input");
    lyra_json *v = arena_alloc(ps->doc, sizeof *v);
    if (!v) return oom(ps);
    memset(v, 0, sizeof *v);
    *out = v;
    switch (*ps->p) {
    case '{': return parse_container(ps, v, depth, 1);
    case '[': return parse_container(ps, v, depth, 0);
    case '"': v->kind = LYRA_JSON_STRING; return parse_string(ps, &v->str, &v->len);
    case 't': v->kind = LYRA_JSON_BOOL; v->boolean = 1; return match_word(ps, "true");
    case 'f': v->kind = LYRA_JSON_BOOL; return match_word(ps, "false");
    case 'n': v->kind = LYRA_JSON_NULL; return match_word(ps, "null");
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps, v);
        return fail(ps, "unexpected character");
    }
}

lyra_status lyra_json_parse(const char *text, size_t len, const char *what, lyra_json_doc **out) {
    *out = NULL;
    lyra_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return lyra_error(LYRA_ERR_OOM, "%s: out of memory while parsing the JSON header", what);
    parser ps = {text, text + len, text, what, doc, LYRA_OK};
    if (parse_value(&ps, &doc->root, 0) == 0) {
        skip_ws(&ps);
        if (ps.p != ps.end) fail(&ps, "trailing characters after the value");
    }
    if (ps.status != LYRA_OK) {
        lyra_json_free(doc);
        return ps.status;
    }
    *out = doc;
    return LYRA_OK;
}

const lyra_json *lyra_json_root(const lyra_json_doc *doc) { return doc->root; }

void lyra_json_free(lyra_json_doc *doc) {
    if (!doc) return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}
