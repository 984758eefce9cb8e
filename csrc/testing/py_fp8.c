/* fp8_e4m3(array float32) -> (codes uint8, rounded float32): the C e4m3 conversion (core/fp8.h) on NumPy arrays,
 * for the test that checks it against a reference table. */
#include "python/py_common.h"

#include "core/fp8.h"
#include "testops.h"

static PyObject *py_fp8_e4m3(PyObject *self, PyObject *arg) {
    (void)self;
    PyArrayObject *x = (PyArrayObject *)PyArray_FROMANY(arg, NPY_FLOAT32, 0, 0, NPY_ARRAY_CARRAY_RO);
    if (!x) return NULL;
    PyArrayObject *codes = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x), NPY_UINT8);
    PyArrayObject *vals = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x), NPY_FLOAT32);
    if (!codes || !vals) {
        Py_DECREF(x);
        Py_XDECREF(codes);
        Py_XDECREF(vals);
        return NULL;
    }
    const float *src = PyArray_DATA(x);
    uint8_t *c = PyArray_DATA(codes);
    float *v = PyArray_DATA(vals);
    for (npy_intp i = 0, n = PyArray_SIZE(x); i < n; i++) {
        c[i] = lyra_f32_to_e4m3(src[i]);
        v[i] = lyra_e4m3_to_f32(c[i]);
    }
    Py_DECREF(x);
    return Py_BuildValue("(NN)", codes, vals);
}

static PyMethodDef fp8_methods[] = {
    {"fp8_e4m3", py_fp8_e4m3, METH_O, "fp8_e4m3(float32 array) -> (e4m3 codes, their float32 values)"},
    {NULL, NULL, 0, NULL},
};

int lyra_testops_add_fp8(PyObject *m) { return PyModule_AddFunctions(m, fp8_methods); }
