/* Python glue for the Lyra-2 DiT (csrc/models/dit*.c): private functions of lyra2._core used by
 * lyra2/models/dit.py. The model lives in a capsule; weights and LoRAs come from a safetensors path or a
 * {name: ndarray} mapping. */
#include "py_netcap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit.h"
#include "nn/ops.h"

#define CAPSULE "lyra2.LyraDiT"

/* Calls on one model are serialised by its lock, as for the text, MoGe and DA3 networks (py_netcap.h). The
 * netcap's backend and arena stay unused: the DiT owns its backend (with its thread count) and arena. */
typedef struct py_dit {
    lyra_py_netcap net; /* first: the capsule glue, see py_netcap.h */
    lyra_dit m;
} py_dit;

static void dit_free_model(lyra_py_netcap *net) { lyra_dit_free(&((py_dit *)net)->m); }

static py_dit *get_model(PyObject *cap) { return PyCapsule_GetPointer(cap, CAPSULE); }

/* ---------------- tensor sources: a safetensors file or a mapping ---------------- */

/* The DiT loader takes a (name, descriptor) array; the table itself comes from lyra_py_wsource. */
typedef struct source {
    lyra_py_wsource ws;
    lyra_dit_named *t;    /* [ws.n]: names and descriptors of ws */
    int n;
} source;

static void source_free(source *s) {
    PyMem_Free(s->t);
    lyra_py_wsource_free(&s->ws);
    memset(s, 0, sizeof *s);
}

/* Entry i is refused here (with the GIL, before loading) in the words of the argument's kind: from a file, a
 * dtype the runtime cannot describe or too many dims (the loader checks the rest); from a mapping, anything but
 * float16/float32 with at most LYRA_MAX_DIMS dims. */
static int check_entry(const source *s, Py_ssize_t i, const char *what) {
    if (s->ws.file) {
        const lyra_st_tensor *ft = &s->ws.file->tensors[i];
        if (s->ws.tensors[i].dtype == LYRA_DTYPE_COUNT) { /* see lyra_py_wsource: unknown dtype or > MAX dims */
            PyErr_Format(lyra_py_error, "%s: tensor '%s' has dtype %s and %d dims; expected F32, BF16 or F16 with at "
                         "most %d dims", what, ft->name, lyra_st_dtype_name(ft->dtype), ft->ndim, LYRA_MAX_DIMS);
            return -1;
        }
        return 0;
    }
    PyArrayObject *c = (PyArrayObject *)PyTuple_GET_ITEM(PyList_GET_ITEM(s->ws.items, i), 1);
    const char *name = s->ws.names[i];
    int tp = PyArray_TYPE(c);
    if (tp != NPY_FLOAT16 && tp != NPY_FLOAT32) {
        PyErr_Format(PyExc_TypeError, "%s: tensor '%s' has dtype %s, expected a float array", what, name,
                     PyArray_DESCR(c)->typeobj->tp_name);
        return -1;
    }
    if (PyArray_NDIM(c) > LYRA_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s: tensor '%s' has %d dims (at most %d)", what, name, PyArray_NDIM(c),
                     LYRA_MAX_DIMS);
        return -1;
    }
    return 0;
}

static int source_open(source *s, PyObject *obj, const char *what, int allow_random) {
    memset(s, 0, sizeof *s);
    if ((allow_random ? lyra_py_wsource_open_random : lyra_py_wsource_open)(&s->ws, obj, what, 1, NULL) < 0) return -1;
    s->t = PyMem_Calloc((size_t)s->ws.n + 1, sizeof *s->t);
    if (!s->t) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < s->ws.n; i++) {
        if (!s->ws.random && check_entry(s, i, what) < 0) goto fail;
        s->t[i].name = s->ws.names[i];
        s->t[i].t = s->ws.tensors[i]; /* .name is the checkpoint key too */
    }
    s->n = (int)s->ws.n;
    return 0;
fail:
    source_free(s);
    return -1;
}

/* ---------------- functions ---------------- */

static PyObject *int_list(const int *v, int n) {
    PyObject *l = PyList_New(n);
    for (int i = 0; l && i < n; i++) PyList_SET_ITEM(l, i, PyLong_FromLong(v[i]));
    return l;
}

