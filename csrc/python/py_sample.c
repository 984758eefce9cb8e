/* Python glue for the sampler (csrc/sample): numpy-legacy normals, schedules, UniPC and DMD runs
 * driven by a Python denoiser, CFG. lyra2/sampling.py is the public face of these functions.
 *
 * Denoiser callbacks: the C loop runs with the GIL released; py_denoise takes it back around the
 * Python call, hands over a fresh copy of the state, and on an exception records it so the caller
 * re-raises the very same exception once the loop has unwound. */
#include "py_common.h"

#include <string.h>

#include "sample/cfg.h"
#include "sample/dmd.h"
#include "sample/rng.h"
#include "sample/schedules.h"
#include "sample/unipc.h"

/* ---- seeds ------------------------------------------------------------------------------------ */

/* Integer seed in [0, 2^32): init_genrand. */
static int seed_scalar(PyObject *obj, lyra_rng *rng) {
    PyObject *idx = PyNumber_Index(obj);
    if (!idx) return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow || v < 0 || v > 0xffffffffLL) {
        PyErr_Format(PyExc_ValueError, "seed must be between 0 and 2**32 - 1, got %R", obj);
        return -1;
    }
    lyra_rng_seed(rng, (uint32_t)v);
    return 0;
}

/* Seed array: non-empty, integer, 1-d, every entry in [0, 2^32): init_by_array. Steals arr. */
static int seed_array(PyArrayObject *arr, lyra_rng *rng) {
    int ret = -1;
    PyArrayObject *keys = NULL;
    uint32_t *words = NULL;
    if (PyArray_SIZE(arr) == 0) {
        PyErr_SetString(PyExc_ValueError, "seed must be non-empty");
        goto finally;
    }
    if (!PyArray_ISINTEGER(arr) && !PyArray_ISBOOL(arr)) {
        PyErr_SetString(PyExc_TypeError, "seed must be an int or a 1-d sequence of ints");
        goto finally;
    }
    if (PyArray_NDIM(arr) != 1) {
        PyErr_Format(PyExc_ValueError, "seed array must be 1-d, got %d dimensions", PyArray_NDIM(arr));
        goto finally;
    }
    /* uint64 entries above 2^63 wrap negative in the int64 cast and fail the range check below. */
    keys = (PyArrayObject *)PyArray_FROMANY((PyObject *)arr, NPY_INT64, 1, 1, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!keys) goto finally;
    npy_intp n = PyArray_DIM(keys, 0);
    const int64_t *k = PyArray_DATA(keys);
    if (!(words = PyMem_Malloc((size_t)n * sizeof(uint32_t)))) {
        PyErr_NoMemory();
        goto finally;
    }
    for (npy_intp i = 0; i < n; i++) {
        if (k[i] < 0 || k[i] > 0xffffffffLL) {
            PyErr_Format(PyExc_ValueError, "seed[%zd] must be between 0 and 2**32 - 1", (Py_ssize_t)i);
            goto finally;
        }
        words[i] = (uint32_t)k[i];
    }
    lyra_rng_seed_array(rng, words, n);
    ret = 0;
finally:
    PyMem_Free(words);
    Py_XDECREF(keys);
    Py_DECREF(arr);
    return ret;
}

/* Seeds rng as numpy.random.RandomState(seed) does: an integer in [0, 2^32) (init_genrand) or a
 * non-empty 1-d sequence of such integers (init_by_array). numpy squeezes array seeds first, so
 * np.array([5]) seeds like 5 while the list [5] goes to init_by_array. Returns -1 with an exception. */
static int parse_seed(PyObject *obj, lyra_rng *rng) {
    if (PyArray_Check(obj)) {
        PyArrayObject *sq = (PyArrayObject *)PyArray_Squeeze((PyArrayObject *)obj);
        if (!sq) return -1;
        if (PyArray_NDIM(sq) != 0) return seed_array(sq, rng);
        PyObject *scalar = PyArray_Return(sq); /* steals sq */
        if (!scalar) return -1;
        int r = -1;
        if (PyIndex_Check(scalar))
            r = seed_scalar(scalar, rng);
        else
            PyErr_Format(PyExc_TypeError, "seed must be an int or a 1-d sequence of ints, got a %.100s",
                         Py_TYPE(scalar)->tp_name);
        Py_DECREF(scalar);
        return r;
    }
    if (PyIndex_Check(obj)) return seed_scalar(obj, rng);
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(obj, NPY_NOTYPE, 0, 0, NPY_ARRAY_IN_ARRAY);
    if (!arr) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "seed must be an int or a 1-d sequence of ints, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    return seed_array(arr, rng);
}

