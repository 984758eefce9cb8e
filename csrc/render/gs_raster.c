/* CPU reference Gaussian-splat rasterizer; the model is in gs_raster.h. */
#include "render/gs_raster.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TILE 16
#define EPS2D 0.3f
#define ALPHA_MIN (1.0f / 255.0f)
#define ALPHA_MAX 0.999f
#define T_MIN 1e-4f

/* One projected splat. radius 0 = culled. */
typedef struct splat2d {
    float mx, my;            /* mean in pixels */
    float ca, cb, cc;        /* conic (inverse 2D covariance) [[ca, cb], [cb, cc]] */
    float depth, opacity;
    float rgb[3];
    int x0, y0, x1, y1;      /* touched tiles, [x0, x1) × [y0, y1) */
    int radius;
} splat2d;

typedef struct entry { float depth; int32_t idx; } entry;

static int team(int threads) {
#ifdef _OPENMP
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
    return 1;
#endif
}

static int by_depth(const void *pa, const void *pb) {
    const entry *a = pa, *b = pb;
    if (a->depth != b->depth) return a->depth < b->depth ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* 3DGS SH evaluation up to degree 2 (gaussian-splatting utils/sh_utils.py constants), + 0.5, clamped at 0. */
static void sh_color(const float *sh, int deg, const float *dir, float *rgb) {
    const float C0 = 0.28209479177387814f, C1 = 0.4886025119029199f;
    const float C2[5] = {1.0925484305920792f, -1.0925484305920792f, 0.31539156525252005f, -1.0925484305920792f,
                         0.5462742152960396f};
    int d_sh = (deg + 1) * (deg + 1);
    float x = dir[0], y = dir[1], z = dir[2];
    float b[9] = {C0, -C1 * y, C1 * z, -C1 * x, C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * z * z - x * x - y * y),
                  C2[3] * x * z, C2[4] * (x * x - y * y)};
    for (int c = 0; c < 3; c++) {
        float v = 0;
        for (int k = 0; k < d_sh; k++) v += b[k] * sh[c * d_sh + k];
        v += 0.5f;
        rgb[c] = v > 0 ? v : 0;
    }
}

static void project(const lyra_gs_scene *s, const lyra_gs_camera *cam, int64_t i, const float *campos, int tiles_x,
                    int tiles_y, splat2d *o) {
    memset(o, 0, sizeof *o);
    const float *W = cam->w2c, *m = s->means + 3 * i;
    float t[3];
    for (int a = 0; a < 3; a++) t[a] = W[4 * a] * m[0] + W[4 * a + 1] * m[1] + W[4 * a + 2] * m[2] + W[4 * a + 3];
    if (!(t[2] >= cam->near_plane)) return;
    /* Σ = R S² Rᵀ from the normalised quaternion (w, x, y, z) */
    const float *q = s->rotations + 4 * i;
    float qn = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (!(qn > 0)) return;
    float w = q[0] / qn, x = q[1] / qn, y = q[2] / qn, z = q[3] / qn;
    float R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                  2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                  2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)};
    const float *sc = s->scales + 3 * i;
    float M[9]; /* (W_R · R) · S */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            float v = W[4 * a] * R[b] + W[4 * a + 1] * R[3 + b] + W[4 * a + 2] * R[6 + b];
            M[3 * a + b] = v * sc[b];
        }
    float C[9]; /* camera-space covariance M Mᵀ */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) C[3 * a + b] = M[3 * a] * M[3 * b] + M[3 * a + 1] * M[3 * b + 1] + M[3 * a + 2] * M[3 * b + 2];
    float fx = cam->K[0], fy = cam->K[4], cx = cam->K[2], cy = cam->K[5];
    float limx = 1.3f * 0.5f * (float)cam->width / fx, limy = 1.3f * 0.5f * (float)cam->height / fy;
    float rz = 1.0f / t[2];
    float tx = t[2] * fminf(limx, fmaxf(-limx, t[0] * rz)), ty = t[2] * fminf(limy, fmaxf(-limy, t[1] * rz));
    float J[6] = {fx * rz, 0, -fx * tx * rz * rz, 0, fy * rz, -fy * ty * rz * rz};
    float JC[6];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) JC[3 * a + b] = J[3 * a] * C[b] + J[3 * a + 1] * C[3 + b] + J[3 * a + 2] * C[6 + b];
    float c00 = JC[0] * J[0] + JC[1] * J[1] + JC[2] * J[2] + EPS2D;
    float c01 = JC[0] * J[3] + JC[1] * J[4] + JC[2] * J[5];
    float c11 = JC[3] * J[3] + JC[4] * J[4] + JC[5] * J[5] + EPS2D;
    float det = c00 * c11 - c01 * c01;
    if (!(det > 0)) return;
    float mid = 0.5f * (c00 + c11), lam = mid + sqrtf(fmaxf(0.1f, mid * mid - det));
    int radius = (int)ceilf(3.0f * sqrtf(lam));
    o->mx = fx * t[0] * rz + cx;
    o->my = fy * t[1] * rz + cy;
    o->x0 = (int)fminf((float)tiles_x, fmaxf(0.0f, floorf((o->mx - radius) / TILE)));
    o->x1 = (int)fminf((float)tiles_x, fmaxf(0.0f, ceilf((o->mx + radius) / TILE)));
    o->y0 = (int)fminf((float)tiles_y, fmaxf(0.0f, floorf((o->my - radius) / TILE)));
    o->y1 = (int)fminf((float)tiles_y, fmaxf(0.0f, ceilf((o->my + radius) / TILE)));
    if (o->x0 >= o->x1 || o->y0 >= o->y1) return;
    o->ca = c11 / det, o->cb = -c01 / det, o->cc = c00 / det;
    o->depth = t[2];
    o->opacity = s->opacities[i];
    float dir[3] = {m[0] - campos[0], m[1] - campos[1], m[2] - campos[2]};
    float dn = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
    for (int a = 0; a < 3; a++) dir[a] = dn > 0 ? dir[a] / dn : 0;
    sh_color(s->harmonics + (size_t)i * 3 * (size_t)((s->sh_degree + 1) * (s->sh_degree + 1)), s->sh_degree, dir,
             o->rgb);
    o->radius = radius;
}

