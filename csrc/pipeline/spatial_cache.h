/* Spatial memory: upstream's Sparse3DCache (upstream AR:469-677, M:1955-1999, M:2646-2849, M:2489-2849) in the form the
 * autoregressive loop uses it (downsample 4, values stored, max-coverage retrieval from one target view).
 *
 * An entry keeps, for one past frame: its world points from the depth subsampled every 4th row and column
 * (H4 = ceil(H/4), W4 = ceil(W/4)) with K scaled by 1/4, zero where the depth is not > 0; its w2c and K; its frame id
 * (= latent index at inference). The full-resolution depth, the correspondence warp's source (upstream M:1601-1822,
 * FW), is kept by the caller where the warp runs (the AR driver: in the device's memory).
 *
 * Retrieval (upstream M:1955-1999, M:2646-2849) projects every stored point, the zero points of invalid pixels included
 * (quirk docs/REFERENCES.md#upstream-quirks-kept-on-purpose), into the target camera at 1/4 resolution, rounds to
 * pixels half-to-even, keeps per pixel the points within 0.1 of the nearest one, pre-covers the pixels of the most
 * recent frame (largest frame id, when > 0) and then picks greedily the entry that covers the most new pixels (ties to
 * the oldest), at most n_max times. The result is returned in reverse pick order (the best pick last), as upstream
 * returns it. */
#ifndef LYRA_PIPELINE_SPATIAL_CACHE_H
#define LYRA_PIPELINE_SPATIAL_CACHE_H

#include <stdint.h>

#include "lyra2.h"

#define LYRA_SCACHE_DOWNSAMPLE 4
#define LYRA_SCACHE_DEPTH_THRESHOLD 0.1f

typedef struct lyra_scache_entry {
    int64_t frame_id;
    int64_t latent_index;
    float *points;   /* (H4, W4, 3) world points */
    float w2c[16];   /* (4, 4) */
    float K[9];      /* (3, 3) */
} lyra_scache_entry;

typedef struct lyra_scache {
    int height, width;           /* full-resolution size of every entry */
    int n, capacity;
    lyra_scache_entry *entries;  /* insertion order */
} lyra_scache;

/* An empty cache for H×W depths. */
lyra_status lyra_scache_init(lyra_scache *c, int height, int width);
void lyra_scache_free(lyra_scache *c);

/* Appends an entry. depth (H, W), w2c (4, 4), K (3, 3). LYRA_ERR_ARG when a camera is singular. */
lyra_status lyra_scache_add(lyra_scache *c, const float *depth, const float *w2c, const float *K, int64_t latent_index,
                            int64_t frame_id);
/* The same from depth[::4, ::4] alone, ds (H4, W4): all an entry reads of its depth (the AR driver keeps the full
 * depth in the device's memory and brings only these points down). */
lyra_status lyra_scache_add_sub(lyra_scache *c, const float *ds, const float *w2c, const float *K, int64_t latent_index,
                                int64_t frame_id);

/* Index of the most recent entry with this frame id, or -1 (upstream get_rgbd_by_frame_id). */
int lyra_scache_find(const lyra_scache *c, int64_t frame_id);

/* Max-coverage retrieval for the target camera w2c (4, 4), K (3, 3) of an H×W image (the cache's size).
 * out_latent, out_frame: (n_max) filled with *n_out <= n_max entries in upstream's returned order. */
lyra_status lyra_scache_retrieve(const lyra_scache *c, const float *w2c, const float *K, int n_max,
                                 int64_t *out_latent, int64_t *out_frame, int *n_out);

#endif
