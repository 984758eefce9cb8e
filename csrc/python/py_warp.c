/* Python glue for the warp area: forward warp, rays, hole filling, the heuristic depth prior and the
 * preview renderer (csrc/nn/cpu/cpu_warp*.c, csrc/geom/rays.c, inpaint.c, depth_prior.c). lyra2/warp.py and
 * lyra2/preview.py hold the documented Python surface; these functions check shapes and dtypes. */
#include "py_common.h"

#include "geom/depth_prior.h"
#include "geom/inpaint.h"
#include "geom/rays.h"
#include "nn/warp.h"
#include "geom/warp_preview.h"

#define ANY_SIZE (-1)  /* any size >= 1 */
#define ANY_COUNT (-2) /* any size >= 0 (a batch that may be empty) */

/* Converts `obj` to a C-contiguous array of `type` with `ndim` dims; dims[i] >= 0 must match exactly,
 * or be ANY_SIZE / ANY_COUNT. Returns a new reference or NULL with ValueError/TypeError. */
static PyArrayObject *get_array(PyObject *obj, int type, int ndim, const npy_intp *dims, const char *what,
                                const char *shape_text) {
    PyArrayObject *arr = lyra_py_array(obj, type, -1, what);
    if (!arr) return NULL;
    int ok = PyArray_NDIM(arr) == ndim;
    for (int i = 0; ok && i < ndim; i++) {
        npy_intp d = PyArray_DIM(arr, i);
        ok = dims[i] >= 0 ? d == dims[i] : (dims[i] == ANY_COUNT ? d >= 0 : d >= 1);
    }
    if (!ok) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)arr, "shape");
        PyErr_Format(PyExc_ValueError, "%s: expected shape %s, got %R", what, shape_text, shape);
        Py_XDECREF(shape);
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static int check_finite_array(PyArrayObject *arr, const char *what) {
    const float *v = (const float *)PyArray_DATA(arr);
    npy_intp n = PyArray_SIZE(arr);
    for (npy_intp i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            PyErr_Format(PyExc_ValueError, "%s: element %zd is not finite (NaN/inf are allowed only in depth)",
                         what, (Py_ssize_t)i);
            return -1;
        }
    return 0;
}

#define F32(a) ((float *)PyArray_DATA(a))

/* forward_warp(image (C,H,W), depth (H,W), src_w2c (4,4), src_K (3,3), tgt_w2c (N,4,4), tgt_K (N,3,3),
 *              clean_points, norm_batch, intermediates) -> dict */
