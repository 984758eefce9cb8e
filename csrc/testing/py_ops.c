/* lyra2._testops: the backends' ops on NumPy float32 arrays, FOR TESTS ONLY (tests/test_ops.py,
 * tests/test_cuda_ops.py) and the measurements of benchmarks/kernels.py and bench_gemm.py. A separate
 * extension, so none of this ships in lyra2._core.
 *
 * Inputs keep their strides when they already are aligned float32 (so the harness exercises strided
 * descriptors: transposes, slices, negative strides, broadcasts); anything else is converted. Weights can be
 * rounded to bf16/f16 first with wdtype="bf16"/"f16" to test the converting GEMM paths. Outputs are new
 * C-contiguous arrays allocated by NumPy.
 *
 * Every op takes two extra keywords: backend="cpu" (default: a fresh CPU backend per call) or "cuda" (the
 * process's CUDA backend, created on first use; arrays are staged to the GPU with their strides, see
 * py_ops_stage.h), and dtype="f32" | "bf16" | "f16", the activation dtype on the device (inputs rounded to it,
 * outputs widened back to float32; CUDA only). Two more shape the device outputs (CUDA only): out_dtype="f32"
 * keeps them float32 whatever the activation dtype (bf16 in, f32 out), out_pad=P makes each a column slice of
 * rows P elements wider (a leading dimension larger than the width, as when writing into a fused buffer). */
#include "python/py_common.h"

#include <math.h>
#include <time.h>

#include "nn/cpu/cpu_internal.h"
#include "nn/measure/measure.h"
#include "nn/ops.h"
#include "py_ops_stage.h"
#include "testops.h"

#ifdef LYRA2_WITH_CUDA
#include "cuda_bench.h"
#include "nn/cuda/lyra_cuda.h"
#endif

#define MAX_KEEP 24

typedef struct keep {
    PyObject *objs[MAX_KEEP];
    int n;
    void *bufs[8];
    int nbufs;
    ops_stage stage;
} keep;

static void keep_release(keep *k) {
    for (int i = 0; i < k->n; i++) Py_XDECREF(k->objs[i]);
    for (int i = 0; i < k->nbufs; i++) free(k->bufs[i]);
    k->n = k->nbufs = 0;
}

/* The backend and activation dtype of the current call, set by the keyword wrapper (see with_backend). */
typedef struct call_ctx {
    int cuda;
    lyra_dtype act;
    int out_f32;     /* out_dtype="f32": outputs stay float32 on the device (CUDA only) */
    int64_t out_pad; /* out_pad=P: device outputs are column slices of rows P elements wider (CUDA only) */
} call_ctx;
static call_ctx g_ctx = {0, LYRA_DTYPE_F32, 0, 0};

static lyra_tensor desc_of(PyArrayObject *a, lyra_dtype dt) {
    lyra_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.device = LYRA_DEVICE_CPU;
    t.ndim = PyArray_NDIM(a);
    t.data = PyArray_DATA(a);
    for (int i = 0; i < LYRA_MAX_DIMS; i++) { t.ne[i] = 1; t.nb[i] = (int64_t)lyra_dtype_size(dt); }
    for (int i = 0; i < t.ndim; i++) {
        t.ne[i] = PyArray_DIMS(a)[i];
        t.nb[i] = PyArray_STRIDES(a)[i];
    }
    return t;
}

static int stage(keep *k, lyra_tensor *t, ops_role role, int *err) {
    if (ops_stage_add(&k->stage, t, role) < 0) {
        PyErr_SetString(PyExc_ValueError, "too many arrays for one op");
        *err = 1;
        return -1;
    }
    return 0;
}

/* Input array of numpy type `npt` -> descriptor (strides kept when no conversion is needed). Returns a pointer
 * to t, or NULL for an optional None (`*err` stays 0) or on error (`*err` = 1, exception set). Not staged. */
static lyra_tensor *in_raw(keep *k, PyObject *o, const char *what, lyra_tensor *t, int npt, lyra_dtype dt,
                           int optional, int *err) {
    if (o == NULL || o == Py_None) {
        if (optional) return NULL;
        PyErr_Format(PyExc_TypeError, "%s is required", what);
        *err = 1;
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, npt, 0, 0, NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) { *err = 1; return NULL; }
    if (PyArray_NDIM(a) > LYRA_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d dims", what, LYRA_MAX_DIMS);
        Py_DECREF(a);
        *err = 1;
        return NULL;
    }
    k->objs[k->n++] = (PyObject *)a;
    *t = desc_of(a, dt);
    return t;
}

/* An array uploaded with its own dtype (masks, ids). */
static lyra_tensor *in_array(keep *k, PyObject *o, const char *what, lyra_tensor *t, int npt, lyra_dtype dt,
                             int optional, int *err) {
    lyra_tensor *r = in_raw(k, o, what, t, npt, dt, optional, err);
    if (r && stage(k, r, OPS_IN_KEEP, err) < 0) return NULL;
    return r;
}

/* A float32 activation (rounded to the call's activation dtype on the device). */
static lyra_tensor *in_f32(keep *k, PyObject *o, const char *what, lyra_tensor *t, int optional, int *err) {
    lyra_tensor *r = in_raw(k, o, what, t, NPY_FLOAT32, LYRA_DTYPE_F32, optional, err);
    if (r && stage(k, r, OPS_IN_ACT, err) < 0) return NULL;
    return r;
}

/* A float32 parameter that stays float32 on the device (biases, RoPE angles, attention bias). */
static lyra_tensor *in_param(keep *k, PyObject *o, const char *what, lyra_tensor *t, int optional, int *err) {
    return in_array(k, o, what, t, NPY_FLOAT32, LYRA_DTYPE_F32, optional, err);
}

/* A weight: float32 input, optionally rounded into a contiguous bf16/f16 buffer. */
static lyra_tensor *in_weight(keep *k, PyObject *o, const char *what, lyra_tensor *t, const char *wdtype,
                              int optional, int *err) {
    /* uint16 arrays with wdtype bf16/f16 are taken as raw half-precision bits (no conversion per call) */
    if (o && PyArray_Check(o) && PyArray_TYPE((PyArrayObject *)o) == NPY_UINT16 && wdtype &&
        (!strcmp(wdtype, "bf16") || !strcmp(wdtype, "f16")))
        return in_array(k, o, what, t, NPY_UINT16, !strcmp(wdtype, "bf16") ? LYRA_DTYPE_BF16 : LYRA_DTYPE_F16,
                        optional, err);
    lyra_tensor *r = in_raw(k, o, what, t, NPY_FLOAT32, LYRA_DTYPE_F32, optional, err);
    if (!r || !wdtype || !strcmp(wdtype, "f32")) {
        if (r && stage(k, r, OPS_IN_KEEP, err) < 0) return NULL;
        return r;
    }
    lyra_dtype dt;
    if (!strcmp(wdtype, "bf16")) dt = LYRA_DTYPE_BF16;
    else if (!strcmp(wdtype, "f16")) dt = LYRA_DTYPE_F16;
    else {
        PyErr_Format(PyExc_ValueError, "wdtype must be 'f32', 'bf16' or 'f16', got '%s'", wdtype);
        *err = 1;
        return NULL;
    }
    if (k->nbufs == 8) {
        PyErr_SetString(PyExc_ValueError, "too many converted weights for one op");
        *err = 1;
        return NULL;
    }
    lyra_tensor c = lyra_tensor_make(NULL, dt, t->ndim, t->ne);
    c.data = malloc(lyra_tensor_nbytes(&c) + 2);
    if (!c.data) { PyErr_NoMemory(); *err = 1; return NULL; }
    k->bufs[k->nbufs++] = c.data;
    float *tmp = malloc((size_t)lyra_tensor_numel(t) * 4 + 4);
    if (!tmp) { PyErr_NoMemory(); *err = 1; return NULL; }
    cpu_gather_f32(tmp, t);
    lyra_convert_from_f32(c.data, dt, tmp, lyra_tensor_numel(t));
    free(tmp);
    *t = c;
    if (stage(k, t, OPS_IN_KEEP, err) < 0) return NULL;
    return t;
}

static PyArrayObject *out_f32(keep *k, int ndim, const int64_t *ne, lyra_tensor *t) {
    npy_intp dims[LYRA_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        if (ne[i] < 0) { PyErr_SetString(PyExc_ValueError, "output size would be negative"); return NULL; }
        dims[i] = (npy_intp)ne[i];
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(ndim, dims, NPY_FLOAT32);
    if (!a) return NULL;
    k->objs[k->n++] = (PyObject *)a;
    *t = desc_of(a, LYRA_DTYPE_F32);
    int err = 0;
    if (stage(k, t, OPS_OUT, &err) < 0) return NULL;
    return a;
}

/* Runs the op expression `call` (which names `be`) on the call's backend; returns the output (new ref) or NULL. */
#define RUN_OP(k, out, call)                                                                                \
    do {                                                                                                    \
        call_ctx cx_ = g_ctx;                                                                               \
        lyra_backend be_;                                                                                   \
        lyra_backend *be = &be_;                                                                            \
        lyra_status st_;                                                                                    \
        if (cx_.cuda) {                                                                                     \
            be = ops_cuda_backend();                                                                        \
            if (!be) { keep_release(k); return NULL; }                                                      \
            (k)->stage.out_f32 = cx_.out_f32;                                                               \
            (k)->stage.out_pad = cx_.out_pad;                                                               \
            Py_BEGIN_ALLOW_THREADS ops_cuda_lock();                                                         \
            st_ = ops_stage_in(be, &(k)->stage, cx_.act);                                                   \
            if (st_ == LYRA_OK) st_ = (call);                                                               \
            if (st_ == LYRA_OK) st_ = ops_stage_out(be, &(k)->stage);                                       \
            ops_stage_free(be, &(k)->stage);                                                                \
            ops_cuda_unlock();                                                                              \
            Py_END_ALLOW_THREADS                                                                            \
        } else {                                                                                            \
            st_ = cx_.act == LYRA_DTYPE_F32 && !cx_.out_pad ? lyra_backend_cpu_init(&be_, 0)                \
                                            : lyra_error(LYRA_ERR_ARG, "dtype/out_pad: the CPU backend computes " \
                                                                       "f32 activations into its arrays " \
                                                                       "(dtype='bf16'/'f16' and out_pad " \
                                                                       "need backend='cuda')");           \
            if (st_ == LYRA_OK) {                                                                           \
                Py_BEGIN_ALLOW_THREADS st_ = (call);                                                        \
                Py_END_ALLOW_THREADS                                                                        \
                lyra_backend_free(&be_);                                                                    \
            }                                                                                               \
        }                                                                                                   \
        if (st_ != LYRA_OK) { lyra_py_raise(st_); keep_release(k); return NULL; }                           \
        Py_INCREF(out);                                                                                     \
        keep_release(k);                                                                                    \
        return (PyObject *)(out);                                                                           \
    } while (0)

#define FAIL(k) do { keep_release(k); return NULL; } while (0)

static int parse_act(const char *s, lyra_act *a) {
    static const char *names[] = {"identity", "gelu_erf", "gelu_tanh", "silu", "relu", "sigmoid"};
    for (int i = 0; i < LYRA_ACT_COUNT; i++)
        if (!strcmp(s, names[i])) { *a = (lyra_act)i; return 0; }
    PyErr_Format(PyExc_ValueError, "act must be one of identity, gelu_erf, gelu_tanh, silu, relu, sigmoid; got '%s'", s);
    return -1;
}

static int parse_pad_mode(const char *s, lyra_pad_mode *m) {
    if (!strcmp(s, "zero")) { *m = LYRA_PAD_ZERO; return 0; }
    if (!strcmp(s, "replicate")) { *m = LYRA_PAD_REPLICATE; return 0; }
    PyErr_Format(PyExc_ValueError, "pad_mode must be 'zero' or 'replicate', got '%s'", s);
    return -1;
}

static int parse_order(const char *s, lyra_patch_order *o) {
    if (!strcmp(s, "c_slowest")) { *o = LYRA_PATCH_C_SLOWEST; return 0; }
    if (!strcmp(s, "c_fastest")) { *o = LYRA_PATCH_C_FASTEST; return 0; }
    PyErr_Format(PyExc_ValueError, "order must be 'c_slowest' or 'c_fastest', got '%s'", s);
    return -1;
}

/* ---------------- dtype conversion ---------------- */

static PyObject *py_convert(PyObject *args, int to_half, lyra_dtype dt) {
    PyObject *xo;
    if (!PyArg_ParseTuple(args, "O", &xo)) return NULL;
    PyArrayObject *x = lyra_py_array(xo, to_half ? NPY_FLOAT32 : NPY_UINT16, -1, "x");
    if (!x) return NULL;
    PyArrayObject *y = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x),
                                                          to_half ? NPY_UINT16 : NPY_FLOAT32);
    if (!y) { Py_DECREF(x); return NULL; }
    npy_intp n = PyArray_SIZE(x);
    if (to_half) lyra_convert_from_f32(PyArray_DATA(y), dt, PyArray_DATA(x), n);
    else lyra_convert_to_f32(PyArray_DATA(y), PyArray_DATA(x), dt, n);
    Py_DECREF(x);
    return (PyObject *)y;
}
static PyObject *py_to_bf16(PyObject *s, PyObject *a) { (void)s; return py_convert(a, 1, LYRA_DTYPE_BF16); }
static PyObject *py_from_bf16(PyObject *s, PyObject *a) { (void)s; return py_convert(a, 0, LYRA_DTYPE_BF16); }
static PyObject *py_to_f16(PyObject *s, PyObject *a) { (void)s; return py_convert(a, 1, LYRA_DTYPE_F16); }
static PyObject *py_from_f16(PyObject *s, PyObject *a) { (void)s; return py_convert(a, 0, LYRA_DTYPE_F16); }

