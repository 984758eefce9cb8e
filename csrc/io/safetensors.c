/* safetensors reader: header validation (see safetensors.h for the rules) and dtype conversion. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[LYRA_ST_DTYPE_COUNT] = {
    [LYRA_ST_BOOL] = {"BOOL", 1}, [LYRA_ST_U8] = {"U8", 1},   [LYRA_ST_I8] = {"I8", 1},
    [LYRA_ST_I16] = {"I16", 2},   [LYRA_ST_U16] = {"U16", 2}, [LYRA_ST_F16] = {"F16", 2},
    [LYRA_ST_BF16] = {"BF16", 2}, [LYRA_ST_I32] = {"I32", 4}, [LYRA_ST_U32] = {"U32", 4},
    [LYRA_ST_F32] = {"F32", 4},   [LYRA_ST_F64] = {"F64", 8}, [LYRA_ST_I64] = {"I64", 8},
    [LYRA_ST_U64] = {"U64", 8},   [LYRA_ST_F8_E4M3] = {"F8_E4M3", 1}, [LYRA_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *lyra_st_dtype_name(lyra_st_dtype dtype) {
    return (unsigned)dtype < LYRA_ST_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

size_t lyra_st_dtype_size(lyra_st_dtype dtype) {
    return (unsigned)dtype < LYRA_ST_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

int lyra_st_dtype_from_name(const char *name) {
    for (int i = 0; i < LYRA_ST_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) return i;
    return -1;
}

/* ---- header validation ---------------------------------------------------------------------- */

typedef struct key_ref {
    const char *key;
    size_t len;
} key_ref;

static int key_cmp(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}


static int range_cmp_ctx(const lyra_st_tensor *t, size_t a, size_t b) {
    if (t[a].offset != t[b].offset) return t[a].offset < t[b].offset ? -1 : 1;
    if (t[a].nbytes != t[b].nbytes) return t[a].nbytes < t[b].nbytes ? -1 : 1;
    return (a > b) - (a < b);
}

static int name_cmp_ctx(const lyra_st_tensor *t, size_t a, size_t b) { return strcmp(t[a].name, t[b].name); }

/* A small merge sort of indices with a comparison context (qsort_r is not portable C11). */
static void sort_indices(size_t *idx, size_t *tmp, size_t n, const lyra_st_tensor *t,
                         int (*cmp)(const lyra_st_tensor *, size_t, size_t)) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_indices(idx, tmp, h, t, cmp);
    sort_indices(idx + h, tmp, n - h, t, cmp);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(t, idx[i], idx[j]) <= 0 ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