static PyObject *py_forward_warp(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_img, *o_depth, *o_sw, *o_sk, *o_tw, *o_tk;
    int clean = 1, norm_batch = 0, inter = 0;
    PyArrayObject *img = NULL, *depth = NULL, *sw = NULL, *sk = NULL, *tw = NULL, *tk = NULL;
    PyArrayObject *o_image = NULL, *o_mask = NULL, *o_dep = NULL, *o_flow = NULL;
    PyArrayObject *o_ds = NULL, *o_rel = NULL, *o_pts = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOpip", &o_img, &o_depth, &o_sw, &o_sk, &o_tw, &o_tk, &clean, &norm_batch,
                          &inter))
        return NULL;
    npy_intp any3[3] = {ANY_SIZE, ANY_SIZE, ANY_SIZE};
    if (!(img = get_array(o_img, NPY_FLOAT32, 3, any3, "image", "(C, H, W)"))) goto finally;
    npy_intp C = PyArray_DIM(img, 0), H = PyArray_DIM(img, 1), W = PyArray_DIM(img, 2);
    npy_intp dhw[2] = {H, W}, d44[2] = {4, 4}, d33[2] = {3, 3};
    if (!(depth = get_array(o_depth, NPY_FLOAT32, 2, dhw, "depth", "(H, W) matching image"))) goto finally;
    if (!(sw = get_array(o_sw, NPY_FLOAT32, 2, d44, "src_w2c", "(4, 4)"))) goto finally;
    if (!(sk = get_array(o_sk, NPY_FLOAT32, 2, d33, "src_K", "(3, 3)"))) goto finally;
    npy_intp dn44[3] = {ANY_COUNT, 4, 4};
    if (!(tw = get_array(o_tw, NPY_FLOAT32, 3, dn44, "tgt_w2c", "(N, 4, 4)"))) goto finally;
    npy_intp N = PyArray_DIM(tw, 0);
    npy_intp dn33[3] = {N, 3, 3};
    if (!(tk = get_array(o_tk, NPY_FLOAT32, 3, dn33, "tgt_K", "(N, 3, 3) with N = len(tgt_w2c)"))) goto finally;
    if (check_finite_array(img, "image") < 0) goto finally;
    if (C > 4096 || H * W > ((npy_intp)1 << 28)) {
        PyErr_Format(PyExc_ValueError, "image: shape (%zd, %zd, %zd) is too large", (Py_ssize_t)C, (Py_ssize_t)H,
                     (Py_ssize_t)W);
        goto finally;
    }
    if (norm_batch < 0) {
        PyErr_SetString(PyExc_ValueError, "norm_batch: must be None or a positive number of targets");
        goto finally;
    }
    npy_intp s_img[4] = {N, C, H, W}, s_mask[4] = {N, 1, H, W}, s_dep[3] = {N, H, W}, s_flow[4] = {N, 2, H, W};
    o_image = (PyArrayObject *)PyArray_SimpleNew(4, s_img, NPY_FLOAT32);
    o_mask = (PyArrayObject *)PyArray_SimpleNew(4, s_mask, NPY_FLOAT32);
    o_dep = (PyArrayObject *)PyArray_SimpleNew(3, s_dep, NPY_FLOAT32);
    o_flow = (PyArrayObject *)PyArray_SimpleNew(4, s_flow, NPY_FLOAT32);
    if (!o_image || !o_mask || !o_dep || !o_flow) goto finally;
    if (inter) {
        npy_intp s_pts[3] = {H, W, 3};
        o_ds = (PyArrayObject *)PyArray_SimpleNew(2, dhw, NPY_FLOAT32);
        o_rel = (PyArrayObject *)PyArray_SimpleNew(2, dhw, NPY_UINT8);
        o_pts = (PyArrayObject *)PyArray_SimpleNew(3, s_pts, NPY_FLOAT32);
        if (!o_ds || !o_rel || !o_pts) goto finally;
    }
    lyra_warp_forward_args wa = {
        .channels = (int)C, .height = (int)H, .width = (int)W, .n_targets = (int)N,
        .image = F32(img), .depth = F32(depth), .src_w2c = F32(sw), .src_K = F32(sk),
        .tgt_w2c = F32(tw), .tgt_K = F32(tk), .clean_points = clean, .norm_batch = norm_batch,
        .out_image = F32(o_image), .out_mask = F32(o_mask), .out_depth = F32(o_dep), .out_flow = F32(o_flow),
        .out_depth_sanitized = inter ? F32(o_ds) : NULL,
        .out_reliable = inter ? (uint8_t *)PyArray_DATA(o_rel) : NULL,
        .out_points = inter ? F32(o_pts) : NULL,
    };
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_warp_forward(&wa);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = Py_BuildValue("{s:O,s:O,s:O,s:O}", "image", o_image, "mask", o_mask, "depth", o_dep, "flow", o_flow);
    if (result && inter) {
        if (PyDict_SetItemString(result, "depth_sanitized", (PyObject *)o_ds) < 0 ||
            PyDict_SetItemString(result, "reliable_mask", (PyObject *)o_rel) < 0 ||
            PyDict_SetItemString(result, "world_points", (PyObject *)o_pts) < 0)
            Py_CLEAR(result);
    }
finally:
    Py_XDECREF(img);
    Py_XDECREF(depth);
    Py_XDECREF(sw);
    Py_XDECREF(sk);
    Py_XDECREF(tw);
    Py_XDECREF(tk);
    Py_XDECREF(o_image);
    Py_XDECREF(o_mask);
    Py_XDECREF(o_dep);
    Py_XDECREF(o_flow);
    Py_XDECREF(o_ds);
    Py_XDECREF(o_rel);
    Py_XDECREF(o_pts);
    return result;
}

/* project_points(points (..., 3), w2c (4,4), K (3,3)) -> (..., 3) = K·(w2c·[X;1])[:3] */
static PyObject *py_project_points(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_pts, *o_w, *o_k, *result = NULL;
    PyArrayObject *pts = NULL, *w = NULL, *k = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOO", &o_pts, &o_w, &o_k)) return NULL;
    npy_intp d44[2] = {4, 4}, d33[2] = {3, 3};
    if (!(pts = lyra_py_array(o_pts, NPY_FLOAT32, -1, "points"))) goto finally;
    if (PyArray_NDIM(pts) < 1 || PyArray_DIM(pts, PyArray_NDIM(pts) - 1) != 3) {
        PyErr_SetString(PyExc_ValueError, "points: expected shape (..., 3)");
        goto finally;
    }
    if (!(w = get_array(o_w, NPY_FLOAT32, 2, d44, "w2c", "(4, 4)"))) goto finally;
    if (!(k = get_array(o_k, NPY_FLOAT32, 2, d33, "K", "(3, 3)"))) goto finally;
    if (!(out = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(pts), PyArray_DIMS(pts), NPY_FLOAT32))) goto finally;
    Py_BEGIN_ALLOW_THREADS
    lyra_warp_project(F32(pts), PyArray_SIZE(pts) / 3, F32(w), F32(k), F32(out));
    Py_END_ALLOW_THREADS
    result = (PyObject *)out;
    out = NULL;