/* ---------------- layout ---------------- */

static PyObject *py_copy(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", NULL};
    PyObject *xo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O", kws, &xo)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_copy(be, &y, &x));
}

static PyObject *py_concat(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"xs", "dim", NULL};
    PyObject *lo;
    int dim = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|i", kws, &lo, &dim)) return NULL;
    PyObject *seq = PySequence_Fast(lo, "xs must be a sequence of arrays");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > 16) { Py_DECREF(seq); PyErr_SetString(PyExc_ValueError, "xs: 1 to 16 arrays"); return NULL; }
    keep k = {0};
    k.objs[k.n++] = seq;
    lyra_tensor xs[16], y;
    const lyra_tensor *xp[16];
    int err = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        in_f32(&k, PySequence_Fast_GET_ITEM(seq, i), "xs[i]", &xs[i], 0, &err);
        if (err) FAIL(&k);
        xp[i] = &xs[i];
    }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, xs[0].ne, sizeof ne);
    int d = dim < 0 ? dim + xs[0].ndim : dim;
    if (d < 0 || d >= xs[0].ndim) { PyErr_SetString(PyExc_ValueError, "dim out of range"); FAIL(&k); }
    ne[d] = 0;
    for (Py_ssize_t i = 0; i < n; i++) ne[d] += xs[i].ne[d];
    PyArrayObject *out = out_f32(&k, xs[0].ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_concat(be, &y, xp, (int)n, dim));
}

static int parse_int_list(PyObject *o, int64_t *v, int maxn, const char *what) {
    PyObject *seq = PySequence_Fast(o, what);
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > maxn) { Py_DECREF(seq); PyErr_Format(PyExc_ValueError, "%s: at most %d values", what, maxn); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        v[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v[i] == -1 && PyErr_Occurred()) { Py_DECREF(seq); return -1; }
    }
    Py_DECREF(seq);
    return (int)n;
}

static PyObject *py_pad(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "pads", "mode", NULL};
    PyObject *xo, *po;
    const char *mode_s = "zero";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|s", kws, &xo, &po, &mode_s)) return NULL;
    lyra_pad_mode mode;
    if (parse_pad_mode(mode_s, &mode) < 0) return NULL;
    int64_t pads[2 * LYRA_MAX_DIMS];
    int np = parse_int_list(po, pads, 2 * LYRA_MAX_DIMS, "pads");
    if (np < 0) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (np != 2 * x.ndim) { PyErr_SetString(PyExc_ValueError, "pads needs 2 values per dim"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    for (int i = 0; i < x.ndim; i++) ne[i] = x.ne[i] + pads[2 * i] + pads[2 * i + 1];
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_pad(be, &y, &x, pads, mode));
}

static PyObject *py_patchify(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "kt", "kh", "kw", "order", NULL};
    PyObject *xo;
    int kt = 1, kh = 2, kwd = 2;
    const char *os = "c_slowest";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iiis", kws, &xo, &kt, &kh, &kwd, &os)) return NULL;
    lyra_patch_order order;
    if (parse_order(os, &order) < 0) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim != 5 || kt < 1 || kh < 1 || kwd < 1) { PyErr_SetString(PyExc_ValueError, "x must be (B, C, T, H, W)"); FAIL(&k); }
    int64_t ne[3] = {x.ne[0], (x.ne[2] / kt) * (x.ne[3] / kh) * (x.ne[4] / kwd), x.ne[1] * kt * kh * kwd};
    PyArrayObject *out = out_f32(&k, 3, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_patchify(be, &y, &x, kt, kh, kwd, order));
}

static PyObject *py_unpatchify(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "shape", "kt", "kh", "kw", "order", NULL};
    PyObject *xo, *so;
    int kt = 1, kh = 2, kwd = 2;
    const char *os = "c_fastest";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|iiis", kws, &xo, &so, &kt, &kh, &kwd, &os)) return NULL;
    lyra_patch_order order;
    if (parse_order(os, &order) < 0) return NULL;
    int64_t ne[5];
    if (parse_int_list(so, ne, 5, "shape") != 5) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "shape must be (B, C, T, H, W)");
        return NULL;
    }
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, 5, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_unpatchify(be, &y, &x, kt, kh, kwd, order));
}

static PyObject *py_embedding(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"table", "ids", "wdtype", NULL};
    PyObject *to, *io;
    const char *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|s", kws, &to, &io, &wd)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor table, ids, y;
    in_weight(&k, to, "table", &table, wd, 0, &err);
    if (!err) in_array(&k, io, "ids", &ids, NPY_INT64, LYRA_DTYPE_I64, 0, &err);
    if (err) FAIL(&k);
    if (table.ndim != 2 || ids.ndim >= LYRA_MAX_DIMS) { PyErr_SetString(PyExc_ValueError, "table must be (V, D)"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, ids.ne, sizeof ne);
    ne[ids.ndim] = table.ne[1];
    PyArrayObject *out = out_f32(&k, ids.ndim + 1, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_embedding(be, &y, &table, &ids));
}

/* ---------------- GEMM ---------------- */

static PyObject *py_linear(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "w", "b", "wdtype", NULL};
    PyObject *xo, *wo, *bo = Py_None;
    const char *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Os", kws, &xo, &wo, &bo, &wd)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, w, bt, y, *b = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_weight(&k, wo, "w", &w, wd, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (err) FAIL(&k);
    if (x.ndim < 1 || w.ndim != 2) { PyErr_SetString(PyExc_ValueError, "x (..., K), w (N, K)"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    ne[x.ndim - 1] = w.ne[0];
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_linear(be, &y, &x, &w, b));
}

static PyObject *py_matmul(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"a", "b", "trans_b", "alpha", NULL};
    PyObject *ao, *bo;
    int tb = 0;
    float alpha = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|pf", kws, &ao, &bo, &tb, &alpha)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor a, b, c;
    in_f32(&k, ao, "a", &a, 0, &err);
    if (!err) in_f32(&k, bo, "b", &b, 0, &err);
    if (err) FAIL(&k);
    if (a.ndim < 2 || a.ndim > 3 || b.ndim != a.ndim) { PyErr_SetString(PyExc_ValueError, "a, b: both 2-d or 3-d"); FAIL(&k); }
    int bd = a.ndim - 2;
    int64_t ne[3];
    if (bd) ne[0] = a.ne[0] > b.ne[0] ? a.ne[0] : b.ne[0];
    ne[bd] = a.ne[bd];
    ne[bd + 1] = tb ? b.ne[bd] : b.ne[bd + 1];
    PyArrayObject *out = out_f32(&k, a.ndim, ne, &c);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_matmul(be, &c, &a, &b, tb, alpha));
}

/* The plain C fallback GEMM on contiguous 2-d arrays (always compiled; tested against NumPy). */
static PyObject *py_sgemm_ref(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"a", "b", "trans_b", NULL};
    PyObject *ao, *bo;
    int tb = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|p", kws, &ao, &bo, &tb)) return NULL;
    keep k = {0};
    PyArrayObject *a = lyra_py_array(ao, NPY_FLOAT32, 2, "a"), *b = a ? lyra_py_array(bo, NPY_FLOAT32, 2, "b") : NULL;
    if (a) k.objs[k.n++] = (PyObject *)a;
    if (b) k.objs[k.n++] = (PyObject *)b;
    if (!a || !b) FAIL(&k);
    int64_t M = PyArray_DIMS(a)[0], K = PyArray_DIMS(a)[1];
    int64_t N = tb ? PyArray_DIMS(b)[0] : PyArray_DIMS(b)[1], Kb = tb ? PyArray_DIMS(b)[1] : PyArray_DIMS(b)[0];
    if (K != Kb) { PyErr_SetString(PyExc_ValueError, "sgemm_ref: inner sizes differ"); FAIL(&k); }
    lyra_tensor c;
    PyArrayObject *out = out_f32(&k, 2, (int64_t[]){M, N}, &c);
    if (!out) FAIL(&k);
    Py_BEGIN_ALLOW_THREADS
    cpu_sgemm_ref(tb, M, N, K, 1.0f, PyArray_DATA(a), K, PyArray_DATA(b), tb ? K : N, 0.0f, c.data, N, 2);
    Py_END_ALLOW_THREADS
    Py_INCREF(out);
    keep_release(&k);
    return (PyObject *)out;
}

static PyObject *py_attention(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"q", "k", "v", "scale", "bias", "key_mask", NULL};
    PyObject *qo, *ko, *vo, *bo = Py_None, *mo = Py_None;
    float scale;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOf|OO", kws, &qo, &ko, &vo, &scale, &bo, &mo)) return NULL;
    keep kp = {0};
    int err = 0;
    lyra_tensor q, k, v, bt, mt, o, *bias = NULL, *mask = NULL;
    in_f32(&kp, qo, "q", &q, 0, &err);
    if (!err) in_f32(&kp, ko, "k", &k, 0, &err);
    if (!err) in_f32(&kp, vo, "v", &v, 0, &err);
    if (!err) bias = in_param(&kp, bo, "bias", &bt, 1, &err);
    if (!err) mask = in_array(&kp, mo, "key_mask", &mt, NPY_UINT8, LYRA_DTYPE_U8, 1, &err);
    if (err) FAIL(&kp);
    if (q.ndim != 4 || v.ndim != 4) { PyErr_SetString(PyExc_ValueError, "q, k, v must be (B, L, H, D)"); FAIL(&kp); }
    PyArrayObject *out = out_f32(&kp, 4, (int64_t[]){q.ne[0], q.ne[1], q.ne[2], v.ne[3]}, &o);
    if (!out) FAIL(&kp);
    RUN_OP(&kp, out, lyra_op_attention(be, &o, &q, &k, &v, bias, mask, scale));
}

/* ---------------- normalisation ---------------- */

static PyObject *py_norm(PyObject *args, PyObject *kw, int kind) {
    static char *kws[] = {"x", "w", "b", "eps", "groups", "wdtype", NULL};
    PyObject *xo, *wo = Py_None, *bo = Py_None;
    float eps = kind == 2 ? 1e-12f : 1e-6f;
    int groups = 1;
    const char *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOfis", kws, &xo, &wo, &bo, &eps, &groups, &wd)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, wt, bt, y, *w = NULL, *b = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) w = in_weight(&k, wo, "w", &wt, wd, 1, &err);
    if (!err) b = in_weight(&k, bo, "b", &bt, wd, 1, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    switch (kind) {
    case 0: RUN_OP(&k, out, lyra_op_rms_norm(be, &y, &x, w, eps));
    case 1: RUN_OP(&k, out, lyra_op_layer_norm(be, &y, &x, w, b, eps));
    case 2: RUN_OP(&k, out, lyra_op_l2norm_channels(be, &y, &x, w, b, eps));
    default: RUN_OP(&k, out, lyra_op_group_norm(be, &y, &x, groups, w, b, eps));
    }
}
static PyObject *py_rms_norm(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_norm(a, k, 0); }
static PyObject *py_layer_norm(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_norm(a, k, 1); }
static PyObject *py_l2norm_channels(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_norm(a, k, 2); }
static PyObject *py_group_norm(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_norm(a, k, 3); }

static PyObject *py_softmax(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "scale", NULL};
    PyObject *xo;
    float scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|f", kws, &xo, &scale)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_softmax(be, &y, &x, scale));
}

/* ---------------- pointwise ---------------- */

static PyObject *py_unary(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "act", NULL};
    PyObject *xo;
    const char *as;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Os", kws, &xo, &as)) return NULL;
    lyra_act act;
    if (parse_act(as, &act) < 0) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_unary(be, &y, &x, act));
}

static PyObject *py_glu(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"a", "g", "act", NULL};
    PyObject *ao, *go;
    const char *as;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOs", kws, &ao, &go, &as)) return NULL;
    lyra_act act;
    if (parse_act(as, &act) < 0) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor a, g, y;
    in_f32(&k, ao, "a", &a, 0, &err);
    if (!err) in_f32(&k, go, "g", &g, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, a.ndim, a.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_glu(be, &y, &a, &g, act));
}

/* Output shape of a broadcast between same-ndim tensors. */
static int bshape(const lyra_tensor *a, const lyra_tensor *b, int64_t *ne) {
    if (a->ndim != b->ndim) { PyErr_SetString(PyExc_ValueError, "operands must have the same ndim"); return -1; }
    for (int i = 0; i < a->ndim; i++) ne[i] = a->ne[i] > b->ne[i] ? a->ne[i] : b->ne[i];
    return 0;
}

