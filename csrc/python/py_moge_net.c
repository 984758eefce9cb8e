/* Python glue for the MoGe network (models/moge.c; private functions of lyra2._core; public class
 * lyra2.models.moge.MoGe). The host geometry after it is in py_moge_geom.c.
 *
 * A loaded network is a capsule owning the weights (one carved allocation), a CPU backend and an activation
 * arena; calls on one capsule are serialised by a lock. Weights come from a safetensors path (mmap, copied once,
 * keeping bf16/f16 storage) or a mapping name -> array (snapshotted by lyra_py_named_arrays). */
#include "py_netcap.h"

#include <string.h>

#include "models/moge.h"

/* ---------------------------------------------------------------- the network capsule */

static const char *CAPSULE = "lyra2._core.moge";

typedef struct mogenet {
    lyra_py_netcap net; /* first: the capsule glue (lock, backend, arena), see py_netcap.h */
    lyra_moge moge;
} mogenet;

static void mogenet_free_model(lyra_py_netcap *net) { lyra_moge_free(&((mogenet *)net)->moge); }

/* arg: the lyra_moge_options. */
static lyra_status mogenet_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    return lyra_moge_load(&((mogenet *)net)->moge, src, arg);
}

/* lyra_py_netcap_place's callback: the weights to net->be. */
static lyra_status moge_place(lyra_py_netcap *net, lyra_dtype act) {
    mogenet *t = (mogenet *)net;
    return lyra_moge_place(&t->moge, &t->net.be, act);
}

/* moge_load(weights, heads, tokens_min, tokens_max, mask_threshold, device="cpu") -> network; "cuda" moves the
 * network to the device backend and uploads its weights once (lyra_moge_place). */
static PyObject *py_moge_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    lyra_moge_options opt = {0};
    long long heads, tmin, tmax;
    double thr;
    const char *device = "cpu", *precision = NULL;
    if (!PyArg_ParseTuple(args, "OLLLd|sz:moge_load", &weights, &heads, &tmin, &tmax, &thr, &device, &precision))
        return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    lyra_dtype autocast;
    if (lyra_py_precision(precision, !strcmp(device, "cuda"), LYRA_DTYPE_F16, &autocast) < 0) return NULL;
    opt.heads = heads, opt.tokens_min = tmin, opt.tokens_max = tmax, opt.mask_threshold = (float)thr;
    PyObject *cap = lyra_py_netcap_load(weights, NULL, sizeof(mogenet), mogenet_free_model, mogenet_load, &opt,
                                        CAPSULE);
    return lyra_py_netcap_place(cap, CAPSULE, device, moge_place, autocast);
}

static PyObject *int_list(const int64_t *v, int64_t n) {
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (Py_ssize_t i = 0; l && i < (Py_ssize_t)n; i++) {
        PyObject *o = PyLong_FromLongLong(v[i]);
        if (!o) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, i, o);
    }
    return l;
}

static PyObject *config_dict(const lyra_moge_config *c, const lyra_vit_config *v) {
    return Py_BuildValue(
        "{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:N,s:N,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:d}", "dim", (long long)v->dim,
        "depth", (long long)v->depth, "heads", (long long)v->heads, "mlp", (long long)v->ffn_hidden, "patch",
        (long long)v->patch, "pos_grid", (long long)v->pos_grid, "n_features", (long long)c->n_features, "dim_proj",
        (long long)c->dim_proj, "dim_up", int_list(c->dim_up, c->n_stages), "hidden",
        int_list(c->hidden, c->n_stages), "n_res", (long long)c->n_res, "last_ch", (long long)c->last_ch,
        "last_res", (long long)c->last_res, "last_hidden", (long long)c->last_hidden, "last_k",
        (long long)c->last_k, "tokens_min", (long long)c->opt.tokens_min, "tokens_max",
        (long long)c->opt.tokens_max, "mask_threshold", (double)c->opt.mask_threshold);
}

