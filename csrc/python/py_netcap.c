/* The network capsule shared by the model glue files (see py_netcap.h). */
#include "py_netcap.h"

lyra_py_netcap *lyra_py_netcap_new(size_t size, lyra_py_netcap_free_fn free_model, int cpu_backend) {
    lyra_py_netcap *net = PyMem_Calloc(1, size);
    if (!net) return (lyra_py_netcap *)PyErr_NoMemory();
    net->free_model = free_model;
    net->lock = PyThread_allocate_lock();
    lyra_status s = net->lock ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "cannot allocate a lock");
    if (s == LYRA_OK && cpu_backend) s = lyra_backend_cpu_init(&net->be, 0);
    if (s != LYRA_OK) {
        lyra_py_netcap_free(net);
        return (lyra_py_netcap *)lyra_py_raise(s);
    }
    return net;
}

void lyra_py_netcap_free(lyra_py_netcap *net) {
    if (!net) return;
    if (net->free_model) net->free_model(net);
    lyra_backend_arena_free(&net->be, &net->arena);
    lyra_backend_free(&net->be);
    if (net->lock) PyThread_free_lock(net->lock);
    PyMem_Free(net);
}

/* The capsule's name is read back from the capsule itself, so one destructor serves every network kind. */
static void netcap_destructor(PyObject *cap) {
    lyra_py_netcap_free(PyCapsule_GetPointer(cap, PyCapsule_GetName(cap)));
}

PyObject *lyra_py_netcap_capsule(lyra_py_netcap *net, const char *name) {
    PyObject *cap = PyCapsule_New(net, name, netcap_destructor);
    if (!cap) lyra_py_netcap_free(net);
    return cap;
}

static PyObject *load_any(PyObject *weights, const char *strip_prefix, size_t size, lyra_py_netcap_free_fn free_model,
                          lyra_py_netcap_load_fn load, const void *arg, const char *name, int allow_random,
                          int defer) {
    lyra_py_wsource ws;
    if ((allow_random ? lyra_py_wsource_open_random : lyra_py_wsource_open)(&ws, weights, "weights", 1,
                                                                            strip_prefix) < 0)
        return NULL;
    lyra_text_random random = {defer, ws.seed, 0};
    if (ws.random) ws.src.random = &random; /* the loader fills (or reserves) the tensors itself */
    lyra_py_netcap *net = lyra_py_netcap_new(size, free_model, 1);
    lyra_status s = LYRA_OK;
    if (net) {
        Py_BEGIN_ALLOW_THREADS
        s = load(net, &ws.src, arg);
        Py_END_ALLOW_THREADS
    }
    lyra_py_wsource_free(&ws); /* the loader copied what it keeps */
    if (!net) return NULL;
    if (s != LYRA_OK) {
        lyra_py_netcap_free(net);
        return lyra_py_raise(s);
    }
    return lyra_py_netcap_capsule(net, name);
}

PyObject *lyra_py_netcap_load(PyObject *weights, const char *strip_prefix, size_t size,
                              lyra_py_netcap_free_fn free_model, lyra_py_netcap_load_fn load, const void *arg,
                              const char *name) {
    return load_any(weights, strip_prefix, size, free_model, load, arg, name, 0, 0);
}

PyObject *lyra_py_netcap_load_random(PyObject *weights, size_t size, lyra_py_netcap_free_fn free_model,
                                     lyra_py_netcap_load_fn load, const void *arg, const char *name, int defer) {
    return load_any(weights, NULL, size, free_model, load, arg, name, 1, defer);
}

void *lyra_py_netcap_get(PyObject *cap, const char *name, const char *what) {
    if (PyCapsule_CheckExact(cap) && !PyCapsule_IsValid(cap, name)) {
        PyErr_Format(PyExc_TypeError, "expected a %s network", what);
        return NULL;
    }
    return PyCapsule_GetPointer(cap, name);
}

lyra_status lyra_py_netcap_arena(lyra_py_netcap *net, size_t bytes) {
    return lyra_backend_arena_reserve(&net->be, &net->arena, bytes, "activations");
}

/* Replaces net's backend by one of `device`, freeing the arena of the old one. */
static lyra_status to_device(lyra_py_netcap *net, lyra_device device) {
    if (net->be.device == device) return LYRA_OK;
    lyra_backend dev;
    LYRA_TRY(lyra_backend_init(&dev, device, 0));
    lyra_backend_arena_free(&net->be, &net->arena);
    lyra_backend_free(&net->be);
    net->be = dev;
    return LYRA_OK;
}

PyObject *lyra_py_netcap_place(PyObject *cap, const char *name, const char *device, lyra_py_netcap_place_fn place,
                               lyra_dtype act) {
    if (!cap || !strcmp(device, "cpu")) return cap;
    lyra_py_netcap *net = PyCapsule_GetPointer(cap, name);
    if (!net) {
        Py_DECREF(cap);
        return NULL;
    }
    lyra_status s;
    LYRA_PY_NETCAP_LOCKED(net, {
        s = to_device(net, LYRA_DEVICE_CUDA);
        if (s == LYRA_OK) s = place(net, act);
    });
    if (s != LYRA_OK) {
        Py_DECREF(cap);
        return lyra_py_raise(s);
    }
    return cap;
}

int lyra_py_cfg_int(PyObject *config, const char *key, int64_t *v) {
    PyObject *o = PyDict_GetItemString(config, key);
    if (!o) {
        PyErr_Format(PyExc_KeyError, "config: missing '%s'", key);
        return -1;
    }
    long long x = PyLong_AsLongLong(o);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (x < 0) {
        PyErr_Format(PyExc_ValueError, "config: '%s' must be >= 0", key);
        return -1;
    }
    *v = x;
    return 0;
}

int lyra_py_precision(const char *precision, int on_device, lyra_dtype policy, lyra_dtype *out) {
    if (!precision) {
        *out = on_device ? policy : LYRA_DTYPE_F32;
        return 0;
    }
    if (!strcmp(precision, "f32")) *out = LYRA_DTYPE_F32;
    else if (!strcmp(precision, lyra_dtype_name(policy))) *out = policy;
    else {
        PyErr_Format(PyExc_ValueError, "precision: '%s' is not allowed; expected 'f32' or '%s'", precision,
                     lyra_dtype_name(policy));
        return -1;
    }
    if (*out != LYRA_DTYPE_F32 && !on_device) {
        PyErr_Format(PyExc_ValueError, "precision: '%s' needs device='cuda' (the CPU backend computes f32)", precision);
        return -1;
    }
    return 0;
}
