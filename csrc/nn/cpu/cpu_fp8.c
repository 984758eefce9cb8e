/* The FP8 (e4m3) ops on the CPU (nn/ops.h lyra_op_quantize_fp8_rows, lyra_op_linear_fp8): the reference of the
 * CUDA kernels (cuda_fp8.cu) and what the emulated device runs. The GEMM decodes the e4m3 codes to f32 (exact),
 * so each product q·w is exact in f32 (two 4-bit significands) and only the f32 summation rounds, as on the
 * tensor cores; the scales are applied to the finished sum. */
#include <math.h>

#include "core/fp8.h"
#include "nn/cpu/cpu_internal.h"

lyra_status cpu_quantize_fp8_rows(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x) {
    int64_t M = cpu_rows(x), K = cpu_inner(x), sx = x->nb[x->ndim - 1];
    uint8_t *qd = q->data;
    float *sd = s->data;
#pragma omp parallel for num_threads(cpu_threads(be, M * K)) schedule(static)
    for (int64_t r = 0; r < M; r++) {
        const char *xr = (const char *)x->data + cpu_row_offset(x, x, r);
        float mx = 0.0f;
        for (int64_t c = 0; c < K; c++) mx = fmaxf(mx, fabsf(cpu_load(xr + c * sx, x->dtype)));
        /* the f32 division and the f32 quotient below are what the CUDA kernel computes, bit for bit */
        float sc = mx > 0.0f ? mx / LYRA_E4M3_MAX : 1.0f;
        sd[r] = sc;
        for (int64_t c = 0; c < K; c++) qd[r * K + c] = lyra_f32_to_e4m3(cpu_load(xr + c * sx, x->dtype) / sc);
    }
    return LYRA_OK;
}

/* Floats of scratch per tile row: the decoded activations (K) and the f32 sums (N). Tiles of rows keep the
 * scratch near FP8_TILE_FLOATS beside the decoded weights, whatever the token count. */
#define FP8_TILE_FLOATS ((int64_t)1 << 22)

lyra_status cpu_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                           const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b) {
    int64_t M = cpu_rows(y), N = w8->ne[0], K = w8->ne[1];
    if (!M || !N) return LYRA_OK;
    int64_t R = FP8_TILE_FLOATS / (K + N);
    if (R < 1) R = 1;
    if (R > M) R = M;
    float lut[256];
    for (int c = 0; c < 256; c++) lut[c] = lyra_e4m3_to_f32((uint8_t)c);
    float *wd = lyra_backend_scratch(be, sizeof(float) * (size_t)(N * K + R * (K + N)), "linear_fp8");
    if (!wd) return LYRA_ERR_OOM;
    float *xd = wd + N * K, *acc = xd + R * K;
    const uint8_t *wq = w8->data, *xq = q->data;
    const float *sm = s->data, *sn = ws->data;
    int th = be->n_threads > 0 ? be->n_threads : 1;
#pragma omp parallel for num_threads(cpu_threads(be, N * K)) schedule(static)
    for (int64_t i = 0; i < N * K; i++) wd[i] = lut[wq[i]];
    int64_t ey = (int64_t)lyra_dtype_size(y->dtype), sb = b ? b->nb[0] : 0;
    for (int64_t m0 = 0; m0 < M; m0 += R) {
        int64_t rr = M - m0 < R ? M - m0 : R;
        for (int64_t i = 0; i < rr * K; i++) xd[i] = lut[xq[m0 * K + i]];
        cpu_sgemm(1, rr, N, K, 1.0f, xd, K, wd, K, 0.0f, acc, N, th);
#pragma omp parallel for num_threads(cpu_threads(be, rr * N)) schedule(static)
        for (int64_t r = 0; r < rr; r++) {
            char *yr = (char *)y->data + cpu_row_offset(y, y, m0 + r);
            for (int64_t n = 0; n < N; n++) {
                float v = acc[r * N + n] * (sm[m0 + r] * sn[n]);
                if (b) v += cpu_load((const char *)b->data + n * sb, b->dtype);
                cpu_store(yr + n * ey, y->dtype, v);
            }
        }
    }
    return LYRA_OK;
}
