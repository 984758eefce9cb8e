/* Python glue for DA3's Gaussian-splat branch (private functions of lyra2._core; the public API is
 * lyra2/reconstruct.py): the GS head as a network capsule, the adapter and the SH band rotation. */
#include "py_netcap.h"

#include <string.h>

#include "models/da3_gs.h"

static const char *CAPSULE = "lyra2._core.da3_gs";

typedef struct gsnet {
    lyra_py_netcap net; /* first: the capsule glue (lock, backend, arena), see py_netcap.h */
    lyra_da3_gs m;
} gsnet;

static void gsnet_free_model(lyra_py_netcap *net) { lyra_da3_gs_free(&((gsnet *)net)->m); }

static lyra_status gsnet_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    (void)arg;
    return lyra_da3_gs_load(&((gsnet *)net)->m, src);
}

/* lyra_py_netcap_place's callback: the weights to net->be. */
static lyra_status gs_place(lyra_py_netcap *net, lyra_dtype act) {
    gsnet *t = (gsnet *)net;
    (void)act; /* the GS head computes f32 on every device */
    return lyra_da3_gs_place(&t->m, &t->net.be);
}

/* gs_load(weights, device="cpu") -> capsule; "cuda": the head runs on the device backend, its weights uploaded
 * once (lyra_da3_gs_place) */
static PyObject *py_gs_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    const char *device = "cpu";
    if (!PyArg_ParseTuple(args, "O|s:gs_load", &weights, &device)) return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    PyObject *cap = lyra_py_netcap_load(weights, "model.", sizeof(gsnet), gsnet_free_model, gsnet_load, NULL, CAPSULE);
    return lyra_py_netcap_place(cap, CAPSULE, device, gs_place, LYRA_DTYPE_F32);
}

/* gs_config(net) -> {dim_in, features, out_channels, out_dim, sh_degree} */
static PyObject *py_gs_config(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:gs_config", &cap)) return NULL;
    gsnet *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    const lyra_da3_head *h = &t->m.head;
    return Py_BuildValue("{s:L,s:L,s:(LLLL),s:L,s:i}", "dim_in", (long long)h->dim_in, "features",
                         (long long)h->features, "out_channels", (long long)h->oc[0], (long long)h->oc[1],
                         (long long)h->oc[2], (long long)h->oc[3], "out_dim", (long long)h->out_dim, "sh_degree",
                         t->m.sh_degree);
}

/* gs_head(net, (tap0..tap3) each (S, G, dim_in) f32, pixels (S, 3, h, w) f32, down_ratio) -> raw (S, out_dim, h/r, w/r) */
static PyObject *py_gs_head(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *taps_obj, *px_obj;
    int r;
    if (!PyArg_ParseTuple(args, "OOOi:gs_head", &cap, &taps_obj, &px_obj, &r)) return NULL;
    gsnet *t = PyCapsule_GetPointer(cap, CAPSULE);
    if (!t) return NULL;
    const lyra_da3_gs *m = &t->m;
    PyArrayObject *taps[4] = {0}, *px = NULL, *out = NULL;
    PyObject *result = NULL;
    if (!PySequence_Check(taps_obj) || PySequence_Size(taps_obj) != 4) {
        PyErr_SetString(PyExc_ValueError, "taps: expected a sequence of 4 arrays (S, G, dim_in)");
        return NULL;
    }
    px = lyra_py_array(px_obj, NPY_FLOAT32, 4, "pixels");
    if (!px) goto finally;
    npy_intp S = PyArray_DIMS(px)[0], h = PyArray_DIMS(px)[2], w = PyArray_DIMS(px)[3];
    if (PyArray_DIMS(px)[1] != 3 || S < 1 || h % 14 || w % 14 || h < 14 || w < 14) {
        PyErr_Format(PyExc_ValueError, "pixels: expected (S, 3, h, w) float32 with h and w multiples of 14; got "
                     "(%ld, %ld, %ld, %ld)", (long)S, (long)PyArray_DIMS(px)[1], (long)h, (long)w);
        goto finally;
    }
    if (r < 1 || 14 % r) {
        PyErr_Format(PyExc_ValueError, "down_ratio: %d is not allowed; expected 1, 2, 7 or 14", r);
        goto finally;
    }
    npy_intp gh = h / 14, gw = w / 14, G = gh * gw;
    for (int k = 0; k < 4; k++) {
        PyObject *o = PySequence_GetItem(taps_obj, k);
        if (!o) goto finally;
        taps[k] = lyra_py_array(o, NPY_FLOAT32, 3, "taps");
        Py_DECREF(o);
        if (!taps[k]) goto finally;
        if (PyArray_DIMS(taps[k])[0] != S || PyArray_DIMS(taps[k])[1] != G ||
            PyArray_DIMS(taps[k])[2] != m->head.dim_in) {
            PyErr_Format(PyExc_ValueError, "taps[%d]: expected (%ld, %ld, %lld) float32", k, (long)S, (long)G,
                         (long long)m->head.dim_in);
            goto finally;
        }
    }
    npy_intp dims[4] = {S, m->head.out_dim, h / r, w / r};
    out = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
    if (!out) goto finally;
    size_t per_view = (size_t)(dims[1] * dims[2] * dims[3]), tap_view = (size_t)(G * m->head.dim_in);
    size_t px_view = (size_t)(3 * h * w);
    lyra_status s = LYRA_OK;
    size_t need = lyra_da3_gs_arena_bytes(m, gh, gw, r);
    float *o = PyArray_DATA(out);
    const float *pp = PyArray_DATA(px);
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        s = lyra_py_netcap_arena(&t->net, need);
        for (npy_intp v = 0; v < S && s == LYRA_OK; v++) {
            const float *tv[4];
            for (int k = 0; k < 4; k++) tv[k] = (const float *)PyArray_DATA(taps[k]) + (size_t)v * tap_view;
            s = lyra_da3_gs_head_run(m, &t->net.be, &t->net.arena, tv, pp + (size_t)v * px_view, gh, gw, r,
                                     o + (size_t)v * per_view);
        }
        t->net.arena.used = 0;
    });
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    result = (PyObject *)out;
    out = NULL;
