// Pointwise ops over strided, broadcasting tensors: copy/convert, fill, activations, gated units, add/mul/scale,
// adaLN modulate and gate, concat. One kernel serves them all: the host merges dimensions that are contiguous
// for every operand (so the usual cases become 1-d or 2-d) and the kernel walks the flat index of the output.
#include <string.h>

#include "cuda_internal.h"

namespace {

enum ew_op { EW_COPY_RAW, EW_CONVERT, EW_FILL, EW_UNARY, EW_GLU, EW_ADD, EW_MUL, EW_SCALE, EW_MODULATE, EW_GATE };

constexpr int EW_ARR = 4; /* y and up to three inputs */

struct ew_params {
    int nd;
    int64_t sz[LYRA_MAX_DIMS];            /* merged sizes, index 0 innermost */
    int64_t st[EW_ARR][LYRA_MAX_DIMS];    /* byte strides per array, same order */
    char *y;
    const char *in[EW_ARR - 1];
    int dt[EW_ARR];
    int op, act, es;
    float alpha, beta;
    int64_t total;
};

template <int ND, typename I>
__global__ void ew_kernel(ew_params p) {
    I total = (I)p.total;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        int64_t off[EW_ARR] = {0, 0, 0, 0};
        I r = i;
#pragma unroll
        for (int d = 0; d < ND; d++) {
            I c;
            if (d == ND - 1) {
                c = r;
            } else {
                c = r % (I)p.sz[d];
                r /= (I)p.sz[d];
            }
#pragma unroll
            for (int k = 0; k < EW_ARR; k++) off[k] += (int64_t)c * p.st[k][d];
        }
        char *y = p.y + off[0];
        if (p.op == EW_COPY_RAW) {
            const char *x = p.in[0] + off[1];
            switch (p.es) {
            case 1: *(uint8_t *)y = *(const uint8_t *)x; break;
            case 2: *(uint16_t *)y = *(const uint16_t *)x; break;
            case 4: *(uint32_t *)y = *(const uint32_t *)x; break;
            default: *(uint64_t *)y = *(const uint64_t *)x; break;
            }
            continue;
        }
        float a = p.op == EW_FILL ? 0.0f : cu_load(p.in[0] + off[1], p.dt[1]);
        float v;
        switch (p.op) {
        case EW_CONVERT: v = a; break;
        case EW_FILL: v = p.alpha; break;
        case EW_UNARY: v = cu_act(p.act, a); break;
        case EW_GLU: v = a * cu_act(p.act, cu_load(p.in[1] + off[2], p.dt[2])); break;
        case EW_ADD: v = a + cu_load(p.in[1] + off[2], p.dt[2]); break;
        case EW_MUL: v = a * cu_load(p.in[1] + off[2], p.dt[2]); break;
        case EW_SCALE: v = p.alpha * a + p.beta; break;
        case EW_MODULATE: /* x·(1 + scale) + shift, in[1] = shift, in[2] = scale */
            v = a * (1.0f + cu_load(p.in[2] + off[3], p.dt[3])) + cu_load(p.in[1] + off[2], p.dt[2]);
            break;
        default: /* EW_GATE: x + g·a, in[1] = g, in[2] = a */
            v = a + cu_load(p.in[1] + off[2], p.dt[2]) * cu_load(p.in[2] + off[3], p.dt[3]);
            break;
        }
        cu_store(y, p.dt[0], v);
    }
}

template <int ND>
void ew_launch(const ew_params &p, cudaStream_t s) {
    unsigned blocks = cu_blocks(p.total, 256);
    if (p.total < ((int64_t)1 << 31))
        cu_launch(ew_kernel<ND, uint32_t>, blocks, 256, 0, s, p);
    else
        cu_launch(ew_kernel<ND, int64_t>, blocks, 256, 0, s, p);
}

/* Runs op over y's shape. ins[i] have y's ndim with each dim equal to y's or 1 (broadcast, stride forced 0). */
lyra_status ew_run(lyra_backend *be, int op, lyra_tensor *y, const lyra_tensor *const *ins, int nin, int act,
                   float alpha, float beta, const char *what) {
    const lyra_tensor *arr[EW_ARR] = {y, NULL, NULL, NULL};
    for (int i = 0; i < nin; i++) arr[i + 1] = ins[i];
    ew_params p;
    memset(&p, 0, sizeof p);
    p.op = op;
    p.act = act;
    p.alpha = alpha;
    p.beta = beta;
    p.es = (int)lyra_dtype_size(y->dtype);
    p.total = lyra_tensor_numel(y);
    if (p.total == 0) return LYRA_OK;
    p.y = (char *)y->data;
    for (int k = 0; k < EW_ARR; k++) p.dt[k] = arr[k] ? (int)arr[k]->dtype : 0;
    for (int i = 0; i < nin; i++) p.in[i] = (const char *)ins[i]->data;
    /* merge dims, innermost first: outer dim d joins the current merged dim when, for every array, its stride
     * equals the merged dim's stride times its size (size-1 dims of y are dropped) */
    int n = 0;
    for (int d = y->ndim - 1; d >= 0; d--) {
        int64_t ne = y->ne[d];
        if (ne == 1) continue;
        int64_t s[EW_ARR];
        for (int k = 0; k < EW_ARR; k++)
            s[k] = (!arr[k] || arr[k]->ne[d] == 1) ? 0 : arr[k]->nb[d];
        int merge = n > 0;
        for (int k = 0; merge && k < EW_ARR; k++) merge = s[k] == p.st[k][n - 1] * p.sz[n - 1];
        if (merge) {
            p.sz[n - 1] *= ne;
            continue;
        }
        p.sz[n] = ne;
        for (int k = 0; k < EW_ARR; k++) p.st[k][n] = s[k];
        n++;
    }
    if (n == 0) { /* a single element */
        n = 1;
        p.sz[0] = 1;
    }
    p.nd = n;
    cudaStream_t s = cu_st(be)->stream;
    switch (n) {
    case 1: ew_launch<1>(p, s); break;
    case 2: ew_launch<2>(p, s); break;
    case 3: ew_launch<3>(p, s); break;
    case 4: ew_launch<4>(p, s); break;
    default: ew_launch<5>(p, s); break;
    }
    CU_LAUNCHED(what);
    return LYRA_OK;
}