/* dit_framepack(layout, latent_h=0, latent_w=0) -> dict */
static PyObject *py_dit_framepack(PyObject *self, PyObject *args) {
    (void)self;
    const char *layout;
    long long H = 0, W = 0;
    if (!PyArg_ParseTuple(args, "s|LL", &layout, &H, &W)) return NULL;
    lyra_framepack fp;
    lyra_status st = lyra_framepack_parse(&fp, layout);
    if (st != LYRA_OK) return lyra_py_raise(st);
    int splits[LYRA_FP_MAX_SEGMENTS + 1], kernels[LYRA_FP_MAX_SEGMENTS], ids[LYRA_FP_MAX_SEGMENTS + 1];
    char types[LYRA_FP_MAX_SEGMENTS + 1];
    for (int i = 0; i < fp.n_segments; i++) {
        splits[i] = fp.seg[i].frames;
        kernels[i] = fp.seg[i].kernel;
        ids[i] = i;
        types[i] = fp.seg[i].type;
    }
    splits[fp.n_segments] = fp.n_new;
    ids[fp.n_segments] = -1;
    types[fp.n_segments] = 0;
    PyObject *d = Py_BuildValue("{s:N,s:N,s:N,s:s,s:i,s:i,s:i,s:i,s:i}", "splits", int_list(splits, fp.n_segments + 1),
                                "kernel_sizes", int_list(kernels, fp.n_segments), "kernel_ids",
                                int_list(ids, fp.n_segments + 1), "kernel_types", types, "new_frames", fp.n_new,
                                "history_frames", fp.n_history, "total_frames", fp.n_total, "spatial_frames",
                                fp.n_spatial, "temporal_frames", fp.n_temporal);
    if (!d || (H == 0 && W == 0)) return d;
    lyra_fp_chunk ch[LYRA_FP_MAX_SEGMENTS + 1];
    int64_t L, gen_start;
    st = lyra_framepack_chunks(&fp, H, W, ch, &L, &gen_start);
    if (st != LYRA_OK) { Py_DECREF(d); return lyra_py_raise(st); }
    PyObject *chunks = PyList_New(fp.n_segments + 1);
    for (int i = 0; chunks && i <= fp.n_segments; i++)
        PyList_SET_ITEM(chunks, i, Py_BuildValue("{s:i,s:C,s:i,s:i,s:i,s:(iii),s:(LLL),s:L,s:L}", "kernel_id",
                                                 ch[i].kernel_id, "type", ch[i].type, "kernel", ch[i].K, "slot0",
                                                 ch[i].slot0, "frames", ch[i].frames, "patch", ch[i].pt, ch[i].ph,
                                                 ch[i].pw, "grid", (long long)ch[i].f, (long long)ch[i].h,
                                                 (long long)ch[i].w, "token0", (long long)ch[i].token0, "n_tokens",
                                                 (long long)ch[i].n_tokens));
    if (!chunks || PyDict_SetItemString(d, "chunks", chunks) < 0 ||
        PyDict_SetItemString(d, "tokens", PyLong_FromLongLong(L)) < 0 ||
        PyDict_SetItemString(d, "gen_start", PyLong_FromLongLong(gen_start)) < 0) {
        Py_XDECREF(chunks);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(chunks);
    return d;
}

/* dit_rope_angles(layout, latent_h, latent_w, head_dim) -> float32 (L, head_dim/2) */
static PyObject *py_dit_rope_angles(PyObject *self, PyObject *args) {
    (void)self;
    const char *layout;
    long long H, W;
    int head_dim;
    if (!PyArg_ParseTuple(args, "sLLi", &layout, &H, &W, &head_dim)) return NULL;
    int dh = 2 * (head_dim / 6);
    if (head_dim % 2 || dh <= 2 || head_dim - 2 * dh <= 2 || head_dim > 512)
        return PyErr_Format(PyExc_ValueError, "head_dim must be even and in 12..512, got %d", head_dim);
    lyra_framepack fp;
    lyra_fp_chunk ch[LYRA_FP_MAX_SEGMENTS + 1];
    int64_t L, gen_start;
    lyra_status st = lyra_framepack_parse(&fp, layout);
    if (st == LYRA_OK) st = lyra_framepack_chunks(&fp, H, W, ch, &L, &gen_start);
    if (st != LYRA_OK) return lyra_py_raise(st);
    npy_intp dims[2] = {(npy_intp)L, head_dim / 2};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) return NULL;
    Py_BEGIN_ALLOW_THREADS
    lyra_dit_rope_angles(PyArray_DATA(out), ch, fp.n_segments + 1, H / 2, W / 2, head_dim);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* dit_load(weights, layout, num_heads, n_threads, defer=False) -> capsule; random weights (lyra2.testing.
 * random_weights) are filled in host memory, or with defer at placement on the device (lyra_dit_load_random). */
static PyObject *py_dit_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    const char *layout;
    int num_heads, n_threads, defer = 0;
    if (!PyArg_ParseTuple(args, "Osii|p", &weights, &layout, &num_heads, &n_threads, &defer)) return NULL;
    source src;
    if (source_open(&src, weights, "LyraDiT weights", 1) < 0) return NULL;
    py_dit *d = (py_dit *)lyra_py_netcap_new(sizeof *d, dit_free_model, 0);
    if (!d) {
        source_free(&src);
        return NULL;
    }
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = src.ws.random ? lyra_dit_load_random(&d->m, src.t, src.n, layout, num_heads, n_threads, src.ws.seed, defer)
                       : lyra_dit_load(&d->m, src.t, src.n, layout, num_heads, n_threads);
    Py_END_ALLOW_THREADS
    source_free(&src);
    if (st != LYRA_OK) {
        lyra_py_netcap_free(&d->net); /* a failed lyra_dit_load leaves d->m zeroed */
        return lyra_py_raise(st);
    }
    return lyra_py_netcap_capsule(&d->net, CAPSULE);
}

