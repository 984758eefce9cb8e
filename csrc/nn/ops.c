/* Validation and dispatch of the lyra_op_* wrappers (shapes documented in nn/ops.h). */
#include "nn/ops.h"
#include "nn/latent_math.h"

#include <math.h>
#include <stdio.h>

#define SHAPE(t, buf) lyra_tensor_shape_str((t), buf, sizeof buf)

/* Common checks of one tensor argument: present, on the backend's device, float dtype when asked. */
static lyra_status check_tensor(lyra_backend *be, const char *op, const char *arg, const lyra_tensor *t,
                                int want_float) {
    if (!t || !t->data) return lyra_error(LYRA_ERR_ARG, "%s: %s is missing", op, arg);
    if (t->ndim < 0 || t->ndim > LYRA_MAX_DIMS)
        return lyra_error(LYRA_ERR_ARG, "%s: %s has %d dims (0..%d allowed)", op, arg, t->ndim, LYRA_MAX_DIMS);
    if (t->device != be->device)
        return lyra_error(LYRA_ERR_ARG, "%s: %s is on the %s but the backend is %s", op, arg,
                          t->device == LYRA_DEVICE_CPU ? "CPU" : "GPU", be->ops->name);
    if (want_float && !lyra_dtype_is_float(t->dtype))
        return lyra_error(LYRA_ERR_TYPE, "%s: %s has dtype %s, expected f32, bf16 or f16", op, arg,
                          lyra_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim; i++)
        if (t->ne[i] < 0) return lyra_error(LYRA_ERR_ARG, "%s: %s has a negative size", op, arg);
    return LYRA_OK;
}

static lyra_status check_shape(const char *op, const char *arg, const lyra_tensor *t, int ndim,
                               const int64_t *ne) {
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->ne[i] == ne[i];
    if (!ok) {
        char got[96], want[96];
        lyra_tensor w = lyra_tensor_make(NULL, t->dtype, ndim, ne);
        return lyra_error(LYRA_ERR_ARG, "%s: %s has shape %s, expected %s", op, arg, SHAPE(t, got), SHAPE(&w, want));
    }
    return LYRA_OK;
}

static lyra_status check_contiguous(const char *op, const char *arg, const lyra_tensor *t) {
    if (!lyra_tensor_is_contiguous(t)) return lyra_error(LYRA_ERR_ARG, "%s: %s must be contiguous", op, arg);
    return LYRA_OK;
}

static lyra_status check_rows(const char *op, const char *arg, const lyra_tensor *t) {
    if (!lyra_tensor_rows_contiguous(t))
        return lyra_error(LYRA_ERR_ARG, "%s: %s must have a contiguous last dimension", op, arg);
    return LYRA_OK;
}

/* Optional per-channel vector (n) of a float dtype. */
static lyra_status check_vec(lyra_backend *be, const char *op, const char *arg, const lyra_tensor *t, int64_t n) {
    if (!t) return LYRA_OK;
    LYRA_TRY(check_tensor(be, op, arg, t, 1));
    return check_shape(op, arg, t, 1, &n);
}

/* a broadcastable to y: same ndim, each dim equal or 1. */
static lyra_status check_broadcast(const char *op, const char *arg, const lyra_tensor *a, const lyra_tensor *y) {
    int ok = a->ndim == y->ndim;
    for (int i = 0; ok && i < y->ndim; i++) ok = a->ne[i] == y->ne[i] || a->ne[i] == 1;
    if (!ok) {
        char sa[96], sy[96];
        return lyra_error(LYRA_ERR_ARG, "%s: %s of shape %s does not broadcast to %s (same ndim, dims equal or 1)",
                          op, arg, SHAPE(a, sa), SHAPE(y, sy));
    }
    return LYRA_OK;
}

static lyra_status check_same(const char *op, const char *arg, const lyra_tensor *t, const lyra_tensor *ref) {
    return check_shape(op, arg, t, ref->ndim, ref->ne);
}

/* y == x exactly (in-place) or no byte overlap at all. Overlap of strided views is judged by extents. */
static void extent(const lyra_tensor *t, const char **lo, const char **hi) {
    const char *p = (const char *)t->data, *a = p, *b = p;
    for (int i = 0; i < t->ndim; i++) {
        if (t->ne[i] == 0) { *lo = *hi = p; return; }
        int64_t d = (t->ne[i] - 1) * t->nb[i];
        if (d < 0) a += d; else b += d;
    }
    *lo = a;
    *hi = b + lyra_dtype_size(t->dtype);
}
static lyra_status check_alias(const char *op, const char *arg, const lyra_tensor *y, const lyra_tensor *x,
                               int inplace_ok) {
    if (!x) return LYRA_OK;
    if (inplace_ok && x->data == y->data && lyra_tensor_same_shape(x, y) && x->dtype == y->dtype &&
        !memcmp(x->nb, y->nb, sizeof x->nb[0] * (size_t)x->ndim))
        return LYRA_OK;
    const char *xl, *xh, *yl, *yh;
    extent(x, &xl, &xh);
    extent(y, &yl, &yh);
    if (xl < yh && yl < xh)
        return lyra_error(LYRA_ERR_ARG, "%s: the output overlaps %s%s", op, arg,
                          inplace_ok ? " (only exact in-place y == x is allowed)" : "");
    return LYRA_OK;
}

static lyra_status check_out(lyra_backend *be, const char *op, lyra_tensor *y) {
    LYRA_TRY(check_tensor(be, op, "y (output)", y, 0));
    return LYRA_OK;
}

/* ---------------- memory ---------------- */

static lyra_status check_transfer(const char *op, const lyra_tensor *dev, const lyra_tensor *host, lyra_device want,
                                  lyra_backend *be) {
    if (!dev || !host || (!dev->data && lyra_tensor_numel(dev)) || (!host->data && lyra_tensor_numel(host)))
        return lyra_error(LYRA_ERR_ARG, "%s: tensor is missing", op);
    if (dev->device != be->device) return lyra_error(LYRA_ERR_ARG, "%s: the device tensor is not on %s", op, be->ops->name);
    if (host->device != want) return lyra_error(LYRA_ERR_ARG, "%s: the host tensor is not in host memory", op);
    if (!lyra_tensor_same_shape(dev, host) || dev->dtype != host->dtype) {
        char a[96], b[96];
        return lyra_error(LYRA_ERR_ARG, "%s: %s and %s differ", op, SHAPE(dev, a), SHAPE(host, b));
    }
    return LYRA_OK;
}

lyra_status lyra_op_upload(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src) {
    LYRA_TRY(check_transfer("upload", dst, host_src, LYRA_DEVICE_CPU, be));
    return be->ops->upload(be, dst, host_src);
}

lyra_status lyra_op_download(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src) {
    LYRA_TRY(check_transfer("download", src, host_dst, LYRA_DEVICE_CPU, be));
    return be->ops->download(be, host_dst, src);
}

lyra_status lyra_op_synchronize(lyra_backend *be) { return be->ops->synchronize(be); }

lyra_status lyra_op_upload_async(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src, int ticket) {
    LYRA_TRY(check_transfer("upload", dst, host_src, LYRA_DEVICE_CPU, be));
    if (ticket < 0 || ticket > 1) return lyra_error(LYRA_ERR_ARG, "upload_async: ticket %d is not 0 or 1", ticket);
    if (!be->ops->upload_async || !lyra_tensor_is_contiguous(dst) || !lyra_tensor_is_contiguous(host_src))
        return be->ops->upload(be, dst, host_src);
    return be->ops->upload_async(be, dst, host_src, ticket);
}

lyra_status lyra_op_upload_wait(lyra_backend *be, int ticket) {
    if (ticket < 0 || ticket > 1) return lyra_error(LYRA_ERR_ARG, "upload_wait: ticket %d is not 0 or 1", ticket);
    return be->ops->upload_wait ? be->ops->upload_wait(be, ticket) : LYRA_OK;
}

/* ---------------- layout ---------------- */