/* One tile's splats packed front to back (the per-pixel loop then reads memory in order): mean, conic, the
 * exponent beyond which α < 1/255 (ln(255·o), so no exp is taken there), opacity, colour, depth. */
typedef struct packed { float mx, my, ca, cb, cc, cut, o, r, g, b, z; } packed;

static int render_tile(const splat2d *sp, const entry *list, int64_t count, const lyra_gs_camera *cam, int tx,
                       int ty, float *rgb, float *alpha, float *depth) {
    packed *pk = malloc(sizeof *pk * (size_t)(count > 0 ? count : 1));
    if (!pk) return -1;
    int64_t m = 0;
    for (int64_t k = 0; k < count; k++) {
        const splat2d *g = sp + list[k].idx;
        if (!(g->opacity * 255.0f >= 1.0f)) continue; /* can never reach α >= 1/255 */
        /* the cut-off has a margin: exactly at the edge the α test below decides, as without it */
        pk[m++] = (packed){g->mx, g->my, g->ca, g->cb, g->cc, logf(255.0f * g->opacity) + 1e-3f, g->opacity,
                           g->rgb[0], g->rgb[1], g->rgb[2], g->depth};
    }
    int x0 = tx * TILE, y0 = ty * TILE;
    int x1 = x0 + TILE < cam->width ? x0 + TILE : cam->width, y1 = y0 + TILE < cam->height ? y0 + TILE : cam->height;
    for (int py = y0; py < y1; py++)
        for (int px = x0; px < x1; px++) {
            float T = 1.0f, c[3] = {0, 0, 0}, d = 0;
            float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
            for (int64_t k = 0; k < m; k++) {
                const packed *g = pk + k;
                float dx = g->mx - fx, dy = g->my - fy;
                float sigma = 0.5f * (g->ca * dx * dx + g->cc * dy * dy) + g->cb * dx * dy;
                if (sigma < 0 || sigma > g->cut) continue;
                float a = fminf(ALPHA_MAX, g->o * expf(-sigma));
                if (a < ALPHA_MIN) continue; /* at the cut-off's rounding edge */
                float next = T * (1.0f - a);
                if (next <= T_MIN) break;
                float w = a * T;
                c[0] += g->r * w, c[1] += g->g * w, c[2] += g->b * w;
                d += g->z * w;
                T = next;
            }
            size_t o = (size_t)py * (size_t)cam->width + (size_t)px;
            for (int ch = 0; ch < 3; ch++) rgb[3 * o + ch] = c[ch] + T * cam->background[ch];
            if (alpha) alpha[o] = 1.0f - T;
            if (depth) depth[o] = d;
        }
    free(pk);
    return 0;
}

