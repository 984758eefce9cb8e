/* umT5 encoder: configuration detection and weight loading (names: the modules of upstream T5:130-331). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/umt5.h"

#define WHAT "umT5 encoder"
#define NAME_LEN LYRA_TEXT_NAME_LEN
#define MAX_DIST 128 /* T5RelativeEmbedding's default, never overridden by Wan/Lyra (upstream T5:441-455) */

static lyra_status detect_config(lyra_umt5_config *cfg, const lyra_text_wsource *src) {
    memset(cfg, 0, sizeof *cfg);
    const lyra_tensor *t;
    LYRA_TRY(lyra_text_weights_probe(src, "token_embedding.weight", 2, WHAT, &t));
    cfg->vocab = t->ne[0];
    cfg->dim = t->ne[1];
    char name[NAME_LEN];
    for (;;) {
        snprintf(name, sizeof name, "blocks.%lld.norm1.weight", (long long)cfg->layers);
        if (!src->lookup(src->ctx, name)) break;
        cfg->layers++;
    }
    if (cfg->layers == 0)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: tensor 'blocks.0.norm1.weight' is missing (no blocks)");
    LYRA_TRY(lyra_text_weights_probe(src, "blocks.0.attn.q.weight", 2, WHAT, &t));
    cfg->dim_attn = t->ne[0];
    LYRA_TRY(lyra_text_weights_probe(src, "blocks.0.ffn.fc1.weight", 2, WHAT, &t));
    cfg->ffn = t->ne[0];

    /* umT5 (shared_pos=False) has a table per block; plain T5 one at the top (Wan t5.py T5Encoder). */
    const char *pos_name = "blocks.0.pos_embedding.embedding.weight";
    if (!src->lookup(src->ctx, pos_name) && src->lookup(src->ctx, "pos_embedding.embedding.weight")) {
        pos_name = "pos_embedding.embedding.weight";
        cfg->shared_pos = 1;
    }
    LYRA_TRY(lyra_text_weights_probe(src, pos_name, 2, WHAT, &t));
    cfg->buckets = t->ne[0];
    cfg->heads = t->ne[1];
    cfg->max_dist = MAX_DIST;
    /* Bidirectional buckets: half per direction, half of those exact, the rest logarithmic up to max_dist. */
    if (cfg->buckets < 4 || cfg->buckets % 2 || cfg->buckets / 4 >= cfg->max_dist)
        return lyra_error(LYRA_ERR_FORMAT,
                          WHAT " weights: tensor '%s' has %lld buckets; expected an even number in [4, %d)",
                          pos_name, (long long)cfg->buckets, 4 * MAX_DIST);
    if (cfg->heads < 1 || cfg->dim_attn % cfg->heads)
        return lyra_error(LYRA_ERR_FORMAT,
                          WHAT " weights: %lld heads (width of '%s') do not divide the attention width %lld of "
                          "'blocks.0.attn.q.weight'", (long long)cfg->heads, pos_name, (long long)cfg->dim_attn);
    if (cfg->vocab < 1 || cfg->dim < 1 || cfg->dim_attn < 1 || cfg->ffn < 1)
        return lyra_error(LYRA_ERR_FORMAT, WHAT " weights: empty tensor among token_embedding / attn.q / ffn.fc1");
    return LYRA_OK;
}