lyra_status lyra_op_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    const char *op = "copy";
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 0));
    LYRA_TRY(check_same(op, "x", x, y));
    if (x->dtype != y->dtype && !(lyra_dtype_is_float(x->dtype) && lyra_dtype_is_float(y->dtype)))
        return lyra_error(LYRA_ERR_TYPE, "copy: cannot convert %s to %s", lyra_dtype_name(x->dtype),
                          lyra_dtype_name(y->dtype));
    LYRA_TRY(check_alias(op, "x", y, x, 1));
    return be->ops->copy(be, y, x);
}

lyra_status lyra_op_fill(lyra_backend *be, lyra_tensor *y, float value) {
    LYRA_TRY(check_out(be, "fill", y));
    return be->ops->fill(be, y, value);
}

lyra_status lyra_op_concat(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim) {
    const char *op = "concat";
    LYRA_TRY(check_out(be, op, y));
    if (n < 1) return lyra_error(LYRA_ERR_ARG, "concat: needs at least one input");
    if (dim < 0) dim += y->ndim;
    if (dim < 0 || dim >= y->ndim) return lyra_error(LYRA_ERR_ARG, "concat: dim out of range for %d-d output", y->ndim);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        char arg[32];
        snprintf(arg, sizeof arg, "xs[%d]", i);
        LYRA_TRY(check_tensor(be, op, arg, xs[i], 0));
        if (xs[i]->dtype != y->dtype) return lyra_error(LYRA_ERR_TYPE, "concat: %s dtype differs from y", arg);
        int64_t ne[LYRA_MAX_DIMS];
        memcpy(ne, y->ne, sizeof ne);
        ne[dim] = xs[i]->ne[dim];
        LYRA_TRY(check_shape(op, arg, xs[i], y->ndim, ne));
        LYRA_TRY(check_alias(op, arg, y, xs[i], 0));
        total += xs[i]->ne[dim];
    }
    if (total != y->ne[dim])
        return lyra_error(LYRA_ERR_ARG, "concat: inputs sum to %lld along dim %d, y has %lld", (long long)total, dim,
                          (long long)y->ne[dim]);
    return be->ops->concat(be, y, xs, n, dim);
}

lyra_status lyra_op_pad(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *pads,
                        lyra_pad_mode mode) {
    const char *op = "pad";
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 0));
    if (x->dtype != y->dtype) return lyra_error(LYRA_ERR_TYPE, "pad: x and y dtypes differ");
    int64_t ne[LYRA_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (pads[2 * i] < 0 || pads[2 * i + 1] < 0) return lyra_error(LYRA_ERR_ARG, "pad: negative padding in dim %d", i);
        if (mode == LYRA_PAD_REPLICATE && x->ne[i] == 0 && (pads[2 * i] || pads[2 * i + 1]))
            return lyra_error(LYRA_ERR_ARG, "pad: replicate padding of an empty dim %d", i);
        ne[i] = x->ne[i] + pads[2 * i] + pads[2 * i + 1];
    }
    LYRA_TRY(check_shape(op, "y", y, x->ndim, ne));
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    return be->ops->pad(be, y, x, pads, mode);
}

static lyra_status check_patch(lyra_backend *be, const char *op, const lyra_tensor *vid, const lyra_tensor *tok,
                               int kt, int kh, int kw) {
    if (kt < 1 || kh < 1 || kw < 1) return lyra_error(LYRA_ERR_ARG, "%s: patch sizes must be >= 1", op);
    LYRA_TRY(check_tensor(be, op, "video", vid, 1));
    LYRA_TRY(check_tensor(be, op, "tokens", tok, 1));
    if (vid->ndim != 5) return lyra_error(LYRA_ERR_ARG, "%s: video must be (B, C, T, H, W)", op);
    if (vid->ne[2] % kt || vid->ne[3] % kh || vid->ne[4] % kw)
        return lyra_error(LYRA_ERR_ARG, "%s: T, H, W (%lld, %lld, %lld) must be multiples of the patch (%d, %d, %d)",
                          op, (long long)vid->ne[2], (long long)vid->ne[3], (long long)vid->ne[4], kt, kh, kw);
    int64_t ne[3] = {vid->ne[0], (vid->ne[2] / kt) * (vid->ne[3] / kh) * (vid->ne[4] / kw),
                     vid->ne[1] * kt * kh * kw};
    return check_shape(op, "tokens", tok, 3, ne);
}

lyra_status lyra_op_patchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                             lyra_patch_order order) {
    LYRA_TRY(check_out(be, "patchify", y));
    LYRA_TRY(check_patch(be, "patchify", x, y, kt, kh, kw));
    LYRA_TRY(check_contiguous("patchify", "y", y));
    LYRA_TRY(check_alias("patchify", "x", y, x, 0));
    return be->ops->patchify(be, y, x, kt, kh, kw, order);
}

lyra_status lyra_op_unpatchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                               lyra_patch_order order) {
    LYRA_TRY(check_out(be, "unpatchify", y));
    LYRA_TRY(check_patch(be, "unpatchify", y, x, kt, kh, kw));
    LYRA_TRY(check_contiguous("unpatchify", "y", y));
    LYRA_TRY(check_alias("unpatchify", "x", y, x, 0));
    return be->ops->unpatchify(be, y, x, kt, kh, kw, order);
}

lyra_status lyra_op_embedding(lyra_backend *be, lyra_tensor *y, const lyra_tensor *table, const lyra_tensor *ids) {
    const char *op = "embedding";
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "table", table, 1));
    LYRA_TRY(check_tensor(be, op, "ids", ids, 0));
    if (ids->dtype != LYRA_DTYPE_I32 && ids->dtype != LYRA_DTYPE_I64)
        return lyra_error(LYRA_ERR_TYPE, "embedding: ids must be i32 or i64, got %s", lyra_dtype_name(ids->dtype));
    if (table->ndim != 2) return lyra_error(LYRA_ERR_ARG, "embedding: table must be (V, D)");
    if (ids->ndim >= LYRA_MAX_DIMS) return lyra_error(LYRA_ERR_ARG, "embedding: ids has too many dims");
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, ids->ne, sizeof ne);
    ne[ids->ndim] = table->ne[1];
    LYRA_TRY(check_shape(op, "y", y, ids->ndim + 1, ne));
    LYRA_TRY(check_contiguous(op, "y", y));
    return be->ops->embedding(be, y, table, ids);
}

/* ---------------- GEMM ---------------- */

lyra_status lyra_op_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b) {
    const char *op = "linear";
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    LYRA_TRY(check_tensor(be, op, "w", w, 1));
    if (w->ndim != 2) return lyra_error(LYRA_ERR_ARG, "linear: w must be (out, in), got %d dims", w->ndim);
    if (x->ndim < 1) return lyra_error(LYRA_ERR_ARG, "linear: x must have at least one dim");
    int64_t K = w->ne[1], N = w->ne[0];
    if (x->ne[x->ndim - 1] != K) {
        char sx[96], sw[96];
        return lyra_error(LYRA_ERR_ARG, "linear: x %s last dim != w %s in-features", SHAPE(x, sx), SHAPE(w, sw));
    }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x->ne, sizeof ne);
    ne[x->ndim - 1] = N;
    LYRA_TRY(check_shape(op, "y", y, x->ndim, ne));
    LYRA_TRY(check_rows(op, "y", y));
    LYRA_TRY(check_vec(be, op, "b", b, N));
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    return be->ops->linear(be, y, x, w, b);
}

lyra_status lyra_op_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                               const lyra_tensor *b, lyra_act act) {
    if ((unsigned)act >= LYRA_ACT_COUNT) return lyra_error(LYRA_ERR_ARG, "linear_act: unknown activation %d", (int)act);
    /* lyra_op_linear's checks, then the fused entry */
    LYRA_TRY(check_out(be, "linear", y));
    LYRA_TRY(check_tensor(be, "linear", "x", x, 1));
    LYRA_TRY(check_tensor(be, "linear", "w", w, 1));
    if (w->ndim != 2) return lyra_error(LYRA_ERR_ARG, "linear: w must be (out, in), got %d dims", w->ndim);
    if (x->ndim < 1) return lyra_error(LYRA_ERR_ARG, "linear: x must have at least one dim");
    int64_t K = w->ne[1], N = w->ne[0];
    if (x->ne[x->ndim - 1] != K) {
        char sx[96], sw[96];
        return lyra_error(LYRA_ERR_ARG, "linear: x %s last dim != w %s in-features", SHAPE(x, sx), SHAPE(w, sw));
    }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x->ne, sizeof ne);
    ne[x->ndim - 1] = N;
    LYRA_TRY(check_shape("linear", "y", y, x->ndim, ne));
    LYRA_TRY(check_rows("linear", "y", y));
    LYRA_TRY(check_vec(be, "linear", "b", b, N));
    LYRA_TRY(check_alias("linear", "x", y, x, 0));
    return be->ops->linear_act(be, y, x, w, b, act);
}

