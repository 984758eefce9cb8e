/* Loading a network's weights from a named-tensor source into one carved host allocation (umT5, CLIP).
 *
 * A network lists what it needs (name, shape, storage policy); the source is anything that can look a name up
 * (a safetensors mapping, a dict of NumPy arrays from the glue). Loading checks, in this order and naming the
 * tensor in every message: each needed tensor is present, has a float dtype (f32, bf16, f16) and the expected
 * shape; every tensor of the source is either needed or explicitly ignored by the network. Then it measures,
 * allocates once and copies (candidate for csrc/core: the same pattern fits the DiT and the VAE). */
#ifndef LYRA_TEXT_WEIGHTS_H
#define LYRA_TEXT_WEIGHTS_H

#include "core/tensor.h"
#include "nn/backend.h"

/* One needed tensor. ne[i] = -1 accepts any size in that dim (the network checks it afterwards). */
typedef struct lyra_text_wspec {
    const char *name;          /* checkpoint key; must outlive the loaded weights (dst->name points at it) */
    lyra_tensor *dst;          /* filled with the carved, contiguous copy */
    int ndim;
    int64_t ne[LYRA_MAX_DIMS];
    int as_f32;                /* 1: stored as f32 whatever the checkpoint dtype (vectors and small tables that
                                  pointwise ops read); 0: GEMM matrices keep the checkpoint's float dtype */
} lyra_text_wspec;

/* Random weights instead of a checkpoint (lyra2.testing.random_weights): every tensor holds the values of nn/ops.h
 * lyra_random_fill_rule(seed, its name, its shape, bf16_values). */
typedef struct lyra_text_random {
    int pending;          /* the host block is reserved but unwritten: placement fills it on the device
                             (lyra_backend_place_weights_random); a source's `defer` */
    uint64_t seed;
    int bf16_values;      /* every source tensor is bf16: the values a bf16 checkpoint would hold */
} lyra_text_random;

/* Where checkpoint tensors come from. lookup returns NULL for an unknown name; a descriptor whose dtype is not
 * a float dtype (or is LYRA_DTYPE_COUNT for "not representable") is reported as a wrong dtype. Source data may
 * be unaligned (safetensors mmap). names[0..n_names-1] lists every tensor of the source. random: NULL for a
 * checkpoint; else the descriptors have no data (names, shapes, dtypes only) and the loader fills the tensors
 * with random values — now, in host memory, or (random->pending set) at placement on the device. */
typedef struct lyra_text_wsource {
    lyra_tensor_lookup_fn lookup;
    void *ctx;
    int64_t n_names;
    const char *const *names;
    const lyra_text_random *random;
} lyra_text_wsource;

/* 1 when the network knowingly does not use `name` (e.g. CLIP's text tower); such tensors are not checked. */
typedef int (*lyra_text_ignore_fn)(const void *ctx, const char *name);

/* Checks specs[0..n-1] against src, rejects unexpected source tensors, then allocates one 64-byte aligned host
 * block (*mem, release with free()) and fills every specs[i].dst. `what` names the network in messages
 * ("umT5 encoder"). Errors: LYRA_ERR_FORMAT (missing / unexpected / wrong shape or dtype: a bad file),
 * LYRA_ERR_OOM. On failure *mem is NULL and nothing is allocated. */
lyra_status lyra_text_weights_load(lyra_text_wspec *specs, int n, const lyra_text_wsource *src,
                                   lyra_text_ignore_fn ignore, const void *ignore_ctx, const char *what,
                                   void **mem);

/* A spec list of fixed capacity for a network that knows its tensor count up front (umT5, CLIP). Each name is
 * copied into one of `cap` slots of LYRA_TEXT_NAME_LEN chars in `names`, a block the network keeps for as long
 * as its weights (the loaded descriptors' names point into it; release with free()). */
enum { LYRA_TEXT_NAME_LEN = 64 };
typedef struct lyra_text_wlist {
    lyra_text_wspec *specs;    /* [cap], freed by lyra_text_wlist_load */
    int n, cap;
    int overflow;              /* an add found the list full: the load fails with LYRA_ERR_INTERNAL */
    char *names;               /* [cap][LYRA_TEXT_NAME_LEN] */
    lyra_text_random random;   /* set by the load from a random source (seed 0, pending 0 for a checkpoint): the
                                  network keeps it for its placement */
} lyra_text_wlist;

/* Allocates room for cap specs and names; LYRA_ERR_OOM "<what>: out of memory" with nothing allocated. */
lyra_status lyra_text_wlist_init(lyra_text_wlist *l, int cap, const char *what);

/* Appends a spec (ne[0..ndim-1]). The caller sized cap for every add: one more (or ndim outside
 * [0, LYRA_MAX_DIMS]) is a programming error, recorded in l->overflow and reported by lyra_text_wlist_load. */
void lyra_text_wlist_add(lyra_text_wlist *l, const char *name, lyra_tensor *dst, int as_f32, int ndim,
                         const int64_t *ne);

/* lyra_text_weights_load over the list, then frees l->specs (l->names stays with the network). */
lyra_status lyra_text_wlist_load(lyra_text_wlist *l, const lyra_text_wsource *src, lyra_text_ignore_fn ignore,
                                 const void *ignore_ctx, const char *what, void **mem);

/* Fills tensors[0..n-1] (any memory of be; NULL data skipped) with their random values (r: seed, bf16_values). */
lyra_status lyra_text_random_fill(lyra_backend *be, lyra_tensor *const *tensors, int n, const lyra_text_random *r);

/* The descriptor of `name` in src after checking that it exists, is a float tensor and has ndim dims (used by
 * config detection before the full spec list exists). */
lyra_status lyra_text_weights_probe(const lyra_text_wsource *src, const char *name, int ndim, const char *what,
                                    const lyra_tensor **out);

#endif
