/* Python glue for MoGe (private functions of lyra2._core; the public surface is lyra2/models/moge.py and
 * lyra2/depth.py): the focal/shift solver and infer()'s host geometry, Lyra's depth post-processing and the
 * DA3 -> MoGe alignment (models/moge_geom.c, moge_lm.c). The network itself is in py_moge_net.c. */
#include "py_common.h"

#include <string.h>

#include "models/moge.h"

/* A new C-contiguous float32 / uint8 array of the given shape. */
static PyArrayObject *new_array(int nd, const npy_intp *dims, int type) {
    return (PyArrayObject *)PyArray_SimpleNew(nd, (npy_intp *)dims, type);
}

/* A (H, W) uint8 mask from any array-like (bool or number; nonzero = valid), checked against (H, W). */
static PyArrayObject *mask_array(PyObject *obj, npy_intp H, npy_intp W, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, NPY_NOTYPE, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!a) {
        PyErr_Format(PyExc_ValueError, "%s must be a 2-d (H, W) array", what);
        return NULL;
    }
    if (PyArray_DIM(a, 0) != H || PyArray_DIM(a, 1) != W) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (%zd, %zd), got (%zd, %zd)", what, (Py_ssize_t)H,
                     (Py_ssize_t)W, (Py_ssize_t)PyArray_DIM(a, 0), (Py_ssize_t)PyArray_DIM(a, 1));
        Py_DECREF(a);
        return NULL;
    }
    /* nonzero -> 1 whatever the dtype (a float mask of 0.3 is valid: mask_binary is computed by the caller). */
    PyObject *zero = PyLong_FromLong(0);
    PyArrayObject *ne = zero ? (PyArrayObject *)PyObject_RichCompare((PyObject *)a, zero, Py_NE) : NULL;
    Py_XDECREF(zero);
    Py_DECREF(a);
    if (!ne) return NULL;
    PyArrayObject *u8 = (PyArrayObject *)PyArray_FROMANY((PyObject *)ne, NPY_UINT8, 2, 2,
                                                         NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(ne);
    return u8;
}

/* An (N, k) float32 array with k columns. */
static PyArrayObject *rows_f32(PyObject *obj, int k, const char *what) {
    PyArrayObject *a = lyra_py_array(obj, NPY_FLOAT32, 2, what);
    if (a && PyArray_DIM(a, 1) != k) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (N, %d), got (%zd, %zd)", what, k,
                     (Py_ssize_t)PyArray_DIM(a, 0), (Py_ssize_t)PyArray_DIM(a, 1));
        Py_CLEAR(a);
    }
    return a;
}

/* An (H, W, 3) float32 point map. */
static PyArrayObject *points_f32(PyObject *obj, const char *what) {
    PyArrayObject *a = lyra_py_array(obj, NPY_FLOAT32, 3, what);
    if (a && (PyArray_DIM(a, 2) != 3 || PyArray_DIM(a, 0) < 1 || PyArray_DIM(a, 1) < 1)) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (H, W, 3) with H, W >= 1", what);
        Py_CLEAR(a);
    }
    return a;
}