lyra_status lyra_op_matmul(lyra_backend *be, lyra_tensor *c, const lyra_tensor *a, const lyra_tensor *b,
                           int trans_b, float alpha) {
    const char *op = "matmul";
    LYRA_TRY(check_out(be, op, c));
    LYRA_TRY(check_tensor(be, op, "a", a, 1));
    LYRA_TRY(check_tensor(be, op, "b", b, 1));
    if (c->ndim < 2 || c->ndim > 3 || a->ndim != c->ndim || b->ndim != c->ndim)
        return lyra_error(LYRA_ERR_ARG, "matmul: a, b, c must all be 2-d or all 3-d (batch first)");
    int bd = c->ndim - 2;
    int64_t M = c->ne[bd], N = c->ne[bd + 1], K = a->ne[bd + 1];
    int64_t bn = trans_b ? b->ne[bd] : b->ne[bd + 1], bk = trans_b ? b->ne[bd + 1] : b->ne[bd];
    if (a->ne[bd] != M || bn != N || bk != K) {
        char sa[96], sb[96], sc[96];
        return lyra_error(LYRA_ERR_ARG, "matmul: shapes a %s, b %s%s, c %s do not match", SHAPE(a, sa), SHAPE(b, sb),
                          trans_b ? " (transposed)" : "", SHAPE(c, sc));
    }
    if (bd && ((a->ne[0] != c->ne[0] && a->ne[0] != 1) || (b->ne[0] != c->ne[0] && b->ne[0] != 1)))
        return lyra_error(LYRA_ERR_ARG, "matmul: batch sizes of a and b must equal c's or be 1");
    LYRA_TRY(check_rows(op, "c", c));
    LYRA_TRY(check_alias(op, "a", c, a, 0));
    LYRA_TRY(check_alias(op, "b", c, b, 0));
    return be->ops->matmul(be, c, a, b, trans_b, alpha);
}

lyra_status lyra_op_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                              const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask,
                              float scale) {
    const char *op = "attention";
    LYRA_TRY(check_out(be, op, o));
    LYRA_TRY(check_tensor(be, op, "q", q, 1));
    LYRA_TRY(check_tensor(be, op, "k", k, 1));
    LYRA_TRY(check_tensor(be, op, "v", v, 1));
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || o->ndim != 4)
        return lyra_error(LYRA_ERR_ARG, "attention: q, k, v, o must be 4-d (B, L, H, D)");
    int64_t B = q->ne[0], Lq = q->ne[1], H = q->ne[2], D = q->ne[3];
    int64_t Lk = k->ne[1], Hk = k->ne[2], Dv = v->ne[3];
    LYRA_TRY(check_shape(op, "k", k, 4, (int64_t[]){B, Lk, Hk, D}));
    LYRA_TRY(check_shape(op, "v", v, 4, (int64_t[]){B, Lk, Hk, Dv}));
    LYRA_TRY(check_shape(op, "o", o, 4, (int64_t[]){B, Lq, H, Dv}));
    if (Hk < 1 || H % Hk) return lyra_error(LYRA_ERR_ARG, "attention: q heads %lld not a multiple of kv heads %lld",
                                            (long long)H, (long long)Hk);
    LYRA_TRY(check_rows(op, "q", q));
    LYRA_TRY(check_rows(op, "k", k));
    LYRA_TRY(check_rows(op, "v", v));
    LYRA_TRY(check_rows(op, "o", o));
    if (bias) {
        LYRA_TRY(check_tensor(be, op, "bias", bias, 1));
        lyra_tensor full = lyra_tensor_make(NULL, LYRA_DTYPE_F32, 4, (int64_t[]){B, H, Lq, Lk});
        LYRA_TRY(check_broadcast(op, "bias", bias, &full));
        if (bias->ne[2] != Lq || bias->ne[3] != Lk)
            return lyra_error(LYRA_ERR_ARG, "attention: bias must be (B|1, H|1, Lq, Lk)");
    }
    if (key_mask) {
        LYRA_TRY(check_tensor(be, op, "key_mask", key_mask, 0));
        if (key_mask->dtype != LYRA_DTYPE_U8) return lyra_error(LYRA_ERR_TYPE, "attention: key_mask must be u8");
        LYRA_TRY(check_shape(op, "key_mask", key_mask, 2, (int64_t[]){B, Lk}));
    }
    if (!isfinite(scale)) return lyra_error(LYRA_ERR_ARG, "attention: scale must be finite");
    LYRA_TRY(check_alias(op, "q", o, q, 0));
    LYRA_TRY(check_alias(op, "k", o, k, 0));
    LYRA_TRY(check_alias(op, "v", o, v, 0));
    return be->ops->attention(be, o, q, k, v, bias, key_mask, scale);
}

/* A contiguous tensor of dtype dt and shape (ne0) or (ne0, ne1) (ndim 1 or 2). */
static lyra_status check_plain(lyra_backend *be, const char *op, const char *arg, const lyra_tensor *t, lyra_dtype dt,
                               int ndim, int64_t ne0, int64_t ne1) {
    LYRA_TRY(check_tensor(be, op, arg, t, 0));
    if (t->dtype != dt)
        return lyra_error(LYRA_ERR_TYPE, "%s: %s has dtype %s, expected %s", op, arg, lyra_dtype_name(t->dtype),
                          lyra_dtype_name(dt));
    LYRA_TRY(check_shape(op, arg, t, ndim, (int64_t[]){ne0, ne1}));
    return check_contiguous(op, arg, t);
}

static int64_t rows_of(const lyra_tensor *t) {
    int64_t r = 1;
    for (int i = 0; i < t->ndim - 1; i++) r *= t->ne[i];
    return r;
}

lyra_status lyra_op_quantize_fp8_rows(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x) {
    const char *op = "quantize_fp8_rows";
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    if (x->ndim < 1) return lyra_error(LYRA_ERR_ARG, "%s: x must have at least one dim", op);
    LYRA_TRY(check_rows(op, "x", x));
    int64_t K = x->ne[x->ndim - 1], M = rows_of(x);
    LYRA_TRY(check_plain(be, op, "q (output)", q, LYRA_DTYPE_U8, 2, M, K));
    LYRA_TRY(check_plain(be, op, "s (output)", s, LYRA_DTYPE_F32, 1, M, 0));
    LYRA_TRY(check_alias(op, "x", q, x, 0));
    LYRA_TRY(check_alias(op, "x", s, x, 0));
    LYRA_TRY(check_alias(op, "q", s, q, 0));
    return be->ops->quantize_fp8_rows(be, q, s, x);
}

lyra_status lyra_op_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                               const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b) {
    const char *op = "linear_fp8";
    LYRA_TRY(check_out(be, op, y));
    if (!lyra_dtype_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "%s: y has dtype %s, expected f32, bf16 or f16", op, lyra_dtype_name(y->dtype));
    if (y->ndim < 1) return lyra_error(LYRA_ERR_ARG, "%s: y must have at least one dim", op);
    LYRA_TRY(check_rows(op, "y", y));
    LYRA_TRY(check_tensor(be, op, "w8", w8, 0));
    if (w8->ndim != 2) return lyra_error(LYRA_ERR_ARG, "%s: w8 must be (out, in), got %d dims", op, w8->ndim);
    int64_t N = w8->ne[0], K = w8->ne[1], M = rows_of(y);
    if (y->ne[y->ndim - 1] != N) {
        char sy[96], sw[96];
        return lyra_error(LYRA_ERR_ARG, "%s: y %s last dim != w8 %s out-features", op, SHAPE(y, sy), SHAPE(w8, sw));
    }
    LYRA_TRY(check_plain(be, op, "w8", w8, LYRA_DTYPE_U8, 2, N, K));
    LYRA_TRY(check_plain(be, op, "ws", ws, LYRA_DTYPE_F32, 1, N, 0));
    LYRA_TRY(check_plain(be, op, "q", q, LYRA_DTYPE_U8, 2, M, K));
    LYRA_TRY(check_plain(be, op, "s", s, LYRA_DTYPE_F32, 1, M, 0));
    LYRA_TRY(check_vec(be, op, "b", b, N));
    LYRA_TRY(check_alias(op, "q", y, q, 0));
    LYRA_TRY(check_alias(op, "s", y, s, 0));
    return be->ops->linear_fp8(be, y, q, s, w8, ws, b);
}

