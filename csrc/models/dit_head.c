/* Output head and unpatchify (upstream W:532-566, WL:1001-1017). */
#include "models/dit_internal.h"

lyra_status dit_head(dit_run *r, lyra_tensor *out) {
    const lyra_dit_config *cfg = &r->m->cfg;
    const lyra_dit_weights *w = &r->m->w;
    int64_t L = r->L, D = cfg->dim;
    size_t mark = lyra_arena_mark(r->a);
    lyra_tensor hm, e3, shift, scale, xn, o, og;
    /* The head modulates with e (the time embedding, not SiLU'd, not e0). */
    LYRA_TRY(dit_alloc(r, &hm, 3, (int64_t[]){1, 2, D}, "head modulation"));
    LYRA_TRY(lyra_tensor_reshape(&e3, &r->e, 3, (int64_t[]){1, 1, D}));
    LYRA_TRY(lyra_op_add(r->be, &hm, &w->head_modulation, &e3));
    LYRA_TRY(lyra_tensor_slice(&shift, &hm, 1, 0, 1));
    LYRA_TRY(lyra_tensor_slice(&scale, &hm, 1, 1, 2));
    LYRA_TRY(dit_alloc(r, &xn, 3, (int64_t[]){1, L, D}, "head norm"));
    LYRA_TRY(dit_alloc(r, &o, 3, (int64_t[]){1, L, 4 * (int64_t)cfg->out_dim}, "head out"));
    LYRA_TRY(lyra_op_layer_norm(r->be, &xn, &r->x, NULL, NULL, cfg->eps));
    LYRA_TRY(lyra_op_modulate(r->be, &xn, &xn, &shift, &scale));
    LYRA_TRY(dit_linear(r, &o, &xn, &w->head));
    dit_probe(r, "head", &o);
    /* Only the generated tokens, unpatchified with the channel FASTEST: V[c, f, 2i+dy, 2j+dx] =
     * o[token(f, i, j), (dy·2 + dx)·out_dim + c] (the opposite of the patch-embedding order). */
    LYRA_TRY(lyra_tensor_slice(&og, &o, 1, r->gen_start, L));
    LYRA_TRY(lyra_op_unpatchify(r->be, out, &og, 1, 2, 2, LYRA_PATCH_C_FASTEST));
    lyra_arena_reset(r->a, mark);
    return LYRA_OK;
}
