/* Memory that belongs to a backend (nn/backend.h): activation arenas (host memory for the CPU backend, one pool
 * block for a device backend, so a network's activations live where its ops run) and the host memory its
 * overlapped uploads copy from (page-locked on CUDA). */
#include "nn/backend.h"

#include <stdio.h>
#include <stdlib.h>

lyra_status lyra_backend_arena_reserve(lyra_backend *be, lyra_arena *a, size_t bytes, const char *what) {
    if (be->device == LYRA_DEVICE_CPU) {
        lyra_status st = lyra_arena_reserve(a, bytes);
        if (st == LYRA_OK) return LYRA_OK;
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        return lyra_error(st, "%s: cannot reserve %zu bytes of activations (%s)", what, bytes, why);
    }
    if (bytes <= a->capacity && a->device == be->device) return LYRA_OK;
    if (a->used) return lyra_error(LYRA_ERR_INTERNAL, "%s: cannot grow an arena in use", what);
    size_t peak = a->peak;
    lyra_backend_arena_free(be, a);
    void *p = be->ops->alloc(be, bytes);
    if (!p) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        return lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes (%.2f GiB) of activations on the %s device "
                          "(%s)", what, bytes, (double)bytes / (1 << 30), be->ops->name, why);
    }
    lyra_arena_wrap(a, p, bytes, be->device);
    a->peak = peak;
    return LYRA_OK;
}

void lyra_backend_arena_free(lyra_backend *be, lyra_arena *a) {
    if (a->device != LYRA_DEVICE_CPU && a->base && be && be->ops) be->ops->release(be, a->base);
    else lyra_arena_free(a);
    memset(a, 0, sizeof *a);
}

void *lyra_backend_host_alloc(lyra_backend *be, size_t bytes, const char *what) {
    void *p = be->ops->host_alloc ? be->ops->host_alloc(be, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
    if (!p) (void)lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes (%.2f GiB) of host memory for the %s "
                             "device's uploads", what, bytes, (double)bytes / (1 << 30), be->ops->name);
    return p;
}

void lyra_backend_host_release(lyra_backend *be, void *ptr) {
    if (!ptr) return;
    if (be->ops->host_release) be->ops->host_release(be, ptr);
    else free(ptr);
}
