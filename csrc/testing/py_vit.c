/* lyra2._testops.vit_taps: the generic ViT (models/vit.h) run alone from a weight file or mapping, so tests can
 * compare its block outputs with upstream's DINOv2 taps (tests/test_da3.py). Test-only: not in lyra2._core. */
#include "python/py_weight_source.h"

#include <string.h>

#include "models/vit.h"
#include "testops.h"

static int ignore_outside(const void *ctx, const char *name) {
    const lyra_vit *v = ctx;
    return strncmp(name, v->prefix, strlen(v->prefix)) != 0 || lyra_vit_unused_tensor(v, name);
}

/* vit_taps(weights, prefix, heads, norm_eps, taps, pixels (S,3,h,w) f32, rope_start, alt_start)
 *   -> (list of (S, G, C) normed taps, cls (n, S, C)) */
static PyObject *py_vit_taps(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights, *taps_obj, *px_obj;
    const char *prefix;
    long long heads;
    double norm_eps;
    int rope_start = -1, alt_start = -1;
    if (!PyArg_ParseTuple(args, "OsLdOO|ii:vit_taps", &weights, &prefix, &heads, &norm_eps, &taps_obj, &px_obj,
                          &rope_start, &alt_start))
        return NULL;
    PyObject *seq = PySequence_Fast(taps_obj, "taps must be a sequence of ints");
    if (!seq) return NULL;
    int n = (int)PySequence_Fast_GET_SIZE(seq), idx[64];
    if (n < 1 || n > 64) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "taps: 1 to 64 block indices");
        return NULL;
    }
    for (int i = 0; i < n; i++) idx[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    if (PyErr_Occurred()) return NULL;
    PyArrayObject *px = lyra_py_array(px_obj, NPY_FLOAT32, 4, "pixels");
    if (!px) return NULL;
    lyra_py_wsource ws;
    if (lyra_py_wsource_open(&ws, weights, "weights", 1, "model.") < 0) {
        Py_DECREF(px);
        return NULL;
    }
    lyra_vit v;
    lyra_vit_wlist wl = {0};
    lyra_backend be = {0};
    lyra_arena ar = {0};
    void *mem = NULL;
    lyra_vit_options o = lyra_vit_default_options(heads);
    o.norm_eps = (float)norm_eps;
    o.rope_start = rope_start;
    o.alt_start = alt_start;
    PyObject *list = NULL, *result = NULL;
    PyArrayObject *cls = NULL;
    lyra_status s = lyra_vit_detect(&v, &ws.src, prefix, &o, "ViT");
    if (s == LYRA_OK) s = lyra_vit_add_weights(&v, &wl);
    if (s == LYRA_OK) s = lyra_vit_wlist_load(&wl, &ws.src, ignore_outside, &v, "ViT", &mem);
    int64_t S = PyArray_DIMS(px)[0], h = PyArray_DIMS(px)[2], w = PyArray_DIMS(px)[3];
    int64_t P = v.cfg.patch > 0 ? v.cfg.patch : 1, G = (h / P) * (w / P), C = v.cfg.dim;
    list = PyList_New(n);
    npy_intp cd[3] = {n, S, C};
    cls = (PyArrayObject *)PyArray_SimpleNew(3, cd, NPY_FLOAT32);
    lyra_tensor tt[64], *tp[64];
    for (int i = 0; list && cls && i < n; i++) {
        npy_intp d[3] = {S, G, C};
        PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(3, d, NPY_FLOAT32);
        if (!a) break;
        PyList_SET_ITEM(list, i, (PyObject *)a);
        tt[i] = lyra_tensor_3d(PyArray_DATA(a), LYRA_DTYPE_F32, S, G, C);
        tp[i] = &tt[i];
    }
    if (!list || !cls || PyErr_Occurred()) goto finally;
    lyra_tensor pix = lyra_tensor_4d(PyArray_DATA(px), LYRA_DTYPE_F32, S, 3, h, w);
    lyra_tensor ct = lyra_tensor_3d(PyArray_DATA(cls), LYRA_DTYPE_F32, n, S, C);
    Py_BEGIN_ALLOW_THREADS
    if (s == LYRA_OK) s = lyra_backend_cpu_init(&be, 0);
    if (s == LYRA_OK) s = lyra_arena_init(&ar, lyra_vit_arena_bytes(&v.cfg, S, h / P, w / P));
    if (s == LYRA_OK) s = lyra_vit_taps(&v, &be, &ar, &pix, n, idx, tp, &ct);
    Py_END_ALLOW_THREADS
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    result = Py_BuildValue("OO", list, cls);
finally:
    Py_XDECREF(list);
    Py_XDECREF(cls);
    Py_DECREF(px);
    lyra_arena_free(&ar);
    lyra_backend_free(&be);
    free(mem);
    lyra_vit_wlist_free(&wl);
    lyra_vit_free(&v);
    lyra_py_wsource_free(&ws);
    return result;
}

static PyMethodDef vit_methods[] = {
    {"vit_taps", py_vit_taps, METH_VARARGS,
     "vit_taps(weights, prefix, heads, norm_eps, taps, pixels, rope_start=-1, alt_start=-1) -> (taps, cls)"},
    {NULL, NULL, 0, NULL},
};

int lyra_testops_add_vit(PyObject *m) { return PyModule_AddFunctions(m, vit_methods); }
