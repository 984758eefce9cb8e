/* Python glue for the pipeline area (csrc/pipeline): the chunk-input preparation (exposed for the golden parity
 * test and for inspection) and, in py_pipeline_run.c, the autoregressive driver used by lyra2/generate.py.
 *
 *   _core.pipeline_prepare(layout, chunk, history, frames, w2c, K, buffer_depth, cache_depths, cache_ids,
 *                          warp_chunk, encode, device="cpu", cond_dtype="f32") -> dict
 *       history (C, T_hist, h, w); frames (n, 3, H, W) absolute frames 0..F·a; w2c (m, 4, 4) and K (m, 3, 3) of
 *       frames 0..end−1; buffer_depth (H, W); cache_depths (n_c, H, W) with frame ids cache_ids (n_c) int64 added
 *       to an empty spatial cache in order (latent index = frame id); encode(video (T, 3, H, W)) -> latents
 *       (C, 1 + (T−1)/4, h, w), a Python callable standing in for the fresh VAE encodes.
 *       Returns {"x", "y", "buffer", "warp_rgb" (F, 3, H, W), "warp_coords" (n_groups, F, 3, H, W),
 *       "retrieved" (n, 2) int64 (latent index, frame id)}. The inputs go up to the backend of `device` ("cuda": the
 *       device, or the emulated one under LYRA2_EMULATED_CUDA=1), the chunk is assembled there by lyra_prep_chunk and
 *       the outputs come back; cond_dtype="bf16" assembles y and the buffer in bf16 there (returned widened to f32). */
#include "py_common.h"

#include <stdlib.h>
#include <string.h>

#include "models/framepack.h"
#include "nn/measure/warp_device_temps.h"
#include "nn/ops.h"
#include "pipeline/ar_driver.h"
#include "pipeline/prep.h"

int lyra_py_add_pipeline_run(PyObject *m);

typedef struct py_encode_ctx {
    PyObject *fn;
    lyra_backend *be;
    int64_t C;
    int H, W;
    float *video;             /* the stream's frames so far (n, 3, H, W), host */
    int64_t n, cap;
    lyra_tensor out[1 + 4096]; /* the stream's latent outputs, in push order */
    int n_out;
} py_encode_ctx;

/* The encoder stand-in as a stream: each push's frames come down from the backend into one host video; at the end
 * the Python callable encodes the whole (T, 3, H, W) video (with the GIL held: pipeline_prepare keeps it) and its
 * latents go back up into the pushes' outputs. */
static lyra_status py_begin(void *ctx) {
    py_encode_ctx *e = ctx;
    e->n = 0;
    e->n_out = 0;
    return LYRA_OK;
}

static lyra_status py_push(void *ctx, const lyra_tensor *const *frames, int n, lyra_tensor *out) {
    py_encode_ctx *e = ctx;
    const int64_t fsz = 3LL * e->H * e->W;
    if (e->n_out == (int)(sizeof e->out / sizeof *e->out))
        return lyra_error(LYRA_ERR_ARG, "encode: too many pushes in one stream");
    if (e->n + n > e->cap) {
        int64_t cap = 2 * (e->n + n);
        float *v = realloc(e->video, sizeof(float) * (size_t)(cap * fsz));
        if (!v) return lyra_error(LYRA_ERR_OOM, "encode: out of memory");
        e->video = v;
        e->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        lyra_tensor h = lyra_tensor_3d(e->video + (e->n + i) * fsz, LYRA_DTYPE_F32, 3, e->H, e->W);
        LYRA_TRY(lyra_op_download(e->be, &h, frames[i]));
    }
    e->n += n;
    e->out[e->n_out++] = *out;
    return LYRA_OK;
}

