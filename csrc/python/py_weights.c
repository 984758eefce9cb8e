/* Python glue for the weights area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef weights_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_weights(PyObject *m) { return PyModule_AddFunctions(m, weights_methods); }
