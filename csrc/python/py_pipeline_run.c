/* Python glue of the autoregressive driver (filled in with csrc/pipeline/ar_driver.c). */
#include "py_common.h"

static PyMethodDef run_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_pipeline_run(PyObject *m) { return PyModule_AddFunctions(m, run_methods); }