/* ---- randn ------------------------------------------------------------------------------------ */

static PyObject *py_sample_randn(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"seed", "shape", NULL};
    PyObject *seed_obj;
    PyArray_Dims dims = {NULL, 0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&:randn", kwlist, &seed_obj, PyArray_IntpConverter, &dims))
        return NULL;
    PyObject *out = NULL;
    lyra_rng rng;
    npy_intp total = 1;
    for (int i = 0; i < dims.len; i++) {
        if (dims.ptr[i] < 0) {
            PyErr_Format(PyExc_ValueError, "shape[%d] must be >= 0, got %zd", i, (Py_ssize_t)dims.ptr[i]);
            goto finally;
        }
        if (dims.ptr[i] && total > NPY_MAX_INTP / dims.ptr[i]) {
            PyErr_SetString(PyExc_ValueError, "shape: too many elements");
            goto finally;
        }
        total *= dims.ptr[i];
    }
    if (parse_seed(seed_obj, &rng) < 0) goto finally;
    out = PyArray_SimpleNew(dims.len, dims.ptr, NPY_FLOAT64);
    if (!out) goto finally;
    Py_BEGIN_ALLOW_THREADS
    lyra_rng_fill_normal_f64(&rng, PyArray_DATA((PyArrayObject *)out), (int64_t)total);
    Py_END_ALLOW_THREADS
finally:
    PyDimMem_FREE(dims.ptr);
    return out;
}

/* ---- schedules -------------------------------------------------------------------------------- */

static PyObject *py_sample_flow_schedule(PyObject *self, PyObject *args) {
    (void)self;
    int num_steps;
    double shift;
    if (!PyArg_ParseTuple(args, "id:flow_schedule", &num_steps, &shift)) return NULL;
    if (num_steps < 1 || num_steps > LYRA_FLOW_MAX_STEPS) {
        PyErr_Format(PyExc_ValueError, "num_steps must be in [1, %d], got %d", LYRA_FLOW_MAX_STEPS, num_steps);
        return NULL;
    }
    npy_intp n = num_steps, n1 = num_steps + 1;
    PyObject *ts = PyArray_SimpleNew(1, &n, NPY_INT64);
    PyObject *sig = PyArray_SimpleNew(1, &n1, NPY_FLOAT32);
    PyObject *sig64 = PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    PyObject *ret = NULL;
    if (!ts || !sig || !sig64) goto finally;
    lyra_status st = lyra_flow_schedule(num_steps, shift, PyArray_DATA((PyArrayObject *)ts),
                                        PyArray_DATA((PyArrayObject *)sig), PyArray_DATA((PyArrayObject *)sig64));
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    ret = PyTuple_Pack(3, ts, sig, sig64);
finally:
    Py_XDECREF(ts);
    Py_XDECREF(sig);
    Py_XDECREF(sig64);
    return ret;
}

static PyObject *py_sample_dmd_schedule(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    npy_intp n = LYRA_DMD_STEPS;
    PyObject *ts = PyArray_SimpleNew(1, &n, NPY_FLOAT32), *sig = PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    PyObject *ret = NULL;
    if (ts && sig) {
        lyra_dmd_schedule(PyArray_DATA((PyArrayObject *)ts), PyArray_DATA((PyArrayObject *)sig));
        ret = PyTuple_Pack(2, ts, sig);
    }
    Py_XDECREF(ts);
    Py_XDECREF(sig);
    return ret;
}

/* Sets d[key] = arr and drops the caller's reference to arr (NULL arr: the allocation failed). */
static int dict_put_new(PyObject *d, const char *key, PyObject *arr) {
    if (!arr) return -1;
    int r = PyDict_SetItemString(d, key, arr);
    Py_DECREF(arr);
    return r;
}

