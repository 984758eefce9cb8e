/* Python glue for the warp area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef warp_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_warp(PyObject *m) { return PyModule_AddFunctions(m, warp_methods); }