static PyObject *py_binary(PyObject *args, PyObject *kw, int kind) {
    static char *kws[] = {"a", "b", NULL};
    PyObject *ao, *bo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kws, &ao, &bo)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor a, b, y;
    in_f32(&k, ao, "a", &a, 0, &err);
    if (!err) in_f32(&k, bo, "b", &b, 0, &err);
    if (err) FAIL(&k);
    int64_t ne[LYRA_MAX_DIMS];
    if (bshape(&a, &b, ne) < 0) FAIL(&k);
    PyArrayObject *out = out_f32(&k, a.ndim, ne, &y);
    if (!out) FAIL(&k);
    if (kind == 0) RUN_OP(&k, out, lyra_op_add(be, &y, &a, &b));
    RUN_OP(&k, out, lyra_op_mul(be, &y, &a, &b));
}
static PyObject *py_add(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_binary(a, k, 0); }
static PyObject *py_mul(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_binary(a, k, 1); }

static PyObject *py_scale(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "alpha", "beta", NULL};
    PyObject *xo;
    float alpha = 1.0f, beta = 0.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|ff", kws, &xo, &alpha, &beta)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_scale(be, &y, &x, alpha, beta));
}

static PyObject *py_sincos(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "octaves", NULL};
    PyObject *xo;
    int octaves = 2;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|i", kws, &xo, &octaves)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    if (x.ndim >= 1) ne[x.ndim - 1] *= 2 * (int64_t)(octaves > 0 ? octaves : 0);
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_sincos(be, &y, &x, octaves));
}

static PyObject *py_modgate(PyObject *args, PyObject *kw, int gate) {
    static char *kws_m[] = {"x", "shift", "scale", NULL};
    static char *kws_g[] = {"x", "g", "a", NULL};
    PyObject *xo, *p1, *p2;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", gate ? kws_g : kws_m, &xo, &p1, &p2)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, t1, t2, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_f32(&k, p1, gate ? "g" : "shift", &t1, 0, &err);
    if (!err) in_f32(&k, p2, gate ? "a" : "scale", &t2, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    if (gate) RUN_OP(&k, out, lyra_op_gate(be, &y, &x, &t1, &t2));
    RUN_OP(&k, out, lyra_op_modulate(be, &y, &x, &t1, &t2));
}
static PyObject *py_modulate(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_modgate(a, k, 0); }
static PyObject *py_gate(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_modgate(a, k, 1); }

static PyObject *py_rope(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "angles", "mode", "n_sections", NULL};
    PyObject *xo, *ao;
    const char *ms = "interleaved";
    int ns = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|si", kws, &xo, &ao, &ms, &ns)) return NULL;
    lyra_rope_mode mode;
    if (!strcmp(ms, "interleaved")) mode = LYRA_ROPE_INTERLEAVED;
    else if (!strcmp(ms, "half")) mode = LYRA_ROPE_HALF;
    else { PyErr_Format(PyExc_ValueError, "mode must be 'interleaved' or 'half', got '%s'", ms); return NULL; }
    keep k = {0};
    int err = 0;
    lyra_tensor x, a, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_param(&k, ao, "angles", &a, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_f32(&k, x.ndim, x.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_rope(be, &y, &x, &a, mode, ns));
}

static PyObject *py_rope_angles(PyObject *args, PyObject *kw, int video) {
    static char *kws[] = {"pos", "head_dim", "theta", NULL};
    PyObject *po;
    int hd;
    double theta = video ? 10000.0 : 100.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|d", kws, &po, &hd, &theta)) return NULL;
    PyArrayObject *pos = lyra_py_array(po, NPY_FLOAT32, 2, "pos");
    if (!pos) return NULL;
    int want = video ? 3 : 2;
    if (PyArray_DIMS(pos)[1] != want || hd < 2 || hd % (video ? 2 : 4)) {
        PyErr_Format(PyExc_ValueError, "pos must be (L, %d) and head_dim a positive multiple of %d", want, video ? 2 : 4);
        Py_DECREF(pos);
        return NULL;
    }
    npy_intp dims[2] = {PyArray_DIMS(pos)[0], hd / 2};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (out) {
        if (video) lyra_rope_angles_video(PyArray_DATA(out), PyArray_DATA(pos), dims[0], hd, theta);
        else lyra_rope_angles_2d(PyArray_DATA(out), PyArray_DATA(pos), dims[0], hd, theta);
    }
    Py_DECREF(pos);
    return (PyObject *)out;
}
static PyObject *py_rope_angles_video(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_rope_angles(a, k, 1); }
static PyObject *py_rope_angles_2d(PyObject *s, PyObject *a, PyObject *k) { (void)s; return py_rope_angles(a, k, 0); }

/* ---------------- convolution and resampling ---------------- */

static PyObject *py_conv2d(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "w", "b", "stride", "pad", "pad_mode", "wdtype", NULL};
    PyObject *xo, *wo, *bo = Py_None, *so = NULL, *po = NULL;
    const char *pm = "zero", *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOss", kws, &xo, &wo, &bo, &so, &po, &pm, &wd)) return NULL;
    lyra_conv2d_params p = {1, 1, 0, 0, 0, 0, LYRA_PAD_ZERO};
    int64_t s[2] = {1, 1}, pd[4] = {0, 0, 0, 0};
    if (so && parse_int_list(so, s, 2, "stride") != 2) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "stride: (sh, sw)"); return NULL; }
    if (po && parse_int_list(po, pd, 4, "pad") != 4) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "pad: (top, bottom, left, right)"); return NULL; }
    if (parse_pad_mode(pm, &p.pad_mode) < 0) return NULL;
    p.stride_h = (int)s[0]; p.stride_w = (int)s[1];
    p.pad_top = (int)pd[0]; p.pad_bottom = (int)pd[1]; p.pad_left = (int)pd[2]; p.pad_right = (int)pd[3];
    keep k = {0};
    int err = 0;
    lyra_tensor x, w, bt, y, *b = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_weight(&k, wo, "w", &w, wd, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (err) FAIL(&k);
    if (x.ndim != 4 || w.ndim != 4 || p.stride_h < 1 || p.stride_w < 1) { PyErr_SetString(PyExc_ValueError, "x (B,C,H,W), w (Co,Ci,kh,kw), stride >= 1"); FAIL(&k); }
    int64_t ne[4] = {x.ne[0], w.ne[0], (x.ne[2] + pd[0] + pd[1] - w.ne[2]) / p.stride_h + 1,
                     (x.ne[3] + pd[2] + pd[3] - w.ne[3]) / p.stride_w + 1};
    PyArrayObject *out = out_f32(&k, 4, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_conv2d(be, &y, &x, &w, b, &p));
}

static PyObject *py_conv3d(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "w", "b", "prefix", "stride", "pad", "pad_mode", "wdtype", NULL};
    PyObject *xo, *wo, *bo = Py_None, *pro = Py_None, *so = NULL, *po = NULL;
    const char *pm = "zero", *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOOss", kws, &xo, &wo, &bo, &pro, &so, &po, &pm, &wd)) return NULL;
    lyra_conv3d_params p;
    memset(&p, 0, sizeof p);
    int64_t s[3] = {1, 1, 1}, pd[6] = {0, 0, 0, 0, 0, 0};
    if (so && parse_int_list(so, s, 3, "stride") != 3) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "stride: (st, sh, sw)"); return NULL; }
    if (po && parse_int_list(po, pd, 6, "pad") != 6) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "pad: (front, back, top, bottom, left, right)"); return NULL; }
    if (parse_pad_mode(pm, &p.pad_mode) < 0) return NULL;
    p.stride_t = (int)s[0]; p.stride_h = (int)s[1]; p.stride_w = (int)s[2];
    p.pad_front = (int)pd[0]; p.pad_back = (int)pd[1]; p.pad_top = (int)pd[2]; p.pad_bottom = (int)pd[3];
    p.pad_left = (int)pd[4]; p.pad_right = (int)pd[5];
    keep k = {0};
    int err = 0;
    lyra_tensor x, w, bt, prt, y, *b = NULL, *pre = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_weight(&k, wo, "w", &w, wd, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (!err) pre = in_f32(&k, pro, "prefix", &prt, 1, &err);
    if (err) FAIL(&k);
    if (x.ndim != 5 || w.ndim != 5 || p.stride_t < 1 || p.stride_h < 1 || p.stride_w < 1) { PyErr_SetString(PyExc_ValueError, "x (B,C,T,H,W), w (Co,Ci,kt,kh,kw), stride >= 1"); FAIL(&k); }
    int64_t ne[5] = {x.ne[0], w.ne[0], (x.ne[2] + pd[0] + pd[1] - w.ne[2]) / p.stride_t + 1,
                     (x.ne[3] + pd[2] + pd[3] - w.ne[3]) / p.stride_h + 1,
                     (x.ne[4] + pd[4] + pd[5] - w.ne[4]) / p.stride_w + 1};
    PyArrayObject *out = out_f32(&k, 5, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_conv3d(be, &y, &x, &w, b, pre, &p));
}

static PyObject *py_conv_transpose2d(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "w", "b", "stride", "padding", "wdtype", NULL};
    PyObject *xo, *wo, *bo = Py_None;
    int stride = 1, padding = 0;
    const char *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Oiis", kws, &xo, &wo, &bo, &stride, &padding, &wd)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, w, bt, y, *b = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_weight(&k, wo, "w", &w, wd, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (err) FAIL(&k);
    if (x.ndim != 4 || w.ndim != 4) { PyErr_SetString(PyExc_ValueError, "x (B,Ci,H,W), w (Ci,Co,kh,kw)"); FAIL(&k); }
    int64_t ne[4] = {x.ne[0], w.ne[1], (x.ne[2] - 1) * stride - 2 * padding + w.ne[2],
                     (x.ne[3] - 1) * stride - 2 * padding + w.ne[3]};
    PyArrayObject *out = out_f32(&k, 4, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_conv_transpose2d(be, &y, &x, &w, b, stride, padding));
}

static PyObject *py_upsample_nearest2x(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", NULL};
    PyObject *xo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O", kws, &xo)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim < 2) { PyErr_SetString(PyExc_ValueError, "x must be (..., H, W)"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    ne[x.ndim - 2] *= 2;
    ne[x.ndim - 1] *= 2;
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_upsample_nearest2x(be, &y, &x));
}

static PyObject *py_resize(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "size", "mode", "align_corners", "antialias", "ratio", NULL};
    PyObject *xo, *so, *ro = NULL;
    const char *ms = "bilinear";
    int ac = 0, aa = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|sppO", kws, &xo, &so, &ms, &ac, &aa, &ro)) return NULL;
    lyra_resize_params p = {LYRA_RESIZE_BILINEAR, ac, aa, 0.0, 0.0};
    if (!strcmp(ms, "nearest")) p.mode = LYRA_RESIZE_NEAREST;
    else if (!strcmp(ms, "bicubic")) p.mode = LYRA_RESIZE_BICUBIC;
    else if (strcmp(ms, "bilinear")) { PyErr_Format(PyExc_ValueError, "mode must be nearest, bilinear or bicubic, got '%s'", ms); return NULL; }
    if (ro && ro != Py_None && !PyArg_ParseTuple(ro, "dd", &p.ratio_h, &p.ratio_w)) return NULL;
    int64_t sz[2];
    if (parse_int_list(so, sz, 2, "size") != 2) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "size: (Ho, Wo)"); return NULL; }
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim < 2) { PyErr_SetString(PyExc_ValueError, "x must be (..., H, W)"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    ne[x.ndim - 2] = sz[0];
    ne[x.ndim - 1] = sz[1];
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_resize(be, &y, &x, &p));
}

static PyObject *py_avg_pool3d(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "kt", "kh", "kw", NULL};
    PyObject *xo;
    int kt, kh, kwd;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oiii", kws, &xo, &kt, &kh, &kwd)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim < 3 || kt < 1 || kh < 1 || kwd < 1) { PyErr_SetString(PyExc_ValueError, "x (..., T, H, W), kernel >= 1"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    ne[x.ndim - 3] /= kt;
    ne[x.ndim - 2] /= kh;
    ne[x.ndim - 1] /= kwd;
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_avg_pool3d(be, &y, &x, kt, kh, kwd));
}


/* gs_rasterize(means (N,3), scales (N,3), rotations (N,4), harmonics (N,3,d_sh), opacities (N), w2c (4,4), K (3,3),
 *              height, width, background=(0,0,0), near=0.01) -> (H, W, 5) f32 (r, g, b, alpha, depth) */
static PyObject *py_gs_rasterize(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"means", "scales", "rotations", "harmonics", "opacities", "w2c", "K", "height", "width",
                          "background", "near", NULL};
    PyObject *o[5], *w2c_o, *k_o;
    int h, w;
    float bg[3] = {0, 0, 0}, near_plane = 0.01f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOii|(fff)f", kws, &o[0], &o[1], &o[2], &o[3], &o[4], &w2c_o,
                                     &k_o, &h, &w, &bg[0], &bg[1], &bg[2], &near_plane))
        return NULL;
    lyra_splat_camera cam = {.near_plane = near_plane, .background = {bg[0], bg[1], bg[2]}};
    PyArrayObject *wa = lyra_py_array(w2c_o, NPY_FLOAT32, 2, "w2c"), *ka = wa ? lyra_py_array(k_o, NPY_FLOAT32, 2, "K") : NULL;
    int ok = ka && PyArray_SIZE(wa) == 16 && PyArray_SIZE(ka) == 9;
    if (ok) {
        memcpy(cam.w2c, PyArray_DATA(wa), sizeof cam.w2c);
        memcpy(cam.K, PyArray_DATA(ka), sizeof cam.K);
    } else if (ka) {
        PyErr_SetString(PyExc_ValueError, "w2c (4, 4) and K (3, 3) expected");
    }
    Py_XDECREF(wa);
    Py_XDECREF(ka);
    if (!ok) return NULL;
    keep k = {0};
    int err = 0;
    static const char *names[5] = {"means", "scales", "rotations", "harmonics", "opacities"};
    lyra_tensor t[5], y;
    for (int i = 0; i < 5 && !err; i++) in_param(&k, o[i], names[i], &t[i], 0, &err);
    if (err) FAIL(&k);
    int64_t ne[3] = {h, w, 5};
    if (h < 1 || w < 1) { PyErr_SetString(PyExc_ValueError, "height and width must be >= 1"); FAIL(&k); }
    PyArrayObject *out = out_f32(&k, 3, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_gs_rasterize(be, &y, &t[0], &t[1], &t[2], &t[3], &t[4], &cam));
}

