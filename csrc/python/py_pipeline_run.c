/* Python glue of the autoregressive driver (csrc/pipeline/ar_driver.c), used by lyra2/generate.py.
 *
 *   _core.ar_models_load(paths: dict, layout: str, n_threads: int, styles=(), defer=False) -> capsule
 *       paths: {"dit", "vae", "umt5", "tokenizer", "clip", "negative_prompt"[, "lora_dmd"]} file paths; "dit" and
 *       "umt5" may be random weights of the real shapes (lyra2.testing.random_weights, no file): filled in host
 *       memory, or with defer on the device when placed (models/dit.h lyra_dit_load_random, text_weights.h);
 *       styles: (name, path, weight) of each style LoRA applied in every run (at most 4).
 *   _core.ar_models_dit_fp8(capsule, use_dmd) -> None: the LoRAs folded (DMD at 1 or left out), the DiT's blocks
 *       fp8 e4m3, for runs of that use_dmd only (before streaming and placement)
 *   _core.ar_models_info(capsule) -> dict (layout sizes, widths, has_dmd, style_loras [(name, weight)], dit_dtype,
 *       adapter_bytes: the LoRA adapters' bytes still kept unfolded, loras_folded)
 *   _core.ar_generate(models, image (3, H, W) f32 in [-1, 1], depth (H, W) f32, w2c (N, 4, 4), K (N, 3, 3),
 *                     captions: list[str] (one per chunk), use_dmd, guidance, num_steps, shift, seed, label,
 *                     depth_window, progress, log, want_warp, device="cpu", precision="bf16")
 *       -> (frames uint8 (N, H, W, 3), warp uint8 (N, H, W, 3) or None, timings dict: stage seconds, dit_calls,
 *          cache_frames = frames in the spatial memory at the end)
 *       depth_window: None; or DA3 on the run's device (the window stays there, pipeline/depth_window.c), an object
 *           with acquire(n, H, W, h, w, w2c (n, 4, 4), K (n, 3, 3)) -> (DA3 capsule, ext_norm (n, 4, 4), K_proc
 *           (n, 3, 3) at h x w), release(), align(est (n, 3, 4), w2c (n, 4, 4)) -> Umeyama scale, and record(images
 *           uint8 (n, H, W, 3), depth (n, H, W), w2c, K) or record = None (lyra2.generate.DA3Window); or the host
 *           form, a function depth_window(images uint8 (n, H, W, 3), w2c (n, 4, 4), K (n, 3, 3)) -> depth (n, H, W)
 *           (the frames come down, the depths go up);
 *       progress(stage: str, done: int, total: int) and log(message: str), or None.
 *       device "cuda": the captions are embedded (umT5 loaded onto the device for them, then freed), then every
 *       other network is placed there once (lyra_ar_models_place) in `precision` ("bf16": upstream's, the run's LoRAs
 *       folded into the DiT's weights first, so the models then serve runs of that use_dmd only; "f32": parity).
 * The run releases the GIL; callbacks take it back. Ctrl-C (a pending signal, checked before every network
 * evaluation and stage) stops the run: the KeyboardInterrupt is raised and nothing is returned. An exception
 * raised by a callback stops the run the same way and is re-raised. */
#include "py_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/ar_driver.h"
#include "py_netcap.h"
#include "py_weight_source.h"

#define MODELS_CAPSULE "lyra2.ARModels"

typedef struct py_models {
    lyra_ar_models m;
    int busy;
} py_models;

static void models_free(PyObject *cap) {
    py_models *p = PyCapsule_GetPointer(cap, MODELS_CAPSULE);
    if (!p) return;
    lyra_ar_models_free(&p->m);
    free(p);
}

static int path_item(PyObject *paths, const char *key, int required, PyObject **keep, const char **out) {
    *out = NULL;
    PyObject *v = PyDict_GetItemString(paths, key);
    if (!v || v == Py_None) {
        if (required) PyErr_Format(PyExc_ValueError, "paths: missing the %s file", key);
        return required ? -1 : 0;
    }
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(v, &b)) return -1;
    if (PyList_Append(*keep, b) < 0) {
        Py_DECREF(b);
        return -1;
    }
    Py_DECREF(b);
    *out = PyBytes_AS_STRING(b);
    return 0;
}

