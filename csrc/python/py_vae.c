/* Python glue for the Wan VAE (csrc/models/vae.h): private functions of lyra2._core behind lyra2/models/vae.py.
 *
 *   vae_load(weights: dict[str, ndarray], device="cpu", precision=None) -> model capsule ("cuda": weights placed
 *       on the device, stored as `precision`, "bf16" (the default there) or "f32"; its sessions keep caches and
 *       activations there in that dtype and stage each push's frames up and its output down)
 *   vae_info(model) -> (dim, z_dim)
 *   vae_session(model, decoder: bool, n_threads) -> session capsule (keeps the model alive)
 *   vae_plan_session(dim, z_dim, decoder, precision="f32") -> session capsule over a weightless model (dry runs
 *       only), its bytes counted for "f32" or "bf16" storage
 *   vae_push(session, array, constants, first_alone=False, window=-1) -> ndarray
 *       constants: -1 raw, 0 bf16 tables, 1 fp32 tables; window >= 0 (device streams only): the whole array staged
 *       on the device once and pushed in chunks (the lone first frame, then window frames; 0 = all at once)
 *   vae_plan_push(session, (B, C, T, H, W)) -> None  (dry walk; read vae_stats afterwards)
 *   vae_out_frames(session, n) -> frames a push of n frames returns (ValueError for a bad n)
 *   vae_copy(session) -> session capsule
 *   vae_stats(session) -> dict of the last push
 *   vae_constants(constants) -> (mean, inv_std) float32 arrays */
#include "py_netcap.h"

#include "models/vae.h"
#include "nn/ops.h"

#define MODEL_CAPSULE "lyra2.vae.model"
#define SESSION_CAPSULE "lyra2.vae.session"

typedef struct py_session {
    lyra_vae_session *s;
    PyObject *model;      /* model capsule kept alive (NULL for plan sessions) */
    lyra_vae *owned;      /* the weightless model of a plan session */
    int decoder;
    int z_dim;
    lyra_dtype act;       /* the model's storage dtype: device frames are staged in it */
    int busy;             /* a push is running with the GIL released */
} py_session;

static void model_destroy(PyObject *cap) { lyra_vae_free(PyCapsule_GetPointer(cap, MODEL_CAPSULE)); }

static void session_destroy(PyObject *cap) {
    py_session *ps = PyCapsule_GetPointer(cap, SESSION_CAPSULE);
    if (!ps) return;
    lyra_vae_session_free(ps->s);
    lyra_vae_free(ps->owned);
    Py_XDECREF(ps->model);
    PyMem_Free(ps);
}

static PyObject *session_capsule(lyra_vae_session *s, PyObject *model, lyra_vae *owned, int decoder, int z_dim) {
    py_session *ps = PyMem_Calloc(1, sizeof *ps);
    if (!ps) {
        lyra_vae_session_free(s);
        lyra_vae_free(owned);
        return PyErr_NoMemory();
    }
    ps->s = s;
    ps->model = model;
    Py_XINCREF(model);
    ps->owned = owned;
    ps->decoder = decoder;
    ps->z_dim = z_dim;
    ps->act = lyra_vae_precision(owned ? owned : PyCapsule_GetPointer(model, MODEL_CAPSULE));
    PyObject *cap = PyCapsule_New(ps, SESSION_CAPSULE, session_destroy);
    if (!cap) {
        Py_XDECREF(model);
        lyra_vae_session_free(s);
        lyra_vae_free(owned);
        PyMem_Free(ps);
    }
    return cap;
}

/* ---- weights ---- */

