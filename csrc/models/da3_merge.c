/* DA3 nested merge (upstream DA3net:499-567, DA3aln): metric scaling by the predicted focal, the
 * least-squares scale of the any-view depth onto the metric depth, and the sky fill.
 *
 * Upstream draws a random subset of 100 000 values (torch RNG) for the median confidence and the 0.99 depth
 * quantile when more qualify (every 480p call: 393 176 pixels per view). This port always uses ALL qualifying
 * values: the statistic the sample estimates, deterministic, and identical to upstream below 100 000 values
 * (every golden case). At full size the difference is the sampling noise, about 1e-4 relative on σ. */
#include <math.h>
#include <string.h>

#include "models/da3.h"
#include "nn/ops.h"

lyra_status lyra_da3_merge(int64_t S, int64_t h, int64_t w, float *depth, float *conf, float *metric_depth,
                           const float *sky, float *extrinsics, const float *intrinsics, lyra_da3_trace *tr,
                           float *scale) {
    int64_t hw = h * w, n = S * hw;
    /* 1. metric depth · mean focal / 300 (predicted K, also on the AR path; DA3aln apply_metric_scaling) */
    for (int64_t v = 0; v < S; v++) {
        const float *K = intrinsics + v * 9;
        float f = (K[0] + K[4]) / 2.0f;
        for (int64_t i = 0; i < hw; i++) metric_depth[v * hw + i] = metric_depth[v * hw + i] * (f / 300.0f);
    }
    if (tr && tr->met_depth_scaled) memcpy(tr->met_depth_scaled, metric_depth, sizeof(float) * (size_t)n);
    /* 2-6. median confidence, σ, depth · σ, sky fill (nn/ops.h; op da3_merge runs the same where the maps are) */
    lyra_da3_merge_stats st;
    LYRA_TRY(lyra_da3_merge_host(n, depth, conf, metric_depth, sky, &st, tr ? tr->align_mask : NULL,
                                 tr ? tr->non_sky : NULL));
    LYRA_TRY(lyra_da3_merge_check(st.non_sky));
    lyra_da3_scale_extrinsics(extrinsics, S, st.sigma);
    if (tr) tr->median_conf = st.median, tr->scale = st.sigma, tr->sky_fill = st.fill;
    *scale = st.sigma;
    return LYRA_OK;
}

lyra_status lyra_da3_merge_check(int64_t non_sky) {
    if (non_sky <= 10)
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: only %lld non-sky pixels (sky < 0.3); the nested "
                          "alignment needs more than 10 (upstream asserts)", (long long)non_sky);
    return LYRA_OK;
}

void lyra_da3_scale_extrinsics(float *extrinsics, int64_t S, float sigma) {
    for (int64_t v = 0; v < S; v++)
        for (int r = 0; r < 3; r++) extrinsics[v * 12 + r * 4 + 3] *= sigma;
}
