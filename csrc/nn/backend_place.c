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

lyra_status lyra_backend_place_weights_as(lyra_backend *be, void **mem, lyra_tensor *const *tensors,
                                          const lyra_dtype *dtypes, int n, const char *what) {
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    int same = 1;
    for (int i = 0; i < n; i++)
        if (tensors[i]->data && dtypes[i] != tensors[i]->dtype) same = 0;
    if (same) return lyra_backend_place_weights(be, mem, tensors, n, what);
    /* every tensor is copied as numel contiguous elements into the new layout */
    for (int i = 0; i < n; i++) {
        const lyra_tensor *t = tensors[i];
        if (!t->data) continue;
        if (!lyra_tensor_is_contiguous(t) ||
            (dtypes[i] != t->dtype && (!lyra_dtype_is_float(t->dtype) || !lyra_dtype_is_float(dtypes[i]))))
            return lyra_error(LYRA_ERR_INTERNAL, "%s: tensor %d (%s, %s%s) cannot be stored as %s", what, i,
                              t->name ? t->name : "?", lyra_dtype_name(t->dtype),
                              lyra_tensor_is_contiguous(t) ? "" : ", strided", lyra_dtype_name(dtypes[i]));
    }
    /* Tensors are re-laid out one after the other, so two that share bytes (a view of another) cannot follow. */
    placed *order = malloc(sizeof *order * (size_t)(n ? n : 1));
    size_t *offset = malloc(sizeof *offset * (size_t)(n ? n : 1));
    if (!order || !offset) {
        free(order);
        free(offset);
        return lyra_error(LYRA_ERR_OOM, "%s: out of host memory", what);
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (tensors[i]->data) order[m++] = (placed){tensors[i]->data, lyra_tensor_nbytes(tensors[i]), i};
    qsort(order, (size_t)m, sizeof *order, by_address);
    size_t total = 0;
    int64_t chunk = 1;
    lyra_status st = LYRA_OK;
    for (int j = 0; j < m; j++) {
        if (j && order[j].lo < order[j - 1].lo + order[j - 1].bytes)
            st = lyra_error(LYRA_ERR_INTERNAL, "%s: weight tensors %d and %d share memory; they cannot be converted "
                            "one by one", what, order[j - 1].index, order[j].index);
        const lyra_tensor *t = tensors[order[j].index];
        offset[order[j].index] = total;
        total += (size_t)lyra_tensor_numel(t) * lyra_dtype_size(dtypes[order[j].index]);
        total = (total + LYRA_CARVE_ALIGN - 1) & ~(size_t)(LYRA_CARVE_ALIGN - 1);
        if (lyra_tensor_numel(t) > chunk) chunk = lyra_tensor_numel(t);
    }
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
    if (st == LYRA_OK)
        for (int j = 0; j < m; j++) {
            int i = order[j].index;
            lyra_tensor *t = tensors[i];
            const char *name = t->name;
            lyra_tensor r = lyra_tensor_make((char *)dev + offset[i], dtypes[i], t->ndim, t->ne);
            r.name = name;
            r.device = be->device;
            *t = r;
        }
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
