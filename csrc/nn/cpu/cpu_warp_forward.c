/* The forward warp of one source view into N target cameras (upstream M:1601-1822, FW), threaded over targets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/warp.h"

#ifdef _OPENMP
#include <omp.h>
static int omp_default_threads(void) { return omp_get_max_threads(); }
#else
static int omp_default_threads(void) { return 1; }
#endif

static lyra_status check_finite(const float *v, int64_t count, const char *what) {
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(v[i]))
            return lyra_error(LYRA_ERR_ARG, "%s: element %lld is %f; camera matrices must be finite", what,
                              (long long)i, (double)v[i]);
    return LYRA_OK;
}

lyra_status lyra_warp_forward(const lyra_warp_forward_args *a) {
    const int C = a->channels, H = a->height, W = a->width, N = a->n_targets;
    if (C < 1 || H < 1 || W < 1 || N < 0)
        return lyra_error(LYRA_ERR_ARG, "forward warp: bad sizes C=%d H=%d W=%d N=%d", C, H, W, N);
    if ((int64_t)(H + 2) * (W + 2) > INT32_MAX / 2)
        return lyra_error(LYRA_ERR_ARG, "forward warp: image %dx%d is too large", H, W);
    if (a->norm_batch < 0) return lyra_error(LYRA_ERR_ARG, "forward warp: norm_batch must be >= 0");
    LYRA_TRY(check_finite(a->src_w2c, 16, "src_w2c"));
    LYRA_TRY(check_finite(a->src_K, 9, "src_K"));
    LYRA_TRY(check_finite(a->tgt_w2c, 16 * (int64_t)N, "tgt_w2c"));
    LYRA_TRY(check_finite(a->tgt_K, 9 * (int64_t)N, "tgt_K"));

    const int64_t HW = (int64_t)H * W;
    const int threads = a->n_threads > 0 ? a->n_threads : omp_default_threads();
    lyra_status st = LYRA_OK;
    float *depth = a->out_depth_sanitized ? a->out_depth_sanitized : malloc(sizeof(float) * HW);
    uint8_t *reliable = a->out_reliable ? a->out_reliable : malloc(HW);
    uint8_t *valid = malloc(HW);
    float *points = a->out_points ? a->out_points : malloc(sizeof(float) * 3 * HW);
    float *log_norm = malloc(sizeof(float) * (N > 0 ? N : 1));
    if (!depth || !reliable || !valid || !points || !log_norm) {
        st = lyra_error(LYRA_ERR_OOM, "forward warp: out of memory for a %dx%d source", H, W);
        goto done;
    }

    lyra_warp_sanitize_depth(a->depth, HW, depth);
    lyra_warp_reliable_mask(depth, H, W, reliable);
    for (int64_t i = 0; i < HW; i++) valid[i] = (uint8_t)(depth[i] > 0.0f && (!a->clean_points || reliable[i]));
    st = lyra_warp_unproject(depth, valid, H, W, a->src_K, a->src_w2c, points);
    if (st != LYRA_OK) goto done;

    /* Phase 1: per-target max depth, then one normaliser per batch of norm_batch targets. */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < N; t++) log_norm[t] = lyra_warp_max_depth(points, HW, a->tgt_w2c + 16 * t, a->tgt_K + 9 * t);
    const int batch = a->norm_batch > 0 ? a->norm_batch : (N > 0 ? N : 1);
    for (int b0 = 0; b0 < N; b0 += batch) {
        int b1 = b0 + batch < N ? b0 + batch : N;
        float zmax = 0.0f;
        for (int t = b0; t < b1; t++) zmax = log_norm[t] > zmax ? log_norm[t] : zmax;
        float L = log1pf(zmax);
        for (int t = b0; t < b1; t++) log_norm[t] = L;
    }

    /* Phase 2: the splats, one target per thread at a time, each with its own scratch. */
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        lyra_warp_scratch scratch;
        memset(&scratch, 0, sizeof(scratch));
        lyra_status mine = lyra_warp_scratch_reserve(&scratch, C, H, W);
        if (mine != LYRA_OK) {
#pragma omp critical(lyra_warp_error)
            {
                if (!failed) st = mine; /* the message is in this thread's slot; re-raised below */
                failed = 1;
            }
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < N; t++) {
                lyra_warp_splat_args sa = {
                    .channels = C, .height = H, .width = W, .image = a->image, .valid = valid,
                    .points = points, .w2c = a->tgt_w2c + 16 * t, .K = a->tgt_K + 9 * t,
                    .log_norm = log_norm[t], .clamp_image = 1, .hole_value = -1.0f,
                    .out_image = a->out_image ? a->out_image + (int64_t)t * C * HW : NULL,
                    .out_mask = a->out_mask + (int64_t)t * HW,
                    .out_depth = a->out_depth ? a->out_depth + (int64_t)t * HW : NULL,
                    .out_flow = a->out_flow ? a->out_flow + (int64_t)t * 2 * HW : NULL,
                };
                lyra_warp_splat(&sa, &scratch);
            }
        }
        lyra_warp_scratch_free(&scratch);
    }
    if (failed) st = lyra_error(LYRA_ERR_OOM, "forward warp: out of memory for the per-thread splat buffers");

done:
    if (depth != a->out_depth_sanitized) free(depth);
    if (reliable != a->out_reliable) free(reliable);
    if (points != a->out_points) free(points);
    free(valid);
    free(log_norm);
    return st;
}
