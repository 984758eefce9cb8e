/* Tensor descriptor helpers: shapes, views, dtype conversion, weight carving and binding. */
#include "core/tensor.h"

#include <stdio.h>

size_t lyra_dtype_size(lyra_dtype dtype) {
    switch (dtype) {
    case LYRA_DTYPE_F32: return 4;
    case LYRA_DTYPE_BF16: return 2;
    case LYRA_DTYPE_F16: return 2;
    case LYRA_DTYPE_I32: return 4;
    case LYRA_DTYPE_I64: return 8;
    case LYRA_DTYPE_U8: return 1;
    default: return 0;
    }
}

const char *lyra_dtype_name(lyra_dtype dtype) {
    static const char *names[] = {"f32", "bf16", "f16", "i32", "i64", "u8"};
    return (unsigned)dtype < LYRA_DTYPE_COUNT ? names[dtype] : "?";
}

lyra_tensor lyra_tensor_make(void *data, lyra_dtype dtype, int ndim, const int64_t *ne) {
    lyra_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.device = LYRA_DEVICE_CPU;
    t.ndim = ndim;
    t.data = data;
    for (int i = 0; i < LYRA_MAX_DIMS; i++) t.ne[i] = 1;
    for (int i = 0; i < ndim; i++) t.ne[i] = ne[i];
    int64_t stride = (int64_t)lyra_dtype_size(dtype);
    for (int i = LYRA_MAX_DIMS - 1; i >= 0; i--) {
        t.nb[i] = stride;
        if (i < ndim) stride *= t.ne[i];
    }
    return t;
}

lyra_tensor lyra_tensor_1d(void *data, lyra_dtype dtype, int64_t n0) {
    return lyra_tensor_make(data, dtype, 1, (int64_t[]){n0});
}
lyra_tensor lyra_tensor_2d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1) {
    return lyra_tensor_make(data, dtype, 2, (int64_t[]){n0, n1});
}
lyra_tensor lyra_tensor_3d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1, int64_t n2) {
    return lyra_tensor_make(data, dtype, 3, (int64_t[]){n0, n1, n2});
}
lyra_tensor lyra_tensor_4d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    return lyra_tensor_make(data, dtype, 4, (int64_t[]){n0, n1, n2, n3});
}
lyra_tensor lyra_tensor_5d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1, int64_t n2, int64_t n3,
                           int64_t n4) {
    return lyra_tensor_make(data, dtype, 5, (int64_t[]){n0, n1, n2, n3, n4});
}

int64_t lyra_tensor_numel(const lyra_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

size_t lyra_tensor_nbytes(const lyra_tensor *t) {
    return (size_t)lyra_tensor_numel(t) * lyra_dtype_size(t->dtype);
}

int lyra_tensor_is_contiguous(const lyra_tensor *t) {
    int64_t stride = (int64_t)lyra_dtype_size(t->dtype);
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->ne[i] != 1 && t->nb[i] != stride) return 0;
        stride *= t->ne[i];
    }
    return 1;
}

int lyra_tensor_rows_contiguous(const lyra_tensor *t) {
    if (t->ndim == 0) return 1;
    return t->ne[t->ndim - 1] == 1 || t->nb[t->ndim - 1] == (int64_t)lyra_dtype_size(t->dtype);
}

int lyra_tensor_same_shape(const lyra_tensor *a, const lyra_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return 0;
    return 1;
}

const char *lyra_tensor_shape_str(const lyra_tensor *t, char *buf, size_t size) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "(");
    for (int i = 0; i < t->ndim; i++)
        n += (size_t)snprintf(buf + n, n < size ? size - n : 0, i ? ", %lld" : "%lld", (long long)t->ne[i]);
    snprintf(buf + n, n < size ? size - n : 0, t->ndim == 1 ? ",) %s" : ") %s", lyra_dtype_name(t->dtype));
    return buf;
}

lyra_status lyra_tensor_slice(lyra_tensor *view, const lyra_tensor *t, int dim, int64_t start, int64_t end) {
    if (dim < 0) dim += t->ndim;
    if (dim < 0 || dim >= t->ndim)
        return lyra_error(LYRA_ERR_ARG, "slice: dim %d out of range for a %d-d tensor", dim, t->ndim);
    if (start < 0 || end < start || end > t->ne[dim])
        return lyra_error(LYRA_ERR_ARG, "slice: [%lld, %lld) out of range for dim %d of size %lld",
                          (long long)start, (long long)end, dim, (long long)t->ne[dim]);
    *view = *t;
    view->data = (char *)t->data + start * t->nb[dim];
    view->ne[dim] = end - start;
    return LYRA_OK;
}