/* styles: a sequence of (name: str, path, weight: float) -> p->style; the strings stay alive in *keep. */
static int style_items(PyObject *styles, PyObject **keep, lyra_ar_paths *p) {
    if (!styles || styles == Py_None) return 0;
    PyObject *seq = PySequence_Fast(styles, "styles: expected a sequence of (name, path, weight)");
    if (!seq) return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = -1;
    if (n > LYRA_AR_MAX_STYLE_LORAS) {
        PyErr_Format(PyExc_ValueError, "styles: %zd style LoRAs given, at most %d", n, LYRA_AR_MAX_STYLE_LORAS);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name, *path, *b = NULL;
        double w;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "UOd;styles: each item must be (name, path, weight)",
                              &name, &path, &w))
            goto done;
        if (!PyUnicode_FSConverter(path, &b)) goto done;
        int bad = PyList_Append(*keep, b) < 0 || PyList_Append(*keep, name) < 0;
        Py_DECREF(b);
        if (bad) goto done;
        const char *s = PyUnicode_AsUTF8(name);
        if (!s) goto done;
        p->style[i] = (lyra_ar_style_lora){PyBytes_AS_STRING(b), s, (float)w};
    }
    p->n_style = (int)n;
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

/* paths[key] as random weights (lyra2.testing.random_weights) into *ws and *named; 0 when it is a path, 1 when
 * random, -1 with an exception. */
static int random_item(PyObject *paths, const char *key, lyra_py_wsource *ws, lyra_dit_named **named) {
    PyObject *v = PyDict_GetItemString(paths, key);
    if (!v || !PyObject_HasAttrString(v, "_lyra2_random_weights")) return 0;
    char what[32];
    snprintf(what, sizeof what, "paths['%s']", key);
    if (lyra_py_wsource_open_random(ws, v, what, 0, NULL) < 0) return -1;
    if (!(*named = PyMem_Calloc((size_t)ws->n + 1, sizeof **named))) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < ws->n; i++) (*named)[i] = (lyra_dit_named){ws->names[i], ws->tensors[i]};
    return 1;
}

static PyObject *py_ar_models_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *paths, *styles = NULL;
    const char *layout;
    int n_threads, defer = 0;
    if (!PyArg_ParseTuple(args, "O!si|Op:ar_models_load", &PyDict_Type, &paths, &layout, &n_threads, &styles, &defer))
        return NULL;
    PyObject *keep = PyList_New(0);
    if (!keep) return NULL;
    lyra_ar_paths p = {.layout = layout, .n_threads = n_threads};
    lyra_py_wsource ws = {0}, ws5 = {0};
    lyra_dit_named *named = NULL, *named5 = NULL;
    int rnd = random_item(paths, "dit", &ws, &named);
    int rnd5 = rnd < 0 ? 0 : random_item(paths, "umt5", &ws5, &named5);
    p.random_defer = defer;
    if (rnd > 0) {
        p.dit_random = named;
        p.dit_random_n = (int)ws.n;
        p.dit_random_seed = ws.seed;
    }
    if (rnd5 > 0) {
        p.umt5_random = named5;
        p.umt5_random_n = (int)ws5.n;
        p.umt5_random_seed = ws5.seed;
    }
    if (rnd < 0 || rnd5 < 0 || (!rnd && path_item(paths, "dit", 1, &keep, &p.dit) < 0) ||
        path_item(paths, "vae", 1, &keep, &p.vae) < 0 ||
        (!rnd5 && path_item(paths, "umt5", 1, &keep, &p.umt5) < 0) ||
        path_item(paths, "tokenizer", 1, &keep, &p.tokenizer) < 0 ||
        path_item(paths, "clip", 1, &keep, &p.clip) < 0 ||
        path_item(paths, "negative_prompt", 1, &keep, &p.negative_prompt) < 0 ||
        path_item(paths, "lora_dmd", 0, &keep, &p.lora_dmd) < 0 || style_items(styles, &keep, &p) < 0) {
        Py_DECREF(keep);
        PyMem_Free(named);
        PyMem_Free(named5);
        lyra_py_wsource_free(&ws);
        lyra_py_wsource_free(&ws5);
        return NULL;
    }
    py_models *pm = calloc(1, sizeof *pm);
    if (!pm) {
        Py_DECREF(keep);
        PyMem_Free(named);
        PyMem_Free(named5);
        lyra_py_wsource_free(&ws);
        lyra_py_wsource_free(&ws5);
        return PyErr_NoMemory();
    }
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_ar_models_load(&pm->m, &p);
    Py_END_ALLOW_THREADS
    Py_DECREF(keep);
    PyMem_Free(named);
    PyMem_Free(named5);
    lyra_py_wsource_free(&ws);
    lyra_py_wsource_free(&ws5);
    if (st != LYRA_OK) {
        free(pm);
        return lyra_py_raise(st);
    }
    PyObject *cap = PyCapsule_New(pm, MODELS_CAPSULE, models_free);
    if (!cap) {
        lyra_ar_models_free(&pm->m);
        free(pm);
    }
    return cap;
}