static lyra_status py_end(void *ctx, int ok) {
    py_encode_ctx *e = ctx;
    if (!ok) return LYRA_OK;
    const int H = e->H, W = e->W;
    npy_intp dims[4] = {(npy_intp)e->n, 3, H, W};
    PyObject *arr = PyArray_SimpleNew(4, dims, NPY_FLOAT32);
    if (!arr) return lyra_error(LYRA_ERR_OOM, "encode: out of memory");
    memcpy(PyArray_DATA((PyArrayObject *)arr), e->video, sizeof(float) * (size_t)(e->n * 3 * H * W));
    PyObject *res = PyObject_CallOneArg(e->fn, arr);
    Py_DECREF(arr);
    if (!res) return lyra_error(LYRA_ERR_ARG, "encode: the callable raised");
    PyArrayObject *out = lyra_py_array(res, NPY_FLOAT32, 4, "encode result");
    Py_DECREF(res);
    if (!out) return lyra_error(LYRA_ERR_ARG, "encode: the result is not a float32 (C, L, h, w) array");
    npy_intp *s = PyArray_DIMS(out);
    if (s[0] != e->C || s[1] != e->n_out || s[2] != H / 8 || s[3] != W / 8) {
        Py_DECREF(out);
        PyErr_Clear();
        return lyra_error(LYRA_ERR_ARG, "encode: expected a (%lld, %d, %d, %d) result", (long long)e->C, e->n_out,
                          H / 8, W / 8);
    }
    /* latent l of the result (C, L, h, w) is the strided host view [:, l] */
    lyra_status st = LYRA_OK;
    for (int l = 0; st == LYRA_OK && l < e->n_out; l++) {
        lyra_tensor h = lyra_tensor_3d((float *)PyArray_DATA(out) + (int64_t)l * (H / 8) * (W / 8), LYRA_DTYPE_F32,
                                       e->C, H / 8, W / 8);
        h.nb[0] = (int64_t)e->n_out * (H / 8) * (W / 8) * (int64_t)sizeof(float);
        st = lyra_op_upload(e->be, &e->out[l], &h);
    }
    Py_DECREF(out);
    return st;
}

/* The device blocks of one pipeline_prepare call. */
typedef struct dev_blocks {
    lyra_backend *be;
    void **p;
    int n, cap;
} dev_blocks;

/* A block of be's memory holding `floats` f32, filled from host (NULL: left as allocated). NULL with the error set. */
static float *dev_put(dev_blocks *b, const float *host, int64_t floats, const char *name) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **p = realloc(b->p, sizeof *p * (size_t)cap);
        if (!p) {
            (void)lyra_error(LYRA_ERR_OOM, "pipeline_prepare: out of host memory");
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    float *d = b->be->ops->alloc(b->be, sizeof(float) * (size_t)(floats > 0 ? floats : 1));
    if (!d) return NULL;
    b->p[b->n++] = d;
    if (host && floats > 0) {
        lyra_tensor t = lyra_tensor_1d(d, LYRA_DTYPE_F32, floats), h = lyra_tensor_1d((void *)host, LYRA_DTYPE_F32, floats);
        t.device = b->be->device;
        t.name = h.name = name;
        if (lyra_op_upload(b->be, &t, &h) != LYRA_OK) return NULL;
    }
    return d;
}

static lyra_tensor dev_view(dev_blocks *b, float *d, int ndim, const int64_t *ne) {
    lyra_tensor t = lyra_tensor_make(d, LYRA_DTYPE_F32, ndim, ne);
    t.device = b->be->device;
    return t;
}

static lyra_status dev_get(dev_blocks *b, PyObject *arr, const lyra_tensor *t) {
    lyra_tensor h = lyra_tensor_make(PyArray_DATA((PyArrayObject *)arr), LYRA_DTYPE_F32, t->ndim, t->ne);
    return lyra_backend_download_as(b->be, &h, t); /* a bf16 condition widened to f32 */
}

