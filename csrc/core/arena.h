/* Activation arena: one block reserved up front, bump allocation, mark/reset between layers.
 *
 * Networks size the arena once (a measuring forward pass or a closed-form bound) and then allocate every
 * activation with lyra_arena_tensor(); nothing is freed individually. A forward pass typically does
 *     size_t m = lyra_arena_mark(a); ... per-block temporaries ...; lyra_arena_reset(a, m);
 * so the peak is one block's temporaries plus the live residual stream. No malloc happens in hot loops.
 * Backends also own a scratch arena for their internal workspaces (im2col, attention score tiles). */
#ifndef LYRA_ARENA_H
#define LYRA_ARENA_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LYRA_ARENA_ALIGN 64

typedef struct lyra_arena {
    char *base;
    size_t capacity;
    size_t used;
    size_t peak;       /* high-water mark, to size the next run */
    int owns;          /* 1 when base was allocated by lyra_arena_init */
    lyra_device device;
} lyra_arena;

/* Allocates `capacity` bytes of host memory (64-byte aligned). LYRA_ERR_OOM with a message on failure. */
lyra_status lyra_arena_init(lyra_arena *a, size_t capacity);
/* Wraps caller-owned memory (for example a device allocation made by the CUDA backend). */
void lyra_arena_wrap(lyra_arena *a, void *base, size_t capacity, lyra_device device);
void lyra_arena_free(lyra_arena *a);

/* Returns 64-byte aligned memory or NULL (with a lyra_error message naming `what`) when the arena is full. */
void *lyra_arena_alloc(lyra_arena *a, size_t bytes, const char *what);
/* A contiguous tensor of shape ne[0..ndim-1] from the arena; LYRA_ERR_OOM when it does not fit. */
lyra_status lyra_arena_tensor(lyra_arena *a, lyra_tensor *t, lyra_dtype dtype, int ndim, const int64_t *ne,
                              const char *what);

static inline size_t lyra_arena_mark(const lyra_arena *a) { return a->used; }
static inline void lyra_arena_reset(lyra_arena *a, size_t mark) { a->used = mark; }

/* What an allocation of `bytes` takes in an arena (rounded up to LYRA_ARENA_ALIGN): the unit of the networks'
 * closed-form arena bounds (lyra_*_arena_bytes). */
static inline size_t lyra_arena_size(size_t bytes) {
    return (bytes + LYRA_ARENA_ALIGN - 1) & ~(size_t)(LYRA_ARENA_ALIGN - 1);
}
/* The same for n float32 values. */
static inline size_t lyra_arena_f32(int64_t n) { return lyra_arena_size((size_t)n * 4); }
/* The larger of two sizes (the arena bound of phases that reuse the same memory). */
static inline size_t lyra_size_max(size_t a, size_t b) { return a > b ? a : b; }

/* Grows an owning, EMPTY arena (used == 0) to at least `capacity` bytes; contents are not kept. */
lyra_status lyra_arena_reserve(lyra_arena *a, size_t capacity);

#ifdef __cplusplus
}
#endif
#endif
