/* The parameter table of the Lyra-2 DiT (upstream WL:86-96, WL:99-115, WL:286) and loading into one allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

typedef struct table {
    lyra_dit_param *p;
    int n, cap;
} table;

static lyra_status push(table *tb, lyra_tensor *dst, int matrix, lyra_dit_linear *lin, int ndim, const int64_t *ne,
                        const char *fmt, ...) {
    if (tb->n == tb->cap) {
        int cap = tb->cap ? 2 * tb->cap : 256;
        lyra_dit_param *q = realloc(tb->p, (size_t)cap * sizeof *q);
        if (!q) return lyra_error(LYRA_ERR_OOM, "dit: out of memory for the parameter table");
        tb->p = q;
        tb->cap = cap;
    }
    lyra_dit_param *p = &tb->p[tb->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->dst = dst;
    p->matrix = matrix;
    p->linear = lin;
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) p->ne[i] = ne[i];
    return LYRA_OK;
}

static lyra_status vec(table *tb, lyra_tensor *dst, int64_t n, const char *name) {
    return push(tb, dst, 0, NULL, 1, &n, "%s", name);
}

/* "<prefix>.weight" (out, in) and, when bias, "<prefix>.bias" (out). */
static lyra_status linear(table *tb, lyra_dit_linear *lin, int64_t out, int64_t in, int bias, const char *prefix) {
    LYRA_TRY(push(tb, &lin->w, 1, lin, 2, (int64_t[]){out, in}, "%s.weight", prefix));
    if (bias) LYRA_TRY(push(tb, &lin->b, 0, NULL, 1, &out, "%s.bias", prefix));
    return LYRA_OK;
}

static lyra_status block_params(table *tb, const lyra_dit_config *c, lyra_dit_block *b, int i) {
    int64_t D = c->dim;
    char p[64];
#define NAME(s) (snprintf(p, sizeof p, "blocks.%d." s, i), p)
    LYRA_TRY(push(tb, &b->modulation, 0, NULL, 3, (int64_t[]){1, 6, D}, "blocks.%d.modulation", i));
    LYRA_TRY(linear(tb, &b->sa_q, D, D, 1, NAME("self_attn.q")));
    LYRA_TRY(linear(tb, &b->sa_k, D, D, 1, NAME("self_attn.k")));
    LYRA_TRY(linear(tb, &b->sa_v, D, D, 1, NAME("self_attn.v")));
    LYRA_TRY(linear(tb, &b->sa_o, D, D, 1, NAME("self_attn.o")));
    LYRA_TRY(vec(tb, &b->sa_norm_q, D, NAME("self_attn.norm_q.weight")));
    LYRA_TRY(vec(tb, &b->sa_norm_k, D, NAME("self_attn.norm_k.weight")));
    LYRA_TRY(vec(tb, &b->norm3_w, D, NAME("norm3.weight")));
    LYRA_TRY(vec(tb, &b->norm3_b, D, NAME("norm3.bias")));
    LYRA_TRY(linear(tb, &b->ca_q, D, D, 1, NAME("cross_attn.q")));
    LYRA_TRY(linear(tb, &b->ca_k, D, D, 1, NAME("cross_attn.k")));
    LYRA_TRY(linear(tb, &b->ca_v, D, D, 1, NAME("cross_attn.v")));
    LYRA_TRY(linear(tb, &b->ca_o, D, D, 1, NAME("cross_attn.o")));
    LYRA_TRY(vec(tb, &b->ca_norm_q, D, NAME("cross_attn.norm_q.weight")));
    LYRA_TRY(vec(tb, &b->ca_norm_k, D, NAME("cross_attn.norm_k.weight")));
    LYRA_TRY(linear(tb, &b->ca_k_img, D, D, 1, NAME("cross_attn.k_img")));
    LYRA_TRY(linear(tb, &b->ca_v_img, D, D, 1, NAME("cross_attn.v_img")));
    LYRA_TRY(vec(tb, &b->ca_norm_k_img, D, NAME("cross_attn.norm_k_img.weight")));
    LYRA_TRY(linear(tb, &b->ffn0, c->ffn_dim, D, 1, NAME("ffn.0")));
    LYRA_TRY(linear(tb, &b->ffn2, D, c->ffn_dim, 1, NAME("ffn.2")));
    LYRA_TRY(linear(tb, &b->cam, D, c->cam_dim, 0, NAME("cam_encoder")));
    LYRA_TRY(linear(tb, &b->buf0, c->buffer_squeeze, c->buffer_embed_dim, 0, NAME("buffer_encoder.0")));
    LYRA_TRY(linear(tb, &b->buf1, D, c->buffer_squeeze, 0, NAME("buffer_encoder.1")));
#undef NAME
    return LYRA_OK;
}