/* ar_models_dit_streaming(models, resident) -> None: streams the DiT's blocks [resident, layers) through two block
 * buffers (lyra_dit_set_streaming; resident = layers turns it off). */
static PyObject *py_ar_models_dit_streaming(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    int resident;
    if (!PyArg_ParseTuple(args, "Oi:ar_models_dit_streaming", &cap, &resident)) return NULL;
    py_models *p = PyCapsule_GetPointer(cap, MODELS_CAPSULE);
    if (!p) return NULL;
    if (resident < 0 || resident > p->m.dit.cfg.num_layers) {
        PyErr_Format(PyExc_ValueError, "resident_blocks: %d is outside 0..%d (the DiT's blocks)", resident,
                     p->m.dit.cfg.num_layers);
        return NULL;
    }
    lyra_status st = lyra_dit_set_streaming(&p->m.dit, resident);
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

/* ar_models_dit_fp8(models, use_dmd) -> None: lyra_ar_models_dit_fp8 (LoRAs merged, the DiT's blocks e4m3; for
 * runs of that use_dmd only). Before streaming and placement. */
static PyObject *py_ar_models_dit_fp8(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    int use_dmd;
    if (!PyArg_ParseTuple(args, "Op:ar_models_dit_fp8", &cap, &use_dmd)) return NULL;
    py_models *p = PyCapsule_GetPointer(cap, MODELS_CAPSULE);
    if (!p) return NULL;
    if (p->busy) return PyErr_Format(PyExc_RuntimeError, "generate: the models are in use by another thread");
    lyra_status st;
    p->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_ar_models_dit_fp8(&p->m, use_dmd);
    Py_END_ALLOW_THREADS
    p->busy = 0;
    if (st != LYRA_OK) return lyra_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_ar_models_info(PyObject *self, PyObject *cap) {
    (void)self;
    py_models *p = PyCapsule_GetPointer(cap, MODELS_CAPSULE);
    if (!p) return NULL;
    const lyra_framepack *fp = &p->m.dit.fp;
    PyObject *styles = PyList_New(0);
    if (!styles) return NULL;
    for (int i = 0; i < p->m.n_style; i++) { /* as loaded: a folded model has no adapters left */
        PyObject *t = Py_BuildValue("(sd)", p->m.style[i].name, (double)p->m.style[i].weight);
        if (!t || PyList_Append(styles, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(styles);
            return NULL;
        }
        Py_DECREF(t);
    }
    const lyra_dit_config *c = &p->m.dit.cfg;
    /* the DiT's detected configuration, in the keys of dit_config / dit_measure (benchmarks measure its FLOPs) */
    PyObject *dcfg = Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "dim", c->dim, "ffn_dim",
                                   c->ffn_dim, "num_heads", c->num_heads, "num_layers", c->num_layers, "in_dim",
                                   c->in_dim, "out_dim", c->out_dim, "text_dim", c->text_dim, "freq_dim", c->freq_dim,
                                   "clip_dim", c->clip_dim, "cam_dim", c->cam_dim, "buffer_embed_dim",
                                   c->buffer_embed_dim, "buffer_squeeze", c->buffer_squeeze);
    if (!dcfg) {
        Py_DECREF(styles);
        return NULL;
    }
    unsigned long long adapter_bytes = 0; /* LoRA adapters kept beside the weights (none once folded) */
    for (int a = 0; a < p->m.dit.n_adapters; a++) adapter_bytes += (unsigned long long)p->m.dit.adapters[a].bytes;
    return Py_BuildValue("{s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:O,s:i,s:N,s:N,s:s,s:K,s:O}", "device",
                         lyra_ar_backend(&p->m)->ops->name, "new_latents", fp->n_new, "history_latents",
                         fp->n_history, "spatial_slots", fp->n_spatial, "frames_per_chunk", 4 * fp->n_new, "dit_dim",
                         p->m.dit.cfg.dim, "text_dim", p->m.text_dim, "has_dmd",
                         p->m.dmd_adapter >= 0 || p->m.folded_dmd == 1 ? Py_True : Py_False, "vae_dim",
                         lyra_vae_dim(p->m.vae), "style_loras", styles, "dit_config", dcfg, "dit_dtype",
                         p->m.dit.fp8 ? "fp8" : "bf16", "adapter_bytes", adapter_bytes, "loras_folded",
                         p->m.folded_dmd >= 0 ? Py_True : Py_False);
}

/* The device ('cpu' or 'cuda') and the DiT's device precision ('bf16' or 'f32') of a run: 0, or -1 with a
 * ValueError naming the field. */
static int check_run_device(const char *device, const char *precision) {
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
        PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
        return -1;
    }
    if (strcmp(precision, "bf16") && strcmp(precision, "f32")) {
        PyErr_Format(PyExc_ValueError, "precision: '%s' is not allowed; expected 'bf16' or 'f32'", precision);
        return -1;
    }
    return 0;
}

static PyObject *py_ar_texts_missing(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *captions;
    const char *device, *precision;
    if (!PyArg_ParseTuple(args, "OO!ss:ar_texts_missing", &cap, &PyList_Type, &captions, &device, &precision)) return NULL;
    if (check_run_device(device, precision) < 0) return NULL;
    py_models *pm = PyCapsule_GetPointer(cap, MODELS_CAPSULE);
    if (!pm) return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(captions);
    const char **caps = calloc((size_t)n + 1, sizeof *caps);
    if (!caps) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(captions, i);
        if (!PyUnicode_Check(s) || !(caps[i] = PyUnicode_AsUTF8(s))) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "captions[%zd]: expected str", i);
            free(caps);
            return NULL;
        }
    }
    int missing = lyra_ar_texts_missing(&pm->m, strcmp(device, "cuda") ? LYRA_DEVICE_CPU : LYRA_DEVICE_CUDA,
                                        strcmp(precision, "f32") ? LYRA_DTYPE_BF16 : LYRA_DTYPE_F32, (int)n, caps);
    free(caps);
    return PyLong_FromLong(missing);
}

