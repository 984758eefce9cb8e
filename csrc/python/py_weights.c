/* Python glue for the weights area: safetensors reading (lyra2.io) and the restricted unpickler
 * (lyra2.convert). Private functions of lyra2._core; the public API lives in lyra2/io.py and
 * lyra2/convert.py. */
#include "py_common.h"

#include <string.h>

#include "io/safetensors.h"
#include "io/unpickle.h"
#include "nn/ops.h"

/* NumPy type a safetensors dtype loads as; BF16 widens to float32 (NumPy has no bfloat16). -1: none. */
static int npy_type_of(lyra_st_dtype d) {
    switch (d) {
    case LYRA_ST_BOOL: return NPY_BOOL;
    case LYRA_ST_U8: return NPY_UINT8;
    case LYRA_ST_I8: return NPY_INT8;
    case LYRA_ST_I16: return NPY_INT16;
    case LYRA_ST_U16: return NPY_UINT16;
    case LYRA_ST_F16: return NPY_FLOAT16;
    case LYRA_ST_BF16: return NPY_FLOAT32;
    case LYRA_ST_I32: return NPY_INT32;
    case LYRA_ST_U32: return NPY_UINT32;
    case LYRA_ST_F32: return NPY_FLOAT32;
    case LYRA_ST_F64: return NPY_FLOAT64;
    case LYRA_ST_I64: return NPY_INT64;
    case LYRA_ST_U64: return NPY_UINT64;
    default: return -1;
    }
}

static lyra_status open_file(PyObject *path_obj, lyra_st_file **out) {
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(path_obj, &bytes)) return LYRA_ERR_TYPE;
    const char *path = PyBytes_AS_STRING(bytes);
    lyra_status s;
    Py_BEGIN_ALLOW_THREADS
    s = lyra_st_open(path, out);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    return s;
}

static PyObject *shape_tuple(const int64_t *shape, int ndim) {
    PyObject *t = PyTuple_New(ndim);
    if (!t) return NULL;
    for (int d = 0; d < ndim; d++) {
        PyObject *v = PyLong_FromLongLong(shape[d]);
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, d, v);
    }
    return t;
}

static PyObject *metadata_dict(const lyra_st_file *f) {
    PyObject *meta = PyDict_New();
    if (!meta) return NULL;
    for (size_t i = 0; i < f->n_meta; i++) {
        PyObject *v = PyUnicode_FromString(f->meta_values[i]);
        if (!v || PyDict_SetItemString(meta, f->meta_keys[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(meta);
            return NULL;
        }
        Py_DECREF(v);
    }
    return meta;
}

/* st_info(path) -> ([(name, dtype, shape, file_offset, nbytes), ...] in header order, metadata) */
static PyObject *py_st_info(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *list = NULL, *meta = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "O:st_info", &path_obj)) return NULL;
    lyra_st_file *f = NULL;
    lyra_status s = open_file(path_obj, &f);
    if (s == LYRA_ERR_TYPE && PyErr_Occurred()) return NULL;
    if (s != LYRA_OK) return lyra_py_raise(s);
    list = PyList_New((Py_ssize_t)f->n_tensors);
    if (!list) goto finally;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lyra_st_tensor *t = &f->tensors[i];
        PyObject *shape = shape_tuple(t->shape, t->ndim);
        if (!shape) goto finally;
        PyObject *item = Py_BuildValue("(ssNnn)", t->name, lyra_st_dtype_name(t->dtype), shape,
                                       (Py_ssize_t)t->offset, (Py_ssize_t)t->nbytes);
        if (!item) goto finally;
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    meta = metadata_dict(f);
    if (!meta) goto finally;
    result = PyTuple_Pack(2, list, meta);
finally:
    Py_XDECREF(list);
    Py_XDECREF(meta);
    lyra_st_close(f);
    return result;
}

/* st_load(path, names=None) -> ({name: ndarray}, metadata). BF16 -> float32, F16 -> float16,
 * others their NumPy type; FP8 raises. All arrays are allocated first, then filled without the GIL. */
