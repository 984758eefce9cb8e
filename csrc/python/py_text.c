/* Python glue for the text area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef text_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_text(PyObject *m) { return PyModule_AddFunctions(m, text_methods); }