/* ---------------- normalisation ---------------- */

static lyra_status check_rowop(lyra_backend *be, const char *op, lyra_tensor *y, const lyra_tensor *x) {
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    if (x->ndim < 1) return lyra_error(LYRA_ERR_ARG, "%s: x must have at least one dim", op);
    LYRA_TRY(check_same(op, "y", y, x));
    return check_alias(op, "x", y, x, 1);
}

lyra_status lyra_op_rms_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             float eps) {
    LYRA_TRY(check_rowop(be, "rms_norm", y, x));
    LYRA_TRY(check_vec(be, "rms_norm", "w", w, x->ne[x->ndim - 1]));
    return be->ops->rms_norm(be, y, x, w, eps);
}

lyra_status lyra_op_layer_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                               const lyra_tensor *b, float eps) {
    LYRA_TRY(check_rowop(be, "layer_norm", y, x));
    LYRA_TRY(check_vec(be, "layer_norm", "w", w, x->ne[x->ndim - 1]));
    LYRA_TRY(check_vec(be, "layer_norm", "b", b, x->ne[x->ndim - 1]));
    return be->ops->layer_norm(be, y, x, w, b, eps);
}

lyra_status lyra_op_l2norm_channels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x,
                                    const lyra_tensor *gamma, const lyra_tensor *beta, float eps) {
    const char *op = "l2norm_channels";
    LYRA_TRY(check_rowop(be, op, y, x));
    if (x->ndim < 2) return lyra_error(LYRA_ERR_ARG, "%s: x must be (B, C, ...)", op);
    LYRA_TRY(check_vec(be, op, "gamma", gamma, x->ne[1]));
    LYRA_TRY(check_vec(be, op, "beta", beta, x->ne[1]));
    return be->ops->l2norm_channels(be, y, x, gamma, beta, eps);
}

lyra_status lyra_op_group_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int groups,
                               const lyra_tensor *w, const lyra_tensor *b, float eps) {
    const char *op = "group_norm";
    LYRA_TRY(check_rowop(be, op, y, x));
    if (x->ndim < 2) return lyra_error(LYRA_ERR_ARG, "%s: x must be (B, C, ...)", op);
    if (groups < 1 || x->ne[1] % groups)
        return lyra_error(LYRA_ERR_ARG, "%s: %lld channels not divisible into %d groups", op, (long long)x->ne[1], groups);
    LYRA_TRY(check_vec(be, op, "w", w, x->ne[1]));
    LYRA_TRY(check_vec(be, op, "b", b, x->ne[1]));
    return be->ops->group_norm(be, y, x, groups, w, b, eps);
}

lyra_status lyra_op_softmax(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float scale) {
    LYRA_TRY(check_rowop(be, "softmax", y, x));
    return be->ops->softmax(be, y, x, scale);
}

/* ---------------- pointwise ---------------- */

lyra_status lyra_op_unary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act act) {
    if ((unsigned)act >= LYRA_ACT_COUNT) return lyra_error(LYRA_ERR_ARG, "unary: unknown activation %d", (int)act);
    LYRA_TRY(check_rowop(be, "unary", y, x));
    return be->ops->unary(be, y, x, act);
}

lyra_status lyra_op_glu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act) {
    if ((unsigned)act >= LYRA_ACT_COUNT) return lyra_error(LYRA_ERR_ARG, "glu: unknown activation %d", (int)act);
    LYRA_TRY(check_rowop(be, "glu", y, a));
    LYRA_TRY(check_tensor(be, "glu", "g", g, 1));
    LYRA_TRY(check_same("glu", "g", g, y));
    LYRA_TRY(check_alias("glu", "g", y, g, 1));
    return be->ops->glu(be, y, a, g, act);
}

static lyra_status check_binary(lyra_backend *be, const char *op, lyra_tensor *y, const lyra_tensor *a,
                                const lyra_tensor *b) {
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "a", a, 1));
    LYRA_TRY(check_tensor(be, op, "b", b, 1));
    LYRA_TRY(check_broadcast(op, "a", a, y));
    LYRA_TRY(check_broadcast(op, "b", b, y));
    LYRA_TRY(check_alias(op, "a", y, a, 1));
    return check_alias(op, "b", y, b, 1);
}

lyra_status lyra_op_add(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    LYRA_TRY(check_binary(be, "add", y, a, b));
    return be->ops->add(be, y, a, b);
}

lyra_status lyra_op_mul(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    LYRA_TRY(check_binary(be, "mul", y, a, b));
    return be->ops->mul(be, y, a, b);
}

lyra_status lyra_op_scale(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float alpha, float beta) {
    LYRA_TRY(check_rowop(be, "scale", y, x));
    return be->ops->scale(be, y, x, alpha, beta);
}

lyra_status lyra_op_modulate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *shift,
                             const lyra_tensor *scale) {
    const char *op = "modulate";
    LYRA_TRY(check_rowop(be, op, y, x));
    LYRA_TRY(check_tensor(be, op, "shift", shift, 1));
    LYRA_TRY(check_tensor(be, op, "scale", scale, 1));
    LYRA_TRY(check_broadcast(op, "shift", shift, y));
    LYRA_TRY(check_broadcast(op, "scale", scale, y));
    LYRA_TRY(check_alias(op, "shift", y, shift, 0));
    LYRA_TRY(check_alias(op, "scale", y, scale, 0));
    return be->ops->modulate(be, y, x, shift, scale);
}

lyra_status lyra_op_gate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *g,
                         const lyra_tensor *a) {
    const char *op = "gate";
    LYRA_TRY(check_rowop(be, op, y, x));
    LYRA_TRY(check_tensor(be, op, "g", g, 1));
    LYRA_TRY(check_tensor(be, op, "a", a, 1));
    LYRA_TRY(check_broadcast(op, "g", g, y));
    LYRA_TRY(check_same(op, "a", a, y));
    LYRA_TRY(check_alias(op, "g", y, g, 0));
    LYRA_TRY(check_alias(op, "a", y, a, 1));
    return be->ops->gate(be, y, x, g, a);
}

lyra_status lyra_op_rope(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *angles,
                         lyra_rope_mode mode, int n_sections) {
    const char *op = "rope";
    LYRA_TRY(check_rowop(be, op, y, x));
    if (x->ndim != 4) return lyra_error(LYRA_ERR_ARG, "rope: x must be (B, L, H, D)");
    int64_t D = x->ne[3];
    if (mode != LYRA_ROPE_INTERLEAVED && mode != LYRA_ROPE_HALF)
        return lyra_error(LYRA_ERR_ARG, "rope: unknown mode %d", (int)mode);
    if (mode == LYRA_ROPE_INTERLEAVED) n_sections = 1;
    if (n_sections < 1 || D % (2 * n_sections))
        return lyra_error(LYRA_ERR_ARG, "rope: head dim %lld not divisible by 2·n_sections (%d)", (long long)D,
                          n_sections);
    LYRA_TRY(check_tensor(be, op, "angles", angles, 1));
    if (angles->dtype != LYRA_DTYPE_F32) return lyra_error(LYRA_ERR_TYPE, "rope: angles must be f32");
    LYRA_TRY(check_shape(op, "angles", angles, 2, (int64_t[]){x->ne[1], D / 2}));
    LYRA_TRY(check_rows(op, "x", x));
    LYRA_TRY(check_rows(op, "y", y));
    return be->ops->rope(be, y, x, angles, mode, n_sections);
}

