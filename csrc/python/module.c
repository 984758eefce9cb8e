/* lyra2._core module: creates Lyra2Error, runs import_array(), and lets every glue file add its part. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL lyra2_ARRAY_API
#include <numpy/arrayobject.h>

#include "lyra2.h"

#include "py_hooks.h"

/* Every glue file's hook, in the order the module is assembled. */
static int (*const add_hooks[])(PyObject *m) = {
    lyra_py_add_backend,
    lyra_py_add_media,
    lyra_py_add_geom,
    lyra_py_add_warp,
    lyra_py_add_sample,
    lyra_py_add_weights,
    lyra_py_add_tokenizer,
    lyra_py_add_vae,
    lyra_py_add_umt5,
    lyra_py_add_clip,
    lyra_py_add_dit,
    lyra_py_add_da3,
    lyra_py_add_moge_net,
    lyra_py_add_moge_geom,
    lyra_py_add_pipeline,
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "lyra2._core",
    "C core of lyra2 (trajectories, warping, networks, sampler, media I/O).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    PyObject *m = PyModule_Create(&core_module);
    if (!m) return NULL;
    lyra_py_error = PyErr_NewExceptionWithDoc(
        "lyra2.Lyra2Error",
        "A run-time failure in lyra2: missing or corrupt weights, out of memory, codec failure, "
        "or a feature this build cannot run.",
        PyExc_RuntimeError, NULL);
    if (!lyra_py_error || PyModule_AddObjectRef(m, "Lyra2Error", lyra_py_error) < 0) goto fail;
    for (size_t i = 0; i < sizeof add_hooks / sizeof add_hooks[0]; i++)
        if (add_hooks[i](m) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
