/* The one tensor descriptor of lyra2 (ggml-style: type, sizes, byte strides, data, device).
 *
 * DIMENSION ORDER: NumPy / PyTorch order. ne[0] is the OUTERMOST (slowest) dimension and ne[ndim-1] the
 * INNERMOST (fastest); a contiguous tensor has nb[ndim-1] = element size and nb[i] = nb[i+1]·ne[i+1].
 * (This is the reverse of ggml's ne[0]-innermost convention, chosen so that shapes read exactly as in the
 * specs and in PyTorch: a video is (B, C, T, H, W), a token sequence (B, L, D), a Linear weight (out, in).)
 *
 * Strides are in BYTES and signed; a stride of 0 broadcasts a size-1 dimension (used by modulate / gate / add
 * for shift and scale vectors). A descriptor never owns its data: weights live in one carved allocation or an
 * mmap (see lyra_carver below), activations in an arena (core/arena.h).
 *
 * dtype of activations on the CPU backend is f32; weights may be f32, bf16 or f16 (converted per tile). */
#ifndef LYRA_TENSOR_H
#define LYRA_TENSOR_H

#include <stdint.h>
#include <string.h>

#include "lyra2.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LYRA_MAX_DIMS 5

typedef enum lyra_dtype {
    LYRA_DTYPE_F32 = 0,
    LYRA_DTYPE_BF16,
    LYRA_DTYPE_F16,
    LYRA_DTYPE_I32,
    LYRA_DTYPE_I64,
    LYRA_DTYPE_U8,
    LYRA_DTYPE_COUNT
} lyra_dtype;

typedef enum lyra_device {
    LYRA_DEVICE_CPU = 0,
    LYRA_DEVICE_CUDA
} lyra_device;

typedef struct lyra_tensor {
    lyra_dtype dtype;
    lyra_device device;
    int ndim;                    /* 0..LYRA_MAX_DIMS; 0 is a scalar */
    int64_t ne[LYRA_MAX_DIMS];   /* sizes, ne[0] outermost .. ne[ndim-1] innermost; unused dims are 1 */
    int64_t nb[LYRA_MAX_DIMS];   /* byte strides, same order; may be 0 (broadcast) or negative */
    void *data;                  /* address of element (0,...,0) */
    const char *name;            /* optional (weights: the checkpoint key), used in error messages */
} lyra_tensor;

/* Bytes per element; 0 for an invalid dtype. */
size_t lyra_dtype_size(lyra_dtype dtype);
/* "f32", "bf16", "f16", "i32", "i64", "u8" ("?" otherwise). */
const char *lyra_dtype_name(lyra_dtype dtype);
/* 1 for the floating-point dtypes (f32, bf16, f16). */
static inline int lyra_dtype_is_float(lyra_dtype d) {
    return d == LYRA_DTYPE_F32 || d == LYRA_DTYPE_BF16 || d == LYRA_DTYPE_F16;
}

/* A contiguous descriptor over `data` with shape ne[0..ndim-1] (outermost first). */
lyra_tensor lyra_tensor_make(void *data, lyra_dtype dtype, int ndim, const int64_t *ne);
/* Same, with the sizes as arguments: lyra_tensor_4d(p, F32, B, L, H, D). */
lyra_tensor lyra_tensor_1d(void *data, lyra_dtype dtype, int64_t n0);
lyra_tensor lyra_tensor_2d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1);
lyra_tensor lyra_tensor_3d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1, int64_t n2);
lyra_tensor lyra_tensor_4d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1, int64_t n2, int64_t n3);
lyra_tensor lyra_tensor_5d(void *data, lyra_dtype dtype, int64_t n0, int64_t n1, int64_t n2, int64_t n3,
                           int64_t n4);

int64_t lyra_tensor_numel(const lyra_tensor *t);
/* Bytes of a contiguous tensor of this shape (numel · element size). */
size_t lyra_tensor_nbytes(const lyra_tensor *t);
/* 1 when strides are exactly the contiguous ones (size-1 dims may have any stride). */
int lyra_tensor_is_contiguous(const lyra_tensor *t);
/* 1 when the innermost dim has stride = element size (or size 1): rows can be read as plain arrays. */
int lyra_tensor_rows_contiguous(const lyra_tensor *t);
/* 1 when a and b have the same ndim and sizes. */
int lyra_tensor_same_shape(const lyra_tensor *a, const lyra_tensor *b);
/* Writes "(2, 3, 4) f32" into buf (for error messages); returns buf. */
const char *lyra_tensor_shape_str(const lyra_tensor *t, char *buf, size_t size);

