/* The registration hooks of the glue files: each adds its functions (and types) to lyra2._core.
 * Declared once here for module.c (which calls them) and the glue files (which define them). */
#ifndef LYRA_PY_HOOKS_H
#define LYRA_PY_HOOKS_H

#include <Python.h>

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
int lyra_py_add_gs(PyObject *m);
int lyra_py_add_render(PyObject *m);
int lyra_py_add_moge(PyObject *m);
int lyra_py_add_pipeline(PyObject *m);

#endif
