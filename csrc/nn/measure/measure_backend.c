/* The measuring backend (nn/measure/measure.h): a table of ops that count instead of computing, and address
 * ranges that are reserved but never committed. */
#include "nn/measure/measure.h"
#include "nn/measure/warp_device_temps.h"

#include <stdlib.h>
#include <sys/mman.h>

/* Address space reserved for be->ops->alloc: larger than any device this plans for. */
#define MEASURE_ALLOC_SPACE ((size_t)1 << 40)

typedef struct measure_block {
    char *ptr;
    size_t bytes;
} measure_block;

typedef struct measure_state {
    lyra_measure_stats stats;
    char *space;            /* MEASURE_ALLOC_SPACE reserved bytes */
    size_t space_used;      /* bump pointer: released blocks are not reused (the live count is what matters) */
    measure_block *blocks;  /* live allocations, for the byte count on release */
    int n_blocks, cap_blocks;
} measure_state;

static void *reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static measure_state *state(lyra_backend *be) { return be->impl; }

static void *measure_alloc(lyra_backend *be, size_t bytes) {
    measure_state *s = state(be);
    size_t rounded = (bytes + 255) & ~(size_t)255;
    if (!rounded) rounded = 256;
    if (rounded > MEASURE_ALLOC_SPACE - s->space_used) {
        lyra_error(LYRA_ERR_OOM, "measure backend: %zu bytes exceed the %zu reserved", bytes, MEASURE_ALLOC_SPACE);
        return NULL;
    }
    if (s->n_blocks == s->cap_blocks) {
        int cap = s->cap_blocks ? 2 * s->cap_blocks : 64;
        measure_block *b = realloc(s->blocks, (size_t)cap * sizeof *b);
        if (!b) {
            lyra_error(LYRA_ERR_OOM, "measure backend: out of host memory");
            return NULL;
        }
        s->blocks = b;
        s->cap_blocks = cap;
    }
    char *p = s->space + s->space_used;
    s->space_used += rounded;
    s->blocks[s->n_blocks++] = (measure_block){p, bytes};
    s->stats.alloc_live += bytes;
    if (s->stats.alloc_live > s->stats.alloc_peak) s->stats.alloc_peak = s->stats.alloc_live;
    return p;
}

static void measure_release(lyra_backend *be, void *ptr) {
    measure_state *s = state(be);
    for (int i = 0; i < s->n_blocks; i++)
        if (s->blocks[i].ptr == ptr) {
            s->stats.alloc_live -= s->blocks[i].bytes;
            s->blocks[i] = s->blocks[--s->n_blocks];
            return;
        }
}

static void measure_destroy(lyra_backend *be) {
    measure_state *s = state(be);
    if (!s) return;
    if (s->space) munmap(s->space, MEASURE_ALLOC_SPACE);
    free(s->blocks);
    free(s);
    be->impl = NULL;
}

static lyra_status measure_upload(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *src) {
    (void)src;
    state(be)->stats.upload_bytes += lyra_tensor_nbytes(dst);
    state(be)->stats.n_upload++;
    return LYRA_OK;
}

static lyra_status measure_download(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *src) {
    (void)dst;
    state(be)->stats.download_bytes += lyra_tensor_nbytes(src);
    state(be)->stats.n_download++;
    return LYRA_OK;
}

static lyra_status measure_sync(lyra_backend *be) {
    (void)be;
    return LYRA_OK;
}

/* An overlapped upload counts as an upload; the wait orders nothing on a backend that runs nothing. */
static lyra_status measure_upload_async(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *src, int ticket) {
    (void)ticket;
    return measure_upload(be, dst, src);
}

static lyra_status measure_upload_wait(lyra_backend *be, int ticket) {
    (void)be;
    (void)ticket;
    return LYRA_OK;
}

/* Host memory is real host memory (it is the source of the counted uploads, never device memory). */
static void *measure_host_alloc(lyra_backend *be, size_t bytes) {
    (void)be;
    return malloc(bytes ? bytes : 1);
}