static PyObject *py_sample_unipc_plan(PyObject *self, PyObject *args) {
    (void)self;
    int n;
    double shift;
    if (!PyArg_ParseTuple(args, "id:unipc_plan", &n, &shift)) return NULL;
    if (n < 1 || n > LYRA_FLOW_MAX_STEPS) {
        PyErr_Format(PyExc_ValueError, "num_steps must be in [1, %d], got %d", LYRA_FLOW_MAX_STEPS, n);
        return NULL;
    }
    int64_t *ts = PyMem_Malloc((size_t)n * sizeof(int64_t));
    float *sig = PyMem_Malloc((size_t)(n + 1) * sizeof(float));
    lyra_unipc_step *plan = PyMem_Malloc((size_t)n * sizeof(lyra_unipc_step));
    PyObject *d = NULL;
    float lambda_last = 0.0f;
    if (!ts || !sig || !plan) {
        PyErr_NoMemory();
        goto finally;
    }
    lyra_status st = lyra_flow_schedule(n, shift, ts, sig, NULL);
    if (st == LYRA_OK) st = lyra_unipc_plan(sig, n, plan, &lambda_last);
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    d = PyDict_New();
    if (!d) goto finally;
    npy_intp dn = n, dn1 = n + 1;
    PyObject *lam = PyArray_SimpleNew(1, &dn1, NPY_FLOAT32);
    if (!lam) goto fail;
    float *lp = PyArray_DATA((PyArrayObject *)lam);
    for (int i = 0; i < n; i++) lp[i] = plan[i].lambda;
    lp[n] = lambda_last;
    if (dict_put_new(d, "lambda", lam) < 0) goto fail;
#define PUT_FIELD(name, npytype, ctype)                                                            \
    do {                                                                                           \
        PyObject *a_ = PyArray_SimpleNew(1, &dn, npytype);                                         \
        if (!a_) goto fail;                                                                        \
        ctype *p_ = PyArray_DATA((PyArrayObject *)a_);                                             \
        for (int i = 0; i < n; i++) p_[i] = (ctype)plan[i].name;                                   \
        if (dict_put_new(d, #name, a_) < 0) goto fail;                                             \
    } while (0)
    PUT_FIELD(sigma, NPY_FLOAT32, float);
    PUT_FIELD(order, NPY_INT64, int64_t);
    PUT_FIELD(c1, NPY_FLOAT32, float);
    PUT_FIELD(c2, NPY_FLOAT32, float);
    PUT_FIELD(r, NPY_FLOAT32, float);
    PUT_FIELD(rinv, NPY_FLOAT32, float);
    PUT_FIELD(corr_order, NPY_INT64, int64_t);
    PUT_FIELD(rho0, NPY_FLOAT32, float);
    PUT_FIELD(rho1, NPY_FLOAT32, float);
#undef PUT_FIELD
    goto finally;
fail:
    Py_CLEAR(d);
finally:
    PyMem_Free(ts);
    PyMem_Free(sig);
    PyMem_Free(plan);
    return d;
}

/* ---- cfg -------------------------------------------------------------------------------------- */

static PyObject *py_sample_cfg(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *c_obj, *u_obj;
    float g;
    if (!PyArg_ParseTuple(args, "OOf:cfg", &c_obj, &u_obj, &g)) return NULL;
    PyArrayObject *c = NULL, *u = NULL;
    PyObject *out = NULL;
    if (!(c = lyra_py_array(c_obj, NPY_FLOAT32, -1, "cfg: cond"))) goto finally;
    if (!(u = lyra_py_array(u_obj, NPY_FLOAT32, -1, "cfg: uncond"))) goto finally;
    if (PyArray_NDIM(c) != PyArray_NDIM(u) ||
        !PyArray_CompareLists(PyArray_DIMS(c), PyArray_DIMS(u), PyArray_NDIM(c))) {
        PyErr_SetString(PyExc_ValueError, "cfg: cond and uncond must have the same shape");
        goto finally;
    }
    out = PyArray_SimpleNew(PyArray_NDIM(c), PyArray_DIMS(c), NPY_FLOAT32);
    if (!out) goto finally;
    lyra_cfg_combine(PyArray_DATA(c), PyArray_DATA(u), g, (int64_t)PyArray_SIZE(c),
                     PyArray_DATA((PyArrayObject *)out));
finally:
    Py_XDECREF(c);
    Py_XDECREF(u);
    return out;
}

/* ---- Python denoiser -------------------------------------------------------------------------- */

/* One sampler run: shared by its denoisers (CFG has two). */
typedef struct py_loop {
    PyThreadState *ts;  /* the saved thread state while the C loop runs without the GIL */
    int raised;         /* a callback raised: its exception is pending */
} py_loop;

typedef struct py_denoiser {
    PyObject *fn;       /* denoise(x, t) -> v */
    py_loop *loop;
    int t_is_int;       /* pass t as a Python int (UniPC's int64 timesteps) rather than a float */
    npy_intp xdims[5];  /* (1, C, T, H, W) */
    npy_intp vdims[5];  /* (1, C, t_new, H, W) */
} py_denoiser;

static lyra_status py_denoise(void *ctx, const lyra_latent_shape *shape, const float *x, float t, float *v_out) {
    py_denoiser *d = ctx;
    PyEval_RestoreThread(d->loop->ts);
    lyra_status st = LYRA_OK;
    PyObject *xa = NULL, *tobj = NULL, *res = NULL;
    PyArrayObject *va = NULL;
    xa = PyArray_SimpleNew(5, d->xdims, NPY_FLOAT32);
    if (!xa) goto raised;
    memcpy(PyArray_DATA((PyArrayObject *)xa), x, (size_t)lyra_latent_numel(shape) * sizeof(float));
    tobj = d->t_is_int ? PyLong_FromLongLong((long long)t) : PyFloat_FromDouble((double)t);
    if (!tobj) goto raised;
    res = PyObject_CallFunctionObjArgs(d->fn, xa, tobj, NULL);
    if (!res) goto raised;
    va = lyra_py_array(res, NPY_FLOAT32, -1, "denoise() result");
    if (!va) goto raised;
    if (PyArray_NDIM(va) != 5 || !PyArray_CompareLists(PyArray_DIMS(va), d->vdims, 5)) {
        PyObject *got = PyObject_GetAttrString((PyObject *)va, "shape");
        PyErr_Format(PyExc_ValueError,
                     "denoise() must return the velocity of the generated frames, shape "
                     "(1, %zd, %zd, %zd, %zd); got shape %R",
                     (Py_ssize_t)d->vdims[1], (Py_ssize_t)d->vdims[2], (Py_ssize_t)d->vdims[3],
                     (Py_ssize_t)d->vdims[4], got ? got : Py_None);
        Py_XDECREF(got);
        goto raised;
    }
    memcpy(v_out, PyArray_DATA(va), (size_t)lyra_latent_gen_numel(shape) * sizeof(float));
    goto finally;
raised:
    d->loop->raised = 1;
    st = lyra_error(LYRA_ERR_INTERRUPTED, "the denoise callback raised");
finally:
    Py_XDECREF(xa);
    Py_XDECREF(tobj);
    Py_XDECREF(res);
    Py_XDECREF(va);
    d->loop->ts = PyEval_SaveThread();
    return st;
}

/* Parses the arguments shared by the two samplers: validates history (1, C, t_hist, H, W), the
 * optional initial noise (1, C, num_new, H, W), builds the shape and the state x (numpy, (1, C, T, H, W))
 * initialised as upstream does (history ++ float32 normals of `rng`), or with `noise` when given
 * (the normals are still drawn, so the stream continues at the same place). */
static int sampler_setup(PyObject *fn, PyObject *hist_obj, PyObject *seed_obj, long long num_new,
                         PyObject *noise_obj, py_denoiser *d, lyra_latent_shape *shape, lyra_rng *rng,
                         PyArrayObject **x_out) {
    PyArrayObject *hist = NULL, *noise = NULL, *x = NULL;
    int ret = -1;
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "denoise must be callable, got %.100s", Py_TYPE(fn)->tp_name);
        return -1;
    }
    if (!(hist = lyra_py_array(hist_obj, NPY_FLOAT32, 5, "history (1, C, T_hist, H, W)"))) goto finally;
    if (PyArray_DIM(hist, 0) != 1) {
        PyErr_Format(PyExc_ValueError, "history: batch size must be 1 (shape (1, C, T_hist, H, W)), got %zd",
                     (Py_ssize_t)PyArray_DIM(hist, 0));
        goto finally;
    }
    if (num_new < 1) {
        PyErr_Format(PyExc_ValueError, "num_new must be >= 1, got %lld", num_new);
        goto finally;
    }
    shape->c = PyArray_DIM(hist, 1);
    shape->t_hist = PyArray_DIM(hist, 2);
    shape->t_new = num_new;
    shape->h = PyArray_DIM(hist, 3);
    shape->w = PyArray_DIM(hist, 4);
    lyra_status st = lyra_latent_shape_check(shape, "history/num_new");
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    npy_intp xd[5] = {1, shape->c, shape->t_hist + shape->t_new, shape->h, shape->w};
    npy_intp vd[5] = {1, shape->c, shape->t_new, shape->h, shape->w};
    memcpy(d->xdims, xd, sizeof(xd));
    memcpy(d->vdims, vd, sizeof(vd));
    if (noise_obj != Py_None) {
        if (!(noise = lyra_py_array(noise_obj, NPY_FLOAT32, 5, "noise (1, C, num_new, H, W)"))) goto finally;
        if (!PyArray_CompareLists(PyArray_DIMS(noise), vd, 5)) {
            PyErr_Format(PyExc_ValueError, "noise must have shape (1, %zd, %zd, %zd, %zd)", (Py_ssize_t)vd[1],
                         (Py_ssize_t)vd[2], (Py_ssize_t)vd[3], (Py_ssize_t)vd[4]);
            goto finally;
        }
    }
    if (parse_seed(seed_obj, rng) < 0) goto finally;
    if (!(x = (PyArrayObject *)PyArray_SimpleNew(5, xd, NPY_FLOAT32))) goto finally;
    lyra_latent_init(shape, PyArray_DATA(hist), rng, PyArray_DATA(x));
    if (noise) lyra_latent_gen_set(shape, PyArray_DATA(x), PyArray_DATA(noise));
    d->fn = fn;
    *x_out = x;
    x = NULL;
    ret = 0;
finally:
    Py_XDECREF(hist);
    Py_XDECREF(noise);
    Py_XDECREF(x);
    return ret;
}