/* dit_config(capsule) -> dict */
static PyObject *py_dit_config(PyObject *self, PyObject *cap) {
    (void)self;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    lyra_dit_config cfg;
    size_t weight_bytes, arena_need, arena_peak;
    /* a LoRA merge may be changing them */
    LYRA_PY_NETCAP_LOCKED(&d->net, {
        cfg = d->m.cfg;
        weight_bytes = d->m.weight_bytes;
        arena_need = d->m.arena_need;
        arena_peak = d->m.arena.peak;
    });
    const lyra_dit_config *c = &cfg;
    PyObject *clean = PyList_New(c->n_clean);
    for (int k = 0; clean && k < c->n_clean; k++) PyList_SET_ITEM(clean, k, PyLong_FromLongLong(c->clean_in[k]));
    /* arena_need: the last measured activation peak (dit_measure.c); arena_peak: the real high-water mark */
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:N,s:d,s:n,s:n,s:n}",
                         "dim", c->dim,
                         "ffn_dim", c->ffn_dim, "num_heads", c->num_heads, "head_dim", c->head_dim, "num_layers",
                         c->num_layers, "in_dim", c->in_dim, "out_dim", c->out_dim, "text_dim", c->text_dim,
                         "freq_dim", c->freq_dim, "clip_dim", c->clip_dim, "cam_dim", c->cam_dim, "cam_channels",
                         c->cam_channels, "buffer_in_dim", c->buffer_in_dim, "buffer_embed_dim", c->buffer_embed_dim,
                         "buffer_squeeze", c->buffer_squeeze, "n_clean", c->n_clean, "clean_in_features", clean, "eps",
                         (double)c->eps, "weight_bytes", (Py_ssize_t)weight_bytes, "arena_need",
                         (Py_ssize_t)arena_need, "arena_peak", (Py_ssize_t)arena_peak);
}

/* dit_lora_add(capsule, source, name, weight) -> number of ignored keys */
static PyObject *py_dit_lora_add(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *obj;
    const char *name;
    float weight;
    if (!PyArg_ParseTuple(args, "OOsf", &cap, &obj, &name, &weight)) return NULL;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    source src;
    if (source_open(&src, obj, "LoRA", 0) < 0) return NULL;
    lyra_status st;
    int ignored = 0;
    LYRA_PY_NETCAP_LOCKED(&d->net, st = lyra_dit_lora_add(&d->m, src.t, src.n, name, weight, &ignored));
    source_free(&src);
    if (st != LYRA_OK) return lyra_py_raise(st);
    return PyLong_FromLong(ignored);
}

