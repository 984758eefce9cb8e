/* Python glue for the umT5 text encoder (private functions of lyra2._core; the public class is
 * lyra2/models/umt5.py).
 *
 * A loaded network is a capsule owning the weights, a CPU backend and an activation arena. Weights come from a
 * safetensors path (read by the C reader over an mmap and copied once into the carved allocation, keeping the
 * file's bf16/f16 storage: the 11 GB bf16 umT5-XXL never exists as float32) or from a mapping name -> array
 * (float32/float16; float64 is narrowed to float32). Calls on one capsule are serialised by a lock because the
 * arena and the backend scratch are per network. */
#include "py_netcap.h"

#include "models/umt5.h"
#include "nn/ops.h"

/* ---------------------------------------------------------------- loaded network */

static const char *CAPSULE = "lyra2._core.umt5";

typedef struct umt5net {
    lyra_py_netcap net; /* first: the capsule glue (lock, backend, arena), see py_netcap.h */
    lyra_umt5 umt5;
} umt5net;

static void umt5net_free_model(lyra_py_netcap *net) { lyra_umt5_free(&((umt5net *)net)->umt5); }

static umt5net *get_net(PyObject *cap) { return lyra_py_netcap_get(cap, CAPSULE, "umT5"); }

static lyra_status umt5_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    (void)arg;
    return lyra_umt5_load(&((umt5net *)net)->umt5, src);
}

/* lyra_py_netcap_place's callback: the weights to net->be. */
static lyra_status umt5_place(lyra_py_netcap *net, lyra_dtype act) {
    umt5net *t = (umt5net *)net;
    return lyra_umt5_place(&t->umt5, &t->net.be, act);
}

/* umt5_load(weights, device="cpu", precision=None): "cuda" moves the network to the device backend and uploads
 * its weights once (lyra_umt5_place), activations stored as precision ("bf16", the default there, or "f32"). */
static PyObject *py_umt5_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    const char *device = "cpu", *precision = NULL;
    if (!PyArg_ParseTuple(args, "O|sz:umt5_load", &weights, &device, &precision)) return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    lyra_dtype act;
    if (lyra_py_precision(precision, !strcmp(device, "cuda"), LYRA_DTYPE_BF16, &act) < 0) return NULL;
    PyObject *cap = lyra_py_netcap_load_random(weights, sizeof(umt5net), umt5net_free_model, umt5_load, NULL, CAPSULE,
                                               !strcmp(device, "cuda")); /* random weights: filled on the device */
    return lyra_py_netcap_place(cap, CAPSULE, device, umt5_place, act);
}

static PyObject *umt5_config_dict(const lyra_umt5_config *c) {
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:O}", "vocab", (long long)c->vocab, "dim",
                         (long long)c->dim, "dim_attn", (long long)c->dim_attn, "heads", (long long)c->heads, "ffn",
                         (long long)c->ffn, "layers", (long long)c->layers, "buckets", (long long)c->buckets,
                         "max_dist", (long long)c->max_dist, "shared_pos", c->shared_pos ? Py_True : Py_False);
}

static PyObject *py_umt5_config(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:umt5_config", &cap)) return NULL;
    umt5net *t = get_net(cap);
    return t ? umt5_config_dict(&t->umt5.cfg) : NULL;
}

