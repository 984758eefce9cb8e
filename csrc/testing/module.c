/* lyra2._testops: a separate extension holding the code that only tests and benchmarks use (the backend ops
 * on NumPy arrays, the CUDA measurements, the generic-ViT probe), so that lyra2._core ships none of it. It links the same core
 * objects as _core (setup.py builds them once) and raises lyra2._core's Lyra2Error. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL lyra2_ARRAY_API
#include <numpy/arrayobject.h>

#include "lyra2.h"
#include "python/py_hooks.h"
#include "testops.h"

static struct PyModuleDef testops_module = {
    PyModuleDef_HEAD_INIT, "lyra2._testops",
    "Backend ops on float32 NumPy arrays (backend='cpu'|'cuda', dtype='f32'|'bf16'|'f16') and CUDA measurements, "
    "for the op tests and benchmarks only (not a public API).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__testops(void) {
    import_array();
    PyObject *core = PyImport_ImportModule("lyra2._core");
    if (!core) return NULL;
    lyra_py_error = PyObject_GetAttrString(core, "Lyra2Error"); /* the one class, shared with _core */
    Py_DECREF(core);
    if (!lyra_py_error) return NULL;
    PyObject *m = PyModule_Create(&testops_module);
    if (!m) return NULL;
    if (lyra_testops_add_ops(m) < 0 || lyra_testops_add_vit(m) < 0 || lyra_testops_add_fp8(m) < 0 ||
        lyra_testops_add_sampler(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