lyra_status dit_params_build(lyra_dit *m) {
    const lyra_dit_config *c = &m->cfg;
    lyra_dit_weights *w = &m->w;
    int64_t D = c->dim;
    table tb = {0};
    lyra_status st = LYRA_OK;
    w->blocks = calloc((size_t)c->num_layers, sizeof *w->blocks);
    if (!w->blocks) return lyra_error(LYRA_ERR_OOM, "dit: out of memory for %d blocks", c->num_layers);
#define T(call) do { if ((st = (call)) != LYRA_OK) goto fail; } while (0)
    T(linear(&tb, &w->patch, D, (int64_t)c->in_dim * 4, 1, "patch_embedding"));
    for (int k = 0; k < c->n_clean; k++) {
        char p[48];
        snprintf(p, sizeof p, "clean_patch_embeddings.%d", k);
        T(linear(&tb, &w->clean[k], D, c->clean_in[k], 1, p));
    }
    T(linear(&tb, &w->text0, D, c->text_dim, 1, "text_embedding.0"));
    T(linear(&tb, &w->text2, D, D, 1, "text_embedding.2"));
    T(linear(&tb, &w->time0, D, c->freq_dim, 1, "time_embedding.0"));
    T(linear(&tb, &w->time2, D, D, 1, "time_embedding.2"));
    T(linear(&tb, &w->tproj, 6 * D, D, 1, "time_projection.1"));
    for (int i = 0; i < c->num_layers; i++) T(block_params(&tb, c, &w->blocks[i], i));
    T(linear(&tb, &w->head, 4 * (int64_t)c->out_dim, D, 1, "head.head"));
    T(push(&tb, &w->head_modulation, 0, NULL, 3, (int64_t[]){1, 2, D}, "head.modulation"));
    T(vec(&tb, &w->img_ln0_w, c->clip_dim, "img_emb.proj.0.weight"));
    T(vec(&tb, &w->img_ln0_b, c->clip_dim, "img_emb.proj.0.bias"));
    T(linear(&tb, &w->img1, c->clip_dim, c->clip_dim, 1, "img_emb.proj.1"));
    T(linear(&tb, &w->img3, D, c->clip_dim, 1, "img_emb.proj.3"));
    T(vec(&tb, &w->img_ln4_w, D, "img_emb.proj.4.weight"));
    T(vec(&tb, &w->img_ln4_b, D, "img_emb.proj.4.bias"));
#undef T
    m->params = tb.p;
    m->n_params = tb.n;
    return LYRA_OK;
fail:
    free(tb.p);
    return st;
}

lyra_dit_linear *dit_find_linear(lyra_dit *m, const char *module, const lyra_dit_param **param) {
    size_t n = strlen(module);
    for (int i = 0; i < m->n_params; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (p->linear && !strncmp(p->name, module, n) && !strcmp(p->name + n, ".weight")) {
            if (param) *param = p;
            return p->linear;
        }
    }
    return NULL;
}

const lyra_tensor *lyra_dit_param_tensor(const lyra_dit *m, const char *name, const lyra_tensor **fp8_scale) {
    *fp8_scale = NULL;
    for (int i = 0; i < m->n_params; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (strcmp(p->name, name) || !p->dst->data) continue;
        if (p->linear && p->linear->fp8 && p->dst == &p->linear->w) *fp8_scale = &p->linear->w_scale;
        return p->dst;
    }
    return NULL;
}

/* Copies n elements of src (host, possibly unaligned) into dst converting to `to` (same dtype: raw bytes). */
static void convert(void *dst, lyra_dtype to, const void *src, lyra_dtype from, int64_t n) {
    if (to == from) {
        memcpy(dst, src, (size_t)n * lyra_dtype_size(from));
        return;
    }
    float *o = dst; /* only vectors are converted, always to f32 */
    const unsigned char *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        o[i] = from == LYRA_DTYPE_BF16 ? lyra_bf16_to_f32(h) : lyra_f16_to_f32(h);
    }
}

/* Checks names, shapes and dtypes of every source tensor against the table; returns the matching source index
 * of each parameter in idx[]. */
static lyra_status match(lyra_dit *m, const lyra_dit_named *src, int n, int *idx) {
    char *used = calloc((size_t)n + 1, 1);
    if (!used) return lyra_error(LYRA_ERR_OOM, "dit: out of memory");
    lyra_status st = LYRA_OK;
    for (int i = 0; i < m->n_params && st == LYRA_OK; i++) {
        const lyra_dit_param *p = &m->params[i];
        const lyra_dit_named *s = dit_find(src, n, p->name);
        if (!s) {
            st = lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor '%s' is missing", p->name);
            break;
        }
        int ok = s->t.ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = s->t.ne[d] == p->ne[d];
        if (!ok) {
            char got[96], want[96];
            lyra_tensor wt = lyra_tensor_make(NULL, s->t.dtype, p->ndim, p->ne);
            st = lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor '%s' has shape %s, expected %s", p->name,
                            lyra_tensor_shape_str(&s->t, got, sizeof got), lyra_tensor_shape_str(&wt, want, sizeof want));
            break;
        }
        if (!lyra_dtype_is_float(s->t.dtype)) {
            st = lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor '%s' has dtype %s, expected f32, bf16 or f16",
                            p->name, lyra_dtype_name(s->t.dtype));
            break;
        }
        int k = (int)(s - src);
        if (used[k]) {
            st = lyra_error(LYRA_ERR_FORMAT, "dit weights: tensor '%s' appears twice (with and without 'net.')", p->name);
            break;
        }
        used[k] = 1;
        idx[i] = k;
    }
    for (int k = 0; k < n && st == LYRA_OK; k++)
        if (!used[k])
            st = lyra_error(LYRA_ERR_FORMAT, "dit weights: unexpected tensor '%s' (not a parameter of the Lyra-2 DiT "
                            "with %d layers and %d clean patch embeddings)", src[k].name, m->cfg.num_layers,
                            m->cfg.n_clean);
    free(used);
    return st;
}

