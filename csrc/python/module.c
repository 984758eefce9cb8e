/* lyra2._core module: creates Lyra2Error, runs import_array(), and lets every glue file add its part. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL lyra2_ARRAY_API
#include <numpy/arrayobject.h>

#include "lyra2.h"

/* The registration hooks (declared in py_common.h, which cannot be included here: it sets NO_IMPORT_ARRAY). */
int lyra_py_add_backend(PyObject *m);
int lyra_py_add_media(PyObject *m);
int lyra_py_add_geom(PyObject *m);
int lyra_py_add_warp(PyObject *m);
int lyra_py_add_sample(PyObject *m);
int lyra_py_add_ops(PyObject *m);
int lyra_py_add_weights(PyObject *m);
int lyra_py_add_tokenizer(PyObject *m);
int lyra_py_add_vae(PyObject *m);
int lyra_py_add_text(PyObject *m);
int lyra_py_add_dit(PyObject *m);
int lyra_py_add_depth(PyObject *m);
int lyra_py_add_moge(PyObject *m);
int lyra_py_add_pipeline(PyObject *m);

PyObject *lyra_py_error = NULL;

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
    if (lyra_py_add_backend(m) < 0 || lyra_py_add_media(m) < 0 || lyra_py_add_geom(m) < 0 ||
        lyra_py_add_warp(m) < 0 ||
        lyra_py_add_sample(m) < 0 || lyra_py_add_ops(m) < 0 || lyra_py_add_weights(m) < 0 ||
        lyra_py_add_tokenizer(m) < 0 || lyra_py_add_vae(m) < 0 || lyra_py_add_text(m) < 0 ||
        lyra_py_add_dit(m) < 0 || lyra_py_add_depth(m) < 0 ||
        lyra_py_add_moge(m) < 0 || lyra_py_add_pipeline(m) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