static PyObject *py_pipeline_prepare(PyObject *self, PyObject *args) {
    (void)self;
    const char *layout, *device = "cpu", *cond_dtype = "f32";
    long long chunk;
    int warp_chunk;
    PyObject *o_hist, *o_frames, *o_w2c, *o_K, *o_bd, *o_cd, *o_ci, *fn;
    if (!PyArg_ParseTuple(args, "sLOOOOOOOiO|ss", &layout, &chunk, &o_hist, &o_frames, &o_w2c, &o_K, &o_bd, &o_cd,
                          &o_ci, &warp_chunk, &fn, &device, &cond_dtype))
        return NULL;
    if (strcmp(cond_dtype, "f32") && strcmp(cond_dtype, "bf16"))
        return PyErr_Format(PyExc_ValueError, "cond_dtype: '%s' is not allowed; expected 'f32' or 'bf16'", cond_dtype);
    const lyra_dtype cdt = strcmp(cond_dtype, "bf16") ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16;
    if (!PyCallable_Check(fn)) return PyErr_Format(PyExc_TypeError, "encode: expected a callable");
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    PyArrayObject *hist = NULL, *frames = NULL, *w2c = NULL, *K = NULL, *bd = NULL, *cd = NULL, *ci = NULL;
    PyObject *result = NULL, *x = NULL, *y = NULL, *buf = NULL, *wrgb = NULL, *wco = NULL, *ret = NULL;
    float **fptr = NULL, **dptr = NULL, *canon = NULL;
    py_encode_ctx *ectx_keep = NULL;
    lyra_backend be;
    memset(&be, 0, sizeof be);
    dev_blocks blk = {.be = &be};
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
    const int64_t C = hs[0], T = fp.n_total, F = 4LL * fp.n_new, end = F * (chunk + 1) + 1, HW = (int64_t)H * W;
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
    if ((st = lyra_backend_init(&be, strcmp(device, "cuda") ? LYRA_DEVICE_CPU : LYRA_DEVICE_CUDA, 0)) != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    if ((st = lyra_scache_init(&cache, H, W)) != LYRA_OK) { lyra_py_raise(st); goto finally; }
    const int64_t *ids = PyArray_DATA(ci);
    const npy_intp n_c = PyArray_DIM(cd, 0);
    dptr = calloc((size_t)n_c + 1, sizeof *dptr);
    fptr = calloc((size_t)fs[0], sizeof *fptr);
    canon = malloc(sizeof(float) * (size_t)((fp.n_spatial > 0 ? fp.n_spatial : 1) * 3 * HW));
    if (!dptr || !fptr || !canon) { PyErr_NoMemory(); goto finally; }
    for (npy_intp i = 0; i < n_c; i++) {
        if (ids[i] < 0 || ids[i] >= end) {
            PyErr_Format(PyExc_ValueError, "cache_ids[%ld] = %lld is not a frame 0..%lld", (long)i, (long long)ids[i],
                         (long long)(end - 1));
            goto finally;
        }
        const float *kk = (const float *)PyArray_DATA(K) + 9 * ids[i], *ww = (const float *)PyArray_DATA(w2c) + 16 * ids[i];
        const float *di = (const float *)PyArray_DATA(cd) + (int64_t)i * HW;
        if ((st = lyra_scache_add(&cache, di, ww, kk, ids[i], ids[i])) != LYRA_OK) {
            lyra_py_raise(st);
            goto finally;
        }
        if (!(dptr[i] = dev_put(&blk, di, HW, "cache depth"))) goto fail;
    }
    for (npy_intp f = 0; f < fs[0]; f++)
        if (!(fptr[f] = dev_put(&blk, (const float *)PyArray_DATA(frames) + (int64_t)f * 3 * HW, 3 * HW, "frame")))
            goto fail;
    lyra_prep_canonical_coords(fp.n_spatial, H, W, canon);
    const int64_t Cy = LYRA_PREP_MASK_CHANNELS + C + LYRA_PREP_RAY_CHANNELS, Cb = (int64_t)LYRA_PREP_SLOT_CHANNELS * fp.n_spatial;
    const int64_t hw = HW / 64;
    float *d_hist = dev_put(&blk, PyArray_DATA(hist), C * hs[1] * hw, "history");
    float *d_bd = d_hist ? dev_put(&blk, PyArray_DATA(bd), HW, "buffer depth") : NULL;
    float *d_canon = d_bd ? dev_put(&blk, canon, fp.n_spatial * 3 * HW, "canonical coordinates") : NULL;
    float *d_x = d_canon ? dev_put(&blk, NULL, C * T * hw, NULL) : NULL;
    float *d_y = d_x ? dev_put(&blk, NULL, Cy * T * hw, NULL) : NULL;
    float *d_b = d_y ? dev_put(&blk, NULL, Cb * T * hw, NULL) : NULL;
    float *d_rgb = d_b ? dev_put(&blk, NULL, F * 3 * HW, NULL) : NULL;
    float *d_co = d_rgb ? dev_put(&blk, NULL, fp.n_spatial * F * 3 * HW, NULL) : NULL;
    if (!d_co) goto fail;
    const int64_t ne_x[4] = {C, T, H / 8, W / 8}, ne_y[4] = {Cy, T, H / 8, W / 8}, ne_b[4] = {Cb, T, H / 8, W / 8};
    const int64_t ne_w[4] = {F, 3, H, W}, ne_c[5] = {fp.n_spatial, F, 3, H, W};
    lyra_tensor tx = dev_view(&blk, d_x, 4, ne_x), ty = dev_view(&blk, d_y, 4, ne_y), tb = dev_view(&blk, d_b, 4, ne_b);
    ty = lyra_tensor_make(d_y, cdt, 4, ne_y);
    tb = lyra_tensor_make(d_b, cdt, 4, ne_b);
    ty.device = tb.device = be.device;
    lyra_tensor tw = dev_view(&blk, d_rgb, 4, ne_w), tc = dev_view(&blk, d_co, 5, ne_c);
    /* history (C, T, h, w) as the prep reads it: (T, C, h, w), a permuted view */
    const int64_t ne_h[4] = {hs[1], C, H / 8, W / 8};
    lyra_tensor th = dev_view(&blk, d_hist, 4, ne_h);
    th.nb[0] = hw * (int64_t)sizeof(float);
    th.nb[1] = hs[1] * hw * (int64_t)sizeof(float);
    py_encode_ctx *ectx = calloc(1, sizeof *ectx);
    if (!ectx) { PyErr_NoMemory(); goto finally; }
    *ectx = (py_encode_ctx){.fn = fn, .be = &be, .C = C, .H = H, .W = W};
    ectx_keep = ectx;
    lyra_prep_args *pa = calloc(1, sizeof *pa);
    if (!pa) { PyErr_NoMemory(); goto finally; }
    *pa = (lyra_prep_args){
        .be = &be, .fp = &fp, .height = H, .width = W, .latent_c = (int)C, .chunk = chunk, .history = &th,
        .t_hist_total = hs[1], .frames = fptr, .w2c = PyArray_DATA(w2c), .K = PyArray_DATA(K), .buffer_depth = d_bd,
        .cache = &cache, .cache_depth = dptr, .canon = d_canon, .warp_chunk = warp_chunk,
        .encoder = {py_begin, py_push, py_end, ectx}, .x = &tx, .y = &ty, .buffer = &tb, .warp_rgb = &tw, .warp_coords = &tc,
    };
    st = lyra_prep_chunk(pa);
    if (st != LYRA_OK) {
        free(pa);
        if (!PyErr_Occurred()) lyra_py_raise(st);
        goto finally;
    }
    npy_intp dx[4] = {(npy_intp)C, (npy_intp)T, H / 8, W / 8}, dy[4] = {(npy_intp)Cy, (npy_intp)T, H / 8, W / 8};
    npy_intp db[4] = {(npy_intp)Cb, (npy_intp)T, H / 8, W / 8}, dw[4] = {(npy_intp)F, 3, H, W};
    npy_intp dc[5] = {fp.n_spatial, (npy_intp)F, 3, H, W};
    if (!(x = PyArray_SimpleNew(4, dx, NPY_FLOAT32)) || !(y = PyArray_SimpleNew(4, dy, NPY_FLOAT32)) ||
        !(buf = PyArray_SimpleNew(4, db, NPY_FLOAT32)) || !(wrgb = PyArray_SimpleNew(4, dw, NPY_FLOAT32)) ||
        !(wco = PyArray_SimpleNew(5, dc, NPY_FLOAT32))) {
        free(pa);
        goto finally;
    }
    if ((st = dev_get(&blk, x, &tx)) != LYRA_OK || (st = dev_get(&blk, y, &ty)) != LYRA_OK ||
        (st = dev_get(&blk, buf, &tb)) != LYRA_OK || (st = dev_get(&blk, wrgb, &tw)) != LYRA_OK ||
        (st = dev_get(&blk, wco, &tc)) != LYRA_OK) {
        free(pa);
        lyra_py_raise(st);
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
    goto finally;
fail:
    if (!PyErr_Occurred()) lyra_py_raise(LYRA_ERR_OOM);
finally:
    for (int i = 0; i < blk.n; i++) be.ops->release(&be, blk.p[i]);
    free(blk.p);
    if (ectx_keep) free(ectx_keep->video);
    free(ectx_keep);
    if (be.ops) lyra_backend_free(&be);
    lyra_scache_free(&cache);
    free(fptr);
    free(dptr);
    free(canon);
    Py_XDECREF(hist); Py_XDECREF(frames); Py_XDECREF(w2c); Py_XDECREF(K); Py_XDECREF(bd); Py_XDECREF(cd);
    Py_XDECREF(ci); Py_XDECREF(x); Py_XDECREF(y); Py_XDECREF(buf); Py_XDECREF(wrgb); Py_XDECREF(wco);
    Py_XDECREF(ret);
    return result;
}

static PyObject *py_prep_scratch_bytes(PyObject *self, PyObject *args) {
    (void)self;
    const char *layout;
    int H, W, C, warp_chunk;
    if (!PyArg_ParseTuple(args, "siiii", &layout, &H, &W, &C, &warp_chunk)) return NULL;
    lyra_framepack fp;
    lyra_status st = lyra_framepack_parse(&fp, layout);
    if (st != LYRA_OK) return lyra_py_raise(st);
    return PyLong_FromLongLong((long long)lyra_prep_scratch_bytes(&fp, H, W, C, warp_chunk));
}

/* The CUDA forward warp's device temporaries for (C, H, W, n_targets): the source block and one sub-batch of canvases
 * (the sizing the kernel and the measuring backend share). */
static PyObject *py_warp_device_temps_bytes(PyObject *self, PyObject *args) {
    (void)self;
    int C, H, W, N;
    if (!PyArg_ParseTuple(args, "iiii", &C, &H, &W, &N)) return NULL;
    if (C < 1 || H < 1 || W < 1 || N < 1) {
        PyErr_Format(PyExc_ValueError, "warp_device_temps_bytes: C, H, W and n_targets must be >= 1, got %d, %d, %d, %d",
                     C, H, W, N);
        return NULL;
    }
    lyra_warp_device_temps t = lyra_warp_device_temps_of(C, H, W, N);
    return PyLong_FromLongLong((long long)(t.source_bytes + t.canvas_bytes));
}

/* The sampler's work memory the generate driver keeps in the DiT's memory beside x (lyra_ar_sampler_work_numel). */
static PyObject *py_sampler_work_bytes(PyObject *self, PyObject *args) {
    (void)self;
    long long C, th, tn, h, w;
    int use_dmd;
    if (!PyArg_ParseTuple(args, "LLLLLp", &C, &th, &tn, &h, &w, &use_dmd)) return NULL;
    if (C < 1 || th < 0 || tn < 1 || h < 1 || w < 1) {
        PyErr_Format(PyExc_ValueError, "sampler_work_bytes: C, t_new, h and w must be >= 1 and t_hist >= 0, got %lld, "
                     "%lld, %lld, %lld, %lld", C, th, tn, h, w);
        return NULL;
    }
    const int64_t n = lyra_ar_sampler_work_numel(C, th, tn, h, w, use_dmd);
    return PyLong_FromLongLong((long long)sizeof(float) * (long long)n);
}

static PyMethodDef pipeline_methods[] = {
    {"sampler_work_bytes", py_sampler_work_bytes, METH_VARARGS,
     "sampler_work_bytes(C, t_hist, t_new, h, w, use_dmd) -> bytes of the generate driver's sampler state beside x."},
    {"warp_device_temps_bytes", py_warp_device_temps_bytes, METH_VARARGS,
     "warp_device_temps_bytes(C, H, W, n_targets) -> bytes of the CUDA forward warp's device temporaries."},
    {"prep_scratch_bytes", py_prep_scratch_bytes, METH_VARARGS,
     "prep_scratch_bytes(layout, H, W, C, warp_chunk) -> bytes of the temporaries lyra_prep_chunk allocates."},
    {"pipeline_prepare", py_pipeline_prepare, METH_VARARGS,
     "pipeline_prepare(layout, chunk, history, frames, w2c, K, buffer_depth, cache_depths, cache_ids, warp_chunk, "
     "encode, device='cpu', cond_dtype='f32') -> dict: one chunk's network inputs (upstream M:1488-1493, M:1495-1523, M:2024-2033, M:1955-1999)."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_pipeline(PyObject *m) {
    if (PyModule_AddFunctions(m, pipeline_methods) < 0) return -1;
    return lyra_py_add_pipeline_run(m);
}
