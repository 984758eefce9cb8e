/* Python glue for the tokenizer area (behind lyra2/models/tokenizer.py):
 *   _core.tokenizer_load(path, extra_ids, byte_fallback) -> capsule
 *   _core.tokenizer_info(capsule) -> dict (vocab_size, n_pieces, unk_id, eos_id, pad_id, byte_fallback,
 *                                          model_byte_fallback, normalizer)
 *   _core.tokenizer_piece(capsule, id) -> str
 *   _core.tokenizer_tokenize(capsule, text) -> list[int]          (no EOS, no truncation)
 *   _core.tokenizer_encode(capsule, texts, seq_len) -> (ids, mask)  int64 (B, seq_len) each
 *   _core.text_clean(text) -> str
 * The capsule owns a lyra_tokenizer (immutable, so encoding runs with the GIL released). */
#include "py_common.h"

#include <stdlib.h>

#include "models/text_clean.h"
#include "models/tokenizer.h"

static const char CAPSULE_NAME[] = "lyra2.tokenizer";

static void capsule_free(PyObject *cap) {
    lyra_tokenizer *t = PyCapsule_GetPointer(cap, CAPSULE_NAME);
    lyra_tokenizer_free(t);
}

static lyra_tokenizer *get_tokenizer(PyObject *cap) {
    if (!PyCapsule_IsValid(cap, CAPSULE_NAME)) {
        PyErr_SetString(PyExc_TypeError, "tokenizer: expected a capsule from _core.tokenizer_load");
        return NULL;
    }
    return PyCapsule_GetPointer(cap, CAPSULE_NAME);
}

static PyObject *py_tokenizer_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj;
    int extra_ids, byte_fallback;
    if (!PyArg_ParseTuple(args, "O&ip", PyUnicode_FSConverter, &path_obj, &extra_ids, &byte_fallback)) return NULL;
    lyra_tokenizer_options opt = {extra_ids, byte_fallback};
    lyra_tokenizer *t = NULL;
    lyra_status st;
    const char *path = PyBytes_AS_STRING(path_obj);
    Py_BEGIN_ALLOW_THREADS
    st = lyra_tokenizer_load(path, &opt, &t);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    if (st != LYRA_OK) return lyra_py_raise(st);
    PyObject *cap = PyCapsule_New(t, CAPSULE_NAME, capsule_free);
    if (!cap) lyra_tokenizer_free(t);
    return cap;
}

static PyObject *py_tokenizer_info(PyObject *self, PyObject *cap) {
    (void)self;
    lyra_tokenizer *t = get_tokenizer(cap);
    if (!t) return NULL;
    const lyra_tokenizer_info v = lyra_tokenizer_get_info(t);
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:O,s:O,s:s}", "vocab_size", (int)lyra_tokenizer_vocab_size(t),
                         "n_pieces", (int)v.n_pieces, "unk_id", (int)v.unk_id, "eos_id", (int)v.eos_id, "pad_id",
                         (int)v.pad_id, "byte_fallback", v.byte_fallback ? Py_True : Py_False,
                         "model_byte_fallback", v.model_byte_fallback ? Py_True : Py_False, "normalizer",
                         v.normalizer_name);
}

static PyObject *py_tokenizer_piece(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    long long id;
    if (!PyArg_ParseTuple(args, "OL", &cap, &id)) return NULL;
    lyra_tokenizer *t = get_tokenizer(cap);
    if (!t) return NULL;
    size_t len;
    const char *s = id >= INT32_MIN && id <= INT32_MAX ? lyra_tokenizer_piece(t, (int32_t)id, &len) : NULL;
    if (!s)
        return PyErr_Format(PyExc_ValueError, "id: %lld is outside the vocabulary 0..%d", id,
                            (int)lyra_tokenizer_vocab_size(t) - 1);
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
}

static const char *utf8_arg(PyObject *obj, Py_ssize_t *len, const char *what) {
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected str, got %.100s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(obj, len);
}