/* ---- callbacks (run without the GIL; each takes it back) ---- */

typedef struct py_run_ctx {
    PyObject *depth_fn, *progress_fn, *log_fn;
    int height, width;
    PyObject *da3_cap;          /* the DA3 capsule lent between acquire and release (the device form) */
    lyra_py_netcap *da3_net;
    PyObject *exc_type, *exc_value, *exc_tb; /* the first exception, re-raised after the run */
} py_run_ctx;

/* With the GIL held: keeps the pending exception for after the run. */
static void stash(py_run_ctx *c) {
    if (!PyErr_Occurred()) return;
    if (c->exc_type) {
        PyErr_Clear();
        return;
    }
    PyErr_Fetch(&c->exc_type, &c->exc_value, &c->exc_tb);
}

static int cb_interrupted(void *ctx) {
    py_run_ctx *c = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    if (!c->exc_type && PyErr_CheckSignals() < 0) stash(c);
    int stop = c->exc_type != NULL;
    PyGILState_Release(g);
    return stop;
}

static void cb_progress(void *ctx, const char *stage, int done, int total) {
    py_run_ctx *c = ctx;
    if (!c->progress_fn) return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (!c->exc_type) {
        PyObject *r = PyObject_CallFunction(c->progress_fn, "sii", stage, done, total);
        if (!r) stash(c);
        Py_XDECREF(r);
    }
    PyGILState_Release(g);
}

static void cb_log(void *ctx, const char *message) {
    py_run_ctx *c = ctx;
    if (!c->log_fn) return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (!c->exc_type) {
        PyObject *r = PyObject_CallFunction(c->log_fn, "s", message);
        if (!r) stash(c);
        Py_XDECREF(r);
    }
    PyGILState_Release(g);
}