/* ---------------- descriptor helpers (core/tensor.h, core/arena.h) ---------------- */

static int parse_dtype(const char *s, lyra_dtype *d) {
    for (int i = 0; i < LYRA_DTYPE_COUNT; i++)
        if (!strcmp(s, lyra_dtype_name((lyra_dtype)i))) { *d = (lyra_dtype)i; return 0; }
    PyErr_Format(PyExc_ValueError, "unknown dtype '%s'", s);
    return -1;
}

/* view(x, kind, args): applies lyra_tensor_slice / permute / reshape / expand to x's descriptor and copies the
 * view out with lyra_op_copy. kind "slice": args (dim, start, end); "permute": the permutation; "reshape" and
 * "expand": the new shape. */
static PyObject *py_view(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "kind", "args", NULL};
    PyObject *xo, *ao;
    const char *kind;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OsO", kws, &xo, &kind, &ao)) return NULL;
    int64_t v[LYRA_MAX_DIMS + 1];
    int n = parse_int_list(ao, v, LYRA_MAX_DIMS + 1, "args");
    if (n < 0) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, view, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    lyra_status st;
    if (!strcmp(kind, "slice")) {
        if (n != 3) { PyErr_SetString(PyExc_ValueError, "slice args: (dim, start, end)"); FAIL(&k); }
        st = lyra_tensor_slice(&view, &x, (int)v[0], v[1], v[2]);
    } else if (!strcmp(kind, "permute")) {
        int perm[LYRA_MAX_DIMS];
        if (n != x.ndim) { PyErr_SetString(PyExc_ValueError, "permute needs one entry per dim"); FAIL(&k); }
        for (int i = 0; i < n; i++) perm[i] = (int)v[i];
        st = lyra_tensor_permute(&view, &x, perm);
    } else if (!strcmp(kind, "select")) {
        if (n != 2) { PyErr_SetString(PyExc_ValueError, "select args: (dim, index)"); FAIL(&k); }
        st = lyra_tensor_select(&view, &x, (int)v[0], v[1]);
    } else if (!strcmp(kind, "unsqueeze")) {
        if (n != 1) { PyErr_SetString(PyExc_ValueError, "unsqueeze args: (dim,)"); FAIL(&k); }
        st = lyra_tensor_unsqueeze(&view, &x, (int)v[0]);
    } else if (!strcmp(kind, "reshape")) {
        st = lyra_tensor_reshape(&view, &x, n, v);
    } else if (!strcmp(kind, "expand")) {
        st = lyra_tensor_expand(&view, &x, n, v);
    } else {
        PyErr_Format(PyExc_ValueError, "unknown view kind '%s'", kind);
        FAIL(&k);
    }
    if (st != LYRA_OK) { lyra_py_raise(st); FAIL(&k); }
    PyArrayObject *out = out_f32(&k, view.ndim, view.ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_copy(be, &y, &view));
}

/* carve(specs, capacity=None): measuring pass of lyra_carver over [(name, dtype, shape), ...]; with a
 * capacity, also the carving pass over a buffer of that size (LYRA_ERR_OOM when too small).
 * Returns (bytes_needed, [byte offsets]). */
static PyObject *py_carve(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"specs", "capacity", NULL};
    PyObject *so;
    Py_ssize_t cap = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n", kws, &so, &cap)) return NULL;
    PyObject *seq = PySequence_Fast(so, "specs must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *offs = PyList_New(0);
    char *buf = NULL;
    lyra_carver c;
    if (!offs) goto fail;
    for (int pass = 0; pass < (cap >= 0 ? 2 : 1); pass++) {
        if (pass == 1) {
            buf = malloc((size_t)cap + 1);
            if (!buf) { PyErr_NoMemory(); goto fail; }
        }
        lyra_carver_init(&c, buf, (size_t)(cap < 0 ? 0 : cap), LYRA_DEVICE_CPU);
        for (Py_ssize_t i = 0; i < n; i++) {
            const char *name, *dts;
            PyObject *shape;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ssO", &name, &dts, &shape)) goto fail;
            lyra_dtype dt;
            int64_t ne[LYRA_MAX_DIMS];
            int nd = parse_int_list(shape, ne, LYRA_MAX_DIMS, "shape");
            if (nd < 0 || parse_dtype(dts, &dt) < 0) goto fail;
            lyra_tensor t;
            lyra_status st = lyra_carve(&c, &t, name, dt, nd, ne);
            if (st != LYRA_OK) { lyra_py_raise(st); goto fail; }
            if (pass == 0) {
                PyObject *o = PyLong_FromSsize_t((Py_ssize_t)(c.used - lyra_tensor_nbytes(&t)));
                if (!o || PyList_Append(offs, o) < 0) { Py_XDECREF(o); goto fail; }
                Py_DECREF(o);
            } else if ((char *)t.data - buf != PyLong_AsSsize_t(PyList_GET_ITEM(offs, i))) {
                PyErr_SetString(PyExc_AssertionError, "carving pass disagrees with the measuring pass");
                goto fail;
            }
        }
        if (pass == 0 && cap < 0) break;
    }
    free(buf);
    Py_DECREF(seq);
    PyObject *r = Py_BuildValue("(nO)", (Py_ssize_t)c.used, offs);
    Py_DECREF(offs);
    return r;
fail:
    free(buf);
    Py_XDECREF(offs);
    Py_DECREF(seq);
    return NULL;
}

/* bind(available, slots): available {name: shape} (f32 dummies), slots [(name, shape, optional)], -1 = any.
 * Returns {name: shape or None} as bound by lyra_weights_bind, or raises its error. */
typedef struct bind_src { int n; const char *names[64]; lyra_tensor t[64]; } bind_src;
static const lyra_tensor *bind_lookup(void *src, const char *name) {
    bind_src *s = src;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) return &s->t[i];
    return NULL;
}
static PyObject *py_bind(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"available", "slots", NULL};
    PyObject *ao, *so;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O", kws, &PyDict_Type, &ao, &so)) return NULL;
    bind_src src = {0};
    static float dummy;
    PyObject *key, *val;
    Py_ssize_t pos = 0;
    while (PyDict_Next(ao, &pos, &key, &val)) {
        if (src.n >= 64) { PyErr_SetString(PyExc_ValueError, "at most 64 tensors"); return NULL; }
        const char *nm = PyUnicode_AsUTF8(key);
        int64_t ne[LYRA_MAX_DIMS];
        int nd = nm ? parse_int_list(val, ne, LYRA_MAX_DIMS, "shape") : -1;
        if (nd < 0) return NULL;
        src.names[src.n] = nm;
        src.t[src.n] = lyra_tensor_make(&dummy, LYRA_DTYPE_F32, nd, ne);
        src.n++;
    }
    PyObject *seq = PySequence_Fast(so, "slots must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 64) { Py_DECREF(seq); PyErr_SetString(PyExc_ValueError, "at most 64 slots"); return NULL; }
    lyra_weight_slot slots[64];
    lyra_tensor dst[64];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *shape;
        const char *nm;
        int opt = 0;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "sO|p", &nm, &shape, &opt)) { Py_DECREF(seq); return NULL; }
        memset(&slots[i], 0, sizeof slots[i]);
        slots[i].name = nm;
        slots[i].dst = &dst[i];
        slots[i].optional = opt;
        slots[i].ndim = parse_int_list(shape, slots[i].ne, LYRA_MAX_DIMS, "shape");
        if (slots[i].ndim < 0) { Py_DECREF(seq); return NULL; }
    }
    lyra_status st = lyra_weights_bind(slots, (int)n, bind_lookup, &src);
    if (st != LYRA_OK) { Py_DECREF(seq); return lyra_py_raise(st); }
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *v;
        if (!dst[i].data) {
            v = Py_NewRef(Py_None);
        } else {
            v = PyTuple_New(dst[i].ndim);
            for (int d = 0; v && d < dst[i].ndim; d++) PyTuple_SET_ITEM(v, d, PyLong_FromLongLong(dst[i].ne[d]));
        }
        if (!v || PyDict_SetItemString(out, slots[i].name, v) < 0) { Py_XDECREF(v); Py_CLEAR(out); break; }
        Py_DECREF(v);
    }
    Py_DECREF(seq);
    return out;
}

/* arena(capacity, sizes, reset_after=-1): allocates `sizes` in order from a fresh arena; after allocation
 * number reset_after, resets to the mark taken before it. Returns ([offset or None], peak). */
static PyObject *py_arena(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"capacity", "sizes", "reset_after", NULL};
    Py_ssize_t cap;
    PyObject *so;
    int reset_after = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "nO|i", kws, &cap, &so, &reset_after)) return NULL;
    int64_t sizes[32];
    int n = parse_int_list(so, sizes, 32, "sizes");
    if (n < 0) return NULL;
    lyra_arena a;
    lyra_status st = lyra_arena_init(&a, (size_t)cap);
    if (st != LYRA_OK) return lyra_py_raise(st);
    PyObject *offs = PyList_New(n);
    size_t mark = 0;
    for (int i = 0; offs && i < n; i++) {
        if (i == reset_after) mark = lyra_arena_mark(&a);
        char *p = lyra_arena_alloc(&a, (size_t)sizes[i], "test");
        PyList_SET_ITEM(offs, i, p ? PyLong_FromSsize_t(p - a.base) : Py_NewRef(Py_None));
        if (i == reset_after) lyra_arena_reset(&a, mark);
    }
    lyra_error_clear();
    PyObject *r = offs ? Py_BuildValue("(On)", offs, (Py_ssize_t)a.peak) : NULL;
    Py_XDECREF(offs);
    lyra_arena_free(&a);
    return r;
}

/* ---------------- composition check: the ops.h example, for real ---------------- */

typedef struct demo_block {
    lyra_tensor ln_w, ln_b, qkv_w, qkv_b, proj_w, proj_b;
} demo_block;

/* Pre-norm attention block x += proj(attn(split_heads(qkv(LN(x))))), all activations from one arena.
 * x (B, L, C) is updated in place. */
static lyra_status demo_attn_block(lyra_backend *be, lyra_arena *act, lyra_tensor *x, const demo_block *blk,
                                   int64_t H) {
    int64_t B = x->ne[0], L = x->ne[1], C = x->ne[2], Dh = C / H;
    size_t mark = lyra_arena_mark(act);
    lyra_tensor h, qkv, qkv3, q, k, v, o, o3, a;
    LYRA_TRY(lyra_arena_tensor(act, &h, LYRA_DTYPE_F32, 3, x->ne, "ln"));
    LYRA_TRY(lyra_op_layer_norm(be, &h, x, &blk->ln_w, &blk->ln_b, 1e-5f));
    LYRA_TRY(lyra_arena_tensor(act, &qkv, LYRA_DTYPE_F32, 5, (int64_t[]){B, L, 3, H, Dh}, "qkv"));
    LYRA_TRY(lyra_tensor_reshape(&qkv3, &qkv, 3, (int64_t[]){B, L, 3 * C}));
    LYRA_TRY(lyra_op_linear(be, &qkv3, &h, &blk->qkv_w, &blk->qkv_b));
    LYRA_TRY(lyra_tensor_select(&q, &qkv, 2, 0));
    LYRA_TRY(lyra_tensor_select(&k, &qkv, 2, 1));
    LYRA_TRY(lyra_tensor_select(&v, &qkv, 2, 2));
    LYRA_TRY(lyra_arena_tensor(act, &o, LYRA_DTYPE_F32, 4, (int64_t[]){B, L, H, Dh}, "attn"));
    LYRA_TRY(lyra_op_attention(be, &o, &q, &k, &v, NULL, NULL, 1.0f / sqrtf((float)Dh)));
    LYRA_TRY(lyra_tensor_reshape(&o3, &o, 3, (int64_t[]){B, L, C}));
    LYRA_TRY(lyra_arena_tensor(act, &a, LYRA_DTYPE_F32, 3, (int64_t[]){B, L, C}, "proj"));
    LYRA_TRY(lyra_op_linear(be, &a, &o3, &blk->proj_w, &blk->proj_b));
    LYRA_TRY(lyra_op_add(be, x, x, &a));
    lyra_arena_reset(act, mark);
    return LYRA_OK;
}

