/* The CPU backend's table, lifetime, scratch and the small helpers every CPU op shares. */
#include <stdarg.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/cpu/cpu_internal.h"

static void *cpu_alloc(lyra_backend *be, size_t bytes) {
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) lyra_error(LYRA_ERR_OOM, "cpu backend: cannot allocate %zu bytes", bytes);
    return p;
}

static void cpu_release(lyra_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

/* Host <-> "device" transfers are strided copies on the CPU. */
static lyra_status cpu_transfer(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *src) {
    if (!lyra_tensor_same_shape(dst, src) || dst->dtype != src->dtype)
        return lyra_error(LYRA_ERR_ARG, "cpu backend: upload/download needs equal shapes and dtypes");
    return cpu_copy(be, dst, src);
}

/* No fusion on the CPU: the GEMM, then the activation in place. */
static lyra_status cpu_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                  const lyra_tensor *b, lyra_act act) {
    LYRA_TRY(cpu_linear(be, y, x, w, b));
    return act == LYRA_ACT_IDENTITY ? LYRA_OK : cpu_unary(be, y, y, act);
}

static lyra_status cpu_synchronize(lyra_backend *be) {
    (void)be;
    return LYRA_OK;
}

static void cpu_destroy(lyra_backend *be) { (void)be; }

static const lyra_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_transfer,
    .download = cpu_transfer,
    .synchronize = cpu_synchronize,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .concat = cpu_concat,
    .pad = cpu_pad,
    .patchify = cpu_patchify,
    .unpatchify = cpu_unpatchify,
    .embedding = cpu_embedding,
    .linear = cpu_linear,
    .linear_act = cpu_linear_act,
    .matmul = cpu_matmul,
    .attention = cpu_attention,
    .rms_norm = cpu_rms_norm,
    .layer_norm = cpu_layer_norm,
    .l2norm_channels = cpu_l2norm_channels,
    .group_norm = cpu_group_norm,
    .softmax = cpu_softmax,
    .unary = cpu_unary,
    .glu = cpu_glu,
    .add = cpu_add,
    .mul = cpu_mul,
    .scale = cpu_scale,
    .modulate = cpu_modulate,
    .gate = cpu_gate,
    .rope = cpu_rope,
    .sincos = cpu_sincos,
    .conv2d = cpu_conv2d,
    .conv3d = cpu_conv3d,
    .conv_transpose2d = cpu_conv_transpose2d,
    .upsample_nearest2x = cpu_upsample_nearest2x,
    .resize = cpu_resize,
    .avg_pool3d = cpu_avg_pool3d,
};

lyra_status lyra_backend_cpu_init(lyra_backend *be, int n_threads) {
    memset(be, 0, sizeof *be);
    be->ops = &cpu_ops;
    be->device = LYRA_DEVICE_CPU;
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#else
    if (n_threads <= 0) n_threads = 1;
#endif
    be->n_threads = n_threads;
    return lyra_arena_init(&be->scratch, 0);
}

void lyra_backend_free(lyra_backend *be) {
    if (be->ops && be->ops->destroy) be->ops->destroy(be);
    lyra_arena_free(&be->scratch);
    memset(be, 0, sizeof *be);
}

void *lyra_backend_scratch(lyra_backend *be, size_t bytes, const char *what) {
    be->scratch.used = 0;
    if (bytes < 64) bytes = 64;
    if (bytes > be->scratch.capacity) {
        /* Grow with headroom so slowly increasing requests do not reallocate every call. */
        size_t want = bytes + bytes / 4;
        if (lyra_arena_reserve(&be->scratch, want) != LYRA_OK) {
            lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes of workspace", what ? what : "op", bytes);
            return NULL;
        }
    }
    return lyra_arena_alloc(&be->scratch, bytes, what);
}

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