static lyra_status cb_depth(void *ctx, int n, const uint8_t *images, const float *w2c, const float *K, int height,
                            int width, float *depth) {
    py_run_ctx *c = ctx;
    lyra_status st = LYRA_OK;
    PyGILState_STATE g = PyGILState_Ensure();
    npy_intp di[4] = {n, height, width, 3}, dw[3] = {n, 4, 4}, dk[3] = {n, 3, 3};
    PyObject *ai = PyArray_SimpleNew(4, di, NPY_UINT8), *aw = PyArray_SimpleNew(3, dw, NPY_FLOAT32),
             *ak = PyArray_SimpleNew(3, dk, NPY_FLOAT32), *res = NULL;
    PyArrayObject *out = NULL;
    if (!ai || !aw || !ak) goto fail;
    memcpy(PyArray_DATA((PyArrayObject *)ai), images, (size_t)n * height * width * 3);
    memcpy(PyArray_DATA((PyArrayObject *)aw), w2c, sizeof(float) * 16 * (size_t)n);
    memcpy(PyArray_DATA((PyArrayObject *)ak), K, sizeof(float) * 9 * (size_t)n);
    if (!(res = PyObject_CallFunctionObjArgs(c->depth_fn, ai, aw, ak, NULL))) goto fail;
    if (!(out = lyra_py_array(res, NPY_FLOAT32, 3, "depth_window result"))) goto fail;
    if (PyArray_DIM(out, 0) != n || PyArray_DIM(out, 1) != height || PyArray_DIM(out, 2) != width) {
        PyErr_Format(PyExc_ValueError, "depth_window: expected a (%d, %d, %d) depth array", n, height, width);
        goto fail;
    }
    memcpy(depth, PyArray_DATA(out), sizeof(float) * (size_t)n * height * width);
    goto done;
fail:
    stash(c);
    st = lyra_error(LYRA_ERR_INTERRUPTED, "depth_window raised");
done:
    Py_XDECREF(ai); Py_XDECREF(aw); Py_XDECREF(ak); Py_XDECREF(res); Py_XDECREF(out);
    PyGILState_Release(g);
    return st;
}

/* ---- the depth window's DA3 on the device (lyra_ar_depth_model over a Python object, see the top comment) ---- */

/* A float32 array result of `shape` copied into dst; -1 with an exception otherwise. */
static int copy_f32(PyObject *o, int nd, const npy_intp *shape, float *dst, const char *what) {
    PyArrayObject *a = lyra_py_array(o, NPY_FLOAT32, nd, what);
    if (!a) return -1;
    for (int i = 0; i < nd; i++)
        if (PyArray_DIM(a, i) != shape[i]) {
            PyErr_Format(PyExc_ValueError, "%s: expected %d dims of sizes (%ld, %ld, %ld)", what, nd, (long)shape[0],
                         (long)shape[1], nd > 2 ? (long)shape[2] : 1L);
            Py_DECREF(a);
            return -1;
        }
    memcpy(dst, PyArray_DATA(a), PyArray_NBYTES(a));
    Py_DECREF(a);
    return 0;
}

static PyObject *f32_array(int nd, npy_intp *dims, const float *src) {
    PyObject *a = PyArray_SimpleNew(nd, dims, NPY_FLOAT32);
    if (a) memcpy(PyArray_DATA((PyArrayObject *)a), src, PyArray_NBYTES((PyArrayObject *)a));
    return a;
}

/* Gives the borrowed DA3 back: its arena emptied, the capsule's lock released (without the GIL, as it was taken),
 * then the capsule and the Python side's release(), whose error is stashed for the driver when `report`, else
 * dropped. */
