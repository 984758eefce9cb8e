/* The emulated device's backend table (see nn/emu/lyra_emu.h): each entry checks that its tensors lie in the
 * emulated pool, converts 16-bit activations to f32 around the CPU kernel and rounds the output back. */
#include <stdlib.h>

#include "nn/emu/emu_internal.h"

#define EMU_MAX_ARGS 8

/* One op call in flight: the converted views of its inputs and output. */
typedef struct emu_call {
    lyra_backend *cpu;      /* the CPU backend that runs the kernels */
    const char *op;
    lyra_status st;
    int n;
    struct {
        const lyra_tensor *orig;
        lyra_tensor view;   /* what the CPU kernel sees */
        void *mem;          /* f32 copy when converted, else NULL */
    } in[EMU_MAX_ARGS];
    lyra_tensor *y;         /* the caller's output */
    lyra_tensor yv;         /* what the kernel writes */
    void *ymem;             /* f32 temporary to round back into y, or NULL */
    int y_shared;           /* yv is an input's converted copy (in-place op): its mem is freed with the inputs */
} emu_call;

static lyra_backend *inner(lyra_backend *be) { return (lyra_backend *)be->impl; }

static int is16(lyra_dtype d) { return d == LYRA_DTYPE_BF16 || d == LYRA_DTYPE_F16; }

static void begin(emu_call *c, lyra_backend *be, const char *op) {
    memset(c, 0, sizeof *c);
    c->cpu = inner(be);
    c->op = op;
}

/* Byte extent [lo, hi) of a (possibly strided or broadcast) tensor. */
static void extent(const lyra_tensor *t, const char **lo, size_t *bytes) {
    const char *p = (const char *)t->data, *a = p, *b = p;
    for (int i = 0; i < t->ndim; i++) {
        if (t->ne[i] == 0) {
            *lo = p;
            *bytes = 0;
            return;
        }
        int64_t d = (t->ne[i] - 1) * t->nb[i];
        if (d < 0) a += d;
        else b += d;
    }
    *lo = a;
    *bytes = (size_t)(b - a) + lyra_dtype_size(t->dtype);
}

/* LYRA_OK when t (non-NULL) lies inside one live pool block; else the refusal naming op, argument and tensor. */
static lyra_status check_resident(const char *op, const char *arg, const lyra_tensor *t) {
    const char *lo;
    size_t bytes;
    extent(t, &lo, &bytes);
    if (!bytes || lyra_emu_in_pool(lo, bytes)) return LYRA_OK;
    emu_count(1);
    return lyra_error(LYRA_ERR_CUDA, "cuda-emulated: %s: %s%s%s%s is not in device memory (a host pointer, or a "
                      "block already released); upload it first", op, arg, t->name ? " ('" : "",
                      t->name ? t->name : "", t->name ? "')" : "");
}

/* A contiguous f32 host copy of t: stride-0 (broadcast) dims are copied once and keep stride 0. */
static lyra_status to_f32(emu_call *c, lyra_tensor *out, void **mem, const lyra_tensor *t) {
    lyra_tensor src = *t, dst;
    int64_t ne[LYRA_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int bcast = t->nb[i] == 0 && t->ne[i] > 1;
        ne[i] = bcast ? 1 : t->ne[i];
        src.ne[i] = ne[i];
    }
    src.device = LYRA_DEVICE_CPU;
    dst = lyra_tensor_make(NULL, LYRA_DTYPE_F32, t->ndim, ne);
    size_t bytes = lyra_tensor_nbytes(&dst);
    *mem = malloc(bytes ? bytes : 4);
    if (!*mem) return lyra_error(LYRA_ERR_OOM, "cuda-emulated: %s: cannot allocate %zu bytes", c->op, bytes);
    dst.data = *mem;
    LYRA_TRY(c->cpu->ops->copy(c->cpu, &dst, &src));
    for (int i = 0; i < t->ndim; i++)
        if (t->nb[i] == 0 && t->ne[i] > 1) {
            dst.ne[i] = t->ne[i];
            dst.nb[i] = 0;
        }
    dst.name = t->name;
    *out = dst;
    return LYRA_OK;
}

