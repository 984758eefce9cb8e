/* Python glue for the dit area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef dit_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_dit(PyObject *m) { return PyModule_AddFunctions(m, dit_methods); }