static lyra_status parse_tensor(lyra_st_file *f, const lyra_json *v, lyra_st_tensor *t, size_t header_end) {
    const char *path = f->path, *name = v->key;
    if (v->kind != LYRA_JSON_OBJECT)
        return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': entry is not a JSON object", path, name);
    const lyra_json *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const lyra_json *m = v->items[i];
        const lyra_json **slot = NULL;
        if (strcmp(m->key, "dtype") == 0) slot = &dtype;
        else if (strcmp(m->key, "shape") == 0) slot = &shape;
        else if (strcmp(m->key, "data_offsets") == 0) slot = &offsets;
        if (!slot || strlen(m->key) != m->key_len)
            return lyra_error(LYRA_ERR_FORMAT,
                              "%s: tensor '%.200s': unknown field '%.100s' (allowed: dtype, shape, data_offsets)",
                              path, name, m->key);
        if (*slot)
            return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': field '%s' appears twice", path, name, m->key);
        *slot = m;
    }
    if (!dtype || !shape || !offsets)
        return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': missing field '%s'", path, name,
                          !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    int code = dtype->kind == LYRA_JSON_STRING && strlen(dtype->str) == dtype->len ? lyra_st_dtype_from_name(dtype->str) : -1;
    if (code < 0)
        return lyra_error(LYRA_ERR_FORMAT,
                          "%s: tensor '%.200s': unknown dtype %s%.40s%s (allowed: BOOL, U8, I8, I16, U16, F16, BF16, "
                          "I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2)",
                          path, name, dtype->kind == LYRA_JSON_STRING ? "'" : "",
                          dtype->kind == LYRA_JSON_STRING ? dtype->str : "(not a string)",
                          dtype->kind == LYRA_JSON_STRING ? "'" : "");
    t->dtype = (lyra_st_dtype)code;
    if (shape->kind != LYRA_JSON_ARRAY)
        return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': shape is not a list of integers", path, name);
    if (shape->n > LYRA_ST_MAX_DIMS)
        return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': shape has %zu dims (at most %d supported)", path,
                          name, shape->n, LYRA_ST_MAX_DIMS);
    t->ndim = (int)shape->n;
    size_t numel = 1;
    for (size_t d = 0; d < shape->n; d++) {
        const lyra_json *s = shape->items[d];
        if (s->kind != LYRA_JSON_NUMBER || !s->is_int || s->integer < 0)
            return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': shape[%zu] is not a non-negative integer", path,
                              name, d);
        t->shape[d] = s->integer;
        if ((uint64_t)s->integer > SIZE_MAX || __builtin_mul_overflow(numel, (size_t)s->integer, &numel))
            return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': shape overflows the element count", path, name);
    }
    t->numel = numel;
    if (__builtin_mul_overflow(numel, lyra_st_dtype_size(t->dtype), &t->nbytes))
        return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': shape overflows the byte count", path, name);
    if (offsets->kind != LYRA_JSON_ARRAY || offsets->n != 2 || offsets->items[0]->kind != LYRA_JSON_NUMBER ||
        offsets->items[1]->kind != LYRA_JSON_NUMBER || !offsets->items[0]->is_int || !offsets->items[1]->is_int ||
        offsets->items[0]->integer < 0 || offsets->items[1]->integer < 0)
        return lyra_error(LYRA_ERR_FORMAT,
                          "%s: tensor '%.200s': data_offsets is not a pair of non-negative integers [begin, end]",
                          path, name);
    uint64_t begin = (uint64_t)offsets->items[0]->integer, end = (uint64_t)offsets->items[1]->integer;
    uint64_t data_size = f->size - header_end;
    if (begin > end)
        return lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s': data_offsets [%llu, %llu] has begin > end", path,
                          name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return lyra_error(LYRA_ERR_FORMAT,
                          "%s: tensor '%.200s': data_offsets [%llu, %llu] run past the end of the data area "
                          "(%llu bytes; file truncated?)",
                          path, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)data_size);
    if (end - begin != t->nbytes) {
        char dims[160] = "";
        size_t k = 0;
        for (int d = 0; d < t->ndim && k < sizeof dims - 24; d++)
            k += (size_t)snprintf(dims + k, sizeof dims - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
        return lyra_error(LYRA_ERR_FORMAT,
                          "%s: tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s x shape [%s] "
                          "needs %zu",
                          path, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)(end - begin), lyra_st_dtype_name(t->dtype), dims, t->nbytes);
    }
    t->offset = header_end + (size_t)begin;
    t->data = f->base + t->offset;
    t->name = name;
    return LYRA_OK;
}

