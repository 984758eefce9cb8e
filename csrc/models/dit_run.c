/* The helpers every stage of the DiT forward is built on (the bottom of dit_tokens.c ... dit_forward.c): arena
 * activations on the run's device, the probe, host-table uploads, and the Linear with its run-time LoRA terms
 * (loaded by dit_lora.c). */
#include <math.h>
#include <string.h>

#include "core/fp8.h"
#include "models/dit_internal.h"
#include "nn/measure/measure.h"

lyra_status dit_alloc(dit_run *r, lyra_tensor *t, int ndim, const int64_t *ne, const char *what) {
    LYRA_TRY(lyra_arena_tensor(r->a, t, LYRA_DTYPE_F32, ndim, ne, what));
    t->device = r->be->device;
    return LYRA_OK;
}

lyra_status dit_alloc_act(dit_run *r, lyra_tensor *t, int ndim, const int64_t *ne, const char *what) {
    LYRA_TRY(lyra_arena_tensor(r->a, t, r->act, ndim, ne, what));
    t->device = r->be->device;
    return LYRA_OK;
}

void dit_probe(dit_run *r, const char *name, const lyra_tensor *t) {
    if (r->probe) r->probe(r->probe_ctx, name, t);
}

lyra_status dit_upload(dit_run *r, lyra_tensor *dst, const void *host, size_t bytes) {
    LYRA_ASSERT(bytes == lyra_tensor_nbytes(dst) && lyra_tensor_is_contiguous(dst));
    lyra_tensor h = lyra_tensor_make((void *)host, dst->dtype, dst->ndim, dst->ne);
    return lyra_op_upload(r->be, dst, &h);
}

/* xq (same shape, f32 from the arena) = x rounded to e4m3 token by token with scale max|row| / 448: the
 * activation side of an fp8 block Linear (dit_fp8.c). */
static lyra_status fp8_activations(dit_run *r, lyra_tensor *xq, const lyra_tensor *x) {
    int64_t ne[LYRA_MAX_DIMS];
    memcpy(ne, x->ne, sizeof ne);
    LYRA_TRY(dit_alloc(r, xq, x->ndim, ne, "fp8 activations"));
    if (lyra_backend_is_measuring(r->be)) return LYRA_OK; /* host arithmetic: nothing to measure */
    if (r->be->device != LYRA_DEVICE_CPU || x->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: the per-token fp8 activation rounding exists only on the CPU "
                          "backend (the reference); the device path quantizes inside its FP8 GEMM");
    LYRA_TRY(lyra_op_copy(r->be, xq, x)); /* contiguous f32 rows */
    int64_t cols = x->ne[x->ndim - 1], rows = lyra_tensor_numel(x) / cols;
    float *p = xq->data;
    for (int64_t t = 0; t < rows; t++, p += cols) {
        float mx = 0.0f;
        for (int64_t c = 0; c < cols; c++) mx = fmaxf(mx, fabsf(p[c]));
        float s = mx > 0.0f ? mx / LYRA_E4M3_MAX : 1.0f;
        for (int64_t c = 0; c < cols; c++) p[c] = lyra_e4m3_round(p[c] / s) * s;
    }
    return LYRA_OK;
}

lyra_status dit_linear(dit_run *r, lyra_tensor *y, const lyra_tensor *x, const lyra_dit_linear *lin) {
    if (lin->fp8) {
        /* fp8 blocks have no adapters (merged before quantizing), so x is only needed rounded */
        size_t mark = lyra_arena_mark(r->a);
        lyra_tensor xq;
        LYRA_TRY(fp8_activations(r, &xq, x));
        LYRA_TRY(lyra_op_linear(r->be, y, &xq, &lin->w, lin->b.data ? &lin->b : NULL));
        lyra_arena_reset(r->a, mark);
        return LYRA_OK;
    }
    LYRA_TRY(lyra_op_linear(r->be, y, x, &lin->w, lin->b.data ? &lin->b : NULL));
    for (int a = 0; a < r->m->n_adapters; a++) {
        const lyra_dit_lora_term *t = &lin->lora[a];
        float wa = r->m->adapters[a].weight;
        if (!t->a.data || wa == 0.0f) continue;
        size_t mark = lyra_arena_mark(r->a);
        int64_t ne[LYRA_MAX_DIMS];
        memcpy(ne, x->ne, sizeof ne);
        ne[x->ndim - 1] = t->a.ne[0];
        lyra_tensor down, up;
        LYRA_TRY(lyra_arena_tensor(r->a, &down, y->dtype, x->ndim, ne, "lora down"));
        ne[x->ndim - 1] = t->b.ne[0];
        LYRA_TRY(lyra_arena_tensor(r->a, &up, y->dtype, x->ndim, ne, "lora up"));
        LYRA_TRY(lyra_op_linear(r->be, &down, x, &t->a, NULL));
        LYRA_TRY(lyra_op_linear(r->be, &up, &down, &t->b, t->bias.data ? &t->bias : NULL));
        LYRA_TRY(lyra_op_scale(r->be, &up, &up, wa, 0.0f));
        LYRA_TRY(lyra_op_add(r->be, y, y, &up));
        lyra_arena_reset(r->a, mark);
    }
    return LYRA_OK;
}
