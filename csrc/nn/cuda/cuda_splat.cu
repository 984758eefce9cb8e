// The Gaussian-splat rasterizer on the device (op gs_rasterize), the same arithmetic as the CPU reference
// (nn/cpu/cpu_splat.c) through nn/splat_math.h. Five launches on the backend's stream:
//   1. project: one thread per splat -> splat2d, and a count per touched 16×16 tile (atomics);
//   2. scan: one block turns the tile counts into list offsets (their total is read back: the one sync);
//   3. fill: every splat writes its (depth, index) key into each touched tile's list (slots by atomics, so the
//      order inside a list is arbitrary here ...);
//   4. sort: one block per tile sorts its list by key (bitonic, in shared memory when it fits) (... and the total
//      order (depth, index) makes the result independent of it: CPU and CUDA composite the same sequence);
//   5. raster: one block per tile, one thread per pixel, the tile's splats packed into shared memory 256 at a
//      time and composited front to back; a block stops once every pixel's transmittance is spent.
// 3DGS sorts all tiles at once with a device radix sort; per-tile bitonic sorts keep this file free of a sort
// library (the kernel-emulation build compiles it with the host compiler).
#include "cuda_internal.h"

#define SPLAT_FN static __host__ __device__ inline
#include "nn/splat_math.h"

namespace {

constexpr int SCAN_THREADS = 1024;
constexpr int SORT_THREADS = 256;
constexpr int SORT_SHARED_KEYS = 4096; /* 32 KiB of keys: one tile's list sorts in shared memory up to this */
constexpr int TILE_PIXELS = SPLAT_TILE * SPLAT_TILE;

__global__ void project_kernel(int64_t n, const float *means, const float *scales, const float *rotations,
                               const float *harmonics, const float *opacities, int sh_degree, lyra_splat_camera cam,
                               int width, int height, float cpx, float cpy, float cpz, int tiles_x, int tiles_y,
                               splat2d *sp, int *tile_count) {
    float campos[3] = {cpx, cpy, cpz};
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        splat2d g;
        splat_project(means, scales, rotations, harmonics, opacities, sh_degree, i, &cam, width, height, campos,
                      tiles_x, tiles_y, &g);
        sp[i] = g;
        if (g.radius > 0)
            for (int ty = g.y0; ty < g.y1; ty++)
                for (int tx = g.x0; tx < g.x1; tx++) atomicAdd(&tile_count[ty * tiles_x + tx], 1);
    }
}

/* off[t] = Σ_{u<t} count[u] for t in [0, n_tiles], one block of SCAN_THREADS: each thread sums a contiguous run,
 * the run sums are scanned in shared memory, then each thread writes its run's offsets. */
__global__ void scan_kernel(const int *count, int64_t *off, int n_tiles) {
    __shared__ int64_t sums[SCAN_THREADS];
    int tid = threadIdx.x, per = (n_tiles + SCAN_THREADS - 1) / SCAN_THREADS;
    int lo = tid * per, hi = lo + per < n_tiles ? lo + per : n_tiles;
    int64_t local = 0;
    for (int t = lo; t < hi; t++) local += count[t];
    sums[tid] = local;
    __syncthreads();
    for (int d = 1; d < SCAN_THREADS; d <<= 1) {
        int64_t v = tid >= d ? sums[tid - d] : 0;
        __syncthreads();
        sums[tid] += v;
        __syncthreads();
    }
    int64_t run = sums[tid] - local;
    for (int t = lo; t < hi; t++) {
        off[t] = run;
        run += count[t];
    }
    if (tid == SCAN_THREADS - 1) off[n_tiles] = sums[tid];
}

__global__ void fill_kernel(int64_t n, const splat2d *sp, int tiles_x, const int64_t *off, int *cursor,
                            uint64_t *keys) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const splat2d &g = sp[i];
        if (g.radius <= 0) continue;
        uint64_t key = splat_key(g.depth, (uint32_t)i);
        for (int ty = g.y0; ty < g.y1; ty++)
            for (int tx = g.x0; tx < g.x1; tx++) {
                int t = ty * tiles_x + tx;
                keys[off[t] + atomicAdd(&cursor[t], 1)] = key;
            }
    }
}

