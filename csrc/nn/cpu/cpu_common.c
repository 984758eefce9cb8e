/* The helpers every CPU op shares (declared in cpu_internal.h): the f32 activation check and f32 views of
 * strided or half-precision tensors. */
#include <stdarg.h>
#include <string.h>

#include "nn/cpu/cpu_internal.h"

lyra_status cpu_require_f32(const char *op, int n, ...) {
    va_list ap;
    va_start(ap, n);
    lyra_status st = LYRA_OK;
    for (int i = 0; i < n; i++) {
        const lyra_tensor *t = va_arg(ap, const lyra_tensor *);
        if (t && t->dtype != LYRA_DTYPE_F32) {
            st = lyra_error(LYRA_ERR_TYPE, "%s: the CPU backend computes f32 activations, got %s%s%s", op,
                            lyra_dtype_name(t->dtype), t->name ? " for " : "", t->name ? t->name : "");
            break;
        }
    }
    va_end(ap);
    return st;
}

int64_t cpu_f32_need(const lyra_tensor *t) {
    if (!t) return 0;
    if (t->dtype == LYRA_DTYPE_F32 && lyra_tensor_is_contiguous(t)) return 0;
    return lyra_tensor_numel(t);
}

void cpu_gather_f32(float *dst, const lyra_tensor *t) {
    int64_t n = cpu_inner(t), rows = cpu_rows(t), s = t->ndim ? t->nb[t->ndim - 1] : 0;
    for (int64_t r = 0; r < rows; r++) {
        const char *p = (const char *)t->data + cpu_row_offset(t, t, r);
        float *d = dst + r * n;
        if (t->dtype == LYRA_DTYPE_F32 && s == 4) {
            memcpy(d, p, (size_t)n * 4);
        } else {
            for (int64_t i = 0; i < n; i++) d[i] = cpu_load(p + i * s, t->dtype);
        }
    }
}

const float *cpu_as_f32(const lyra_tensor *t, float *buf) {
    if (!t) return NULL;
    if (!cpu_f32_need(t)) return (const float *)t->data;
    cpu_gather_f32(buf, t);
    return buf;
}
