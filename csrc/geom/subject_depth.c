/* Subject depth = torch.quantile(depth[mask > 0.5], 0.25) (upstream Z:378), the scale of every
 * trajectory. Reproduces torch's float32 evaluation: rank = 0.25f * (float)(n - 1), the values at
 * floor(rank) and ceil(rank) of the sorted selection, and torch's lerp
 * (w < 0.5 ? a + w (b - a) : b - (b - a)(1 - w)). The two order statistics come from a quickselect
 * instead of a full sort (same values, O(n)). */
#include <math.h>
#include <stdlib.h>

#include "geom/trajectory.h"

static void swap_f(float *a, float *b) {
    float t = *a;
    *a = *b;
    *b = t;
}

static int cmp_float(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* Reorders v (n) so that v[k] is the k-th smallest, v[0..k-1] <= v[k] <= v[k+1..n-1]. No NaN in v.
 * Median-of-three quickselect; falls back to qsort of the remaining range after too many rounds, so
 * adversarial inputs stay O(n log n). */
static float select_kth(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    for (int round = 0; lo < hi; round++) {
        if (round > 64) {
            qsort(v + lo, (size_t)(hi - lo + 1), sizeof(float), cmp_float);
            break;
        }
        int64_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) swap_f(&v[mid], &v[lo]);
        if (v[hi] < v[lo]) swap_f(&v[hi], &v[lo]);
        if (v[hi] < v[mid]) swap_f(&v[hi], &v[mid]);
        const float pivot = v[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                swap_f(&v[i], &v[j]);
                i++;
                j--;
            }
        }
        /* Now v[lo..j] <= pivot <= v[i..hi], and anything strictly between j and i equals pivot. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return v[k];
}

lyra_status lyra_traj_subject_depth(const float *depth, const float *mask, int64_t count, float *out) {
    if (count <= 0) return lyra_error(LYRA_ERR_ARG, "depth: is empty; expected an (H, W) depth map");
    float *vals = malloc((size_t)count * sizeof(float));
    if (!vals) return lyra_error(LYRA_ERR_OOM, "subject depth: cannot allocate %lld floats", (long long)count);
    int64_t n = 0;
    for (int64_t i = 0; i < count; i++) {
        if (mask && !(mask[i] > 0.5f)) continue;
        if (isnan(depth[i])) {
            free(vals);
            return lyra_error(LYRA_ERR_ARG,
                              "depth: NaN at flat index %lld inside the valid mask; upstream maps NaN to 1e4, "
                              "clamps to [0, 1e4] and uses mask = depth < 999.9 (pass such a mask)",
                              (long long)i);
        }
        vals[n++] = depth[i];
    }
    if (n == 0) {
        free(vals);
        return lyra_error(LYRA_ERR_ARG, "mask: selects no pixel (valid pixels are mask > 0.5); need at least one");
    }
    const float rank = 0.25f * (float)(n - 1);
    const int64_t below_i = (int64_t)rank;
    const int64_t above_i = (int64_t)ceilf(rank);
    const float weight = rank - (float)below_i;
    const float below = select_kth(vals, n, below_i);
    float above = below;
    if (above_i != below_i) {
        /* After the select, the next order statistic is the minimum of the upper part. */
        above = vals[below_i + 1];
        for (int64_t i = below_i + 2; i < n; i++)
            if (vals[i] < above) above = vals[i];
    }
    free(vals);
    *out = fabsf(weight) < 0.5f ? below + weight * (above - below) : above - (above - below) * (1.0f - weight);
    return LYRA_OK;
}