lyra_status lyra_op_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves) {
    const char *op = "sincos";
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    if (!lyra_dtype_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "sincos: y has dtype %s, expected f32, bf16 or f16", lyra_dtype_name(y->dtype));
    if (octaves < 1 || octaves > 30) return lyra_error(LYRA_ERR_ARG, "sincos: octaves must be in 1..30, got %d", octaves);
    if (x->ndim < 1) return lyra_error(LYRA_ERR_ARG, "sincos: x must have at least one dim");
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x->ne, sizeof ne);
    ne[x->ndim - 1] = 2 * (int64_t)octaves * x->ne[x->ndim - 1];
    LYRA_TRY(check_shape(op, "y", y, x->ndim, ne));
    LYRA_TRY(check_contiguous(op, "y", y));
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    return be->ops->sincos(be, y, x, octaves);
}

/* ---------------- convolution and resampling ---------------- */

static lyra_status check_conv_common(lyra_backend *be, const char *op, lyra_tensor *y, const lyra_tensor *x,
                                     const lyra_tensor *w, int nd) {
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    LYRA_TRY(check_tensor(be, op, "w", w, 1));
    if (x->ndim != nd + 2 || w->ndim != nd + 2 || y->ndim != nd + 2)
        return lyra_error(LYRA_ERR_ARG, "%s: x, w and y must be %d-d", op, nd + 2);
    LYRA_TRY(check_contiguous(op, "y", y));
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    return LYRA_OK;
}

lyra_status lyra_op_conv2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b, const lyra_conv2d_params *p) {
    const char *op = "conv2d";
    LYRA_TRY(check_conv_common(be, op, y, x, w, 2));
    if (p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 ||
        p->pad_right < 0)
        return lyra_error(LYRA_ERR_ARG, "conv2d: strides must be >= 1 and paddings >= 0");
    if (w->ne[1] != x->ne[1])
        return lyra_error(LYRA_ERR_ARG, "conv2d: w in-channels %lld != x channels %lld", (long long)w->ne[1],
                          (long long)x->ne[1]);
    int64_t Hp = x->ne[2] + p->pad_top + p->pad_bottom, Wp = x->ne[3] + p->pad_left + p->pad_right;
    if (Hp < w->ne[2] || Wp < w->ne[3]) return lyra_error(LYRA_ERR_ARG, "conv2d: kernel larger than padded input");
    if (p->pad_mode == LYRA_PAD_REPLICATE && (x->ne[2] == 0 || x->ne[3] == 0))
        return lyra_error(LYRA_ERR_ARG, "conv2d: replicate padding of an empty input");
    int64_t ne[4] = {x->ne[0], w->ne[0], (Hp - w->ne[2]) / p->stride_h + 1, (Wp - w->ne[3]) / p->stride_w + 1};
    LYRA_TRY(check_shape(op, "y", y, 4, ne));
    LYRA_TRY(check_vec(be, op, "b", b, w->ne[0]));
    return be->ops->conv2d(be, y, x, w, b, p);
}

lyra_status lyra_op_conv3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p) {
    const char *op = "conv3d";
    LYRA_TRY(check_conv_common(be, op, y, x, w, 3));
    if (p->stride_t < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_front < 0 || p->pad_back < 0 ||
        p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0)
        return lyra_error(LYRA_ERR_ARG, "conv3d: strides must be >= 1 and paddings >= 0");
    if (w->ne[1] != x->ne[1])
        return lyra_error(LYRA_ERR_ARG, "conv3d: w in-channels %lld != x channels %lld", (long long)w->ne[1],
                          (long long)x->ne[1]);
    int64_t Tp = x->ne[2] + p->pad_front + p->pad_back;
    int64_t Hp = x->ne[3] + p->pad_top + p->pad_bottom, Wp = x->ne[4] + p->pad_left + p->pad_right;
    if (Tp < w->ne[2] || Hp < w->ne[3] || Wp < w->ne[4])
        return lyra_error(LYRA_ERR_ARG, "conv3d: kernel larger than padded input");
    if (p->pad_mode == LYRA_PAD_REPLICATE && (x->ne[3] == 0 || x->ne[4] == 0))
        return lyra_error(LYRA_ERR_ARG, "conv3d: replicate padding of an empty input");
    int64_t ne[5] = {x->ne[0], w->ne[0], (Tp - w->ne[2]) / p->stride_t + 1, (Hp - w->ne[3]) / p->stride_h + 1,
                     (Wp - w->ne[4]) / p->stride_w + 1};
    LYRA_TRY(check_shape(op, "y", y, 5, ne));
    LYRA_TRY(check_vec(be, op, "b", b, w->ne[0]));
    if (prefix) {
        LYRA_TRY(check_tensor(be, op, "prefix", prefix, 1));
        if (prefix->ndim != 5 || prefix->ne[0] != x->ne[0] || prefix->ne[1] != x->ne[1] ||
            prefix->ne[3] != x->ne[3] || prefix->ne[4] != x->ne[4])
            return lyra_error(LYRA_ERR_ARG, "conv3d: prefix must be (B, Ci, m, H, W) like x");
        if (prefix->ne[2] > p->pad_front)
            return lyra_error(LYRA_ERR_ARG, "conv3d: prefix has %lld frames but pad_front is %d",
                              (long long)prefix->ne[2], p->pad_front);
        LYRA_TRY(check_alias(op, "prefix", y, prefix, 0));
    }
    return be->ops->conv3d(be, y, x, w, b, prefix, p);
}

lyra_status lyra_op_conv_transpose2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                     const lyra_tensor *b, int stride, int padding) {
    const char *op = "conv_transpose2d";
    LYRA_TRY(check_conv_common(be, op, y, x, w, 2));
    if (stride < 1 || padding < 0) return lyra_error(LYRA_ERR_ARG, "%s: stride must be >= 1, padding >= 0", op);
    if (w->ne[0] != x->ne[1])
        return lyra_error(LYRA_ERR_ARG, "%s: w (Ci, Co, kh, kw) in-channels %lld != x channels %lld", op,
                          (long long)w->ne[0], (long long)x->ne[1]);
    int64_t Ho = (x->ne[2] - 1) * stride - 2 * padding + w->ne[2];
    int64_t Wo = (x->ne[3] - 1) * stride - 2 * padding + w->ne[3];
    if (Ho < 1 || Wo < 1) return lyra_error(LYRA_ERR_ARG, "%s: empty output", op);
    LYRA_TRY(check_shape(op, "y", y, 4, (int64_t[]){x->ne[0], w->ne[1], Ho, Wo}));
    LYRA_TRY(check_vec(be, op, "b", b, w->ne[1]));
    return be->ops->conv_transpose2d(be, y, x, w, b, stride, padding);
}

static lyra_status check_spatial(lyra_backend *be, const char *op, lyra_tensor *y, const lyra_tensor *x, int nsp,
                                 const int64_t *out_sp) {
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    if (x->ndim < nsp) return lyra_error(LYRA_ERR_ARG, "%s: x needs at least %d dims", op, nsp);
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x->ne, sizeof ne);
    for (int i = 0; i < nsp; i++) ne[x->ndim - nsp + i] = out_sp ? out_sp[i] : y->ne[x->ndim - nsp + i];
    LYRA_TRY(check_shape(op, "y", y, x->ndim, ne));
    LYRA_TRY(check_contiguous(op, "y", y));
    return check_alias(op, "x", y, x, 0);
}

lyra_status lyra_op_upsample_nearest2x(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    if (!x || x->ndim < 2) return lyra_error(LYRA_ERR_ARG, "upsample_nearest2x: x must be (..., H, W)");
    int64_t sp[2] = {2 * x->ne[x->ndim - 2], 2 * x->ne[x->ndim - 1]};
    LYRA_TRY(check_spatial(be, "upsample_nearest2x", y, x, 2, sp));
    return be->ops->upsample_nearest2x(be, y, x);
}

