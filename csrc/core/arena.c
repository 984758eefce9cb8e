/* Bump arena for activations and backend workspaces. */
#include "core/arena.h"

#include <stdlib.h>

lyra_status lyra_arena_init(lyra_arena *a, size_t capacity) {
    memset(a, 0, sizeof *a);
    a->device = LYRA_DEVICE_CPU;
    if (capacity == 0) return LYRA_OK;
    size_t rounded = (capacity + LYRA_ARENA_ALIGN - 1) & ~(size_t)(LYRA_ARENA_ALIGN - 1);
    a->base = aligned_alloc(LYRA_ARENA_ALIGN, rounded);
    if (!a->base) return lyra_error(LYRA_ERR_OOM, "arena: cannot allocate %zu bytes", rounded);
    a->capacity = rounded;
    a->owns = 1;
    return LYRA_OK;
}

void lyra_arena_wrap(lyra_arena *a, void *base, size_t capacity, lyra_device device) {
    memset(a, 0, sizeof *a);
    a->base = (char *)base;
    a->capacity = capacity;
    a->device = device;
}

void lyra_arena_free(lyra_arena *a) {
    if (a->owns) free(a->base);
    memset(a, 0, sizeof *a);
}

void *lyra_arena_alloc(lyra_arena *a, size_t bytes, const char *what) {
    size_t off = (a->used + LYRA_ARENA_ALIGN - 1) & ~(size_t)(LYRA_ARENA_ALIGN - 1);
    if (off > a->capacity || bytes > a->capacity - off) {
        lyra_error(LYRA_ERR_OOM, "arena: %s needs %zu bytes, %zu of %zu in use", what ? what : "allocation",
                   bytes, a->used, a->capacity);
        return NULL;
    }
    a->used = off + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + off;
}

lyra_status lyra_arena_tensor(lyra_arena *a, lyra_tensor *t, lyra_dtype dtype, int ndim, const int64_t *ne,
                              const char *what) {
    *t = lyra_tensor_make(NULL, dtype, ndim, ne);
    t->device = a->device;
    t->name = what;
    size_t bytes = lyra_tensor_nbytes(t);
    t->data = lyra_arena_alloc(a, bytes ? bytes : 1, what);
    return t->data ? LYRA_OK : LYRA_ERR_OOM;
}

lyra_status lyra_arena_reserve(lyra_arena *a, size_t capacity) {
    if (capacity <= a->capacity) return LYRA_OK;
    if (!a->owns && a->base) return lyra_error(LYRA_ERR_INTERNAL, "arena: cannot grow a wrapped arena");
    if (a->used) return lyra_error(LYRA_ERR_INTERNAL, "arena: cannot grow an arena in use");
    free(a->base);
    a->base = NULL;
    a->capacity = 0;
    size_t peak = a->peak;
    LYRA_TRY(lyra_arena_init(a, capacity));
    a->peak = peak;
    return LYRA_OK;
}
