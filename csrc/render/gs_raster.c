/* Frames of a Gaussian-splat scene on a backend (gs_raster.h): the scene is wrapped (CPU) or uploaded once
 * (device), each camera is one lyra_op_gs_rasterize into a (H, W, 5) frame, which is split into the outputs. */
#include "render/gs_raster.h"

#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

enum { FIELDS = 5 };

/* The scene's fields as host tensors; a scene without splats gets a valid pointer (the op checks for data). */
static void host_fields(const lyra_gs_scene *s, lyra_tensor *t) {
    static float none[1];
    int64_t n = s->n, d_sh = (int64_t)(s->sh_degree + 1) * (s->sh_degree + 1);
    const float *p[FIELDS] = {s->means, s->scales, s->rotations, s->harmonics, s->opacities};
    int64_t ne[FIELDS][3] = {{n, 3}, {n, 3}, {n, 4}, {n, 3, d_sh}, {n}};
    int nd[FIELDS] = {2, 2, 2, 3, 1};
    for (int i = 0; i < FIELDS; i++)
        t[i] = lyra_tensor_make(n ? (void *)p[i] : (void *)none, LYRA_DTYPE_F32, nd[i], ne[i]);
}

/* Copies the fields into one block of be's memory (*mem, released by the caller) and re-points dev[] there. */
static lyra_status upload_fields(lyra_backend *be, const lyra_tensor *host, lyra_tensor *dev, void **mem) {
    size_t off[FIELDS], total = 0;
    for (int i = 0; i < FIELDS; i++) {
        off[i] = total;
        total += (lyra_tensor_nbytes(&host[i]) + 255) & ~(size_t)255;
    }
    *mem = be->ops->alloc(be, total ? total : 256);
    if (!*mem) return lyra_error(LYRA_ERR_OOM, "render: no room on %s for the scene (%zu bytes)", be->ops->name, total);
    for (int i = 0; i < FIELDS; i++) {
        dev[i] = host[i];
        dev[i].data = (char *)*mem + off[i];
        dev[i].device = be->device;
        if (lyra_tensor_numel(&host[i])) LYRA_TRY(lyra_op_upload(be, &dev[i], &host[i]));
    }
    return LYRA_OK;
}

lyra_status lyra_gs_render(lyra_backend *be, const lyra_gs_scene *s, const lyra_splat_camera *cams, int64_t n_cams,
                           int width, int height, float *rgb, float *alpha, float *depth) {
    if (width < 1 || height < 1 || width > 16384 || height > 16384)
        return lyra_error(LYRA_ERR_ARG, "render: size %dx%d is not allowed (1 to 16384 pixels a side)", width,
                          height);
    if (s->sh_degree < 0 || s->sh_degree > 2)
        return lyra_error(LYRA_ERR_ARG, "render: SH degree %d is not supported (0, 1 or 2)", s->sh_degree);
    if (s->n < 0) return lyra_error(LYRA_ERR_ARG, "render: %lld splats", (long long)s->n);
    lyra_tensor host[FIELDS], dev[FIELDS];
    host_fields(s, host);
    void *scene_mem = NULL, *frame_mem = NULL;
    size_t px = (size_t)width * (size_t)height;
    int64_t ne[3] = {height, width, 5};
    lyra_tensor frame = lyra_tensor_make(NULL, LYRA_DTYPE_F32, 3, ne), frame_host = frame;
    float *out = malloc(px * 5 * sizeof *out); /* the frame on the host (also the op's output on the CPU) */
    if (!out) return lyra_error(LYRA_ERR_OOM, "render: out of memory for a %dx%d frame", width, height);
    frame_host.data = out;
    lyra_status st = LYRA_OK;
    if (be->device == LYRA_DEVICE_CPU) {
        memcpy(dev, host, sizeof dev);
        frame = frame_host;
    } else {
        st = upload_fields(be, host, dev, &scene_mem);
        if (st == LYRA_OK && !(frame_mem = be->ops->alloc(be, px * 5 * sizeof(float))))
            st = lyra_error(LYRA_ERR_OOM, "render: no room on %s for a %dx%d frame", be->ops->name, width, height);
        frame.data = frame_mem;
        frame.device = be->device;
    }
    for (int64_t c = 0; c < n_cams && st == LYRA_OK; c++) {
        st = lyra_op_gs_rasterize(be, &frame, &dev[0], &dev[1], &dev[2], &dev[3], &dev[4], &cams[c]);
        if (st == LYRA_OK && be->device != LYRA_DEVICE_CPU) st = lyra_op_download(be, &frame_host, &frame);
        if (st != LYRA_OK) break;
        for (size_t i = 0; i < px; i++) {
            const float *v = out + 5 * i;
            float *o = rgb + ((size_t)c * px + i) * 3;
            o[0] = v[0], o[1] = v[1], o[2] = v[2];
            if (alpha) alpha[(size_t)c * px + i] = v[3];
            if (depth) depth[(size_t)c * px + i] = v[4];
        }
    }
    if (frame_mem) be->ops->release(be, frame_mem);
    if (scene_mem) be->ops->release(be, scene_mem);
    free(out);
    return st;
}