/* umt5_encode(net, ids int64 (B, L), mask uint8 (B, L), zero_padded) -> float32 (B, L, dim) */
static PyObject *py_umt5_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *ids_obj, *mask_obj, *out = NULL;
    int zero_padded;
    if (!PyArg_ParseTuple(args, "OOOp:umt5_encode", &cap, &ids_obj, &mask_obj, &zero_padded)) return NULL;
    umt5net *t = get_net(cap);
    if (!t) return NULL;
    PyArrayObject *ids = lyra_py_array(ids_obj, NPY_INT64, 2, "ids"), *mask = NULL, *ids32 = NULL;
    if (!ids) return NULL;
    mask = lyra_py_array(mask_obj, NPY_UINT8, 2, "mask");
    if (!mask) goto finally;
    npy_intp B = PyArray_DIMS(ids)[0], L = PyArray_DIMS(ids)[1];
    if (PyArray_DIMS(mask)[0] != B || PyArray_DIMS(mask)[1] != L) {
        PyErr_Format(PyExc_ValueError, "mask: shape must equal ids' (%zd, %zd)", (Py_ssize_t)B, (Py_ssize_t)L);
        goto finally;
    }
    if (B < 1 || L < 1) {
        PyErr_SetString(PyExc_ValueError, "ids: expected (B, L) with B, L >= 1");
        goto finally;
    }
    const int64_t *id64 = PyArray_DATA(ids);
    for (npy_intp i = 0; i < B * L; i++)
        if (id64[i] < 0 || id64[i] >= t->umt5.cfg.vocab) {
            PyErr_Format(PyExc_ValueError, "ids[%zd, %zd] = %lld is outside [0, %lld) (the vocabulary)",
                         (Py_ssize_t)(i / L), (Py_ssize_t)(i % L), (long long)id64[i], (long long)t->umt5.cfg.vocab);
            goto finally;
        }
    ids32 = (PyArrayObject *)PyArray_FROMANY((PyObject *)ids, NPY_INT32, 2, 2, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!ids32) goto finally;
    npy_intp dims[3] = {B, L, t->umt5.cfg.dim};
    out = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (!out) goto finally;
    lyra_tensor o = lyra_py_host_tensor((PyArrayObject *)out, LYRA_DTYPE_F32);
    const int32_t *id = PyArray_DATA(ids32);
    const uint8_t *mk = PyArray_DATA(mask);
    lyra_status s = LYRA_OK;
    /* on a device: the output is a device block downloaded at the end (ids and mask are staged by the encoder) */
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        lyra_backend *be = &t->net.be;
        lyra_tensor d = o;
        void *blk = NULL;
        if (be->device != LYRA_DEVICE_CPU) {
            blk = be->ops->alloc(be, lyra_tensor_nbytes(&o));
            d.data = blk;
            d.device = be->device;
            d.name = "umT5 output";
            if (!blk) s = lyra_error(LYRA_ERR_OOM, "umT5: cannot allocate %zu bytes on the device for the output",
                                     lyra_tensor_nbytes(&o));
        }
        size_t need = 0;
        if (s == LYRA_OK) s = lyra_umt5_arena_measure(&t->umt5, be->device, id, mk, B, L, zero_padded, &need);
        if (s == LYRA_OK) s = lyra_py_netcap_arena(&t->net, need);
        if (s == LYRA_OK) s = lyra_umt5_encode(&t->umt5, be, &t->net.arena, &d, id, mk, B, L, zero_padded);
        if (s == LYRA_OK && blk) s = lyra_op_download(be, &o, &d);
        if (blk) be->ops->release(be, blk);
    });
    if (s != LYRA_OK) {
        Py_CLEAR(out);
        lyra_py_raise(s);
    }
finally:
    Py_XDECREF(ids);
    Py_XDECREF(mask);
    Py_XDECREF(ids32);
    return out;
}

static PyObject *py_umt5_position_bias(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    long long layer, lq, lk;
    if (!PyArg_ParseTuple(args, "OLLL:umt5_position_bias", &cap, &layer, &lq, &lk)) return NULL;
    umt5net *t = get_net(cap);
    if (!t) return NULL;
    if (lq < 0 || lk < 0 || lq > 65536 || lk > 65536) {
        PyErr_SetString(PyExc_ValueError, "position_bias: lengths must be in [0, 65536]");
        return NULL;
    }
    npy_intp dims[3] = {t->umt5.cfg.heads, lq, lk};
    PyObject *out = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (!out) return NULL;
    lyra_status s = lyra_umt5_position_bias(&t->umt5, layer, lq, lk, PyArray_DATA((PyArrayObject *)out));
    if (s != LYRA_OK) {
        Py_DECREF(out);
        return lyra_py_raise(s);
    }
    return out;
}