finally:
    for (int k = 0; k < 4; k++) Py_XDECREF(taps[k]);
    Py_XDECREF(px);
    Py_XDECREF(out);
    return result;
}

/* gs_adapt(raw (S, D, hg, wg), depth (S, hg, wg), c2w (S, 4, 4), K (S, 3, 3), sh_degree, scale_min, scale_max,
 *          offset_scale) -> (means (S·N, 3), scales (S·N, 3), rotations (S·N, 4), harmonics (S·N, 3, d_sh),
 *          opacities (S·N)) */
static PyObject *py_gs_adapt(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *raw_o, *d_o, *c_o, *k_o;
    int deg;
    float smin, smax, off;
    if (!PyArg_ParseTuple(args, "OOOOifff:gs_adapt", &raw_o, &d_o, &c_o, &k_o, &deg, &smin, &smax, &off))
        return NULL;
    PyArrayObject *raw = lyra_py_array(raw_o, NPY_FLOAT32, 4, "raw");
    PyArrayObject *dep = raw ? lyra_py_array(d_o, NPY_FLOAT32, 3, "depth") : NULL;
    PyArrayObject *c2w = dep ? lyra_py_array(c_o, NPY_FLOAT32, 3, "c2w") : NULL;
    PyArrayObject *K = c2w ? lyra_py_array(k_o, NPY_FLOAT32, 3, "K") : NULL;
    PyArrayObject *o[5] = {0};
    PyObject *result = NULL;
    if (!K) goto finally;
    npy_intp S = PyArray_DIMS(raw)[0], D = PyArray_DIMS(raw)[1], hg = PyArray_DIMS(raw)[2], wg = PyArray_DIMS(raw)[3];
    int d_sh = (deg + 1) * (deg + 1);
    if (deg < 0 || deg > 2 || D != 11 + 3 * d_sh) {
        PyErr_Format(PyExc_ValueError, "raw: %ld channels do not fit SH degree %d (expected 11 + 3·(d+1)², d <= 2)",
                     (long)D, deg);
        goto finally;
    }
    if (PyArray_DIMS(dep)[0] != S || PyArray_DIMS(dep)[1] != hg || PyArray_DIMS(dep)[2] != wg ||
        PyArray_DIMS(c2w)[0] != S || PyArray_DIMS(c2w)[1] != 4 || PyArray_DIMS(c2w)[2] != 4 ||
        PyArray_DIMS(K)[0] != S || PyArray_DIMS(K)[1] != 3 || PyArray_DIMS(K)[2] != 3) {
        PyErr_Format(PyExc_ValueError, "gs_adapt: expected depth (%ld, %ld, %ld), c2w (%ld, 4, 4), K (%ld, 3, 3)",
                     (long)S, (long)hg, (long)wg, (long)S, (long)S);
        goto finally;
    }
    npy_intp N = hg * wg, T = S * N;
    npy_intp dm[2] = {T, 3}, dr[2] = {T, 4}, dh[3] = {T, 3, d_sh}, dop[1] = {T};
    o[0] = (PyArrayObject *)PyArray_SimpleNew(2, dm, NPY_FLOAT32);
    o[1] = (PyArrayObject *)PyArray_SimpleNew(2, dm, NPY_FLOAT32);
    o[2] = (PyArrayObject *)PyArray_SimpleNew(2, dr, NPY_FLOAT32);
    o[3] = (PyArrayObject *)PyArray_SimpleNew(3, dh, NPY_FLOAT32);
    o[4] = (PyArrayObject *)PyArray_SimpleNew(1, dop, NPY_FLOAT32);
    for (int i = 0; i < 5; i++)
        if (!o[i]) goto finally;
    lyra_da3_gs_adapt_params p = {.sh_degree = deg, .scale_min = smin, .scale_max = smax, .offset_scale = off};
    const float *rp = PyArray_DATA(raw), *dp = PyArray_DATA(dep), *cp = PyArray_DATA(c2w), *kp = PyArray_DATA(K);
    float *f[5];
    for (int i = 0; i < 5; i++) f[i] = PyArray_DATA(o[i]);
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp v = 0; v < S; v++)
        lyra_da3_gs_adapt(&p, rp + v * D * N, D, hg, wg, dp + v * N, cp + v * 16, kp + v * 9, f[0] + v * N * 3,
                          f[1] + v * N * 3, f[2] + v * N * 4, f[3] + v * N * 3 * d_sh, f[4] + v * N);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(OOOOO)", o[0], o[1], o[2], o[3], o[4]);
