/* Python glue for the pipeline area (csrc/pipeline): the chunk-input preparation (exposed for the golden parity
 * test and for inspection) and, in py_pipeline_run.c, the autoregressive driver used by lyra2/generate.py.
 *
 *   _core.pipeline_prepare(layout, chunk, history, frames, w2c, K, buffer_depth, cache_depths, cache_ids,
 *                          warp_chunk, encode) -> dict
 *       history (C, T_hist, h, w); frames (n, 3, H, W) absolute frames 0..F·a; w2c (m, 4, 4) and K (m, 3, 3) of
 *       frames 0..end−1; buffer_depth (H, W); cache_depths (n_c, H, W) with frame ids cache_ids (n_c) int64 added
 *       to an empty spatial cache in order (latent index = frame id); encode(video (T, 3, H, W)) -> latents
 *       (C, 1 + (T−1)/4, h, w), a Python callable standing in for the fresh VAE encodes.
 *       Returns {"x", "y", "buffer", "warp_rgb" (F, 3, H, W), "warp_coords" (n_groups, F, 3, H, W),
 *       "retrieved" (n, 2) int64 (latent index, frame id)}. */
#include "py_common.h"

#include <stdlib.h>
#include <string.h>

#include "models/framepack.h"
#include "pipeline/prep.h"

int lyra_py_add_pipeline_run(PyObject *m);

typedef struct py_encode_ctx {
    PyObject *fn;
    int64_t C;
} py_encode_ctx;

/* The encoder stand-in: calls the Python callable (with the GIL held: pipeline_prepare keeps it). */
static lyra_status py_encode(void *ctx, const float *video, int64_t T, int height, int width, float *latents) {
    py_encode_ctx *e = ctx;
    npy_intp dims[4] = {(npy_intp)T, 3, height, width};
    PyObject *arr = PyArray_SimpleNew(4, dims, NPY_FLOAT32);
    if (!arr) return lyra_error(LYRA_ERR_OOM, "encode: out of memory");
    memcpy(PyArray_DATA((PyArrayObject *)arr), video, sizeof(float) * (size_t)(T * 3 * height * width));
    PyObject *res = PyObject_CallOneArg(e->fn, arr);
    Py_DECREF(arr);
    if (!res) return lyra_error(LYRA_ERR_ARG, "encode: the callable raised");
    PyArrayObject *out = lyra_py_array(res, NPY_FLOAT32, 4, "encode result");
    Py_DECREF(res);
    if (!out) return lyra_error(LYRA_ERR_ARG, "encode: the result is not a float32 (C, L, h, w) array");
    npy_intp *s = PyArray_DIMS(out);
    int64_t L = 1 + (T - 1) / 4;
    if (s[0] != e->C || s[1] != L || s[2] != height / 8 || s[3] != width / 8) {
        Py_DECREF(out);
        PyErr_Clear();
        return lyra_error(LYRA_ERR_ARG, "encode: expected a (%lld, %lld, %d, %d) result", (long long)e->C,
                          (long long)L, height / 8, width / 8);
    }
    memcpy(latents, PyArray_DATA(out), sizeof(float) * (size_t)PyArray_SIZE(out));
    Py_DECREF(out);
    return LYRA_OK;
}