static PyObject *py_st_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *names = Py_None, *dict = NULL, *meta = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "O|O:st_load", &path_obj, &names)) return NULL;
    if (names != Py_None && !PySequence_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "names must be a sequence of tensor names or None");
        return NULL;
    }
    lyra_st_file *f = NULL;
    lyra_status s = open_file(path_obj, &f);
    if (s == LYRA_ERR_TYPE && PyErr_Occurred()) return NULL;
    if (s != LYRA_OK) return lyra_py_raise(s);
    Py_ssize_t count = names == Py_None ? (Py_ssize_t)f->n_tensors : PySequence_Size(names);
    const lyra_st_tensor **todo = NULL;
    PyArrayObject **arrays = NULL;
    size_t n = 0;
    if (count < 0) goto finally;
    todo = calloc((size_t)count + 1, sizeof *todo);
    arrays = calloc((size_t)count + 1, sizeof *arrays);
    if (!todo || !arrays) {
        PyErr_NoMemory();
        goto finally;
    }
    if (names == Py_None) {
        for (size_t i = 0; i < f->n_tensors; i++) todo[n++] = &f->tensors[i];
    } else {
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *item = PySequence_GetItem(names, i);
            if (!item) goto finally;
            const char *name = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
            if (!name) {
                Py_DECREF(item);
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "names must be strings");
                goto finally;
            }
            const lyra_st_tensor *t = lyra_st_find(f, name);
            if (!t) {
                PyErr_Format(PyExc_KeyError, "%s: no tensor named '%s'", f->path, name);
                Py_DECREF(item);
                goto finally;
            }
            Py_DECREF(item);
            todo[n++] = t;
        }
    }
    dict = PyDict_New();
    if (!dict) goto finally;
    for (size_t i = 0; i < n; i++) {
        const lyra_st_tensor *t = todo[i];
        int type = npy_type_of(t->dtype);
        if (type < 0) {
            lyra_error(LYRA_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which lyra2 cannot load into NumPy",
                       f->path, t->name, lyra_st_dtype_name(t->dtype));
            lyra_py_raise(LYRA_ERR_UNSUPPORTED);
            goto finally;
        }
        npy_intp dims[LYRA_ST_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) dims[d] = (npy_intp)t->shape[d];
        arrays[i] = (PyArrayObject *)PyArray_SimpleNew(t->ndim, dims, type);
        if (!arrays[i] || PyDict_SetItemString(dict, t->name, (PyObject *)arrays[i]) < 0) goto finally;
    }
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; i < n; i++) {
        const lyra_st_tensor *t = todo[i];
        void *dst = PyArray_DATA(arrays[i]);
        if (t->dtype == LYRA_ST_BF16) lyra_st_bf16_to_f32(t->data, dst, t->numel);
        else memcpy(dst, t->data, t->nbytes);
    }
    Py_END_ALLOW_THREADS
    meta = metadata_dict(f);
    if (!meta) goto finally;
    result = PyTuple_Pack(2, dict, meta);
finally:
    if (arrays)
        for (size_t i = 0; i < n; i++) Py_XDECREF(arrays[i]);
    free(arrays);
    free(todo);
    Py_XDECREF(dict);
    Py_XDECREF(meta);
    lyra_st_close(f);
    return result;
}

/* f32_to_bf16(float32 array) -> uint16 array of bf16 bits (round to nearest even), same shape. */
static PyObject *py_f32_to_bf16(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O:f32_to_bf16", &obj)) return NULL;
    PyArrayObject *src = lyra_py_array(obj, NPY_FLOAT32, -1, "array");
    if (!src) return NULL;
    PyArrayObject *dst = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(src), PyArray_DIMS(src), NPY_UINT16);
    if (dst) {
        size_t n = (size_t)PyArray_SIZE(src);
        const float *s = PyArray_DATA(src);
        uint16_t *d = PyArray_DATA(dst);
        Py_BEGIN_ALLOW_THREADS
        lyra_st_f32_to_bf16(s, d, n);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(src);
    return (PyObject *)dst;
}

