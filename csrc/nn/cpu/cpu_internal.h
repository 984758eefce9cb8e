/* Shared pieces of the CPU backend: the SGEMM entry point, strided row iteration, f32 views of weights.
 * Everything here computes in f32; inputs were validated by nn/ops.c. */
#ifndef LYRA_CPU_INTERNAL_H
#define LYRA_CPU_INTERNAL_H

#include "nn/backend.h"

/* OpenMP team size for an op: the backend's thread count, or 1 when the work is too small to split. */
static inline int cpu_threads(const lyra_backend *be, int64_t work) {
    return work < 32768 ? 1 : (be->n_threads > 0 ? be->n_threads : 1);
}

/* Row-major C[M,N] = alpha·A[M,K]·op(B) + beta·C. op(B) = B[K,N] (trans_b = 0) or B[N,K]ᵀ (trans_b = 1).
 * lda/ldb/ldc in elements. OpenBLAS when built with LYRA2_HAVE_CBLAS, else a blocked C loop. */
void cpu_sgemm(int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int n_threads);

/* The plain C kernel behind cpu_sgemm in builds without OpenBLAS (always compiled, so tests can check it). */
void cpu_sgemm_ref(int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int n_threads);

/* Byte offset of "row" r of t, where rows enumerate every dim except the last, in the index space of
 * `shape` (the output's sizes); dims where t has size 1 broadcast (stride 0). */
static inline int64_t cpu_row_offset(const lyra_tensor *t, const lyra_tensor *shape, int64_t r) {
    int64_t off = 0;
    for (int i = shape->ndim - 2; i >= 0; i--) {
        int64_t n = shape->ne[i], idx = r % n;
        r /= n;
        if (t->ne[i] != 1) off += idx * t->nb[i];
    }
    return off;
}
static inline int64_t cpu_rows(const lyra_tensor *t) {
    int64_t r = 1;
    for (int i = 0; i < t->ndim - 1; i++) r *= t->ne[i];
    return r;
}
static inline int64_t cpu_inner(const lyra_tensor *t) { return t->ndim ? t->ne[t->ndim - 1] : 1; }
/* Element stride of the last dim of t relative to shape (0 when broadcast). */
static inline int64_t cpu_inner_stride(const lyra_tensor *t, const lyra_tensor *shape) {
    if (!t->ndim || (t->ne[t->ndim - 1] == 1 && shape->ne[shape->ndim - 1] != 1)) return 0;
    return t->nb[t->ndim - 1] / (int64_t)lyra_dtype_size(t->dtype);
}

/* ---- cpu_common.c */

/* LYRA_ERR_TYPE unless every listed (non-NULL) tensor is f32: the CPU backend's activation dtype. */
lyra_status cpu_require_f32(const char *op, int n, ...);

/* Number of floats needed to hold an f32 contiguous copy of t, or 0 when t is already f32 contiguous. */
int64_t cpu_f32_need(const lyra_tensor *t);
/* Pointer to t's values as contiguous f32: t's own data, or `buf` filled by conversion/gather. */
const float *cpu_as_f32(const lyra_tensor *t, float *buf);
/* Gathers any strided float tensor into contiguous f32 dst (numel floats). */
void cpu_gather_f32(float *dst, const lyra_tensor *t);

static inline float cpu_load(const void *p, lyra_dtype d) {
    switch (d) {
    case LYRA_DTYPE_F32: return *(const float *)p;
    case LYRA_DTYPE_BF16: return lyra_bf16_to_f32(*(const uint16_t *)p);
    case LYRA_DTYPE_F16: return lyra_f16_to_f32(*(const uint16_t *)p);
    default: return 0.0f;
    }
}
static inline void cpu_store(void *p, lyra_dtype d, float v) {
    switch (d) {
    case LYRA_DTYPE_F32: *(float *)p = v; break;
    case LYRA_DTYPE_BF16: *(uint16_t *)p = lyra_f32_to_bf16(v); break;
    case LYRA_DTYPE_F16: *(uint16_t *)p = lyra_f32_to_f16(v); break;
    default: break;
    }
}

/* Op entries, grouped by file (cpu_layout.c, cpu_gemm.c, cpu_attention.c, cpu_norm.c, cpu_pointwise.c,
 * cpu_conv.c, cpu_resample.c); cpu_backend.c's table lists them. An op holds the single backend workspace
 * (lyra_backend_scratch) for its whole duration, so it may only call entries that use no workspace (cpu_copy,
 * cpu_fill) while holding it. */
