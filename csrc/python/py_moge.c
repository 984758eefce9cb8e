/* Python glue for the moge area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef moge_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_moge(PyObject *m) { return PyModule_AddFunctions(m, moge_methods); }