/* bf16_to_f32(uint16 array of bf16 bits) -> float32 array, same shape (exact). */
static PyObject *py_bf16_to_f32(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O:bf16_to_f32", &obj)) return NULL;
    PyArrayObject *src = lyra_py_array(obj, NPY_UINT16, -1, "array");
    if (!src) return NULL;
    PyArrayObject *dst = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(src), PyArray_DIMS(src), NPY_FLOAT32);
    if (dst) {
        size_t n = (size_t)PyArray_SIZE(src);
        const uint16_t *s = PyArray_DATA(src);
        float *d = PyArray_DATA(dst);
        Py_BEGIN_ALLOW_THREADS
        lyra_st_bf16_to_f32(s, d, n);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(src);
    return (PyObject *)dst;
}

/* ---- unpickle ----------------------------------------------------------------------------------- */

typedef struct convert_ctx {
    PyObject *tensor_factory, *object_factory;
    PyObject *memo; /* id(node) -> converted object, so shared nodes stay shared and DAGs stay linear */
    const char *what;
} convert_ctx;

#define MAX_DEPTH 100

static PyObject *fail_format(convert_ctx *c, const char *problem) {
    lyra_error(LYRA_ERR_FORMAT, "%s: pickle: %s", c->what, problem);
    return lyra_py_raise(LYRA_ERR_FORMAT);
}

static PyObject *to_py(convert_ctx *c, lyra_pk_value *v, int depth);

static PyObject *seq_to_py(convert_ctx *c, lyra_pk_value *v, size_t n, int depth, int tuple) {
    PyObject *o = tuple ? PyTuple_New((Py_ssize_t)n) : PyList_New((Py_ssize_t)n);
    if (!o) return NULL;
    for (size_t k = 0; k < n; k++) {
        PyObject *item = to_py(c, v->items[k], depth + 1);
        if (!item) {
            Py_DECREF(o);
            return NULL;
        }
        if (tuple) PyTuple_SET_ITEM(o, (Py_ssize_t)k, item);
        else PyList_SET_ITEM(o, (Py_ssize_t)k, item);
    }
    return o;
}

