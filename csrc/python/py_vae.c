/* Python glue for the vae area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef vae_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_vae(PyObject *m) { return PyModule_AddFunctions(m, vae_methods); }