/* An input as the CPU kernel reads it. keep: weights and layout ops read the stored dtype directly. */
static const lyra_tensor *in(emu_call *c, const char *arg, const lyra_tensor *t, int keep) {
    if (!t || c->st != LYRA_OK) return t;
    if (c->n == EMU_MAX_ARGS) {
        c->st = lyra_error(LYRA_ERR_INTERNAL, "cuda-emulated: %s: too many arguments", c->op);
        return t;
    }
    if ((c->st = check_resident(c->op, arg, t)) != LYRA_OK) return t;
    int i = c->n++;
    c->in[i].orig = t;
    if (!keep && is16(t->dtype)) {
        c->st = to_f32(c, &c->in[i].view, &c->in[i].mem, t);
    } else {
        c->in[i].view = *t;
        c->in[i].view.device = LYRA_DEVICE_CPU;
    }
    return &c->in[i].view;
}

/* The output as the CPU kernel writes it: y itself, or an f32 temporary rounded back into y by finish(). An
 * in-place op (y == an input, same strides) shares that input's converted copy. */
static lyra_tensor *out(emu_call *c, lyra_tensor *y, int keep) {
    if (c->st != LYRA_OK) return y;
    if ((c->st = check_resident(c->op, "y (output)", y)) != LYRA_OK) return y;
    c->y = y;
    if (keep || !is16(y->dtype)) {
        c->yv = *y;
        c->yv.device = LYRA_DEVICE_CPU;
        return &c->yv;
    }
    for (int i = 0; i < c->n; i++) {
        const lyra_tensor *x = c->in[i].orig;
        if (c->in[i].mem && x->data == y->data && x->dtype == y->dtype && lyra_tensor_same_shape(x, y) &&
            !memcmp(x->nb, y->nb, sizeof y->nb)) {
            c->yv = c->in[i].view;
            c->ymem = c->in[i].mem;
            c->y_shared = 1;
            return &c->yv;
        }
    }
    lyra_tensor t = lyra_tensor_make(NULL, LYRA_DTYPE_F32, y->ndim, y->ne);
    size_t bytes = lyra_tensor_nbytes(&t);
    c->ymem = malloc(bytes ? bytes : 4);
    if (!c->ymem) {
        c->st = lyra_error(LYRA_ERR_OOM, "cuda-emulated: %s: cannot allocate %zu bytes", c->op, bytes);
        return y;
    }
    t.data = c->ymem;
    c->yv = t;
    return &c->yv;
}

/* Rounds the f32 result into the caller's 16-bit output, frees the temporaries, counts the op. */
static lyra_status finish(emu_call *c, lyra_status st) {
    if (c->st != LYRA_OK) st = c->st;
    if (st == LYRA_OK && c->ymem) {
        lyra_tensor y = *c->y;
        y.device = LYRA_DEVICE_CPU;
        st = c->cpu->ops->copy(c->cpu, &y, &c->yv);
    }
    for (int i = 0; i < c->n; i++) free(c->in[i].mem);
    if (c->ymem && !c->y_shared) free(c->ymem);
    if (c->st == LYRA_OK) emu_count(0); /* refusals were counted when they happened */
    return st;
}

#define RUN(call) finish(&c, c.st == LYRA_OK ? (call) : c.st)

/* ---------------------------------------------------------------- memory */

static void *emu_alloc(lyra_backend *be, size_t bytes) {
    (void)be;
    return emu_pool_alloc(bytes, "cuda-emulated alloc");
}

static void emu_release(lyra_backend *be, void *ptr) {
    (void)be;
    emu_pool_release(ptr);
}

static const char *name_of(const lyra_tensor *a, const lyra_tensor *b) {
    return a->name ? a->name : b->name ? b->name : "?";
}

