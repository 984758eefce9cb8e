// What every CUDA op shares (declared in cuda_internal.h): CUDA/cuBLAS error mapping, the device memory pool and
// the kernels' view of a tensor descriptor. Below cuda_backend.cu (the table) and the cuda_<family>.cu ops.
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

// ---------------------------------------------------------------- errors

lyra_status cu_error(cudaError_t err, const char *what) {
    cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    if (err == cudaErrorMemoryAllocation)
        return lyra_error(LYRA_ERR_OOM, "%s: out of GPU memory (%s)", what, cudaGetErrorString(err));
    return lyra_error(LYRA_ERR_CUDA, "%s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

lyra_status cu_blas_error(cublasStatus_t st, const char *what) {
    if (st == CUBLAS_STATUS_ALLOC_FAILED)
        return lyra_error(LYRA_ERR_OOM, "%s: cuBLAS could not allocate GPU memory", what);
    return lyra_error(LYRA_ERR_CUDA, "%s: cuBLAS status %d", what, (int)st);
}

// ---------------------------------------------------------------- pool

/* Sizes are rounded so that blocks can be reused across calls with slightly different sizes. */
static size_t pool_round(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes <= ((size_t)1 << 20)) return (bytes + 511) & ~(size_t)511;
    return (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
}

static void pool_trim(cuda_state *st) {
    /* A cached block may still be read or written by kernels queued before its cu_free (stream-ordered reuse):
     * wait for them explicitly rather than rely on cudaFree's implicit synchronisation, which the CUDA
     * documentation does not promise for every allocator configuration. */
    if (cudaStreamSynchronize(st->stream) != cudaSuccess) {
        cudaGetLastError(); /* a fault in an earlier kernel: keep every block, the next sync reports it */
        return;
    }
    int w = 0;
    for (int i = 0; i < st->n_blocks; i++) {
        if (!st->blocks[i].used) {
            cudaFree(st->blocks[i].ptr);
            st->pool_bytes -= st->blocks[i].size;
        } else {
            st->blocks[w++] = st->blocks[i];
        }
    }
    st->n_blocks = w;
}

void *cu_alloc(lyra_backend *be, size_t bytes, const char *what) {
    cuda_state *st = cu_st(be);
    size_t want = pool_round(bytes);
    int best = -1;
    for (int i = 0; i < st->n_blocks; i++) {
        cu_block *b = &st->blocks[i];
        /* best fit, but never hand out a block more than twice the request (large blocks stay for large asks) */
        if (!b->used && b->size >= want && b->size <= 2 * want + ((size_t)1 << 20) &&
            (best < 0 || b->size < st->blocks[best].size))
            best = i;
    }
    if (best >= 0) {
        st->blocks[best].used = 1;
        return st->blocks[best].ptr;
    }
    if (st->n_blocks == st->cap_blocks) {
        int cap = st->cap_blocks ? 2 * st->cap_blocks : 64;
        cu_block *nb = (cu_block *)realloc(st->blocks, (size_t)cap * sizeof *nb);
        if (!nb) {
            lyra_error(LYRA_ERR_OOM, "%s: cannot grow the CUDA pool's block table", what ? what : "allocation");
            return NULL;
        }
        st->blocks = nb;
        st->cap_blocks = cap;
    }
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, want);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        pool_trim(st); /* give cached blocks back to the driver and try once more */
        err = cudaMalloc(&p, want);
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        lyra_error(err == cudaErrorMemoryAllocation ? LYRA_ERR_OOM : LYRA_ERR_CUDA,
                   "%s: cannot allocate %zu bytes of GPU memory (%s; lyra2 holds %zu MiB, %zu of %zu MiB free)",
                   what ? what : "allocation", bytes, cudaGetErrorString(err), st->pool_bytes >> 20, fr >> 20,
                   tot >> 20);
        return NULL;
    }
    st->blocks[st->n_blocks++] = (cu_block){p, want, 1};
    st->pool_bytes += want;
    return p;
}

void cu_free(lyra_backend *be, void *ptr) {
    if (!ptr) return;
    cuda_state *st = cu_st(be);
    for (int i = st->n_blocks - 1; i >= 0; i--)
        if (st->blocks[i].ptr == ptr) {
            st->blocks[i].used = 0;
            return;
        }
}

extern "C" size_t lyra_cuda_pool_bytes(lyra_backend *be) { return cu_st(be)->pool_bytes; }

// ---------------------------------------------------------------- descriptors

cu_tensor cu_tensor_of(const lyra_tensor *t) {
    cu_tensor c;
    memset(&c, 0, sizeof c);
    c.data = (char *)t->data;
    c.ndim = t->ndim;
    c.dtype = (int)t->dtype;
    for (int i = 0; i < LYRA_MAX_DIMS; i++) {
        c.ne[i] = i < t->ndim ? t->ne[i] : 1;
        c.nb[i] = i < t->ndim ? t->nb[i] : 0;
    }
    return c;
}