static PyObject *convert_node(convert_ctx *c, lyra_pk_value *v, int depth) {
    char q[300];
    switch (v->kind) {
    case LYRA_PK_NONE: Py_RETURN_NONE;
    case LYRA_PK_BOOL: return PyBool_FromLong((long)v->i);
    case LYRA_PK_INT: return PyLong_FromLongLong(v->i);
    case LYRA_PK_FLOAT: return PyFloat_FromDouble(v->f);
    case LYRA_PK_STR: {
        PyObject *o = PyUnicode_DecodeUTF8(v->str, (Py_ssize_t)v->len, "surrogatepass");
        if (!o) {
            PyErr_Clear();
            return fail_format(c, "a string is not valid UTF-8");
        }
        return o;
    }
    case LYRA_PK_BYTES: return PyBytes_FromStringAndSize(v->str, (Py_ssize_t)v->len);
    case LYRA_PK_TUPLE: return seq_to_py(c, v, v->n, depth, 1);
    case LYRA_PK_LIST: return seq_to_py(c, v, v->n, depth, 0);
    case LYRA_PK_DICT: {
        PyObject *d = PyDict_New();
        if (!d) return NULL;
        for (size_t k = 0; k + 1 < v->n; k += 2) {
            PyObject *key = to_py(c, v->items[k], depth + 1);
            PyObject *val = key ? to_py(c, v->items[k + 1], depth + 1) : NULL;
            int rc = val ? PyDict_SetItem(d, key, val) : -1;
            Py_XDECREF(key);
            Py_XDECREF(val);
            if (rc < 0) {
                Py_DECREF(d);
                if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                    PyErr_Clear();
                    return fail_format(c, "a dict key is not hashable");
                }
                return NULL;
            }
        }
        return d;
    }
    case LYRA_PK_GLOBAL:
        if (v->global->role == LYRA_PK_ROLE_DTYPE && v->dtype >= 0)
            return PyUnicode_FromString(lyra_st_dtype_name((lyra_st_dtype)v->dtype));
        lyra_pk_global_qualname(v->global, q, sizeof q);
        return PyUnicode_FromString(q);
    case LYRA_PK_STORAGE:
        return Py_BuildValue("(ss#sL)", "storage", v->str, (Py_ssize_t)v->len,
                             v->dtype >= 0 ? lyra_st_dtype_name((lyra_st_dtype)v->dtype) : "?", (long long)v->i);
    case LYRA_PK_TENSOR: {
        PyObject *key = PyUnicode_DecodeUTF8(v->storage->str, (Py_ssize_t)v->storage->len, "strict");
        if (!key) {
            PyErr_Clear();
            return fail_format(c, "a storage key is not valid UTF-8");
        }
        PyObject *shape = shape_tuple(v->shape, v->ndim), *stride = shape_tuple(v->stride, v->ndim);
        PyObject *r = NULL;
        if (shape && stride)
            r = PyObject_CallFunction(c->tensor_factory, "OsLOOL", key,
                                      lyra_st_dtype_name((lyra_st_dtype)v->dtype), (long long)v->offset, shape,
                                      stride, (long long)v->storage->i);
        Py_DECREF(key);
        Py_XDECREF(shape);
        Py_XDECREF(stride);
        return r;
    }
    case LYRA_PK_OBJECT: {
        lyra_pk_global_qualname(v->global, q, sizeof q);
        PyObject *a = v->args ? to_py(c, v->args, depth + 1) : (Py_INCREF(Py_None), Py_None);
        if (!a) return NULL;
        PyObject *st = v->state ? to_py(c, v->state, depth + 1) : (Py_INCREF(Py_None), Py_None);
        if (!st) {
            Py_DECREF(a);
            return NULL;
        }
        PyObject *r = PyObject_CallFunction(c->object_factory, "sOO", q, a, st);
        Py_DECREF(a);
        Py_DECREF(st);
        return r;
    }
    }
    return fail_format(c, "unknown node");
}

static PyObject *to_py(convert_ctx *c, lyra_pk_value *v, int depth) {
    if (depth > MAX_DEPTH) return fail_format(c, "objects nested deeper than 100 levels");
    int shared = v->kind >= LYRA_PK_TUPLE;
    PyObject *id = NULL;
    if (shared) {
        if (v->mark == 1) return fail_format(c, "a container contains itself (recursive structures are refused)");
        id = PyLong_FromVoidPtr(v);
        if (!id) return NULL;
        if (v->mark == 2) {
            PyObject *o = PyDict_GetItemWithError(c->memo, id);
            Py_DECREF(id);
            if (!o) return PyErr_Occurred() ? NULL : fail_format(c, "internal memo miss");
            Py_INCREF(o);
            return o;
        }
        v->mark = 1;
    }
    PyObject *o = convert_node(c, v, depth);
    if (shared) {
        v->mark = 2;
        if (o && PyDict_SetItem(c->memo, id, o) < 0) Py_CLEAR(o);
        Py_DECREF(id);
    }
    return o;
}

/* unpickle(data, tensor_factory, object_factory, what="pickle") -> object.
 * tensor_factory(key, dtype, storage_offset, shape, stride, storage_numel) builds each tensor record;
 * object_factory(qualname, args, state) each allowed checkpoint-metadata object. */