static PyObject *py_pipeline_prepare(PyObject *self, PyObject *args) {
    (void)self;
    const char *layout;
    long long chunk;
    int warp_chunk;
    PyObject *o_hist, *o_frames, *o_w2c, *o_K, *o_bd, *o_cd, *o_ci, *fn;
    if (!PyArg_ParseTuple(args, "sLOOOOOOOiO", &layout, &chunk, &o_hist, &o_frames, &o_w2c, &o_K, &o_bd, &o_cd,
                          &o_ci, &warp_chunk, &fn))
        return NULL;
    if (!PyCallable_Check(fn)) return PyErr_Format(PyExc_TypeError, "encode: expected a callable");
    PyArrayObject *hist = NULL, *frames = NULL, *w2c = NULL, *K = NULL, *bd = NULL, *cd = NULL, *ci = NULL;
    PyObject *result = NULL, *x = NULL, *y = NULL, *buf = NULL, *wrgb = NULL, *wco = NULL, *ret = NULL;
    const float **fptr = NULL;
    lyra_scache cache;
    memset(&cache, 0, sizeof cache);
    lyra_framepack fp;
    lyra_status st = lyra_framepack_parse(&fp, layout);
    if (st != LYRA_OK) return lyra_py_raise(st);
    if (!(hist = lyra_py_array(o_hist, NPY_FLOAT32, 4, "history")) ||
        !(frames = lyra_py_array(o_frames, NPY_FLOAT32, 4, "frames")) ||
        !(w2c = lyra_py_array(o_w2c, NPY_FLOAT32, 3, "w2c")) || !(K = lyra_py_array(o_K, NPY_FLOAT32, 3, "K")) ||
        !(bd = lyra_py_array(o_bd, NPY_FLOAT32, 2, "buffer_depth")) ||
        !(cd = lyra_py_array(o_cd, NPY_FLOAT32, 3, "cache_depths")) ||
        !(ci = lyra_py_array(o_ci, NPY_INT64, 1, "cache_ids")))
        goto finally;
    npy_intp *hs = PyArray_DIMS(hist), *fs = PyArray_DIMS(frames);
    const int H = (int)fs[2], W = (int)fs[3];
    const int64_t C = hs[0], T = fp.n_total, F = 4LL * fp.n_new, end = F * (chunk + 1) + 1;
    if (chunk < 0 || fs[1] != 3 || fs[0] != F * chunk + 1 || hs[2] != H / 8 || hs[3] != W / 8) {
        PyErr_Format(PyExc_ValueError, "frames: expected (%lld, 3, H, W) and history (C, T, H/8, W/8); got frames "
                     "(%ld, %ld, %ld, %ld), history (%ld, %ld, %ld, %ld)", (long long)(F * chunk + 1), (long)fs[0],
                     (long)fs[1], (long)fs[2], (long)fs[3], (long)hs[0], (long)hs[1], (long)hs[2], (long)hs[3]);
        goto finally;
    }
    if (PyArray_DIM(w2c, 0) < end || PyArray_DIM(w2c, 1) != 4 || PyArray_DIM(w2c, 2) != 4 ||
        PyArray_DIM(K, 0) < end || PyArray_DIM(K, 1) != 3 || PyArray_DIM(K, 2) != 3) {
        PyErr_Format(PyExc_ValueError, "w2c, K: expected (>= %lld, 4, 4) and (>= %lld, 3, 3)", (long long)end,
                     (long long)end);
        goto finally;
    }
    if (PyArray_DIM(bd, 0) != H || PyArray_DIM(bd, 1) != W || PyArray_DIM(cd, 1) != H || PyArray_DIM(cd, 2) != W ||
        PyArray_DIM(ci, 0) != PyArray_DIM(cd, 0)) {
        PyErr_SetString(PyExc_ValueError, "buffer_depth (H, W), cache_depths (n, H, W), cache_ids (n): sizes differ");
        goto finally;
    }
    if ((st = lyra_scache_init(&cache, H, W)) != LYRA_OK) { lyra_py_raise(st); goto finally; }
    const int64_t *ids = PyArray_DATA(ci);
    for (npy_intp i = 0; i < PyArray_DIM(cd, 0); i++) {
        if (ids[i] < 0 || ids[i] >= end) {
            PyErr_Format(PyExc_ValueError, "cache_ids[%ld] = %lld is not a frame 0..%lld", (long)i, (long long)ids[i],
                         (long long)(end - 1));
            goto finally;
        }
        const float *kk = (const float *)PyArray_DATA(K) + 9 * ids[i], *ww = (const float *)PyArray_DATA(w2c) + 16 * ids[i];
        if ((st = lyra_scache_add(&cache, (const float *)PyArray_DATA(cd) + (int64_t)i * H * W, ww, kk, ids[i], ids[i])) !=
            LYRA_OK) {
            lyra_py_raise(st);
            goto finally;
        }
    }
    fptr = malloc(sizeof *fptr * (size_t)fs[0]);
    if (!fptr) { PyErr_NoMemory(); goto finally; }
    for (npy_intp f = 0; f < fs[0]; f++) fptr[f] = (const float *)PyArray_DATA(frames) + (int64_t)f * 3 * H * W;
    npy_intp dx[4] = {(npy_intp)C, (npy_intp)T, H / 8, W / 8};
    npy_intp dy[4] = {(npy_intp)(LYRA_PREP_MASK_CHANNELS + C + LYRA_PREP_RAY_CHANNELS), (npy_intp)T, H / 8, W / 8};
    npy_intp db[4] = {(npy_intp)LYRA_PREP_SLOT_CHANNELS * fp.n_spatial, (npy_intp)T, H / 8, W / 8};
    npy_intp dw[4] = {(npy_intp)F, 3, H, W};
    npy_intp dc[5] = {fp.n_spatial, (npy_intp)F, 3, H, W};
    if (!(x = PyArray_SimpleNew(4, dx, NPY_FLOAT32)) || !(y = PyArray_SimpleNew(4, dy, NPY_FLOAT32)) ||
        !(buf = PyArray_SimpleNew(4, db, NPY_FLOAT32)) || !(wrgb = PyArray_SimpleNew(4, dw, NPY_FLOAT32)) ||
        !(wco = PyArray_SimpleNew(5, dc, NPY_FLOAT32)))
        goto finally;
    py_encode_ctx ectx = {fn, C};
    lyra_prep_args *pa = calloc(1, sizeof *pa);
    if (!pa) { PyErr_NoMemory(); goto finally; }
    *pa = (lyra_prep_args){
        .fp = &fp, .height = H, .width = W, .latent_c = (int)C, .chunk = chunk, .history = PyArray_DATA(hist),
        .t_hist_total = hs[1], .frames = fptr, .w2c = PyArray_DATA(w2c), .K = PyArray_DATA(K),
        .buffer_depth = PyArray_DATA(bd), .cache = &cache, .warp_chunk = warp_chunk, .encode = py_encode,
        .encode_ctx = &ectx, .x = PyArray_DATA((PyArrayObject *)x), .y = PyArray_DATA((PyArrayObject *)y),
        .buffer = PyArray_DATA((PyArrayObject *)buf), .warp_rgb = PyArray_DATA((PyArrayObject *)wrgb),
        .warp_coords = PyArray_DATA((PyArrayObject *)wco),
    };
    st = lyra_prep_chunk(pa);
    if (st != LYRA_OK) {
        free(pa);
        if (!PyErr_Occurred()) lyra_py_raise(st);
        goto finally;
    }
    npy_intp dr[2] = {pa->n_retrieved, 2};
    if (!(ret = PyArray_SimpleNew(2, dr, NPY_INT64))) { free(pa); goto finally; }
    int64_t *r = PyArray_DATA((PyArrayObject *)ret);
    for (int i = 0; i < pa->n_retrieved; i++) {
        r[2 * i] = pa->retrieved_latent[i];
        r[2 * i + 1] = pa->retrieved_frame[i];
    }
    PyObject *wco_used = PySequence_GetSlice(wco, 0, pa->n_groups);
    free(pa);
    if (!wco_used) goto finally;
    result = Py_BuildValue("{sOsOsOsOsNsO}", "x", x, "y", y, "buffer", buf, "warp_rgb", wrgb, "warp_coords", wco_used,
                           "retrieved", ret);
finally:
    lyra_scache_free(&cache);
    free(fptr);
    Py_XDECREF(hist); Py_XDECREF(frames); Py_XDECREF(w2c); Py_XDECREF(K); Py_XDECREF(bd); Py_XDECREF(cd);
    Py_XDECREF(ci); Py_XDECREF(x); Py_XDECREF(y); Py_XDECREF(buf); Py_XDECREF(wrgb); Py_XDECREF(wco);
    Py_XDECREF(ret);
    return result;
}

static PyMethodDef pipeline_methods[] = {
    {"pipeline_prepare", py_pipeline_prepare, METH_VARARGS,
     "pipeline_prepare(layout, chunk, history, frames, w2c, K, buffer_depth, cache_depths, cache_ids, warp_chunk, "
     "encode) -> dict: one chunk's network inputs (upstream M:1488-1493, M:1495-1523, M:2024-2033, M:1955-1999)."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_pipeline(PyObject *m) {
    if (PyModule_AddFunctions(m, pipeline_methods) < 0) return -1;
    return lyra_py_add_pipeline_run(m);
}