static lyra_status parse_metadata(lyra_st_file *f, const lyra_json *v) {
    if (v->kind != LYRA_JSON_OBJECT)
        return lyra_error(LYRA_ERR_FORMAT, "%s: __metadata__ is not a JSON object of strings", f->path);
    f->meta_keys = calloc(v->n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc(v->n + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return lyra_error(LYRA_ERR_OOM, "%s: out of memory", f->path);
    for (size_t i = 0; i < v->n; i++) {
        const lyra_json *m = v->items[i];
        if (m->kind != LYRA_JSON_STRING)
            return lyra_error(LYRA_ERR_FORMAT, "%s: __metadata__ entry '%.200s' is not a string", f->path, m->key);
        if (strlen(m->key) != m->key_len || strlen(m->str) != m->len)
            return lyra_error(LYRA_ERR_FORMAT, "%s: __metadata__ entry '%.200s' contains a NUL character", f->path,
                              m->key);
        f->meta_keys[i] = m->key;
        f->meta_values[i] = m->str;
    }
    f->n_meta = v->n;
    return LYRA_OK;
}

static lyra_status parse_header(lyra_st_file *f) {
    if (f->size < 8)
        return lyra_error(LYRA_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file (needs an 8-byte header "
                          "length first)", f->path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->base[i];
    if (n > LYRA_ST_MAX_HEADER)
        return lyra_error(LYRA_ERR_FORMAT, "%s: header length %llu exceeds the %llu-byte cap (corrupt, or not a "
                          "safetensors file)", f->path, (unsigned long long)n, (unsigned long long)LYRA_ST_MAX_HEADER);
    if (n > f->size - 8)
        return lyra_error(LYRA_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes; "
                          "truncated?)", f->path, (unsigned long long)n, f->size);
    if (n < 2 || f->base[8] != '{')
        return lyra_error(LYRA_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file)", f->path);
    lyra_json_doc *doc;
    LYRA_TRY(lyra_json_parse((const char *)f->base + 8, (size_t)n, f->path, &doc));
    f->json = doc;
    const lyra_json *root = lyra_json_root(doc);
    if (root->kind != LYRA_JSON_OBJECT)
        return lyra_error(LYRA_ERR_FORMAT, "%s: header is not a JSON object", f->path);

    /* Duplicate member names: sort (name, length) pairs. */
    key_ref *keys = malloc((root->n + 1) * sizeof *keys);
    if (!keys) return lyra_error(LYRA_ERR_OOM, "%s: out of memory", f->path);
    for (size_t i = 0; i < root->n; i++) keys[i] = (key_ref){root->items[i]->key, root->items[i]->key_len};
    qsort(keys, root->n, sizeof *keys, key_cmp);
    for (size_t i = 1; i < root->n; i++) {
        if (key_cmp(&keys[i - 1], &keys[i]) == 0) {
            lyra_status s = lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s' is listed twice in the header", f->path,
                                       keys[i].key);
            free(keys);
            return s;
        }
    }
    free(keys);

    size_t header_end = 8 + (size_t)n;
    f->tensors = calloc(root->n + 1, sizeof *f->tensors);
    f->sorted = calloc(root->n + 1, sizeof *f->sorted);
    size_t *tmp = calloc(root->n + 1, sizeof *tmp);
    if (!f->tensors || !f->sorted || !tmp) {
        free(tmp);
        return lyra_error(LYRA_ERR_OOM, "%s: out of memory", f->path);
    }
    lyra_status s = LYRA_OK;
    for (size_t i = 0; i < root->n && s == LYRA_OK; i++) {
        const lyra_json *m = root->items[i];
        if (strcmp(m->key, "__metadata__") == 0 && m->key_len == 12) {
            s = parse_metadata(f, m);
            continue;
        }
        if (strlen(m->key) != m->key_len) {
            s = lyra_error(LYRA_ERR_FORMAT, "%s: a tensor name contains a NUL character", f->path);
            break;
        }
        s = parse_tensor(f, m, &f->tensors[f->n_tensors], header_end);
        if (s == LYRA_OK) f->n_tensors++;
    }
    if (s == LYRA_OK) {
        /* Tiling: sorted by begin offset, each range starts where the previous one ended. */
        const lyra_st_tensor *t = f->tensors;
        for (size_t i = 0; i < f->n_tensors; i++) f->sorted[i] = i;
        sort_indices(f->sorted, tmp, f->n_tensors, t, range_cmp_ctx);
        size_t expected = header_end;
        const char *prev = NULL;
        for (size_t k = 0; k < f->n_tensors && s == LYRA_OK; k++) {
            const lyra_st_tensor *c = &t[f->sorted[k]];
            if (c->offset < expected)
                s = lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s' overlaps tensor '%.200s' in the data area",
                               f->path, c->name, prev ? prev : "?");
            else if (c->offset > expected)
                s = lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%.200s' starts %zu bytes after the previous tensor "
                               "ends (gaps are not allowed)", f->path, c->name, c->offset - expected);
            expected = c->offset + c->nbytes;
            prev = c->name;
        }
        if (s == LYRA_OK && expected != f->size)
            s = lyra_error(LYRA_ERR_FORMAT, "%s: %zu bytes at the end of the file belong to no tensor", f->path,
                           f->size - expected);
        if (s == LYRA_OK) {
            for (size_t i = 0; i < f->n_tensors; i++) f->sorted[i] = i;
            sort_indices(f->sorted, tmp, f->n_tensors, t, name_cmp_ctx);
        }
    }
    free(tmp);
    return s;
}

static lyra_status init_file(const char *what, lyra_st_file **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return lyra_error(LYRA_ERR_OOM, "%s: out of memory", what);
    (*out)->path = strdup(what);
    if (!(*out)->path) {
        free(*out);
        *out = NULL;
        return lyra_error(LYRA_ERR_OOM, "%s: out of memory", what);
    }
    return LYRA_OK;
}

lyra_status lyra_st_parse(const uint8_t *buf, size_t size, const char *what, lyra_st_file **out) {
    lyra_st_file *f;
    LYRA_TRY(init_file(what, &f));
    f->base = buf;
    f->size = size;
    lyra_status s = parse_header(f);
    if (s != LYRA_OK) {
        lyra_st_close(f);
        f = NULL;
    }
    *out = f;
    return s;
}

lyra_status lyra_st_open(const char *path, lyra_st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lyra_error(LYRA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lyra_error(LYRA_ERR_IO, "%s: not a regular file", path);
    }
    lyra_st_file *f;
    lyra_status s = init_file(path, &f);
    if (s != LYRA_OK) {
        close(fd);
        return s;
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            s = lyra_error(LYRA_ERR_IO, "%s: cannot map %zu bytes: %s", path, f->size, strerror(errno));
            close(fd);
            lyra_st_close(f);
            return s;
        }
        f->base = map;
        f->mapped = 1;
    } else {
        f->base = (const uint8_t *)"";
    }
    close(fd);
    s = parse_header(f);
    if (s != LYRA_OK) {
        lyra_st_close(f);
        return s;
    }
    *out = f;
    return LYRA_OK;
}

