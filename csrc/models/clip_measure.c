/* The activation arena of one CLIP encode, measured: the encode runs on the measuring backend
 * (nn/measure/measure.h) with this tower's weights (only their shapes are read) on an image of the call's shape,
 * and the arena's high-water mark is the answer. lyra_clip_arena_bytes stays as the no-weights cost model; the
 * tests hold it to this measurement. */
#include "models/clip.h"
#include "nn/measure/measure.h"

/* Address space of the measured arena: far above any device, never committed. */
#define MEASURE_ARENA_SPACE ((size_t)1 << 40)

lyra_status lyra_clip_arena_measure(const lyra_clip *m, lyra_device device, const lyra_tensor *image, size_t *need) {
    lyra_backend be;
    lyra_arena a;
    LYRA_TRY(lyra_backend_measure_init(&be, device));
    lyra_status st = lyra_measure_arena_init(&a, MEASURE_ARENA_SPACE, device);
    if (st == LYRA_OK) {
        int64_t B = image->ne[0];
        lyra_tensor out = lyra_tensor_3d(NULL, LYRA_DTYPE_F32, B, m->cfg.tokens, m->cfg.width);
        lyra_tensor img = lyra_tensor_make(NULL, image->dtype, image->ndim, image->ne);
        out.device = img.device = device;
        out.data = be.ops->alloc(&be, lyra_tensor_nbytes(&out));
        img.data = be.ops->alloc(&be, lyra_tensor_nbytes(&img));
        st = out.data && img.data ? lyra_clip_encode(m, &be, &a, &out, &img) : LYRA_ERR_OOM;
        *need = a.peak;
        lyra_measure_arena_free(&a);
    }
    lyra_backend_free(&be);
    return st;
}
