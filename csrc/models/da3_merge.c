/* DA3 nested merge (upstream DA3net:499-567, DA3aln): metric scaling by the predicted focal, the
 * least-squares scale of the any-view depth onto the metric depth, and the sky fill.
 *
 * Upstream draws a random subset of 100 000 values (torch RNG) for the median confidence and the 0.99 depth
 * quantile when more qualify (every 480p call: 393 176 pixels per view). This port always uses ALL qualifying
 * values: the statistic the sample estimates, deterministic, and identical to upstream below 100 000 values
 * (every golden case). At full size the difference is the sampling noise, about 1e-4 relative on σ. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3.h"

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

float lyra_da3_quantile(float *x, int64_t n, float q) {
    qsort(x, (size_t)n, sizeof *x, cmp_float);
    /* aten quantile: rank = q·(n − 1) in the input dtype, lerp(below, above, rank − floor(rank)) */
    float rank = q * (float)(n - 1);
    int64_t lo = (int64_t)rank, hi = (int64_t)ceilf(rank);
    if (hi > n - 1) hi = n - 1;
    float wgt = rank - (float)lo, a = x[lo], b = x[hi];
    return wgt < 0.5f ? a + wgt * (b - a) : b - (b - a) * (1.0f - wgt); /* at::lerp */
}

lyra_status lyra_da3_merge(int64_t S, int64_t h, int64_t w, float *depth, float *conf, float *metric_depth,
                           const float *sky, float *extrinsics, const float *intrinsics, lyra_da3_trace *tr,
                           float *scale) {
    int64_t hw = h * w, n = S * hw, n_ns = 0;
    /* 1. metric depth · mean focal / 300 (predicted K, also on the AR path; DA3aln apply_metric_scaling) */
    for (int64_t v = 0; v < S; v++) {
        const float *K = intrinsics + v * 9;
        float f = (K[0] + K[4]) / 2.0f;
        for (int64_t i = 0; i < hw; i++) metric_depth[v * hw + i] = metric_depth[v * hw + i] * (f / 300.0f);
    }
    if (tr && tr->met_depth_scaled) memcpy(tr->met_depth_scaled, metric_depth, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) n_ns += sky[i] < 0.3f;
    if (n_ns <= 10)
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: only %lld non-sky pixels (sky < 0.3); the nested "
                          "alignment needs more than 10 (upstream asserts)", (long long)n_ns);
    float *buf = malloc(sizeof *buf * (size_t)n_ns);
    if (!buf) return lyra_error(LYRA_ERR_OOM, "Depth Anything 3 merge: out of memory");
    /* 2-3. median confidence over non-sky pixels (all views pooled) */
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++)
        if (sky[i] < 0.3f) buf[j++] = conf[i];
    float median = lyra_da3_quantile(buf, n_ns, 0.5f);
    /* 4-5. σ = <Dm, D>_A / max(<D, D>_A, 1e-12) over conf >= median, non-sky, Dm > 0.01, D > 0.001 */
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int in = conf[i] >= median && sky[i] < 0.3f && metric_depth[i] > 0.01f && depth[i] > 0.001f;
        if (tr && tr->align_mask) tr->align_mask[i] = (uint8_t)in;
        if (tr && tr->non_sky) tr->non_sky[i] = sky[i] < 0.3f;
        if (in) num += (double)metric_depth[i] * depth[i], den += (double)depth[i] * depth[i];
    }
    float sigma = (float)num / fmaxf((float)den, 1e-12f);
    for (int64_t i = 0; i < n; i++) depth[i] *= sigma;
    for (int64_t v = 0; v < S; v++)
        for (int r = 0; r < 3; r++) extrinsics[v * 12 + r * 4 + 3] *= sigma;
    /* 6. sky fill: min(q0.99 of the non-sky depth, 200); sky pixels get it with confidence 1 */
    j = 0;
    for (int64_t i = 0; i < n; i++)
        if (sky[i] < 0.3f) buf[j++] = depth[i];
    float q = lyra_da3_quantile(buf, n_ns, 0.99f);
    if (q > 200.0f) q = 200.0f;
    for (int64_t i = 0; i < n; i++)
        if (!(sky[i] < 0.3f)) depth[i] = q, conf[i] = 1.0f;
    free(buf);
    if (tr) tr->median_conf = median, tr->scale = sigma, tr->sky_fill = q;
    *scale = sigma;
    return LYRA_OK;
}