lyra_status require_float(const char *op, int n, const lyra_tensor *const *ts) {
    for (int i = 0; i < n; i++)
        if (ts[i] && !cu_is_float(ts[i]->dtype))
            return lyra_error(LYRA_ERR_TYPE, "%s: the CUDA backend computes f32/bf16/f16 tensors, got %s", op,
                              lyra_dtype_name(ts[i]->dtype));
    return LYRA_OK;
}

} // namespace

lyra_status cu_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    if (x->dtype == y->dtype) return ew_run(be, EW_COPY_RAW, y, &x, 1, 0, 0.0f, 0.0f, "copy");
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "copy: cannot convert %s to %s", lyra_dtype_name(x->dtype),
                          lyra_dtype_name(y->dtype));
    return ew_run(be, EW_CONVERT, y, &x, 1, 0, 0.0f, 0.0f, "copy");
}

lyra_status cu_contiguous(lyra_backend *be, const lyra_tensor *t, lyra_dtype dt, const void **data, void **owned,
                          const char *what) {
    *owned = NULL;
    if (t->dtype == dt && lyra_tensor_is_contiguous(t)) {
        *data = t->data;
        return LYRA_OK;
    }
    lyra_tensor c = lyra_tensor_make(NULL, dt, t->ndim, t->ne);
    c.device = LYRA_DEVICE_CUDA;
    c.data = cu_alloc(be, lyra_tensor_nbytes(&c), what);
    if (!c.data) return LYRA_ERR_OOM;
    lyra_status s = cu_copy(be, &c, t);
    if (s != LYRA_OK) {
        cu_free(be, c.data);
        return s;
    }
    *data = c.data;
    *owned = c.data;
    return LYRA_OK;
}

lyra_status cu_op_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) { return cu_copy(be, y, x); }

lyra_status cu_op_fill(lyra_backend *be, lyra_tensor *y, float value) {
    const lyra_tensor *ts[1] = {y};
    LYRA_TRY(require_float("fill", 1, ts));
    return ew_run(be, EW_FILL, y, NULL, 0, 0, value, 0.0f, "fill");
}

lyra_status cu_op_concat(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim) {
    if (dim < 0) dim += y->ndim;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        lyra_tensor part;
        LYRA_TRY(lyra_tensor_slice(&part, y, dim, off, off + xs[i]->ne[dim]));
        LYRA_TRY(cu_copy(be, &part, xs[i]));
        off += xs[i]->ne[dim];
    }
    return LYRA_OK;
}

lyra_status cu_op_unary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act act) {
    const lyra_tensor *ts[2] = {y, x};
    LYRA_TRY(require_float("unary", 2, ts));
    return ew_run(be, EW_UNARY, y, ts + 1, 1, (int)act, 0.0f, 0.0f, "unary");
}

lyra_status cu_op_glu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act) {
    const lyra_tensor *ts[3] = {y, a, g};
    LYRA_TRY(require_float("glu", 3, ts));
    return ew_run(be, EW_GLU, y, ts + 1, 2, (int)act, 0.0f, 0.0f, "glu");
}

lyra_status cu_op_add(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    const lyra_tensor *ts[3] = {y, a, b};
    LYRA_TRY(require_float("add", 3, ts));
    return ew_run(be, EW_ADD, y, ts + 1, 2, 0, 0.0f, 0.0f, "add");
}

lyra_status cu_op_mul(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    const lyra_tensor *ts[3] = {y, a, b};
    LYRA_TRY(require_float("mul", 3, ts));
    return ew_run(be, EW_MUL, y, ts + 1, 2, 0, 0.0f, 0.0f, "mul");
}

lyra_status cu_op_scale(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float alpha, float beta) {
    const lyra_tensor *ts[2] = {y, x};
    LYRA_TRY(require_float("scale", 2, ts));
    return ew_run(be, EW_SCALE, y, ts + 1, 1, 0, alpha, beta, "scale");
}

lyra_status cu_op_modulate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *shift,
                           const lyra_tensor *scale) {
    const lyra_tensor *ts[4] = {y, x, shift, scale};
    LYRA_TRY(require_float("modulate", 4, ts));
    return ew_run(be, EW_MODULATE, y, ts + 1, 3, 0, 0.0f, 0.0f, "modulate");
}

lyra_status cu_op_gate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *g,
                       const lyra_tensor *a) {
    const lyra_tensor *ts[4] = {y, x, g, a};
    LYRA_TRY(require_float("gate", 4, ts));
    return ew_run(be, EW_GATE, y, ts + 1, 3, 0, 0.0f, 0.0f, "gate");
}