static PyObject *py_unpickle(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    PyObject *tf, *of, *result = NULL;
    const char *what = "pickle";
    if (!PyArg_ParseTuple(args, "y*OO|s:unpickle", &buf, &tf, &of, &what)) return NULL;
    if (!PyCallable_Check(tf) || !PyCallable_Check(of)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "tensor_factory and object_factory must be callable");
        return NULL;
    }
    lyra_pk_result res;
    lyra_status s;
    Py_BEGIN_ALLOW_THREADS
    s = lyra_pk_load(buf.buf, (size_t)buf.len, what, &res);
    Py_END_ALLOW_THREADS
    if (s != LYRA_OK) {
        lyra_py_raise(s);
    } else {
        convert_ctx c = {tf, of, PyDict_New(), what};
        if (c.memo) {
            result = to_py(&c, res.root, 0);
            Py_DECREF(c.memo);
        }
    }
    lyra_pk_free(&res);
    PyBuffer_Release(&buf);
    return result;
}

/* random_weight_values(shape, name, seed=0, bf16_values=False) -> float32 array: the random weight tensor `name`
 * of that shape (nn/ops.h lyra_random_fill_rule and lyra_op_fill_random on the CPU backend), as
 * lyra2.testing.random_weights fills it where the network lives. */
static PyObject *py_random_weight_values(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *shape_o;
    const char *name;
    unsigned long long seed = 0;
    int b16 = 0;
    if (!PyArg_ParseTuple(args, "Os|Kp:random_weight_values", &shape_o, &name, &seed, &b16)) return NULL;
    PyObject *seq = PySequence_Fast(shape_o, "random_weight_values: shape must be a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    npy_intp dims[LYRA_MAX_DIMS];
    int64_t ne[LYRA_MAX_DIMS];
    int bad = nd > LYRA_MAX_DIMS;
    for (Py_ssize_t i = 0; !bad && i < nd; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) bad = 2;
        else if (v < 0) bad = 1;
        dims[i] = (npy_intp)v;
        ne[i] = v;
    }
    Py_DECREF(seq);
    if (bad == 1)
        return PyErr_Format(PyExc_ValueError, "random_weight_values: shape has a negative size or more than %d "
                            "dims", LYRA_MAX_DIMS);
    if (bad) return NULL;
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew((int)nd, dims, NPY_FLOAT32);
    if (!a) return NULL;
    lyra_random_fill r;
    lyra_random_fill_rule(&r, (uint64_t)seed, name, (int)nd, ne, b16);
    lyra_tensor y = lyra_tensor_make(PyArray_DATA(a), LYRA_DTYPE_F32, (int)nd, ne);
    lyra_backend be;
    lyra_status st = lyra_backend_cpu_init(&be, 0);
    if (st == LYRA_OK) {
        Py_BEGIN_ALLOW_THREADS
        st = lyra_op_fill_random(&be, &y, &r);
        Py_END_ALLOW_THREADS
        lyra_backend_free(&be);
    }
    if (st != LYRA_OK) {
        Py_DECREF(a);
        return lyra_py_raise(st);
    }
    return (PyObject *)a;
}

static PyMethodDef weights_methods[] = {
    {"random_weight_values", py_random_weight_values, METH_VARARGS,
     "random_weight_values(shape, name, seed=0, bf16_values=False) -> float32 array: random weights "
     "(lyra2.testing.random_weights)."},
    {"st_info", py_st_info, METH_VARARGS, "st_info(path) -> (tensors, metadata): validated safetensors header."},
    {"st_load", py_st_load, METH_VARARGS, "st_load(path, names=None) -> (dict of arrays, metadata)."},
    {"f32_to_bf16", py_f32_to_bf16, METH_VARARGS, "Float32 array -> uint16 bf16 bits (round to nearest even)."},
    {"bf16_to_f32", py_bf16_to_f32, METH_VARARGS, "Uint16 bf16 bits -> float32 array (exact)."},
    {"unpickle", py_unpickle, METH_VARARGS,
     "unpickle(data, tensor_factory, object_factory, what='pickle'): restricted, torch-free pickle reader."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_weights(PyObject *m) { return PyModule_AddFunctions(m, weights_methods); }