/* Ascending bitonic sort of a[0, n) by the whole block, for any n: the sequence is padded (virtually) to a power
 * of two with +inf, and every compare-exchange puts the smaller key at the lower index (the "flip" form: the
 * first step of each merge compares mirrored pairs), so a padded partner never moves and needs no storage. */
__device__ void bitonic_sort(uint64_t *a, int64_t n) {
    int64_t p2 = 1;
    while (p2 < n) p2 <<= 1;
    for (int64_t k = 2; k <= p2; k <<= 1) {
        for (int64_t s = k >> 1; s >= 1; s >>= 1) {
            for (int64_t t = threadIdx.x; t < p2 / 2; t += blockDim.x) {
                int64_t i = (t / s) * 2 * s + t % s;
                int64_t j = s == k >> 1 ? i ^ (k - 1) : i + s; /* the flip, then the half-cleaners */
                if (j < n && a[i] > a[j]) {
                    uint64_t v = a[i];
                    a[i] = a[j];
                    a[j] = v;
                }
            }
            __syncthreads();
        }
    }
}

__global__ void sort_kernel(const int64_t *off, uint64_t *keys) {
    __shared__ uint64_t buf[SORT_SHARED_KEYS];
    int64_t start = off[blockIdx.x], n = off[blockIdx.x + 1] - start;
    if (n <= 1) return;
    uint64_t *seg = keys + start;
    if (n > SORT_SHARED_KEYS) { /* a crowded tile: in place in global memory */
        bitonic_sort(seg, n);
        return;
    }
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) buf[i] = seg[i];
    __syncthreads();
    bitonic_sort(buf, n);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) seg[i] = buf[i];
}

__global__ void __launch_bounds__(TILE_PIXELS)
raster_kernel(const int64_t *off, const uint64_t *keys, const splat2d *sp, int width, int height, int tiles_x,
              float bg0, float bg1, float bg2, float *y) {
    __shared__ splat_packed batch[TILE_PIXELS];
    __shared__ int n_done;
    int tid = threadIdx.y * SPLAT_TILE + threadIdx.x;
    int px = blockIdx.x * SPLAT_TILE + threadIdx.x, py = blockIdx.y * SPLAT_TILE + threadIdx.y;
    int inside = px < width && py < height;
    int64_t t = (int64_t)blockIdx.y * tiles_x + blockIdx.x, start = off[t], end = off[t + 1];
    splat_pixel p;
    splat_pixel_init(&p);
    int done = !inside;
    float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
    for (int64_t b = start; b < end; b += TILE_PIXELS) {
        int cnt = end - b < TILE_PIXELS ? (int)(end - b) : TILE_PIXELS;
        if (tid < cnt) splat_pack(&sp[(uint32_t)keys[b + tid]], &batch[tid]); /* invisible: cut −1, skipped */
        if (tid == 0) n_done = 0;
        __syncthreads();
        for (int j = 0; j < cnt && !done; j++) done = splat_blend(&batch[j], fx, fy, &p);
        if (done) atomicAdd(&n_done, 1);
        __syncthreads();
        int all = n_done == TILE_PIXELS;
        __syncthreads(); /* everyone has read n_done and the batch before thread 0 starts the next one */
        if (all) break;
    }
    float bg[3] = {bg0, bg1, bg2};
    if (inside) splat_pixel_store(&p, bg, y + 5 * ((int64_t)py * width + px));
}

} // namespace

