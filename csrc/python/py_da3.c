/* Python glue for Depth Anything 3 nested (private functions of lyra2._core; the public class is
 * lyra2/models/depth.py). The generic-ViT probe the tests use is in the test-only extension (csrc/testing/py_vit.c).
 *
 * A loaded DA3 is a capsule owning the weights (one carved allocation; a safetensors file keeps its bf16/f16
 * storage for the GEMM matrices), a CPU backend and an activation arena; calls on one capsule are serialised by a
 * lock. Weight names may carry the HF / Lyra checkpoint prefix "model." (stripped here). */
#include "py_netcap.h"

#include <string.h>

#include "models/da3.h"
#include "models/vit.h"
#include "nn/ops.h"

/* ---------------------------------------------------------------- helpers */

static PyArrayObject *new_f32(int nd, npy_intp *dims) {
    return (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_FLOAT32);
}

static float *f32(PyArrayObject *a) { return a ? (float *)PyArray_DATA(a) : NULL; }

static int parse_taps(PyObject *obj, int *taps, const char *what) {
    memset(taps, 0, 4 * sizeof *taps);
    if (obj == Py_None) return 0;
    PyObject *seq = PySequence_Fast(obj, "taps must be a sequence of 4 ints");
    if (!seq) return -1;
    int ok = PySequence_Fast_GET_SIZE(seq) == 4;
    for (int k = 0; ok && k < 4; k++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, k));
        if (v == -1 && PyErr_Occurred()) ok = 0;
        taps[k] = (int)v;
    }
    Py_DECREF(seq);
    if (!ok) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%s must be 4 block indices", what);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- DA3 network */

static const char *CAPSULE = "lyra2._core.da3";

typedef struct da3net {
    lyra_py_netcap net; /* first: the capsule glue (lock, backend, arena), see py_netcap.h */
    lyra_da3 m;
} da3net;

static void da3net_free_model(lyra_py_netcap *net) { lyra_da3_free(&((da3net *)net)->m); }

/* arg: the lyra_da3_options. */
static lyra_status da3net_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    return lyra_da3_load(&((da3net *)net)->m, src, arg);
}

/* lyra_py_netcap_place's callback: the weights to net->be. */
static lyra_status da3_place(lyra_py_netcap *net, lyra_dtype act) {
    da3net *t = (da3net *)net;
    return lyra_da3_place(&t->m, &t->net.be, act);
}

const lyra_da3 *lyra_py_da3_borrow(PyObject *cap, lyra_py_netcap **net) {
    da3net *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    *net = &t->net;
    return &t->m;
}

static PyObject *py_da3_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights, *av_taps = Py_None, *met_taps = Py_None;
    long long av_heads = 0, met_heads = 0, ce_heads = 0;
    const char *device = "cpu", *precision = NULL;
    if (!PyArg_ParseTuple(args, "O|LLLOOsz:da3_load", &weights, &av_heads, &met_heads, &ce_heads, &av_taps, &met_taps,
                          &device, &precision))
        return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    lyra_dtype autocast;
    if (lyra_py_precision(precision, !strcmp(device, "cuda"), LYRA_DTYPE_BF16, &autocast) < 0) return NULL;
    lyra_da3_options opt = {.anyview_heads = av_heads, .metric_heads = met_heads, .cam_enc_heads = ce_heads};
    if (parse_taps(av_taps, opt.anyview_taps, "taps") < 0 || parse_taps(met_taps, opt.metric_taps, "metric_taps") < 0)
        return NULL;
    PyObject *cap = lyra_py_netcap_load(weights, "model.", sizeof(da3net), da3net_free_model, da3net_load, &opt,
                                        CAPSULE);
    return lyra_py_netcap_place(cap, CAPSULE, device, da3_place, autocast);
}

static PyObject *vit_cfg_dict(const lyra_vit_config *c) {
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:s,s:i,s:i}", "dim", (long long)c->dim, "depth",
                         (long long)c->depth, "heads", (long long)c->heads, "patch", (long long)c->patch, "pos_grid",
                         (long long)c->pos_grid, "ffn_hidden", (long long)c->ffn_hidden, "ffn",
                         c->ffn == LYRA_VIT_FFN_SWIGLU ? "swiglu" : "mlp", "qk_norm_start", c->qk_norm_start,
                         "alt_start", c->opt.alt_start);
}