static lyra_status emu_upload(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src) {
    LYRA_TRY(check_resident("upload", "dst", dst));
    const char *lo;
    size_t bytes;
    extent(host_src, &lo, &bytes);
    if (bytes && lyra_emu_in_pool(lo, bytes))
        return lyra_error(LYRA_ERR_ARG, "cuda-emulated: upload: the source%s%s%s is device memory, not host memory",
                          host_src->name ? " '" : "", host_src->name ? host_src->name : "", host_src->name ? "'" : "");
    lyra_tensor d = *dst, s = *host_src;
    d.device = s.device = LYRA_DEVICE_CPU;
    LYRA_TRY(inner(be)->ops->copy(inner(be), &d, &s));
    emu_log_transfer(0, (int64_t)lyra_tensor_nbytes(dst), name_of(dst, host_src));
    return LYRA_OK;
}

static lyra_status emu_download(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src) {
    LYRA_TRY(check_resident("download", "src", src));
    const char *lo;
    size_t bytes;
    extent(host_dst, &lo, &bytes);
    if (bytes && lyra_emu_in_pool(lo, bytes))
        return lyra_error(LYRA_ERR_ARG, "cuda-emulated: download: the destination is device memory, not host memory");
    lyra_tensor d = *host_dst, s = *src;
    d.device = s.device = LYRA_DEVICE_CPU;
    LYRA_TRY(inner(be)->ops->copy(inner(be), &d, &s));
    emu_log_transfer(1, (int64_t)lyra_tensor_nbytes(src), name_of(src, host_dst));
    return LYRA_OK;
}

static lyra_status emu_synchronize(lyra_backend *be) {
    (void)be;
    return LYRA_OK;
}

/* ---------------------------------------------------------------- layout */

static lyra_status emu_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    emu_call c;
    begin(&c, be, "copy");
    const lyra_tensor *X = in(&c, "x", x, 1); /* the CPU copy converts between float dtypes itself */
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->copy(c.cpu, Y, X));
}

static lyra_status emu_fill(lyra_backend *be, lyra_tensor *y, float value) {
    emu_call c;
    begin(&c, be, "fill");
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->fill(c.cpu, Y, value));
}

static lyra_status emu_concat(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim) {
    emu_call c;
    begin(&c, be, "concat");
    for (int i = 0; i < n && c.st == LYRA_OK; i++) c.st = check_resident("concat", "xs[i]", xs[i]);
    lyra_tensor *Y = out(&c, y, 1);
    /* same dtype in and out (checked by nn/ops.c): a byte copy, views may stay as they are */
    lyra_tensor *v = c.st == LYRA_OK ? malloc(sizeof *v * (size_t)n) : NULL;
    const lyra_tensor **p = c.st == LYRA_OK ? malloc(sizeof *p * (size_t)n) : NULL;
    if (c.st == LYRA_OK && (!v || !p)) c.st = lyra_error(LYRA_ERR_OOM, "cuda-emulated: concat: out of memory");
    for (int i = 0; c.st == LYRA_OK && i < n; i++) {
        v[i] = *xs[i];
        v[i].device = LYRA_DEVICE_CPU;
        p[i] = &v[i];
    }
    lyra_status st = RUN(c.cpu->ops->concat(c.cpu, Y, p, n, dim));
    free(v);
    free(p);
    return st;
}

static lyra_status emu_pad(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *pads,
                           lyra_pad_mode mode) {
    emu_call c;
    begin(&c, be, "pad");
    const lyra_tensor *X = in(&c, "x", x, 1); /* an element copy: any dtype */
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->pad(c.cpu, Y, X, pads, mode));
}

static lyra_status emu_patchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                                lyra_patch_order order) {
    emu_call c;
    begin(&c, be, "patchify");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->patchify(c.cpu, Y, X, kt, kh, kw, order));
}

static lyra_status emu_unpatchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                                  lyra_patch_order order) {
    emu_call c;
    begin(&c, be, "unpatchify");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->unpatchify(c.cpu, Y, X, kt, kh, kw, order));
}

static lyra_status emu_embedding(lyra_backend *be, lyra_tensor *y, const lyra_tensor *table, const lyra_tensor *ids) {
    emu_call c;
    begin(&c, be, "embedding");
    const lyra_tensor *Tb = in(&c, "table", table, 1), *I = in(&c, "ids", ids, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->embedding(c.cpu, Y, Tb, I));
}

/* ---------------------------------------------------------------- GEMM */

