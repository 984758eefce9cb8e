/* The activation arena of one umT5 encode, measured: the encode runs on the measuring backend
 * (nn/measure/measure.h) with this model's weights (only their shapes are read) and these very ids and mask, and
 * the arena's high-water mark is the answer. lyra_umt5_arena_bytes stays as the no-weights cost model; the tests
 * hold it to this measurement. */
#include "models/umt5.h"
#include "nn/measure/measure.h"

/* Address space of the measured arena: far above any device, never committed. */
#define MEASURE_ARENA_SPACE ((size_t)1 << 40)

lyra_status lyra_umt5_arena_measure(const lyra_umt5 *m, lyra_device device, const int32_t *ids, const uint8_t *mask,
                                    int64_t B, int64_t L, int zero_padded, size_t *need) {
    lyra_backend be;
    lyra_arena a;
    LYRA_TRY(lyra_backend_measure_init(&be, device));
    lyra_status st = lyra_measure_arena_init(&a, MEASURE_ARENA_SPACE, device);
    if (st == LYRA_OK) {
        lyra_tensor out = lyra_tensor_3d(NULL, LYRA_DTYPE_F32, B, L, m->cfg.dim);
        out.device = device;
        out.data = be.ops->alloc(&be, lyra_tensor_nbytes(&out));
        st = out.data ? lyra_umt5_encode(m, &be, &a, &out, ids, mask, B, L, zero_padded) : LYRA_ERR_OOM;
        *need = a.peak;
        lyra_measure_arena_free(&a);
    }
    lyra_backend_free(&be);
    return st;
}
