// The CUDA backend's table, lifetime and host <-> device transfers. The ops are in cuda_<family>.cu (their CPU
// references in nn/cpu/cpu_<family>.c), the error mapping and memory pool they share in cuda_common.cu.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

#define LT_WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLASLt's recommended workspace on Hopper */

static void *be_alloc(lyra_backend *be, size_t bytes) { return cu_alloc(be, bytes, "cuda backend alloc"); }
static void be_release(lyra_backend *be, void *ptr) { cu_free(be, ptr); }

// ---------------------------------------------------------------- transfers

/* Host-side strided copy between two host tensors of equal shape and dtype (element-wise memcpy). */
static void host_strided_copy(const lyra_tensor *dst, const lyra_tensor *src) {
    size_t es = lyra_dtype_size(src->dtype);
    int64_t n = lyra_tensor_numel(src);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i, od = 0, os = 0;
        for (int d = src->ndim - 1; d >= 0; d--) {
            int64_t c = r % src->ne[d];
            r /= src->ne[d];
            od += c * dst->nb[d];
            os += c * src->nb[d];
        }
        memcpy((char *)dst->data + od, (const char *)src->data + os, es);
    }
}

static lyra_status check_transfer(const lyra_tensor *dst, const lyra_tensor *src, const char *what) {
    if (!lyra_tensor_same_shape(dst, src) || dst->dtype != src->dtype) {
        char a[96], b[96];
        return lyra_error(LYRA_ERR_ARG, "%s: shapes/dtypes differ (%s vs %s)", what,
                          lyra_tensor_shape_str(dst, a, sizeof a), lyra_tensor_shape_str(src, b, sizeof b));
    }
    return LYRA_OK;
}

/* dst (device) <- host_src. Non-contiguous sides go through a packed host buffer and a device copy kernel. */
static lyra_status be_upload(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src) {
    LYRA_TRY(check_transfer(dst, host_src, "cuda upload"));
    size_t bytes = lyra_tensor_nbytes(host_src);
    if (!bytes) return LYRA_OK;
    cuda_state *st = cu_st(be);
    const void *src = host_src->data;
    void *packed = NULL;
    if (!lyra_tensor_is_contiguous(host_src)) {
        packed = malloc(bytes);
        if (!packed) return lyra_error(LYRA_ERR_OOM, "cuda upload: cannot allocate %zu host bytes", bytes);
        lyra_tensor p = lyra_tensor_make(packed, host_src->dtype, host_src->ndim, host_src->ne);
        host_strided_copy(&p, host_src);
        src = packed;
    }
    lyra_status s = LYRA_OK;
    if (lyra_tensor_is_contiguous(dst)) {
        cudaError_t e = cudaMemcpyAsync(dst->data, src, bytes, cudaMemcpyHostToDevice, st->stream);
        if (e != cudaSuccess) s = cu_error(e, "cuda upload");
        /* pageable sources are staged before cudaMemcpyAsync returns; make that true for every source */
        if (s == LYRA_OK) {
            e = cudaStreamSynchronize(st->stream);
            if (e != cudaSuccess) s = cu_error(e, "cuda upload");
        }
    } else {
        void *tmp = cu_alloc(be, bytes, "cuda upload");
        if (!tmp) s = LYRA_ERR_OOM;
        if (s == LYRA_OK) {
            cudaError_t e = cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyHostToDevice, st->stream);
            if (e != cudaSuccess) s = cu_error(e, "cuda upload");
        }
        if (s == LYRA_OK) {
            lyra_tensor t = lyra_tensor_make(tmp, dst->dtype, dst->ndim, dst->ne);
            t.device = LYRA_DEVICE_CUDA;
            s = cu_copy(be, dst, &t);
        }
        if (s == LYRA_OK) {
            cudaError_t e = cudaStreamSynchronize(st->stream);
            if (e != cudaSuccess) s = cu_error(e, "cuda upload");
        }
        cu_free(be, tmp);
    }
    free(packed);
    return s;
}