lyra_status lyra_umt5_load(lyra_umt5 *m, const lyra_text_wsource *src) {
    memset(m, 0, sizeof *m);
    LYRA_TRY(detect_config(&m->cfg, src));
    const lyra_umt5_config *c = &m->cfg;
    m->blocks = calloc((size_t)c->layers, sizeof *m->blocks);
    if (!m->blocks) return lyra_error(LYRA_ERR_OOM, WHAT ": out of memory");
    lyra_text_wlist l;
    LYRA_TRY(lyra_text_wlist_init(&l, 3 + 10 * (int)c->layers, WHAT));
    m->names = l.names;
    int64_t D = c->dim, A = c->dim_attn, F = c->ffn;
    lyra_text_wlist_add(&l, "token_embedding.weight", &m->token_embedding, 0, 2, (int64_t[]){c->vocab, D});
    lyra_text_wlist_add(&l, "norm.weight", &m->norm, 1, 1, (int64_t[]){D});
    if (c->shared_pos)
        lyra_text_wlist_add(&l, "pos_embedding.embedding.weight", &m->shared_pos, 1, 2,
                            (int64_t[]){c->buckets, c->heads});
    char name[NAME_LEN];
#define BLOCK(field, suffix, as_f32, ndim, n0, n1)                                                                \
    do {                                                                                                          \
        snprintf(name, sizeof name, "blocks.%d.%s", i, suffix);                                                   \
        lyra_text_wlist_add(&l, name, &b->field, as_f32, ndim, (int64_t[]){n0, n1});                             \
    } while (0)
    for (int i = 0; i < (int)c->layers; i++) {
        lyra_umt5_block *b = &m->blocks[i];
        BLOCK(norm1, "norm1.weight", 1, 1, D, 0);
        BLOCK(q, "attn.q.weight", 0, 2, A, D);
        BLOCK(k, "attn.k.weight", 0, 2, A, D);
        BLOCK(v, "attn.v.weight", 0, 2, A, D);
        BLOCK(o, "attn.o.weight", 0, 2, D, A);
        BLOCK(norm2, "norm2.weight", 1, 1, D, 0);
        BLOCK(gate, "ffn.gate.0.weight", 0, 2, F, D);
        BLOCK(fc1, "ffn.fc1.weight", 0, 2, F, D);
        BLOCK(fc2, "ffn.fc2.weight", 0, 2, D, F);
        if (!c->shared_pos) BLOCK(pos, "pos_embedding.embedding.weight", 1, 2, c->buckets, c->heads);
    }
#undef BLOCK
    lyra_status s = lyra_text_wlist_load(&l, src, NULL, NULL, WHAT, &m->mem);
    if (s != LYRA_OK) return s;
    m->random = l.random;
    if (c->shared_pos)
        for (int i = 0; i < (int)c->layers; i++) m->blocks[i].pos = m->shared_pos;
    return LYRA_OK;
}

lyra_status lyra_umt5_place(lyra_umt5 *m, lyra_backend *be, lyra_dtype act) {
    LYRA_TRY(lyra_place_precision_check(be, act, LYRA_DTYPE_BF16, WHAT));
    if (be->device == LYRA_DEVICE_CPU && !m->random.pending) return LYRA_OK;
    if (m->placed) return LYRA_OK;
    int64_t n = 3 + 10 * m->cfg.layers;
    lyra_tensor **ts = malloc(sizeof *ts * (size_t)n);
    lyra_dtype *dt = malloc(sizeof *dt * (size_t)n);
    if (!ts || !dt) {
        free(ts);
        free(dt);
        return lyra_error(LYRA_ERR_OOM, WHAT ": out of memory");
    }
    int k = 0;
    /* matrices in the activation dtype under bf16 (f32 mode: as loaded); vectors stay f32 */
#define ADD(t, matrix) (dt[k] = (matrix) && act != LYRA_DTYPE_F32 ? act : (t)->dtype, ts[k++] = (t))
    ADD(&m->token_embedding, 1);
    ADD(&m->norm, 0);
    ADD(&m->shared_pos, 0);
    for (int64_t i = 0; i < m->cfg.layers; i++) {
        lyra_umt5_block *b = &m->blocks[i];
        lyra_tensor *bt[10] = {&b->norm1, &b->q, &b->k, &b->v, &b->o, &b->norm2, &b->gate, &b->fc1, &b->fc2, &b->pos};
        static const int matrix[10] = {0, 1, 1, 1, 1, 0, 1, 1, 1, 0};
        for (int j = 0; j < 10; j++)
            if (j < 9 || !m->cfg.shared_pos) ADD(bt[j], matrix[j]); /* T5: one shared table, re-copied below */
    }
#undef ADD
    /* random weights (pending): filled where they go, nothing uploaded; on the CPU the host block itself */
    lyra_status s = m->random.pending ? lyra_backend_place_weights_random(be, &m->mem, ts, dt, k, WHAT " weights",
                                                                          m->random.seed, m->random.bf16_values)
                                      : lyra_backend_place_weights_as(be, &m->mem, ts, dt, k, WHAT " weights");
    free(ts);
    free(dt);
    if (s == LYRA_OK) m->random.pending = 0;
    if (s == LYRA_OK && be->device == LYRA_DEVICE_CPU) {
        if (m->cfg.shared_pos)
            for (int64_t i = 0; i < m->cfg.layers; i++) m->blocks[i].pos = m->shared_pos;
        return LYRA_OK;
    }
    if (s == LYRA_OK) {
        m->placed = be;
        m->act = act;
        if (m->cfg.shared_pos) /* the blocks hold copies of the shared table's descriptor */
            for (int64_t i = 0; i < m->cfg.layers; i++) m->blocks[i].pos = m->shared_pos;
    }
    return s;
}

void lyra_umt5_free(lyra_umt5 *m) {
    if (!m) return;
    if (m->placed) m->placed->ops->release(m->placed, m->mem);
    else free(m->mem);
    free(m->blocks);
    free(m->names);
    memset(m, 0, sizeof *m);
}