/* moge_lm_solve(uv (N, 2), xyz (N, 3), trace_cap=0) -> {shift, focal, cost, nfev, status, trace (nfev', 2)} */
static PyObject *py_moge_lm_solve(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *uv_obj, *xyz_obj, *out = NULL;
    int trace_cap = 0;
    if (!PyArg_ParseTuple(args, "OO|i:moge_lm_solve", &uv_obj, &xyz_obj, &trace_cap)) return NULL;
    PyArrayObject *uv = rows_f32(uv_obj, 2, "uv"), *xyz = uv ? rows_f32(xyz_obj, 3, "xyz") : NULL, *trace = NULL;
    if (!xyz) goto finally;
    npy_intp n = PyArray_DIM(uv, 0);
    if (PyArray_DIM(xyz, 0) != n || n < 1) {
        PyErr_Format(PyExc_ValueError, "uv and xyz must have the same number of rows (>= 1), got %zd and %zd",
                     (Py_ssize_t)n, (Py_ssize_t)PyArray_DIM(xyz, 0));
        goto finally;
    }
    if (trace_cap < 0 || trace_cap > 100000) {
        PyErr_Format(PyExc_ValueError, "trace_cap must be in [0, 100000], got %d", trace_cap);
        goto finally;
    }
    npy_intp tdims[2] = {trace_cap, 2};
    trace = new_array(2, tdims, NPY_FLOAT64);
    if (!trace) goto finally;
    lyra_moge_lm_info info;
    lyra_status s;
    float focal = 0;
    const float *u = PyArray_DATA(uv), *x = PyArray_DATA(xyz);
    Py_BEGIN_ALLOW_THREADS
    s = lyra_moge_lm_solve(u, x, n, &info, trace_cap ? PyArray_DATA(trace) : NULL, trace_cap);
    if (s == LYRA_OK) s = lyra_moge_lm_focal(u, x, n, (float)info.shift, &focal);
    Py_END_ALLOW_THREADS
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    PyObject *tr = PySequence_GetSlice((PyObject *)trace, 0, info.nfev < trace_cap ? info.nfev : trace_cap);
    if (!tr) goto finally;
    out = Py_BuildValue("{s:d,s:d,s:d,s:i,s:i,s:N}", "shift", info.shift, "focal", (double)focal, "cost", info.cost, "nfev",
                        info.nfev, "status", info.status, "trace", tr);
finally:
    Py_XDECREF(uv);
    Py_XDECREF(xyz);
    Py_XDECREF(trace);
    return out;
}

/* moge_samples(points (H, W, 3), mask (H, W) or None) -> (uv (N, 2), xyz (N, 3)): the valid nearest 64×64 samples */
static PyObject *py_moge_samples(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *p_obj, *m_obj, *out = NULL;
    if (!PyArg_ParseTuple(args, "OO:moge_samples", &p_obj, &m_obj)) return NULL;
    PyArrayObject *pts = points_f32(p_obj, "points"), *mask = NULL, *uv = NULL, *xyz = NULL;
    if (!pts) return NULL;
    npy_intp H = PyArray_DIM(pts, 0), W = PyArray_DIM(pts, 1);
    if (m_obj != Py_None && !(mask = mask_array(m_obj, H, W, "mask"))) goto finally;
    npy_intp d2[2] = {64 * 64, 2}, d3[2] = {64 * 64, 3};
    uv = new_array(2, d2, NPY_FLOAT32);
    xyz = new_array(2, d3, NPY_FLOAT32);
    if (!uv || !xyz) goto finally;
    int64_t n;
    lyra_moge_samples(PyArray_DATA(pts), mask ? PyArray_DATA(mask) : NULL, H, W, PyArray_DATA(uv),
                      PyArray_DATA(xyz), &n);
    PyObject *su = PySequence_GetSlice((PyObject *)uv, 0, n), *sx = su ? PySequence_GetSlice((PyObject *)xyz, 0, n) : NULL;
    if (sx) out = PyTuple_Pack(2, su, sx);
    Py_XDECREF(su);
    Py_XDECREF(sx);
finally:
    Py_XDECREF(pts);
    Py_XDECREF(mask);
    Py_XDECREF(uv);
    Py_XDECREF(xyz);
    return out;
}

/* moge_recover_focal_shift(points (H, W, 3), mask or None) -> (focal, shift, n_valid, nfev, status) */
static PyObject *py_moge_recover(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *p_obj, *m_obj, *out = NULL;
    if (!PyArg_ParseTuple(args, "OO:moge_recover_focal_shift", &p_obj, &m_obj)) return NULL;
    PyArrayObject *pts = points_f32(p_obj, "points"), *mask = NULL;
    if (!pts) return NULL;
    npy_intp H = PyArray_DIM(pts, 0), W = PyArray_DIM(pts, 1);
    if (m_obj != Py_None && !(mask = mask_array(m_obj, H, W, "mask"))) goto finally;
    float focal = 0, shift = 0;
    int64_t nv = 0;
    lyra_moge_lm_info info = {0};
    lyra_status s;
    Py_BEGIN_ALLOW_THREADS
    s = lyra_moge_recover_focal_shift(PyArray_DATA(pts), mask ? PyArray_DATA(mask) : NULL, H, W, &focal, &shift,
                                      &info, &nv);
    Py_END_ALLOW_THREADS
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    out = Py_BuildValue("(ddLii)", (double)focal, (double)shift, (long long)nv, info.nfev, info.status);
finally:
    Py_XDECREF(pts);
    Py_XDECREF(mask);
    return out;
}

