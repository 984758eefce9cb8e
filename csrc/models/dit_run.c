/* The helpers every stage of the DiT forward is built on (the bottom of dit_tokens.c ... dit_forward.c): arena
 * activations on the run's device, the probe, host-table uploads, and the Linear with its run-time LoRA terms
 * (loaded by dit_lora.c), or the fp8 Linear of a quantized block (dit_fp8.c). */
#include <string.h>

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

lyra_status dit_linear(dit_run *r, lyra_tensor *y, const lyra_tensor *x, const lyra_dit_linear *lin) {
    if (lin->fp8) {
        /* x's tokens as e4m3 codes + one f32 scale each, on the backend, then the scaled FP8 GEMM (dit_fp8.c);
         * fp8 blocks have no adapters (merged before quantizing) */
        size_t mark = lyra_arena_mark(r->a);
        int64_t K = x->ne[x->ndim - 1], M = lyra_tensor_numel(x) / (K ? K : 1);
        lyra_tensor q, s;
        LYRA_TRY(lyra_arena_tensor(r->a, &q, LYRA_DTYPE_U8, 2, (int64_t[]){M, K}, "fp8 activations"));
        LYRA_TRY(lyra_arena_tensor(r->a, &s, LYRA_DTYPE_F32, 1, &M, "fp8 activation scales"));
        q.device = s.device = r->be->device;
        LYRA_TRY(lyra_op_quantize_fp8_rows(r->be, &q, &s, x));
        LYRA_TRY(lyra_op_linear_fp8(r->be, y, &q, &s, &lin->w, &lin->w_scale, lin->b.data ? &lin->b : NULL));
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
