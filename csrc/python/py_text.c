/* Python glue for the text area: the umT5 encoder and the CLIP vision tower (private functions of lyra2._core;
 * the public classes are lyra2/models/umt5.py and lyra2/models/clip.py).
 *
 * A loaded network is a capsule owning the weights, a CPU backend and an activation arena. Weights come from a
 * safetensors path (read by the C reader over an mmap and copied once into the carved allocation, keeping the
 * file's bf16/f16 storage: the 11 GB bf16 umT5-XXL never exists as float32) or from a mapping name -> array
 * (float32/float16; float64 is narrowed to float32). Calls on one capsule are serialised by a lock because the
 * arena and the backend scratch are per network. */
#include "py_netcap.h"

#include "models/clip.h"
#include "models/umt5.h"
#include "nn/ops.h"

/* ---------------------------------------------------------------- loaded networks */

enum { NET_UMT5 = 1, NET_CLIP = 2 };
static const char *CAPSULE = "lyra2._core.text_network";

typedef struct textnet {
    lyra_py_netcap net; /* first: the capsule glue (lock, backend, arena), see py_netcap.h */
    int kind;
    lyra_umt5 umt5;     /* zeroed unless kind == NET_UMT5 */
    lyra_clip clip;     /* zeroed unless kind == NET_CLIP */
} textnet;

static void textnet_free_model(lyra_py_netcap *net) {
    textnet *t = (textnet *)net;
    lyra_umt5_free(&t->umt5);
    lyra_clip_free(&t->clip);
}

static textnet *get_net(PyObject *cap, int kind) {
    textnet *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    if (t->kind != kind) {
        PyErr_SetString(PyExc_TypeError, kind == NET_UMT5 ? "expected a umT5 network" : "expected a CLIP network");
        return NULL;
    }
    return t;
}

static lyra_status umt5_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    (void)arg;
    textnet *t = (textnet *)net;
    t->kind = NET_UMT5;
    return lyra_umt5_load(&t->umt5, src);
}

/* arg: the long long head count (0: detected). */
static lyra_status clip_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    textnet *t = (textnet *)net;
    t->kind = NET_CLIP;
    return lyra_clip_load(&t->clip, src, *(const long long *)arg);
}

static lyra_tensor host_tensor(PyArrayObject *a, lyra_dtype dt) {
    int64_t shape[LYRA_MAX_DIMS];
    for (int d = 0; d < PyArray_NDIM(a); d++) shape[d] = PyArray_DIMS(a)[d];
    return lyra_tensor_make(PyArray_DATA(a), dt, PyArray_NDIM(a), shape);
}

/* ---------------------------------------------------------------- umT5 */

static PyObject *py_umt5_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    if (!PyArg_ParseTuple(args, "O:umt5_load", &weights)) return NULL;
    return lyra_py_netcap_load(weights, NULL, sizeof(textnet), textnet_free_model, umt5_load, NULL, CAPSULE);
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
    textnet *t = get_net(cap, NET_UMT5);
    return t ? umt5_config_dict(&t->umt5.cfg) : NULL;
}

/* umt5_encode(net, ids int64 (B, L), mask uint8 (B, L), zero_padded) -> float32 (B, L, dim) */
static PyObject *py_umt5_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *ids_obj, *mask_obj, *out = NULL;
    int zero_padded;
    if (!PyArg_ParseTuple(args, "OOOp:umt5_encode", &cap, &ids_obj, &mask_obj, &zero_padded)) return NULL;
    textnet *t = get_net(cap, NET_UMT5);
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
    lyra_tensor o = host_tensor((PyArrayObject *)out, LYRA_DTYPE_F32);
    const int32_t *id = PyArray_DATA(ids32);
    const uint8_t *mk = PyArray_DATA(mask);
    lyra_status s = LYRA_OK;
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        s = lyra_py_netcap_arena(&t->net, lyra_umt5_arena_bytes(&t->umt5.cfg, B, L));
        if (s == LYRA_OK) s = lyra_umt5_encode(&t->umt5, &t->net.be, &t->net.arena, &o, id, mk, B, L, zero_padded);
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
    textnet *t = get_net(cap, NET_UMT5);
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

