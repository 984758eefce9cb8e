/* Python glue for the geom area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef geom_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_geom(PyObject *m) { return PyModule_AddFunctions(m, geom_methods); }