lyra_status lyra_op_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p) {
    const char *op = "resize";
    LYRA_TRY(check_spatial(be, op, y, x, 2, NULL));
    if (p->mode != LYRA_RESIZE_NEAREST && p->mode != LYRA_RESIZE_BILINEAR && p->mode != LYRA_RESIZE_BICUBIC)
        return lyra_error(LYRA_ERR_ARG, "resize: unknown mode %d", (int)p->mode);
    if (p->antialias && (p->align_corners || p->mode == LYRA_RESIZE_NEAREST))
        return lyra_error(LYRA_ERR_ARG, "resize: antialias needs bilinear/bicubic with align_corners=False");
    if (!(p->ratio_h >= 0) || !(p->ratio_w >= 0) || !isfinite(p->ratio_h) || !isfinite(p->ratio_w))
        return lyra_error(LYRA_ERR_ARG, "resize: ratios must be finite and >= 0 (0 = in/out)");
    for (int i = 2; i >= 1; i--)
        if (x->ne[x->ndim - i] < 1 || y->ne[y->ndim - i] < 1)
            return lyra_error(LYRA_ERR_ARG, "resize: empty spatial size");
    return be->ops->resize(be, y, x, p);
}

lyra_status lyra_op_avg_pool3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw) {
    if (kt < 1 || kh < 1 || kw < 1) return lyra_error(LYRA_ERR_ARG, "avg_pool3d: kernel sizes must be >= 1");
    if (!x || x->ndim < 3) return lyra_error(LYRA_ERR_ARG, "avg_pool3d: x must be (..., T, H, W)");
    int n = x->ndim;
    int64_t sp[3] = {x->ne[n - 3] / kt, x->ne[n - 2] / kh, x->ne[n - 1] / kw};
    LYRA_TRY(check_spatial(be, "avg_pool3d", y, x, 3, sp));
    return be->ops->avg_pool3d(be, y, x, kt, kh, kw);
}

/* ---------------- rendering ---------------- */

/* One f32 contiguous splat attribute (N, cols...) of the op. */
static lyra_status check_splat_field(lyra_backend *be, const char *arg, const lyra_tensor *t, int ndim,
                                     const int64_t *ne) {
    LYRA_TRY(check_tensor(be, "gs_rasterize", arg, t, 0));
    if (t->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_TYPE, "gs_rasterize: %s has dtype %s, expected f32", arg, lyra_dtype_name(t->dtype));
    LYRA_TRY(check_shape("gs_rasterize", arg, t, ndim, ne));
    return lyra_tensor_numel(t) ? check_contiguous("gs_rasterize", arg, t) : LYRA_OK; /* no splats: any strides */
}

lyra_status lyra_op_gs_rasterize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means, const lyra_tensor *scales,
                                 const lyra_tensor *rotations, const lyra_tensor *harmonics,
                                 const lyra_tensor *opacities, const lyra_splat_camera *cam) {
    const char *op = "gs_rasterize";
    if (!cam) return lyra_error(LYRA_ERR_ARG, "%s: the camera is missing", op);
    LYRA_TRY(check_tensor(be, op, "means", means, 0));
    LYRA_TRY(check_tensor(be, op, "harmonics", harmonics, 0));
    if (means->ndim != 2 || harmonics->ndim != 3)
        return lyra_error(LYRA_ERR_ARG, "%s: expected means (N, 3) and harmonics (N, 3, d_sh); got %d and %d dims",
                          op, means->ndim, harmonics->ndim);
    int64_t n = means->ne[0], d_sh = harmonics->ne[2];
    if (d_sh != 1 && d_sh != 4 && d_sh != 9)
        return lyra_error(LYRA_ERR_ARG, "%s: harmonics has %lld coefficients per channel; expected 1, 4 or 9 (SH "
                          "degree 0, 1 or 2)", op, (long long)d_sh);
    int64_t s3[2] = {n, 3}, s4[2] = {n, 4}, sh[3] = {n, 3, d_sh}, s1[1] = {n};
    LYRA_TRY(check_splat_field(be, "means", means, 2, s3));
    LYRA_TRY(check_splat_field(be, "scales", scales, 2, s3));
    LYRA_TRY(check_splat_field(be, "rotations", rotations, 2, s4));
    LYRA_TRY(check_splat_field(be, "harmonics", harmonics, 3, sh));
    LYRA_TRY(check_splat_field(be, "opacities", opacities, 1, s1));
    LYRA_TRY(check_out(be, op, y));
    if (y->ndim != 3 || y->ne[2] != 5 || y->ne[0] < 1 || y->ne[1] < 1 || y->ne[0] > 16384 || y->ne[1] > 16384) {
        char got[96];
        return lyra_error(LYRA_ERR_ARG, "%s: y has shape %s, expected (H, W, 5) with H and W from 1 to 16384", op,
                          SHAPE(y, got));
    }
    if (y->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_TYPE, "%s: y has dtype %s, expected f32", op, lyra_dtype_name(y->dtype));
    LYRA_TRY(check_contiguous(op, "y (output)", y));
    const lyra_tensor *in[5] = {means, scales, rotations, harmonics, opacities};
    static const char *names[5] = {"means", "scales", "rotations", "harmonics", "opacities"};
    for (int i = 0; i < 5; i++) LYRA_TRY(check_alias(op, names[i], y, in[i], 0));
    if (!(cam->K[0] > 0) || !(cam->K[4] > 0))
        return lyra_error(LYRA_ERR_ARG, "%s: the focal lengths must be positive (K[0,0] = %g, K[1,1] = %g)", op,
                          (double)cam->K[0], (double)cam->K[4]);
    if (!(cam->near_plane > 0))
        return lyra_error(LYRA_ERR_ARG, "%s: near_plane %g must be > 0", op, (double)cam->near_plane);
    if (n > INT32_MAX) return lyra_error(LYRA_ERR_ARG, "%s: %lld splats (at most 2^31 - 1)", op, (long long)n);
    return be->ops->gs_rasterize(be, y, means, scales, rotations, harmonics, opacities, cam);
}

/* ---------------- host helpers ---------------- */

void lyra_rope_angles_video(float *phi, const float *pos, int64_t L, int head_dim, double theta) {
    int d6 = head_dim / 6, dh = 2 * d6, dt = head_dim - 2 * dh; /* 128 -> dt 44, dh = dw 42 */
    int nt = dt / 2, nh = dh / 2, half = head_dim / 2;
    for (int64_t l = 0; l < L; l++) {
        float *o = phi + l * half;
        for (int j = 0; j < nt; j++) o[j] = (float)(pos[3 * l] * pow(theta, -2.0 * j / dt));
        for (int j = 0; j < nh; j++) o[nt + j] = (float)(pos[3 * l + 1] * pow(theta, -2.0 * j / dh));
        for (int j = 0; j < nh; j++) o[nt + nh + j] = (float)(pos[3 * l + 2] * pow(theta, -2.0 * j / dh));
    }
}

void lyra_rope_angles_2d(float *phi, const float *pos, int64_t L, int head_dim, double theta) {
    int q = head_dim / 4, half = head_dim / 2;
    for (int64_t l = 0; l < L; l++)
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < q; k++)
                phi[l * half + s * q + k] = (float)(pos[2 * l + s] * pow(theta, -4.0 * k / head_dim));
}

/* ---------------- geometry ---------------- */

static lyra_status check_warp_f32(lyra_backend *be, const char *arg, const lyra_tensor *t, int ndim, const int64_t *ne,
                                  int output) {
    const char *op = "warp_forward";
    LYRA_TRY(output ? check_out(be, op, (lyra_tensor *)t) : check_tensor(be, op, arg, t, 0));
    if (t->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_TYPE, "%s: %s has dtype %s, expected f32", op, arg, lyra_dtype_name(t->dtype));
    LYRA_TRY(check_shape(op, arg, t, ndim, ne));
    return check_contiguous(op, arg, t);
}

static lyra_status check_finite_host(const float *v, int n, const char *what) {
    if (!v) return lyra_error(LYRA_ERR_ARG, "warp_forward: %s is missing", what);
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return lyra_error(LYRA_ERR_ARG, "warp_forward: %s element %d is %g; camera matrices must be finite", what,
                              i, (double)v[i]);
    return LYRA_OK;
}