static lyra_status emu_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b) {
    emu_call c;
    begin(&c, be, "linear");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 1), *B = in(&c, "b", b, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->linear(c.cpu, Y, X, W, B));
}

static lyra_status emu_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                  const lyra_tensor *b, lyra_act act) {
    emu_call c;
    begin(&c, be, "linear_act");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 1), *B = in(&c, "b", b, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->linear_act(c.cpu, Y, X, W, B, act));
}

static lyra_status emu_matmul(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b,
                              int trans_b, float alpha) {
    emu_call c;
    begin(&c, be, "matmul");
    const lyra_tensor *A = in(&c, "a", a, 0), *B = in(&c, "b", b, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->matmul(c.cpu, Y, A, B, trans_b, alpha));
}

static lyra_status emu_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                                 const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask,
                                 float scale) {
    emu_call c;
    begin(&c, be, "attention");
    const lyra_tensor *Q = in(&c, "q", q, 0), *K = in(&c, "k", k, 0), *V = in(&c, "v", v, 0);
    const lyra_tensor *Bi = in(&c, "bias", bias, 0), *M = in(&c, "key_mask", key_mask, 1);
    lyra_tensor *O = out(&c, o, 0);
    return RUN(c.cpu->ops->attention(c.cpu, O, Q, K, V, Bi, M, scale));
}

/* e4m3 codes and f32 scales are read and written as stored (what the CUDA kernels store); a 16-bit x is widened
 * exactly and a 16-bit y rounded once, as the kernels' loads and stores do. */
static lyra_status emu_quantize_fp8_rows(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x) {
    emu_call c;
    begin(&c, be, "quantize_fp8_rows");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor S = *s;
    S.device = LYRA_DEVICE_CPU;
    if (c.st == LYRA_OK) c.st = check_resident(c.op, "s (output)", s);
    lyra_tensor *Q = out(&c, q, 1);
    return RUN(c.cpu->ops->quantize_fp8_rows(c.cpu, Q, &S, X));
}

static lyra_status emu_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                                  const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b) {
    emu_call c;
    begin(&c, be, "linear_fp8");
    const lyra_tensor *Q = in(&c, "q", q, 1), *S = in(&c, "s", s, 1), *W = in(&c, "w8", w8, 1);
    const lyra_tensor *WS = in(&c, "ws", ws, 1), *B = in(&c, "b", b, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->linear_fp8(c.cpu, Y, Q, S, W, WS, B));
}

/* ---------------------------------------------------------------- normalisation */

static lyra_status emu_rms_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                float eps) {
    emu_call c;
    begin(&c, be, "rms_norm");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->rms_norm(c.cpu, Y, X, W, eps));
}

static lyra_status emu_layer_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                  const lyra_tensor *b, float eps) {
    emu_call c;
    begin(&c, be, "layer_norm");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 0), *B = in(&c, "b", b, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->layer_norm(c.cpu, Y, X, W, B, eps));
}

static lyra_status emu_l2norm_channels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x,
                                       const lyra_tensor *gamma, const lyra_tensor *beta, float eps) {
    emu_call c;
    begin(&c, be, "l2norm_channels");
    const lyra_tensor *X = in(&c, "x", x, 0), *G = in(&c, "gamma", gamma, 0), *B = in(&c, "beta", beta, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->l2norm_channels(c.cpu, Y, X, G, B, eps));
}

static lyra_status emu_group_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int groups,
                                  const lyra_tensor *w, const lyra_tensor *b, float eps) {
    emu_call c;
    begin(&c, be, "group_norm");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 0), *B = in(&c, "b", b, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->group_norm(c.cpu, Y, X, groups, W, B, eps));
}

static lyra_status emu_softmax(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float scale) {
    emu_call c;
    begin(&c, be, "softmax");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->softmax(c.cpu, Y, X, scale));
}

/* ---------------------------------------------------------------- pointwise */

static lyra_status emu_unary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act act) {
    emu_call c;
    begin(&c, be, "unary");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->unary(c.cpu, Y, X, act));
}

static lyra_status emu_glu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act) {
    emu_call c;
    begin(&c, be, "glu");
    const lyra_tensor *A = in(&c, "a", a, 0), *G = in(&c, "g", g, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->glu(c.cpu, Y, A, G, act));
}

