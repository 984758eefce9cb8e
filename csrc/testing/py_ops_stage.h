/* Staging of the lyra2._testops glue's arrays onto a device backend (backend="cuda"): host descriptors are uploaded
 * with their strides intact (the whole byte extent of a strided array is copied, so slices, transposes,
 * negative strides and broadcasts reach the device kernels as such), float32 activations optionally rounded to
 * bf16/f16 first, and outputs downloaded back into the NumPy arrays (widened to float32). */
#ifndef LYRA_PY_OPS_STAGE_H
#define LYRA_PY_OPS_STAGE_H

#include "nn/backend.h"

#define OPS_MAX_STAGED 24

typedef enum ops_role {
    OPS_IN_ACT = 0, /* an activation: float32 host data converted to the call's activation dtype */
    OPS_IN_KEEP,    /* uploaded with its own dtype (weights, biases, angles, masks, ids) */
    OPS_OUT,        /* a contiguous output: allocated on the device, downloaded after the op (float32, or a u8
                       output byte for byte) */
    OPS_OUT_F32     /* the same, float32 on the device whatever the activation dtype (the FP8 scales) */
} ops_role;

typedef struct ops_stage {
    int n;
    lyra_tensor *t[OPS_MAX_STAGED];   /* the glue's descriptors, rewritten in place to point at the device */
    ops_role role[OPS_MAX_STAGED];
    void *host[OPS_MAX_STAGED];       /* outputs: the NumPy (float32) destination */
    void *dev[OPS_MAX_STAGED];        /* device blocks to release */
    int out_f32;                      /* outputs stay float32 on the device whatever the activation dtype */
    int64_t out_pad;                  /* > 0: outputs are column slices of rows out_pad elements wider (their
                                         leading dimension exceeds their width, as a slice of a fused output) */
} ops_stage;

/* Remembers t (its host descriptor must stay valid until ops_stage_out). 0, or -1 when full. */
int ops_stage_add(ops_stage *s, lyra_tensor *t, ops_role role);
/* Moves every registered tensor to the device of `be`; act is the activation dtype (f32, bf16 or f16). */
lyra_status ops_stage_in(lyra_backend *be, ops_stage *s, lyra_dtype act);
/* Downloads the outputs into their host arrays (float32), converting from the activation dtype. */
lyra_status ops_stage_out(lyra_backend *be, ops_stage *s);
/* Releases the device blocks (safe after a failure at any point). */
void ops_stage_free(lyra_backend *be, ops_stage *s);

/* The process's CUDA backend, created on first use (device 0); NULL with a Lyra2Error set when this build or
 * this machine has none. Call with the GIL held. ops_cuda_lock/unlock serialise its use (GIL released). */
lyra_backend *ops_cuda_backend(void);
void ops_cuda_lock(void);
void ops_cuda_unlock(void);

#endif