static void da3_give_back(py_run_ctx *c, int report) {
    c->da3_net->arena.used = 0;
    PyThread_release_lock(c->da3_net->lock);
    PyGILState_STATE g = PyGILState_Ensure();
    Py_CLEAR(c->da3_cap);
    PyObject *r = PyObject_CallMethod(c->depth_fn, "release", NULL);
    if (!r) {
        if (report)
            stash(c);
        else
            PyErr_Clear();
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
}

static lyra_status dm_acquire(void *ctx, int n, int height, int width, int h, int w, const float *w2c, const float *K,
                              float *ext_norm, float *K_proc, const lyra_da3 **m, lyra_backend **be,
                              lyra_arena **arena) {
    py_run_ctx *c = ctx;
    lyra_status st = LYRA_OK;
    PyGILState_STATE g = PyGILState_Ensure();
    npy_intp dw[3] = {n, 4, 4}, dk[3] = {n, 3, 3};
    PyObject *aw = f32_array(3, dw, w2c), *ak = f32_array(3, dk, K), *res = NULL;
    const lyra_da3 *model = NULL;
    if (!aw || !ak) goto fail;
    res = PyObject_CallMethod(c->depth_fn, "acquire", "iiiiiOO", n, height, width, h, w, aw, ak);
    if (!res) goto fail;
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
        PyErr_SetString(PyExc_TypeError, "depth window acquire: expected (DA3 network, ext_norm, K_proc)");
        goto fail;
    }
    if (copy_f32(PyTuple_GET_ITEM(res, 1), 3, dw, ext_norm, "depth window acquire: ext_norm") < 0 ||
        copy_f32(PyTuple_GET_ITEM(res, 2), 3, dk, K_proc, "depth window acquire: K_proc") < 0)
        goto fail;
    if (!(model = lyra_py_da3_borrow(PyTuple_GET_ITEM(res, 0), &c->da3_net))) goto fail;
    c->da3_cap = PyTuple_GET_ITEM(res, 0);
    Py_INCREF(c->da3_cap);
    goto done;
fail:
    stash(c);
    st = lyra_error(LYRA_ERR_INTERRUPTED, "depth window: acquire raised");
done:
    Py_XDECREF(aw); Py_XDECREF(ak); Py_XDECREF(res);
    PyGILState_Release(g);
    if (st != LYRA_OK) return st;
    /* the capsule's lock (without the GIL: another thread may hold it while it waits for the GIL), then the arena
     * the call needs */
    PyThread_acquire_lock(c->da3_net->lock, WAIT_LOCK);
    st = lyra_py_netcap_arena(c->da3_net, lyra_da3_arena_bytes(model, n, h, w));
    if (st != LYRA_OK) {
        da3_give_back(c, 0); /* the allocation error is the one to report */
        return st;
    }
    *m = model, *be = &c->da3_net->be, *arena = &c->da3_net->arena;
    return LYRA_OK;
}

static void dm_release(void *ctx) { da3_give_back(ctx, 1); /* its error is seen at the next interrupt check */ }

static lyra_status dm_align(void *ctx, int n, const float *est, const float *w2c, double *s) {
    py_run_ctx *c = ctx;
    lyra_status st = LYRA_OK;
    PyGILState_STATE g = PyGILState_Ensure();
    npy_intp de[3] = {n, 3, 4}, dw[3] = {n, 4, 4};
    PyObject *ae = f32_array(3, de, est), *aw = f32_array(3, dw, w2c), *res = NULL;
    if (!ae || !aw || !(res = PyObject_CallMethod(c->depth_fn, "align", "OO", ae, aw))) goto fail;
    *s = PyFloat_AsDouble(res);
    if (*s == -1.0 && PyErr_Occurred()) goto fail;
    if (!(*s > 0.0) || !isfinite(*s)) {
        PyErr_Format(PyExc_ValueError, "depth window align: the Umeyama scale %g must be finite and > 0", *s);
        goto fail;
    }
    goto done;
fail:
    stash(c);
    st = lyra_error(LYRA_ERR_INTERRUPTED, "depth window: align raised");
done:
    Py_XDECREF(ae); Py_XDECREF(aw); Py_XDECREF(res);
    PyGILState_Release(g);
    return st;
}

static lyra_status dm_record(void *ctx, int n, const uint8_t *images, const float *depth, const float *w2c,
                             const float *K) {
    py_run_ctx *c = ctx;
    lyra_status st = LYRA_OK;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *img = NULL, *ad = NULL, *aw = NULL, *ak = NULL, *res = NULL;
    PyObject *fn = PyObject_GetAttrString(c->depth_fn, "record");
    if (!fn) goto fail;
    const int H = c->height, W = c->width;
    npy_intp di[4] = {n, H, W, 3}, dd[3] = {n, H, W}, dw[3] = {n, 4, 4}, dk[3] = {n, 3, 3};
    if (!(img = PyArray_SimpleNew(4, di, NPY_UINT8))) goto fail;
    memcpy(PyArray_DATA((PyArrayObject *)img), images, PyArray_NBYTES((PyArrayObject *)img));
    if (!(ad = f32_array(3, dd, depth)) || !(aw = f32_array(3, dw, w2c)) || !(ak = f32_array(3, dk, K))) goto fail;
    if (!(res = PyObject_CallFunctionObjArgs(fn, img, ad, aw, ak, NULL))) goto fail;
    goto done;
fail:
    stash(c);
    st = lyra_error(LYRA_ERR_INTERRUPTED, "depth window: record raised");
done:
    Py_XDECREF(fn); Py_XDECREF(img); Py_XDECREF(ad); Py_XDECREF(aw); Py_XDECREF(ak); Py_XDECREF(res);
    PyGILState_Release(g);
    return st;
}