static PyObject *py_vae_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dict, *result = NULL;
    const char *device = "cpu", *precision = NULL;
    if (!PyArg_ParseTuple(args, "O!|sz:vae_load", &PyDict_Type, &dict, &device, &precision)) return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    lyra_device dev = strcmp(device, "cuda") ? LYRA_DEVICE_CPU : LYRA_DEVICE_CUDA;
    lyra_dtype act;
    if (lyra_py_precision(precision, dev != LYRA_DEVICE_CPU, LYRA_DTYPE_BF16, &act) < 0) return NULL;
    /* A snapshot: converting a value may run user code (__array__) that changes the dict. float64 is not
     * narrowed: the VAE takes float32/float16 arrays only. */
    lyra_py_wsource ws;
    if (lyra_py_wsource_open(&ws, dict, "vae weights", 0, NULL) < 0) return NULL;
    for (Py_ssize_t i = 0; i < ws.n; i++) {
        PyArrayObject *a = (PyArrayObject *)PyTuple_GET_ITEM(PyList_GET_ITEM(ws.items, i), 1);
        int t = PyArray_TYPE(a);
        if (t != NPY_FLOAT32 && t != NPY_FLOAT16) {
            PyErr_Format(lyra_py_error, "vae weights: tensor '%s' has dtype %s, expected float32 or float16 "
                         "(bf16 checkpoints load as float32)", ws.names[i], PyArray_DESCR(a)->typeobj->tp_name);
            goto finally;
        }
        if (PyArray_NDIM(a) > LYRA_MAX_DIMS) {
            PyErr_Format(lyra_py_error, "vae weights: tensor '%s' has %d dims", ws.names[i], PyArray_NDIM(a));
            goto finally;
        }
    }
    lyra_vae *vae = NULL;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_vae_load(&vae, lyra_py_wsource_lookup, &ws, ws.names, (int)ws.n);
    /* device: the weights go up once here; sessions of the model then run there */
    if (st == LYRA_OK) st = lyra_vae_place(vae, dev, act);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_vae_free(vae);
        lyra_py_raise(st);
        goto finally;
    }
    result = PyCapsule_New(vae, MODEL_CAPSULE, model_destroy);
    if (!result) lyra_vae_free(vae);
finally:
    lyra_py_wsource_free(&ws);
    return result;
}

static PyObject *py_vae_info(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:vae_info", &cap)) return NULL;
    lyra_vae *vae = PyCapsule_GetPointer(cap, MODEL_CAPSULE);
    if (!vae) return NULL;
    return Py_BuildValue("(ii)", lyra_vae_dim(vae), lyra_vae_z_dim(vae));
}

/* ---- sessions ---- */

static PyObject *py_vae_session(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    int decoder, n_threads = 0;
    if (!PyArg_ParseTuple(args, "Op|i:vae_session", &cap, &decoder, &n_threads)) return NULL;
    lyra_vae *vae = PyCapsule_GetPointer(cap, MODEL_CAPSULE);
    if (!vae) return NULL;
    lyra_vae_session *s;
    lyra_status st = lyra_vae_session_new(&s, vae, decoder, n_threads);
    if (st != LYRA_OK) return lyra_py_raise(st);
    return session_capsule(s, cap, NULL, decoder, lyra_vae_z_dim(vae));
}

static PyObject *py_vae_plan_session(PyObject *self, PyObject *args) {
    (void)self;
    int dim, z_dim, decoder;
    const char *precision = "f32";
    if (!PyArg_ParseTuple(args, "iip|s:vae_plan_session", &dim, &z_dim, &decoder, &precision)) return NULL;
    lyra_dtype act;
    if (lyra_py_precision(precision, 1, LYRA_DTYPE_BF16, &act) < 0) return NULL;
    lyra_vae *vae;
    lyra_vae_session *s;
    lyra_status st = lyra_vae_shapes(&vae, dim, z_dim, act);
    if (st != LYRA_OK) return lyra_py_raise(st);
    st = lyra_vae_plan_session(&s, vae, decoder);
    if (st != LYRA_OK) {
        lyra_vae_free(vae);
        return lyra_py_raise(st);
    }
    return session_capsule(s, NULL, vae, decoder, z_dim);
}

/* A stream is ordered state (causal caches advanced by each push, and one Python-level push is several
 * vae_push calls), so a second thread using the same stream meanwhile is refused rather than made to wait:
 * waiting would silently interleave two sequences of pushes. Different streams of one model (read-only
 * weights) run concurrently. (The DiT, text, MoGe and DA3 models instead serialise whole, independent calls
 * with a lock that waits.) */