/* umt5_plan(config dict, batch, tokens) -> {params, flops, arena_bytes} (no weights needed). */
static PyObject *py_umt5_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    long long B, L;
    if (!PyArg_ParseTuple(args, "O!LL:umt5_plan", &PyDict_Type, &d, &B, &L)) return NULL;
    lyra_umt5_config c = {0};
    if (lyra_py_cfg_int(d, "vocab", &c.vocab) || lyra_py_cfg_int(d, "dim", &c.dim) ||
        lyra_py_cfg_int(d, "dim_attn", &c.dim_attn) || lyra_py_cfg_int(d, "heads", &c.heads) ||
        lyra_py_cfg_int(d, "ffn", &c.ffn) || lyra_py_cfg_int(d, "layers", &c.layers) ||
        lyra_py_cfg_int(d, "buckets", &c.buckets))
        return NULL;
    PyObject *sp = PyDict_GetItemString(d, "shared_pos");
    c.shared_pos = sp ? PyObject_IsTrue(sp) : 0;
    return Py_BuildValue("{s:L,s:d,s:n}", "params", (long long)lyra_umt5_params(&c), "flops",
                         lyra_umt5_flops(&c, B, L), "arena_bytes", (Py_ssize_t)lyra_umt5_arena_bytes(&c, B, L));
}

/* ---------------------------------------------------------------- CLIP */

static PyObject *py_clip_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    long long heads = 0;
    if (!PyArg_ParseTuple(args, "O|L:clip_load", &weights, &heads)) return NULL;
    return lyra_py_netcap_load(weights, NULL, sizeof(textnet), textnet_free_model, clip_load, &heads, CAPSULE);
}

static PyObject *clip_config_dict(const lyra_clip_config *c) {
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "width", (long long)c->width, "heads",
                         (long long)c->heads, "layers", (long long)c->layers, "used_layers",
                         (long long)c->used_layers, "mlp", (long long)c->mlp, "patch", (long long)c->patch, "grid",
                         (long long)c->grid, "image_size", (long long)c->image_size, "tokens", (long long)c->tokens);
}

static PyObject *py_clip_config(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:clip_config", &cap)) return NULL;
    textnet *t = get_net(cap, NET_CLIP);
    return t ? clip_config_dict(&t->clip.cfg) : NULL;
}

/* clip_run(net, image float32 (B, 3, H, W), preprocess_only) -> (B, 3, S, S) or (B, T, W) */
static PyObject *py_clip_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *img_obj;
    int pre_only;
    if (!PyArg_ParseTuple(args, "OOp:clip_run", &cap, &img_obj, &pre_only)) return NULL;
    textnet *t = get_net(cap, NET_CLIP);
    if (!t) return NULL;
    PyArrayObject *img = lyra_py_array(img_obj, NPY_FLOAT32, 4, "image");
    if (!img) return NULL;
    PyObject *out = NULL;
    const lyra_clip_config *c = &t->clip.cfg;
    npy_intp B = PyArray_DIMS(img)[0];
    if (B < 1 || PyArray_DIMS(img)[1] != 3 || PyArray_DIMS(img)[2] < 1 || PyArray_DIMS(img)[3] < 1) {
        PyErr_Format(PyExc_ValueError, "image: expected (B, 3, H, W) with B, H, W >= 1, got (%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)B, (Py_ssize_t)PyArray_DIMS(img)[1], (Py_ssize_t)PyArray_DIMS(img)[2],
                     (Py_ssize_t)PyArray_DIMS(img)[3]);
        goto finally;
    }
    npy_intp pdims[4] = {B, 3, c->image_size, c->image_size}, tdims[3] = {B, c->tokens, c->width};
    out = pre_only ? PyArray_SimpleNew(4, pdims, NPY_FLOAT32) : PyArray_SimpleNew(3, tdims, NPY_FLOAT32);
    if (!out) goto finally;
    lyra_tensor x = host_tensor(img, LYRA_DTYPE_F32), y = host_tensor((PyArrayObject *)out, LYRA_DTYPE_F32);
    lyra_status s = LYRA_OK;
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        if (pre_only) {
            s = lyra_clip_preprocess(&t->clip, &t->net.be, &y, &x);
        } else {
            s = lyra_py_netcap_arena(&t->net, lyra_clip_arena_bytes(c, B));
            if (s == LYRA_OK) s = lyra_clip_encode(&t->clip, &t->net.be, &t->net.arena, &y, &x);
        }
    });
    if (s != LYRA_OK) {
        Py_CLEAR(out);
        lyra_py_raise(s);
    }
