/* Sparse3DCache (upstream AR:469-677, M:1955-1999, M:2646-2849). Float32 in upstream's op order; see spatial_cache.h.
 * */
#include "pipeline/spatial_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/warp.h"

lyra_status lyra_scache_init(lyra_scache *c, int height, int width) {
    memset(c, 0, sizeof *c);
    if (height < 1 || width < 1)
        return lyra_error(LYRA_ERR_ARG, "spatial cache: image size %dx%d must be positive", height, width);
    c->height = height;
    c->width = width;
    return LYRA_OK;
}

void lyra_scache_free(lyra_scache *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->entries[i].points);
    }
    free(c->entries);
    memset(c, 0, sizeof *c);
}

static int down(int n) { return (n + LYRA_SCACHE_DOWNSAMPLE - 1) / LYRA_SCACHE_DOWNSAMPLE; }

/* K of the 1/4-resolution grid the entries live on: fx, fy, cx, cy times 1/4 (M:2510-2534, M:2716-2734). */
static void quarter_K(const float *K, float *Ks) {
    memcpy(Ks, K, 9 * sizeof *Ks);
    Ks[0] *= 0.25f;
    Ks[4] *= 0.25f;
    Ks[2] *= 0.25f;
    Ks[5] *= 0.25f;
}

lyra_status lyra_scache_add_sub(lyra_scache *c, const float *ds, const float *w2c, const float *K, int64_t latent_index,
                                int64_t frame_id) {
    const int h4 = down(c->height), w4 = down(c->width);
    if (c->n == c->capacity) {
        int cap = c->capacity ? 2 * c->capacity : 16;
        lyra_scache_entry *e = realloc(c->entries, sizeof *e * (size_t)cap);
        if (!e) return lyra_error(LYRA_ERR_OOM, "spatial cache: out of memory for %d entries", cap);
        c->entries = e;
        c->capacity = cap;
    }
    lyra_scache_entry *e = &c->entries[c->n];
    memset(e, 0, sizeof *e);
    e->points = malloc(sizeof(float) * 3 * (size_t)h4 * w4);
    uint8_t *valid = malloc((size_t)h4 * w4);
    lyra_status st = LYRA_OK;
    if (!e->points || !valid) {
        st = lyra_error(LYRA_ERR_OOM, "spatial cache: out of memory for a %dx%d entry", c->height, c->width);
        goto fail;
    }
    memcpy(e->w2c, w2c, sizeof e->w2c);
    memcpy(e->K, K, sizeof e->K);
    /* the raw depth decides validity (d > 0), there is no sanitising here, unlike the warp */
    for (int64_t i = 0; i < (int64_t)h4 * w4; i++) valid[i] = ds[i] > 0.0f;
    float Ks[9];
    quarter_K(K, Ks);
    st = lyra_warp_unproject(ds, valid, h4, w4, Ks, w2c, e->points);
    if (st != LYRA_OK) goto fail;
    e->latent_index = latent_index;
    e->frame_id = frame_id;
    c->n++;
    free(valid);
    return LYRA_OK;
fail:
    free(e->points);
    free(valid);
    return st;
}

lyra_status lyra_scache_add(lyra_scache *c, const float *depth, const float *w2c, const float *K, int64_t latent_index,
                            int64_t frame_id) {
    const int W = c->width, h4 = down(c->height), w4 = down(W);
    float *ds = malloc(sizeof(float) * (size_t)h4 * w4);
    if (!ds) return lyra_error(LYRA_ERR_OOM, "spatial cache: out of memory for a %dx%d entry", c->height, W);
    /* depth[::4, ::4] (M:2510-2534) */
    for (int y = 0; y < h4; y++)
        for (int x = 0; x < w4; x++)
            ds[(int64_t)y * w4 + x] = depth[(int64_t)(y * LYRA_SCACHE_DOWNSAMPLE) * W + x * LYRA_SCACHE_DOWNSAMPLE];
    lyra_status st = lyra_scache_add_sub(c, ds, w2c, K, latent_index, frame_id);
    free(ds);
    return st;
}

int lyra_scache_find(const lyra_scache *c, int64_t frame_id) {
    for (int i = c->n - 1; i >= 0; i--)
        if (c->entries[i].frame_id == frame_id) return i;
    return -1;
}

