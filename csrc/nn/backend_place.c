/* Moving a network's carved host weight block to its device backend (nn/backend.h lyra_backend_place_weights):
 * the networks' one upload point for their weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

lyra_status lyra_backend_place_weights(lyra_backend *be, void **mem, lyra_tensor *const *tensors, int n,
                                       const char *what) {
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    const char *lo = *mem;
    size_t bytes = 0; /* the carved block ends at the end of its last tensor */
    for (int i = 0; i < n; i++) {
        const char *p = tensors[i]->data;
        if (!p) continue;
        LYRA_ASSERT(p >= lo);
        size_t end = (size_t)(p - lo) + lyra_tensor_nbytes(tensors[i]);
        if (end > bytes) bytes = end;
    }
    void *dev = be->ops->alloc(be, bytes ? bytes : 1);
    if (!dev) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        return lyra_error(LYRA_ERR_OOM, "%s: cannot place %zu bytes (%.2f GiB) of weights on the %s device (%s)", what,
                          bytes, (double)bytes / (1 << 30), be->ops->name, why);
    }
    if (bytes) {
        lyra_tensor h = lyra_tensor_1d(*mem, LYRA_DTYPE_U8, (int64_t)bytes), d = h;
        h.name = d.name = what;
        d.data = dev;
        d.device = be->device;
        lyra_status st = lyra_op_upload(be, &d, &h);
        if (st != LYRA_OK) {
            be->ops->release(be, dev);
            return st;
        }
    }
    for (int i = 0; i < n; i++) {
        lyra_tensor *t = tensors[i];
        const char *p = t->data;
        if (!p) continue;
        t->data = (char *)dev + (p - lo);
        t->device = be->device;
    }
    free(*mem);
    *mem = dev;
    return LYRA_OK;
}

/* ---- placement with a storage dtype per tensor ---- */

typedef struct placed {
    const char *lo;     /* the tensor's bytes in the host block */
    size_t bytes;
    int index;
} placed;

static int by_address(const void *a, const void *b) {
    const placed *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Copies n elements of `src` (dtype sd) into `dst` (dtype dd), through an f32 buffer of `chunk` elements when the
 * dtypes differ; f32 -> 16-bit rounds to nearest even, as torch's .to(). */
static void convert(void *dst, lyra_dtype dd, const void *src, lyra_dtype sd, int64_t n, float *buf, int64_t chunk) {
    if (dd == sd) {
        memcpy(dst, src, (size_t)n * lyra_dtype_size(sd));
        return;
    }
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t k = n - i < chunk ? n - i : chunk;
        const char *s = (const char *)src + i * (int64_t)lyra_dtype_size(sd);
        char *d = (char *)dst + i * (int64_t)lyra_dtype_size(dd);
        if (sd == LYRA_DTYPE_F32) {
            lyra_convert_from_f32(d, dd, (const float *)s, k);
        } else {
            lyra_convert_to_f32(buf, s, sd, k);
            lyra_convert_from_f32(d, dd, buf, k);
        }
    }
}

/* The device layout of the tensors stored as dtypes: one after the other in address order, each from a
 * LYRA_CARVE_ALIGN boundary, so two that share bytes (a view of another) cannot follow. *order (the m tensors with
 * data, by address; NULL after an OOM) and *offset ([n]: each tensor's byte offset) are the caller's to free. */