/* random: NULL for a checkpoint (every tensor copied); else the tensors' data are not read (lyra_dit_load_random). */
typedef struct random_spec {
    uint64_t seed;
    int defer;
} random_spec;

static lyra_status load(lyra_dit *m, const lyra_dit_named *src, int n, const char *layout, int num_heads,
                        int n_threads, const random_spec *random) {
    memset(m, 0, sizeof *m);
    int *idx = NULL;
    lyra_status st;
#define T(call) do { if ((st = (call)) != LYRA_OK) goto fail; } while (0)
    T(lyra_framepack_parse(&m->fp, layout));
    T(lyra_dit_config_detect(&m->cfg, src, n, &m->fp, num_heads));
    T(dit_params_build(m));
    idx = malloc(sizeof *idx * (size_t)m->n_params);
    if (!idx) T(lyra_error(LYRA_ERR_OOM, "dit: out of memory"));
    T(match(m, src, n, idx));
    if (random) {
        m->random.seed = random->seed;
        m->random.bf16_values = 1; /* cleared below when a source tensor is not bf16 */
    }

    /* Two carving passes: measure, then fill (core/tensor.h). Matrices keep the checkpoint dtype; vectors are
     * f32 because the norm / bias / modulation ops take f32 on the CPU backend. */
    for (int pass = 0; pass < 2; pass++) {
        lyra_carver cv;
        lyra_carver_init(&cv, pass ? m->weight_mem : NULL, m->weight_bytes, LYRA_DEVICE_CPU);
        for (int i = 0; i < m->n_params; i++) {
            const lyra_dit_param *p = &m->params[i];
            const lyra_tensor *s = &src[idx[i]].t;
            lyra_dtype dt = p->matrix ? s->dtype : LYRA_DTYPE_F32;
            T(lyra_carve(&cv, p->dst, p->name, dt, p->ndim, p->ne));
            if (pass && !random) convert(p->dst->data, dt, s->data, s->dtype, lyra_tensor_numel(s));
            if (random && s->dtype != LYRA_DTYPE_BF16) m->random.bf16_values = 0;
        }
        if (!pass) {
            m->weight_bytes = cv.used;
            m->weight_mem = aligned_alloc(LYRA_CARVE_ALIGN, (cv.used + LYRA_CARVE_ALIGN - 1) / LYRA_CARVE_ALIGN *
                                                                LYRA_CARVE_ALIGN);
            if (!m->weight_mem)
                T(lyra_error(LYRA_ERR_OOM, "dit: cannot allocate %zu bytes of weights", m->weight_bytes));
        }
    }
    T(lyra_backend_cpu_init(&m->be, n_threads));
    if (random) {
        m->random.pending = 1; /* the block (aligned_alloc: fresh pages for a large one) is not written yet */
        if (!random->defer) T(lyra_dit_random_materialize(m));
    }
    free(idx);
    return LYRA_OK;
#undef T
fail:
    free(idx);
    lyra_dit_free(m);
    return st;
}

lyra_status lyra_dit_load(lyra_dit *m, const lyra_dit_named *src, int n, const char *layout, int num_heads,
                          int n_threads) {
    return load(m, src, n, layout, num_heads, n_threads, NULL);
}

lyra_status lyra_dit_load_random(lyra_dit *m, const lyra_dit_named *src, int n, const char *layout, int num_heads,
                                 int n_threads, uint64_t seed, int defer) {
    random_spec r = {seed, defer};
    return load(m, src, n, layout, num_heads, n_threads, &r);
}

void lyra_dit_free(lyra_dit *m) {
    if (m->be.ops) dit_stream_release(m);
    for (int a = 0; a < m->n_adapters; a++) dit_adapter_free(m, a);
    free(m->w.blocks);
    free(m->params);
    if (m->be.ops && m->be.device != LYRA_DEVICE_CPU) m->be.ops->release(&m->be, m->weight_mem);
    else free(m->weight_mem);
    lyra_backend_arena_free(&m->be, &m->arena);
    lyra_backend_free(&m->be);
    memset(m, 0, sizeof *m);
}
