/* Python glue for the depth area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef depth_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_depth(PyObject *m) { return PyModule_AddFunctions(m, depth_methods); }