static mogenet *get_net(PyObject *cap) { return PyCapsule_GetPointer(cap, CAPSULE); }

static PyObject *py_moge_config(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:moge_config", &cap)) return NULL;
    mogenet *t = get_net(cap);
    return t ? config_dict(&t->moge.cfg, &t->moge.vit.cfg) : NULL;
}

static PyArrayObject *new_f32(int nd, npy_intp *dims) { return (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_FLOAT32); }

/* moge_run(net, image float32 (3, H, W), debug) -> dict of the infer() outputs (+ intermediates when debug) */
static PyObject *py_moge_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *img_obj, *res = NULL;
    int debug;
    if (!PyArg_ParseTuple(args, "OOp:moge_run", &cap, &img_obj, &debug)) return NULL;
    mogenet *t = get_net(cap);
    if (!t) return NULL;
    PyArrayObject *img = lyra_py_array(img_obj, NPY_FLOAT32, 3, "image");
    if (!img) return NULL;
    PyArrayObject *raw = NULL, *fwd = NULL, *depth = NULL, *mask = NULL, *K = NULL, *pts = NULL;
    PyArrayObject *dbg[4 + LYRA_MOGE_MAX_STAGES] = {NULL};
    const lyra_moge_config *c = &t->moge.cfg;
    npy_intp H = PyArray_DIM(img, 1), W = PyArray_DIM(img, 2);
    lyra_moge_geometry g;
    if (PyArray_DIM(img, 0) != 3) {
        PyErr_Format(PyExc_ValueError, "image must be (3, H, W) float32 in [0, 1], got %zd channels",
                     (Py_ssize_t)PyArray_DIM(img, 0));
        goto finally;
    }
    lyra_status s = lyra_moge_geometry_of(c, H, W, &g);
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    npy_intp d4[3] = {4, H, W}, d2[2] = {H, W}, d3[3] = {H, W, 3}, dk[2] = {3, 3};
    raw = new_f32(3, d4), fwd = new_f32(3, d3), depth = new_f32(2, d2), K = new_f32(2, dk), pts = new_f32(3, d3);
    mask = (PyArrayObject *)PyArray_SimpleNew(2, d2, NPY_BOOL);
    if (!raw || !fwd || !depth || !mask || !K || !pts) goto finally;
    lyra_moge_capture capt;
    memset(&capt, 0, sizeof capt);
    if (debug) {
        npy_intp a[3] = {3, g.h1, g.w1}, b[3] = {3, g.h14, g.w14}, tp[3] = {c->n_features, g.gh * g.gw, c->dim},
                 hd[3] = {4, g.h1, g.w1};
        dbg[0] = new_f32(3, a), dbg[1] = new_f32(3, b), dbg[2] = new_f32(3, tp), dbg[3] = new_f32(3, hd);
        for (int i = 0; i < 4; i++)
            if (!dbg[i]) goto finally;
        capt.image_resized = PyArray_DATA(dbg[0]), capt.image_14 = PyArray_DATA(dbg[1]);
        capt.taps = PyArray_DATA(dbg[2]), capt.head = PyArray_DATA(dbg[3]);
        for (int b2 = 0; b2 < (int)c->n_stages; b2++) {
            npy_intp sd[3] = {c->dim_up[b2], g.gh << (b2 + 1), g.gw << (b2 + 1)};
            if (!(dbg[4 + b2] = new_f32(3, sd))) goto finally;
            capt.stages[b2] = PyArray_DATA(dbg[4 + b2]);
        }
    }
    float focal = 0, shift = 0;
    size_t need = lyra_moge_arena_bytes(c, &t->moge.vit.cfg, H, W), peak = 0;
    const float *image = PyArray_DATA(img);
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        s = lyra_py_netcap_arena(&t->net, need);
        t->net.arena.peak = 0;
        if (s == LYRA_OK)
            s = lyra_moge_forward(&t->moge, &t->net.be, &t->net.arena, image, H, W, PyArray_DATA(raw), &capt);
        peak = t->net.arena.peak;
    });
    if (s == LYRA_OK) { /* post-processing of this call's own arrays: no lock */
        Py_BEGIN_ALLOW_THREADS
        s = lyra_moge_infer(PyArray_DATA(raw), H, W, c->opt.mask_threshold, PyArray_DATA(fwd), PyArray_DATA(depth),
                            PyArray_DATA(mask), PyArray_DATA(K), PyArray_DATA(pts), &focal, &shift);
        Py_END_ALLOW_THREADS
    }
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    PyObject *mask_logit = PySequence_GetItem((PyObject *)raw, 3);
    if (!mask_logit) goto finally;
    res = Py_BuildValue("{s:O,s:O,s:O,s:O,s:O,s:N,s:d,s:d,s:L,s:n,s:n}", "depth", depth, "mask", mask, "intrinsics", K,
                        "points", pts, "fwd_points", fwd, "fwd_mask", mask_logit, "focal", (double)focal, "shift",
                        (double)shift, "num_tokens", (long long)g.tokens, "arena_peak", (Py_ssize_t)peak,
                        "arena_bytes", (Py_ssize_t)need);
    if (res && debug) {
        PyObject *stages = PyList_New(c->n_stages);
        if (!stages) goto fail;
        for (int b2 = 0; b2 < (int)c->n_stages; b2++) {
            Py_INCREF(dbg[4 + b2]);
            PyList_SET_ITEM(stages, b2, (PyObject *)dbg[4 + b2]);
        }
        if (PyDict_SetItemString(res, "image_resized", (PyObject *)dbg[0]) < 0 ||
            PyDict_SetItemString(res, "image_14", (PyObject *)dbg[1]) < 0 ||
            PyDict_SetItemString(res, "taps", (PyObject *)dbg[2]) < 0 ||
            PyDict_SetItemString(res, "head", (PyObject *)dbg[3]) < 0 ||
            PyDict_SetItemString(res, "stages", stages) < 0) {
            Py_DECREF(stages);
            goto fail;
        }
        Py_DECREF(stages);
    }
    goto finally;
