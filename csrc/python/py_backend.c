/* lyra2._core.build_info() and devices(): what this build can run (behind lyra2.backends()). */
#include "py_common.h"

#include "nn/emu/lyra_emu.h"

#ifdef LYRA2_WITH_CUDA
#include "nn/cuda/lyra_cuda.h"
#endif

static PyObject *py_build_info(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return Py_BuildValue("{s:O,s:O,s:O,s:O}", "cuda", lyra_build_has_cuda() ? Py_True : Py_False,
                         "cblas", lyra_build_has_cblas() ? Py_True : Py_False,
                         "emulated_cuda", lyra_emu_enabled() ? Py_True : Py_False,
                         "cuda_emulation_build", lyra_build_cuda_emulated() ? Py_True : Py_False);
}

/* List of (index, name, total_bytes) of visible CUDA devices; empty for CPU-only builds or no GPU. */
static PyObject *py_cuda_devices(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
#ifdef LYRA2_WITH_CUDA
    int n = lyra_cuda_device_count();
    for (int i = 0; i < n; i++) {
        char name[256];
        size_t total_b = 0;
        if (lyra_cuda_device_name(i, name, sizeof name) != LYRA_OK) continue;
        lyra_cuda_device_memory(i, NULL, &total_b); /* no free bytes: that would make a context on every GPU */
        PyObject *t = Py_BuildValue("(isn)", i, name, (Py_ssize_t)total_b);
        if (!t || PyList_Append(list, t) < 0) { Py_XDECREF(t); Py_DECREF(list); return NULL; }
        Py_DECREF(t);
    }
#endif
    return list;
}

/* Why the CUDA backend cannot run here: None when it can; else the reason (a CPU-only build, or the CUDA error
 * with the driver's and the runtime's versions). */
static PyObject *py_cuda_unavailable(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
#ifdef LYRA2_WITH_CUDA
    char why[512];
    if (!lyra_cuda_unavailable_reason(why, sizeof why)) Py_RETURN_NONE;
    return PyUnicode_FromString(why);
#else
    return PyUnicode_FromString("this build of lyra2 has no CUDA part (nvcc or cuBLAS was not found when it was "
                                "built, or LYRA2_CUDA=0)");
#endif
}

/* {kind: (calls that took the slow reference kernel, description of the first)} for the CUDA backend; empty
 * for CPU-only builds. */
static PyObject *py_cuda_fallbacks(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
#ifdef LYRA2_WITH_CUDA
    for (int k = 0; k < LYRA_CUDA_FALLBACK_KINDS; k++) {
        const char *first = NULL;
        unsigned long long n = lyra_cuda_fallback_count((lyra_cuda_fallback)k, &first);
        PyObject *t = Py_BuildValue("(Ks)", n, first);
        if (!t || PyDict_SetItemString(d, lyra_cuda_fallback_name((lyra_cuda_fallback)k), t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(t);
    }
#endif
    return d;
}

/* The emulated device's counters (nn/emu/lyra_emu.h) as a dict. */
static PyObject *py_emulated_cuda_stats(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    lyra_emu_stats s;
    lyra_emu_stats_get(&s);
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "uploads", (long long)s.uploads,
                         "upload_bytes", (long long)s.upload_bytes, "downloads", (long long)s.downloads,
                         "download_bytes", (long long)s.download_bytes, "allocations", (long long)s.allocations,
                         "releases", (long long)s.releases, "live_bytes", (long long)s.live_bytes,
                         "peak_bytes", (long long)s.peak_bytes, "ops", (long long)s.ops,
                         "refused", (long long)s.refused);
}

static PyObject *py_emulated_cuda_reset(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    lyra_emu_stats_reset();
    Py_RETURN_NONE;
}

/* The logged transfers since the last reset: [(direction "upload"|"download", bytes, name)], plus how many were
 * logged in all (the log keeps the first LYRA_EMU_LOG_CAP). */
static PyObject *py_emulated_cuda_transfers(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    lyra_emu_transfer *log = PyMem_Malloc(sizeof *log * LYRA_EMU_LOG_CAP);
    if (!log) return PyErr_NoMemory();
    int64_t n = lyra_emu_transfer_log(log, LYRA_EMU_LOG_CAP);
    int64_t kept = n < LYRA_EMU_LOG_CAP ? n : LYRA_EMU_LOG_CAP;
    PyObject *list = PyList_New(0);
    for (int64_t i = 0; list && i < kept; i++) {
        PyObject *t = Py_BuildValue("(sLs)", log[i].download ? "download" : "upload", (long long)log[i].bytes,
                                    log[i].name);
        if (!t || PyList_Append(list, t) < 0) Py_CLEAR(list);
        Py_XDECREF(t);
    }
    PyMem_Free(log);
    if (!list) return NULL;
    return Py_BuildValue("(NL)", list, (long long)n);
}

static PyMethodDef backend_methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "Features compiled into this build."},
    {"cuda_devices", py_cuda_devices, METH_NOARGS, "Visible CUDA devices as (index, name, total_bytes)."},
    {"cuda_unavailable", py_cuda_unavailable, METH_NOARGS, "Why the CUDA backend cannot run here, or None."},
    {"cuda_fallbacks", py_cuda_fallbacks, METH_NOARGS,
     "CUDA slow-path counters: {kind: (count, first case)} for kinds 'gemm' and 'attention'."},
    {"emulated_cuda_stats", py_emulated_cuda_stats, METH_NOARGS,
     "Counters of the emulated CUDA device: transfers, pool allocations, live/peak bytes, ops, refusals."},
    {"emulated_cuda_reset", py_emulated_cuda_reset, METH_NOARGS, "Zeroes the emulated device's counters and log."},
    {"emulated_cuda_transfers", py_emulated_cuda_transfers, METH_NOARGS,
     "([(direction, bytes, tensor name)], total logged) since the last reset."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_backend(PyObject *m) { return PyModule_AddFunctions(m, backend_methods); }