static py_session *get_session(PyObject *cap) {
    py_session *ps = PyCapsule_GetPointer(cap, SESSION_CAPSULE);
    if (ps && ps->busy) {
        PyErr_SetString(lyra_py_error, "vae: this stream is running a push in another thread");
        return NULL;
    }
    return ps;
}

static lyra_tensor array_tensor(PyArrayObject *a) {
    int64_t ne[LYRA_MAX_DIMS];
    for (int i = 0; i < PyArray_NDIM(a); i++) ne[i] = PyArray_DIMS(a)[i];
    return lyra_tensor_make(PyArray_DATA(a), LYRA_DTYPE_F32, PyArray_NDIM(a), ne);
}

static lyra_status push_one(py_session *ps, const lyra_tensor *x, lyra_tensor *y) {
    return ps->decoder ? lyra_vae_decode_push(ps->s, x, y) : lyra_vae_encode_push(ps->s, x, y);
}

/* Frames [t0, t1) of the staged input as one push, its output appended at frame *o of the staged output. */
static lyra_status push_range(py_session *ps, const lyra_tensor *dx, const lyra_tensor *dy, int64_t t0, int64_t t1,
                              int64_t *o) {
    int64_t m;
    LYRA_TRY(lyra_vae_session_out_frames(ps->s, t1 - t0, &m));
    lyra_tensor xi, yo;
    LYRA_TRY(lyra_tensor_slice(&xi, dx, 2, t0, t1));
    LYRA_TRY(lyra_tensor_slice(&yo, dy, 2, *o, *o + m));
    *o += m;
    return push_one(ps, &xi, &yo);
}

/* A device stream: the call's frames are uploaded once into one device block and pushed as frame ranges of it
 * (the lone first frame when first_alone, then `window` frames at a time, 0 = the rest at once), the outputs are
 * gathered in a second device block and downloaded once: transfers only at the Python boundary. Both blocks hold
 * the model's storage dtype (bf16 frames and latents as upstream TOK:881, TOK:891 casts them; converted on the
 * host around the transfers). */
static lyra_status push_staged(py_session *ps, const lyra_tensor *x, lyra_tensor *y, int first_alone, int64_t window) {
    lyra_backend *be = lyra_vae_session_backend(ps->s);
    const char *stage = ps->decoder ? "Wan VAE decode" : "Wan VAE encode";
    lyra_tensor dx = lyra_tensor_make(NULL, ps->act, 5, x->ne), dy = lyra_tensor_make(NULL, ps->act, 5, y->ne);
    size_t bx = lyra_tensor_nbytes(&dx), by = lyra_tensor_nbytes(&dy);
    void *mx = be->ops->alloc(be, bx), *my = mx ? be->ops->alloc(be, by) : NULL;
    lyra_status st = LYRA_OK;
    if (!mx || !my) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        st = lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes on the %s device for the frames of this call (%s)",
                        stage, bx + by, be->ops->name, why);
        goto done;
    }
    dx.data = mx;
    dy.data = my;
    dx.device = dy.device = be->device;
    dx.name = ps->decoder ? "Wan VAE latents" : "Wan VAE video";
    dy.name = ps->decoder ? "Wan VAE frames" : "Wan VAE mu";
    st = lyra_backend_upload_as(be, &dx, x);
    int64_t n = x->ne[2], t = 0, o = 0, step = window > 0 ? window : n;
    int pushed = 0;
    if (st == LYRA_OK && first_alone) {
        st = push_range(ps, &dx, &dy, 0, 1, &o);
        pushed += st == LYRA_OK;
        t = 1;
    }
    while (st == LYRA_OK && t < n) {
        int64_t e = t + step < n ? t + step : n;
        st = push_range(ps, &dx, &dy, t, e, &o);
        pushed += st == LYRA_OK;
        t = e;
    }
    if (st == LYRA_OK && o != y->ne[2])
        st = lyra_error(LYRA_ERR_INTERNAL, "%s: the pushes returned %lld frames, expected %lld", stage, (long long)o,
                        (long long)y->ne[2]);
    if (st == LYRA_OK) st = lyra_backend_download_as(be, y, &dy);
    /* Failed after some pushes advanced the caches: the call cannot be retried on this stream. (A failure in the
     * first push leaves it usable: sessions reserve their arena before any cache moves.) */
    if (st != LYRA_OK && pushed) lyra_vae_session_abandon(ps->s);