lyra_status lyra_op_warp_forward(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask,
                                 lyra_tensor *out_depth, const lyra_tensor *image, const lyra_tensor *depth,
                                 const lyra_warp_params *p) {
    const char *op = "warp_forward";
    if (!p) return lyra_error(LYRA_ERR_ARG, "%s: the cameras are missing", op);
    if (p->n_targets < 1) return lyra_error(LYRA_ERR_ARG, "%s: n_targets %d must be >= 1", op, p->n_targets);
    if (p->norm_batch < 0) return lyra_error(LYRA_ERR_ARG, "%s: norm_batch %d must be >= 0", op, p->norm_batch);
    LYRA_TRY(check_tensor(be, op, "image", image, 0));
    if (image->ndim != 3 || image->ne[0] < 1 || image->ne[1] < 1 || image->ne[2] < 1) {
        char got[96];
        return lyra_error(LYRA_ERR_ARG, "%s: image has shape %s, expected (C, H, W) with C, H, W >= 1", op,
                          SHAPE(image, got));
    }
    const int64_t N = p->n_targets, C = image->ne[0], H = image->ne[1], W = image->ne[2];
    if ((H + 2) * (W + 2) > INT32_MAX / 2)
        return lyra_error(LYRA_ERR_ARG, "%s: image %lldx%lld is too large", op, (long long)H, (long long)W);
    const int64_t s_img[3] = {C, H, W}, s_dep[2] = {H, W}, s_out[4] = {N, C, H, W}, s_plane[3] = {N, H, W};
    LYRA_TRY(check_warp_f32(be, "image", image, 3, s_img, 0));
    LYRA_TRY(check_warp_f32(be, "depth", depth, 2, s_dep, 0));
    LYRA_TRY(check_warp_f32(be, "out_image", out_image, 4, s_out, 1));
    if (out_mask) LYRA_TRY(check_warp_f32(be, "out_mask", out_mask, 3, s_plane, 1));
    if (out_depth) LYRA_TRY(check_warp_f32(be, "out_depth", out_depth, 3, s_plane, 1));
    lyra_tensor *outs[3] = {out_image, out_mask, out_depth};
    static const char *out_names[3] = {"out_image", "out_mask", "out_depth"};
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        LYRA_TRY(check_alias(op, "image", outs[i], image, 0));
        LYRA_TRY(check_alias(op, "depth", outs[i], depth, 0));
        for (int j = 0; j < i; j++)
            if (outs[j]) LYRA_TRY(check_alias(op, out_names[j], outs[i], outs[j], 0));
    }
    LYRA_TRY(check_finite_host(p->src_w2c, 16, "src_w2c"));
    LYRA_TRY(check_finite_host(p->src_K, 9, "src_K"));
    LYRA_TRY(check_finite_host(p->tgt_w2c, 16 * p->n_targets, "tgt_w2c"));
    LYRA_TRY(check_finite_host(p->tgt_K, 9 * p->n_targets, "tgt_K"));
    if (!be->ops->warp_forward)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "%s: the %s backend has no forward-warp kernel", op, be->ops->name);
    return be->ops->warp_forward(be, out_image, out_mask, out_depth, image, depth, p);
}

/* ---------------- chunk inputs ---------------- */

/* An f32 tensor argument of the prep ops: present, on the backend's device, the given shape (ne NULL: any). */
static lyra_status check_prep_f32(lyra_backend *be, const char *op, const char *arg, const lyra_tensor *t, int ndim,
                                  const int64_t *ne) {
    LYRA_TRY(check_tensor(be, op, arg, t, 0));
    if (t->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_TYPE, "%s: %s has dtype %s, expected f32", op, arg, lyra_dtype_name(t->dtype));
    return ne ? check_shape(op, arg, t, ndim, ne) : LYRA_OK;
}

lyra_status lyra_op_rays(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p) {
    const char *op = "rays";
    if (!p) return lyra_error(LYRA_ERR_ARG, "%s: the camera is missing", op);
    const int u = p->unshuffle;
    if (u < 1 || height < 1 || width < 1 || height % u || width % u)
        return lyra_error(LYRA_ERR_ARG, "%s: image %dx%d must be a positive multiple of unshuffle %d", op, height, width,
                          u);
    if (!(p->K[0] != 0.0f && p->K[1] != 0.0f) || !isfinite(p->K[0]) || !isfinite(p->K[1]) || !isfinite(p->K[2]) ||
        !isfinite(p->K[3]))
        return lyra_error(LYRA_ERR_ARG, "%s: K: fx and fy must be finite and non-zero, cx and cy finite", op);
    for (int k = 0; k < 16; k++)
        if (!isfinite(p->c2w[k])) return lyra_error(LYRA_ERR_ARG, "%s: c2w element %d must be finite", op, k);
    const int64_t ne[3] = {6LL * u * u, height / u, width / u};
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "y", y, 1));
    LYRA_TRY(check_shape(op, "y", y, 3, ne));
    return be->ops->rays(be, y, height, width, p);
}

lyra_status lyra_op_to_u8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode) {
    const char *op = "to_u8";
    if (mode != LYRA_U8_VIDEO && mode != LYRA_U8_ROUND) return lyra_error(LYRA_ERR_ARG, "%s: unknown mode %d", op, mode);
    LYRA_TRY(check_tensor(be, op, "x", x, 1));
    if (x->ndim != 4) {
        char got[96];
        return lyra_error(LYRA_ERR_ARG, "%s: x has shape %s, expected (N, C, H, W)", op, SHAPE(x, got));
    }
    LYRA_TRY(check_out(be, op, y));
    if (y->dtype != LYRA_DTYPE_U8)
        return lyra_error(LYRA_ERR_TYPE, "%s: y has dtype %s, expected u8", op, lyra_dtype_name(y->dtype));
    const int64_t ne[4] = {x->ne[0], x->ne[2], x->ne[3], x->ne[1]};
    LYRA_TRY(check_shape(op, "y", y, 4, ne));
    LYRA_TRY(check_contiguous(op, "y", y));
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    return be->ops->to_u8(be, y, x, mode);
}

lyra_status lyra_op_minmax(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev) {
    const char *op = "minmax";
    const int64_t two = 2;
    LYRA_TRY(check_out(be, op, mm));
    LYRA_TRY(check_prep_f32(be, op, "mm", mm, 1, &two));
    LYRA_TRY(check_prep_f32(be, op, "x", x, 0, NULL));
    if (prev) {
        LYRA_TRY(check_prep_f32(be, op, "prev", prev, 1, &two));
        LYRA_TRY(check_alias(op, "prev", mm, prev, 1));
    }
    LYRA_TRY(check_alias(op, "x", mm, x, 0));
    return be->ops->minmax(be, mm, x, prev);
}

lyra_status lyra_op_range_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm,
                               float eps) {
    const char *op = "range_norm";
    const int64_t two = 2;
    if (!(eps > 0.0f) || !isfinite(eps)) return lyra_error(LYRA_ERR_ARG, "%s: eps %g must be finite and > 0", op, eps);
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_prep_f32(be, op, "x", x, 0, NULL));
    LYRA_TRY(check_tensor(be, op, "y", y, 1));
    LYRA_TRY(check_shape(op, "y", y, x->ndim, x->ne));
    LYRA_TRY(check_prep_f32(be, op, "mm", mm, 1, &two));
    LYRA_TRY(check_alias(op, "x", y, x, 1));
    LYRA_TRY(check_alias(op, "mm", y, mm, 0));
    return be->ops->range_norm(be, y, x, mm, eps);
}

/* ---------------- sampler state ---------------- */

lyra_status lyra_op_latent_update(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                                  const lyra_latent_update *p) {
    const char *op = "latent_update";
    static const char *names[4] = {"x[0]", "x[1]", "x[2]", "x[3]"};
    if (!p || (unsigned)p->kind >= LYRA_LATENT_KIND_COUNT)
        return lyra_error(LYRA_ERR_ARG, "%s: unknown update kind %d", op, p ? (int)p->kind : -1);
    const int want = lyra_latent_inputs(p);
    if (!want) return lyra_error(LYRA_ERR_ARG, "%s: UniPC order %d (1 or 2 allowed)", op, p->order);
    if (n != want) return lyra_error(LYRA_ERR_ARG, "%s: kind %d takes %d inputs, got %d", op, (int)p->kind, want, n);
    if (!x) return lyra_error(LYRA_ERR_ARG, "%s: the inputs are missing", op);
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_prep_f32(be, op, "y", y, 0, NULL));
    /* the backends see every input at y's shape: a broadcast dim becomes stride 0 */
    lyra_tensor v[4];
    const lyra_tensor *pv[4];
    for (int i = 0; i < n; i++) {
        LYRA_TRY(check_prep_f32(be, op, names[i], x[i], 0, NULL));
        LYRA_TRY(check_broadcast(op, names[i], x[i], y));
        LYRA_TRY(check_alias(op, names[i], y, x[i], 1));
        v[i] = *x[i];
        for (int d = 0; d < y->ndim; d++)
            if (v[i].ne[d] != y->ne[d]) {
                v[i].ne[d] = y->ne[d];
                v[i].nb[d] = 0;
            }
        pv[i] = &v[i];
    }
    return be->ops->latent_update(be, y, pv, n, p);
}