/* umt5_bucket(rel int64 array, num_buckets, max_dist) -> int64 array of buckets (the C formula, for tests). */
static PyObject *py_umt5_bucket(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rel_obj;
    long long nb, max_dist;
    if (!PyArg_ParseTuple(args, "OLL:umt5_bucket", &rel_obj, &nb, &max_dist)) return NULL;
    if (nb < 4 || nb % 2 || nb / 4 >= max_dist) {
        PyErr_SetString(PyExc_ValueError, "num_buckets must be even, >= 4 and num_buckets/4 < max_dist");
        return NULL;
    }
    PyArrayObject *rel = lyra_py_array(rel_obj, NPY_INT64, -1, "rel");
    if (!rel) return NULL;
    PyObject *out = PyArray_SimpleNew(PyArray_NDIM(rel), PyArray_DIMS(rel), NPY_INT64);
    if (out) {
        const int64_t *r = PyArray_DATA(rel);
        int64_t *o = PyArray_DATA((PyArrayObject *)out);
        for (npy_intp i = 0; i < PyArray_SIZE(rel); i++) o[i] = lyra_umt5_bucket(r[i], nb, max_dist);
    }
    Py_DECREF(rel);
    return out;
}

/* umt5_plan(config dict, batch, tokens, precision="f32") -> {params, flops, arena_bytes} (no weights needed). */
static PyObject *py_umt5_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    long long B, L;
    const char *precision = "f32";
    if (!PyArg_ParseTuple(args, "O!LL|s:umt5_plan", &PyDict_Type, &d, &B, &L, &precision)) return NULL;
    lyra_dtype act;
    if (lyra_py_precision(precision, 1, LYRA_DTYPE_BF16, &act) < 0) return NULL;
    lyra_umt5_config c = {0};
    if (lyra_py_cfg_int(d, "vocab", &c.vocab) || lyra_py_cfg_int(d, "dim", &c.dim) ||
        lyra_py_cfg_int(d, "dim_attn", &c.dim_attn) || lyra_py_cfg_int(d, "heads", &c.heads) ||
        lyra_py_cfg_int(d, "ffn", &c.ffn) || lyra_py_cfg_int(d, "layers", &c.layers) ||
        lyra_py_cfg_int(d, "buckets", &c.buckets))
        return NULL;
    PyObject *sp = PyDict_GetItemString(d, "shared_pos");
    c.shared_pos = sp ? PyObject_IsTrue(sp) : 0;
    return Py_BuildValue("{s:L,s:d,s:n}", "params", (long long)lyra_umt5_params(&c), "flops",
                         lyra_umt5_flops(&c, B, L), "arena_bytes", (Py_ssize_t)lyra_umt5_arena_bytes_as(&c, B, L, act));
}

/* umt5_arena(net) -> (capacity, peak): the activation arena (sized by measuring each encode) and its real
 * high-water mark. */
static PyObject *py_umt5_arena(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:umt5_arena", &cap)) return NULL;
    umt5net *t = get_net(cap);
    if (!t) return NULL;
    size_t c, p;
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        c = t->net.arena.capacity;
        p = t->net.arena.peak;
    });
    return Py_BuildValue("(nn)", (Py_ssize_t)c, (Py_ssize_t)p);
}

static PyMethodDef umt5_methods[] = {
    {"umt5_load", py_umt5_load, METH_VARARGS, "umt5_load(weights) -> network (private; see lyra2.models.umt5)"},
    {"umt5_config", py_umt5_config, METH_VARARGS, "umt5_config(net) -> dict"},
    {"umt5_encode", py_umt5_encode, METH_VARARGS, "umt5_encode(net, ids, mask, zero_padded) -> float32 (B, L, dim)"},
    {"umt5_position_bias", py_umt5_position_bias, METH_VARARGS,
     "umt5_position_bias(net, layer, lq, lk) -> float32 (heads, lq, lk)"},
    {"umt5_bucket", py_umt5_bucket, METH_VARARGS, "umt5_bucket(rel, num_buckets, max_dist) -> int64 buckets"},
    {"umt5_arena", py_umt5_arena, METH_VARARGS, "umt5_arena(net) -> (capacity, peak) of the activation arena"},
    {"umt5_plan", py_umt5_plan, METH_VARARGS, "umt5_plan(config, batch, tokens) -> {params, flops, arena_bytes}"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_umt5(PyObject *m) { return PyModule_AddFunctions(m, umt5_methods); }
