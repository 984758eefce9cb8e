/* Python glue for the ops area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef ops_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_ops(PyObject *m) { return PyModule_AddFunctions(m, ops_methods); }
