/* Python glue for the trajectory part of the geom area (behind lyra2/geometry.py):
 *   _core.traj_build(preset, num_frames, strength, center_depth, K, direction, upward_ratio) -> (w2c, K)
 *   _core.traj_subject_depth(depth, mask=None) -> float
 *   _core.traj_custom(w2c, K, pose_scale, src_h, src_w, dst_h, dst_w) -> (w2c, K)
 * Arrays come back float32, C-contiguous, allocated by NumPy. */
#include "py_common.h"

#include "geom/trajectory.h"

/* Checks arr's shape against `shape` (ndim entries, -1 = any size); ValueError naming `what` otherwise. */
static int check_shape(PyArrayObject *arr, const char *what, int ndim, const npy_intp *shape) {
    int ok = PyArray_NDIM(arr) == ndim;
    for (int d = 0; ok && d < ndim; d++)
        if (shape[d] >= 0 && PyArray_DIM(arr, d) != shape[d]) ok = 0;
    if (ok) return 0;
    char want[64] = "", got[96] = "";
    for (int d = 0; d < ndim; d++) {
        size_t used = strlen(want);
        if (shape[d] >= 0)
            snprintf(want + used, sizeof want - used, "%s%ld", d ? ", " : "", (long)shape[d]);
        else
            snprintf(want + used, sizeof want - used, "%sN", d ? ", " : "");
    }
    for (int d = 0; d < PyArray_NDIM(arr) && d < 8; d++) {
        size_t used = strlen(got);
        snprintf(got + used, sizeof got - used, "%s%ld", d ? ", " : "", (long)PyArray_DIM(arr, d));
    }
    PyErr_Format(PyExc_ValueError, "%s: expected shape (%s), got (%s)", what, want, got);
    return -1;
}

static PyObject *py_traj_build(PyObject *self, PyObject *args) {
    (void)self;
    const char *preset_name, *direction_name;
    long long n;
    double strength, upward_ratio;
    float c;
    PyObject *k_obj;
    if (!PyArg_ParseTuple(args, "sLdfOsd", &preset_name, &n, &strength, &c, &k_obj, &direction_name,
                          &upward_ratio))
        return NULL;
    lyra_traj_preset preset;
    lyra_traj_direction direction;
    lyra_status st = lyra_traj_preset_parse(preset_name, &preset);
    if (st == LYRA_OK) st = lyra_traj_direction_parse(direction_name, &direction);
    if (st == LYRA_OK) st = lyra_traj_check_frames((int64_t)n);
    if (st != LYRA_OK) return lyra_py_raise(st);

    PyObject *result = NULL;
    PyArrayObject *w2c = NULL, *K = NULL;
    PyArrayObject *k0 = lyra_py_array(k_obj, NPY_FLOAT32, 2, "intrinsics");
    static const npy_intp k_shape[2] = {3, 3};
    if (!k0 || check_shape(k0, "intrinsics", 2, k_shape) < 0) goto finally;

    const int64_t m = lyra_traj_frame_count(preset, (int64_t)n);
    npy_intp w_dims[3] = {(npy_intp)m, 4, 4}, k_dims[3] = {(npy_intp)m, 3, 3};
    w2c = (PyArrayObject *)PyArray_SimpleNew(3, w_dims, NPY_FLOAT32);
    K = (PyArrayObject *)PyArray_SimpleNew(3, k_dims, NPY_FLOAT32);
    if (!w2c || !K) goto finally;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_traj_build(preset, direction, (int64_t)n, strength, c, (const float *)PyArray_DATA(k0), upward_ratio,
                         (float *)PyArray_DATA(w2c), (float *)PyArray_DATA(K));
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = PyTuple_Pack(2, (PyObject *)w2c, (PyObject *)K);
finally:
    Py_XDECREF(k0);
    Py_XDECREF(w2c);
    Py_XDECREF(K);
    return result;
}