static void measure_host_release(lyra_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

/* One counted op, `flops` floating-point operations. */
static lyra_status count(lyra_backend *be, double flops) {
    state(be)->stats.n_ops++;
    state(be)->stats.flops += flops;
    return LYRA_OK;
}

static double rows_of(const lyra_tensor *y) { return (double)lyra_tensor_numel(y) / (double)y->ne[y->ndim - 1]; }

static lyra_status m_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    (void)y; (void)x;
    return count(be, 0);
}
static lyra_status m_fill(lyra_backend *be, lyra_tensor *y, float v) {
    (void)y; (void)v;
    return count(be, 0);
}
static lyra_status m_concat(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim) {
    (void)y; (void)xs; (void)n; (void)dim;
    return count(be, 0);
}
static lyra_status m_pad(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *p, lyra_pad_mode md) {
    (void)y; (void)x; (void)p; (void)md;
    return count(be, 0);
}
static lyra_status m_patch(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                           lyra_patch_order o) {
    (void)y; (void)x; (void)kt; (void)kh; (void)kw; (void)o;
    return count(be, 0);
}
static lyra_status m_embedding(lyra_backend *be, lyra_tensor *y, const lyra_tensor *t, const lyra_tensor *ids) {
    (void)y; (void)t; (void)ids;
    return count(be, 0);
}
static lyra_status m_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                            const lyra_tensor *b) {
    (void)x; (void)b;
    return count(be, 2.0 * rows_of(y) * (double)w->ne[0] * (double)w->ne[1]);
}
static lyra_status m_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                const lyra_tensor *b, lyra_act act) {
    (void)act;
    return m_linear(be, y, x, w, b);
}
static lyra_status m_matmul(lyra_backend *be, lyra_tensor *c, const lyra_tensor *a, const lyra_tensor *b, int tb,
                            float alpha) {
    (void)b; (void)tb; (void)alpha;
    return count(be, 2.0 * (double)lyra_tensor_numel(c) * (double)a->ne[a->ndim - 1]);
}
static lyra_status m_quantize_fp8_rows(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x) {
    (void)q; (void)s; (void)x;
    return count(be, 0);
}
static lyra_status m_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                                const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b) {
    (void)q; (void)s; (void)ws; (void)b;
    return count(be, 2.0 * rows_of(y) * (double)w8->ne[0] * (double)w8->ne[1]);
}
/* q/o (B, Lq, H, D), k/v (B, Lk, H, D): QKᵀ and PV, 2·2·B·H·Lq·Lk·D. */
static lyra_status m_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                               const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *mask, float scale) {
    (void)o; (void)v; (void)bias; (void)mask; (void)scale;
    return count(be, 4.0 * (double)lyra_tensor_numel(q) * (double)k->ne[1]);
}
static lyra_status m_rms(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w, float e) {
    (void)y; (void)x; (void)w; (void)e;
    return count(be, 0);
}
static lyra_status m_ln(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                        const lyra_tensor *b, float e) {
    (void)y; (void)x; (void)w; (void)b; (void)e;
    return count(be, 0);
}
static lyra_status m_gn(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int g, const lyra_tensor *w,
                        const lyra_tensor *b, float e) {
    (void)y; (void)x; (void)g; (void)w; (void)b; (void)e;
    return count(be, 0);
}
static lyra_status m_scalar(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float s) {
    (void)y; (void)x; (void)s;
    return count(be, 0);
}
static lyra_status m_unary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act a) {
    (void)y; (void)x; (void)a;
    return count(be, 0);
}
static lyra_status m_glu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act) {
    (void)y; (void)a; (void)g; (void)act;
    return count(be, 0);
}
static lyra_status m_binary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b) {
    (void)y; (void)a; (void)b;
    return count(be, 0);
}
static lyra_status m_scale(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float al, float be_) {
    (void)y; (void)x; (void)al; (void)be_;
    return count(be, 0);
}
static lyra_status m_ternary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *a,
                             const lyra_tensor *b) {
    (void)y; (void)x; (void)a; (void)b;
    return count(be, 0);
}
static lyra_status m_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves) {
    (void)y; (void)x; (void)octaves;
    return count(be, 0);
}
static lyra_status m_rope(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *ang,
                          lyra_rope_mode md, int ns) {
    (void)y; (void)x; (void)ang; (void)md; (void)ns;
    return count(be, 0);
}
/* Convolutions: 2 · outputs · (in-channels · kernel volume) with w (Cout, Cin, k...). */
static double conv_flops(const lyra_tensor *y, const lyra_tensor *w) {
    double k = 1;
    for (int i = 1; i < w->ndim; i++) k *= (double)w->ne[i];
    return 2.0 * (double)lyra_tensor_numel(y) * k;
}
static lyra_status m_conv2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                            const lyra_tensor *b, const lyra_conv2d_params *p) {
    (void)x; (void)b; (void)p;
    return count(be, conv_flops(y, w));
}
static lyra_status m_conv3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                            const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p) {
    (void)x; (void)b; (void)prefix; (void)p;
    return count(be, conv_flops(y, w));
}
/* Transposed: every input pixel scatters Cout·k·k products (w is (Cin, Cout, k, k)). */
static lyra_status m_convt2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             const lyra_tensor *b, int stride, int padding) {
    (void)y; (void)b; (void)stride; (void)padding;
    return count(be, 2.0 * (double)lyra_tensor_numel(x) * (double)w->ne[1] * (double)w->ne[2] * (double)w->ne[3]);
}
static lyra_status m_up2x(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    (void)y; (void)x;
    return count(be, 0);
}
static lyra_status m_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p) {
    (void)y; (void)x; (void)p;
    return count(be, 0);
}
static lyra_status m_pool3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw) {
    (void)y; (void)x; (void)kt; (void)kh; (void)kw;
    return count(be, 0);
}
/* A render is not part of any measured network: counted with no FLOPs (the splat count sets its cost). */
static lyra_status m_gs_rasterize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means,
                                  const lyra_tensor *scales, const lyra_tensor *rotations,
                                  const lyra_tensor *harmonics, const lyra_tensor *opacities,
                                  const lyra_splat_camera *cam) {
    (void)y; (void)means; (void)scales; (void)rotations; (void)harmonics; (void)opacities; (void)cam;
    return count(be, 0);
}

