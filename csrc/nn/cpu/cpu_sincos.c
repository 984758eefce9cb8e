/* The sin/cos feature op (nn/ops.h lyra_op_sincos) on the CPU: one row of x per iteration. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"

lyra_status cpu_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves) {
    int64_t rows = cpu_rows(x), C = cpu_inner(x), sx = x->nb[x->ndim - 1], W = 2 * (int64_t)octaves * C;
    size_t ey = lyra_dtype_size(y->dtype);
    float f[30];
    for (int o = 0; o < octaves; o++) f[o] = (float)ldexp(M_PI, o); /* 2^o·π rounded to f32, as upstream */
#pragma omp parallel for num_threads(cpu_threads(be, rows * W)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const char *xr = (const char *)x->data + cpu_row_offset(x, x, r);
        char *yr = (char *)y->data + r * W * (int64_t)ey;
        for (int o = 0; o < octaves; o++)
            for (int64_t c = 0; c < C; c++) {
                float a = cpu_load(xr + c * sx, x->dtype) * f[o];
                cpu_store(yr + (2 * o * C + c) * (int64_t)ey, y->dtype, sinf(a));
                cpu_store(yr + ((2 * o + 1) * C + c) * (int64_t)ey, y->dtype, cosf(a));
            }
    }
    return LYRA_OK;
}