static lyra_status emu_add(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    emu_call c;
    begin(&c, be, "add");
    const lyra_tensor *A = in(&c, "a", a, 0), *B = in(&c, "b", b, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->add(c.cpu, Y, A, B));
}

static lyra_status emu_mul(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    emu_call c;
    begin(&c, be, "mul");
    const lyra_tensor *A = in(&c, "a", a, 0), *B = in(&c, "b", b, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->mul(c.cpu, Y, A, B));
}

static lyra_status emu_scale(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float alpha, float beta) {
    emu_call c;
    begin(&c, be, "scale");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->scale(c.cpu, Y, X, alpha, beta));
}

static lyra_status emu_modulate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *shift,
                                const lyra_tensor *scale) {
    emu_call c;
    begin(&c, be, "modulate");
    const lyra_tensor *X = in(&c, "x", x, 0), *Sh = in(&c, "shift", shift, 0), *Sc = in(&c, "scale", scale, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->modulate(c.cpu, Y, X, Sh, Sc));
}

static lyra_status emu_gate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *g,
                            const lyra_tensor *a) {
    emu_call c;
    begin(&c, be, "gate");
    const lyra_tensor *X = in(&c, "x", x, 0), *G = in(&c, "g", g, 0), *A = in(&c, "a", a, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->gate(c.cpu, Y, X, G, A));
}

static lyra_status emu_rope(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *angles,
                            lyra_rope_mode mode, int n_sections) {
    emu_call c;
    begin(&c, be, "rope");
    const lyra_tensor *X = in(&c, "x", x, 0), *A = in(&c, "angles", angles, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->rope(c.cpu, Y, X, A, mode, n_sections));
}

static lyra_status emu_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves) {
    emu_call c;
    begin(&c, be, "sincos");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->sincos(c.cpu, Y, X, octaves));
}

/* ---------------------------------------------------------------- convolution and resampling */

static lyra_status emu_conv2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b, const lyra_conv2d_params *p) {
    emu_call c;
    begin(&c, be, "conv2d");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 1), *B = in(&c, "b", b, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->conv2d(c.cpu, Y, X, W, B, p));
}

static lyra_status emu_conv3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p) {
    emu_call c;
    begin(&c, be, "conv3d");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 1), *B = in(&c, "b", b, 1);
    const lyra_tensor *P = in(&c, "prefix", prefix, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->conv3d(c.cpu, Y, X, W, B, P, p));
}

static lyra_status emu_conv_transpose2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                        const lyra_tensor *b, int stride, int padding) {
    emu_call c;
    begin(&c, be, "conv_transpose2d");
    const lyra_tensor *X = in(&c, "x", x, 0), *W = in(&c, "w", w, 1), *B = in(&c, "b", b, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->conv_transpose2d(c.cpu, Y, X, W, B, stride, padding));
}

static lyra_status emu_upsample_nearest2x(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    emu_call c;
    begin(&c, be, "upsample_nearest2x");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->upsample_nearest2x(c.cpu, Y, X));
}

static lyra_status emu_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p) {
    emu_call c;
    begin(&c, be, "resize");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->resize(c.cpu, Y, X, p));
}

static lyra_status emu_avg_pool3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw) {
    emu_call c;
    begin(&c, be, "avg_pool3d");
    const lyra_tensor *X = in(&c, "x", x, 0);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->avg_pool3d(c.cpu, Y, X, kt, kh, kw));
}

/* ---------------------------------------------------------------- rendering */

static lyra_status emu_gs_rasterize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means,
                                    const lyra_tensor *scales, const lyra_tensor *rotations,
                                    const lyra_tensor *harmonics, const lyra_tensor *opacities,
                                    const lyra_splat_camera *cam) {
    emu_call c;
    begin(&c, be, "gs_rasterize");
    const lyra_tensor *M = in(&c, "means", means, 1), *S = in(&c, "scales", scales, 1);
    const lyra_tensor *R = in(&c, "rotations", rotations, 1), *H = in(&c, "harmonics", harmonics, 1);
    const lyra_tensor *O = in(&c, "opacities", opacities, 1);
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->gs_rasterize(c.cpu, Y, M, S, R, H, O, cam));
}