static PyObject *py_ar_generate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *o_img, *o_depth, *o_w2c, *o_K, *captions, *depth_fn, *progress_fn, *log_fn;
    int use_dmd, num_steps, want_warp, park_vae = 0;
    double guidance, shift;
    unsigned long long seed;
    const char *label, *device = "cpu", *precision = "bf16";
    if (!PyArg_ParseTuple(args, "OOOOOO!pdidKsOOOp|ssp:ar_generate", &cap, &o_img, &o_depth, &o_w2c, &o_K, &PyList_Type,
                          &captions, &use_dmd, &guidance, &num_steps, &shift, &seed, &label, &depth_fn, &progress_fn,
                          &log_fn, &want_warp, &device, &precision, &park_vae))
        return NULL;
    if (check_run_device(device, precision) < 0) return NULL;
    py_models *pm = PyCapsule_GetPointer(cap, MODELS_CAPSULE);
    if (!pm) return NULL;
    if (pm->busy) return PyErr_Format(PyExc_RuntimeError, "generate: the models are in use by another thread");
    if (seed > 0xffffffffULL) return PyErr_Format(PyExc_ValueError, "seed: %llu must be in [0, 2**32)", seed);
    PyArrayObject *img = NULL, *depth = NULL, *w2c = NULL, *K = NULL;
    PyObject *frames = NULL, *warp = NULL, *result = NULL;
    const char **caps = NULL;
    py_run_ctx ctx = {0};
    if (!(img = lyra_py_array(o_img, NPY_FLOAT32, 3, "image")) || !(depth = lyra_py_array(o_depth, NPY_FLOAT32, 2, "depth")) ||
        !(w2c = lyra_py_array(o_w2c, NPY_FLOAT32, 3, "w2c")) || !(K = lyra_py_array(o_K, NPY_FLOAT32, 3, "intrinsics")))
        goto finally;
    const npy_intp H = PyArray_DIM(img, 1), W = PyArray_DIM(img, 2), N = PyArray_DIM(w2c, 0);
    if (PyArray_DIM(img, 0) != 3 || PyArray_DIM(depth, 0) != H || PyArray_DIM(depth, 1) != W) {
        PyErr_SetString(PyExc_ValueError, "image (3, H, W) and depth (H, W) sizes differ");
        goto finally;
    }
    if (PyArray_DIM(w2c, 1) != 4 || PyArray_DIM(w2c, 2) != 4 || PyArray_DIM(K, 0) != N || PyArray_DIM(K, 1) != 3 ||
        PyArray_DIM(K, 2) != 3) {
        PyErr_SetString(PyExc_ValueError, "w2c (N, 4, 4) and intrinsics (N, 3, 3): expected matching shapes");
        goto finally;
    }
    const int F = 4 * pm->m.dit.fp.n_new;
    const Py_ssize_t n_chunks = PyList_GET_SIZE(captions);
    if (N > 1 && (N - 1) % F == 0 && n_chunks != (N - 1) / F) {
        PyErr_Format(PyExc_ValueError, "captions: %zd given, %ld chunks need one each", n_chunks, (long)((N - 1) / F));
        goto finally;
    }
    caps = calloc((size_t)n_chunks + 1, sizeof *caps);
    if (!caps) { PyErr_NoMemory(); goto finally; }
    for (Py_ssize_t i = 0; i < n_chunks; i++) {
        PyObject *s = PyList_GET_ITEM(captions, i);
        if (!PyUnicode_Check(s) || !(caps[i] = PyUnicode_AsUTF8(s))) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "captions[%zd]: expected str", i);
            goto finally;
        }
    }
    npy_intp dims[4] = {N, H, W, 3};
    if (!(frames = PyArray_ZEROS(4, dims, NPY_UINT8, 0))) goto finally;
    if (want_warp && !(warp = PyArray_ZEROS(4, dims, NPY_UINT8, 0))) goto finally;
    ctx.depth_fn = depth_fn == Py_None ? NULL : depth_fn;
    ctx.height = (int)H, ctx.width = (int)W;
    /* the device form: an object with acquire / release / align (and record, or record = None) */
    lyra_ar_depth_model dm = {.ctx = &ctx, .acquire = dm_acquire, .release = dm_release, .align = dm_align};
    const int device_form = ctx.depth_fn && PyObject_HasAttrString(ctx.depth_fn, "acquire");
    if (device_form) {
        PyObject *rec = PyObject_GetAttrString(ctx.depth_fn, "record");
        if (!rec) PyErr_Clear();
        if (rec && rec != Py_None) dm.record = dm_record;
        Py_XDECREF(rec);
    }
    ctx.progress_fn = progress_fn == Py_None ? NULL : progress_fn;
    ctx.log_fn = log_fn == Py_None ? NULL : log_fn;
    lyra_ar_run run = {
        .device = strcmp(device, "cuda") ? LYRA_DEVICE_CPU : LYRA_DEVICE_CUDA,
        .policy = strcmp(precision, "f32") ? LYRA_DTYPE_BF16 : LYRA_DTYPE_F32,
        .models = &pm->m, .height = (int)H, .width = (int)W, .num_frames = N, .image = PyArray_DATA(img),
        .depth = PyArray_DATA(depth), .w2c = PyArray_DATA(w2c), .K = PyArray_DATA(K), .captions = caps,
        .use_dmd = use_dmd, .guidance = (float)guidance, .num_steps = num_steps, .shift = shift,
        .seed = (uint32_t)seed, .warp_chunk = LYRA_AR_WARP_CHUNK, .label = label, .park_vae_caches = park_vae,
        .depth_model = device_form ? &dm : NULL, .depth_window = ctx.depth_fn && !device_form ? cb_depth : NULL,
        .depth_ctx = &ctx, .interrupted = cb_interrupted,
        .interrupt_ctx = &ctx, .progress = cb_progress, .log = cb_log, .report_ctx = &ctx,
        .out_frames = PyArray_DATA((PyArrayObject *)frames),
        .out_warp = warp ? PyArray_DATA((PyArrayObject *)warp) : NULL,
    };
    lyra_status st;
    pm->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_ar_generate(&run);
    Py_END_ALLOW_THREADS
    pm->busy = 0;
    if (ctx.exc_type) {
        PyErr_Restore(ctx.exc_type, ctx.exc_value, ctx.exc_tb);
        goto finally;
    }
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    const lyra_ar_timings *t = &run.timings;
    result = Py_BuildValue("(OO{s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:i,s:i})", frames, warp ? warp : Py_None, "text_s",
                           t->text, "clip_s", t->clip, "prep_s", t->prep, "dit_s", t->dit, "decode_s", t->decode,
                           "reencode_s", t->reencode, "depth_s", t->depth, "prime_s", t->prime, "dit_calls",
                           t->dit_calls, "cache_frames", t->cache_frames);