lyra_status lyra_tensor_select(lyra_tensor *view, const lyra_tensor *t, int dim, int64_t index) {
    if (dim < 0) dim += t->ndim;
    if (dim < 0 || dim >= t->ndim)
        return lyra_error(LYRA_ERR_ARG, "select: dim %d out of range for a %d-d tensor", dim, t->ndim);
    if (index < 0 || index >= t->ne[dim])
        return lyra_error(LYRA_ERR_ARG, "select: index %lld out of range for dim %d of size %lld", (long long)index,
                          dim, (long long)t->ne[dim]);
    lyra_tensor v = *t;
    v.data = (char *)t->data + index * t->nb[dim];
    for (int i = dim; i < t->ndim - 1; i++) {
        v.ne[i] = t->ne[i + 1];
        v.nb[i] = t->nb[i + 1];
    }
    v.ndim = t->ndim - 1;
    v.ne[v.ndim] = 1;
    v.nb[v.ndim] = (int64_t)lyra_dtype_size(t->dtype);
    *view = v;
    return LYRA_OK;
}

lyra_status lyra_tensor_unsqueeze(lyra_tensor *view, const lyra_tensor *t, int dim) {
    if (t->ndim >= LYRA_MAX_DIMS) return lyra_error(LYRA_ERR_ARG, "unsqueeze: already %d dims", t->ndim);
    if (dim < 0) dim += t->ndim + 1;
    if (dim < 0 || dim > t->ndim)
        return lyra_error(LYRA_ERR_ARG, "unsqueeze: position %d out of range for a %d-d tensor", dim, t->ndim);
    lyra_tensor v = *t;
    for (int i = t->ndim; i > dim; i--) {
        v.ne[i] = t->ne[i - 1];
        v.nb[i] = t->nb[i - 1];
    }
    v.ne[dim] = 1;
    v.nb[dim] = dim < t->ndim ? t->nb[dim] * t->ne[dim] : (int64_t)lyra_dtype_size(t->dtype);
    v.ndim = t->ndim + 1;
    *view = v;
    return LYRA_OK;
}

lyra_status lyra_tensor_permute(lyra_tensor *view, const lyra_tensor *t, const int *perm) {
    int seen[LYRA_MAX_DIMS] = {0};
    lyra_tensor v = *t;
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= t->ndim || seen[p])
            return lyra_error(LYRA_ERR_ARG, "permute: perm is not a permutation of 0..%d", t->ndim - 1);
        seen[p] = 1;
        v.ne[i] = t->ne[p];
        v.nb[i] = t->nb[p];
    }
    *view = v;
    return LYRA_OK;
}

lyra_status lyra_tensor_reshape(lyra_tensor *view, const lyra_tensor *t, int ndim, const int64_t *ne) {
    if (!lyra_tensor_is_contiguous(t)) return lyra_error(LYRA_ERR_ARG, "reshape: tensor is not contiguous");
    if (ndim < 0 || ndim > LYRA_MAX_DIMS) return lyra_error(LYRA_ERR_ARG, "reshape: ndim %d out of range", ndim);
    int64_t shape[LYRA_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = ne[i];
        if (ne[i] == -1) {
            if (infer >= 0) return lyra_error(LYRA_ERR_ARG, "reshape: more than one -1");
            infer = i;
        } else if (ne[i] < 0) {
            return lyra_error(LYRA_ERR_ARG, "reshape: negative size %lld", (long long)ne[i]);
        } else {
            known *= ne[i];
        }
    }
    int64_t total = lyra_tensor_numel(t);
    if (infer >= 0) {
        if (known == 0 || total % known) return lyra_error(LYRA_ERR_ARG, "reshape: cannot infer the -1 size");
        shape[infer] = total / known;
        known = total;
    }
    if (known != total)
        return lyra_error(LYRA_ERR_ARG, "reshape: %lld elements cannot be viewed as %lld", (long long)total,
                          (long long)known);
    lyra_tensor v = lyra_tensor_make(t->data, t->dtype, ndim, shape);
    v.device = t->device;
    v.name = t->name;
    *view = v;
    return LYRA_OK;
}