/* host_dst <- src (device); waits for the stream, so the host data is ready on return. */
static lyra_status be_download(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src) {
    LYRA_TRY(check_transfer(host_dst, src, "cuda download"));
    size_t bytes = lyra_tensor_nbytes(src);
    cuda_state *st = cu_st(be);
    if (!bytes) {
        CU_TRY(cudaStreamSynchronize(st->stream), "cuda download");
        return LYRA_OK;
    }
    const void *dsrc = src->data;
    void *tmp = NULL;
    lyra_status s = LYRA_OK;
    if (!lyra_tensor_is_contiguous(src)) {
        tmp = cu_alloc(be, bytes, "cuda download");
        if (!tmp) return LYRA_ERR_OOM;
        lyra_tensor t = lyra_tensor_make(tmp, src->dtype, src->ndim, src->ne);
        t.device = LYRA_DEVICE_CUDA;
        s = cu_copy(be, &t, src);
        dsrc = tmp;
    }
    void *hdst = host_dst->data, *packed = NULL;
    int host_contig = lyra_tensor_is_contiguous(host_dst);
    if (s == LYRA_OK && !host_contig) {
        packed = malloc(bytes);
        if (!packed) s = lyra_error(LYRA_ERR_OOM, "cuda download: cannot allocate %zu host bytes", bytes);
        hdst = packed;
    }
    if (s == LYRA_OK) {
        cudaError_t e = cudaMemcpyAsync(hdst, dsrc, bytes, cudaMemcpyDeviceToHost, st->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream);
        if (e != cudaSuccess) s = cu_error(e, "cuda download");
    }
    if (s == LYRA_OK && !host_contig) {
        lyra_tensor p = lyra_tensor_make(packed, src->dtype, src->ndim, src->ne);
        host_strided_copy(host_dst, &p);
    }
    free(packed);
    cu_free(be, tmp);
    return s;
}

/* dst <- host_src (both contiguous) on the copy stream, after the work queued so far on the compute stream (which
 * may still read dst): the copy overlaps the work queued next; be_upload_wait orders later work after it. */
static lyra_status be_upload_async(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src, int ticket) {
    LYRA_TRY(check_transfer(dst, host_src, "cuda upload_async"));
    cuda_state *st = cu_st(be);
    if (!st->copy_stream) {
        CU_TRY(cudaStreamCreateWithFlags(&st->copy_stream, cudaStreamNonBlocking), "cuda copy stream");
        for (int k = 0; k < 2; k++) {
            CU_TRY(cudaEventCreate(&st->copy_free[k]), "cuda copy events");
            CU_TRY(cudaEventCreate(&st->copy_done[k]), "cuda copy events");
        }
    }
    size_t bytes = lyra_tensor_nbytes(host_src);
    CU_TRY(cudaEventRecord(st->copy_free[ticket], st->stream), "cuda upload_async");
    CU_TRY(cudaStreamWaitEvent(st->copy_stream, st->copy_free[ticket], 0), "cuda upload_async");
    if (bytes) CU_TRY(cudaMemcpyAsync(dst->data, host_src->data, bytes, cudaMemcpyHostToDevice, st->copy_stream),
                      "cuda upload_async");
    CU_TRY(cudaEventRecord(st->copy_done[ticket], st->copy_stream), "cuda upload_async");
    return LYRA_OK;
}

static lyra_status be_upload_wait(lyra_backend *be, int ticket) {
    cuda_state *st = cu_st(be);
    if (!st->copy_stream) return LYRA_OK; /* nothing was copied asynchronously */
    CU_TRY(cudaStreamWaitEvent(st->stream, st->copy_done[ticket], 0), "cuda upload_wait");
    return LYRA_OK;
}

/* Page-locked host memory: cudaMemcpyAsync from it is a DMA that really runs beside the kernels. */
static void *be_host_alloc(lyra_backend *be, size_t bytes) {
    (void)be;
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        cudaGetLastError();
        (void)cu_error(e, "cuda host alloc");
        return NULL;
    }
    return p;
}

static void be_host_release(lyra_backend *be, void *ptr) {
    (void)be;
    cudaFreeHost(ptr);
}

static lyra_status be_synchronize(lyra_backend *be) {
    CU_TRY(cudaStreamSynchronize(cu_st(be)->stream), "cuda synchronize");
    return LYRA_OK;
}

// ---------------------------------------------------------------- lifetime