finally:
    free(caps);
    Py_XDECREF(img); Py_XDECREF(depth); Py_XDECREF(w2c); Py_XDECREF(K); Py_XDECREF(frames); Py_XDECREF(warp);
    return result;
}

static PyMethodDef run_methods[] = {
    {"ar_models_dit_fp8", py_ar_models_dit_fp8, METH_VARARGS,
     "ar_models_dit_fp8(models, use_dmd): LoRAs merged, the DiT's blocks fp8 e4m3 (before streaming and placement)."},
    {"ar_models_load", py_ar_models_load, METH_VARARGS,
     "ar_models_load(paths, layout, n_threads, styles=(), defer=False) -> capsule: the generate-mode networks of a "
     "converted folder."},
    {"ar_models_info", py_ar_models_info, METH_O, "ar_models_info(models) -> dict"},
    {"ar_models_dit_streaming", py_ar_models_dit_streaming, METH_VARARGS,
     "ar_models_dit_streaming(models, resident) -> None"},
    {"ar_generate", py_ar_generate, METH_VARARGS,
     "ar_generate(models, image, depth, w2c, K, captions, use_dmd, guidance, num_steps, shift, seed, label, "
     "depth_window, progress, log, want_warp, device='cpu', precision='bf16', park_vae_caches=False) -> (frames, "
     "warp, timings)"},
    {"ar_texts_missing", py_ar_texts_missing, METH_VARARGS,
     "ar_texts_missing(models, captions, device, precision) -> int: distinct captions not embedded before (a run "
     "with them loads umT5 onto the device)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_pipeline_run(PyObject *m) { return PyModule_AddFunctions(m, run_methods); }