/* ---------------------------------------------------------------- geometry */

/* An optional f32 output of the warp as a host view (the CUDA kernel writes f32 too). */
static lyra_tensor *warp_out(emu_call *c, const char *arg, lyra_tensor *t, lyra_tensor *view) {
    if (!t) return NULL;
    *view = *t;
    view->device = LYRA_DEVICE_CPU;
    if (c->st == LYRA_OK) c->st = check_resident(c->op, arg, t);
    return view;
}

static lyra_status emu_warp_forward(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask,
                                    lyra_tensor *out_depth, const lyra_tensor *image, const lyra_tensor *depth,
                                    const lyra_warp_params *p) {
    emu_call c;
    begin(&c, be, "warp_forward");
    const lyra_tensor *I = in(&c, "image", image, 1), *D = in(&c, "depth", depth, 1);
    lyra_tensor mv, dv;
    lyra_tensor *M = warp_out(&c, "out_mask", out_mask, &mv), *DO = warp_out(&c, "out_depth", out_depth, &dv);
    lyra_tensor *Y = out(&c, out_image, 1);
    return RUN(c.cpu->ops->warp_forward(c.cpu, Y, M, DO, I, D, p));
}

/* ---------------------------------------------------------------- chunk inputs (f32 in and out, as on CUDA) */

static lyra_status emu_rays(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p) {
    emu_call c;
    begin(&c, be, "rays");
    lyra_tensor *Y = out(&c, y, 0); /* a 16-bit y: the f32 result rounded once, as the CUDA kernel stores it */
    return RUN(c.cpu->ops->rays(c.cpu, Y, height, width, p));
}

static lyra_status emu_to_u8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode) {
    emu_call c;
    begin(&c, be, "to_u8");
    const lyra_tensor *X = in(&c, "x", x, 1); /* the CPU kernel reads f32/bf16/f16 itself */
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->to_u8(c.cpu, Y, X, mode));
}

static lyra_status emu_minmax(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev) {
    emu_call c;
    begin(&c, be, "minmax");
    const lyra_tensor *X = in(&c, "x", x, 1), *P = in(&c, "prev", prev, 1);
    lyra_tensor *Y = out(&c, mm, 1);
    return RUN(c.cpu->ops->minmax(c.cpu, Y, X, P));
}

static lyra_status emu_range_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm,
                                  float eps) {
    emu_call c;
    begin(&c, be, "range_norm");
    const lyra_tensor *X = in(&c, "x", x, 1), *M = in(&c, "mm", mm, 1);
    lyra_tensor *Y = out(&c, y, 0);
    return RUN(c.cpu->ops->range_norm(c.cpu, Y, X, M, eps));
}

/* ---------------------------------------------------------------- sampler state (f32 in and out, as on CUDA) */

static lyra_status emu_latent_update(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                                     const lyra_latent_update *p) {
    static const char *names[4] = {"x[0]", "x[1]", "x[2]", "x[3]"};
    emu_call c;
    begin(&c, be, "latent_update");
    const lyra_tensor *X[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < n && i < 4; i++) X[i] = in(&c, names[i], x[i], 1);
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->latent_update(c.cpu, Y, X, n, p));
}

static lyra_status emu_u8_pixels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x,
                                 const lyra_u8_pixels_params *p) {
    emu_call c;
    begin(&c, be, "u8_pixels");
    const lyra_tensor *X = in(&c, "x", x, 1); /* uint8 in, f32 out: no conversion around the CPU kernel */
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->u8_pixels(c.cpu, Y, X, p));
}

/* ---------------------------------------------------------------- random weights */

static lyra_status emu_fill_random(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r) {
    emu_call c;
    begin(&c, be, "fill_random");
    lyra_tensor *Y = out(&c, y, 1); /* the CPU kernel stores y's dtype itself, rounding once as the CUDA kernel */
    return RUN(c.cpu->ops->fill_random(c.cpu, Y, r));
}

/* ---------------------------------------------------------------- DA3's merge, the depth maps' resize (f32) */

