/* The measuring backend: runs a network's forward with no memory and no arithmetic, recording what it asks for
 * (ggml's "measure" allocator idea), so workspace sizes and memory plans come from the code itself instead of
 * formulas restated beside it.
 *
 * Every op entry only counts (calls, FLOPs of the matrix ops); the lyra_op_* wrappers of nn/ops.h still validate
 * shapes, dtypes and devices before dispatching, so a measured forward also checks a full-size network's wiring.
 * Allocations (be->ops->alloc, a measuring arena) hand out addresses inside a reserved, never-committed range of
 * virtual memory: a 17B-parameter model over 38,246 tokens "runs" on a laptop in milliseconds, and host-side
 * helpers that write a small table into an activation touch only those pages.
 *
 * The backend presents itself as `device` (CPU today: the networks pick activation dtypes by device, so the
 * measured bytes are those of the backend being planned for). */
#ifndef LYRA_NN_MEASURE_H
#define LYRA_NN_MEASURE_H

#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lyra_measure_stats {
    size_t alloc_live;      /* bytes of be->ops->alloc blocks not yet released */
    size_t alloc_peak;      /* high-water mark of alloc_live */
    size_t upload_bytes, download_bytes;
    int64_t n_upload, n_download;
    int64_t n_ops;          /* compute / layout ops dispatched */
    double flops;           /* multiply-adds × 2 of linear, matmul, attention and convolutions */
} lyra_measure_stats;

/* A measuring backend presenting itself as `device`; its private state holds a lyra_measure_stats and the
 * reserved address range. */
lyra_status lyra_backend_measure_init(lyra_backend *be, lyra_device device);
/* 1 when be is a measuring backend (host-side helpers of a forward skip their arithmetic then). */
int lyra_backend_is_measuring(const lyra_backend *be);
/* The counters of a measuring backend (NULL for any other backend). */
lyra_measure_stats *lyra_backend_measure_stats(lyra_backend *be);

/* An arena over `capacity` bytes of reserved, uncommitted address space on `device` (its .peak after a forward
 * is the measured activation peak). Free with lyra_measure_arena_free, not lyra_arena_free. */
lyra_status lyra_measure_arena_init(lyra_arena *a, size_t capacity, lyra_device device);
void lyra_measure_arena_free(lyra_arena *a);

#ifdef __cplusplus
}
#endif
#endif
