/* The activation arena a DiT forward needs, taken from running that forward on the measuring backend
 * (nn/measure/measure.h) instead of a hand-written bound: lyra_dit_forward (dit_forward.c) asks here before it
 * reserves its arena; dit_plan.c measures full-size configurations without weights. */
#include <string.h>

#include "models/dit_internal.h"
#include "nn/measure/measure.h"

/* Address space a measured forward may use: far above any real device, never committed. */
#define MEASURE_ARENA_SPACE ((size_t)1 << 40)

/* Runs `forward` on a shallow copy of m whose backend measures and whose arena is reserved address space.
 * The weights, adapters and inputs are m's own descriptors (only their shapes are read). */
static lyra_status measure_forward(const lyra_dit *m, dit_forward_fn forward, const lyra_dit_inputs *in,
                                   lyra_tensor *out, size_t *peak) {
    lyra_dit mm = *m;
    lyra_status st = lyra_backend_measure_init(&mm.be, m->be.device);
    if (st != LYRA_OK) return st;
    st = lyra_measure_arena_init(&mm.arena, MEASURE_ARENA_SPACE, m->be.device);
    if (st == LYRA_OK) {
        st = forward(&mm, in, out, NULL, NULL);
        *peak = mm.arena.peak;
        lyra_measure_arena_free(&mm.arena);
    }
    lyra_backend_free(&mm.be);
    return st;
}

lyra_status dit_arena_need(lyra_dit *m, dit_forward_fn forward, const lyra_dit_inputs *in, const lyra_tensor *out,
                           size_t *need) {
    int max_rank = 0;
    for (int a = 0; a < m->n_adapters; a++) max_rank = m->adapters[a].rank > max_rank ? m->adapters[a].rank : max_rank;
    /* The geometry is all a forward's allocations depend on; a bad input is reported by the run itself. */
    int64_t key[8] = {in->x ? in->x->ne[3] : 0, in->x ? in->x->ne[4] : 0, in->clip ? in->clip->ne[1] : 0, max_rank,
                      m->n_adapters, m->act_dtype, m->fp8, m->be.device};
    if (m->arena_need && !memcmp(key, m->arena_key, sizeof key)) {
        *need = m->arena_need;
        return LYRA_OK;
    }
    LYRA_TRY(measure_forward(m, forward, in, (lyra_tensor *)out, need));
    m->arena_need = *need;
    memcpy(m->arena_key, key, sizeof key);
    return LYRA_OK;
}