fail:
    Py_CLEAR(res);
finally:
    Py_XDECREF(img);
    Py_XDECREF(raw);
    Py_XDECREF(fwd);
    Py_XDECREF(depth);
    Py_XDECREF(mask);
    Py_XDECREF(K);
    Py_XDECREF(pts);
    for (int i = 0; i < 4 + LYRA_MOGE_MAX_STAGES; i++) Py_XDECREF(dbg[i]);
    return res;
}

static int dict_list(PyObject *d, const char *key, int64_t *v, int64_t *n) {
    PyObject *o = PyDict_GetItemString(d, key);
    PyObject *seq = o ? PySequence_Fast(o, "config: expected a list") : NULL;
    if (!seq) {
        if (!o) PyErr_Format(PyExc_KeyError, "config: missing '%s'", key);
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (len < 1 || len > LYRA_MOGE_MAX_STAGES) {
        PyErr_Format(PyExc_ValueError, "config: '%s' must list 1..%d stages", key, LYRA_MOGE_MAX_STAGES);
        rc = -1;
    }
    for (Py_ssize_t i = 0; rc == 0 && i < len; i++) {
        v[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v[i] < 1) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "config: '%s' entries must be >= 1", key);
            rc = -1;
        }
    }
    if (n) *n = len;
    Py_DECREF(seq);
    return rc;
}

/* moge_plan(config dict as moge_config returns, H, W, precision="f32") -> {params, flops, arena_bytes,
 * weight_bytes, tokens, h1, w1, h14, w14}, for a model placed as precision ("f32", or "f16" on a device) */
