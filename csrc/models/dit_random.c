/* Random weights of the real shapes for the DiT (models/dit.h lyra_dit_load_random): every parameter filled by the
 * backend op fill_random where it will be used — in the host block for CPU runs, in the device block at placement
 * (models/dit_device.c) so that no host copy is written and nothing is uploaded. An fp8 block Linear is filled as
 * f32 into a temporary and quantized per output row by lyra_op_quantize_fp8_rows, the formulas dit_fp8.c applies
 * to a loaded checkpoint's weights, so the codes and scales equal those of the same values quantized on the host. */
#include "models/dit_internal.h"

static int is_fp8_weight(const lyra_dit_param *p) { return p->linear && p->linear->fp8 && p->dst == &p->linear->w; }

/* The scratch of an fp8 matrix before quantization (f32, or bf16 when a LoRA is folded into it) on each backend the
 * fill writes to (at most two: the device and, for the streamed blocks, the host), grown to the largest matrix and
 * kept to the end. */
typedef struct scratch {
    lyra_backend *be[2];
    void *p[2];
    int64_t cap[2];
} scratch;

static void *scratch_get(scratch *sc, lyra_backend *be, int64_t bytes) {
    int k = sc->be[0] == be || !sc->be[0] ? 0 : 1;
    if (sc->be[k] && sc->cap[k] >= bytes) return sc->p[k];
    if (sc->p[k]) {
        lyra_op_synchronize(be); /* a quantization may still read it */
        be->ops->release(be, sc->p[k]);
    }
    sc->be[k] = be;
    sc->cap[k] = bytes;
    sc->p[k] = be->ops->alloc(be, (size_t)bytes);
    return sc->p[k];
}

static void scratch_free(scratch *sc) {
    for (int k = 0; k < 2; k++)
        if (sc->p[k]) {
            lyra_op_synchronize(sc->be[k]);
            sc->be[k]->ops->release(sc->be[k], sc->p[k]);
        }
}

lyra_status dit_random_fill_at(lyra_dit *m, dit_random_where_fn where, void *ctx) {
    scratch sc = {{0}, {0}, {0}};
    lyra_status st = LYRA_OK;
    for (int i = 0; i < m->n_params && st == LYRA_OK; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (!p->dst->data) continue;
        lyra_random_fill r;
        lyra_random_fill_rule(&r, m->random.seed, p->name, p->ndim, p->ne, m->random.bf16_values);
        lyra_tensor t = *p->dst;
        lyra_backend *be = where(ctx, &t);
        if (is_fp8_weight(p)) { /* its scales follow its codes (dit_fp8.c): the same memory */
            lyra_tensor s = p->linear->w_scale;
            where(ctx, &s);
            /* adapters folded at placement (models/dit_lora_fold.c): into the weight as the checkpoint would hold
             * it (bf16 values: a bf16 matrix, so the fold rounds once to bf16 as on the host), then quantized */
            const int fold = m->lora_fold && dit_lora_folds(m, p->linear);
            lyra_dtype dt = fold && m->random.bf16_values ? LYRA_DTYPE_BF16 : LYRA_DTYPE_F32;
            int64_t bytes = lyra_tensor_numel(p->dst) * (int64_t)lyra_dtype_size(dt);
            void *tmp = scratch_get(&sc, be, bytes);
            if (!tmp) {
                st = lyra_error(LYRA_ERR_OOM, "dit random weights: cannot allocate %lld bytes on the %s device for "
                                "the fp8 quantization", (long long)bytes, be->ops->name);
                break;
            }
            lyra_tensor x = lyra_tensor_make(tmp, dt, 2, p->ne);
            x.device = be->device;
            x.name = p->name;
            st = lyra_op_fill_random(be, &x, &r);
            if (st == LYRA_OK && fold) st = dit_lora_fold_linear(m, be, p->linear, &x, NULL);
            if (st == LYRA_OK) st = lyra_op_quantize_fp8_rows(be, &t, &s, &x);
        } else {
            st = lyra_op_fill_random(be, &t, &r);
        }
    }
    scratch_free(&sc);
    return st;
}

typedef struct moved {
    lyra_backend *be;
    const char *host;
    char *base;
} moved;

/* t points into the host block: the same offset of the block on be. */
static lyra_backend *to_block(void *ctx, lyra_tensor *t) {
    moved *mv = ctx;
    t->data = mv->base + ((const char *)t->data - mv->host);
    t->device = mv->be->device;
    return mv->be;
}

lyra_status dit_random_fill(lyra_dit *m, lyra_backend *be, const void *host, void *base) {
    moved mv = {be, host, base};
    return dit_random_fill_at(m, to_block, &mv);
}

lyra_status lyra_dit_random_materialize(lyra_dit *m) {
    if (!m->random.pending) return LYRA_OK;
    if (m->be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_INTERNAL, "dit random weights: pending on the %s device", m->be.ops->name);
    LYRA_TRY(dit_random_fill(m, &m->be, m->weight_mem, m->weight_mem));
    m->random.pending = 0;
    /* adapters meant for the fold at placement: folded here, on the host (the fp8 weights were as they were filled) */
    if (m->lora_fold) LYRA_TRY(dit_lora_fold_placed(m, &m->be, &m->be, 1));
    return LYRA_OK;
}
