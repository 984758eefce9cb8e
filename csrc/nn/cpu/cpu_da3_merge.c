/* CPU references of DA3's nested merge (op da3_merge, host arithmetic lyra_da3_merge_host) and of the depth maps'
 * resize (op depth_resize, nn/depth_resize_math.h). The merge is the reference the models' host path
 * (models/da3_merge.c) also calls, so the op on the CPU backend is the host merge bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/cpu_internal.h"
#include "nn/depth_resize_math.h"
#include "nn/ops.h"

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

float lyra_quantile_f32(float *x, int64_t n, float q) {
    qsort(x, (size_t)n, sizeof *x, cmp_float);
    /* aten quantile: rank = q·(n − 1) in the input dtype, lerp(below, above, rank − floor(rank)) */
    float rank = q * (float)(n - 1);
    int64_t lo = (int64_t)rank, hi = (int64_t)ceilf(rank);
    if (hi > n - 1) hi = n - 1;
    float wgt = rank - (float)lo, a = x[lo], b = x[hi];
    return wgt < 0.5f ? a + wgt * (b - a) : b - (b - a) * (1.0f - wgt); /* at::lerp */
}

lyra_status lyra_da3_merge_host(int64_t n, float *depth, float *conf, const float *metric, const float *sky,
                                lyra_da3_merge_stats *st, uint8_t *align_mask, uint8_t *non_sky) {
    int64_t n_ns = 0;
    for (int64_t i = 0; i < n; i++) n_ns += sky[i] < 0.3f;
    st->non_sky = n_ns;
    st->median = st->sigma = st->fill = NAN;
    if (n_ns <= 10) return LYRA_OK;
    float *buf = malloc(sizeof *buf * (size_t)n_ns);
    if (!buf) return lyra_error(LYRA_ERR_OOM, "Depth Anything 3 merge: out of memory");
    /* median confidence over non-sky pixels (all views pooled) */
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++)
        if (sky[i] < 0.3f) buf[j++] = conf[i];
    const float median = lyra_quantile_f32(buf, n_ns, 0.5f);
    /* σ = <Dm, D>_A / max(<D, D>_A, 1e-12) over conf >= median, non-sky, Dm > 0.01, D > 0.001 */
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int in = conf[i] >= median && sky[i] < 0.3f && metric[i] > 0.01f && depth[i] > 0.001f;
        if (align_mask) align_mask[i] = (uint8_t)in;
        if (non_sky) non_sky[i] = sky[i] < 0.3f;
        if (in) num += (double)metric[i] * depth[i], den += (double)depth[i] * depth[i];
    }
    const float sigma = (float)num / fmaxf((float)den, 1e-12f);
    for (int64_t i = 0; i < n; i++) depth[i] *= sigma;
    /* sky fill: min(q0.99 of the non-sky depth, 200); sky pixels get it with confidence 1 */
    j = 0;
    for (int64_t i = 0; i < n; i++)
        if (sky[i] < 0.3f) buf[j++] = depth[i];
    float q = lyra_quantile_f32(buf, n_ns, 0.99f);
    if (q > 200.0f) q = 200.0f;
    for (int64_t i = 0; i < n; i++)
        if (!(sky[i] < 0.3f)) depth[i] = q, conf[i] = 1.0f;
    free(buf);
    st->median = median, st->sigma = sigma, st->fill = q;
    return LYRA_OK;
}

lyra_status cpu_da3_merge(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                          lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor) {
    (void)be;
    const int64_t S = depth->ne[0], hw = depth->ne[1] * depth->ne[2];
    float *d = depth->data, *c = conf->data, *m = metric->data;
    /* the heads' activations (exp; exp + 1 for the confidence) and the metric scaling, as the host path applies them
     * to the downloaded maps (models/da3_head.c, models/da3_merge.c) */
    for (int64_t v = 0; v < S; v++)
        for (int64_t i = v * hw; i < (v + 1) * hw; i++) {
            d[i] = expf(d[i]);
            c[i] = expf(c[i]) + 1.0f;
            m[i] = expf(m[i]) * metric_factor[v];
        }
    lyra_da3_merge_stats st;
    LYRA_TRY(lyra_da3_merge_host(S * hw, d, c, m, sky->data, &st, NULL, NULL));
    float *o = stats->data;
    o[0] = st.median, o[1] = st.sigma, o[2] = st.fill, o[3] = (float)st.non_sky;
    return LYRA_OK;
}

lyra_status cpu_depth_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor) {
    const int n = (int)x->ne[0], h = (int)x->ne[1], w = (int)x->ne[2], H = (int)y->ne[1], W = (int)y->ne[2];
    int *t = malloc(sizeof *t * (size_t)(2 * H + 2 * W));
    float *f = malloc(sizeof *f * (size_t)(H + W));
    if (!t || !f) {
        free(t);
        free(f);
        return lyra_error(LYRA_ERR_OOM, "depth_resize: out of memory for the tables");
    }
    int *y0 = t, *y1 = y0 + H, *x0 = y1 + H, *x1 = x0 + W;
    float *fy = f, *fx = f + H;
    for (int r = 0; r < H; r++) lyra_drs_axis(h, H, r, &y0[r], &y1[r], &fy[r]);
    for (int c = 0; c < W; c++) lyra_drs_axis(w, W, c, &x0[c], &x1[c], &fx[c]);
    const float *src = x->data;
    float *dst = y->data;
#pragma omp parallel for num_threads(cpu_threads(be, (int64_t)n * H * W)) schedule(static)
    for (int64_t vr = 0; vr < (int64_t)n * H; vr++) {
        const int64_t v = vr / H;
        const int r = (int)(vr % H);
        const float *m = src + v * h * w;
        float *o = dst + vr * W;
        for (int c = 0; c < W; c++) o[c] = lyra_drs_pixel(m, w, y0[r], y1[r], fy[r], x0[c], x1[c], fx[c], divisor);
    }
    free(t);
    free(f);
    return LYRA_OK;
}
