/* The backend-independent part of nn/backend.h: releasing a backend and its one scratch workspace, used by
 * every backend's ops (so they sit below cpu_backend.c / cuda_backend.cu and backend_select.c). */
#include <string.h>

#include "nn/backend.h"

void lyra_backend_free(lyra_backend *be) {
    if (be->ops && be->ops->destroy) be->ops->destroy(be);
    lyra_arena_free(&be->scratch);
    memset(be, 0, sizeof *be);
}

void *lyra_backend_scratch(lyra_backend *be, size_t bytes, const char *what) {
    be->scratch.used = 0;
    if (bytes < 64) bytes = 64;
    if (bytes > be->scratch.capacity) {
        /* Grow with headroom so slowly increasing requests do not reallocate every call. */
        size_t want = bytes + bytes / 4;
        if (lyra_arena_reserve(&be->scratch, want) != LYRA_OK) {
            lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes of workspace", what ? what : "op", bytes);
            return NULL;
        }
    }
    return lyra_arena_alloc(&be->scratch, bytes, what);
}
