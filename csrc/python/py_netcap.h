/* The capsule glue every loaded network shares (umT5, CLIP, MoGe, DA3, DiT): a per-model lock, a CPU backend and
 * an activation arena in front of the model, freed by one capsule destructor.
 *
 * Ownership: a network is one PyMem allocation of the glue file's own struct whose FIRST member is a
 * lyra_py_netcap (so the struct and its netcap share one address), followed by the model. The capsule owns it;
 * free_model releases the model, the rest (arena, backend, lock, the allocation) is released here.
 *
 * Threads: calls on one network are serialised by its lock. A second thread waits for it with the GIL released;
 * the lock is held only around C work, never while Python code can run (which could call back into the same
 * network and deadlock). (The VAE streams, py_vae.c, refuse concurrent use instead: they carry ordered state.) */
#ifndef LYRA_PY_NETCAP_H
#define LYRA_PY_NETCAP_H

#include "py_weight_source.h"

#include <pythread.h>

#include "core/arena.h"
#include "models/da3.h"
#include "nn/backend.h"

typedef struct lyra_py_netcap lyra_py_netcap;

/* Releases the model held by the struct that starts with `net` (not the struct itself); runs with the GIL. */
typedef void (*lyra_py_netcap_free_fn)(lyra_py_netcap *net);

/* Loads the model of the struct that starts with `net` from `src`; runs WITHOUT the GIL (no Python API). */
typedef lyra_status (*lyra_py_netcap_load_fn)(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg);

struct lyra_py_netcap {
    PyThread_type_lock lock;           /* serialises calls (see above) */
    lyra_backend be;                   /* CPU backend; zeroed (unused) when the model brings its own */
    lyra_arena arena;                  /* activations; empty between calls, grown by lyra_py_netcap_arena */
    lyra_py_netcap_free_fn free_model; /* set by lyra_py_netcap_new */
};

/* Runs `stmt` (C only: no Python API, no return/goto out of it) holding net's lock, with the GIL released. */
#define LYRA_PY_NETCAP_LOCKED(net, stmt)                                                                           \
    do {                                                                                                          \
        Py_BEGIN_ALLOW_THREADS                                                                                    \
        PyThread_acquire_lock((net)->lock, WAIT_LOCK);                                                            \
        stmt;                                                                                                     \
        PyThread_release_lock((net)->lock);                                                                       \
        Py_END_ALLOW_THREADS                                                                                      \
    } while (0)

/* A zeroed network of `size` bytes (>= sizeof(lyra_py_netcap), the netcap first) with its lock and, when
 * cpu_backend, an initialised CPU backend. NULL with a Python exception set on failure. */
lyra_py_netcap *lyra_py_netcap_new(size_t size, lyra_py_netcap_free_fn free_model, int cpu_backend);

/* Frees the model (free_model), arena, backend, lock and the allocation; NULL is a no-op. Needs the GIL. */
void lyra_py_netcap_free(lyra_py_netcap *net);

/* A capsule named `name` (a string literal: the capsule keeps the pointer) owning `net`; on failure frees net
 * and returns NULL with the exception set. */
PyObject *lyra_py_netcap_capsule(lyra_py_netcap *net, const char *name);

/* The whole load: opens `weights` (a safetensors path or a mapping; float64 narrowed, strip_prefix removed as in
 * lyra_py_wsource_open), allocates the network as lyra_py_netcap_new(size, free_model, 1), runs
 * load(net, src, arg) without the GIL and returns the capsule `name`, or NULL with an exception (a failing
 * status raised by lyra_py_raise). */
PyObject *lyra_py_netcap_load(PyObject *weights, const char *strip_prefix, size_t size,
                              lyra_py_netcap_free_fn free_model, lyra_py_netcap_load_fn load, const void *arg,
                              const char *name);
/* The same for a loader built on text_weights.h, which also takes random weights (lyra2.testing.random_weights;
 * defer: reserved now, filled by the placement on the device). */
PyObject *lyra_py_netcap_load_random(PyObject *weights, size_t size, lyra_py_netcap_free_fn free_model,
                                     lyra_py_netcap_load_fn load, const void *arg, const char *name, int defer);

/* The network in capsule `cap` named `name`; NULL with a TypeError "expected a <what> network" when cap is a
 * capsule of another name (another kind of network), or PyCapsule_GetPointer's error for anything else. */
void *lyra_py_netcap_get(PyObject *cap, const char *name, const char *what);

/* Grows net's arena to at least `bytes` (call with the lock held; the arena is empty between calls, so its
 * contents need not survive). LYRA_ERR_OOM with a message on failure. */
lyra_status lyra_py_netcap_arena(lyra_py_netcap *net, size_t bytes);

/* Uploads the model of the struct that starts with `net` onto net->be (the network's *_place function) in
 * precision `act`; runs WITHOUT the GIL (no Python API). */
typedef lyra_status (*lyra_py_netcap_place_fn)(lyra_py_netcap *net, lyra_dtype act);

/* The end of a *_load with a device argument: "cpu" returns cap as it is; "cuda" replaces the network's CPU backend
 * by a device backend (its arena freed: the next lyra_py_netcap_arena reserves device memory) and runs place(net,
 * act), under the lock. Returns cap, or NULL with the exception set and cap released. */
PyObject *lyra_py_netcap_place(PyObject *cap, const char *name, const char *device, lyra_py_netcap_place_fn place,
                               lyra_dtype act);

/* The non-negative integer config[key] of a *_plan function's config dict (as the *_config functions return it)
 * into *v: 0, or -1 with KeyError "config: missing 'key'", ValueError "config: 'key' must be >= 0", or the
 * conversion's error. */
int lyra_py_cfg_int(PyObject *config, const char *key, int64_t *v);

/* The storage dtype of a network's `precision` argument (docs/PRECISION.md): NULL is the default, `policy` (the
 * network's upstream GPU dtype, bf16 or f16) on a device and f32 on the CPU; allowed are "f32" and the policy's
 * name. A 16-bit precision needs a device (the CPU backend computes f32). 0, or -1 with a ValueError naming
 * `precision`, the value and what is allowed. */
int lyra_py_precision(const char *precision, int on_device, lyra_dtype policy, lyra_dtype *out);

/* The DA3 network of a lyra2._core.da3 capsule (py_da3.c) for a caller that runs it itself (the depth window of
 * py_pipeline_run.c): its model and its netcap (lock, backend, arena). With the GIL; NULL + exception when cap is
 * not a DA3 capsule. The capsule must stay referenced while they are used. */
const lyra_da3 *lyra_py_da3_borrow(PyObject *cap, lyra_py_netcap **net);

#endif