static lyra_status relayout(lyra_tensor *const *tensors, const lyra_dtype *dtypes, int n, const char *what,
                            placed **order_out, size_t **offset_out, int *m_out, size_t *total_out) {
    placed *order = malloc(sizeof *order * (size_t)(n ? n : 1));
    size_t *offset = malloc(sizeof *offset * (size_t)(n ? n : 1));
    *order_out = order;
    *offset_out = offset;
    *m_out = 0;
    *total_out = 0;
    if (!order || !offset) {
        free(order);
        free(offset);
        *order_out = NULL;
        *offset_out = NULL;
        return lyra_error(LYRA_ERR_OOM, "%s: out of host memory", what);
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (tensors[i]->data) order[m++] = (placed){tensors[i]->data, lyra_tensor_nbytes(tensors[i]), i};
    qsort(order, (size_t)m, sizeof *order, by_address);
    size_t total = 0;
    lyra_status st = LYRA_OK;
    for (int j = 0; j < m; j++) {
        if (j && order[j].lo < order[j - 1].lo + order[j - 1].bytes)
            st = lyra_error(LYRA_ERR_INTERNAL, "%s: weight tensors %d and %d share memory; they cannot be converted "
                            "one by one", what, order[j - 1].index, order[j].index);
        const lyra_tensor *t = tensors[order[j].index];
        offset[order[j].index] = total;
        total += (size_t)lyra_tensor_numel(t) * lyra_dtype_size(dtypes[order[j].index]);
        total = (total + LYRA_CARVE_ALIGN - 1) & ~(size_t)(LYRA_CARVE_ALIGN - 1);
    }
    *m_out = m;
    *total_out = total;
    return st;
}

/* Every tensor contiguous and, when its dtype changes, float to float. */
static lyra_status check_convertible(lyra_tensor *const *tensors, const lyra_dtype *dtypes, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        const lyra_tensor *t = tensors[i];
        if (!t->data) continue;
        if (!lyra_tensor_is_contiguous(t) ||
            (dtypes[i] != t->dtype && (!lyra_dtype_is_float(t->dtype) || !lyra_dtype_is_float(dtypes[i]))))
            return lyra_error(LYRA_ERR_INTERNAL, "%s: tensor %d (%s, %s%s) cannot be stored as %s", what, i,
                              t->name ? t->name : "?", lyra_dtype_name(t->dtype),
                              lyra_tensor_is_contiguous(t) ? "" : ", strided", lyra_dtype_name(dtypes[i]));
    }
    return LYRA_OK;
}

/* Re-points tensors[i] (those in order[0..m)) at dev + offset[i] as dtypes[i] on be's device. */
static void repoint(lyra_backend *be, lyra_tensor *const *tensors, const lyra_dtype *dtypes, const placed *order,
                    int m, const size_t *offset, void *dev) {
    for (int j = 0; j < m; j++) {
        int i = order[j].index;
        lyra_tensor *t = tensors[i];
        const char *name = t->name;
        lyra_tensor r = lyra_tensor_make((char *)dev + offset[i], dtypes[i], t->ndim, t->ne);
        r.name = name;
        r.device = be->device;
        *t = r;
    }
}

lyra_status lyra_backend_place_weights_random(lyra_backend *be, void **mem, lyra_tensor *const *tensors,
                                              const lyra_dtype *dtypes, int n, const char *what, uint64_t seed,
                                              int bf16_values) {
    lyra_status st;
    if (be->device == LYRA_DEVICE_CPU) { /* the host block is the network's memory: fill it */
        for (int i = 0; i < n; i++) {
            lyra_tensor *t = tensors[i];
            if (!t->data) continue;
            lyra_random_fill f;
            lyra_random_fill_rule(&f, seed, t->name ? t->name : "", t->ndim, t->ne, bf16_values);
            LYRA_TRY(lyra_op_fill_random(be, t, &f));
        }
        return LYRA_OK;
    }
    LYRA_TRY(check_convertible(tensors, dtypes, n, what));
    placed *order;
    size_t *offset, total;
    int m;
    st = relayout(tensors, dtypes, n, what, &order, &offset, &m, &total);
    if (!order) return st; /* out of host memory */
    void *dev = NULL;
    if (st == LYRA_OK && !(dev = be->ops->alloc(be, total ? total : 1))) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        st = lyra_error(LYRA_ERR_OOM, "%s: cannot place %zu bytes (%.2f GiB) of weights on the %s device (%s)", what,
                        total, (double)total / (1 << 30), be->ops->name, why);
    }
    /* filled through descriptors of the new layout; the tensors are re-pointed only once every fill succeeded */
    for (int j = 0; j < m && st == LYRA_OK; j++) {
        int i = order[j].index;
        const lyra_tensor *t = tensors[i];
        lyra_tensor r = lyra_tensor_make((char *)dev + offset[i], dtypes[i], t->ndim, t->ne);
        r.name = t->name;
        r.device = be->device;
        lyra_random_fill f;
        lyra_random_fill_rule(&f, seed, t->name ? t->name : "", t->ndim, t->ne, bf16_values);
        st = lyra_op_fill_random(be, &r, &f);
    }
    if (st == LYRA_OK) repoint(be, tensors, dtypes, order, m, offset, dev);
    else if (dev) be->ops->release(be, dev);
    free(order);
    free(offset);
    if (st != LYRA_OK) return st;
    free(*mem);
    *mem = dev;
    return LYRA_OK;
}