finally:
    Py_DECREF(img);
    return out;
}

/* clip_plan(config dict with width, heads, layers, mlp, patch, image_size; batch) -> {params, flops, arena_bytes} */
static PyObject *py_clip_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    long long B;
    if (!PyArg_ParseTuple(args, "O!L:clip_plan", &PyDict_Type, &d, &B)) return NULL;
    lyra_clip_config c = {0};
    if (lyra_py_cfg_int(d, "width", &c.width) || lyra_py_cfg_int(d, "heads", &c.heads) ||
        lyra_py_cfg_int(d, "layers", &c.layers) || lyra_py_cfg_int(d, "mlp", &c.mlp) ||
        lyra_py_cfg_int(d, "patch", &c.patch) || lyra_py_cfg_int(d, "image_size", &c.image_size))
        return NULL;
    if (c.patch < 1 || c.layers < 2) {
        PyErr_SetString(PyExc_ValueError, "config: patch must be >= 1 and layers >= 2");
        return NULL;
    }
    c.used_layers = c.layers - 1;
    c.grid = c.image_size / c.patch;
    c.tokens = 1 + c.grid * c.grid;
    return Py_BuildValue("{s:L,s:d,s:n}", "params", (long long)lyra_clip_params(&c), "flops",
                         lyra_clip_flops(&c, B), "arena_bytes", (Py_ssize_t)lyra_clip_arena_bytes(&c, B));
}

static PyMethodDef text_methods[] = {
    {"umt5_load", py_umt5_load, METH_VARARGS, "umt5_load(weights) -> network (private; see lyra2.models.umt5)"},
    {"umt5_config", py_umt5_config, METH_VARARGS, "umt5_config(net) -> dict"},
    {"umt5_encode", py_umt5_encode, METH_VARARGS, "umt5_encode(net, ids, mask, zero_padded) -> float32 (B, L, dim)"},
    {"umt5_position_bias", py_umt5_position_bias, METH_VARARGS,
     "umt5_position_bias(net, layer, lq, lk) -> float32 (heads, lq, lk)"},
    {"umt5_bucket", py_umt5_bucket, METH_VARARGS, "umt5_bucket(rel, num_buckets, max_dist) -> int64 buckets"},
    {"umt5_plan", py_umt5_plan, METH_VARARGS, "umt5_plan(config, batch, tokens) -> {params, flops, arena_bytes}"},
    {"clip_load", py_clip_load, METH_VARARGS, "clip_load(weights, heads=0) -> network (private; lyra2.models.clip)"},
    {"clip_config", py_clip_config, METH_VARARGS, "clip_config(net) -> dict"},
    {"clip_run", py_clip_run, METH_VARARGS, "clip_run(net, image, preprocess_only) -> float32 array"},
    {"clip_plan", py_clip_plan, METH_VARARGS, "clip_plan(config, batch) -> {params, flops, arena_bytes}"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_text(PyObject *m) { return PyModule_AddFunctions(m, text_methods); }
