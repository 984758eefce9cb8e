/* Python glue for the media area (filled in by its issue). */
#include "py_common.h"

static PyMethodDef media_methods[] = {
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_media(PyObject *m) { return PyModule_AddFunctions(m, media_methods); }
