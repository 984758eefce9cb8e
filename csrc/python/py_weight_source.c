/* A `weights` argument (safetensors path or mapping name -> array) as named tensor descriptors (see
 * py_weight_source.h). */
#include "py_weight_source.h"

#include <string.h>

const lyra_tensor *lyra_py_wsource_lookup(void *ctx, const char *name) {
    const lyra_py_wsource *ws = ctx;
    for (Py_ssize_t i = 0; i < ws->n; i++)
        if (!strcmp(ws->names[i], name)) return &ws->tensors[i];
    return NULL;
}

void lyra_py_wsource_free(lyra_py_wsource *ws) {
    PyMem_Free(ws->tensors);
    PyMem_Free((void *)ws->names);
    Py_XDECREF(ws->items);
    if (ws->file) lyra_st_close(ws->file);
    memset(ws, 0, sizeof *ws);
}

/* Storage dtypes the runtime can describe; anything else (F64, F8, ...) is "not representable". */
static lyra_dtype dtype_of_st(lyra_st_dtype d) {
    switch (d) {
    case LYRA_ST_F32: return LYRA_DTYPE_F32;
    case LYRA_ST_BF16: return LYRA_DTYPE_BF16;
    case LYRA_ST_F16: return LYRA_DTYPE_F16;
    case LYRA_ST_I32: return LYRA_DTYPE_I32;
    case LYRA_ST_I64: return LYRA_DTYPE_I64;
    case LYRA_ST_U8: return LYRA_DTYPE_U8;
    default: return LYRA_DTYPE_COUNT;
    }
}

static lyra_dtype dtype_of_npy(int t) {
    switch (t) {
    case NPY_FLOAT32: return LYRA_DTYPE_F32;
    case NPY_FLOAT16: return LYRA_DTYPE_F16;
    case NPY_INT32: return LYRA_DTYPE_I32;
    case NPY_INT64: return LYRA_DTYPE_I64;
    case NPY_UINT8: return LYRA_DTYPE_U8;
    default: return LYRA_DTYPE_COUNT;
    }
}

/* Entry i: a contiguous descriptor over data of shape[0..ndim-1]. A dtype the runtime cannot describe
 * (LYRA_DTYPE_COUNT) keeps the shape (so messages can print it); more than LYRA_MAX_DIMS dims keeps neither. */
static void set_entry(lyra_py_wsource *ws, Py_ssize_t i, const char *name, const char *strip_prefix, void *data,
                      lyra_dtype dt, int ndim, const int64_t *shape) {
    size_t np = strip_prefix ? strlen(strip_prefix) : 0;
    if (np && !strncmp(name, strip_prefix, np)) name += np;
    lyra_tensor t;
    if (ndim > LYRA_MAX_DIMS) {
        t = lyra_tensor_make(data, LYRA_DTYPE_COUNT, 0, NULL);
    } else {
        t = lyra_tensor_make(data, dt == LYRA_DTYPE_COUNT ? LYRA_DTYPE_F32 : dt, ndim, shape);
        t.dtype = dt;
    }
    t.name = name;
    ws->names[i] = name;
    ws->tensors[i] = t;
}

static int alloc_table(lyra_py_wsource *ws, Py_ssize_t n) {
    ws->n = n;
    ws->tensors = PyMem_Calloc((size_t)(n ? n : 1), sizeof *ws->tensors);
    ws->names = PyMem_Calloc((size_t)(n ? n : 1), sizeof *ws->names);
    if (!ws->tensors || !ws->names) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int from_file(lyra_py_wsource *ws, PyObject *path_obj, const char *strip_prefix) {
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(path_obj, &bytes)) return -1;
    int rc = -1;
    lyra_status s;
    const char *path = PyBytes_AS_STRING(bytes);
    Py_BEGIN_ALLOW_THREADS /* a large checkpoint: open + header parse + mmap */
    s = lyra_st_open(path, &ws->file);
    Py_END_ALLOW_THREADS
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    if (alloc_table(ws, (Py_ssize_t)ws->file->n_tensors) < 0) goto finally;
    for (Py_ssize_t i = 0; i < ws->n; i++) {
        const lyra_st_tensor *t = &ws->file->tensors[i];
        set_entry(ws, i, t->name, strip_prefix, (void *)t->data, dtype_of_st(t->dtype), t->ndim, t->shape);
    }
    rc = 0;
finally:
    Py_DECREF(bytes);
    return rc;
}