/* dit_lora_adapters(capsule, weights=None) -> [(name, weight, rank, n_modules)]; sets the weights when given. */
static PyObject *py_dit_lora_adapters(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *weights = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &cap, &weights)) return NULL;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    float w[LYRA_DIT_MAX_ADAPTERS];
    Py_ssize_t n_given = -1;
    if (weights != Py_None) { /* converted before locking: float() of an element may run Python code */
        PyObject *seq = PySequence_Fast(weights, "LoRA weights must be a sequence of numbers");
        if (!seq) return NULL;
        n_given = PySequence_Fast_GET_SIZE(seq);
        for (Py_ssize_t a = 0; a < n_given && a < LYRA_DIT_MAX_ADAPTERS; a++) {
            double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, a));
            if (v == -1.0 && PyErr_Occurred()) { Py_DECREF(seq); return NULL; }
            if (!isfinite(v)) {
                Py_DECREF(seq);
                return PyErr_Format(PyExc_ValueError, "LoRA weight %zd is not finite", a);
            }
            w[a] = (float)v;
        }
        Py_DECREF(seq);
    }
    lyra_dit_adapter ad[LYRA_DIT_MAX_ADAPTERS];
    int n = 0, set = 0;
    LYRA_PY_NETCAP_LOCKED(&d->net, {
        n = d->m.n_adapters;
        if (n_given == n) {
            for (int a = 0; a < n; a++) d->m.adapters[a].weight = w[a];
            set = 1;
        }
        memcpy(ad, d->m.adapters, (size_t)n * sizeof *ad);
    });
    if (n_given >= 0 && !set)
        return PyErr_Format(PyExc_ValueError, "expected %d LoRA weights (one per adapter), got %zd", n, n_given);
    PyObject *l = PyList_New(n);
    for (int a = 0; l && a < n; a++) {
        PyObject *item = Py_BuildValue("(sdii)", ad[a].name, (double)ad[a].weight, ad[a].rank, ad[a].n_modules);
        if (!item) { Py_CLEAR(l); break; }
        PyList_SET_ITEM(l, a, item);
    }
    return l;
}

