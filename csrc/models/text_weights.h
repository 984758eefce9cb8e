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

/* One needed tensor. ne[i] = -1 accepts any size in that dim (the network checks it afterwards). */
typedef struct lyra_text_wspec {
    const char *name;          /* checkpoint key; must outlive the loaded weights (dst->name points at it) */
    lyra_tensor *dst;          /* filled with the carved, contiguous copy */
    int ndim;
    int64_t ne[LYRA_MAX_DIMS];
    int as_f32;                /* 1: stored as f32 whatever the checkpoint dtype (vectors and small tables that
                                  pointwise ops read); 0: GEMM matrices keep the checkpoint's float dtype */
} lyra_text_wspec;

/* Where checkpoint tensors come from. lookup returns NULL for an unknown name; a descriptor whose dtype is not
 * a float dtype (or is LYRA_DTYPE_COUNT for "not representable") is reported as a wrong dtype. Source data may
 * be unaligned (safetensors mmap). names[0..n_names-1] lists every tensor of the source. */
typedef struct lyra_text_wsource {
    lyra_tensor_lookup_fn lookup;
    void *ctx;
    int64_t n_names;
    const char *const *names;
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

/* The descriptor of `name` in src after checking that it exists, is a float tensor and has ndim dims (used by
 * config detection before the full spec list exists). */
lyra_status lyra_text_weights_probe(const lyra_text_wsource *src, const char *name, int ndim, const char *what,
                                    const lyra_tensor **out);

#endif