/* Views (no copy). Each returns LYRA_ERR_ARG with a message when the request does not fit the tensor. */
/* view = t[..., start:end, ...] along `dim` (negative dim counts from the end). */
lyra_status lyra_tensor_slice(lyra_tensor *view, const lyra_tensor *t, int dim, int64_t start, int64_t end);
/* view dims i = t dims perm[i]. */
lyra_status lyra_tensor_permute(lyra_tensor *view, const lyra_tensor *t, const int *perm);
/* Same data, new shape; t must be contiguous. One entry of ne may be -1 (inferred). */
lyra_status lyra_tensor_reshape(lyra_tensor *view, const lyra_tensor *t, int ndim, const int64_t *ne);
/* view = t[..., index, ...]: dim `dim` removed (a strided view, e.g. q out of a fused (B, L, 3, H, D) qkv). */
lyra_status lyra_tensor_select(lyra_tensor *view, const lyra_tensor *t, int dim, int64_t index);
/* view with a new size-1 dim inserted at position `dim` (0..ndim). */
lyra_status lyra_tensor_unsqueeze(lyra_tensor *view, const lyra_tensor *t, int dim);
/* Broadcast view: size-1 dims of t get size ne[i] and stride 0. ndim must equal t->ndim. */
lyra_status lyra_tensor_expand(lyra_tensor *view, const lyra_tensor *t, int ndim, const int64_t *ne);

/* Address of element idx[0..ndim-1]. */
static inline void *lyra_tensor_at(const lyra_tensor *t, const int64_t *idx) {
    char *p = (char *)t->data;
    for (int i = 0; i < t->ndim; i++) p += idx[i] * t->nb[i];
    return p;
}

/* ---- bf16 / f16 <-> f32 (round to nearest, ties to even; NaN stays NaN) ---- */
static inline float lyra_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t lyra_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float lyra_f16_to_f32(uint16_t h);
uint16_t lyra_f32_to_f16(float f);

/* Converts n contiguous elements between dtypes (any of f32/bf16/f16 to or from f32). */
void lyra_convert_to_f32(float *dst, const void *src, lyra_dtype src_dtype, int64_t n);
void lyra_convert_from_f32(void *dst, lyra_dtype dst_dtype, const float *src, int64_t n);

/* ---- Weights carved from one allocation ----
 * Two passes over the same code: with base == NULL the carver only measures (sets `used`); allocate `used`
 * bytes (or mmap a file of that layout), then run again with the real base to fill the descriptors. Each
 * tensor starts at a LYRA_CARVE_ALIGN boundary so SIMD loads and cuBLAS pointers are aligned. */
#define LYRA_CARVE_ALIGN 64
typedef struct lyra_carver {
    char *base;         /* NULL in the measuring pass */
    size_t capacity;    /* bytes available at base (ignored when measuring) */
    size_t used;        /* bytes consumed so far, including alignment */
    lyra_device device;
} lyra_carver;

void lyra_carver_init(lyra_carver *c, void *base, size_t capacity, lyra_device device);
/* Carves a contiguous tensor of the given shape and names it; LYRA_ERR_OOM when the capacity is exceeded. */
lyra_status lyra_carve(lyra_carver *c, lyra_tensor *t, const char *name, lyra_dtype dtype, int ndim,
                       const int64_t *ne);

/* ---- Binding named checkpoint tensors into a network's weight struct ----
 * A network lists its slots (name, destination descriptor, expected dtype set and shape); the loader supplies
 * a lookup. Binding checks every shape and reports the first missing / mismatching tensor by name. */
typedef const lyra_tensor *(*lyra_tensor_lookup_fn)(void *source, const char *name);
typedef struct lyra_weight_slot {
    const char *name;          /* checkpoint key */
    lyra_tensor *dst;          /* filled with the found descriptor (name points at slot name) */
    int ndim;
    int64_t ne[LYRA_MAX_DIMS]; /* expected shape; -1 accepts any size in that dim */
    int optional;              /* 1: a missing tensor leaves dst->data NULL instead of failing */
} lyra_weight_slot;
lyra_status lyra_weights_bind(lyra_weight_slot *slots, int n_slots, lyra_tensor_lookup_fn lookup, void *source);

#ifdef __cplusplus
}
#endif
#endif