static PyObject *py_traj_subject_depth(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"depth", "mask", NULL};
    PyObject *depth_obj, *mask_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", kwlist, &depth_obj, &mask_obj)) return NULL;
    PyObject *result = NULL;
    PyArrayObject *mask = NULL;
    PyArrayObject *depth = lyra_py_array(depth_obj, NPY_FLOAT32, 2, "depth");
    if (!depth) goto finally;
    if (mask_obj != Py_None) {
        mask = lyra_py_array(mask_obj, NPY_FLOAT32, 2, "mask");
        if (!mask) goto finally;
        if (PyArray_DIM(mask, 0) != PyArray_DIM(depth, 0) || PyArray_DIM(mask, 1) != PyArray_DIM(depth, 1)) {
            PyErr_Format(PyExc_ValueError, "mask: shape (%ld, %ld) differs from depth's (%ld, %ld)",
                         (long)PyArray_DIM(mask, 0), (long)PyArray_DIM(mask, 1), (long)PyArray_DIM(depth, 0),
                         (long)PyArray_DIM(depth, 1));
            goto finally;
        }
    }
    float value = 0.0f;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_traj_subject_depth((const float *)PyArray_DATA(depth), mask ? (const float *)PyArray_DATA(mask) : NULL,
                                 (int64_t)PyArray_SIZE(depth), &value);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = PyFloat_FromDouble((double)value);
finally:
    Py_XDECREF(depth);
    Py_XDECREF(mask);
    return result;
}

static PyObject *py_traj_custom(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *w_obj, *k_obj;
    double pose_scale;
    long long src_h, src_w, dst_h, dst_w;
    if (!PyArg_ParseTuple(args, "OOdLLLL", &w_obj, &k_obj, &pose_scale, &src_h, &src_w, &dst_h, &dst_w))
        return NULL;
    PyObject *result = NULL;
    PyArrayObject *w2c = NULL, *K = NULL, *w_in = NULL, *k_in = NULL;
    static const npy_intp w_shape[3] = {-1, 4, 4}, k_shape[3] = {-1, 3, 3};
    w_in = lyra_py_array(w_obj, NPY_FLOAT32, 3, "w2c");
    if (!w_in || check_shape(w_in, "w2c", 3, w_shape) < 0) goto finally;
    k_in = lyra_py_array(k_obj, NPY_FLOAT32, 3, "intrinsics");
    if (!k_in || check_shape(k_in, "intrinsics", 3, k_shape) < 0) goto finally;
    if (PyArray_DIM(w_in, 0) != PyArray_DIM(k_in, 0)) {
        PyErr_Format(PyExc_ValueError, "w2c, intrinsics: %ld poses but %ld intrinsics; need one per frame",
                     (long)PyArray_DIM(w_in, 0), (long)PyArray_DIM(k_in, 0));
        goto finally;
    }
    /* Fresh copies: the caller's arrays are never modified. */
    w2c = (PyArrayObject *)PyArray_NewCopy(w_in, NPY_CORDER);
    K = (PyArrayObject *)PyArray_NewCopy(k_in, NPY_CORDER);
    if (!w2c || !K) goto finally;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_traj_custom_rescale((float *)PyArray_DATA(w2c), (float *)PyArray_DATA(K), (int64_t)PyArray_DIM(w2c, 0),
                                  pose_scale, (int64_t)src_h, (int64_t)src_w, (int64_t)dst_h, (int64_t)dst_w);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = PyTuple_Pack(2, (PyObject *)w2c, (PyObject *)K);
finally:
    Py_XDECREF(w_in);
    Py_XDECREF(k_in);
    Py_XDECREF(w2c);
    Py_XDECREF(K);
    return result;
}

static PyMethodDef geom_methods[] = {
    {"traj_build", py_traj_build, METH_VARARGS,
     "traj_build(preset, num_frames, strength, center_depth, K, direction, upward_ratio) -> (w2c, K)"},
    {"traj_subject_depth", (PyCFunction)(void (*)(void))py_traj_subject_depth, METH_VARARGS | METH_KEYWORDS,
     "traj_subject_depth(depth, mask=None) -> float: 25th percentile of depth[mask > 0.5]"},
    {"traj_custom", py_traj_custom, METH_VARARGS,
     "traj_custom(w2c, K, pose_scale, src_h, src_w, dst_h, dst_w) -> (w2c, K) rescaled copies"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_geom(PyObject *m) { return PyModule_AddFunctions(m, geom_methods); }