finally:
    Py_XDECREF(raw);
    Py_XDECREF(dep);
    Py_XDECREF(c2w);
    Py_XDECREF(K);
    for (int i = 0; i < 5; i++) Py_XDECREF(o[i]);
    return result;
}

/* sh_rotation(R (3, 3)) -> (D1 (3, 3), D2 (5, 5)) float64 */
static PyObject *py_sh_rotation(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *r_o;
    if (!PyArg_ParseTuple(args, "O:sh_rotation", &r_o)) return NULL;
    PyArrayObject *R = lyra_py_array(r_o, NPY_FLOAT64, 2, "R");
    if (!R) return NULL;
    if (PyArray_DIMS(R)[0] != 3 || PyArray_DIMS(R)[1] != 3) {
        Py_DECREF(R);
        PyErr_SetString(PyExc_ValueError, "R: expected a (3, 3) rotation matrix");
        return NULL;
    }
    npy_intp d1[2] = {3, 3}, d2[2] = {5, 5};
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(2, d1, NPY_FLOAT64);
    PyArrayObject *b = (PyArrayObject *)PyArray_SimpleNew(2, d2, NPY_FLOAT64);
    PyObject *result = NULL;
    if (a && b) {
        lyra_sh_rotation(PyArray_DATA(R), PyArray_DATA(a), PyArray_DATA(b));
        result = Py_BuildValue("(OO)", a, b);
    }
    Py_DECREF(R);
    Py_XDECREF(a);
    Py_XDECREF(b);
    return result;
}

static PyMethodDef gs_methods[] = {
    {"gs_load", py_gs_load, METH_VARARGS, "gs_load(weights, device='cpu') -> DA3 GS head capsule"},
    {"gs_config", py_gs_config, METH_VARARGS, "gs_config(net) -> dict"},
    {"gs_head", py_gs_head, METH_VARARGS, "gs_head(net, taps, pixels, down_ratio) -> raw (S, D, h/r, w/r)"},
    {"gs_adapt", py_gs_adapt, METH_VARARGS,
     "gs_adapt(raw, depth, c2w, K, sh_degree, scale_min, scale_max, offset_scale) -> (means, scales, rotations, "
     "harmonics, opacities)"},
    {"sh_rotation", py_sh_rotation, METH_VARARGS, "sh_rotation(R) -> (D1, D2)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_gs(PyObject *m) { return PyModule_AddFunctions(m, gs_methods); }