static int from_mapping(lyra_py_wsource *ws, PyObject *mapping, const char *what, int narrow_f64,
                        const char *strip_prefix) {
    ws->items = lyra_py_named_arrays(mapping, narrow_f64, what); /* owned by ws: names and data point into it */
    if (!ws->items || alloc_table(ws, PyList_GET_SIZE(ws->items)) < 0) return -1;
    for (Py_ssize_t i = 0; i < ws->n; i++) {
        PyObject *pair = PyList_GET_ITEM(ws->items, i); /* (str, C-contiguous ndarray), see lyra_py_named_arrays */
        PyArrayObject *arr = (PyArrayObject *)PyTuple_GET_ITEM(pair, 1);
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 0));
        if (!name) return -1;
        int64_t shape[NPY_MAXDIMS];
        int nd = PyArray_NDIM(arr);
        for (int d = 0; d < nd; d++) shape[d] = PyArray_DIMS(arr)[d];
        set_entry(ws, i, name, strip_prefix, PyArray_DATA(arr), dtype_of_npy(PyArray_TYPE(arr)), nd, shape);
    }
    return 0;
}

/* spec = (seed, [(name, shape, dtype)]) of a random-weights object (see py_weight_source.h). */
static int from_random(lyra_py_wsource *ws, PyObject *spec, const char *what) {
    unsigned long long seed;
    PyObject *entries;
    if (!PyArg_ParseTuple(spec, "KO!;random weights: expected (seed, [(name, shape, dtype)])", &seed, &PyList_Type,
                          &entries))
        return -1;
    ws->random = 1;
    ws->seed = (uint64_t)seed;
    Py_INCREF(entries);
    ws->items = entries; /* the names point into its strings */
    if (alloc_table(ws, PyList_GET_SIZE(entries)) < 0) return -1;
    for (Py_ssize_t i = 0; i < ws->n; i++) {
        PyObject *name_o, *shape_o;
        const char *dt;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(entries, i), "UOs;random weights: each entry must be (name, shape, "
                              "dtype)", &name_o, &shape_o, &dt))
            return -1;
        const char *name = PyUnicode_AsUTF8(name_o);
        if (!name) return -1;
        lyra_dtype d = !strcmp(dt, "f32") ? LYRA_DTYPE_F32 : !strcmp(dt, "bf16") ? LYRA_DTYPE_BF16
                       : !strcmp(dt, "f16") ? LYRA_DTYPE_F16 : LYRA_DTYPE_COUNT;
        if (d == LYRA_DTYPE_COUNT) {
            PyErr_Format(PyExc_ValueError, "%s: tensor '%s' has dtype '%s'; expected 'f32', 'bf16' or 'f16'", what,
                         name, dt);
            return -1;
        }
        PyObject *seq = PySequence_Fast(shape_o, "random weights: a shape must be a sequence of ints");
        if (!seq) return -1;
        Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
        int64_t shape[LYRA_MAX_DIMS];
        int bad = nd > LYRA_MAX_DIMS;
        for (Py_ssize_t k = 0; !bad && k < nd; k++) {
            long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, k));
            if (v == -1 && PyErr_Occurred()) bad = 2;
            else if (v < 0) bad = 1;
            else shape[k] = v;
        }
        Py_DECREF(seq);
        if (bad) {
            if (bad == 1)
                PyErr_Format(PyExc_ValueError, "%s: tensor '%s' has a negative size or more than %d dims", what, name,
                             LYRA_MAX_DIMS);
            return -1;
        }
        set_entry(ws, i, name, NULL, NULL, d, (int)nd, shape);
    }
    return 0;
}

static int open_source(lyra_py_wsource *ws, PyObject *weights, const char *what, int narrow_f64,
                       const char *strip_prefix, int allow_random) {
    memset(ws, 0, sizeof *ws);
    PyObject *spec = PyObject_GetAttrString(weights, "_lyra2_random_weights");
    if (!spec) PyErr_Clear();
    if (spec && !allow_random) {
        Py_DECREF(spec);
        PyErr_Format(PyExc_TypeError, "%s: random weights (lyra2.testing.random_weights) are not supported by this "
                     "network; pass a safetensors path or a mapping of arrays (RandomWeights.arrays())", what);
        return -1;
    }
    int kind = spec ? -1 : lyra_py_weights_kind(weights, what);
    int rc = spec                              ? from_random(ws, spec, what)
             : kind == LYRA_PY_WEIGHTS_PATH    ? from_file(ws, weights, strip_prefix)
             : kind == LYRA_PY_WEIGHTS_MAPPING ? from_mapping(ws, weights, what, narrow_f64, strip_prefix)
                                               : -1;
    Py_XDECREF(spec);
    if (rc < 0) {
        lyra_py_wsource_free(ws);
        return -1;
    }
    ws->src.lookup = lyra_py_wsource_lookup;
    ws->src.ctx = ws;
    ws->src.n_names = ws->n;
    ws->src.names = ws->names;
    return 0;
}

int lyra_py_wsource_open(lyra_py_wsource *ws, PyObject *weights, const char *what, int narrow_f64,
                         const char *strip_prefix) {
    return open_source(ws, weights, what, narrow_f64, strip_prefix, 0);
}

int lyra_py_wsource_open_random(lyra_py_wsource *ws, PyObject *weights, const char *what, int narrow_f64,
                                const char *strip_prefix) {
    return open_source(ws, weights, what, narrow_f64, strip_prefix, 1);
}