finally:
    Py_XDECREF(pts);
    Py_XDECREF(w);
    Py_XDECREF(k);
    Py_XDECREF(out);
    return result;
}

/* rays(K (V,4), c2w (V,4,4), height, width, moment) -> (V,H,W,6) */
static PyObject *py_rays(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_k, *o_c, *result = NULL;
    Py_ssize_t height, width;
    int moment = 0;
    PyArrayObject *k = NULL, *c = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOnnp", &o_k, &o_c, &height, &width, &moment)) return NULL;
    if (height < 1 || width < 1 || height > (1 << 16) || width > (1 << 16)) {
        PyErr_Format(PyExc_ValueError, "height, width: must be in 1..65536, got %zd, %zd", height, width);
        return NULL;
    }
    npy_intp dk[2] = {ANY_COUNT, 4};
    if (!(k = get_array(o_k, NPY_FLOAT32, 2, dk, "K", "(V, 4) = (fx, fy, cx, cy)"))) goto finally;
    npy_intp V = PyArray_DIM(k, 0);
    npy_intp dc[3] = {V, 4, 4};
    if (!(c = get_array(o_c, NPY_FLOAT32, 3, dc, "c2w", "(V, 4, 4) with V = len(K)"))) goto finally;
    npy_intp so[4] = {V, height, width, 6};
    if (!(out = (PyArrayObject *)PyArray_SimpleNew(4, so, NPY_FLOAT32))) goto finally;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_rays_compute(F32(k), F32(c), (int)V, (int)height, (int)width, moment, F32(out));
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = (PyObject *)out;
    out = NULL;
finally:
    Py_XDECREF(k);
    Py_XDECREF(c);
    Py_XDECREF(out);
    return result;
}

/* fill_holes(image (C,H,W) float32, mask (H,W), depth (H,W) or None) -> filled copy (C,H,W) */
static PyObject *py_fill_holes(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_img, *o_mask, *o_dep, *result = NULL;
    PyArrayObject *img = NULL, *mask = NULL, *dep = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOO", &o_img, &o_mask, &o_dep)) return NULL;
    npy_intp any3[3] = {ANY_SIZE, ANY_SIZE, ANY_SIZE};
    if (!(img = get_array(o_img, NPY_FLOAT32, 3, any3, "image", "(C, H, W)"))) goto finally;
    npy_intp hw[2] = {PyArray_DIM(img, 1), PyArray_DIM(img, 2)};
    if (!(mask = get_array(o_mask, NPY_FLOAT32, 2, hw, "mask", "(H, W) matching image"))) goto finally;
    if (o_dep != Py_None && !(dep = get_array(o_dep, NPY_FLOAT32, 2, hw, "depth", "(H, W) matching image")))
        goto finally;
    if (!(out = (PyArrayObject *)PyArray_NewCopy(img, NPY_CORDER))) goto finally;
    lyra_status st;
    lyra_inpaint_scratch scratch = {0, NULL};
    Py_BEGIN_ALLOW_THREADS
    st = lyra_inpaint_pushpull(F32(out), F32(mask), dep ? F32(dep) : NULL, (int)PyArray_DIM(img, 0), (int)hw[0],
                               (int)hw[1], &scratch);
    lyra_inpaint_scratch_free(&scratch);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = (PyObject *)out;
    out = NULL;
finally:
    Py_XDECREF(img);
    Py_XDECREF(mask);
    Py_XDECREF(dep);
    Py_XDECREF(out);
    return result;
}

/* heuristic_depth(rgb (H,W,3) uint8) -> (depth (H,W) float32, mask (H,W) uint8) */
static PyObject *py_heuristic_depth(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_img, *result = NULL;
    PyArrayObject *img = NULL, *dep = NULL, *mask = NULL;
    if (!PyArg_ParseTuple(args, "O", &o_img)) return NULL;
    npy_intp d[3] = {ANY_SIZE, ANY_SIZE, 3};
    if (!(img = get_array(o_img, NPY_UINT8, 3, d, "image", "(H, W, 3) uint8"))) goto finally;
    npy_intp hw[2] = {PyArray_DIM(img, 0), PyArray_DIM(img, 1)};
    if (hw[0] * hw[1] > ((npy_intp)1 << 28)) {
        PyErr_SetString(PyExc_ValueError, "image: too large");
        goto finally;
    }
    dep = (PyArrayObject *)PyArray_SimpleNew(2, hw, NPY_FLOAT32);
    mask = (PyArrayObject *)PyArray_SimpleNew(2, hw, NPY_UINT8);
    if (!dep || !mask) goto finally;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_depth_prior_ground((const uint8_t *)PyArray_DATA(img), (int)hw[0], (int)hw[1], F32(dep),
                                 (uint8_t *)PyArray_DATA(mask));
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = Py_BuildValue("(OO)", dep, mask);
finally:
    Py_XDECREF(img);
    Py_XDECREF(dep);
    Py_XDECREF(mask);
    return result;
}