static void be_destroy(lyra_backend *be) {
    cuda_state *st = cu_st(be);
    if (!st) return;
    cu_device_scope on(st->device);
    if (st->stream) cudaStreamSynchronize(st->stream);
    cu_plans_free(st);
    cu_resize_cache_free(be);
    if (st->lt) cublasLtDestroy(st->lt);
    for (int i = 0; i < st->n_blocks; i++) cudaFree(st->blocks[i].ptr);
    free(st->blocks);
    if (st->copy_stream) {
        cudaStreamSynchronize(st->copy_stream);
        for (int k = 0; k < 2; k++) {
            cudaEventDestroy(st->copy_free[k]);
            cudaEventDestroy(st->copy_done[k]);
        }
        cudaStreamDestroy(st->copy_stream);
    }
    if (st->stream) cudaStreamDestroy(st->stream);
    cudaGetLastError();
    free(st);
    be->impl = NULL;
}

// ---------------------------------------------------------------- entry points

/* Every function of the table runs with the backend's device current (cu_device_scope), whatever device the
 * calling thread was on: on_device<F, f>::call wraps f(be, args...). */
template <typename F, F f>
struct on_device;
template <typename R, typename... A, R (*f)(lyra_backend *, A...)>
struct on_device<R (*)(lyra_backend *, A...), f> {
    static R call(lyra_backend *be, A... a) {
        cu_device_scope on(cu_st(be)->device);
        return f(be, a...);
    }
};
#define ON_DEVICE(f) (&on_device<decltype(&f), &f>::call)

static const lyra_backend_ops cuda_ops = {
    /* .name = */ "cuda",
    /* .destroy = */ be_destroy, /* selects the device itself (it also runs on a failed init) */
    /* .alloc = */ ON_DEVICE(be_alloc),
    /* .release = */ ON_DEVICE(be_release),
    /* .upload = */ ON_DEVICE(be_upload),
    /* .download = */ ON_DEVICE(be_download),
    /* .synchronize = */ ON_DEVICE(be_synchronize),
    /* .copy = */ ON_DEVICE(cu_op_copy),
    /* .fill = */ ON_DEVICE(cu_op_fill),
    /* .concat = */ ON_DEVICE(cu_op_concat),
    /* .pad = */ ON_DEVICE(cu_op_pad),
    /* .patchify = */ ON_DEVICE(cu_op_patchify),
    /* .unpatchify = */ ON_DEVICE(cu_op_unpatchify),
    /* .embedding = */ ON_DEVICE(cu_op_embedding),
    /* .linear = */ ON_DEVICE(cu_op_linear),
    /* .linear_act = */ ON_DEVICE(cu_op_linear_act),
    /* .matmul = */ ON_DEVICE(cu_op_matmul),
    /* .attention = */ ON_DEVICE(cu_op_attention),
    /* .quantize_fp8_rows = */ ON_DEVICE(cu_op_quantize_fp8_rows),
    /* .linear_fp8 = */ ON_DEVICE(cu_op_linear_fp8),
    /* .rms_norm = */ ON_DEVICE(cu_op_rms_norm),
    /* .layer_norm = */ ON_DEVICE(cu_op_layer_norm),
    /* .l2norm_channels = */ ON_DEVICE(cu_op_l2norm_channels),
    /* .group_norm = */ ON_DEVICE(cu_op_group_norm),
    /* .softmax = */ ON_DEVICE(cu_op_softmax),
    /* .unary = */ ON_DEVICE(cu_op_unary),
    /* .glu = */ ON_DEVICE(cu_op_glu),
    /* .add = */ ON_DEVICE(cu_op_add),
    /* .mul = */ ON_DEVICE(cu_op_mul),
    /* .scale = */ ON_DEVICE(cu_op_scale),
    /* .modulate = */ ON_DEVICE(cu_op_modulate),
    /* .gate = */ ON_DEVICE(cu_op_gate),
    /* .rope = */ ON_DEVICE(cu_op_rope),
    /* .sincos = */ ON_DEVICE(cu_op_sincos),
    /* .conv2d = */ ON_DEVICE(cu_op_conv2d),
    /* .conv3d = */ ON_DEVICE(cu_op_conv3d),
    /* .conv_transpose2d = */ ON_DEVICE(cu_op_conv_transpose2d),
    /* .upsample_nearest2x = */ ON_DEVICE(cu_op_upsample_nearest2x),
    /* .resize = */ ON_DEVICE(cu_op_resize),
    /* .avg_pool3d = */ ON_DEVICE(cu_op_avg_pool3d),
    /* .gs_rasterize = */ ON_DEVICE(cu_op_gs_rasterize),
    /* .upload_async = */ ON_DEVICE(be_upload_async),
    /* .upload_wait = */ ON_DEVICE(be_upload_wait),
    /* .host_alloc = */ ON_DEVICE(be_host_alloc),
    /* .host_release = */ ON_DEVICE(be_host_release),
    /* .warp_forward = */ ON_DEVICE(cu_op_warp_forward),
    /* .rays = */ ON_DEVICE(cu_op_rays),
    /* .to_u8 = */ ON_DEVICE(cu_op_to_u8),
    /* .minmax = */ ON_DEVICE(cu_op_minmax),
    /* .range_norm = */ ON_DEVICE(cu_op_range_norm),
    /* .latent_update = */ ON_DEVICE(cu_op_latent_update),
    /* .u8_pixels = */ ON_DEVICE(cu_op_u8_pixels),
    /* .fill_random = */ ON_DEVICE(cu_op_fill_random),
    /* .da3_merge = */ ON_DEVICE(cu_op_da3_merge),
    /* .depth_resize = */ ON_DEVICE(cu_op_depth_resize),
};

