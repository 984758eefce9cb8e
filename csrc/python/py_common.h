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

#include "core/tensor.h"
#include "lyra2.h"

/* lyra2.Lyra2Error is lyra_py_error (py_hooks.h). */

/* Sets the Python exception for a failing status with the thread's last message; returns NULL. */
PyObject *lyra_py_raise(lyra_status status);

/* Returns a C-contiguous, aligned array of `type` converted from `obj` (new reference), or NULL with
 * a TypeError/ValueError naming `what` when it cannot be converted or has the wrong number of dims
 * (ndim < 0 accepts any). */
PyArrayObject *lyra_py_array(PyObject *obj, int type, int ndim, const char *what);

/* A descriptor of the whole of `a` (C-contiguous, as lyra_py_array returns it) with dtype dt. */
lyra_tensor lyra_py_host_tensor(PyArrayObject *a, lyra_dtype dt);

/* What a network's `weights` argument is. */
enum { LYRA_PY_WEIGHTS_PATH = 1, LYRA_PY_WEIGHTS_MAPPING = 2 };

/* LYRA_PY_WEIGHTS_PATH for str / bytes / os.PathLike, LYRA_PY_WEIGHTS_MAPPING for a dict or any
 * collections.abc.Mapping; otherwise -1 with a TypeError naming `what` and what is allowed. Lists and arrays
 * are rejected here although they pass PyMapping_Check. */
int lyra_py_weights_kind(PyObject *obj, const char *what);

/* A snapshot of a mapping name -> array-like: a new list of (str, ndarray) 2-tuples, one per key, in key
 * order. Each array is a base-class ndarray, C-contiguous and aligned, of a bool/integer/float dtype (float64
 * narrowed to float32 when narrow_f64). The keys are read once into a list and each value is fetched by its
 * key, so user code run meanwhile (a mapping's __getitem__, a value's __array__) can neither change what is
 * iterated nor the size of anything allocated from it; the list is private to the caller, so its tuples can
 * be read with PyTuple_GET_ITEM. On error returns NULL with a TypeError (a key that is not a str, a value
 * that is not a numeric array) or ValueError (a name with a NUL, a repeated name) naming `what` and the key. */
PyObject *lyra_py_named_arrays(PyObject *mapping, int narrow_f64, const char *what);

#include "py_hooks.h"

#endif