static lyra_status demo_run(lyra_backend *be, lyra_tensor *x, const demo_block *blk, int64_t H, int repeat) {
    lyra_arena act;
    int64_t B = x->ne[0], L = x->ne[1], C = x->ne[2];
    size_t bytes = (size_t)(B * L * C * 4 + B * L * C * 3 + B * L * C * 2) * 4 + 8 * LYRA_ARENA_ALIGN;
    LYRA_TRY(lyra_arena_init(&act, bytes));
    lyra_status st = LYRA_OK;
    for (int r = 0; r < repeat && st == LYRA_OK; r++) st = demo_attn_block(be, &act, x, blk, H);
    lyra_arena_free(&act);
    return st;
}

/* attn_block_demo(x, ln_w, ln_b, qkv_w, qkv_b, proj_w, proj_b, heads, repeat=1, wdtype='f32') */
static PyObject *py_attn_block_demo(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "ln_w", "ln_b", "qkv_w", "qkv_b", "proj_w", "proj_b", "heads", "repeat", "wdtype",
                          NULL};
    PyObject *o[7];
    int heads, repeat = 1;
    const char *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOi|is", kws, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                                     &heads, &repeat, &wd))
        return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    demo_block blk;
    in_f32(&k, o[0], "x", &x, 0, &err);
    lyra_tensor *w[6] = {&blk.ln_w, &blk.ln_b, &blk.qkv_w, &blk.qkv_b, &blk.proj_w, &blk.proj_b};
    for (int i = 0; i < 6 && !err; i++) in_weight(&k, o[i + 1], "weight", w[i], (i == 2 || i == 4) ? wd : "f32", 0, &err);
    if (err) FAIL(&k);
    if (x.ndim != 3 || heads < 1 || x.ne[2] % heads) { PyErr_SetString(PyExc_ValueError, "x (B, L, C), C % heads == 0"); FAIL(&k); }
    PyArrayObject *out = out_f32(&k, 3, x.ne, &y);
    if (!out) FAIL(&k);
    lyra_tensor src = x;
    RUN_OP(&k, out, (lyra_op_copy(be, &y, &src) != LYRA_OK ? LYRA_ERR_INTERNAL : demo_run(be, &y, &blk, heads, repeat)));
}

/* ---------------- fused / device-only ops ---------------- */

static PyObject *py_linear_act(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "w", "b", "act", "wdtype", NULL};
    PyObject *xo, *wo, *bo = Py_None;
    const char *as = "gelu_tanh", *wd = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Oss", kws, &xo, &wo, &bo, &as, &wd)) return NULL;
    lyra_act act;
    if (parse_act(as, &act) < 0) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, w, bt, y, *b = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_weight(&k, wo, "w", &w, wd, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (err) FAIL(&k);
    if (x.ndim < 1 || w.ndim != 2) { PyErr_SetString(PyExc_ValueError, "x (..., K), w (N, K)"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    ne[x.ndim - 1] = w.ne[0];
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_linear_act(be, &y, &x, &w, b, act));
}

#ifdef LYRA2_WITH_CUDA
/* Quantises w to e4m3 on the device (per tensor or per output channel) and runs the FP8 linear. */
static lyra_status fp8_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b, int per_channel) {
    if (be->device != LYRA_DEVICE_CUDA) return lyra_error(LYRA_ERR_ARG, "linear_fp8: needs backend='cuda'");
    if (w->ndim != 2) return lyra_error(LYRA_ERR_ARG, "linear_fp8: w must be (N, K)");
    int64_t N = w->ne[0], ns = per_channel ? N : 1;
    lyra_tensor w8 = lyra_tensor_make(NULL, LYRA_DTYPE_U8, 2, w->ne), sc = lyra_tensor_make(NULL, LYRA_DTYPE_F32, 1, &ns);
    w8.device = sc.device = LYRA_DEVICE_CUDA;
    w8.data = be->ops->alloc(be, lyra_tensor_nbytes(&w8) + 1);
    sc.data = be->ops->alloc(be, lyra_tensor_nbytes(&sc));
    lyra_status st = (w8.data && sc.data) ? LYRA_OK : LYRA_ERR_OOM;
    if (st == LYRA_OK) st = lyra_cuda_quantize_fp8(be, &w8, &sc, w);
    if (st == LYRA_OK) st = lyra_cuda_linear_fp8(be, y, x, &w8, &sc, b);
    if (w8.data) be->ops->release(be, w8.data);
    if (sc.data) be->ops->release(be, sc.data);
    return st;
}
#else
static lyra_status fp8_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                              const lyra_tensor *b, int per_channel) {
    (void)be; (void)y; (void)x; (void)w; (void)b; (void)per_channel;
    return lyra_error(LYRA_ERR_UNSUPPORTED, "linear_fp8: this build has no CUDA backend");
}
#endif

/* linear_fp8(x, w, b=None, per_channel=False): FP8 e4m3 weights and activations (backend="cuda" only). */
static PyObject *py_linear_fp8(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "w", "b", "per_channel", NULL};
    PyObject *xo, *wo, *bo = Py_None;
    int pc = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Op", kws, &xo, &wo, &bo, &pc)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, w, bt, y, *b = NULL;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (!err) in_f32(&k, wo, "w", &w, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (err) FAIL(&k);
    if (x.ndim < 1 || w.ndim != 2) { PyErr_SetString(PyExc_ValueError, "x (..., K), w (N, K)"); FAIL(&k); }
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x.ne, sizeof ne);
    ne[x.ndim - 1] = w.ne[0];
    PyArrayObject *out = out_f32(&k, x.ndim, ne, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, fp8_linear(be, &y, &x, &w, b, pc));
}

/* A contiguous output of numpy type npt / dtype dt with staging role `role` (OPS_OUT or OPS_OUT_F32). */
static PyArrayObject *out_typed(keep *k, int ndim, const int64_t *ne, lyra_tensor *t, int npt, lyra_dtype dt,
                                ops_role role) {
    npy_intp dims[LYRA_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (npy_intp)ne[i];
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(ndim, dims, npt);
    if (!a) return NULL;
    k->objs[k->n++] = (PyObject *)a;
    *t = desc_of(a, dt);
    int err = 0;
    if (stage(k, t, role, &err) < 0) return NULL;
    return a;
}

/* quantize_fp8_rows(x (..., K)) -> (q uint8 (M, K), s float32 (M)): lyra_op_quantize_fp8_rows. */
static PyObject *py_quantize_fp8_rows(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", NULL};
    PyObject *xo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O", kws, &xo)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, q, sc;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim < 1) { PyErr_SetString(PyExc_ValueError, "x must have at least one dim"); FAIL(&k); }
    int64_t K = x.ne[x.ndim - 1], M = 1;
    for (int i = 0; i < x.ndim - 1; i++) M *= x.ne[i];
    PyArrayObject *qa = out_typed(&k, 2, (int64_t[]){M, K}, &q, NPY_UINT8, LYRA_DTYPE_U8, OPS_OUT);
    PyArrayObject *sa = qa ? out_typed(&k, 1, &M, &sc, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32) : NULL;
    if (!sa) FAIL(&k);
    PyObject *pair = PyTuple_Pack(2, (PyObject *)qa, (PyObject *)sa);
    if (!pair) FAIL(&k);
    k.objs[k.n++] = pair;
    RUN_OP(&k, pair, lyra_op_quantize_fp8_rows(be, &q, &sc, &x));
}

/* linear_fp8_tokens(q uint8 (M, K), s (M), w8 uint8 (N, K), ws (N), b=None) -> y (M, N): lyra_op_linear_fp8. */
static PyObject *py_linear_fp8_tokens(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"q", "s", "w8", "ws", "b", NULL};
    PyObject *qo, *so, *wo, *wso, *bo = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|O", kws, &qo, &so, &wo, &wso, &bo)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor q, sc, w8, ws, bt, y, *b = NULL;
    in_array(&k, qo, "q", &q, NPY_UINT8, LYRA_DTYPE_U8, 0, &err);
    if (!err) in_param(&k, so, "s", &sc, 0, &err);
    if (!err) in_array(&k, wo, "w8", &w8, NPY_UINT8, LYRA_DTYPE_U8, 0, &err);
    if (!err) in_param(&k, wso, "ws", &ws, 0, &err);
    if (!err) b = in_param(&k, bo, "b", &bt, 1, &err);
    if (err) FAIL(&k);
    if (q.ndim != 2 || w8.ndim != 2) { PyErr_SetString(PyExc_ValueError, "q (M, K), w8 (N, K)"); FAIL(&k); }
    PyArrayObject *out = out_f32(&k, 2, (int64_t[]){q.ne[0], w8.ne[0]}, &y);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_linear_fp8(be, &y, &q, &sc, &w8, &ws, b));
}

/* ---------------- CUDA measurements (benchmarks/kernels.py) ---------------- */

#ifdef LYRA2_WITH_CUDA
#define BENCH_RUN(call)                                                                                     \
    do {                                                                                                    \
        lyra_backend *be = ops_cuda_backend();                                                              \
        if (!be) return NULL;                                                                               \
        lyra_status st_;                                                                                    \
        Py_BEGIN_ALLOW_THREADS ops_cuda_lock();                                                             \
        st_ = (call);                                                                                       \
        ops_cuda_unlock();                                                                                  \
        Py_END_ALLOW_THREADS                                                                                \
        if (st_ != LYRA_OK) return lyra_py_raise(st_);                                                      \
    } while (0)

static PyObject *py_cuda_bench_linear(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"M", "N", "K", "mode", "repeat", NULL};
    long long M, N, K;
    int mode = 0, repeat = 5;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "LLL|ii", kws, &M, &N, &K, &mode, &repeat)) return NULL;
    double ms = 0.0;
    BENCH_RUN(lyra_cuda_bench_linear(be, M, N, K, mode, repeat, &ms));
    return PyFloat_FromDouble(ms);
}

static PyObject *py_cuda_bench_attention(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"Lq", "Lk", "H", "D", "repeat", NULL};
    long long Lq, Lk, H, D;
    int repeat = 3;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "LLLL|i", kws, &Lq, &Lk, &H, &D, &repeat)) return NULL;
    double ms = 0.0;
    BENCH_RUN(lyra_cuda_bench_attention(be, Lq, Lk, H, D, repeat, &ms));
    return PyFloat_FromDouble(ms);
}

static PyObject *py_cuda_bench_dit_block(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"L", "heads", "head_dim", "ffn", "Lt", "Li", "repeat", NULL};
    long long L, Hh, hd, F, Lt, Li;
    int repeat = 3;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "LLLLLL|i", kws, &L, &Hh, &hd, &F, &Lt, &Li, &repeat)) return NULL;
    double ms[7] = {0};
    BENCH_RUN(lyra_cuda_bench_dit_block(be, L, Hh, hd, F, Lt, Li, repeat, ms));
    return Py_BuildValue("{s:d,s:d,s:d,s:d,s:d,s:d,s:d}", "total", ms[0], "self_proj", ms[1], "self_attn", ms[2],
                         "cross_proj", ms[3], "cross_attn", ms[4], "ffn", ms[5], "pointwise", ms[6]);
}
#endif

/* emulated_device_probe(): the device behaviours the emulated backend enforces, exercised on the process's
 * backend="cuda" (LYRA2_EMULATED_CUDA=1): an op given a host pointer labelled as device memory, an op given a
 * released block, and the NaN poison of fresh and released blocks. Returns {"host_error": message,
 * "freed_error": message, "fresh_is_nan": bool, "freed_is_nan": bool}. */
static PyObject *py_emulated_device_probe(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    lyra_backend *be = ops_cuda_backend();
    if (!be) return NULL;
    if (strcmp(be->ops->name, "cuda-emulated"))
        return PyErr_Format(PyExc_RuntimeError, "emulated_device_probe: backend='cuda' is '%s', not the emulated "
                                                "device (set LYRA2_EMULATED_CUDA=1)", be->ops->name);
    char host_msg[512] = "", freed_msg[512] = "";
    int fresh_nan = 0, freed_nan = 0;
    lyra_status st = LYRA_OK;
    float host[4] = {1, 2, 3, 4};
    ops_cuda_lock();
    float *y = be->ops->alloc(be, sizeof host), *gone = be->ops->alloc(be, sizeof host);
    if (!y || !gone) st = LYRA_ERR_OOM;
    if (st == LYRA_OK) {
        fresh_nan = isnan(y[0]) && isnan(y[3]);
        lyra_tensor ty = lyra_tensor_1d(y, LYRA_DTYPE_F32, 4), th = lyra_tensor_1d(host, LYRA_DTYPE_F32, 4);
        ty.device = th.device = LYRA_DEVICE_CUDA; /* a host array wrongly labelled as device memory */
        th.name = "host_array";
        if (lyra_op_add(be, &ty, &ty, &th) != LYRA_OK) snprintf(host_msg, sizeof host_msg, "%s", lyra_error_message());
        be->ops->release(be, gone);
        freed_nan = isnan(gone[0]) && isnan(gone[3]); /* the quarantine keeps it mapped, poisoned */
        lyra_tensor tg = lyra_tensor_1d(gone, LYRA_DTYPE_F32, 4);
        tg.device = LYRA_DEVICE_CUDA;
        tg.name = "released_block";
        if (lyra_op_scale(be, &ty, &tg, 1.0f, 0.0f) != LYRA_OK)
            snprintf(freed_msg, sizeof freed_msg, "%s", lyra_error_message());
    }
    if (y) be->ops->release(be, y);
    ops_cuda_unlock();
    if (st != LYRA_OK) return lyra_py_raise(st);
    return Py_BuildValue("{s:s,s:s,s:O,s:O}", "host_error", host_msg, "freed_error", freed_msg, "fresh_is_nan",
                         fresh_nan ? Py_True : Py_False, "freed_is_nan", freed_nan ? Py_True : Py_False);
}

