/* The registration hooks of the glue files: each adds its functions (and types) to lyra2._core.
 * Declared once here for module.c (which calls them) and the glue files (which define them), with the
 * exception class they all raise. */
#ifndef LYRA_PY_HOOKS_H
#define LYRA_PY_HOOKS_H

#include <Python.h>

/* lyra2.Lyra2Error: defined in py_common.c (so the glue files depend on it, not on the module file that calls
 * their hooks), created by python/module.c; testing/module.c sets it to _core's, so both extensions raise the
 * one class. */
extern PyObject *lyra_py_error;

int lyra_py_add_backend(PyObject *m);
int lyra_py_add_media(PyObject *m);
int lyra_py_add_geom(PyObject *m);
int lyra_py_add_warp(PyObject *m);
int lyra_py_add_sample(PyObject *m);
int lyra_py_add_weights(PyObject *m);
int lyra_py_add_tokenizer(PyObject *m);
int lyra_py_add_vae(PyObject *m);
int lyra_py_add_umt5(PyObject *m);
int lyra_py_add_clip(PyObject *m);
int lyra_py_add_dit(PyObject *m);
int lyra_py_add_da3(PyObject *m);
int lyra_py_add_moge_net(PyObject *m);
int lyra_py_add_moge_geom(PyObject *m);
int lyra_py_add_pipeline(PyObject *m);

#endif