void lyra_st_close(lyra_st_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    lyra_json_free(f->json);
    free(f->tensors);
    free(f->sorted);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f);
}

const lyra_st_tensor *lyra_st_find(const lyra_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->sorted[mid]].name, name);
        if (c == 0) return &f->tensors[f->sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- conversions ------------------------------------------------------------------------------ */

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

void lyra_st_bf16_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *s = src;
#pragma omp parallel for if (n > (1u << 18)) schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits((uint32_t)(s[2 * i] | (s[2 * i + 1] << 8)) << 16);
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (man << 13)); /* inf / NaN (payload kept) */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

void lyra_st_f16_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *s = src;
#pragma omp parallel for if (n > (1u << 18)) schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = half_to_float((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
}

void lyra_st_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
#pragma omp parallel for if (n > (1u << 18)) schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) dst[i] = (uint16_t)((u >> 16) | 0x0040); /* quiet NaN */
        else dst[i] = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
}

lyra_status lyra_st_read_f32(const lyra_st_file *f, const lyra_st_tensor *t, float *out) {
    const uint8_t *s = t->data;
    size_t n = t->numel;
    switch (t->dtype) {
    case LYRA_ST_BF16: lyra_st_bf16_to_f32(s, out, n); return LYRA_OK;
    case LYRA_ST_F16: lyra_st_f16_to_f32(s, out, n); return LYRA_OK;
    case LYRA_ST_F32: memcpy(out, s, n * 4); return LYRA_OK;
    default: break;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = s + i * lyra_st_dtype_size(t->dtype);
        switch (t->dtype) {
        case LYRA_ST_BOOL: out[i] = p[0] ? 1.0f : 0.0f; break;
        case LYRA_ST_U8: out[i] = (float)p[0]; break;
        case LYRA_ST_I8: out[i] = (float)(int8_t)p[0]; break;
        case LYRA_ST_I16: { int16_t v; memcpy(&v, p, 2); out[i] = (float)v; break; }
        case LYRA_ST_U16: { uint16_t v; memcpy(&v, p, 2); out[i] = (float)v; break; }
        case LYRA_ST_I32: { int32_t v; memcpy(&v, p, 4); out[i] = (float)v; break; }
        case LYRA_ST_U32: { uint32_t v; memcpy(&v, p, 4); out[i] = (float)v; break; }
        case LYRA_ST_I64: { int64_t v; memcpy(&v, p, 8); out[i] = (float)v; break; }
        case LYRA_ST_U64: { uint64_t v; memcpy(&v, p, 8); out[i] = (float)v; break; }
        case LYRA_ST_F64: { double v; memcpy(&v, p, 8); out[i] = (float)v; break; }
        default:
            return lyra_error(LYRA_ERR_UNSUPPORTED, "%s: tensor '%.200s': dtype %s cannot be converted to float32",
                              f->path, t->name, lyra_st_dtype_name(t->dtype));
        }
    }
    return LYRA_OK;
}