lyra_status cu_op_gs_rasterize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means, const lyra_tensor *scales,
                               const lyra_tensor *rotations, const lyra_tensor *harmonics,
                               const lyra_tensor *opacities, const lyra_splat_camera *cam) {
    cuda_state *st = cu_st(be);
    int height = (int)y->ne[0], width = (int)y->ne[1];
    int deg = harmonics->ne[2] == 1 ? 0 : harmonics->ne[2] == 4 ? 1 : 2;
    int tiles_x = (width + SPLAT_TILE - 1) / SPLAT_TILE, tiles_y = (height + SPLAT_TILE - 1) / SPLAT_TILE;
    int n_tiles = tiles_x * tiles_y;
    int64_t n = means->ne[0];
    float campos[3];
    splat_campos(cam->w2c, campos);
    /* one pool block: splats, tile counts, fill cursors, offsets (each part 256-byte aligned) */
    size_t a_sp = ((size_t)(n > 0 ? n : 1) * sizeof(splat2d) + 255) & ~(size_t)255;
    size_t a_cnt = ((size_t)n_tiles * sizeof(int) + 255) & ~(size_t)255;
    size_t a_off = (size_t)(n_tiles + 1) * sizeof(int64_t);
    char *work = (char *)cu_alloc(be, a_sp + 2 * a_cnt + a_off, "gs_rasterize splats and tiles");
    if (!work) return LYRA_ERR_OOM;
    splat2d *sp = (splat2d *)work;
    int *count = (int *)(work + a_sp), *cursor = (int *)(work + a_sp + a_cnt);
    int64_t *off = (int64_t *)(work + a_sp + 2 * a_cnt);
    lyra_status s = LYRA_OK;
    cudaError_t e = cudaMemsetAsync(count, 0, 2 * a_cnt, st->stream);
    if (e != cudaSuccess) s = cu_error(e, "gs_rasterize");
    if (s == LYRA_OK && n > 0) {
        cu_launch(project_kernel, dim3(cu_blocks(n, 256)), dim3(256), 0, st->stream, n, (const float *)means->data,
                  (const float *)scales->data, (const float *)rotations->data, (const float *)harmonics->data,
                  (const float *)opacities->data, deg, *cam, width, height, campos[0], campos[1], campos[2], tiles_x,
                  tiles_y, sp, count);
        e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "gs_rasterize project");
    }
    if (s == LYRA_OK) {
        cu_launch(scan_kernel, dim3(1), dim3(SCAN_THREADS), 0, st->stream, (const int *)count, off, n_tiles);
        e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "gs_rasterize scan");
    }
    int64_t total = 0;
    if (s == LYRA_OK) {
        e = cudaMemcpyAsync(&total, off + n_tiles, sizeof total, cudaMemcpyDeviceToHost, st->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream);
        if (e != cudaSuccess) s = cu_error(e, "gs_rasterize tile count");
    }
    uint64_t *keys = NULL;
    if (s == LYRA_OK && total > 0) {
        keys = (uint64_t *)cu_alloc(be, (size_t)total * sizeof *keys, "gs_rasterize tile lists");
        if (!keys) s = LYRA_ERR_OOM;
    }
    if (s == LYRA_OK && total > 0) {
        cu_launch(fill_kernel, dim3(cu_blocks(n, 256)), dim3(256), 0, st->stream, n, (const splat2d *)sp, tiles_x,
                  (const int64_t *)off, cursor, keys);
        e = cudaGetLastError();
        if (e == cudaSuccess) {
            cu_launch(sort_kernel, dim3((unsigned)n_tiles), dim3(SORT_THREADS), 0, st->stream, (const int64_t *)off,
                      keys);
            e = cudaGetLastError();
        }
        if (e != cudaSuccess) s = cu_error(e, "gs_rasterize binning");
    }
    if (s == LYRA_OK) {
        cu_launch(raster_kernel, dim3((unsigned)tiles_x, (unsigned)tiles_y), dim3(SPLAT_TILE, SPLAT_TILE), 0,
                  st->stream, (const int64_t *)off, (const uint64_t *)keys, (const splat2d *)sp, width, height,
                  tiles_x, cam->background[0], cam->background[1], cam->background[2], (float *)y->data);
        e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "gs_rasterize raster");
    }
    cu_free(be, keys); /* stream-ordered reuse: later users of the blocks run after these kernels */
    cu_free(be, work);
    return s;
}