/* A copy of t (contiguous) in host memory as a new array: float32 for a float dtype, uint8 for u8. */
static PyObject *host_copy(lyra_backend *be, const lyra_tensor *t) {
    npy_intp dims[LYRA_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = (npy_intp)t->ne[i];
    const int u8 = t->dtype == LYRA_DTYPE_U8;
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(t->ndim, dims, u8 ? NPY_UINT8 : NPY_FLOAT32);
    size_t bytes = lyra_tensor_nbytes(t);
    void *raw = u8 ? NULL : malloc(bytes ? bytes : 1);
    if (!a || (!u8 && !raw)) {
        Py_XDECREF(a);
        free(raw);
        return a ? PyErr_NoMemory() : NULL;
    }
    void *dst = u8 ? PyArray_DATA(a) : raw;
    lyra_status st = LYRA_OK;
    if (t->device == LYRA_DEVICE_CPU) {
        memcpy(dst, t->data, bytes);
    } else {
        lyra_tensor h = *t;
        h.data = dst;
        h.device = LYRA_DEVICE_CPU;
        st = lyra_op_download(be, &h, t);
    }
    if (st == LYRA_OK && !u8) lyra_convert_to_f32(PyArray_DATA(a), raw, t->dtype, lyra_tensor_numel(t));
    free(raw);
    if (st != LYRA_OK) {
        Py_DECREF(a);
        return lyra_py_raise(st);
    }
    return (PyObject *)a;
}

/* dit_param(capsule, name) -> (values, scales): parameter `name` as the model stores it, copied from wherever it
 * lives (host or device): float32 values (bf16/f32 storage) and None, or an fp8 Linear's uint8 e4m3 codes and
 * float32 row scales. For tests (random weights filled on the device equal the CPU-filled ones). */
static PyObject *py_dit_param(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    const char *name;
    if (!PyArg_ParseTuple(args, "Os:dit_param", &cap, &name)) return NULL;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    const lyra_tensor *scale = NULL;
    const lyra_tensor *t = lyra_dit_param_tensor(&d->m, name, &scale);
    if (!t) return PyErr_Format(PyExc_KeyError, "dit_param: no parameter '%s'", name);
    lyra_status st = LYRA_OK;
    LYRA_PY_NETCAP_LOCKED(&d->net, { st = lyra_dit_random_materialize(&d->m); }); /* a deferred model: on the host */
    if (st != LYRA_OK) return lyra_py_raise(st);
    PyObject *v = host_copy(&d->m.be, t);
    if (!v) return NULL;
    PyObject *s = scale ? host_copy(&d->m.be, scale) : (Py_INCREF(Py_None), Py_None);
    if (!s) {
        Py_DECREF(v);
        return NULL;
    }
    return Py_BuildValue("(NN)", v, s);
}

/* dit_place(capsule, device, precision) with device "cuda": weights and adapters to the device (lyra_dit_place),
 * then the activation dtype "f32" or "bf16" (lyra_dit_set_precision). */
static PyObject *py_dit_place(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    const char *device, *precision = "f32";
    if (!PyArg_ParseTuple(args, "Os|s", &cap, &device, &precision)) return NULL;
    lyra_dtype act;
    if (!strcmp(precision, "f32")) act = LYRA_DTYPE_F32;
    else if (!strcmp(precision, "bf16")) act = LYRA_DTYPE_BF16;
    else return PyErr_Format(PyExc_ValueError, "precision: '%s' is not allowed; expected 'bf16' or 'f32'", precision);
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    lyra_device dev;
    if (!strcmp(device, "cuda")) dev = LYRA_DEVICE_CUDA;
    else if (!strcmp(device, "cpu")) dev = LYRA_DEVICE_CPU;
    else return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    lyra_status st;
    LYRA_PY_NETCAP_LOCKED(&d->net, {
        st = lyra_dit_place(&d->m, dev);
        if (st == LYRA_OK) st = lyra_dit_set_precision(&d->m, act);
    });
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_dit_lora_merge(PyObject *self, PyObject *cap) {
    (void)self;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    lyra_status st;
    LYRA_PY_NETCAP_LOCKED(&d->net, st = lyra_dit_lora_merge(&d->m));
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_dit_lora_fold_at_placement(PyObject *self, PyObject *cap) {
    (void)self;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    lyra_status st;
    LYRA_PY_NETCAP_LOCKED(&d->net, st = lyra_dit_lora_fold_at_placement(&d->m));
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_dit_quantize_fp8(PyObject *self, PyObject *cap) {
    (void)self;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    lyra_status st;
    LYRA_PY_NETCAP_LOCKED(&d->net, st = lyra_dit_quantize_fp8(&d->m));
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

/* dit_streaming(capsule[, resident]) -> {resident, buffer_bytes, uploads, upload_bytes}: with `resident`, streams
 * blocks [resident, layers) through two block buffers (resident = layers: off); then reports the state. */
static PyObject *py_dit_streaming(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    int resident = -1;
    if (!PyArg_ParseTuple(args, "O|i:dit_streaming", &cap, &resident)) return NULL;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    lyra_status st = LYRA_OK;
    lyra_dit_stream s;
    int layers;
    LYRA_PY_NETCAP_LOCKED(&d->net, {
        layers = d->m.cfg.num_layers;
        if (resident >= 0 && resident <= layers) st = lyra_dit_set_streaming(&d->m, resident);
        s = d->m.stream;
    });
    if (resident != -1 && (resident < 0 || resident > layers)) {
        PyErr_Format(PyExc_ValueError, "resident_blocks: %d is outside 0..%d (the DiT's blocks)", resident, layers);
        return NULL;
    }
    if (st != LYRA_OK) return lyra_py_raise(st);
    int on = s.slot[0] != NULL;
    return Py_BuildValue("{s:i,s:n,s:L,s:n}", "resident", on ? s.resident : layers, "buffer_bytes",
                         (Py_ssize_t)(on ? 2 * s.span : 0), "uploads", (long long)s.uploads, "upload_bytes",
                         (Py_ssize_t)s.upload_bytes);
}

/* Intermediates recorded by the probe (copied without the GIL, turned into arrays afterwards). */
typedef struct probe_item {
    char name[32];
    int ndim;
    npy_intp dims[LYRA_MAX_DIMS];
    float *data;
    struct probe_item *next;
} probe_item;

typedef struct probe_list {
    probe_item *head, **tail;
    int failed;
    lyra_backend *be;   /* the model's backend: intermediates are downloaded from its device */
} probe_list;

static void probe_record(void *ctx, const char *name, const lyra_tensor *t) {
    probe_list *pl = ctx;
    probe_item *it = calloc(1, sizeof *it);
    size_t n = (size_t)lyra_tensor_numel(t);
    if (it) it->data = malloc(n * sizeof(float) + 1);
    /* downloaded in the tensor's own dtype (bf16 under the device policy) into the front of the f32 buffer,
     * then widened in place from the back */
    lyra_tensor host = lyra_tensor_make(it ? it->data : NULL, t->dtype, t->ndim, t->ne);
    int ok_dtype = t->dtype == LYRA_DTYPE_F32 || t->dtype == LYRA_DTYPE_BF16 || t->dtype == LYRA_DTYPE_F16;
    if (!it || !it->data || !ok_dtype || !lyra_tensor_is_contiguous(t) ||
        lyra_op_download(pl->be, &host, t) != LYRA_OK) {
        if (it) free(it->data);
        free(it);
        pl->failed = 1;
        return;
    }
    if (t->dtype != LYRA_DTYPE_F32) {
        const uint16_t *h = (const uint16_t *)it->data;
        for (size_t i = n; i-- > 0;)
            it->data[i] = t->dtype == LYRA_DTYPE_BF16 ? lyra_bf16_to_f32(h[i]) : lyra_f16_to_f32(h[i]);
    }
    snprintf(it->name, sizeof it->name, "%s", name);
    it->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) it->dims[i] = (npy_intp)t->ne[i];
    *pl->tail = it;
    pl->tail = &it->next;
}

static void probe_free(probe_list *pl) {
    for (probe_item *it = pl->head, *nx; it; it = nx) {
        nx = it->next;
        free(it->data);
        free(it);
    }
}

static PyObject *probe_dict(probe_list *pl) {
    PyObject *d = PyDict_New();
    for (probe_item *it = pl->head; d && it; it = it->next) {
        PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(it->ndim, it->dims, NPY_FLOAT32);
        if (!a) { Py_CLEAR(d); break; }
        memcpy(PyArray_DATA(a), it->data, (size_t)PyArray_NBYTES(a));
        if (PyDict_SetItemString(d, it->name, (PyObject *)a) < 0) Py_CLEAR(d);
        Py_DECREF(a);
    }
    return d;
}

static lyra_tensor desc(PyArrayObject *a) {
    int64_t ne[LYRA_MAX_DIMS];
    for (int i = 0; i < PyArray_NDIM(a); i++) ne[i] = PyArray_DIMS(a)[i];
    return lyra_tensor_make(PyArray_DATA(a), LYRA_DTYPE_F32, PyArray_NDIM(a), ne);
}

/* The forward on a model placed on a device: the NumPy inputs are uploaded into device blocks (named as the
 * upstream arguments), the output downloaded back into `host_out`; every block is released before returning. */
#define DIT_IO 6
static lyra_status forward_on_device(py_dit *d, lyra_tensor *host[DIT_IO], const char *const names[DIT_IO],
                                     double t, probe_list *pl) {
    lyra_backend *be = &d->m.be;
    lyra_tensor dev[DIT_IO];
    void *blk[DIT_IO] = {0};
    lyra_status st = LYRA_OK;
    for (int i = 0; i < DIT_IO && st == LYRA_OK; i++) {
        dev[i] = *host[i];
        dev[i].device = be->device;
        dev[i].name = names[i];
        blk[i] = be->ops->alloc(be, lyra_tensor_nbytes(host[i]) + 1);
        dev[i].data = blk[i];
        if (!blk[i]) st = lyra_error(LYRA_ERR_OOM, "dit: cannot allocate %zu bytes on the device for %s",
                                     lyra_tensor_nbytes(host[i]), names[i]);
        else if (i < DIT_IO - 1) st = lyra_op_upload(be, &dev[i], host[i]); /* the last one is the output */
    }
    if (st == LYRA_OK) {
        lyra_dit_inputs in = {&dev[0], t, &dev[1], &dev[2], &dev[3], &dev[4]};
        st = lyra_dit_forward(&d->m, &in, &dev[5], pl ? probe_record : NULL, pl);
    }
    if (st == LYRA_OK) st = lyra_op_download(be, host[5], &dev[5]);
    for (int i = 0; i < DIT_IO; i++) be->ops->release(be, blk[i]);
    return st;
}

/* dit_forward(capsule, x, timesteps, crossattn_emb, clip, y, y_buffer, intermediates) -> out | (out, dict) */
static PyObject *py_dit_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *ox, *ot, *otext, *oclip, *oy, *obuf;
    int want = 0;
    if (!PyArg_ParseTuple(args, "OOOOOOO|p", &cap, &ox, &ot, &otext, &oclip, &oy, &obuf, &want)) return NULL;
    py_dit *d = get_model(cap);
    if (!d) return NULL;
    PyObject *result = NULL;
    PyArrayObject *x = NULL, *t = NULL, *text = NULL, *clip = NULL, *y = NULL, *buf = NULL, *out = NULL;
    probe_list pl = {NULL, NULL, 0, NULL};
    pl.tail = &pl.head;
    if (!(x = lyra_py_array(ox, NPY_FLOAT32, 5, "x_B_C_T_H_W"))) goto finally;
    if (!(t = (PyArrayObject *)PyArray_FROMANY(ot, NPY_FLOAT64, 0, 0, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST))) {
        PyErr_SetString(PyExc_TypeError, "timesteps_B_T: expected a numeric array of shape (1, 1)");
        goto finally;
    }
    if (PyArray_NDIM(t) != 2 || PyArray_DIMS(t)[0] != 1 || PyArray_DIMS(t)[1] != 1) {
        PyErr_SetString(PyExc_ValueError, "timesteps_B_T: expected shape (1, 1) (batch 1, one time for the sequence)");
        goto finally;
    }
    if (!(text = lyra_py_array(otext, NPY_FLOAT32, 3, "crossattn_emb"))) goto finally;
    if (!(clip = lyra_py_array(oclip, NPY_FLOAT32, 3, "frame_cond_crossattn_emb_B_L_D"))) goto finally;
    if (!(y = lyra_py_array(oy, NPY_FLOAT32, 5, "y_B_C_T_H_W"))) goto finally;
    if (!(buf = lyra_py_array(obuf, NPY_FLOAT32, 5, "y_buffer_B_C_T_H_W"))) goto finally;
    double tv = *(const double *)PyArray_DATA(t);
    if (!isfinite(tv)) {
        PyErr_SetString(PyExc_ValueError, "timesteps_B_T: must be finite");
        goto finally;
    }
    npy_intp od[5] = {1, d->m.cfg.out_dim, d->m.fp.n_new, PyArray_DIMS(x)[3], PyArray_DIMS(x)[4]};
    if (!(out = (PyArrayObject *)PyArray_SimpleNew(5, od, NPY_FLOAT32))) goto finally;
    lyra_tensor tx = desc(x), ttext = desc(text), tclip = desc(clip), ty = desc(y), tbuf = desc(buf), tout = desc(out);
    lyra_dit_inputs in = {&tx, tv, &ttext, &tclip, &ty, &tbuf};
    lyra_tensor *io[DIT_IO] = {&tx, &ttext, &tclip, &ty, &tbuf, &tout};
    static const char *const io_names[DIT_IO] = {"x_B_C_T_H_W", "crossattn_emb", "frame_cond_crossattn_emb_B_L_D",
                                                 "y_B_C_T_H_W", "y_buffer_B_C_T_H_W", "dit output"};
    lyra_status st;
    pl.be = &d->m.be;
    if (d->m.be.device == LYRA_DEVICE_CPU)
        LYRA_PY_NETCAP_LOCKED(&d->net, st = lyra_dit_forward(&d->m, &in, &tout, want ? probe_record : NULL, &pl));
    else
        LYRA_PY_NETCAP_LOCKED(&d->net, st = forward_on_device(d, io, io_names, tv, want ? &pl : NULL));
    if (st != LYRA_OK) { lyra_py_raise(st); goto finally; }
    if (pl.failed) { PyErr_NoMemory(); goto finally; }
    if (want) {
        PyObject *inter = probe_dict(&pl);
        if (!inter) goto finally;
        result = Py_BuildValue("(ON)", out, inter);
    } else {
        Py_INCREF(out);
        result = (PyObject *)out;
    }
finally:
    probe_free(&pl);
    Py_XDECREF(x);
    Py_XDECREF(t);
    Py_XDECREF(text);
    Py_XDECREF(clip);
    Py_XDECREF(y);
    Py_XDECREF(buf);
    Py_XDECREF(out);
    return result;
}

/* dit_measure(config dict, layout, latent_h, latent_w, clip_tokens, matrix dtype "bf16"|"f16"|"f32",
 *             device "cpu"|"cuda") -> dict:
 * one forward of a DiT of that configuration measured on the measuring backend (no weights, no memory). The
 * dict keys are those of dit_config (dim, ffn_dim, num_heads, num_layers, in_dim, out_dim, text_dim, freq_dim,
 * clip_dim, cam_dim, buffer_embed_dim, buffer_squeeze). */
static PyObject *py_dit_measure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    const char *layout, *dtype, *device = "cpu";
    long long H, W, Lc;
    if (!PyArg_ParseTuple(args, "O!sLLLs|s:dit_measure", &PyDict_Type, &d, &layout, &H, &W, &Lc, &dtype, &device))
        return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
        PyErr_Format(PyExc_ValueError, "dit_measure: device '%s' is not one of 'cpu', 'cuda'", device);
        return NULL;
    }
    lyra_dtype mdt = !strcmp(dtype, "bf16") ? LYRA_DTYPE_BF16 : !strcmp(dtype, "f16") ? LYRA_DTYPE_F16
                     : !strcmp(dtype, "f32") ? LYRA_DTYPE_F32 : LYRA_DTYPE_COUNT;
    if (mdt == LYRA_DTYPE_COUNT) {
        PyErr_Format(PyExc_ValueError, "dit_measure: matrix dtype '%s' is not one of 'bf16', 'f16', 'f32'", dtype);
        return NULL;
    }
    static const char *keys[] = {"dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim",
                                 "freq_dim", "clip_dim", "cam_dim", "buffer_embed_dim", "buffer_squeeze"};
    lyra_dit_config c;
    memset(&c, 0, sizeof c);
    int *dst[] = {&c.dim, &c.ffn_dim, &c.num_heads, &c.num_layers, &c.in_dim, &c.out_dim, &c.text_dim, &c.freq_dim,
                  &c.clip_dim, &c.cam_dim, &c.buffer_embed_dim, &c.buffer_squeeze};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        PyObject *o = PyDict_GetItemString(d, keys[i]);
        if (!o) {
            PyErr_Format(PyExc_KeyError, "dit_measure: the configuration has no '%s'", keys[i]);
            return NULL;
        }
        long v = PyLong_AsLong(o);
        if (v == -1 && PyErr_Occurred()) return NULL;
        if (v < 1 || v > (1L << 20)) {
            PyErr_Format(PyExc_ValueError, "dit_measure: %s = %ld is out of range 1..%ld", keys[i], v, 1L << 20);
            return NULL;
        }
        *dst[i] = (int)v;
    }
    if (H < 2 || W < 2 || Lc < 1) {
        PyErr_Format(PyExc_ValueError, "dit_measure: latent %lldx%lld with %lld clip tokens is too small", H, W, Lc);
        return NULL;
    }
    lyra_dit_measurement r;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_dit_measure(&c, layout, H, W, Lc, mdt, strcmp(device, "cuda") ? LYRA_DEVICE_CPU : LYRA_DEVICE_CUDA, &r);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) return lyra_py_raise(st);
    return Py_BuildValue("{s:L,s:K,s:K,s:K,s:K,s:L,s:L,s:L,s:L,s:L,s:L,s:d,s:L}", "tokens", (long long)r.tokens,
                         "arena_peak", (unsigned long long)r.arena_peak, "io_bytes", (unsigned long long)r.io_bytes,
                         "weight_bytes", (unsigned long long)r.weight_bytes, "block_bytes",
                         (unsigned long long)r.block_bytes, "matrix_elems", (long long)r.matrix_elems, "matrix_rows",
                         (long long)r.matrix_rows, "vector_elems", (long long)r.vector_elems, "block_matrix_elems",
                         (long long)r.block_matrix_elems, "block_matrix_rows", (long long)r.block_matrix_rows,
                         "block_vector_elems", (long long)r.block_vector_elems, "flops", r.flops, "n_ops",
                         (long long)r.n_ops);
}