static PyObject *py_moge_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    long long H, W;
    const char *precision = "f32";
    if (!PyArg_ParseTuple(args, "O!LL|s:moge_plan", &PyDict_Type, &d, &H, &W, &precision)) return NULL;
    lyra_dtype autocast;
    if (lyra_py_precision(precision, 1, LYRA_DTYPE_F16, &autocast) < 0) return NULL;
    lyra_moge_config c;
    lyra_vit_config v;
    memset(&c, 0, sizeof c);
    memset(&v, 0, sizeof v);
    int64_t n_hidden = 0;
    if (lyra_py_cfg_int(d, "dim", &v.dim) || lyra_py_cfg_int(d, "depth", &v.depth) ||
        lyra_py_cfg_int(d, "heads", &v.heads) || lyra_py_cfg_int(d, "mlp", &v.ffn_hidden) ||
        lyra_py_cfg_int(d, "patch", &v.patch) || lyra_py_cfg_int(d, "pos_grid", &v.pos_grid) ||
        lyra_py_cfg_int(d, "n_features", &c.n_features) || lyra_py_cfg_int(d, "dim_proj", &c.dim_proj) ||
        dict_list(d, "dim_up", c.dim_up, &c.n_stages) || dict_list(d, "hidden", c.hidden, &n_hidden) ||
        lyra_py_cfg_int(d, "n_res", &c.n_res) || lyra_py_cfg_int(d, "last_ch", &c.last_ch) ||
        lyra_py_cfg_int(d, "last_res", &c.last_res) || lyra_py_cfg_int(d, "last_hidden", &c.last_hidden) ||
        lyra_py_cfg_int(d, "last_k", &c.last_k) || lyra_py_cfg_int(d, "tokens_min", &c.opt.tokens_min) ||
        lyra_py_cfg_int(d, "tokens_max", &c.opt.tokens_max))
        return NULL;
    if (n_hidden != c.n_stages || v.heads < 1 || v.dim % v.heads || v.depth < c.n_features) {
        PyErr_SetString(PyExc_ValueError, "config: 'hidden' must match 'dim_up', heads must divide dim, and "
                                          "n_features <= depth");
        return NULL;
    }
    c.dim = v.dim;
    v.head_dim = v.dim / v.heads;
    v.ffn = LYRA_VIT_FFN_MLP;
    v.layer_scale = 1;
    v.qk_norm_start = -1;
    v.opt = lyra_vit_default_options(v.heads);
    v.gemm = autocast;
    lyra_moge_geometry g;
    lyra_status s = lyra_moge_geometry_of(&c, H, W, &g);
    if (s != LYRA_OK) return lyra_py_raise(s);
    return Py_BuildValue("{s:L,s:d,s:n,s:n,s:L,s:L,s:L,s:L,s:L}", "params", (long long)lyra_moge_params(&c, &v),
                         "flops", lyra_moge_flops(&c, &v, H, W), "arena_bytes",
                         (Py_ssize_t)lyra_moge_arena_bytes(&c, &v, H, W), "weight_bytes",
                         (Py_ssize_t)lyra_moge_weight_bytes(&c, &v),
                         "tokens", (long long)g.tokens, "h1", (long long)g.h1, "w1", (long long)g.w1, "h14",
                         (long long)g.h14, "w14", (long long)g.w14);
}

static PyMethodDef moge_net_methods[] = {
    {"moge_load", py_moge_load, METH_VARARGS,
     "moge_load(weights, heads, tokens_min, tokens_max, mask_threshold) -> network (private; lyra2.models.moge)"},
    {"moge_config", py_moge_config, METH_VARARGS, "moge_config(net) -> dict"},
    {"moge_run", py_moge_run, METH_VARARGS, "moge_run(net, image (3, H, W), debug) -> dict"},
    {"moge_plan", py_moge_plan, METH_VARARGS, "moge_plan(config, H, W) -> {params, flops, arena_bytes, ...}"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_moge_net(PyObject *m) { return PyModule_AddFunctions(m, moge_net_methods); }