static PyObject *py_da3_config(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:da3_config", &cap)) return NULL;
    da3net *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    const lyra_da3 *m = &t->m;
    const int *a = m->opt.anyview_taps, *b = m->opt.metric_taps;
    const int64_t *oc = m->head.oc;
    return Py_BuildValue("{s:N,s:N,s:(iiii),s:(iiii),s:L,s:L,s:(LLLL),s:i,s:L,s:L,s:L}", "anyview",
                         vit_cfg_dict(&m->anyview.cfg), "metric", vit_cfg_dict(&m->metric.cfg), "taps", a[0], a[1],
                         a[2], a[3], "metric_taps", b[0], b[1], b[2], b[3], "features", (long long)m->head.features,
                         "metric_features", (long long)m->metric_head.features, "out_channels", (long long)oc[0],
                         (long long)oc[1], (long long)oc[2], (long long)oc[3], "camera_encoder", m->has_cam_enc,
                         "cam_enc_depth", (long long)m->cam_enc.trunk.cfg.depth, "cam_enc_heads",
                         (long long)m->cam_enc.trunk.cfg.heads, "params", (long long)lyra_da3_params(m));
}

/* {params, flops, arena_bytes, weight_bytes}: weight_bytes as placed on a device, the backbones' GEMM matrices in
 * their autocast dtype (cfg.gemm) and everything else f32. */
static PyObject *plan_dict(const lyra_da3 *m, long long S, long long h, long long w, int poses) {
    int64_t params = lyra_da3_params(m);
    size_t weight_bytes = (size_t)params * 4;
    const lyra_vit_config *vc[2] = {&m->anyview.cfg, &m->metric.cfg};
    for (int i = 0; i < 2; i++)
        weight_bytes -= (size_t)lyra_vit_gemm_params(vc[i]) * (4 - lyra_dtype_size(vc[i]->gemm));
    return Py_BuildValue("{s:L,s:d,s:K,s:K}", "params", (long long)params, "flops", lyra_da3_flops(m, S, h, w, poses),
                         "arena_bytes", (unsigned long long)lyra_da3_arena_bytes(m, S, h, w), "weight_bytes",
                         (unsigned long long)weight_bytes);
}

/* da3_plan(cap, S, h, w, poses[, precision]): the cost model of a loaded DA3; with `precision` ("f32", "bf16",
 * "f16": the autocast of a device placement) weight_bytes are what that placement allocates for this model's
 * loaded tensors (lyra_vit_wlist_placed_bytes: GEMM weights in the autocast dtype, the rest in its loaded dtype,
 * alignment included) instead of the no-weights count. */
