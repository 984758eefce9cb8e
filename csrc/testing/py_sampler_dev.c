/* sampler_run: the tensor samplers (sample/unipc.h lyra_unipc_run, sample/dmd.h lyra_dmd_run) on the CPU backend or the
 * device (backend="cuda": a GPU, or the emulated device under LYRA2_EMULATED_CUDA=1) with a toy denoiser made of
 * single-rounding backend ops, so its velocities are the same bits on every backend: the conditional velocity is a copy
 * of the generated frames of x, the unconditional one their square (x ⊙ x). The test compares the result with the
 * host API (lyra2.sampling) and a NumPy denoiser doing the same, bit for bit, and reads the emulated device's transfer
 * log: per network call nothing crosses. */
#include "python/py_common.h"

#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "py_ops_stage.h"
#include "sample/cfg.h"
#include "sample/dmd.h"
#include "sample/latent_state.h"
#include "sample/unipc.h"
#include "testops.h"

typedef struct toy {
    lyra_backend *be;
    int square; /* 0: v = x_gen; 1: v = x_gen ⊙ x_gen */
} toy;

static lyra_status toy_denoise(void *ctx, const lyra_latent_shape *shape, const lyra_tensor *x, float t,
                               lyra_tensor *v_out) {
    (void)t;
    toy *d = ctx;
    lyra_tensor xg = lyra_state_gen(shape, x);
    return d->square ? lyra_op_mul(d->be, v_out, &xg, &xg) : lyra_op_copy(d->be, v_out, &xg);
}

/* The run on be: history and noise host arrays in, the final state out (host). */
static lyra_status run_on(lyra_backend *be, const lyra_latent_shape *shape, int dmd, int num_steps, double shift,
                          int cfg_on, float guidance, const float *history, const float *noise, const float *renoise,
                          float *x_out) {
    const int64_t n = lyra_latent_numel(shape), ngen = lyra_latent_gen_numel(shape);
    const int64_t work_n = dmd ? lyra_dmd_work_numel(shape) : lyra_unipc_work_numel(shape) + ngen;
    float *x = be->ops->alloc(be, sizeof(float) * (size_t)n);
    float *work = be->ops->alloc(be, sizeof(float) * (size_t)work_n);
    lyra_status st = x && work ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "sampler_run: out of device memory");
    lyra_tensor tx = lyra_state_tensor(be, shape, x, "sampler state x");
    if (st == LYRA_OK && shape->t_hist > 0) { /* the history frames; the generated ones come from `noise` */
        lyra_tensor th = tx, hh = lyra_tensor_4d((void *)history, LYRA_DTYPE_F32, shape->c, shape->t_hist, shape->h,
                                                 shape->w);
        th.ne[1] = shape->t_hist;
        hh.name = th.name = "history";
        st = lyra_op_upload(be, &th, &hh);
    }
    toy cond = {be, 0}, uncond = {be, 1};
    lyra_cfg_tensor cfg = {be, toy_denoise, &cond, toy_denoise, &uncond, guidance,
                           dmd ? NULL : work + lyra_unipc_work_numel(shape)};
    if (st == LYRA_OK) {
        if (dmd) st = lyra_dmd_run(be, shape, x, work, noise, NULL, renoise, toy_denoise, &cond, NULL);
        else st = lyra_unipc_run(be, shape, num_steps, shift, x, work, noise,
                                 cfg_on ? lyra_cfg_tensor_denoise : toy_denoise, cfg_on ? (void *)&cfg : (void *)&cond,
                                 NULL);
    }
    if (st == LYRA_OK) st = lyra_state_trace(be, &tx, x_out);
    if (x) be->ops->release(be, x);
    if (work) be->ops->release(be, work);
    return st;
}

/* sampler_run(kind, history (C, t_hist, h, w), noise (C, t_new, h, w), num_steps=2, shift=5.0, guidance=None,
 * renoise=None (3, T, C, h, w), backend="cpu") -> the final state (C, T, h, w). */
