/* Python glue for the pipeline area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef pipeline_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_pipeline(PyObject *m) { return PyModule_AddFunctions(m, pipeline_methods); }
