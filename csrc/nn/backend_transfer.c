/* Host <-> device transfers that change the float dtype on the host side (nn/backend.h lyra_backend_upload_as /
 * lyra_backend_download_as): f32 host frames and maps in and out of a network's 16-bit device activations. */
#include <stdlib.h>

#include "nn/ops.h"

/* A contiguous host buffer shaped like t, in dtype dt (malloc'd into *mem). */
static lyra_status host_twin(lyra_tensor *out, void **mem, const lyra_tensor *t, lyra_dtype dt, const char *op) {
    *out = lyra_tensor_make(NULL, dt, t->ndim, t->ne);
    size_t bytes = lyra_tensor_nbytes(out);
    *mem = malloc(bytes ? bytes : 1);
    if (!*mem) return lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes of host memory", op, bytes);
    out->data = *mem;
    out->name = t->name;
    return LYRA_OK;
}

/* dst (n elements of dtype dd) <- src (dtype sd), both float dtypes: directly when one side is f32, else through
 * an f32 buffer. */
static lyra_status convert(void *dst, lyra_dtype dd, const void *src, lyra_dtype sd, int64_t n, const char *op) {
    if (sd == LYRA_DTYPE_F32) {
        lyra_convert_from_f32(dst, dd, src, n);
    } else if (dd == LYRA_DTYPE_F32) {
        lyra_convert_to_f32(dst, src, sd, n);
    } else {
        float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
        if (!f) return lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %lld floats of host memory", op, (long long)n);
        lyra_convert_to_f32(f, src, sd, n);
        lyra_convert_from_f32(dst, dd, f, n);
        free(f);
    }
    return LYRA_OK;
}

static lyra_status check_host(const char *op, const lyra_tensor *host, const lyra_tensor *dev) {
    if (!lyra_dtype_is_float(host->dtype) || !lyra_dtype_is_float(dev->dtype))
        return lyra_error(LYRA_ERR_TYPE, "%s: cannot convert %s to %s", op, lyra_dtype_name(host->dtype),
                          lyra_dtype_name(dev->dtype));
    if (!lyra_tensor_is_contiguous(host)) return lyra_error(LYRA_ERR_ARG, "%s: the host tensor must be contiguous", op);
    return LYRA_OK;
}

lyra_status lyra_backend_upload_as(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src) {
    if (dst->dtype == host_src->dtype) return lyra_op_upload(be, dst, host_src);
    LYRA_TRY(check_host("upload", host_src, dst));
    lyra_tensor h;
    void *mem;
    LYRA_TRY(host_twin(&h, &mem, host_src, dst->dtype, "upload"));
    lyra_status st = convert(h.data, dst->dtype, host_src->data, host_src->dtype, lyra_tensor_numel(host_src), "upload");
    h.name = dst->name ? dst->name : host_src->name;
    if (st == LYRA_OK) st = lyra_op_upload(be, dst, &h);
    free(mem);
    return st;
}

lyra_status lyra_backend_download_as(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src) {
    if (src->dtype == host_dst->dtype) return lyra_op_download(be, host_dst, src);
    LYRA_TRY(check_host("download", host_dst, src));
    lyra_tensor h;
    void *mem;
    LYRA_TRY(host_twin(&h, &mem, host_dst, src->dtype, "download"));
    lyra_status st = lyra_op_download(be, &h, src);
    if (st == LYRA_OK)
        st = convert(host_dst->data, host_dst->dtype, h.data, src->dtype, lyra_tensor_numel(host_dst), "download");
    free(mem);
    return st;
}
