/* The test-only extension lyra2._testops (module.c): its glue files' registration hooks. */
#ifndef LYRA_TESTOPS_H
#define LYRA_TESTOPS_H

#include <Python.h>

/* Adds the backend ops on NumPy arrays (py_ops.c) to the module. */
int lyra_testops_add_ops(PyObject *m);
/* Adds vit_taps, the generic-ViT probe (py_vit.c). */
int lyra_testops_add_vit(PyObject *m);
/* Adds fp8_e4m3, the e4m3 conversion on arrays (py_fp8.c). */
int lyra_testops_add_fp8(PyObject *m);
/* Adds sampler_run, the tensor samplers on a backend with a toy denoiser (py_sampler_dev.c). */
int lyra_testops_add_sampler(PyObject *m);

#endif