static PyMethodDef dit_methods[] = {
    {"dit_framepack", py_dit_framepack, METH_VARARGS, "Parses a FramePack layout (and its chunks for a latent size)."},
    {"dit_rope_angles", py_dit_rope_angles, METH_VARARGS, "RoPE angles of a packed sequence."},
    {"dit_load", py_dit_load, METH_VARARGS, "Loads the Lyra-2 DiT; returns a capsule."},
    {"dit_config", py_dit_config, METH_O, "Configuration detected from the weights."},
    {"dit_lora_add", py_dit_lora_add, METH_VARARGS, "Adds a LoRA adapter."},
    {"dit_lora_adapters", py_dit_lora_adapters, METH_VARARGS, "Lists (and sets the weights of) the adapters."},
    {"dit_lora_merge", py_dit_lora_merge, METH_O, "Folds the adapters into the base weights."},
    {"dit_lora_fold_at_placement", py_dit_lora_fold_at_placement, METH_O,
     "The adapters are folded into the weights by dit_place, on the device (lyra_dit_lora_fold_at_placement)."},
    {"dit_param", py_dit_param, METH_VARARGS, "dit_param(capsule, name) -> (values, fp8 scales or None), for tests."},
    {"dit_place", py_dit_place, METH_VARARGS, "Moves the weights and adapters to a device ('cuda')."},
    {"dit_forward", py_dit_forward, METH_VARARGS, "Runs the DiT forward pass."},
    {"dit_quantize_fp8", py_dit_quantize_fp8, METH_O, "Makes the attention blocks fp8 (e4m3)."},
    {"dit_streaming", py_dit_streaming, METH_VARARGS, "Sets / reports DiT block streaming."},
    {"dit_measure", py_dit_measure, METH_VARARGS, "Measures one forward of a DiT configuration (no weights)."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_dit(PyObject *m) { return PyModule_AddFunctions(m, dit_methods); }