done:
    if (mx) be->ops->release(be, mx);
    if (my) be->ops->release(be, my);
    return st;
}

static PyObject *py_vae_push(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *obj, *result = NULL;
    int constants, first_alone = 0;
    long long window = -1;
    if (!PyArg_ParseTuple(args, "OOi|pL:vae_push", &cap, &obj, &constants, &first_alone, &window)) return NULL;
    py_session *ps = get_session(cap);
    if (!ps) return NULL;
    int staged = window >= 0;
    if (staged && lyra_vae_session_backend(ps->s)->device == LYRA_DEVICE_CPU) {
        PyErr_SetString(PyExc_ValueError, "vae: chunked pushes (window) are for device streams; push host chunks "
                        "one by one");
        return NULL;
    }
    if (ps->owned) {
        PyErr_SetString(PyExc_ValueError, "vae: a plan session has no weights; use vae_plan_push");
        return NULL;
    }
    if (constants < -1 || constants > 1) {
        PyErr_SetString(PyExc_ValueError, "vae: constants must be -1 (raw), 0 (bf16) or 1 (fp32)");
        return NULL;
    }
    if (constants >= 0 && ps->z_dim != 16) {
        /* Checked before the push: failing after it would leave the caches advanced with no output. */
        PyErr_Format(PyExc_ValueError, "vae: latent normalisation tables exist for z_dim 16 only, this model has "
                     "%d; push raw latents", ps->z_dim);
        return NULL;
    }
    const char *what = ps->decoder ? "latents" : "video";
    PyArrayObject *in = lyra_py_array(obj, NPY_FLOAT32, 5, what);
    if (!in) return NULL;
    int64_t want_c = ps->decoder ? ps->z_dim : 3;
    if (PyArray_DIM(in, 1) != want_c) {
        PyErr_Format(PyExc_ValueError, "vae: %s has %lld channels (shape axis 1), expected %lld", what,
                     (long long)PyArray_DIM(in, 1), (long long)want_c);
        Py_DECREF(in);
        return NULL;
    }
    if (ps->decoder && constants >= 0) {
        /* De-normalise a private copy: the caller's latents stay as they are. */
        PyArrayObject *c = (PyArrayObject *)PyArray_NewCopy(in, NPY_CORDER);
        Py_DECREF(in);
        if (!c) return NULL;
        in = c;
        lyra_tensor z = array_tensor(in);
        lyra_status st = lyra_vae_denormalize(&z, (lyra_vae_constants)constants);
        if (st != LYRA_OK) { lyra_py_raise(st); goto finally; }
    }
    const npy_intp *d = PyArray_DIMS(in);
    int64_t T;
    lyra_status st = lyra_vae_session_out_frames(ps->s, d[2], &T);
    if (st != LYRA_OK) { lyra_py_raise(st); goto finally; }
    npy_intp od[5] = {d[0], ps->decoder ? 3 : 0, (npy_intp)T, ps->decoder ? d[3] * 8 : d[3] / 8,
                      ps->decoder ? d[4] * 8 : d[4] / 8};
    if (!ps->decoder) od[1] = ps->z_dim;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(5, od, NPY_FLOAT32);
    if (!out) goto finally;
    lyra_tensor x = array_tensor(in), y = array_tensor(out);
    ps->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = staged ? push_staged(ps, &x, &y, first_alone, (int64_t)window) : push_one(ps, &x, &y);
    if (st == LYRA_OK && !ps->decoder && constants >= 0) st = lyra_vae_normalize(&y, (lyra_vae_constants)constants);
    Py_END_ALLOW_THREADS
    ps->busy = 0;
    if (st != LYRA_OK) {
        Py_DECREF(out);
        lyra_py_raise(st);
        goto finally;
    }
    result = (PyObject *)out;
finally:
    Py_DECREF(in);
    return result;
}