/* The generated frames of the state x: a new (1, C, t_new, H, W) array. */
static PyObject *state_generated(const lyra_latent_shape *shape, const py_denoiser *d, PyArrayObject *x) {
    PyObject *out = PyArray_SimpleNew(5, (npy_intp *)d->vdims, NPY_FLOAT32);
    if (out) lyra_latent_gen_get(shape, PyArray_DATA(x), PyArray_DATA((PyArrayObject *)out));
    return out;
}

/* A new float32/int64 array with `lead` prepended to dims (or dims alone when lead < 0). */
static PyObject *new_stack(npy_intp lead, int nd, const npy_intp *dims, int type) {
    npy_intp full[8];
    int k = 0;
    if (lead >= 0) full[k++] = lead;
    for (int i = 0; i < nd; i++) full[k++] = dims[i];
    return PyArray_SimpleNew(k, full, type);
}

#define ADATA(o) PyArray_DATA((PyArrayObject *)(o))

/* ---- UniPC ------------------------------------------------------------------------------------ */

static PyObject *py_sample_unipc(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"denoise", "history", "seed", "num_steps", "shift", "num_new",
                             "uncond", "guidance", "noise", "trace", NULL};
    PyObject *fn, *hist_obj, *seed_obj, *uncond_obj = Py_None, *guidance_obj = Py_None, *noise_obj = Py_None;
    int num_steps, want_trace = 0;
    double shift = 5.0;
    long long num_new = 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOi|dLOOOp:unipc_sample", kwlist, &fn, &hist_obj, &seed_obj,
                                     &num_steps, &shift, &num_new, &uncond_obj, &guidance_obj, &noise_obj,
                                     &want_trace))
        return NULL;
    py_loop loop = {0};
    py_denoiser d = {.fn = NULL, .loop = &loop, .t_is_int = 1}, du;
    lyra_cfg cfg = {0};
    lyra_latent_shape shape;
    lyra_rng rng;
    PyArrayObject *x = NULL;
    PyObject *tx = NULL, *tv = NULL, *tx0 = NULL, *txc = NULL, *tord = NULL, *out = NULL, *ret = NULL;
    if (sampler_setup(fn, hist_obj, seed_obj, num_new, noise_obj, &d, &shape, &rng, &x) < 0) goto finally;
    if (num_steps < 1 || num_steps > LYRA_FLOW_MAX_STEPS) {
        PyErr_Format(PyExc_ValueError, "num_steps must be in [1, %d], got %d", LYRA_FLOW_MAX_STEPS, num_steps);
        goto finally;
    }
    if ((uncond_obj == Py_None) != (guidance_obj == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "uncond and guidance go together: give both for CFG, or neither");
        goto finally;
    }
    if (uncond_obj != Py_None) {
        if (!PyCallable_Check(uncond_obj)) {
            PyErr_Format(PyExc_TypeError, "uncond must be callable, got %.100s", Py_TYPE(uncond_obj)->tp_name);
            goto finally;
        }
        double g = PyFloat_AsDouble(guidance_obj);
        if (g == -1.0 && PyErr_Occurred()) goto finally;
        du = d;
        du.fn = uncond_obj;
        cfg = (lyra_cfg){py_denoise, &d, py_denoise, &du, (float)g, NULL};
        if (!(cfg.scratch = PyMem_Malloc((size_t)lyra_latent_gen_numel(&shape) * sizeof(float)))) {
            PyErr_NoMemory();
            goto finally;
        }
    }
    lyra_unipc_trace trace = {0};
    if (want_trace) {
        npy_intp *xd = d.xdims + 1; /* (C, T, H, W): the batch dim dropped, as in the golden */
        if (!(tx = new_stack(num_steps + 1, 4, xd, NPY_FLOAT32)) || !(tv = new_stack(num_steps, 4, xd, NPY_FLOAT32)) ||
            !(tx0 = new_stack(num_steps, 4, xd, NPY_FLOAT32)) || !(txc = new_stack(num_steps, 4, xd, NPY_FLOAT32)) ||
            !(tord = new_stack(num_steps, 0, NULL, NPY_INT64)))
            goto finally;
        trace = (lyra_unipc_trace){ADATA(tx), ADATA(tv), ADATA(tx0), ADATA(txc), ADATA(tord)};
    }
    loop.ts = PyEval_SaveThread();
    lyra_status st = lyra_unipc_sample(&shape, num_steps, shift, PyArray_DATA(x), cfg.scratch ? lyra_cfg_denoise : py_denoise,
                                       cfg.scratch ? (void *)&cfg : (void *)&d, want_trace ? &trace : NULL);
    PyEval_RestoreThread(loop.ts);
    if (st != LYRA_OK) {
        if (loop.raised)
            lyra_error_clear(); /* the callback's own exception is already set */
        else
            lyra_py_raise(st);
        goto finally;
    }
    if (!(out = state_generated(&shape, &d, x))) goto finally;
    if (!want_trace) {
        ret = out;
        out = NULL;
        goto finally;
    }
    PyObject *td = Py_BuildValue("{sOsOsOsOsO}", "x", tx, "v", tv, "x0", tx0, "x_corrected", txc, "order", tord);
    if (td) ret = Py_BuildValue("(ON)", out, td);
