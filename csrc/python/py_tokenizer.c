/* Python glue for the tokenizer area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef tokenizer_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_tokenizer(PyObject *m) { return PyModule_AddFunctions(m, tokenizer_methods); }
