/* CPU reference of the Gaussian-splat rasterizer (op gs_rasterize); the model and its arithmetic are in
 * nn/splat_math.h, shared with the CUDA kernels (nn/cuda/cuda_splat.cu). Projection in parallel over splats,
 * binning in index order, then each tile sorted by (depth, index) and composited in parallel over tiles. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/cpu/cpu_internal.h"
#include "nn/splat_math.h"

static int by_key(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

/* One tile: its entries sorted by key, packed front to back (the per-pixel loop then reads memory in order), then
 * every pixel composited. -1 when the packing buffer cannot be allocated. */
static int render_tile(const splat2d *sp, uint64_t *keys, int64_t count, const lyra_splat_camera *cam, int width,
                       int height, int tx, int ty, float *y) {
    qsort(keys, (size_t)count, sizeof *keys, by_key);
    splat_packed *pk = malloc(sizeof *pk * (size_t)(count > 0 ? count : 1));
    if (!pk) return -1;
    int64_t m = 0;
    for (int64_t k = 0; k < count; k++) m += splat_pack(sp + (uint32_t)keys[k], pk + m); /* invisible ones: dropped */
    int x0 = tx * SPLAT_TILE, y0 = ty * SPLAT_TILE;
    int x1 = x0 + SPLAT_TILE < width ? x0 + SPLAT_TILE : width, y1 = y0 + SPLAT_TILE < height ? y0 + SPLAT_TILE : height;
    for (int py = y0; py < y1; py++)
        for (int px = x0; px < x1; px++) {
            splat_pixel p;
            splat_pixel_init(&p);
            float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
            for (int64_t k = 0; k < m; k++)
                if (splat_blend(pk + k, fx, fy, &p)) break;
            splat_pixel_store(&p, cam->background, y + 5 * ((size_t)py * (size_t)width + (size_t)px));
        }
    free(pk);
    return 0;
}

lyra_status cpu_gs_rasterize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means, const lyra_tensor *scales,
                             const lyra_tensor *rotations, const lyra_tensor *harmonics, const lyra_tensor *opacities,
                             const lyra_splat_camera *cam) {
    int height = (int)y->ne[0], width = (int)y->ne[1];
    int deg = harmonics->ne[2] == 1 ? 0 : harmonics->ne[2] == 4 ? 1 : 2;
    int tiles_x = (width + SPLAT_TILE - 1) / SPLAT_TILE, tiles_y = (height + SPLAT_TILE - 1) / SPLAT_TILE;
    int64_t n_tiles = (int64_t)tiles_x * tiles_y, n = means->ne[0];
    int threads = be->n_threads > 0 ? be->n_threads : 1;
    float campos[3];
    splat_campos(cam->w2c, campos);
    splat2d *sp = malloc(sizeof *sp * (size_t)(n > 0 ? n : 1));
    int64_t *offs = calloc((size_t)n_tiles + 1, sizeof *offs);
    if (!sp || !offs) {
        free(sp);
        free(offs);
        return lyra_error(LYRA_ERR_OOM, "gs_rasterize: out of memory for %lld splats", (long long)n);
    }
    const float *m = means->data, *s = scales->data, *r = rotations->data, *h = harmonics->data, *o = opacities->data;
#pragma omp parallel for schedule(static) if (n > 4096) num_threads(threads)
    for (int64_t i = 0; i < n; i++)
        splat_project(m, s, r, h, o, deg, i, cam, width, height, campos, tiles_x, tiles_y, &sp[i]);
    for (int64_t i = 0; i < n; i++)
        if (sp[i].radius > 0)
            for (int ty = sp[i].y0; ty < sp[i].y1; ty++)
                for (int tx = sp[i].x0; tx < sp[i].x1; tx++) offs[(int64_t)ty * tiles_x + tx + 1]++;
    for (int64_t t = 0; t < n_tiles; t++) offs[t + 1] += offs[t];
    int64_t total = offs[n_tiles];
    uint64_t *keys = malloc(sizeof *keys * (size_t)(total > 0 ? total : 1));
    int64_t *fill = malloc(sizeof *fill * (size_t)n_tiles);
    if (!keys || !fill) {
        free(sp), free(offs), free(keys), free(fill);
        return lyra_error(LYRA_ERR_OOM, "gs_rasterize: out of memory for %lld tile entries", (long long)total);
    }
    memcpy(fill, offs, sizeof *fill * (size_t)n_tiles);
    for (int64_t i = 0; i < n; i++)
        if (sp[i].radius > 0)
            for (int ty = sp[i].y0; ty < sp[i].y1; ty++)
                for (int tx = sp[i].x0; tx < sp[i].x1; tx++) {
                    int64_t t = (int64_t)ty * tiles_x + tx;
                    keys[fill[t]++] = splat_key(sp[i].depth, (uint32_t)i);
                }
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) reduction(| : failed)
    for (int64_t t = 0; t < n_tiles; t++)
        failed |= render_tile(sp, keys + offs[t], offs[t + 1] - offs[t], cam, width, height, (int)(t % tiles_x),
                              (int)(t / tiles_x), y->data) != 0;
    free(sp), free(offs), free(keys), free(fill);
    return failed ? lyra_error(LYRA_ERR_OOM, "gs_rasterize: out of memory for a tile's splats") : LYRA_OK;
}