lyra_status lyra_gs_render(const lyra_gs_scene *s, const lyra_gs_camera *cam, float *rgb, float *alpha,
                           float *depth, int threads) {
    if (cam->width < 1 || cam->height < 1 || cam->width > 16384 || cam->height > 16384)
        return lyra_error(LYRA_ERR_ARG, "render: size %dx%d is not allowed (1 to 16384 pixels a side)", cam->width,
                          cam->height);
    if (s->sh_degree < 0 || s->sh_degree > 2)
        return lyra_error(LYRA_ERR_ARG, "render: SH degree %d is not supported (0, 1 or 2)", s->sh_degree);
    if (!(cam->K[0] > 0) || !(cam->K[4] > 0))
        return lyra_error(LYRA_ERR_ARG, "render: the focal lengths must be positive (K[0,0] = %g, K[1,1] = %g)",
                          (double)cam->K[0], (double)cam->K[4]);
    int tiles_x = (cam->width + TILE - 1) / TILE, tiles_y = (cam->height + TILE - 1) / TILE;
    int64_t n_tiles = (int64_t)tiles_x * tiles_y, n = s->n;
    /* camera centre = −Rᵀ t */
    const float *W = cam->w2c;
    float campos[3];
    for (int a = 0; a < 3; a++) campos[a] = -(W[a] * W[3] + W[4 + a] * W[7] + W[8 + a] * W[11]);
    splat2d *sp = malloc(sizeof *sp * (size_t)(n > 0 ? n : 1));
    int64_t *offs = calloc((size_t)n_tiles + 1, sizeof *offs);
    if (!sp || !offs) {
        free(sp);
        free(offs);
        return lyra_error(LYRA_ERR_OOM, "render: out of memory for %lld splats", (long long)n);
    }
#pragma omp parallel for schedule(static) if (n > 4096) num_threads(team(threads))
    for (int64_t i = 0; i < n; i++) project(s, cam, i, campos, tiles_x, tiles_y, &sp[i]);
    for (int64_t i = 0; i < n; i++)
        if (sp[i].radius > 0)
            for (int y = sp[i].y0; y < sp[i].y1; y++)
                for (int x = sp[i].x0; x < sp[i].x1; x++) offs[(int64_t)y * tiles_x + x + 1]++;
    for (int64_t t = 0; t < n_tiles; t++) offs[t + 1] += offs[t];
    int64_t total = offs[n_tiles];
    entry *list = malloc(sizeof *list * (size_t)(total > 0 ? total : 1));
    int64_t *fill = malloc(sizeof *fill * (size_t)n_tiles);
    if (!list || !fill) {
        free(sp), free(offs), free(list), free(fill);
        return lyra_error(LYRA_ERR_OOM, "render: out of memory for %lld tile entries", (long long)total);
    }
    memcpy(fill, offs, sizeof *fill * (size_t)n_tiles);
    for (int64_t i = 0; i < n; i++) /* in index order, so equal depths keep the index order after the sort */
        if (sp[i].radius > 0)
            for (int y = sp[i].y0; y < sp[i].y1; y++)
                for (int x = sp[i].x0; x < sp[i].x1; x++) {
                    int64_t t = (int64_t)y * tiles_x + x;
                    list[fill[t]++] = (entry){sp[i].depth, (int32_t)i};
                }
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(team(threads)) reduction(| : failed)
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t a = offs[t], c = offs[t + 1] - offs[t];
        qsort(list + a, (size_t)c, sizeof *list, by_depth);
        failed |= render_tile(sp, list + a, c, cam, (int)(t % tiles_x), (int)(t / tiles_x), rgb, alpha, depth) != 0;
    }
    free(sp), free(offs), free(list), free(fill);
    return failed ? lyra_error(LYRA_ERR_OOM, "render: out of memory for a tile's splats") : LYRA_OK;
}