/* moge_uv(H, W, aspect=0) -> (H, W, 2) float32 */
static PyObject *py_moge_uv(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t H, W;
    double aspect = 0;
    if (!PyArg_ParseTuple(args, "nn|d:moge_uv", &H, &W, &aspect)) return NULL;
    if (H < 1 || W < 1 || H > (1 << 16) || W > (1 << 16)) {
        PyErr_Format(PyExc_ValueError, "H and W must be in [1, 65536], got %zd, %zd", H, W);
        return NULL;
    }
    npy_intp dims[3] = {H, W, 2};
    PyArrayObject *uv = new_array(3, dims, NPY_FLOAT32);
    if (uv) lyra_moge_uv(PyArray_DATA(uv), H, W, aspect);
    return (PyObject *)uv;
}

/* moge_finish(points (H, W, 3), mask_logit (H, W), threshold) -> {depth, mask, intrinsics, points, focal, shift} */
static PyObject *py_moge_finish(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *p_obj, *l_obj, *out = NULL;
    double threshold;
    if (!PyArg_ParseTuple(args, "OOd:moge_finish", &p_obj, &l_obj, &threshold)) return NULL;
    PyArrayObject *pts = points_f32(p_obj, "points"), *logit = NULL, *depth = NULL, *mask = NULL, *K = NULL,
                  *opts = NULL;
    if (!pts) return NULL;
    npy_intp H = PyArray_DIM(pts, 0), W = PyArray_DIM(pts, 1);
    logit = lyra_py_array(l_obj, NPY_FLOAT32, 2, "mask_logit");
    if (!logit) goto finally;
    if (PyArray_DIM(logit, 0) != H || PyArray_DIM(logit, 1) != W) {
        PyErr_Format(PyExc_ValueError, "mask_logit must have shape (%zd, %zd)", (Py_ssize_t)H, (Py_ssize_t)W);
        goto finally;
    }
    npy_intp d2[2] = {H, W}, d3[3] = {H, W, 3}, dk[2] = {3, 3};
    depth = new_array(2, d2, NPY_FLOAT32);
    mask = new_array(2, d2, NPY_BOOL);
    K = new_array(2, dk, NPY_FLOAT32);
    opts = new_array(3, d3, NPY_FLOAT32);
    if (!depth || !mask || !K || !opts) goto finally;
    float focal = 0, shift = 0;
    lyra_status s;
    Py_BEGIN_ALLOW_THREADS
    s = lyra_moge_finish(PyArray_DATA(pts), PyArray_DATA(logit), H, W, (float)threshold, PyArray_DATA(depth),
                         PyArray_DATA(mask), PyArray_DATA(K), PyArray_DATA(opts), &focal, &shift);
    Py_END_ALLOW_THREADS
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    out = Py_BuildValue("{s:O,s:O,s:O,s:O,s:d,s:d}", "depth", depth, "mask", mask, "intrinsics", K, "points", opts,
                        "focal", (double)focal, "shift", (double)shift);
finally:
    Py_XDECREF(pts);
    Py_XDECREF(logit);
    Py_XDECREF(depth);
    Py_XDECREF(mask);
    Py_XDECREF(K);
    Py_XDECREF(opts);
    return out;
}

/* moge_lyra_depth(depth (H, W), mask (H, W)) -> Lyra's post-processed copy of the MoGe depth */
static PyObject *py_moge_lyra_depth(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d_obj, *m_obj;
    if (!PyArg_ParseTuple(args, "OO:moge_lyra_depth", &d_obj, &m_obj)) return NULL;
    PyArrayObject *d = lyra_py_array(d_obj, NPY_FLOAT32, 2, "depth"), *m = NULL, *out = NULL;
    if (!d) return NULL;
    if (!(m = mask_array(m_obj, PyArray_DIM(d, 0), PyArray_DIM(d, 1), "mask"))) goto finally;
    out = (PyArrayObject *)PyArray_NewCopy(d, NPY_CORDER);
    if (out) lyra_moge_lyra_depth(PyArray_DATA(out), PyArray_DATA(m), PyArray_SIZE(out));
finally:
    Py_XDECREF(d);
    Py_XDECREF(m);
    return (PyObject *)out;
}