static PyObject *py_da3_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    long long S, h, w;
    int poses;
    const char *precision = NULL;
    if (!PyArg_ParseTuple(args, "OLLLp|s:da3_plan", &cap, &S, &h, &w, &poses, &precision)) return NULL;
    da3net *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    if (S < 1 || h < 14 || w < 14 || h % 14 || w % 14) {
        PyErr_SetString(PyExc_ValueError, "da3_plan: need S >= 1 and h, w positive multiples of 14");
        return NULL;
    }
    PyObject *d = plan_dict(&t->m, S, h, w, poses);
    if (!d || !precision) return d;
    lyra_dtype autocast;
    if (lyra_py_precision(precision, 1, LYRA_DTYPE_BF16, &autocast) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    lyra_vit *vits[2] = {&t->m.anyview, &t->m.metric};
    PyObject *wb = PyLong_FromSize_t(lyra_vit_wlist_placed_bytes(&t->m.wlist, vits, 2, autocast));
    if (!wb || PyDict_SetItemString(d, "weight_bytes", wb) < 0) {
        Py_XDECREF(wb);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(wb);
    return d;
}

/* da3_arena(cap, S, h, w, poses) -> (measured arena bytes, lyra_da3_arena_bytes): the forward on the measuring
 * backend of the model's device, against the cost model the forward reserves. */
static PyObject *py_da3_arena(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    long long S, h, w;
    int poses;
    if (!PyArg_ParseTuple(args, "OLLLp:da3_arena", &cap, &S, &h, &w, &poses)) return NULL;
    da3net *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    if (S < 1 || h < 14 || w < 14 || h % 14 || w % 14) {
        PyErr_SetString(PyExc_ValueError, "da3_arena: need S >= 1 and h, w positive multiples of 14");
        return NULL;
    }
    size_t need = 0;
    lyra_status s;
    LYRA_PY_NETCAP_LOCKED(&t->net, { s = lyra_da3_arena_measure(&t->m, t->net.be.device, S, h, w, poses, &need); });
    if (s != LYRA_OK) return lyra_py_raise(s);
    return Py_BuildValue("(KK)", (unsigned long long)need, (unsigned long long)lyra_da3_arena_bytes(&t->m, S, h, w));
}

static int dict_int(PyObject *d, const char *key, long long *v) {
    PyObject *o = PyDict_GetItemString(d, key);
    if (!o) {
        PyErr_Format(PyExc_KeyError, "da3_cost: missing size '%s'", key);
        return -1;
    }
    *v = PyLong_AsLongLong(o);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* The cost model without weights: a lyra_da3 whose configuration is filled from `sizes` (the released layout:
 * SwiGLU any-view ViT with alternating attention from alt_start, GELU-MLP metric ViT, DualDPT + DPT with sky,
 * CameraEnc trunk, CameraDec), so lyra_da3_params / _flops / _arena_bytes give the real-size plan. */
static PyObject *py_da3_cost(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    long long S, h, w;
    int poses;
    const char *precision = "f32";
    if (!PyArg_ParseTuple(args, "O!LLLp|s:da3_cost", &PyDict_Type, &d, &S, &h, &w, &poses, &precision)) return NULL;
    lyra_dtype autocast;
    if (lyra_py_precision(precision, 1, LYRA_DTYPE_BF16, &autocast) < 0) return NULL;
    static const char *keys[] = {"dim", "depth", "heads", "ffn_hidden", "pos_grid", "alt_start", "metric_dim",
                                 "metric_depth", "metric_heads", "metric_ffn_hidden", "features", "oc0", "oc1", "oc2",
                                 "oc3", "cam_enc_depth", "cam_enc_heads", "tap3", "metric_tap3"};
    long long v[19];
    for (int i = 0; i < 19; i++)
        if (dict_int(d, keys[i], &v[i]) < 0) return NULL;
    if (S < 1 || h < 14 || w < 14 || h % 14 || w % 14 || v[0] < 1 || v[2] < 1 || v[6] < 1 || v[8] < 1 || v[16] < 1) {
        PyErr_SetString(PyExc_ValueError, "da3_cost: sizes must be positive, h and w multiples of 14");
        return NULL;
    }
    lyra_da3 m;
    memset(&m, 0, sizeof m);
    lyra_vit_config *a = &m.anyview.cfg, *mc = &m.metric.cfg, *ce = &m.cam_enc.trunk.cfg;
    *a = (lyra_vit_config){.dim = v[0], .depth = v[1], .heads = v[2], .head_dim = v[0] / v[2], .patch = 14,
                           .pos_grid = v[4], .cam_tokens = 2, .ffn_hidden = v[3], .ffn = LYRA_VIT_FFN_SWIGLU,
                           .qk_norm_start = (int)v[5], .layer_scale = 1};
    a->opt = lyra_vit_default_options(v[2]);
    a->opt.rope_start = a->opt.alt_start = (int)v[5];
    *mc = (lyra_vit_config){.dim = v[6], .depth = v[7], .heads = v[8], .head_dim = v[6] / v[8], .patch = 14,
                            .pos_grid = v[4], .ffn_hidden = v[9], .ffn = LYRA_VIT_FFN_MLP, .qk_norm_start = -1,
                            .layer_scale = 1};
    mc->opt = lyra_vit_default_options(v[8]);
    *ce = (lyra_vit_config){.dim = v[0], .depth = v[15], .heads = v[16], .head_dim = v[0] / v[16],
                            .ffn_hidden = 4 * v[0], .ffn = LYRA_VIT_FFN_MLP, .qk_norm_start = -1, .layer_scale = 1};
    ce->opt = lyra_vit_default_options(v[16]);
    a->gemm = mc->gemm = autocast; /* the camera encoder runs with autocast disabled */
    m.has_cam_enc = 1;
    m.cam_dec.dim = 2 * v[0];
    lyra_da3_head *hs[2] = {&m.head, &m.metric_head};
    for (int i = 0; i < 2; i++) {
        hs[i]->dim_in = i ? v[6] : 2 * v[0];
        hs[i]->features = v[10];
        for (int k = 0; k < 4; k++) hs[i]->oc[k] = v[11 + k];
        hs[i]->out_dim = i ? 1 : 2;
        hs[i]->dual = hs[i]->pos_embed = !i; /* as da3_weights.c: the DualDPT adds the UV embedding */
        hs[i]->sky = i;
    }
    m.opt.anyview_taps[3] = (int)v[17];
    m.opt.metric_taps[3] = (int)v[18];
    return plan_dict(&m, S, h, w, poses);
}

/* images uint8 (S, H, W, 3), process_res -> (pixels f32 (S, 3, h, w), (h1, w1, h, w)) */
static PyObject *py_da3_preprocess(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *img_obj;
    int process_res;
    if (!PyArg_ParseTuple(args, "Oi:da3_preprocess", &img_obj, &process_res)) return NULL;
    PyArrayObject *img = lyra_py_array(img_obj, NPY_UINT8, 4, "images");
    if (!img) return NULL;
    npy_intp *d = PyArray_DIMS(img);
    if (d[0] < 1 || d[1] < 1 || d[2] < 1 || d[3] != 3 || process_res < 1) {
        Py_DECREF(img);
        PyErr_SetString(PyExc_ValueError, "images must be uint8 (V, H, W, 3) with V, H, W >= 1 and process_res >= 1");
        return NULL;
    }
    int S = (int)d[0], H = (int)d[1], W = (int)d[2], h1, w1, h, w, r1, r2;
    lyra_da3_processed_size(H, W, process_res, &h1, &w1, &h, &w, &r1, &r2);
    npy_intp od[4] = {S, 3, h, w};
    PyArrayObject *out = new_f32(4, od);
    uint8_t *t1 = PyMem_Malloc((size_t)h1 * w1 * 3 + 1), *t2 = PyMem_Malloc((size_t)h * w * 3 + 1);
    if (!out || !t1 || !t2) {
        Py_DECREF(img);
        Py_XDECREF(out);
        PyMem_Free(t1);
        PyMem_Free(t2);
        return PyErr_NoMemory();
    }
    lyra_status s = LYRA_OK;
    const uint8_t *src = PyArray_DATA(img);
    Py_BEGIN_ALLOW_THREADS
    for (int v = 0; v < S && s == LYRA_OK; v++) {
        const uint8_t *p = src + (size_t)v * H * W * 3;
        if (r1) s = lyra_da3_resize_u8(t1, h1, w1, p, H, W, r1), p = t1;
        if (s == LYRA_OK && r2) s = lyra_da3_resize_u8(t2, h, w, p, h1, w1, r2), p = t2;
        if (s == LYRA_OK) lyra_da3_normalize(f32(out) + (size_t)v * 3 * h * w, p, h, w);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(img);
    PyMem_Free(t1);
    PyMem_Free(t2);
    if (s != LYRA_OK) {
        Py_DECREF(out);
        return lyra_py_raise(s);
    }
    return Py_BuildValue("N(iiii)", out, h1, w1, h, w);
}

/* uint8 (H, W, 3) -> (Ho, Wo, 3), method 1 INTER_AREA / 2 INTER_CUBIC (exposed for the tests). */
static PyObject *py_da3_resize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *img_obj;
    int Ho, Wo, method;
    if (!PyArg_ParseTuple(args, "Oiii:da3_resize", &img_obj, &Ho, &Wo, &method)) return NULL;
    PyArrayObject *img = lyra_py_array(img_obj, NPY_UINT8, 3, "image");
    if (!img) return NULL;
    if (PyArray_DIMS(img)[2] != 3 || Ho < 1 || Wo < 1) {
        Py_DECREF(img);
        PyErr_SetString(PyExc_ValueError, "image must be (H, W, 3) uint8 and the size positive");
        return NULL;
    }
    npy_intp od[3] = {Ho, Wo, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, od, NPY_UINT8);
    if (!out) {
        Py_DECREF(img);
        return NULL;
    }
    lyra_status s = lyra_da3_resize_u8(PyArray_DATA(out), Ho, Wo, PyArray_DATA(img), (int)PyArray_DIMS(img)[0],
                                       (int)PyArray_DIMS(img)[1], method);
    Py_DECREF(img);
    if (s != LYRA_OK) {
        Py_DECREF(out);
        return lyra_py_raise(s);
    }
    return (PyObject *)out;
}

static int set_item(PyObject *d, const char *key, PyObject *v) {
    if (!v) return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* da3_forward(cap, pixels (S,3,h,w) f32, ext (S,4,4) | None, K (S,3,3) | None, trace) -> dict */
static PyObject *py_da3_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *px_obj, *ext_obj, *k_obj;
    int want_trace = 0;
    if (!PyArg_ParseTuple(args, "OOOO|p:da3_forward", &cap, &px_obj, &ext_obj, &k_obj, &want_trace)) return NULL;
    da3net *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    PyArrayObject *px = lyra_py_array(px_obj, NPY_FLOAT32, 4, "pixels"), *ext = NULL, *K = NULL;
    PyObject *result = NULL;
    PyArrayObject *arr[32] = {0};
    int na = 0;
    if (!px) return NULL;
    npy_intp S = PyArray_DIMS(px)[0], h = PyArray_DIMS(px)[2], w = PyArray_DIMS(px)[3];
    if (PyArray_DIMS(px)[1] != 3 || S < 1) {
        PyErr_SetString(PyExc_ValueError, "pixels must be (S, 3, h, w) float32");
        goto finally;
    }
    if (ext_obj != Py_None || k_obj != Py_None) {
        if (ext_obj == Py_None || k_obj == Py_None) {
            PyErr_SetString(PyExc_ValueError, "extrinsics and intrinsics must be given together");
            goto finally;
        }
        ext = lyra_py_array(ext_obj, NPY_FLOAT32, 3, "extrinsics");
        K = lyra_py_array(k_obj, NPY_FLOAT32, 3, "intrinsics");
        if (!ext || !K) goto finally;
        if (PyArray_DIMS(ext)[0] != S || PyArray_DIMS(ext)[1] != 4 || PyArray_DIMS(ext)[2] != 4 ||
            PyArray_DIMS(K)[0] != S || PyArray_DIMS(K)[1] != 3 || PyArray_DIMS(K)[2] != 3) {
            PyErr_Format(PyExc_ValueError, "extrinsics must be (%ld, 4, 4) and intrinsics (%ld, 3, 3)", (long)S,
                         (long)S);
            goto finally;
        }
    }
    const lyra_da3 *m = &t->m;
    npy_intp G = (h / 14) * (w / 14), C = m->anyview.cfg.dim, Cm = m->metric.cfg.dim, F2 = m->head.features / 2;
    npy_intp shw[3] = {S, h, w}, s34[3] = {S, 3, 4}, s33[3] = {S, 3, 3};
#define NEW(var, nd, ...)                                                                                          \
    do {                                                                                                          \
        npy_intp dims_[] = {__VA_ARGS__};                                                                         \
        arr[na] = new_f32(nd, dims_);                                                                             \
        if (!arr[na]) goto finally;                                                                               \
        var = arr[na++];                                                                                          \
    } while (0)
    PyArrayObject *depth, *conf, *sky, *pe, *pi;
    NEW(depth, 3, shw[0], shw[1], shw[2]);
    NEW(conf, 3, shw[0], shw[1], shw[2]);
    NEW(sky, 3, shw[0], shw[1], shw[2]);
    NEW(pe, 3, s34[0], s34[1], s34[2]);
    NEW(pi, 3, s33[0], s33[1], s33[2]);
    lyra_da3_out out = {.depth = f32(depth), .conf = f32(conf), .sky = f32(sky), .extrinsics = f32(pe),
                        .intrinsics = f32(pi)};
    lyra_da3_trace tr;
    memset(&tr, 0, sizeof tr);
    PyArrayObject *t_pos = NULL, *t_taps[4] = {0}, *t_cams[4] = {0}, *t_cep = NULL, *t_cet = NULL, *t_c1 = NULL,
                  *t_avd = NULL, *t_avc = NULL, *t_pose = NULL, *t_mt[4] = {0}, *t_md = NULL, *t_mds = NULL,
                  *t_ns = NULL, *t_am = NULL;
    if (want_trace) {
        NEW(t_pos, 2, 1 + G, C);
        for (int k = 0; k < 4; k++) {
            NEW(t_taps[k], 3, S, G, 2 * C);
            NEW(t_cams[k], 2, S, 2 * C);
            NEW(t_mt[k], 3, S, G, Cm);
        }
        if (ext) {
            NEW(t_cep, 2, S, 9);
            NEW(t_cet, 2, S, C);
        }
        NEW(t_c1, 4, S, F2, 8 * (h / 14), 8 * (w / 14));
        NEW(t_avd, 3, S, h, w);
        NEW(t_avc, 3, S, h, w);
        NEW(t_pose, 2, S, 9);
        NEW(t_md, 3, S, h, w);
        NEW(t_mds, 3, S, h, w);
        arr[na] = (PyArrayObject *)PyArray_SimpleNew(3, shw, NPY_UINT8);
        if (!arr[na]) goto finally;
        t_ns = arr[na++];
        arr[na] = (PyArrayObject *)PyArray_SimpleNew(3, shw, NPY_UINT8);
        if (!arr[na]) goto finally;
        t_am = arr[na++];
        tr.av_pos_embed = f32(t_pos);
        for (int k = 0; k < 4; k++) tr.av_taps[k] = f32(t_taps[k]), tr.av_cams[k] = f32(t_cams[k]),
                                    tr.met_taps[k] = f32(t_mt[k]);
        tr.cam_enc_pose = f32(t_cep), tr.cam_enc_tokens = f32(t_cet), tr.av_output_conv1 = f32(t_c1);
        tr.av_depth = f32(t_avd), tr.av_conf = f32(t_avc), tr.pose_enc = f32(t_pose), tr.met_depth = f32(t_md);
        tr.met_depth_scaled = f32(t_mds);
        tr.non_sky = PyArray_DATA(t_ns), tr.align_mask = PyArray_DATA(t_am);
    }
#undef NEW
    lyra_status s;
    size_t need = lyra_da3_arena_bytes(m, S, h, w);
    lyra_tensor pix = lyra_tensor_4d(PyArray_DATA(px), LYRA_DTYPE_F32, S, 3, h, w);
    const float *e = ext ? f32(ext) : NULL, *k = K ? f32(K) : NULL;
    /* on a device: the pixels are uploaded into a device block once; the forward downloads its outputs (the
     * heads' maps per view, the pose) for the host-side merge */
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        lyra_backend *be = &t->net.be;
        lyra_tensor dpix = pix;
        void *bpix = NULL;
        s = LYRA_OK;
        if (be->device != LYRA_DEVICE_CPU) {
            bpix = be->ops->alloc(be, lyra_tensor_nbytes(&pix));
            dpix = lyra_tensor_make(bpix, LYRA_DTYPE_F32, pix.ndim, pix.ne);
            dpix.device = be->device;
            dpix.name = "DA3 pixels";
            s = bpix ? lyra_op_upload(be, &dpix, &pix)
                     : lyra_error(LYRA_ERR_OOM, "Depth Anything 3: cannot allocate %zu bytes on the device for the "
                                  "pixels", lyra_tensor_nbytes(&pix));
        }
        if (s == LYRA_OK) s = lyra_py_netcap_arena(&t->net, need);
        if (s == LYRA_OK)
            s = lyra_da3_forward(m, be, &t->net.arena, &dpix, e, k, &out, want_trace ? &tr : NULL);
        t->net.arena.used = 0;
        if (bpix) be->ops->release(be, bpix);
    });
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    result = PyDict_New();
    if (!result) goto finally;
    int bad = set_item(result, "depth", (PyObject *)depth) | set_item(result, "conf", (PyObject *)conf) |
              set_item(result, "sky", (PyObject *)sky) | set_item(result, "extrinsics", (PyObject *)pe) |
              set_item(result, "intrinsics", (PyObject *)pi) |
              set_item(result, "scale_factor", PyFloat_FromDouble(out.scale));
    for (int i = 0; i < 5; i++) arr[i] = NULL; /* references moved into the dict */
    if (!bad && want_trace) {
        PyObject *trd = PyDict_New();
        char key[32];
        bad |= set_item(result, "trace", trd);
        if (trd) {
            Py_INCREF(trd);
            bad |= PyDict_SetItemString(trd, "av_pos_embed", (PyObject *)t_pos);
            for (int k2 = 0; k2 < 4; k2++) {
                snprintf(key, sizeof key, "av_tap%d_feat", k2);
                bad |= PyDict_SetItemString(trd, key, (PyObject *)t_taps[k2]);
                snprintf(key, sizeof key, "av_tap%d_cam", k2);
                bad |= PyDict_SetItemString(trd, key, (PyObject *)t_cams[k2]);
                snprintf(key, sizeof key, "met_tap%d_feat", k2);
                bad |= PyDict_SetItemString(trd, key, (PyObject *)t_mt[k2]);
            }
            if (t_cep) bad |= PyDict_SetItemString(trd, "cam_enc_pose_encoding", (PyObject *)t_cep);
            if (t_cet) bad |= PyDict_SetItemString(trd, "cam_enc_tokens", (PyObject *)t_cet);
            bad |= PyDict_SetItemString(trd, "av_head_output_conv1", (PyObject *)t_c1);
            bad |= PyDict_SetItemString(trd, "av_head_depth", (PyObject *)t_avd);
            bad |= PyDict_SetItemString(trd, "av_head_conf", (PyObject *)t_avc);
            bad |= PyDict_SetItemString(trd, "av_pose_enc", (PyObject *)t_pose);
            bad |= PyDict_SetItemString(trd, "met_head_depth", (PyObject *)t_md);
            bad |= PyDict_SetItemString(trd, "merge_metric_depth_scaled", (PyObject *)t_mds);
            bad |= PyDict_SetItemString(trd, "merge_non_sky", (PyObject *)t_ns);
            bad |= PyDict_SetItemString(trd, "merge_align_mask", (PyObject *)t_am);
            bad |= set_item(trd, "merge_median_conf", PyFloat_FromDouble(tr.median_conf));
            bad |= set_item(trd, "merge_scale_factor", PyFloat_FromDouble(tr.scale));
            bad |= set_item(trd, "merge_sky_fill", PyFloat_FromDouble(tr.sky_fill));
            Py_DECREF(trd);
        }
    }
    if (bad) Py_CLEAR(result);
finally:
    for (int i = 0; i < na; i++) Py_XDECREF(arr[i]);
    Py_XDECREF(px);
    Py_XDECREF(ext);
    Py_XDECREF(K);
    return result;
}