static PyObject *py_tokenizer_tokenize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *text_obj;
    if (!PyArg_ParseTuple(args, "OO", &cap, &text_obj)) return NULL;
    lyra_tokenizer *t = get_tokenizer(cap);
    if (!t) return NULL;
    Py_ssize_t len;
    const char *text = utf8_arg(text_obj, &len, "text");
    if (!text) return NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_tokenizer_tokenize(t, text, (size_t)len, &ids, &n);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) return lyra_py_raise(st);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *v = PyLong_FromLong(ids[i]);
        if (!v) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    free(ids);
    return list;
}

static PyObject *py_tokenizer_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *texts_obj;
    long long seq_len;
    if (!PyArg_ParseTuple(args, "OOL", &cap, &texts_obj, &seq_len)) return NULL;
    lyra_tokenizer *t = get_tokenizer(cap);
    if (!t) return NULL;
    if (seq_len < 1 || seq_len > (1 << 24)) return PyErr_Format(PyExc_ValueError, "seq_len: must be in 1..2^24, got %lld", seq_len);
    PyObject *result = NULL, *texts = NULL;
    PyArrayObject *ids = NULL, *mask = NULL;
    const char **ptr = NULL;
    size_t *lens = NULL;
    texts = PySequence_Tuple(texts_obj); /* keeps the strings alive while the GIL is released */
    if (!texts) goto finally;
    Py_ssize_t b = PyTuple_GET_SIZE(texts);
    ptr = calloc((size_t)b + 1, sizeof *ptr);
    lens = calloc((size_t)b + 1, sizeof *lens);
    if (!ptr || !lens) {
        PyErr_NoMemory();
        goto finally;
    }
    for (Py_ssize_t i = 0; i < b; i++) {
        Py_ssize_t len;
        ptr[i] = utf8_arg(PyTuple_GET_ITEM(texts, i), &len, "texts[i]");
        if (!ptr[i]) goto finally;
        lens[i] = (size_t)len;
    }
    npy_intp dims[2] = {(npy_intp)b, (npy_intp)seq_len};
    ids = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    mask = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    if (!ids || !mask) goto finally;
    lyra_status st = LYRA_OK;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < b && st == LYRA_OK; i++)
        st = lyra_tokenizer_encode(t, ptr[i], lens[i], (int64_t)seq_len, (int64_t *)PyArray_DATA(ids) + i * seq_len,
                                   (int64_t *)PyArray_DATA(mask) + i * seq_len);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = PyTuple_Pack(2, (PyObject *)ids, (PyObject *)mask);
finally:
    free(ptr);
    free(lens);
    Py_XDECREF(texts);
    Py_XDECREF(ids);
    Py_XDECREF(mask);
    return result;
}

static PyObject *py_text_clean(PyObject *self, PyObject *text_obj) {
    (void)self;
    Py_ssize_t len;
    const char *text = utf8_arg(text_obj, &len, "text");
    if (!text) return NULL;
    char *out = NULL;
    size_t out_len = 0;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_text_clean(text, (size_t)len, &out, &out_len);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) return lyra_py_raise(st);
    PyObject *r = PyUnicode_DecodeUTF8(out ? out : "", (Py_ssize_t)out_len, "strict");
    free(out);
    return r;
}

static PyMethodDef tokenizer_methods[] = {
    {"tokenizer_load", py_tokenizer_load, METH_VARARGS, "tokenizer_load(path, extra_ids, byte_fallback) -> capsule"},
    {"tokenizer_info", py_tokenizer_info, METH_O, "tokenizer_info(capsule) -> dict"},
    {"tokenizer_piece", py_tokenizer_piece, METH_VARARGS, "tokenizer_piece(capsule, id) -> str"},
    {"tokenizer_tokenize", py_tokenizer_tokenize, METH_VARARGS, "tokenizer_tokenize(capsule, text) -> list[int]"},
    {"tokenizer_encode", py_tokenizer_encode, METH_VARARGS,
     "tokenizer_encode(capsule, texts, seq_len) -> (ids, mask) int64 (B, seq_len)"},
    {"text_clean", py_text_clean, METH_O, "text_clean(text) -> str (upstream's prompt cleaning)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_tokenizer(PyObject *m) { return PyModule_AddFunctions(m, tokenizer_methods); }
