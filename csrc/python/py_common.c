/* Shared helpers of the CPython glue. */
#include "py_common.h"

#include <string.h>

PyObject *lyra_py_error = NULL;

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
        PyErr_Clear(); /* replaced by a message naming the argument and the dtype */
        PyArray_Descr *descr = PyArray_DescrFromType(type);
        PyObject *name = descr ? PyObject_Str((PyObject *)descr) : NULL; /* "float32", "int64", ... */
        Py_XDECREF(descr);
        const char *dt = name ? PyUnicode_AsUTF8(name) : NULL;
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected an array convertible to %s", what, dt ? dt : "a numeric dtype");
        Py_XDECREF(name);
        return NULL;
    }
    if (ndim >= 0 && PyArray_NDIM(arr) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d dimensions, got %d", what, ndim, PyArray_NDIM(arr));
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* isinstance(obj, collections.abc.Mapping), the ABC imported once. */
static int is_abc_mapping(PyObject *obj) {
    static PyObject *abc_mapping;
    if (!abc_mapping) {
        PyObject *mod = PyImport_ImportModule("collections.abc");
        if (!mod) return -1;
        abc_mapping = PyObject_GetAttrString(mod, "Mapping");
        Py_DECREF(mod);
        if (!abc_mapping) return -1;
    }
    return PyObject_IsInstance(obj, abc_mapping);
}

lyra_tensor lyra_py_host_tensor(PyArrayObject *a, lyra_dtype dt) {
    int64_t shape[LYRA_MAX_DIMS];
    for (int d = 0; d < PyArray_NDIM(a); d++) shape[d] = PyArray_DIMS(a)[d];
    return lyra_tensor_make(PyArray_DATA(a), dt, PyArray_NDIM(a), shape);
}

int lyra_py_weights_kind(PyObject *obj, const char *what) {
    if (PyUnicode_Check(obj) || PyBytes_Check(obj)) return LYRA_PY_WEIGHTS_PATH;
    if (PyDict_Check(obj)) return LYRA_PY_WEIGHTS_MAPPING;
    PyObject *fspath = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__fspath__");
    if (fspath) {
        Py_DECREF(fspath);
        return LYRA_PY_WEIGHTS_PATH;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
    PyErr_Clear();
    int m = is_abc_mapping(obj);
    if (m < 0) return -1;
    if (m) return LYRA_PY_WEIGHTS_MAPPING;
    PyErr_Format(PyExc_TypeError,
                 "%s must be a safetensors path or a mapping name -> array (a dict of str -> ndarray), got %s", what,
                 Py_TYPE(obj)->tp_name);
    return -1;
}

/* The (key, array) tuple of one entry, or NULL with an error naming `what` and the key. */
static PyObject *named_array(PyObject *mapping, PyObject *key, int narrow_f64, const char *what) {
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "%s: tensor names must be str, got %.100s %R", what, Py_TYPE(key)->tp_name,
                     key);
        return NULL;
    }
    Py_ssize_t len;
    const char *name = PyUnicode_AsUTF8AndSize(key, &len);
    if (!name) return NULL;
    if ((size_t)len != strlen(name)) {
        PyErr_Format(PyExc_ValueError, "%s: tensor name %R contains a NUL character", what, key);
        return NULL;
    }
    PyObject *val = PyObject_GetItem(mapping, key);
    if (!val) {
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s: tensor '%s' is listed by keys() but cannot be looked up (was the "
                         "mapping changed while it was read?)", what, name);
        }
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(val, NPY_NOTYPE, 0, 0,
                                                          NPY_ARRAY_IN_ARRAY | NPY_ARRAY_ENSUREARRAY);
    Py_DECREF(val);
    if (!arr) {
        /* Conversion failures become one TypeError naming the key; MemoryError, KeyboardInterrupt pass. */
        if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(PyExc_MemoryError)) return NULL;
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyErr_Format(PyExc_TypeError, "%s: tensor '%s' is not an array (%S)", what, name, value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    int t = PyArray_TYPE(arr);
    if (!PyArray_ISBOOL(arr) && !PyArray_ISINTEGER(arr) && !PyArray_ISFLOAT(arr)) {
        PyObject *dn = PyObject_Str((PyObject *)PyArray_DESCR(arr));
        PyErr_Format(PyExc_TypeError, "%s: tensor '%s' has dtype %S, expected a numeric (float/int/bool) array", what,
                     name, dn ? dn : Py_None);
        Py_XDECREF(dn);
        Py_DECREF(arr);
        return NULL;
    }
    if (narrow_f64 && t == NPY_FLOAT64) {
        PyArrayObject *f = (PyArrayObject *)PyArray_FROMANY((PyObject *)arr, NPY_FLOAT32, 0, 0,
                                                            NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
        Py_DECREF(arr);
        if (!f) return NULL;
        arr = f;
    }
    PyObject *pair = PyTuple_Pack(2, key, (PyObject *)arr);
    Py_DECREF(arr);
    return pair;
}

PyObject *lyra_py_named_arrays(PyObject *mapping, int narrow_f64, const char *what) {
    PyObject *keys = PyMapping_Keys(mapping); /* a new list: user code cannot resize what we iterate */
    if (!keys) return NULL;
    PyObject *out = NULL, *seen = PySet_New(NULL);
    if (!seen) goto finally;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *pair = named_array(mapping, PyList_GET_ITEM(keys, i), narrow_f64, what);
        int dup = pair ? PySet_Contains(seen, PyTuple_GET_ITEM(pair, 0)) : -1;
        if (dup == 1)
            PyErr_Format(PyExc_ValueError, "%s: tensor '%S' is listed twice", what, PyTuple_GET_ITEM(pair, 0));
        if (dup != 0 || PySet_Add(seen, PyTuple_GET_ITEM(pair, 0)) < 0) {
            Py_XDECREF(pair);
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, pair);
    }
finally:
    Py_XDECREF(seen);
    Py_DECREF(keys);
    return out;
}
