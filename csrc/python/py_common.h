/* Shared helpers for the CPython glue (one file per Python-facing area, see module.c).
 *
 * Conventions (python-zstandard style): parse arguments, validate, release the GIL around the C work,
 * turn a failing lyra_status into an exception with lyra_py_raise(), clean up through `goto finally`.
 * Arrays returned to Python are allocated by NumPy and filled in place, so they own their memory. */
#ifndef LYRA_PY_COMMON_H
#define LYRA_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Every glue file includes this after the module's own import_array() ran in module.c. */
#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL lyra2_ARRAY_API
#include <numpy/arrayobject.h>

#include "lyra2.h"

/* lyra2.Lyra2Error (created in module.c). */
extern PyObject *lyra_py_error;

/* Sets the Python exception for a failing status with the thread's last message; returns NULL. */
PyObject *lyra_py_raise(lyra_status status);

/* Returns a C-contiguous, aligned array of `type` converted from `obj` (new reference), or NULL with
 * a TypeError/ValueError naming `what` when it cannot be converted or has the wrong number of dims
 * (ndim < 0 accepts any). */
PyArrayObject *lyra_py_array(PyObject *obj, int type, int ndim, const char *what);

#include "py_hooks.h"

#endif
