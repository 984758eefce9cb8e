/* Time embedding and the context projections (upstream W:191-200, WL:962-964, WL:966-971, W:569-598,
 * WL:962-971). */
#include <math.h>
#include <stdlib.h>

#include "models/dit_internal.h"

lyra_status dit_time_embed(dit_run *r, double t) {
    const lyra_dit_config *cfg = &r->m->cfg;
    const lyra_dit_weights *w = &r->m->w;
    int half = cfg->freq_dim / 2;
    /* Sinusoid in f64, cos first, then rounded to f32 (W:195-200). */
    float *host = malloc(sizeof(float) * (size_t)cfg->freq_dim);
    if (!host) return lyra_error(LYRA_ERR_OOM, "dit: out of memory");
    for (int k = 0; k < half; k++) {
        double a = t * pow(10000.0, -(double)k / half);
        host[k] = (float)cos(a);
        host[half + k] = (float)sin(a);
    }
    size_t mark = lyra_arena_mark(r->a);
    lyra_tensor s, h, se;
    lyra_status st = dit_alloc(r, &s, 2, (int64_t[]){1, cfg->freq_dim}, "time sinusoid");
    if (st == LYRA_OK) st = dit_upload(r, &s, host, sizeof(float) * (size_t)cfg->freq_dim);
    free(host);
    LYRA_TRY(st);
    /* e = L2(SiLU(L1(s))); e0 = L(SiLU(e)) (f32 autocast regions upstream). */
    LYRA_TRY(dit_alloc(r, &h, 2, (int64_t[]){1, cfg->dim}, "time hidden"));
    LYRA_TRY(dit_linear(r, &h, &s, &w->time0));
    LYRA_TRY(lyra_op_silu(r->be, &h, &h));
    LYRA_TRY(dit_linear(r, &r->e, &h, &w->time2));
    LYRA_TRY(dit_alloc(r, &se, 2, (int64_t[]){1, cfg->dim}, "silu(e)"));
    LYRA_TRY(lyra_op_silu(r->be, &se, &r->e));
    LYRA_TRY(dit_linear(r, &r->e0, &se, &w->tproj));
    lyra_arena_reset(r->a, mark);
    dit_probe(r, "time_embedding", &r->e);
    dit_probe(r, "time_projection", &r->e0);
    return LYRA_OK;
}

lyra_status dit_context(dit_run *r, const lyra_tensor *text, const lyra_tensor *clip) {
    const lyra_dit_config *cfg = &r->m->cfg;
    const lyra_dit_weights *w = &r->m->w;
    size_t mark = lyra_arena_mark(r->a);
    /* Text: L2(GELU_tanh(L1(T5))). Padded umT5 rows are zeros and are attended to like the others (upstream T5:441-455,
     * T5:522-537, W:359-378). */
    lyra_tensor h;
    LYRA_TRY(dit_alloc_act(r, &h, 3, (int64_t[]){1, LYRA_DIT_TEXT_TOKENS, cfg->dim}, "text hidden"));
    LYRA_TRY(dit_linear(r, &h, text, &w->text0));
    LYRA_TRY(lyra_op_gelu(r->be, &h, &h, 1));
    LYRA_TRY(dit_linear(r, &r->ctx_txt, &h, &w->text2));
    lyra_arena_reset(r->a, mark);
    /* CLIP: LN_b(L3(GELU_erf(L1(LN_a(clip))))), torch LayerNorm default eps 1e-5 (W:569-598). */
    lyra_tensor a, b;
    LYRA_TRY(dit_alloc_act(r, &a, 3, (int64_t[]){1, r->Lc, cfg->clip_dim}, "clip norm"));
    LYRA_TRY(dit_alloc_act(r, &b, 3, (int64_t[]){1, r->Lc, cfg->clip_dim}, "clip hidden"));
    LYRA_TRY(lyra_op_layer_norm(r->be, &a, clip, &w->img_ln0_w, &w->img_ln0_b, 1e-5f));
    LYRA_TRY(dit_linear(r, &b, &a, &w->img1));
    LYRA_TRY(lyra_op_gelu(r->be, &b, &b, 0));
    LYRA_TRY(dit_linear(r, &r->ctx_img, &b, &w->img3));
    LYRA_TRY(lyra_op_layer_norm(r->be, &r->ctx_img, &r->ctx_img, &w->img_ln4_w, &w->img_ln4_b, 1e-5f));
    lyra_arena_reset(r->a, mark);
    dit_probe(r, "text_embedding", &r->ctx_txt);
    dit_probe(r, "img_emb", &r->ctx_img);
    return LYRA_OK;
}