/* Pops backend= / dtype= / out_dtype= / out_pad= from the keywords into g_ctx for the duration of one op call. */
typedef PyObject *(*kw_fn)(PyObject *, PyObject *, PyObject *);

/* Pops out_dtype= ("f32" keeps outputs float32 on the device; the default is the activation dtype) and
 * out_pad= (a non-negative int) from kw2 into ctx; -1 with an exception set on bad values. */
static int pop_out_options(PyObject *kw2, call_ctx *ctx) {
    PyObject *od = PyDict_GetItemString(kw2, "out_dtype"), *op = PyDict_GetItemString(kw2, "out_pad");
    if (od) {
        const char *s = PyUnicode_AsUTF8(od);
        if (!s) return -1;
        if (strcmp(s, "f32") && strcmp(s, "act")) {
            PyErr_Format(PyExc_ValueError, "out_dtype must be 'f32' or 'act', got '%s'", s);
            return -1;
        }
        ctx->out_f32 = !strcmp(s, "f32");
        if (PyDict_DelItemString(kw2, "out_dtype") < 0) return -1;
    }
    if (op) {
        long long v = PyLong_AsLongLong(op);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (v < 0) {
            PyErr_Format(PyExc_ValueError, "out_pad must be >= 0, got %lld", v);
            return -1;
        }
        ctx->out_pad = v;
        if (PyDict_DelItemString(kw2, "out_pad") < 0) return -1;
    }
    return 0;
}

static PyObject *with_backend(kw_fn fn, PyObject *self, PyObject *args, PyObject *kw) {
    call_ctx ctx = {0, LYRA_DTYPE_F32, 0, 0};
    PyObject *kw2 = kw;
    if (kw && (PyDict_GetItemString(kw, "out_dtype") || PyDict_GetItemString(kw, "out_pad"))) {
        kw2 = PyDict_Copy(kw);
        if (!kw2) return NULL;
        if (pop_out_options(kw2, &ctx) < 0) {
            Py_DECREF(kw2);
            return NULL;
        }
    }
    if (kw2 && (PyDict_GetItemString(kw2, "backend") || PyDict_GetItemString(kw2, "dtype"))) {
        if (kw2 == kw) {
            kw2 = PyDict_Copy(kw);
            if (!kw2) return NULL;
        }
        PyObject *bo = PyDict_GetItemString(kw2, "backend"), *dobj = PyDict_GetItemString(kw2, "dtype");
        const char *bs = bo ? PyUnicode_AsUTF8(bo) : "cpu", *ds = dobj ? PyUnicode_AsUTF8(dobj) : "f32";
        if (!bs || !ds) { Py_DECREF(kw2); return NULL; }
        if (!strcmp(bs, "cuda")) ctx.cuda = 1;
        else if (strcmp(bs, "cpu")) {
            Py_DECREF(kw2);
            return PyErr_Format(PyExc_ValueError, "backend must be 'cpu' or 'cuda', got '%s'", bs);
        }
        if (!strcmp(ds, "bf16")) ctx.act = LYRA_DTYPE_BF16;
        else if (!strcmp(ds, "f16")) ctx.act = LYRA_DTYPE_F16;
        else if (strcmp(ds, "f32")) {
            Py_DECREF(kw2);
            return PyErr_Format(PyExc_ValueError, "dtype must be 'f32', 'bf16' or 'f16', got '%s'", ds);
        }
        if ((bo && PyDict_DelItemString(kw2, "backend") < 0) || (dobj && PyDict_DelItemString(kw2, "dtype") < 0)) {
            Py_DECREF(kw2);
            return NULL;
        }
    }
    call_ctx saved = g_ctx;
    g_ctx = ctx;
    PyObject *r = fn(self, args, kw2);
    g_ctx = saved;
    if (kw2 != kw) Py_DECREF(kw2);
    return r;
}

/* The op once (the result), then with bench_repeat > 0 that many more runs, each between two synchronizations of
 * the backend, host-timed: *ms = their median in milliseconds (launch costs included, as a caller pays them). */
static lyra_status warp_forward_timed(lyra_backend *be, lyra_tensor *oi, lyra_tensor *om, lyra_tensor *od,
                                      const lyra_tensor *img, const lyra_tensor *dep, const lyra_warp_params *p,
                                      int repeat, double *ms) {
    LYRA_TRY(lyra_op_warp_forward(be, oi, om, od, img, dep, p));
    if (repeat <= 0) return LYRA_OK;
    double t[64];
    if (repeat > 64) repeat = 64;
    for (int r = 0; r < repeat; r++) {
        struct timespec a, b;
        LYRA_TRY(lyra_op_synchronize(be));
        clock_gettime(CLOCK_MONOTONIC, &a);
        LYRA_TRY(lyra_op_warp_forward(be, oi, om, od, img, dep, p));
        LYRA_TRY(lyra_op_synchronize(be));
        clock_gettime(CLOCK_MONOTONIC, &b);
        double v = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6;
        int i = r;
        for (; i > 0 && t[i - 1] > v; i--) t[i] = t[i - 1]; /* insertion sort */
        t[i] = v;
    }
    *ms = repeat % 2 ? t[repeat / 2] : 0.5 * (t[repeat / 2 - 1] + t[repeat / 2]);
    return LYRA_OK;
}

/* warp_forward(image (C,H,W), depth (H,W), src_w2c (4,4), src_K (3,3), tgt_w2c (N,4,4), tgt_K (N,3,3),
 *              clean_points=1, norm_batch=0, with_mask=True, with_depth=True, alias=None, bench_repeat=0)
 *   -> (image (N,C,H,W), mask (N,H,W) or None, depth (N,H,W) or None), op warp_forward. The image is an activation
 * (dtype='bf16' on the device hands the op a bf16 image, which it refuses), the depth stays f32. alias (CPU only,
 * for the argument checks): "mask=depth" makes out_depth share out_mask's memory, "depth=input" puts out_depth
 * (N = 1) on the input depth. bench_repeat = R > 0 adds a fourth element, a (1,) float64 array: the median ms of R
 * more runs on the already staged data (benchmarks/kernels.py). */
static PyObject *py_warp_forward(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"image", "depth", "src_w2c", "src_K", "tgt_w2c", "tgt_K", "clean_points", "norm_batch",
                          "with_mask", "with_depth", "alias", "bench_repeat", NULL};
    PyObject *io, *dpo, *cam_o[4];
    int clean = 1, norm_batch = 0, with_mask = 1, with_depth = 1, bench_repeat = 0;
    const char *alias = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO|iippzi", kws, &io, &dpo, &cam_o[0], &cam_o[1], &cam_o[2],
                                     &cam_o[3], &clean, &norm_batch, &with_mask, &with_depth, &alias, &bench_repeat))
        return NULL;
    keep k = {0};
    static const char *cam_names[4] = {"src_w2c", "src_K", "tgt_w2c", "tgt_K"};
    static const int cam_ndim[4] = {2, 2, 3, 3};
    PyArrayObject *cams[4];
    for (int i = 0; i < 4; i++) {
        cams[i] = lyra_py_array(cam_o[i], NPY_FLOAT32, cam_ndim[i], cam_names[i]);
        if (!cams[i]) FAIL(&k);
        k.objs[k.n++] = (PyObject *)cams[i];
    }
    npy_intp *dw = PyArray_DIMS(cams[0]), *dk = PyArray_DIMS(cams[1]), *dtw = PyArray_DIMS(cams[2]),
             *dtk = PyArray_DIMS(cams[3]);
    if (dw[0] != 4 || dw[1] != 4) { PyErr_SetString(PyExc_ValueError, "src_w2c: expected shape (4, 4)"); FAIL(&k); }
    if (dk[0] != 3 || dk[1] != 3) { PyErr_SetString(PyExc_ValueError, "src_K: expected shape (3, 3)"); FAIL(&k); }
    if (dtw[1] != 4 || dtw[2] != 4) { PyErr_SetString(PyExc_ValueError, "tgt_w2c: expected shape (N, 4, 4)"); FAIL(&k); }
    if (dtk[0] != dtw[0] || dtk[1] != 3 || dtk[2] != 3) {
        PyErr_SetString(PyExc_ValueError, "tgt_K: expected shape (N, 3, 3) with tgt_w2c's N");
        FAIL(&k);
    }
    if (dtw[0] > INT32_MAX) { PyErr_SetString(PyExc_ValueError, "tgt_w2c: too many targets"); FAIL(&k); }
    int err = 0;
    lyra_tensor img, dep, oi, om, od;
    in_f32(&k, io, "image", &img, 0, &err);
    if (!err) in_param(&k, dpo, "depth", &dep, 0, &err);
    if (err) FAIL(&k);
    if (img.ndim != 3) { PyErr_SetString(PyExc_ValueError, "image: expected (C, H, W)"); FAIL(&k); }
    int64_t N = dtw[0], C = img.ne[0], H = img.ne[1], W = img.ne[2];
    int64_t s_img[4] = {N, C, H, W}, s_plane[3] = {N, H, W};
    PyArrayObject *ia = out_typed(&k, 4, s_img, &oi, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32);
    if (!ia) FAIL(&k);
    PyArrayObject *ma = NULL, *da = NULL;
    if (with_mask && !(ma = out_typed(&k, 3, s_plane, &om, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32))) FAIL(&k);
    if (with_depth && !(da = out_typed(&k, 3, s_plane, &od, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32))) FAIL(&k);
    if (alias) {
        if (g_ctx.cuda) { PyErr_SetString(PyExc_ValueError, "alias: CPU backend only"); FAIL(&k); }
        if (!strcmp(alias, "mask=depth") && ma && da) od.data = om.data;
        else if (!strcmp(alias, "depth=input") && da && N == 1) od.data = dep.data;
        else { PyErr_Format(PyExc_ValueError, "alias: unknown or inapplicable '%s'", alias); FAIL(&k); }
    }
    npy_intp one = 1;
    PyArrayObject *msa = (PyArrayObject *)PyArray_ZEROS(1, &one, NPY_FLOAT64, 0);
    if (!msa) FAIL(&k);
    k.objs[k.n++] = (PyObject *)msa;
    PyObject *mo = ma ? (PyObject *)ma : Py_None, *dob = da ? (PyObject *)da : Py_None;
    PyObject *res = bench_repeat > 0 ? PyTuple_Pack(4, (PyObject *)ia, mo, dob, (PyObject *)msa)
                                     : PyTuple_Pack(3, (PyObject *)ia, mo, dob);
    if (!res) FAIL(&k);
    k.objs[k.n++] = res;
    lyra_warp_params p = {
        .n_targets = (int)N, .clean_points = clean, .norm_batch = norm_batch,
        .src_w2c = PyArray_DATA(cams[0]), .src_K = PyArray_DATA(cams[1]),
        .tgt_w2c = PyArray_DATA(cams[2]), .tgt_K = PyArray_DATA(cams[3]),
    };
    RUN_OP(&k, res, warp_forward_timed(be, &oi, ma ? &om : NULL, da ? &od : NULL, &img, &dep, &p, bench_repeat,
                                       (double *)PyArray_DATA(msa)));
}

/* warp_forward_measure(channels, height, width, n_targets, device='cuda') -> {"alloc_peak", "alloc_live",
 * "n_ops"}: op warp_forward on a measuring backend presenting `device` (tensors in reserved address space), i.e.
 * the device temporaries a memory plan sees for one warp. */
static PyObject *py_warp_forward_measure(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"channels", "height", "width", "n_targets", "device", NULL};
    int C, H, W, N;
    const char *device = "cuda";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiii|s", kws, &C, &H, &W, &N, &device)) return NULL;
    if (C < 1 || H < 1 || W < 1 || N < 1) {
        PyErr_SetString(PyExc_ValueError, "channels, height, width and n_targets must be >= 1");
        return NULL;
    }
    lyra_device dev;
    if (!strcmp(device, "cuda")) dev = LYRA_DEVICE_CUDA;
    else if (!strcmp(device, "cpu")) dev = LYRA_DEVICE_CPU;
    else return PyErr_Format(PyExc_ValueError, "device must be 'cpu' or 'cuda', got '%s'", device);
    size_t HW = (size_t)H * (size_t)W, n = (size_t)N;
    size_t bytes = 4 * (((size_t)C + 2 * n + (size_t)C * n + 2) * HW) + 5 * 4096; /* + alignment */
    float *cams = malloc(sizeof(float) * (32 + 25 * n));
    if (!cams) return PyErr_NoMemory();
    float *w2c = cams, *K = cams + 16, *tw = cams + 25, *tk = cams + 25 + 16 * n;
    memset(cams, 0, sizeof(float) * (32 + 25 * n));
    for (size_t t = 0; t <= n; t++) {
        float *w = t ? tw + 16 * (t - 1) : w2c, *k = t ? tk + 9 * (t - 1) : K;
        w[0] = w[5] = w[10] = w[15] = 1.0f;
        k[0] = k[4] = (float)W;
        k[2] = 0.5f * (float)W;
        k[5] = 0.5f * (float)H;
        k[8] = 1.0f;
    }
    lyra_backend be;
    lyra_arena a;
    lyra_status st = lyra_backend_measure_init(&be, dev);
    if (st != LYRA_OK) {
        free(cams);
        return lyra_py_raise(st);
    }
    st = lyra_measure_arena_init(&a, bytes, dev);
    lyra_measure_stats stats = {0};
    if (st == LYRA_OK) {
        int64_t s_img[3] = {C, H, W}, s_dep[2] = {H, W}, s_out[4] = {N, C, H, W}, s_pl[3] = {N, H, W};
        lyra_tensor img, dep, oi, om, od;
        lyra_tensor *ts[5] = {&img, &dep, &oi, &om, &od};
        const int64_t *shapes[5] = {s_img, s_dep, s_out, s_pl, s_pl};
        static const int nd[5] = {3, 2, 4, 3, 3};
        for (int i = 0; i < 5 && st == LYRA_OK; i++) st = lyra_arena_tensor(&a, ts[i], LYRA_DTYPE_F32, nd[i], shapes[i], "warp");
        lyra_warp_params p = {.n_targets = N, .clean_points = 1, .norm_batch = 0,
                              .src_w2c = w2c, .src_K = K, .tgt_w2c = tw, .tgt_K = tk};
        if (st == LYRA_OK) st = lyra_op_warp_forward(&be, &oi, &om, &od, &img, &dep, &p);
        stats = *lyra_backend_measure_stats(&be);
        lyra_measure_arena_free(&a);
    }
    lyra_backend_free(&be);
    free(cams);
    if (st != LYRA_OK) return lyra_py_raise(st);
    return Py_BuildValue("{s:n,s:n,s:L}", "alloc_peak", (Py_ssize_t)stats.alloc_peak, "alloc_live",
                         (Py_ssize_t)stats.alloc_live, "n_ops", (long long)stats.n_ops);
}