/* Target pixel of a stored point at 1/4 resolution, or -1; *z gets its depth (M:2716-2734). */
static int64_t project(const float *X, const float *w2c, const float *Ks, int ht, int wt, float *z) {
    float cam[3], p[3];
    for (int r = 0; r < 3; r++) {
        float s = 0.0f;
        s += w2c[4 * r + 0] * X[0];
        s += w2c[4 * r + 1] * X[1];
        s += w2c[4 * r + 2] * X[2];
        s += w2c[4 * r + 3];
        cam[r] = s;
    }
    for (int r = 0; r < 3; r++) {
        float s = 0.0f;
        for (int k = 0; k < 3; k++) s += Ks[3 * r + k] * cam[k];
        p[r] = s;
    }
    *z = p[2];
    /* torch.round is half-to-even: rintf under the default rounding mode. Range checks in float also reject
     * NaN and the huge values of points near the camera plane. */
    float u = rintf(p[0] / (p[2] + 1e-7f)), v = rintf(p[1] / (p[2] + 1e-7f));
    if (!(p[2] > 0.0f) || !(u >= 0.0f) || !(u < (float)wt) || !(v >= 0.0f) || !(v < (float)ht)) return -1;
    return (int64_t)v * wt + (int64_t)u;
}

lyra_status lyra_scache_retrieve(const lyra_scache *c, const float *w2c, const float *K, int n_max,
                                 int64_t *out_latent, int64_t *out_frame, int *n_out) {
    *n_out = 0;
    const int n = c->n;
    if (n == 0 || n_max <= 0) return LYRA_OK;
    const int ht = down(c->height), wt = down(c->width);
    const int64_t P = (int64_t)ht * wt, hw4 = P; /* entries are stored at the same 1/4 grid */
    float Ks[9];
    quarter_K(K, Ks);

    int64_t *pix = malloc(sizeof(int64_t) * (size_t)n * hw4);
    float *zs = malloc(sizeof(float) * (size_t)n * hw4);
    float *zmin = malloc(sizeof(float) * (size_t)P);
    uint8_t *cov = calloc((size_t)n * P, 1);
    uint8_t *covered = calloc((size_t)P, 1);
    uint8_t *excluded = calloc((size_t)n, 1);
    int *picked = malloc(sizeof(int) * (size_t)n);
    lyra_status st = LYRA_OK;
    if (!pix || !zs || !zmin || !cov || !covered || !excluded || !picked) {
        st = lyra_error(LYRA_ERR_OOM, "spatial cache: out of memory for retrieval over %d entries", n);
        goto done;
    }
    for (int64_t p = 0; p < P; p++) zmin[p] = INFINITY;
    int any = 0;
    for (int e = 0; e < n; e++)
        for (int64_t i = 0; i < hw4; i++) {
            float z;
            int64_t q = project(c->entries[e].points + 3 * i, w2c, Ks, ht, wt, &z);
            pix[(int64_t)e * hw4 + i] = q;
            zs[(int64_t)e * hw4 + i] = z;
            if (q >= 0) {
                any = 1;
                if (z < zmin[q]) zmin[q] = z;
            }
        }
    if (!any) goto done;
    for (int e = 0; e < n; e++)
        for (int64_t i = 0; i < hw4; i++) {
            int64_t q = pix[(int64_t)e * hw4 + i];
            if (q >= 0 && zs[(int64_t)e * hw4 + i] <= zmin[q] + LYRA_SCACHE_DEPTH_THRESHOLD) cov[(int64_t)e * P + q] = 1;
        }
    /* Pre-cover with the most recent frame (largest id, first on ties) when that id is > 0 (M:2778-2796). */
    int last = 0;
    for (int e = 1; e < n; e++)
        if (c->entries[e].frame_id > c->entries[last].frame_id) last = e;
    if (c->entries[last].frame_id > 0) {
        memcpy(covered, cov + (int64_t)last * P, (size_t)P);
        excluded[last] = 1;
    }
    int k = n_max < n ? n_max : n, n_picked = 0;
    for (int it = 0; it < k; it++) {
        int64_t best_count = -2;
        int best = 0;
        for (int e = 0; e < n; e++) {
            int64_t count = -1;
            if (!excluded[e]) {
                count = 0;
                const uint8_t *m = cov + (int64_t)e * P;
                for (int64_t q = 0; q < P; q++) count += m[q] & !covered[q];
            }
            if (count > best_count) {
                best_count = count;
                best = e;
            }
        }
        if (best_count <= 0) break;
        picked[n_picked++] = best;
        excluded[best] = 1;
        const uint8_t *m = cov + (int64_t)best * P;
        for (int64_t q = 0; q < P; q++) covered[q] |= m[q];
    }
    for (int i = 0; i < n_picked; i++) {
        const lyra_scache_entry *e = &c->entries[picked[n_picked - 1 - i]];
        out_latent[i] = e->latent_index;
        out_frame[i] = e->frame_id;
    }
    *n_out = n_picked;
done:
    free(pix);
    free(zs);
    free(zmin);
    free(cov);
    free(covered);
    free(excluded);
    free(picked);
    return st;
}
