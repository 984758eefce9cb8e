/* lyra2._core.build_info() and devices(): what this build can run (behind lyra2.backends()). */
#include "py_common.h"

#ifdef LYRA2_WITH_CUDA
#include "nn/cuda/lyra_cuda.h"
#endif

static PyObject *py_build_info(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return Py_BuildValue("{s:O,s:O,s:O}", "cuda", lyra_build_has_cuda() ? Py_True : Py_False,
                         "cuda_emulated", lyra_build_cuda_emulated() ? Py_True : Py_False,
                         "cblas", lyra_build_has_cblas() ? Py_True : Py_False);
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
        size_t free_b = 0, total_b = 0;
        if (lyra_cuda_device_name(i, name, sizeof name) != LYRA_OK) continue;
        lyra_cuda_device_memory(i, &free_b, &total_b);
        PyObject *t = Py_BuildValue("(isn)", i, name, (Py_ssize_t)total_b);
        if (!t || PyList_Append(list, t) < 0) { Py_XDECREF(t); Py_DECREF(list); return NULL; }
        Py_DECREF(t);
    }
#endif
    return list;
}

static PyMethodDef backend_methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "Features compiled into this build."},
    {"cuda_devices", py_cuda_devices, METH_NOARGS, "Visible CUDA devices as (index, name, total_bytes)."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_backend(PyObject *m) { return PyModule_AddFunctions(m, backend_methods); }