/* The warp builds a network's inputs, it is no part of one: counted with no FLOPs. Planned for the GPU, it records
 * the device temporaries the CUDA kernel takes from its pool (nn/measure/warp_device_temps.h: the source block, then
 * the canvases of one sub-batch, both released at the end), so a plan that includes a warp sees its peak; the CPU
 * reference's scratch is host memory and is not recorded. */
static lyra_status m_warp_forward(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask,
                                  lyra_tensor *out_depth, const lyra_tensor *image, const lyra_tensor *depth,
                                  const lyra_warp_params *p) {
    (void)out_image; (void)out_mask; (void)out_depth; (void)depth;
    if (be->device == LYRA_DEVICE_CUDA) {
        lyra_warp_device_temps t =
            lyra_warp_device_temps_of((int)image->ne[0], (int)image->ne[1], (int)image->ne[2], p->n_targets);
        void *source = measure_alloc(be, t.source_bytes);
        if (!source) return LYRA_ERR_OOM;
        void *canvas = measure_alloc(be, t.canvas_bytes);
        if (!canvas) {
            measure_release(be, source);
            return LYRA_ERR_OOM;
        }
        measure_release(be, canvas);
        measure_release(be, source);
    }
    return count(be, 0);
}

/* The chunk-input ops build a network's inputs, they are no part of one: counted with no FLOPs. */
static lyra_status m_rays(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p) {
    (void)y; (void)height; (void)width; (void)p;
    return count(be, 0);
}

static lyra_status m_to_u8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode) {
    (void)y; (void)x; (void)mode;
    return count(be, 0);
}

static lyra_status m_minmax(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev) {
    (void)mm; (void)x; (void)prev;
    return count(be, 0);
}

static lyra_status m_range_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm,
                                float eps) {
    (void)y; (void)x; (void)mm; (void)eps;
    return count(be, 0);
}

/* The samplers' elementwise updates run beside the networks, no part of one: counted with no FLOPs. */
static lyra_status m_latent_update(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                                   const lyra_latent_update *p) {
    (void)y; (void)x; (void)n; (void)p;
    return count(be, 0);
}