lyra_status cpu_copy(lyra_backend *, lyra_tensor *, const lyra_tensor *);
lyra_status cpu_fill(lyra_backend *, lyra_tensor *, float);
lyra_status cpu_concat(lyra_backend *, lyra_tensor *, const lyra_tensor *const *, int, int);
lyra_status cpu_pad(lyra_backend *, lyra_tensor *, const lyra_tensor *, const int64_t *, lyra_pad_mode);
lyra_status cpu_patchify(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, int, int, lyra_patch_order);
lyra_status cpu_unpatchify(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, int, int, lyra_patch_order);
lyra_status cpu_embedding(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);

lyra_status cpu_linear(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cpu_linear_act(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                           lyra_act);
lyra_status cpu_matmul(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, int, float);
lyra_status cpu_attention(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                          const lyra_tensor *, const lyra_tensor *, const lyra_tensor *, float);

lyra_status cpu_rms_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, float);
lyra_status cpu_layer_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                           const lyra_tensor *, float);
lyra_status cpu_l2norm_channels(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                                const lyra_tensor *, float);
lyra_status cpu_group_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, const lyra_tensor *,
                           const lyra_tensor *, float);
lyra_status cpu_softmax(lyra_backend *, lyra_tensor *, const lyra_tensor *, float);

lyra_status cpu_unary(lyra_backend *, lyra_tensor *, const lyra_tensor *, lyra_act);
lyra_status cpu_glu(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, lyra_act);
lyra_status cpu_add(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cpu_mul(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cpu_scale(lyra_backend *, lyra_tensor *, const lyra_tensor *, float, float);
lyra_status cpu_modulate(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cpu_gate(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cpu_rope(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, lyra_rope_mode, int);
lyra_status cpu_sincos(lyra_backend *, lyra_tensor *, const lyra_tensor *, int);
/* cpu_fp8.c */
lyra_status cpu_quantize_fp8_rows(lyra_backend *, lyra_tensor *, lyra_tensor *, const lyra_tensor *);
lyra_status cpu_linear_fp8(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                           const lyra_tensor *, const lyra_tensor *, const lyra_tensor *);

lyra_status cpu_conv2d(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                       const lyra_conv2d_params *);
lyra_status cpu_conv3d(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                       const lyra_tensor *, const lyra_conv3d_params *);
lyra_status cpu_conv_transpose2d(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                                 const lyra_tensor *, int, int);
lyra_status cpu_upsample_nearest2x(lyra_backend *, lyra_tensor *, const lyra_tensor *);
lyra_status cpu_resize(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_resize_params *);
lyra_status cpu_avg_pool3d(lyra_backend *, lyra_tensor *, const lyra_tensor *, int, int, int);

/* cpu_splat.c */
lyra_status cpu_gs_rasterize(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *,
                             const lyra_tensor *, const lyra_tensor *, const lyra_tensor *, const lyra_splat_camera *);
lyra_status cpu_warp_forward(lyra_backend *, lyra_tensor *, lyra_tensor *, lyra_tensor *, const lyra_tensor *,
                             const lyra_tensor *, const lyra_warp_params *);
/* cpu_prep.c */
lyra_status cpu_rays(lyra_backend *, lyra_tensor *, int, int, const lyra_ray_params *);
lyra_status cpu_to_u8(lyra_backend *, lyra_tensor *, const lyra_tensor *, lyra_u8_mode);
lyra_status cpu_minmax(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *);
lyra_status cpu_range_norm(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_tensor *, float);
/* cpu_latent.c */
lyra_status cpu_latent_update(lyra_backend *, lyra_tensor *, const lyra_tensor *const *, int,
                              const lyra_latent_update *);
lyra_status cpu_u8_pixels(lyra_backend *, lyra_tensor *, const lyra_tensor *, const lyra_u8_pixels_params *);
lyra_status cpu_fill_random(lyra_backend *, lyra_tensor *, const lyra_random_fill *);
/* cpu_da3_merge.c */
lyra_status cpu_da3_merge(lyra_backend *, lyra_tensor *, lyra_tensor *, lyra_tensor *, lyra_tensor *,
                          const lyra_tensor *, const float *);
lyra_status cpu_depth_resize(lyra_backend *, lyra_tensor *, const lyra_tensor *, double);

#endif
