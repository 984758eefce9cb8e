/* Python glue for the sample area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef sample_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_sample(PyObject *m) { return PyModule_AddFunctions(m, sample_methods); }