extern "C" lyra_status lyra_backend_cuda_init(lyra_backend *be, int device) {
    memset(be, 0, sizeof *be);
    int n = lyra_cuda_device_count();
    if (n == 0) {
        char why[384];
        lyra_cuda_unavailable_reason(why, sizeof why);
        return lyra_error(LYRA_ERR_CUDA, "CUDA backend: no usable CUDA device (%s)", why);
    }
    if (device < 0 || device >= n)
        return lyra_error(LYRA_ERR_CUDA, "CUDA backend: device %d does not exist (%d CUDA device%s visible)", device,
                          n, n == 1 ? "" : "s");
    cuda_state *st = (cuda_state *)calloc(1, sizeof *st);
    if (!st) return lyra_error(LYRA_ERR_OOM, "cuda backend: cannot allocate its state");
    st->device = device;
    be->ops = &cuda_ops;
    be->device = LYRA_DEVICE_CUDA;
    be->n_threads = 1;
    be->impl = st;
    lyra_arena_wrap(&be->scratch, NULL, 0, LYRA_DEVICE_CUDA); /* unused: temporaries come from the pool */
    lyra_status s = LYRA_OK;
    int smem = 0;
    /* the stream, the cuBLASLt handle and the pool's first blocks belong to `device`; the explicit set reports
     * a device that exists but cannot be used (the scope only restores the caller's device on return) */
    cu_device_scope on(device);
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&st->sm_count, cudaDevAttrMultiProcessorCount, device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) s = cu_error(e, "cuda backend start");
    st->smem_optin = (size_t)smem;
    if (s == LYRA_OK) {
        cublasStatus_t b = cublasLtCreate(&st->lt);
        if (b != CUBLAS_STATUS_SUCCESS) s = cu_blas_error(b, "cuda backend: cublasLtCreate");
    }
    if (s == LYRA_OK) {
        st->lt_ws = cu_alloc(be, LT_WORKSPACE_BYTES, "cuBLASLt workspace");
        st->lt_ws_size = LT_WORKSPACE_BYTES;
        st->d_flag = (int *)cu_alloc(be, sizeof(int), "cuda backend flag");
        if (!st->lt_ws || !st->d_flag) s = LYRA_ERR_OOM;
    }
    if (s != LYRA_OK) {
        be_destroy(be);
        memset(be, 0, sizeof *be);
    }
    return s;
}

extern "C" lyra_backend *lyra_backend_cuda_create(int device) {
    lyra_backend *be = (lyra_backend *)calloc(1, sizeof *be);
    if (!be) {
        lyra_error(LYRA_ERR_OOM, "cuda backend: cannot allocate the backend struct");
        return NULL;
    }
    if (lyra_backend_cuda_init(be, device) != LYRA_OK) {
        free(be);
        return NULL;
    }
    return be;
}

extern "C" void lyra_backend_cuda_destroy(lyra_backend *be) {
    if (!be) return;
    lyra_backend_free(be);
    free(be);
}