/* moge_align(da3_depth (H, W), da3_mask (H, W) float, moge_depth (H, W), moge_mask (H, W))
 *   -> (aligned depth (H, W), {n_valid, numerator, denominator, scale, applied}) */
static PyObject *py_moge_align(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dd, *dm, *md, *mm, *res = NULL;
    if (!PyArg_ParseTuple(args, "OOOO:moge_align", &dd, &dm, &md, &mm)) return NULL;
    PyArrayObject *a = lyra_py_array(dd, NPY_FLOAT32, 2, "da3_depth"), *am = NULL, *b = NULL, *bm = NULL, *out = NULL;
    if (!a) return NULL;
    npy_intp H = PyArray_DIM(a, 0), W = PyArray_DIM(a, 1);
    am = lyra_py_array(dm, NPY_FLOAT32, 2, "da3_mask");
    b = am ? lyra_py_array(md, NPY_FLOAT32, 2, "moge_depth") : NULL;
    if (!b) goto finally;
    if (PyArray_DIM(am, 0) != H || PyArray_DIM(am, 1) != W || PyArray_DIM(b, 0) != H || PyArray_DIM(b, 1) != W) {
        PyErr_Format(PyExc_ValueError, "da3_mask and moge_depth must have the shape of da3_depth (%zd, %zd)",
                     (Py_ssize_t)H, (Py_ssize_t)W);
        goto finally;
    }
    if (!(bm = mask_array(mm, H, W, "moge_mask"))) goto finally;
    npy_intp dims[2] = {H, W};
    out = new_array(2, dims, NPY_FLOAT32);
    if (!out) goto finally;
    lyra_moge_align_info info;
    lyra_moge_align(PyArray_DATA(a), PyArray_DATA(am), PyArray_DATA(b), PyArray_DATA(bm), H * W, PyArray_DATA(out),
                    &info);
    res = Py_BuildValue("(O{s:L,s:d,s:d,s:d,s:O})", out, "n_valid", (long long)info.n_valid, "numerator",
                        (double)info.numerator, "denominator", (double)info.denominator, "scale", (double)info.scale,
                        "applied", info.applied ? Py_True : Py_False);
finally:
    Py_XDECREF(a);
    Py_XDECREF(am);
    Py_XDECREF(b);
    Py_XDECREF(bm);
    Py_XDECREF(out);
    return res;
}

static PyMethodDef moge_geom_methods[] = {
    {"moge_lm_solve", py_moge_lm_solve, METH_VARARGS,
     "moge_lm_solve(uv, xyz, trace_cap=0) -> dict (MoGe focal/shift least squares, MINPACK n = 1)"},
    {"moge_samples", py_moge_samples, METH_VARARGS, "moge_samples(points, mask) -> (uv, xyz) nearest 64x64 samples"},
    {"moge_recover_focal_shift", py_moge_recover, METH_VARARGS,
     "moge_recover_focal_shift(points, mask) -> (focal, shift, n_valid, nfev, status)"},
    {"moge_uv", py_moge_uv, METH_VARARGS, "moge_uv(H, W, aspect=0) -> (H, W, 2) view-plane UV"},
    {"moge_finish", py_moge_finish, METH_VARARGS, "moge_finish(points, mask_logit, threshold) -> dict"},
    {"moge_lyra_depth", py_moge_lyra_depth, METH_VARARGS, "moge_lyra_depth(depth, mask) -> depth"},
    {"moge_align", py_moge_align, METH_VARARGS, "moge_align(da3_depth, da3_mask, moge_depth, moge_mask) -> (depth, info)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_moge_geom(PyObject *m) { return PyModule_AddFunctions(m, moge_geom_methods); }