static lyra_status emu_da3_merge(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                                 lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor) {
    emu_call c;
    begin(&c, be, "da3_merge");
    /* the maps are rewritten in place: f32 views of the device memory, no conversions */
    lyra_tensor *D = (lyra_tensor *)in(&c, "depth", depth, 1), *C = (lyra_tensor *)in(&c, "conf", conf, 1);
    lyra_tensor *M = (lyra_tensor *)in(&c, "metric", metric, 1);
    const lyra_tensor *K = in(&c, "sky", sky, 1);
    lyra_tensor *Y = out(&c, stats, 1);
    return RUN(c.cpu->ops->da3_merge(c.cpu, Y, D, C, M, K, metric_factor));
}

static lyra_status emu_depth_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor) {
    emu_call c;
    begin(&c, be, "depth_resize");
    const lyra_tensor *X = in(&c, "x", x, 1);
    lyra_tensor *Y = out(&c, y, 1);
    return RUN(c.cpu->ops->depth_resize(c.cpu, Y, X, divisor));
}

/* ---------------------------------------------------------------- table and lifetime */

static void emu_destroy(lyra_backend *be) {
    lyra_backend *cpu = inner(be);
    if (!cpu) return;
    lyra_backend_free(cpu);
    free(cpu);
    be->impl = NULL;
}

static const lyra_backend_ops emu_ops = {
    .name = "cuda-emulated",
    .destroy = emu_destroy,
    .alloc = emu_alloc,
    .release = emu_release,
    .upload = emu_upload,
    .download = emu_download,
    .synchronize = emu_synchronize,
    .copy = emu_copy,
    .fill = emu_fill,
    .concat = emu_concat,
    .pad = emu_pad,
    .patchify = emu_patchify,
    .unpatchify = emu_unpatchify,
    .embedding = emu_embedding,
    .linear = emu_linear,
    .linear_act = emu_linear_act,
    .matmul = emu_matmul,
    .attention = emu_attention,
    .quantize_fp8_rows = emu_quantize_fp8_rows,
    .linear_fp8 = emu_linear_fp8,
    .rms_norm = emu_rms_norm,
    .layer_norm = emu_layer_norm,
    .l2norm_channels = emu_l2norm_channels,
    .group_norm = emu_group_norm,
    .softmax = emu_softmax,
    .unary = emu_unary,
    .glu = emu_glu,
    .add = emu_add,
    .mul = emu_mul,
    .scale = emu_scale,
    .modulate = emu_modulate,
    .gate = emu_gate,
    .rope = emu_rope,
    .sincos = emu_sincos,
    .conv2d = emu_conv2d,
    .conv3d = emu_conv3d,
    .conv_transpose2d = emu_conv_transpose2d,
    .upsample_nearest2x = emu_upsample_nearest2x,
    .resize = emu_resize,
    .avg_pool3d = emu_avg_pool3d,
    .gs_rasterize = emu_gs_rasterize,
    .warp_forward = emu_warp_forward,
    .rays = emu_rays,
    .to_u8 = emu_to_u8,
    .minmax = emu_minmax,
    .range_norm = emu_range_norm,
    .latent_update = emu_latent_update,
    .u8_pixels = emu_u8_pixels,
    .fill_random = emu_fill_random,
    .da3_merge = emu_da3_merge,
    .depth_resize = emu_depth_resize,
};

lyra_status lyra_backend_emu_init(lyra_backend *be, int n_threads) {
    memset(be, 0, sizeof *be);
    lyra_backend *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return lyra_error(LYRA_ERR_OOM, "cuda-emulated: cannot allocate the backend");
    lyra_status st = lyra_backend_cpu_init(cpu, n_threads);
    if (st != LYRA_OK) {
        free(cpu);
        return st;
    }
    be->ops = &emu_ops;
    be->device = LYRA_DEVICE_CUDA;
    be->n_threads = cpu->n_threads;
    be->impl = cpu;
    lyra_arena_wrap(&be->scratch, NULL, 0, LYRA_DEVICE_CUDA); /* unused: the CPU backend inside has its own */
    return LYRA_OK;
}