lyra_status lyra_backend_place_weights_as(lyra_backend *be, void **mem, lyra_tensor *const *tensors,
                                          const lyra_dtype *dtypes, int n, const char *what) {
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    int same = 1;
    for (int i = 0; i < n; i++)
        if (tensors[i]->data && dtypes[i] != tensors[i]->dtype) same = 0;
    if (same) return lyra_backend_place_weights(be, mem, tensors, n, what);
    /* every tensor is copied as numel contiguous elements into the new layout */
    LYRA_TRY(check_convertible(tensors, dtypes, n, what));
    placed *order;
    size_t *offset, total;
    int m;
    lyra_status st = relayout(tensors, dtypes, n, what, &order, &offset, &m, &total);
    if (!order) return st; /* out of host memory */
    int64_t chunk = 1;
    for (int j = 0; j < m; j++)
        if (lyra_tensor_numel(tensors[order[j].index]) > chunk) chunk = lyra_tensor_numel(tensors[order[j].index]);
    if (chunk > (1 << 20)) chunk = 1 << 20;
    char *staged = st == LYRA_OK ? malloc(total ? total : 1) : NULL;
    float *buf = st == LYRA_OK ? malloc(sizeof(float) * (size_t)chunk) : NULL;
    if (st == LYRA_OK && (!staged || !buf)) st = lyra_error(LYRA_ERR_OOM, "%s: cannot stage %zu bytes", what, total);
    for (int j = 0; j < m && st == LYRA_OK; j++) {
        int i = order[j].index;
        convert(staged + offset[i], dtypes[i], tensors[i]->data, tensors[i]->dtype, lyra_tensor_numel(tensors[i]),
                buf, chunk);
    }
    free(buf);
    void *dev = NULL;
    if (st == LYRA_OK) {
        dev = be->ops->alloc(be, total ? total : 1);
        if (!dev) {
            char why[256];
            snprintf(why, sizeof why, "%s", lyra_error_message());
            st = lyra_error(LYRA_ERR_OOM, "%s: cannot place %zu bytes (%.2f GiB) of weights on the %s device (%s)",
                            what, total, (double)total / (1 << 30), be->ops->name, why);
        }
    }
    if (st == LYRA_OK && total) {
        lyra_tensor h = lyra_tensor_1d(staged, LYRA_DTYPE_U8, (int64_t)total), d = h;
        h.name = d.name = what;
        d.data = dev;
        d.device = be->device;
        st = lyra_op_upload(be, &d, &h);
        if (st != LYRA_OK) be->ops->release(be, dev);
    }
    if (st == LYRA_OK) repoint(be, tensors, dtypes, order, m, offset, dev);
    free(staged);
    free(order);
    free(offset);
    if (st != LYRA_OK) return st;
    free(*mem);
    *mem = dev;
    return LYRA_OK;
}

lyra_status lyra_place_precision_check(const lyra_backend *be, lyra_dtype act, lyra_dtype device16, const char *what) {
    if (act != LYRA_DTYPE_F32 && act != device16)
        return lyra_error(LYRA_ERR_ARG, "%s: precision %s is not allowed; expected f32 or %s", what,
                          lyra_dtype_name(act), lyra_dtype_name(device16));
    if (be->device == LYRA_DEVICE_CPU && act != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "%s: %s precision needs a device (the CPU computes f32)", what,
                          lyra_dtype_name(act));
    return LYRA_OK;
}