static PyObject *py_sampler_run(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kws[] = {"kind", "history", "noise", "num_steps", "shift", "guidance", "renoise", "backend", NULL};
    const char *kind, *backend = "cpu";
    PyObject *ho, *no, *go = Py_None, *ro = Py_None;
    int num_steps = 2;
    double shift = 5.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sOO|idOOs", kws, &kind, &ho, &no, &num_steps, &shift, &go, &ro,
                                     &backend))
        return NULL;
    const int dmd = !strcmp(kind, "dmd");
    if (!dmd && strcmp(kind, "unipc")) {
        PyErr_Format(PyExc_ValueError, "kind must be 'unipc' or 'dmd', got '%s'", kind);
        return NULL;
    }
    if (strcmp(backend, "cpu") && strcmp(backend, "cuda")) {
        PyErr_Format(PyExc_ValueError, "backend must be 'cpu' or 'cuda', got '%s'", backend);
        return NULL;
    }
    if (dmd && ro == Py_None) {
        PyErr_SetString(PyExc_ValueError, "renoise: the DMD run takes its re-noise blocks (3, T, C, h, w)");
        return NULL;
    }
    float guidance = 0.0f;
    if (go != Py_None) {
        guidance = (float)PyFloat_AsDouble(go);
        if (PyErr_Occurred()) return NULL;
    }
    PyArrayObject *h = NULL, *nz = NULL, *rn = NULL, *out = NULL;
    if (!(h = lyra_py_array(ho, NPY_FLOAT32, 4, "history (C, t_hist, h, w)")) ||
        !(nz = lyra_py_array(no, NPY_FLOAT32, 4, "noise (C, t_new, h, w)")))
        goto fail;
    lyra_latent_shape shape = {PyArray_DIM(h, 0), PyArray_DIM(h, 1), PyArray_DIM(nz, 1), PyArray_DIM(h, 2),
                               PyArray_DIM(h, 3)};
    if (PyArray_DIM(nz, 0) != shape.c || PyArray_DIM(nz, 2) != shape.h || PyArray_DIM(nz, 3) != shape.w) {
        PyErr_SetString(PyExc_ValueError, "noise: (C, t_new, h, w) with history's C, h, w");
        goto fail;
    }
    const int64_t T = shape.t_hist + shape.t_new;
    if (ro != Py_None) {
        if (!(rn = lyra_py_array(ro, NPY_FLOAT32, 5, "renoise (3, T, C, h, w)"))) goto fail;
        const npy_intp want[5] = {3, T, shape.c, shape.h, shape.w};
        if (!PyArray_CompareLists(PyArray_DIMS(rn), want, 5)) {
            PyErr_SetString(PyExc_ValueError, "renoise: (3, T, C, h, w)");
            goto fail;
        }
    }
    const npy_intp od[4] = {shape.c, T, shape.h, shape.w};
    if (!(out = (PyArrayObject *)PyArray_SimpleNew(4, od, NPY_FLOAT32))) goto fail;
    lyra_status st;
    if (!strcmp(backend, "cuda")) {
        lyra_backend *be = ops_cuda_backend();
        if (!be) goto fail;
        Py_BEGIN_ALLOW_THREADS ops_cuda_lock();
        st = run_on(be, &shape, dmd, num_steps, shift, go != Py_None, guidance, PyArray_DATA(h), PyArray_DATA(nz),
                    rn ? PyArray_DATA(rn) : NULL, PyArray_DATA(out));
        ops_cuda_unlock();
        Py_END_ALLOW_THREADS
    } else {
        lyra_backend be;
        st = lyra_backend_cpu_init(&be, 1);
        if (st == LYRA_OK) {
            Py_BEGIN_ALLOW_THREADS st = run_on(&be, &shape, dmd, num_steps, shift, go != Py_None, guidance,
                                               PyArray_DATA(h), PyArray_DATA(nz), rn ? PyArray_DATA(rn) : NULL,
                                               PyArray_DATA(out));
            Py_END_ALLOW_THREADS
            lyra_backend_free(&be);
        }
    }
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto fail;
    }
    Py_DECREF(h);
    Py_DECREF(nz);
    Py_XDECREF(rn);
    return (PyObject *)out;
fail:
    Py_XDECREF(h);
    Py_XDECREF(nz);
    Py_XDECREF(rn);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef sampler_methods[] = {
    {"sampler_run", (PyCFunction)(void (*)(void))py_sampler_run, METH_VARARGS | METH_KEYWORDS,
     "sampler_run(kind 'unipc'|'dmd', history (C, t_hist, h, w), noise (C, t_new, h, w), num_steps=2, shift=5.0, "
     "guidance=None, renoise=None, backend='cpu'|'cuda') -> the final state (C, T, h, w): the tensor sampler with a "
     "toy denoiser (v = x_gen; CFG's uncond x_gen ⊙ x_gen)."},
    {NULL, NULL, 0, NULL},
};

int lyra_testops_add_sampler(PyObject *m) { return PyModule_AddFunctions(m, sampler_methods); }
