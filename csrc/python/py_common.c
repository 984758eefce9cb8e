/* Shared helpers of the CPython glue. */
#include "py_common.h"

PyObject *lyra_py_raise(lyra_status status) {
    const char *msg = lyra_error_message();
    if (!msg || !msg[0]) msg = lyra_status_name(status);
    switch (status) {
    case LYRA_OK: PyErr_SetString(PyExc_SystemError, "lyra_py_raise called with LYRA_OK"); break;
    case LYRA_ERR_ARG: PyErr_SetString(PyExc_ValueError, msg); break;
    case LYRA_ERR_TYPE: PyErr_SetString(PyExc_TypeError, msg); break;
    case LYRA_ERR_INTERRUPTED: PyErr_SetString(PyExc_KeyboardInterrupt, msg); break;
    default: PyErr_SetString(lyra_py_error, msg); break;
    }
    lyra_error_clear();
    return NULL;
}

PyArrayObject *lyra_py_array(PyObject *obj, int type, int ndim, const char *what) {
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(obj, type, 0, 0, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!arr) {
        PyErr_Format(PyExc_TypeError, "%s: expected an array convertible to %s", what,
                     type == NPY_FLOAT32 ? "float32" : type == NPY_UINT8 ? "uint8" : "the required dtype");
        return NULL;
    }
    if (ndim >= 0 && PyArray_NDIM(arr) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d dimensions, got %d", what, ndim, PyArray_NDIM(arr));
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}