/* render_preview(rgb (H,W,3) uint8, depth (H,W), w2c (T,4,4), K (T,3,3), clean_points, norm_batch, edge_ratio)
 * -> (T,H,W,3) uint8 */
static PyObject *py_render_preview(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_img, *o_dep, *o_w, *o_k, *result = NULL;
    int clean = 0, norm_batch = 0;
    float edge_ratio = 0.0f;
    PyArrayObject *img = NULL, *dep = NULL, *w = NULL, *k = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOOOpif", &o_img, &o_dep, &o_w, &o_k, &clean, &norm_batch, &edge_ratio))
        return NULL;
    if (!(edge_ratio >= 0.0f) || !isfinite(edge_ratio)) {
        PyErr_SetString(PyExc_ValueError, "edge_ratio: must be a finite number >= 0 (0 = off)");
        return NULL;
    }
    npy_intp d[3] = {ANY_SIZE, ANY_SIZE, 3};
    if (!(img = get_array(o_img, NPY_UINT8, 3, d, "image", "(H, W, 3) uint8"))) goto finally;
    npy_intp H = PyArray_DIM(img, 0), W = PyArray_DIM(img, 1);
    npy_intp hw[2] = {H, W}, dw[3] = {ANY_SIZE, 4, 4};
    if (!(dep = get_array(o_dep, NPY_FLOAT32, 2, hw, "depth", "(H, W) matching image"))) goto finally;
    if (!(w = get_array(o_w, NPY_FLOAT32, 3, dw, "w2c", "(T, 4, 4) with T >= 1"))) goto finally;
    npy_intp T = PyArray_DIM(w, 0);
    npy_intp dk[3] = {T, 3, 3};
    if (!(k = get_array(o_k, NPY_FLOAT32, 3, dk, "K", "(T, 3, 3) with T = len(w2c)"))) goto finally;
    if (H * W > ((npy_intp)1 << 28) || T > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "image / w2c: too large");
        goto finally;
    }
    if (norm_batch < 0) {
        PyErr_SetString(PyExc_ValueError, "norm_batch: must be None or a positive number of frames");
        goto finally;
    }
    npy_intp so[4] = {T, H, W, 3};
    if (!(out = (PyArrayObject *)PyArray_SimpleNew(4, so, NPY_UINT8))) goto finally;
    lyra_preview_args pa = {
        .height = (int)H, .width = (int)W, .frames = (int)T, .rgb = (const uint8_t *)PyArray_DATA(img),
        .depth = F32(dep), .w2c = F32(w), .K = F32(k), .clean_points = clean, .norm_batch = norm_batch,
        .edge_ratio = edge_ratio, .out = (uint8_t *)PyArray_DATA(out),
    };
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_warp_preview_render(&pa);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = (PyObject *)out;
    out = NULL;
finally:
    Py_XDECREF(img);
    Py_XDECREF(dep);
    Py_XDECREF(w);
    Py_XDECREF(k);
    Py_XDECREF(out);
    return result;
}

static PyMethodDef warp_methods[] = {
    {"forward_warp", py_forward_warp, METH_VARARGS,
     "forward_warp(image, depth, src_w2c, src_K, tgt_w2c, tgt_K, clean_points, norm_batch, intermediates) -> dict "
     "(see lyra2.warp.forward_warp)"},
    {"project_points", py_project_points, METH_VARARGS, "project_points(points, w2c, K) -> K·(w2c·[X;1])[:3]"},
    {"rays", py_rays, METH_VARARGS, "rays(K, c2w, height, width, moment) -> (V, H, W, 6) (see lyra2.warp.rays)"},
    {"fill_holes", py_fill_holes, METH_VARARGS, "fill_holes(image, mask, depth) -> filled copy (see lyra2.preview)"},
    {"heuristic_depth", py_heuristic_depth, METH_VARARGS, "heuristic_depth(rgb) -> (depth, mask) (see lyra2.preview)"},
    {"render_preview", py_render_preview, METH_VARARGS,
     "render_preview(rgb, depth, w2c, K, clean_points, norm_batch, edge_ratio) -> (T, H, W, 3) uint8 (see lyra2.preview)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_warp(PyObject *m) { return PyModule_AddFunctions(m, warp_methods); }