/* ray_image(K (4) = fx, fy, cx, cy, c2w (4, 4), height, width, unshuffle=1, moment=False) -> (6·u², H/u, W/u). */
static PyObject *py_rays(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"K", "c2w", "height", "width", "unshuffle", "moment", NULL};
    PyObject *ko, *co;
    int height, width, unshuffle = 1, moment = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOii|ip", kws, &ko, &co, &height, &width, &unshuffle, &moment))
        return NULL;
    PyArrayObject *ka = (PyArrayObject *)PyArray_FROMANY(ko, NPY_FLOAT32, 1, 1, NPY_ARRAY_CARRAY | NPY_ARRAY_FORCECAST);
    PyArrayObject *ca = ka ? (PyArrayObject *)PyArray_FROMANY(co, NPY_FLOAT32, 2, 2, NPY_ARRAY_CARRAY | NPY_ARRAY_FORCECAST)
                           : NULL;
    if (!ca || PyArray_SIZE(ka) != 4 || PyArray_SIZE(ca) != 16) {
        Py_XDECREF(ka);
        Py_XDECREF(ca);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "K must have 4 values and c2w 4x4");
        return NULL;
    }
    lyra_ray_params p = {.moment = moment, .unshuffle = unshuffle};
    memcpy(p.K, PyArray_DATA(ka), sizeof p.K);
    memcpy(p.c2w, PyArray_DATA(ca), sizeof p.c2w);
    Py_DECREF(ka);
    Py_DECREF(ca);
    keep k = {0};
    lyra_tensor y;
    const int u = unshuffle > 0 ? unshuffle : 1;
    int64_t ne[3] = {6LL * u * u, height / u, width / u};
    PyArrayObject *out = out_typed(&k, 3, ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT); /* dtype= on the device */
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_rays(be, &y, height, width, &p));
}

/* to_u8(x (N, C, H, W), mode='video'|'round') -> uint8 (N, H, W, C). */
static PyObject *py_to_u8(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "mode", NULL};
    PyObject *xo;
    const char *mode = "video";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|s", kws, &xo, &mode)) return NULL;
    lyra_u8_mode m;
    if (!strcmp(mode, "video")) m = LYRA_U8_VIDEO;
    else if (!strcmp(mode, "round")) m = LYRA_U8_ROUND;
    else return PyErr_Format(PyExc_ValueError, "mode must be 'video' or 'round', got '%s'", mode);
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_f32(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim != 4) { PyErr_SetString(PyExc_ValueError, "x must be (N, C, H, W)"); FAIL(&k); }
    int64_t ne[4] = {x.ne[0], x.ne[2], x.ne[3], x.ne[1]};
    PyArrayObject *out = out_typed(&k, 4, ne, &y, NPY_UINT8, LYRA_DTYPE_U8, OPS_OUT);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_to_u8(be, &y, &x, m));
}

/* minmax(x, prev=None) -> (2,) [min, max] (NaNs skipped), combined with prev. */
static PyObject *py_minmax(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "prev", NULL};
    PyObject *xo, *po = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O", kws, &xo, &po)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, p, y, *pp = NULL;
    in_param(&k, xo, "x", &x, 0, &err);
    if (!err) pp = in_param(&k, po, "prev", &p, 1, &err);
    if (err) FAIL(&k);
    int64_t two = 2;
    PyArrayObject *out = out_typed(&k, 1, &two, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_minmax(be, &y, &x, pp));
}

/* range_norm(x, mm (2), eps=1e-6) -> 2·(x − mm[0]) / max(mm[1] − mm[0], eps) − 1. */
static PyObject *py_range_norm(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "mm", "eps", NULL};
    PyObject *xo, *mo;
    float eps = 1e-6f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|f", kws, &xo, &mo, &eps)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, m, y;
    in_param(&k, xo, "x", &x, 0, &err);
    if (!err) in_param(&k, mo, "mm", &m, 0, &err);
    if (err) FAIL(&k);
    PyArrayObject *out = out_typed(&k, x.ndim, x.ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT); /* dtype= on the device */
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_range_norm(be, &y, &x, &m, eps));
}

/* latent_update(kind, xs, order=1, sigma=0, alpha=0, guidance=0, c1=0, c2=0, rinv=0, rho0=0, rho1=0) -> y of the
 * broadcast shape of xs: the samplers' elementwise updates (nn/latent_math.h). */
static PyObject *py_latent_update(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"kind", "xs", "order", "sigma", "alpha", "guidance", "c1", "c2", "rinv", "rho0", "rho1",
                          NULL};
    static const char *kinds[LYRA_LATENT_KIND_COUNT] = {"cfg", "x0", "x0_f64", "renoise", "unipc_correct",
                                                        "unipc_predict", "denorm"};
    const char *ks;
    PyObject *xso;
    lyra_latent_update p = {0};
    p.order = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|iffffffff", kws, &ks, &xso, &p.order, &p.sigma, &p.alpha,
                                     &p.guidance, &p.c1, &p.c2, &p.rinv, &p.rho0, &p.rho1))
        return NULL;
    int kind = -1;
    for (int i = 0; i < LYRA_LATENT_KIND_COUNT; i++)
        if (!strcmp(ks, kinds[i])) kind = i;
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "kind must be one of cfg, x0, x0_f64, renoise, unipc_correct, unipc_predict, "
                     "denorm; got '%s'", ks);
        return NULL;
    }
    p.kind = (lyra_latent_kind)kind;
    if (!PyList_Check(xso) && !PyTuple_Check(xso)) {
        PyErr_SetString(PyExc_TypeError, "xs must be a list of arrays");
        return NULL;
    }
    Py_ssize_t n = PySequence_Size(xso);
    if (n < 1 || n > 4) {
        PyErr_Format(PyExc_ValueError, "xs: 1 to 4 arrays, got %zd", n);
        return NULL;
    }
    keep k = {0};
    int err = 0;
    lyra_tensor x[4], y;
    const lyra_tensor *xp[4];
    static const char *names[4] = {"xs[0]", "xs[1]", "xs[2]", "xs[3]"};
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        PyObject *o = PySequence_GetItem(xso, i);
        if (!o) FAIL(&k);
        in_param(&k, o, names[i], &x[i], 0, &err);
        Py_DECREF(o);
        xp[i] = &x[i];
    }
    if (err) FAIL(&k);
    int64_t ne[LYRA_MAX_DIMS];
    for (int d = 0; d < x[0].ndim; d++) {
        ne[d] = 1;
        for (Py_ssize_t i = 0; i < n; i++)
            if (d < x[i].ndim && x[i].ne[d] > ne[d]) ne[d] = x[i].ne[d];
    }
    PyArrayObject *out = out_typed(&k, x[0].ndim, ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_latent_update(be, &y, xp, (int)n, &p));
}

/* u8_pixels(x uint8 (N, H, W, C), Ho, Wo, resample=0 none | 1 area | 2 cubic, mean=(C floats), std=(C floats))
 * -> float32 (N, C, Ho, Wo). */
static PyObject *py_u8_pixels(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "Ho", "Wo", "resample", "mean", "std", NULL};
    PyObject *xo, *mo, *so;
    long long Ho, Wo;
    int resample;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OLLiOO", kws, &xo, &Ho, &Wo, &resample, &mo, &so)) return NULL;
    lyra_u8_pixels_params p = {.resample = (lyra_u8_resample)resample};
    PyObject *ms = PySequence_Fast(mo, "mean must be a sequence");
    PyObject *ss = ms ? PySequence_Fast(so, "std must be a sequence") : NULL;
    int bad = !ms || !ss;
    Py_ssize_t nm = bad ? 0 : PySequence_Fast_GET_SIZE(ms);
    if (!bad && (nm > 4 || PySequence_Fast_GET_SIZE(ss) != nm)) {
        PyErr_SetString(PyExc_ValueError, "mean and std: the same length, at most 4");
        bad = 1;
    }
    for (Py_ssize_t i = 0; !bad && i < nm; i++) {
        p.mean[i] = (float)PyFloat_AsDouble(PySequence_Fast_GET_ITEM(ms, i));
        p.std[i] = (float)PyFloat_AsDouble(PySequence_Fast_GET_ITEM(ss, i));
        bad = PyErr_Occurred() != NULL;
    }
    Py_XDECREF(ms);
    Py_XDECREF(ss);
    if (bad) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_array(&k, xo, "x", &x, NPY_UINT8, LYRA_DTYPE_U8, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim != 4 || x.ne[3] != nm) {
        PyErr_SetString(PyExc_ValueError, "x must be (N, H, W, C) with C = len(mean)");
        FAIL(&k);
    }
    int64_t ne[4] = {x.ne[0], x.ne[3], Ho, Wo};
    PyArrayObject *out = out_typed(&k, 4, ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_u8_pixels(be, &y, &x, &p));
}

/* fill_random(shape, name, seed=0, bf16_values=False) -> float32: lyra_op_fill_random with the rule of (seed, name,
 * shape); on a device y has the call's dtype (dtype=). */
static PyObject *py_fill_random(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"shape", "name", "seed", "bf16_values", NULL};
    PyObject *so;
    const char *name;
    unsigned long long seed = 0;
    int b16 = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Os|Kp", kws, &so, &name, &seed, &b16)) return NULL;
    PyObject *seq = PySequence_Fast(so, "shape must be a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    int64_t ne[LYRA_MAX_DIMS];
    int bad = nd > LYRA_MAX_DIMS;
    for (Py_ssize_t i = 0; !bad && i < nd; i++) {
        ne[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        bad = ne[i] < 0;
    }
    Py_DECREF(seq);
    if (bad) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "shape: negative size or too many dims");
        return NULL;
    }
    keep k = {0};
    lyra_tensor y;
    /* dtype= on the device */
    PyArrayObject *out = out_typed(&k, (int)nd, ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT);
    if (!out) FAIL(&k);
    lyra_random_fill r;
    lyra_random_fill_rule(&r, (uint64_t)seed, name, (int)nd, ne, b16);
    RUN_OP(&k, out, lyra_op_fill_random(be, &y, &r));
}

/* y (4·S·h·w + 4) = [x's four maps merged in place by op da3_merge, its stats]: x (4, S, h, w) = [depth logits,
 * confidence logits, metric depth logits, sky] is copied into y's memory first (the op rewrites its maps). */
static lyra_status da3_merge_into(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const float *factor) {
    const int64_t S = x->ne[1], h = x->ne[2], w = x->ne[3], n = S * h * w;
    lyra_tensor ym, yv, ys, m[4];
    LYRA_TRY(lyra_tensor_slice(&yv, y, 0, 0, 4 * n));
    LYRA_TRY(lyra_tensor_reshape(&ym, &yv, 4, x->ne));
    LYRA_TRY(lyra_tensor_slice(&ys, y, 0, 4 * n, 4 * n + 4));
    LYRA_TRY(lyra_op_copy(be, &ym, x));
    for (int i = 0; i < 4; i++) LYRA_TRY(lyra_tensor_select(&m[i], &ym, 0, i));
    return lyra_op_da3_merge(be, &ys, &m[0], &m[1], &m[2], &m[3], factor);
}

/* da3_merge(maps float32 (4, S, h, w), metric_factor (S floats)) -> float32 (4·S·h·w + 4): the merged depth,
 * confidence and metric depth maps, the sky as given, then [median, σ, sky fill, non-sky count]. */