static PyMethodDef da3_methods[] = {
    {"da3_load", py_da3_load, METH_VARARGS,
     "da3_load(weights, anyview_heads=0, metric_heads=0, cam_enc_heads=0, taps=None, metric_taps=None) -> capsule"},
    {"da3_config", py_da3_config, METH_VARARGS, "da3_config(net) -> dict"},
    {"da3_plan", py_da3_plan, METH_VARARGS, "da3_plan(net, S, h, w, poses) -> {params, flops, arena_bytes}"},
    {"da3_arena", py_da3_arena, METH_VARARGS, "da3_arena(cap, S, h, w, poses) -> (measured, cost model) arena bytes"},
    {"da3_cost", py_da3_cost, METH_VARARGS, "da3_cost(sizes dict, S, h, w, poses) -> {params, flops, arena_bytes}"},
    {"da3_preprocess", py_da3_preprocess, METH_VARARGS,
     "da3_preprocess(images uint8 (V,H,W,3), process_res) -> (pixels (V,3,h,w), (h1, w1, h, w))"},
    {"da3_resize", py_da3_resize, METH_VARARGS, "da3_resize(image uint8 (H,W,3), Ho, Wo, method 1 area | 2 cubic)"},
    {"da3_forward", py_da3_forward, METH_VARARGS,
     "da3_forward(net, pixels, extrinsics|None, intrinsics|None, trace=False) -> dict"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_da3(PyObject *m) { return PyModule_AddFunctions(m, da3_methods); }