finally:
    PyMem_Free(cfg.scratch);
    Py_XDECREF(x);
    Py_XDECREF(out);
    Py_XDECREF(tx);
    Py_XDECREF(tv);
    Py_XDECREF(tx0);
    Py_XDECREF(txc);
    Py_XDECREF(tord);
    return ret;
}

/* ---- DMD -------------------------------------------------------------------------------------- */

static PyObject *py_sample_dmd(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"denoise", "history", "seed", "num_new", "noise", "renoise", "trace", NULL};
    PyObject *fn, *hist_obj, *seed_obj, *noise_obj = Py_None, *renoise_obj = Py_None;
    long long num_new = 20;
    int want_trace = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|LOOp:dmd_sample", kwlist, &fn, &hist_obj, &seed_obj,
                                     &num_new, &noise_obj, &renoise_obj, &want_trace))
        return NULL;
    py_loop loop = {0};
    py_denoiser d = {.fn = NULL, .loop = &loop, .t_is_int = 0};
    lyra_latent_shape shape;
    lyra_rng rng;
    PyArrayObject *x = NULL, *renoise = NULL;
    PyObject *txin = NULL, *ttin = NULL, *tv = NULL, *tx0 = NULL, *teps = NULL, *out = NULL, *ret = NULL;
    if (sampler_setup(fn, hist_obj, seed_obj, num_new, noise_obj, &d, &shape, &rng, &x) < 0) goto finally;
    /* [T, C, H, W] per re-noise step: upstream's randn_like over [B·T, C, H, W]. */
    npy_intp ed[4] = {d.xdims[2], d.xdims[1], d.xdims[3], d.xdims[4]};
    if (renoise_obj != Py_None) {
        if (!(renoise = lyra_py_array(renoise_obj, NPY_FLOAT32, 5, "renoise (3, T, C, H, W)"))) goto finally;
        npy_intp want[5] = {LYRA_DMD_STEPS - 1, ed[0], ed[1], ed[2], ed[3]};
        if (!PyArray_CompareLists(PyArray_DIMS(renoise), want, 5)) {
            PyErr_Format(PyExc_ValueError, "renoise must have shape (3, %zd, %zd, %zd, %zd) = (steps, T, C, H, W)",
                         (Py_ssize_t)ed[0], (Py_ssize_t)ed[1], (Py_ssize_t)ed[2], (Py_ssize_t)ed[3]);
            goto finally;
        }
    }
    lyra_dmd_trace trace = {0};
    if (want_trace) {
        if (!(txin = new_stack(LYRA_DMD_STEPS, 4, d.xdims + 1, NPY_FLOAT32)) ||
            !(ttin = new_stack(LYRA_DMD_STEPS, 0, NULL, NPY_FLOAT32)) ||
            !(tv = new_stack(LYRA_DMD_STEPS, 4, d.vdims + 1, NPY_FLOAT32)) ||
            !(tx0 = new_stack(LYRA_DMD_STEPS, 4, d.xdims + 1, NPY_FLOAT32)) ||
            !(teps = new_stack(LYRA_DMD_STEPS - 1, 4, ed, NPY_FLOAT32)))
            goto finally;
        trace = (lyra_dmd_trace){ADATA(txin), ADATA(ttin), ADATA(tv), ADATA(tx0), ADATA(teps)};
    }
    loop.ts = PyEval_SaveThread();
    lyra_status st = lyra_dmd_sample(&shape, PyArray_DATA(x), &rng, renoise ? PyArray_DATA(renoise) : NULL,
                                     py_denoise, &d, want_trace ? &trace : NULL);
    PyEval_RestoreThread(loop.ts);
    if (st != LYRA_OK) {
        if (loop.raised)
            lyra_error_clear();
        else
            lyra_py_raise(st);
        goto finally;
    }
    if (!(out = state_generated(&shape, &d, x))) goto finally;
    if (!want_trace) {
        ret = out;
        out = NULL;
        goto finally;
    }
    PyObject *td = Py_BuildValue("{sOsOsOsOsO}", "x_in", txin, "t_in", ttin, "v", tv, "x0", tx0, "eps", teps);
    if (td) ret = Py_BuildValue("(ON)", out, td);
