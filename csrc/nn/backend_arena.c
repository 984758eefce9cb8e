/* Activation arenas in the memory of a backend (nn/backend.h): host memory for the CPU backend, one pool block
 * for a device backend, so a network's activations live where its ops run. */
#include "nn/backend.h"

#include <stdio.h>

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