static PyObject *py_da3_merge(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"maps", "metric_factor", NULL};
    PyObject *xo, *fo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kws, &xo, &fo)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_param(&k, xo, "maps", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim != 4 || x.ne[0] != 4) {
        PyErr_SetString(PyExc_ValueError, "maps must be (4, S, h, w)");
        FAIL(&k);
    }
    PyObject *fs = PySequence_Fast(fo, "metric_factor must be a sequence");
    if (!fs) FAIL(&k);
    float *factor = malloc(sizeof *factor * (size_t)(x.ne[1] > 0 ? x.ne[1] : 1));
    int bad = !factor || PySequence_Fast_GET_SIZE(fs) != x.ne[1];
    if (bad) PyErr_SetString(PyExc_ValueError, "metric_factor must have one value per view");
    for (Py_ssize_t i = 0; !bad && i < x.ne[1]; i++) {
        factor[i] = (float)PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fs, i));
        bad = PyErr_Occurred() != NULL;
    }
    Py_DECREF(fs);
    if (factor) k.bufs[k.nbufs++] = factor;
    if (bad) FAIL(&k);
    int64_t ne = 4 * x.ne[1] * x.ne[2] * x.ne[3] + 4;
    PyArrayObject *out = out_typed(&k, 1, &ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, da3_merge_into(be, &y, &x, factor));
}

/* depth_resize(x float32 (N, h, w), H, W, divisor) -> float32 (N, H, W): lyra_op_depth_resize. */
static PyObject *py_depth_resize(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"x", "H", "W", "divisor", NULL};
    PyObject *xo;
    long long H, W;
    double divisor;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OLLd", kws, &xo, &H, &W, &divisor)) return NULL;
    keep k = {0};
    int err = 0;
    lyra_tensor x, y;
    in_param(&k, xo, "x", &x, 0, &err);
    if (err) FAIL(&k);
    if (x.ndim != 3 || H < 0 || W < 0) {
        PyErr_SetString(PyExc_ValueError, "x must be (N, h, w) and H, W >= 0");
        FAIL(&k);
    }
    int64_t ne[3] = {x.ne[0], H, W};
    PyArrayObject *out = out_typed(&k, 3, ne, &y, NPY_FLOAT32, LYRA_DTYPE_F32, OPS_OUT_F32);
    if (!out) FAIL(&k);
    RUN_OP(&k, out, lyra_op_depth_resize(be, &y, &x, divisor));
}

#define BK(fn)                                                                                              \
    static PyObject *fn##_bk(PyObject *s, PyObject *a, PyObject *k) { return with_backend(fn, s, a, k); }
BK(py_copy) BK(py_concat) BK(py_pad) BK(py_patchify) BK(py_unpatchify) BK(py_embedding) BK(py_linear)
BK(py_linear_act) BK(py_linear_fp8) BK(py_matmul) BK(py_attention) BK(py_rms_norm) BK(py_layer_norm)
BK(py_l2norm_channels) BK(py_group_norm) BK(py_softmax) BK(py_unary) BK(py_glu) BK(py_add) BK(py_mul)
BK(py_scale) BK(py_sincos) BK(py_modulate) BK(py_gate) BK(py_rope) BK(py_conv2d) BK(py_conv3d) BK(py_conv_transpose2d)
BK(py_upsample_nearest2x) BK(py_resize) BK(py_avg_pool3d) BK(py_gs_rasterize) BK(py_warp_forward)
BK(py_quantize_fp8_rows) BK(py_linear_fp8_tokens) BK(py_rays) BK(py_to_u8) BK(py_minmax) BK(py_range_norm)
BK(py_latent_update)
BK(py_u8_pixels)
BK(py_fill_random)
BK(py_da3_merge) BK(py_depth_resize)

#define KW(name, fn, doc) {name, (PyCFunction)(void (*)(void))fn, METH_VARARGS | METH_KEYWORDS, doc}

static PyMethodDef ops_methods[] = {
    {"emulated_device_probe", py_emulated_device_probe, METH_NOARGS,
     "emulated_device_probe() -> the emulated device's refusals and NaN poison (LYRA2_EMULATED_CUDA=1 only)."},
    {"to_bf16", py_to_bf16, METH_VARARGS, "float32 -> bf16 bits (uint16), round to nearest even."},
    {"from_bf16", py_from_bf16, METH_VARARGS, "bf16 bits (uint16) -> float32."},
    {"to_f16", py_to_f16, METH_VARARGS, "float32 -> IEEE half bits (uint16), round to nearest even."},
    {"from_f16", py_from_f16, METH_VARARGS, "IEEE half bits (uint16) -> float32."},
    KW("view", py_view, "view(x, kind, args): slice/permute/reshape/expand descriptor view, copied out."),
    KW("carve", py_carve, "carve(specs, capacity=None) -> (bytes, offsets): the weight carver's layout."),
    KW("bind", py_bind, "bind(available {name: shape}, slots [(name, shape, optional)]) -> {name: shape}."),
    KW("arena", py_arena, "arena(capacity, sizes, reset_after=-1) -> ([offsets], peak)."),
    KW("attn_block_demo", py_attn_block_demo, "The ops.h example block (LN, fused qkv, attention, proj, residual)."),
    KW("copy", py_copy_bk, "copy(x): strided read into a contiguous array."),
    KW("concat", py_concat_bk, "concat(xs, dim=0)."),
    KW("pad", py_pad_bk, "pad(x, pads, mode='zero'|'replicate'); pads = (before, after) per dim, outermost first."),
    KW("patchify", py_patchify_bk, "patchify(x (B,C,T,H,W), kt=1, kh=2, kw=2, order='c_slowest')."),
    KW("unpatchify", py_unpatchify_bk, "unpatchify(x, shape (B,C,T,H,W), kt=1, kh=2, kw=2, order='c_fastest')."),
    KW("embedding", py_embedding_bk, "embedding(table (V,D), ids, wdtype='f32')."),
    KW("linear", py_linear_bk, "linear(x (...,K), w (N,K), b=None, wdtype='f32'|'bf16'|'f16')."),
    KW("linear_act", py_linear_act_bk, "linear_act(x, w, b=None, act='gelu_tanh', wdtype='f32'): act(x·wᵀ + b), fused where possible."),
    KW("quantize_fp8_rows", py_quantize_fp8_rows_bk, "quantize_fp8_rows(x (..., K)) -> (q uint8 (M, K), s (M)): per-token e4m3."),
    KW("linear_fp8_tokens", py_linear_fp8_tokens_bk, "linear_fp8_tokens(q, s, w8, ws, b=None): (q·w8ᵀ)·s[m]·ws[n] + b."),
    KW("linear_fp8", py_linear_fp8_bk, "linear_fp8(x, w, b=None, per_channel=False): e4m3 weights/activations (backend='cuda')."),
#ifdef LYRA2_WITH_CUDA
    KW("cuda_bench_linear", py_cuda_bench_linear, "cuda_bench_linear(M, N, K, mode=0, repeat=5) -> median ms."),
    KW("cuda_bench_attention", py_cuda_bench_attention, "cuda_bench_attention(Lq, Lk, H, D, repeat=3) -> median ms."),
    KW("cuda_bench_dit_block", py_cuda_bench_dit_block, "cuda_bench_dit_block(L, heads, head_dim, ffn, Lt, Li, repeat=3) -> {phase: ms}."),
#endif
    KW("matmul", py_matmul_bk, "matmul(a, b, trans_b=False, alpha=1.0); 2-d or batched 3-d."),
    KW("sgemm_ref", py_sgemm_ref, "sgemm_ref(a, b, trans_b=False): the plain C fallback GEMM."),
    KW("attention", py_attention_bk, "attention(q, k, v, scale, bias=None, key_mask=None); (B, L, H, D) layouts."),
    KW("rms_norm", py_rms_norm_bk, "rms_norm(x, w=None, eps=1e-6, wdtype='f32')."),
    KW("layer_norm", py_layer_norm_bk, "layer_norm(x, w=None, b=None, eps=1e-6)."),
    KW("l2norm_channels", py_l2norm_channels_bk, "l2norm_channels(x (B,C,...), w=gamma, b=beta, eps=1e-12): Wan VAE norm."),
    KW("group_norm", py_group_norm_bk, "group_norm(x (B,C,...), w=None, b=None, eps=1e-6, groups=1)."),
    KW("softmax", py_softmax_bk, "softmax(x, scale=1.0) over the last dim."),
    KW("unary", py_unary_bk, "unary(x, act)."),
    KW("glu", py_glu_bk, "glu(a, g, act): a * act(g)."),
    KW("add", py_add_bk, "add(a, b) with broadcasting of size-1 dims."),
    KW("mul", py_mul_bk, "mul(a, b) with broadcasting of size-1 dims."),
    KW("scale", py_scale_bk, "scale(x, alpha=1, beta=0): alpha*x + beta."),
    KW("sincos", py_sincos_bk, "sincos(x (..., C), octaves=2): [sin(2^o·π·x), cos(2^o·π·x)] blocks per octave."),
    KW("modulate", py_modulate_bk, "modulate(x, shift, scale): x*(1+scale)+shift."),
    KW("gate", py_gate_bk, "gate(x, g, a): x + g*a."),
    KW("rope", py_rope_bk, "rope(x (B,L,H,D), angles (L,D/2), mode='interleaved'|'half', n_sections=1)."),
    KW("rope_angles_video", py_rope_angles_video, "rope_angles_video(pos (L,3), head_dim, theta=10000)."),
    KW("rope_angles_2d", py_rope_angles_2d, "rope_angles_2d(pos (L,2), head_dim, theta=100)."),
    KW("conv2d", py_conv2d_bk, "conv2d(x, w, b=None, stride=(1,1), pad=(t,b,l,r), pad_mode='zero', wdtype='f32')."),
    KW("conv3d", py_conv3d_bk, "conv3d(x, w, b=None, prefix=None, stride=(1,1,1), pad=(front,back,t,b,l,r), pad_mode='zero')."),
    KW("conv_transpose2d", py_conv_transpose2d_bk, "conv_transpose2d(x, w (Ci,Co,kh,kw), b=None, stride=1, padding=0)."),
    KW("upsample_nearest2x", py_upsample_nearest2x_bk, "upsample_nearest2x(x (..., H, W))."),
    KW("resize", py_resize_bk, "resize(x, size, mode='bilinear', align_corners=False, antialias=False, ratio=None)."),
    KW("avg_pool3d", py_avg_pool3d_bk, "avg_pool3d(x (..., T, H, W), kt, kh, kw)."),
    KW("gs_rasterize", py_gs_rasterize_bk, "gs_rasterize(means, scales, rotations, harmonics, opacities, w2c, K, "
       "height, width, background=(0,0,0), near=0.01) -> (H, W, 5): r, g, b, alpha, depth."),
    KW("warp_forward", py_warp_forward_bk, "warp_forward(image (C,H,W), depth (H,W), src_w2c, src_K, tgt_w2c (N,4,4), "
       "tgt_K (N,3,3), clean_points=1, norm_batch=0, with_mask=True, with_depth=True, alias=None, bench_repeat=0) "
       "-> (image (N,C,H,W), mask (N,H,W), depth (N,H,W)[, median ms]): the forward warp."),
    KW("warp_forward_measure", py_warp_forward_measure, "warp_forward_measure(channels, height, width, n_targets, "
       "device='cuda') -> {alloc_peak, alloc_live, n_ops}: the warp on a measuring backend."),
    KW("ray_image", py_rays_bk, "ray_image(K (fx, fy, cx, cy), c2w (4, 4), height, width, unshuffle=1, moment=False) -> "
       "(6·u², H/u, W/u): [origin, direction] planes, pixel-unshuffled u×u."),
    KW("u8_pixels", py_u8_pixels_bk, "u8_pixels(x uint8 (N, H, W, C), Ho, Wo, resample, mean, std) -> float32 "
       "(N, C, Ho, Wo): (resample(x) / 255 - mean) / std, resample 0 none, 1 area, 2 cubic."),
    KW("fill_random", py_fill_random_bk, "fill_random(shape, name, seed=0, bf16_values=False) -> float32: "
       "lyra_op_fill_random with the rule of (seed, name, shape)."),
    KW("to_u8", py_to_u8_bk, "to_u8(x (N, C, H, W), mode='video'|'round') -> uint8 (N, H, W, C)."),
    KW("da3_merge", py_da3_merge_bk, "da3_merge(maps (4, S, h, w), metric_factor (S)) -> (4·S·h·w + 4): op da3_merge "
       "on [depth, conf, metric logits, sky], then [median, sigma, sky fill, non-sky count]."),
    KW("depth_resize", py_depth_resize_bk, "depth_resize(x (N, h, w), H, W, divisor) -> (N, H, W): bilinear of x / "
       "divisor with f64 source coordinates."),
    KW("minmax", py_minmax_bk, "minmax(x, prev=None) -> [min, max] (NaNs skipped), combined with prev (2,)."),
    KW("range_norm", py_range_norm_bk, "range_norm(x, mm (2), eps=1e-6): 2·(x − mm[0]) / max(mm[1] − mm[0], eps) − 1."),
    KW("latent_update", py_latent_update_bk, "latent_update(kind, xs, order=1, sigma=0, alpha=0, guidance=0, c1=0, "
       "c2=0, rinv=0, rho0=0, rho1=0): the samplers' elementwise updates (cfg, x0, x0_f64, renoise, unipc_correct, "
       "unipc_predict, denorm) over xs broadcast to one shape."),
    {NULL, NULL, 0, NULL},
};

int lyra_testops_add_ops(PyObject *m) { return PyModule_AddFunctions(m, ops_methods); }
