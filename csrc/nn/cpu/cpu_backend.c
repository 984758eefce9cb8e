/* The CPU backend's table and lifetime. The ops are in cpu_<family>.c (their CUDA kernels in
 * nn/cuda/cuda_<family>.cu), the helpers they share in cpu_common.c. */
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/cpu/cpu_internal.h"

static void *cpu_alloc(lyra_backend *be, size_t bytes) {
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) lyra_error(LYRA_ERR_OOM, "cpu backend: cannot allocate %zu bytes", bytes);
    return p;
}

static void cpu_release(lyra_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

/* Host <-> "device" transfers are strided copies on the CPU. */
static lyra_status cpu_transfer(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *src) {
    if (!lyra_tensor_same_shape(dst, src) || dst->dtype != src->dtype)
        return lyra_error(LYRA_ERR_ARG, "cpu backend: upload/download needs equal shapes and dtypes");
    return cpu_copy(be, dst, src);
}

static lyra_status cpu_synchronize(lyra_backend *be) {
    (void)be;
    return LYRA_OK;
}

static void cpu_destroy(lyra_backend *be) { (void)be; }

static const lyra_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_transfer,
    .download = cpu_transfer,
    .synchronize = cpu_synchronize,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .concat = cpu_concat,
    .pad = cpu_pad,
    .patchify = cpu_patchify,
    .unpatchify = cpu_unpatchify,
    .embedding = cpu_embedding,
    .linear = cpu_linear,
    .linear_act = cpu_linear_act,
    .matmul = cpu_matmul,
    .attention = cpu_attention,
    .quantize_fp8_rows = cpu_quantize_fp8_rows,
    .linear_fp8 = cpu_linear_fp8,
    .rms_norm = cpu_rms_norm,
    .layer_norm = cpu_layer_norm,
    .l2norm_channels = cpu_l2norm_channels,
    .group_norm = cpu_group_norm,
    .softmax = cpu_softmax,
    .unary = cpu_unary,
    .glu = cpu_glu,
    .add = cpu_add,
    .mul = cpu_mul,
    .scale = cpu_scale,
    .modulate = cpu_modulate,
    .gate = cpu_gate,
    .rope = cpu_rope,
    .sincos = cpu_sincos,
    .conv2d = cpu_conv2d,
    .conv3d = cpu_conv3d,
    .conv_transpose2d = cpu_conv_transpose2d,
    .upsample_nearest2x = cpu_upsample_nearest2x,
    .resize = cpu_resize,
    .avg_pool3d = cpu_avg_pool3d,
    .gs_rasterize = cpu_gs_rasterize,
    .warp_forward = cpu_warp_forward,
    .rays = cpu_rays,
    .to_u8 = cpu_to_u8,
    .minmax = cpu_minmax,
    .range_norm = cpu_range_norm,
    .latent_update = cpu_latent_update,
    .u8_pixels = cpu_u8_pixels,
    .fill_random = cpu_fill_random,
    .da3_merge = cpu_da3_merge,
    .depth_resize = cpu_depth_resize,
};

lyra_status lyra_backend_cpu_init(lyra_backend *be, int n_threads) {
    memset(be, 0, sizeof *be);
    be->ops = &cpu_ops;
    be->device = LYRA_DEVICE_CPU;
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#else
    if (n_threads <= 0) n_threads = 1;
#endif
    be->n_threads = n_threads;
    return lyra_arena_init(&be->scratch, 0);
}