finally:
    Py_XDECREF(x);
    Py_XDECREF(renoise);
    Py_XDECREF(out);
    Py_XDECREF(txin);
    Py_XDECREF(ttin);
    Py_XDECREF(tv);
    Py_XDECREF(tx0);
    Py_XDECREF(teps);
    return ret;
}

static PyMethodDef sample_methods[] = {
    {"sample_randn", (PyCFunction)(void (*)(void))py_sample_randn, METH_VARARGS | METH_KEYWORDS,
     "sample_randn(seed, shape) -> float64 array: numpy.random.RandomState(seed).standard_normal(shape)"},
    {"sample_flow_schedule", py_sample_flow_schedule, METH_VARARGS,
     "sample_flow_schedule(num_steps, shift) -> (timesteps int64 [N], sigmas float32 [N+1], sigmas float64 [N])"},
    {"sample_dmd_schedule", py_sample_dmd_schedule, METH_NOARGS,
     "sample_dmd_schedule() -> (timesteps float32 [4], sigmas float32 [4])"},
    {"sample_unipc_plan", py_sample_unipc_plan, METH_VARARGS,
     "sample_unipc_plan(num_steps, shift) -> dict of the UniPC per-step scalars"},
    {"sample_cfg", py_sample_cfg, METH_VARARGS, "sample_cfg(cond, uncond, g) -> uncond + g * (cond - uncond)"},
    {"sample_unipc", (PyCFunction)(void (*)(void))py_sample_unipc, METH_VARARGS | METH_KEYWORDS,
     "sample_unipc(denoise, history, seed, num_steps, shift=5.0, num_new=20, uncond=None, guidance=None, "
     "noise=None, trace=False)"},
    {"sample_dmd", (PyCFunction)(void (*)(void))py_sample_dmd, METH_VARARGS | METH_KEYWORDS,
     "sample_dmd(denoise, history, seed, num_new=20, noise=None, renoise=None, trace=False)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_sample(PyObject *m) { return PyModule_AddFunctions(m, sample_methods); }