static PyObject *py_vae_plan_push(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    long long B, C, T, H, W;
    if (!PyArg_ParseTuple(args, "O(LLLLL):vae_plan_push", &cap, &B, &C, &T, &H, &W)) return NULL;
    py_session *ps = get_session(cap);
    if (!ps) return NULL;
    if (!ps->owned) {
        PyErr_SetString(PyExc_ValueError, "vae: vae_plan_push needs a plan session");
        return NULL;
    }
    int64_t T_out;
    lyra_status st = lyra_vae_session_out_frames(ps->s, T, &T_out);
    if (st != LYRA_OK) return lyra_py_raise(st);
    int z = lyra_vae_z_dim(ps->owned);
    lyra_tensor x = lyra_tensor_5d(NULL, LYRA_DTYPE_F32, B, C, T, H, W);
    lyra_tensor y = ps->decoder ? lyra_tensor_5d(NULL, LYRA_DTYPE_F32, B, 3, T_out, 8 * H, 8 * W)
                                : lyra_tensor_5d(NULL, LYRA_DTYPE_F32, B, z, T_out, H / 8, W / 8);
    st = ps->decoder ? lyra_vae_decode_push(ps->s, &x, &y) : lyra_vae_encode_push(ps->s, &x, &y);
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_vae_out_frames(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    long long n;
    if (!PyArg_ParseTuple(args, "OL:vae_out_frames", &cap, &n)) return NULL;
    py_session *ps = PyCapsule_GetPointer(cap, SESSION_CAPSULE);
    if (!ps) return NULL;
    int64_t out;
    lyra_status st = lyra_vae_session_out_frames(ps->s, n, &out);
    if (st != LYRA_OK) return lyra_py_raise(st);
    return PyLong_FromLongLong(out);
}

/* vae_park(session): the stream's causal caches to host memory until its next push (lyra_vae_session_park). */
static PyObject *py_vae_park(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:vae_park", &cap)) return NULL;
    py_session *ps = get_session(cap);
    if (!ps) return NULL;
    lyra_status st = lyra_vae_session_park(ps->s);
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_vae_copy(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:vae_copy", &cap)) return NULL;
    py_session *ps = get_session(cap);
    if (!ps) return NULL;
    lyra_vae_session *s;
    lyra_status st = lyra_vae_session_copy(&s, ps->s);
    if (st != LYRA_OK) return lyra_py_raise(st);
    lyra_vae *owned = NULL;
    if (ps->owned) {
        /* A plan session's weightless model belongs to its capsule: the copy gets its own. */
        st = lyra_vae_shapes(&owned, lyra_vae_dim(ps->owned), lyra_vae_z_dim(ps->owned), lyra_vae_precision(ps->owned));
        if (st != LYRA_OK) {
            lyra_vae_session_free(s);
            return lyra_py_raise(st);
        }
    }
    return session_capsule(s, ps->model, owned, ps->decoder, ps->z_dim);
}

static int set_item(PyObject *d, const char *k, PyObject *v) {
    if (!v) return -1;
    int r = PyDict_SetItemString(d, k, v);
    Py_DECREF(v);
    return r;
}

static PyObject *shape4(const int64_t *s) { return Py_BuildValue("(LLLL)", s[0], s[1], s[2], s[3]); }

static PyObject *py_vae_stats(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:vae_stats", &cap)) return NULL;
    py_session *ps = get_session(cap);
    if (!ps) return NULL;
    const lyra_vae_stats *st = lyra_vae_session_stats(ps->s);
    PyObject *d = PyDict_New(), *layers = PyList_New(0);
    if (!d || !layers) goto fail;
    for (int i = 0; i < st->n_layers; i++) {
        const lyra_vae_layer_stats *l = &st->layer[i];
        PyObject *ld = PyDict_New();
        if (!ld || PyList_Append(layers, ld) < 0) { Py_XDECREF(ld); goto fail; }
        Py_DECREF(ld);
        if (set_item(ld, "name", PyUnicode_FromString(l->name)) < 0 ||
            set_item(ld, "kind", PyUnicode_FromString(l->kind)) < 0 || set_item(ld, "in", shape4(l->in)) < 0 ||
            set_item(ld, "out", shape4(l->out)) < 0 || set_item(ld, "flops", PyFloat_FromDouble(l->flops)) < 0 ||
            set_item(ld, "elementwise", PyFloat_FromDouble(l->elementwise)) < 0 ||
            set_item(ld, "out_bytes", PyLong_FromSize_t(l->out_bytes)) < 0 ||
            set_item(ld, "temp_bytes", PyLong_FromSize_t(l->temp_bytes)) < 0 ||
            set_item(ld, "cache_bytes", PyLong_FromSize_t(l->cache_bytes)) < 0 ||
            set_item(ld, "im2col_bytes", PyLong_FromSize_t(l->im2col_bytes)) < 0 ||
            set_item(ld, "score_bytes", PyLong_FromSize_t(l->score_bytes)) < 0)
            goto fail;
    }
    if (set_item(d, "layers", layers) < 0) { layers = NULL; goto fail; }
    layers = NULL;
    if (set_item(d, "stream_bytes", PyLong_FromSize_t(st->stream_bytes)) < 0 ||
        set_item(d, "arena_peak", PyLong_FromSize_t(st->arena_peak)) < 0 ||
        set_item(d, "cache_bytes", PyLong_FromSize_t(st->cache_bytes)) < 0 ||
        set_item(d, "session_arena_peak", PyLong_FromSize_t(lyra_vae_session_arena_peak(ps->s))) < 0)
        goto fail;
    return d;
fail:
    Py_XDECREF(layers);
    Py_XDECREF(d);
    return NULL;
}

static PyObject *py_vae_constants(PyObject *self, PyObject *args) {
    (void)self;
    int which;
    if (!PyArg_ParseTuple(args, "i:vae_constants", &which)) return NULL;
    npy_intp n = 16;
    PyArrayObject *m = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    PyArrayObject *s = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    if (!m || !s) goto fail;
    lyra_status st = lyra_vae_latent_constants((lyra_vae_constants)which, 16, PyArray_DATA(m), PyArray_DATA(s));
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto fail;
    }
    return Py_BuildValue("(NN)", m, s);
fail:
    Py_XDECREF(m);
    Py_XDECREF(s);
    return NULL;
}

static PyMethodDef vae_methods[] = {
    {"vae_load", py_vae_load, METH_VARARGS, "Wan VAE weights (dict of upstream names) -> model capsule."},
    {"vae_info", py_vae_info, METH_VARARGS, "(dim, z_dim) of a model capsule."},
    {"vae_session", py_vae_session, METH_VARARGS, "New encoder/decoder stream over a model."},
    {"vae_park", py_vae_park, METH_VARARGS, "Parks a stream's causal caches in host memory until its next push."},
    {"vae_plan_session", py_vae_plan_session, METH_VARARGS, "Dry stream over a weightless model of given widths."},
    {"vae_push", py_vae_push, METH_VARARGS, "Push frames through a stream; returns its output frames."},
    {"vae_plan_push", py_vae_plan_push, METH_VARARGS, "Dry push of a (B, C, T, H, W) input shape."},
    {"vae_out_frames", py_vae_out_frames, METH_VARARGS, "Frames a push of n frames returns (validates n)."},
    {"vae_copy", py_vae_copy, METH_VARARGS, "Deep copy of a stream (caches included)."},
    {"vae_stats", py_vae_stats, METH_VARARGS, "Per-layer FLOPs and bytes of the last push."},
    {"vae_constants", py_vae_constants, METH_VARARGS, "Latent (mean, inv_std) tables: 0 bf16, 1 fp32."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_vae(PyObject *m) { return PyModule_AddFunctions(m, vae_methods); }
