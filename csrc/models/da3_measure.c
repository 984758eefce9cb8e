/* The activation arena of one DA3 call, measured: the forward runs on the measuring backend (nn/measure/measure.h)
 * with this model's weights (only their shapes are read) on pixels of the call's shape, and the arena's
 * high-water mark is the answer. lyra_da3_arena_bytes stays the no-weights cost model the forward reserves; the
 * tests hold it to this measurement. */
#include <stdlib.h>

#include "models/da3.h"
#include "nn/measure/measure.h"

/* Address space of the measured arena: far above any device, never committed. */
#define MEASURE_ARENA_SPACE ((size_t)1 << 40)

lyra_status lyra_da3_arena_measure(const lyra_da3 *m, lyra_device device, int64_t S, int64_t h, int64_t w, int poses,
                                   size_t *need) {
    *need = 0;
    lyra_backend be;
    lyra_arena a;
    LYRA_TRY(lyra_backend_measure_init(&be, device));
    lyra_status st = lyra_measure_arena_init(&a, MEASURE_ARENA_SPACE, device);
    if (st != LYRA_OK) {
        lyra_backend_free(&be);
        return st;
    }
    const size_t maps = sizeof(float) * (size_t)(S * h * w);
    float *host = calloc((size_t)(3 * S * h * w + 12 * S + 9 * S + 25 * S), sizeof(float));
    lyra_tensor pix = lyra_tensor_4d(NULL, LYRA_DTYPE_F32, S, 3, h, w);
    pix.device = device;
    pix.data = be.ops->alloc(&be, lyra_tensor_nbytes(&pix));
    if (!host || !pix.data) {
        st = lyra_error(LYRA_ERR_OOM, "Depth Anything 3 measure: out of memory");
    } else {
        float *ext = host + 3 * S * h * w, *K = ext + 16 * S, *extr = K + 9 * S, *intr = extr + 12 * S;
        for (int64_t i = 0; i < S; i++) { /* identity poses, a unit-focal camera: the shapes are what matters */
            for (int r = 0; r < 4; r++) ext[16 * i + 5 * r] = 1.0f;
            K[9 * i] = K[9 * i + 4] = K[9 * i + 8] = 1.0f;
        }
        float *depth = malloc(maps), *conf = malloc(maps), *sky = malloc(maps);
        lyra_da3_out out = {.depth = depth, .conf = conf, .sky = sky, .extrinsics = extr, .intrinsics = intr};
        st = depth && conf && sky ? lyra_da3_forward(m, &be, &a, &pix, poses ? ext : NULL, poses ? K : NULL, &out, NULL)
                                  : lyra_error(LYRA_ERR_OOM, "Depth Anything 3 measure: out of memory");
        free(depth);
        free(conf);
        free(sky);
    }
    *need = a.peak;
    free(host);
    lyra_measure_arena_free(&a);
    lyra_backend_free(&be);
    return st;
}