lyra_status lyra_op_u8_pixels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_u8_pixels_params *p) {
    const char *op = "u8_pixels";
    char got[96];
    if (!p) return lyra_error(LYRA_ERR_ARG, "%s: params are missing", op);
    LYRA_TRY(check_tensor(be, op, "x", x, 0));
    if (x->dtype != LYRA_DTYPE_U8 || x->ndim != 4 || x->ne[3] < 1 || x->ne[3] > 4)
        return lyra_error(LYRA_ERR_ARG, "%s: x is %s %s, expected u8 (N, H, W, C) with 1 <= C <= 4", op,
                          lyra_dtype_name(x->dtype), SHAPE(x, got));
    LYRA_TRY(check_contiguous(op, "x", x));
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "y", y, 1));
    if (y->dtype != LYRA_DTYPE_F32 || y->ndim != 4 || y->ne[0] != x->ne[0] || y->ne[1] != x->ne[3])
        return lyra_error(LYRA_ERR_ARG, "%s: y is %s %s, expected f32 (%lld, %lld, Ho, Wo)", op,
                          lyra_dtype_name(y->dtype), SHAPE(y, got), (long long)x->ne[0], (long long)x->ne[3]);
    LYRA_TRY(check_contiguous(op, "y", y));
    const int64_t H = x->ne[1], W = x->ne[2], Ho = y->ne[2], Wo = y->ne[3];
    if (H > INT32_MAX / 4 || W > INT32_MAX / 4 || Ho > INT32_MAX / 4 || Wo > INT32_MAX / 4)
        return lyra_error(LYRA_ERR_ARG, "%s: sizes %lldx%lld -> %lldx%lld too large", op, (long long)H, (long long)W,
                          (long long)Ho, (long long)Wo);
    switch (p->resample) {
    case LYRA_U8_RESAMPLE_NONE:
        if (Ho != H || Wo != W)
            return lyra_error(LYRA_ERR_ARG, "%s: resample none needs y's size %lldx%lld to equal x's %lldx%lld", op,
                              (long long)Ho, (long long)Wo, (long long)H, (long long)W);
        break;
    case LYRA_U8_RESAMPLE_AREA:
        if (Ho > H || Wo > W)
            return lyra_error(LYRA_ERR_ARG, "%s: resample area only shrinks (%lldx%lld -> %lldx%lld)", op, (long long)H,
                              (long long)W, (long long)Ho, (long long)Wo);
        break;
    case LYRA_U8_RESAMPLE_CUBIC: break;
    default: return lyra_error(LYRA_ERR_ARG, "%s: unknown resample %d", op, (int)p->resample);
    }
    for (int64_t c = 0; c < x->ne[3]; c++)
        if (!isfinite(p->mean[c]) || !isfinite(p->std[c]) || p->std[c] == 0.0f)
            return lyra_error(LYRA_ERR_ARG, "%s: mean[%lld] and std[%lld] must be finite, std non-zero", op,
                              (long long)c, (long long)c);
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    if (!lyra_tensor_numel(y)) return LYRA_OK;
    return be->ops->u8_pixels(be, y, x, p);
}

/* ---------------- random weights ---------------- */

lyra_status lyra_op_fill_random(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r) {
    const char *op = "fill_random";
    if (!r) return lyra_error(LYRA_ERR_ARG, "%s: the rule is missing", op);
    if (!isfinite(r->scale) || !isfinite(r->mean))
        return lyra_error(LYRA_ERR_ARG, "%s: scale and mean must be finite", op);
    if (y && !y->data && lyra_tensor_numel(y) == 0) return LYRA_OK;
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_tensor(be, op, "y", y, 1));
    LYRA_TRY(check_contiguous(op, "y", y));
    if (!be->ops->fill_random)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "%s: the %s backend has no kernel", op, be->ops->name);
    return be->ops->fill_random(be, y, r);
}

/* f32 and contiguous, of shape ne (ndim 3): the maps of da3_merge / depth_resize. */
static lyra_status check_map(lyra_backend *be, const char *op, const char *arg, const lyra_tensor *t, int ndim,
                             const int64_t *ne) {
    LYRA_TRY(check_tensor(be, op, arg, t, 1));
    if (t->dtype != LYRA_DTYPE_F32) return lyra_error(LYRA_ERR_TYPE, "%s: %s must be f32", op, arg);
    if (ne) LYRA_TRY(check_shape(op, arg, t, ndim, ne));
    else if (t->ndim != ndim)
        return lyra_error(LYRA_ERR_ARG, "%s: %s has %d dims, expected %d", op, arg, t->ndim, ndim);
    return check_contiguous(op, arg, t);
}

lyra_status lyra_op_da3_merge(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                              lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor) {
    const char *op = "da3_merge";
    LYRA_TRY(check_map(be, op, "depth", depth, 3, NULL));
    LYRA_TRY(check_map(be, op, "conf", conf, 3, depth->ne));
    LYRA_TRY(check_map(be, op, "metric", metric, 3, depth->ne));
    LYRA_TRY(check_map(be, op, "sky", sky, 3, depth->ne));
    LYRA_TRY(check_map(be, op, "stats", stats, 1, (int64_t[]){4}));
    if (!metric_factor) return lyra_error(LYRA_ERR_ARG, "%s: metric_factor is missing", op);
    for (int64_t v = 0; v < depth->ne[0]; v++)
        if (!isfinite(metric_factor[v]))
            return lyra_error(LYRA_ERR_ARG, "%s: metric_factor[%lld] is not finite", op, (long long)v);
    const lyra_tensor *t[5] = {depth, conf, metric, sky, stats};
    static const char *names[5] = {"depth", "conf", "metric", "sky", "stats"};
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (check_alias(op, names[i], t[j], t[i], 0) != LYRA_OK)
                return lyra_error(LYRA_ERR_ARG, "%s: %s and %s overlap", op, names[i], names[j]);
    if (!lyra_tensor_numel(depth)) return lyra_error(LYRA_ERR_ARG, "%s: the maps are empty", op);
    return be->ops->da3_merge(be, stats, depth, conf, metric, sky, metric_factor);
}

lyra_status lyra_op_depth_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor) {
    const char *op = "depth_resize";
    LYRA_TRY(check_map(be, op, "x", x, 3, NULL));
    LYRA_TRY(check_out(be, op, y));
    LYRA_TRY(check_map(be, op, "y", y, 3, NULL));
    if (y->ne[0] != x->ne[0])
        return lyra_error(LYRA_ERR_ARG, "%s: y has %lld maps, x %lld", op, (long long)y->ne[0], (long long)x->ne[0]);
    for (int d = 1; d < 3; d++)
        if (x->ne[d] < 1 || y->ne[d] < 1 || x->ne[d] > INT32_MAX / 4 || y->ne[d] > INT32_MAX / 4)
            return lyra_error(LYRA_ERR_ARG, "%s: sizes %lldx%lld -> %lldx%lld must be positive and below 2^29", op,
                              (long long)x->ne[1], (long long)x->ne[2], (long long)y->ne[1], (long long)y->ne[2]);
    if (!(divisor > 0.0) || !isfinite(divisor))
        return lyra_error(LYRA_ERR_ARG, "%s: divisor %g must be finite and > 0", op, divisor);
    LYRA_TRY(check_alias(op, "x", y, x, 0));
    if (!lyra_tensor_numel(y)) return LYRA_OK;
    return be->ops->depth_resize(be, y, x, divisor);
}
