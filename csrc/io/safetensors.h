/* safetensors reader (https://github.com/huggingface/safetensors format) over a read-only mmap.
 *
 * File layout: u64 little-endian N, then N bytes of a JSON object, then the data area. The JSON maps
 * each tensor name to {"dtype": "F32"|..., "shape": [d0, d1, ...], "data_offsets": [begin, end]} with
 * offsets relative to the start of the data area; the optional "__metadata__" member is a map of
 * string to string. Opening validates everything a hostile file could get wrong, so a tensor that
 * comes out of lyra_st_open() can be read without further checks:
 *   - N is at most LYRA_ST_MAX_HEADER and 8 + N fits in the file; the header is one valid JSON object
 *     (UTF-8, padding spaces allowed after it);
 *   - every tensor has exactly the three fields, a known dtype, at most LYRA_ST_MAX_DIMS non-negative
 *     dims whose product times the item size does not overflow and equals end - begin;
 *   - names are unique and contain no NUL; tensors tile the data area exactly (sorted by begin, each
 *     starts where the previous ended, the last ends at the end of the file): no overlap, no gap, no
 *     range outside the file. This is the rule of the reference implementation.
 * Failures return LYRA_ERR_FORMAT (LYRA_ERR_IO for open/mmap) with a message naming the file and the
 * tensor. Tensor data pointers are generally unaligned (N is arbitrary); read them with the helpers. */
#ifndef LYRA_IO_SAFETENSORS_H
#define LYRA_IO_SAFETENSORS_H

#include "lyra2.h"

/* Codes follow the safetensors dtype strings. */
typedef enum lyra_st_dtype {
    LYRA_ST_BOOL = 0,
    LYRA_ST_U8,
    LYRA_ST_I8,
    LYRA_ST_I16,
    LYRA_ST_U16,
    LYRA_ST_F16,
    LYRA_ST_BF16,
    LYRA_ST_I32,
    LYRA_ST_U32,
    LYRA_ST_F32,
    LYRA_ST_F64,
    LYRA_ST_I64,
    LYRA_ST_U64,
    LYRA_ST_F8_E4M3,
    LYRA_ST_F8_E5M2,
    LYRA_ST_DTYPE_COUNT
} lyra_st_dtype;

#define LYRA_ST_MAX_DIMS 8
#define LYRA_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* the reference implementation's cap */

typedef struct lyra_st_tensor {
    const char *name;                   /* UTF-8, NUL-terminated */
    lyra_st_dtype dtype;
    int ndim;                           /* 0 = scalar */
    int64_t shape[LYRA_ST_MAX_DIMS];    /* outermost first, row-major */
    size_t numel;
    size_t nbytes;                      /* numel * itemsize */
    size_t offset;                      /* byte offset of the data from the start of the file */
    const uint8_t *data;                /* into the mapping; unaligned in general */
} lyra_st_tensor;

typedef struct lyra_st_file {
    char *path;                         /* for messages ("<buffer>" for lyra_st_parse) */
    const uint8_t *base;                /* whole file */
    size_t size;
    size_t n_tensors;
    lyra_st_tensor *tensors;            /* header order */
    size_t n_meta;
    const char **meta_keys;             /* __metadata__ entries, header order */
    const char **meta_values;
    /* private */
    int mapped;
    void *json;
    size_t *sorted;                     /* tensor indices sorted by name, for lyra_st_find */
} lyra_st_file;

/* Name ("F32", ...) and item size in bytes of a dtype; lyra_st_dtype_from_name returns -1 if unknown. */
const char *lyra_st_dtype_name(lyra_st_dtype dtype);
size_t lyra_st_dtype_size(lyra_st_dtype dtype);
int lyra_st_dtype_from_name(const char *name);

/* Maps and validates `path`. On success *out owns the mapping; free with lyra_st_close. */
lyra_status lyra_st_open(const char *path, lyra_st_file **out);
/* Validates a file image held in memory (buf must outlive *out; nothing is copied). `what` names the
 * buffer in messages. Used by the fuzz target and for files already in memory. */
lyra_status lyra_st_parse(const uint8_t *buf, size_t size, const char *what, lyra_st_file **out);
void lyra_st_close(lyra_st_file *file);

/* The tensor called `name`, or NULL. O(log n). */
const lyra_st_tensor *lyra_st_find(const lyra_st_file *file, const char *name);

/* Converts a whole tensor to f32: out[numel]. Float dtypes (F64/F32/F16/BF16) and integer/bool dtypes
 * convert by value; FP8 returns LYRA_ERR_UNSUPPORTED naming the tensor. */
lyra_status lyra_st_read_f32(const lyra_st_file *file, const lyra_st_tensor *t, float *out);

/* Element conversions over n elements; src may be unaligned (little-endian bytes). */
void lyra_st_bf16_to_f32(const void *src, float *dst, size_t n);
void lyra_st_f16_to_f32(const void *src, float *dst, size_t n);
/* Round to nearest even; NaN stays NaN (quiet), +-inf stays inf, overflow rounds to inf (as torch). */
void lyra_st_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

#endif