static lyra_status m_u8_pixels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_u8_pixels_params *p) {
    (void)y; (void)x; (void)p;
    return count(be, 0);
}

static lyra_status m_fill_random(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r) {
    (void)y; (void)r;
    return count(be, 0);
}

/* DA3's merge and the depth resize run beside the network's layers: counted with no FLOPs, as the prep ops. */
static lyra_status m_da3_merge(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                               lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor) {
    (void)stats; (void)depth; (void)conf; (void)metric; (void)sky; (void)metric_factor;
    return count(be, 0);
}

static lyra_status m_depth_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor) {
    (void)y; (void)x; (void)divisor;
    return count(be, 0);
}

static const lyra_backend_ops measure_ops = {
    .name = "measure",
    .destroy = measure_destroy,
    .alloc = measure_alloc,
    .release = measure_release,
    .upload = measure_upload,
    .download = measure_download,
    .synchronize = measure_sync,
    .copy = m_copy,
    .fill = m_fill,
    .concat = m_concat,
    .pad = m_pad,
    .patchify = m_patch,
    .unpatchify = m_patch,
    .embedding = m_embedding,
    .linear = m_linear,
    .linear_act = m_linear_act,
    .matmul = m_matmul,
    .attention = m_attention,
    .quantize_fp8_rows = m_quantize_fp8_rows,
    .linear_fp8 = m_linear_fp8,
    .rms_norm = m_rms,
    .layer_norm = m_ln,
    .l2norm_channels = m_ln,
    .group_norm = m_gn,
    .softmax = m_scalar,
    .unary = m_unary,
    .glu = m_glu,
    .add = m_binary,
    .mul = m_binary,
    .scale = m_scale,
    .modulate = m_ternary,
    .gate = m_ternary,
    .rope = m_rope,
    .sincos = m_sincos,
    .conv2d = m_conv2d,
    .conv3d = m_conv3d,
    .conv_transpose2d = m_convt2d,
    .upsample_nearest2x = m_up2x,
    .resize = m_resize,
    .avg_pool3d = m_pool3d,
    .gs_rasterize = m_gs_rasterize,
    .upload_async = measure_upload_async,
    .upload_wait = measure_upload_wait,
    .host_alloc = measure_host_alloc,
    .host_release = measure_host_release,
    .warp_forward = m_warp_forward,
    .rays = m_rays,
    .to_u8 = m_to_u8,
    .minmax = m_minmax,
    .range_norm = m_range_norm,
    .latent_update = m_latent_update,
    .u8_pixels = m_u8_pixels,
    .fill_random = m_fill_random,
    .da3_merge = m_da3_merge,
    .depth_resize = m_depth_resize,
};

lyra_status lyra_backend_measure_init(lyra_backend *be, lyra_device device) {
    memset(be, 0, sizeof *be);
    measure_state *s = calloc(1, sizeof *s);
    if (!s) return lyra_error(LYRA_ERR_OOM, "measure backend: out of host memory");
    s->space = reserve(MEASURE_ALLOC_SPACE);
    if (!s->space) {
        free(s);
        return lyra_error(LYRA_ERR_OOM, "measure backend: cannot reserve %zu bytes of address space",
                          MEASURE_ALLOC_SPACE);
    }
    be->ops = &measure_ops;
    be->device = device;
    be->n_threads = 1;
    be->impl = s;
    return LYRA_OK;
}

int lyra_backend_is_measuring(const lyra_backend *be) { return be && be->ops == &measure_ops; }

lyra_measure_stats *lyra_backend_measure_stats(lyra_backend *be) {
    return lyra_backend_is_measuring(be) ? &state(be)->stats : NULL;
}

lyra_status lyra_measure_arena_init(lyra_arena *a, size_t capacity, lyra_device device) {
    void *p = reserve(capacity);
    if (!p) return lyra_error(LYRA_ERR_OOM, "measure arena: cannot reserve %zu bytes of address space", capacity);
    lyra_arena_wrap(a, p, capacity, device);
    return LYRA_OK;
}

void lyra_measure_arena_free(lyra_arena *a) {
    if (a->base) munmap(a->base, a->capacity);
    memset(a, 0, sizeof *a);
}