lyra_status lyra_tensor_expand(lyra_tensor *view, const lyra_tensor *t, int ndim, const int64_t *ne) {
    if (ndim != t->ndim) return lyra_error(LYRA_ERR_ARG, "expand: ndim %d != tensor ndim %d", ndim, t->ndim);
    lyra_tensor v = *t;
    for (int i = 0; i < ndim; i++) {
        if (t->ne[i] == ne[i]) continue;
        if (t->ne[i] != 1)
            return lyra_error(LYRA_ERR_ARG, "expand: dim %d has size %lld, cannot broadcast to %lld", i,
                              (long long)t->ne[i], (long long)ne[i]);
        v.ne[i] = ne[i];
        v.nb[i] = 0;
    }
    *view = v;
    return LYRA_OK;
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float lyra_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: value = man · 2^-24 */
            float f = (float)man * (1.0f / 16777216.0f);
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lyra_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;           /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;          /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                /* below the smallest normal 2^-14 */
        if (a < 0x33000000u) return sign;                 /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;                        /* value = m · 2^(e-150); half unit 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a - 0x38000000u;                         /* rebias exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return sign | (uint16_t)(r >> 13);
}

void lyra_convert_to_f32(float *dst, const void *src, lyra_dtype src_dtype, int64_t n) {
    switch (src_dtype) {
    case LYRA_DTYPE_F32: memmove(dst, src, (size_t)n * 4); break;
    case LYRA_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src;
        for (int64_t i = 0; i < n; i++) dst[i] = lyra_bf16_to_f32(s[i]);
        break;
    }
    case LYRA_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src;
        for (int64_t i = 0; i < n; i++) dst[i] = lyra_f16_to_f32(s[i]);
        break;
    }
    default: break;
    }
}

void lyra_convert_from_f32(void *dst, lyra_dtype dst_dtype, const float *src, int64_t n) {
    switch (dst_dtype) {
    case LYRA_DTYPE_F32: memmove(dst, src, (size_t)n * 4); break;
    case LYRA_DTYPE_BF16: {
        uint16_t *d = (uint16_t *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = lyra_f32_to_bf16(src[i]);
        break;
    }
    case LYRA_DTYPE_F16: {
        uint16_t *d = (uint16_t *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = lyra_f32_to_f16(src[i]);
        break;
    }
    default: break;
    }
}

void lyra_carver_init(lyra_carver *c, void *base, size_t capacity, lyra_device device) {
    c->base = (char *)base;
    c->capacity = capacity;
    c->used = 0;
    c->device = device;
}

lyra_status lyra_carve(lyra_carver *c, lyra_tensor *t, const char *name, lyra_dtype dtype, int ndim,
                       const int64_t *ne) {
    size_t off = (c->used + LYRA_CARVE_ALIGN - 1) & ~(size_t)(LYRA_CARVE_ALIGN - 1);
    *t = lyra_tensor_make(NULL, dtype, ndim, ne);
    t->name = name;
    t->device = c->device;
    size_t bytes = lyra_tensor_nbytes(t);
    if (c->base && off + bytes > c->capacity)
        return lyra_error(LYRA_ERR_OOM, "carving weight '%s': needs %zu bytes at offset %zu, capacity %zu",
                          name ? name : "?", bytes, off, c->capacity);
    t->data = c->base ? c->base + off : NULL;
    c->used = off + bytes;
    return LYRA_OK;
}

lyra_status lyra_weights_bind(lyra_weight_slot *slots, int n_slots, lyra_tensor_lookup_fn lookup, void *source) {
    for (int s = 0; s < n_slots; s++) {
        lyra_weight_slot *w = &slots[s];
        const lyra_tensor *t = lookup(source, w->name);
        if (!t) {
            if (w->optional) {
                memset(w->dst, 0, sizeof *w->dst);
                continue;
            }
            return lyra_error(LYRA_ERR_FORMAT, "weights: tensor '%s' is missing from the checkpoint", w->name);
        }
        int ok = t->ndim == w->ndim;
        for (int i = 0; ok && i < w->ndim; i++) ok = w->ne[i] < 0 || w->ne[i] == t->ne[i];
        if (!ok) {
            lyra_tensor want = lyra_tensor_make(NULL, t->dtype, w->ndim, w->ne);
            char got_s[96], want_s[96];
            return lyra_error(LYRA_ERR_FORMAT, "weights: tensor '%s' has shape %s, expected %s", w->name,
                              lyra_tensor_shape_str(t, got_s, sizeof got_s),
                              lyra_tensor_shape_str(&want, want_s, sizeof want_s));
        }
        *w->dst = *t;
        w->dst->name = w->name;
    }
    return LYRA_OK;
}
