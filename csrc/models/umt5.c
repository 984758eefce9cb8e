/* umT5 encoder forward on the runtime ops (upstream T5:130-331, T5:259-296, T5:522-537), plus its cost model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/umt5.h"
#include "nn/ops.h"

#define RMS_EPS 1e-6f /* T5LayerNorm default */

int64_t lyra_umt5_bucket(int64_t d, int64_t num_buckets, int64_t max_dist) {
    /* Upstream _relative_position_bucket, bidirectional: keys right of the query use the upper half. */
    int64_t half = num_buckets / 2;
    int64_t base = d > 0 ? half : 0;
    int64_t n = d < 0 ? -d : d;
    int64_t max_exact = half / 2;
    if (n < max_exact) return base + n;
    /* torch evaluates log(float(n) / max_exact) / log(max_dist / max_exact) * (half − max_exact) in float32
     * (the Python-float divisor is rounded to float32) and truncates with .long(). At the real 32 buckets /
     * 128 the ratios at the bucket edges 16, 32, 64, 128 are exact powers of two in float32 (upstream T5:259-296). */
    float r = logf((float)n / (float)max_exact) / (float)log((double)max_dist / (double)max_exact) *
              (float)(half - max_exact);
    int64_t large = max_exact + (int64_t)r;
    if (large > half - 1) large = half - 1;
    return base + large;
}

lyra_status lyra_umt5_position_bias(const lyra_umt5 *m, int64_t layer, int64_t Lq, int64_t Lk, float *bias) {
    const lyra_umt5_config *c = &m->cfg;
    if (layer < 0 || layer >= c->layers)
        return lyra_error(LYRA_ERR_ARG, "umT5 position bias: layer %lld outside [0, %lld)", (long long)layer,
                          (long long)c->layers);
    if (Lq < 0 || Lk < 0) return lyra_error(LYRA_ERR_ARG, "umT5 position bias: negative length");
    const lyra_tensor *P = &m->blocks[layer].pos;
    if (P->device != LYRA_DEVICE_CPU || P->dtype != LYRA_DTYPE_F32)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "umT5 position bias: the table is not an f32 host tensor");
    const float *p = P->data;
    for (int64_t i = 0; i < Lq; i++)
        for (int64_t j = 0; j < Lk; j++) {
            int64_t bucket = lyra_umt5_bucket(j - i, c->buckets, c->max_dist);
            for (int64_t n = 0; n < c->heads; n++) bias[(n * Lq + i) * Lk + j] = p[bucket * c->heads + n];
        }
    return LYRA_OK;
}

/* ---------------------------------------------------------------- cost model */

/* Mirrors the allocations of lyra_umt5_encode (with L for the computed length, its maximum). */
size_t lyra_umt5_arena_bytes(const lyra_umt5_config *c, int64_t B, int64_t L) {
    return lyra_umt5_arena_bytes_as(c, B, L, LYRA_DTYPE_F32);
}

size_t lyra_umt5_arena_bytes_as(const lyra_umt5_config *c, int64_t B, int64_t L, lyra_dtype act) {
    int64_t D = c->dim, A = c->dim_attn, F = c->ffn, H = c->heads, BL = B * L, e = (int64_t)lyra_dtype_size(act);
    size_t bias = lyra_arena_size(H * L * L * 4); /* f32 position bias (the attention kernels' bias dtype) */
    size_t persistent = lyra_arena_size(BL * 4) + lyra_arena_size(BL) + lyra_arena_size(L * L * 4) +
                        lyra_arena_size(BL * D * e) + (c->shared_pos ? bias : 0);
    size_t attn = lyra_arena_size(BL * D * e) + 3 * lyra_arena_size(BL * A * e) + (c->shared_pos ? 0 : bias);
    size_t attn_tail = lyra_arena_size(BL * A * e) + lyra_arena_size(BL * D * e);
    attn += bias > attn_tail ? bias : attn_tail; /* the bias gather temp, then attention output + projection */
    size_t ffn = lyra_arena_size(BL * D * e) + 2 * lyra_arena_size(BL * F * e) + lyra_arena_size(BL * D * e);
    size_t peak = attn > ffn ? attn : ffn;
    if (c->shared_pos && bias > peak) peak = bias;
    return persistent + peak;
}

int64_t lyra_umt5_params(const lyra_umt5_config *c) {
    int64_t D = c->dim, A = c->dim_attn, F = c->ffn, pos = c->buckets * c->heads;
    int64_t block = 2 * D + 4 * D * A + 3 * D * F + (c->shared_pos ? 0 : pos);
    return c->vocab * D + D + c->layers * block + (c->shared_pos ? pos : 0);
}

double lyra_umt5_flops(const lyra_umt5_config *c, int64_t B, int64_t L) {
    double D = (double)c->dim, A = (double)c->dim_attn, F = (double)c->ffn, BL = (double)(B * L);
    double block = 2.0 * BL * D * A * 4.0   /* q, k, v, o */
                   + 2.0 * BL * (double)L * A * 2.0 /* Q·Kᵀ and P·V over all heads */
                   + 2.0 * BL * D * F * 3.0; /* gate, fc1, fc2 */
    return block * (double)c->layers;
}

/* ---------------------------------------------------------------- forward */

/* Host buffer -> tensor on the backend's device. */
static lyra_status upload(lyra_backend *be, lyra_tensor *dst, void *host) {
    lyra_tensor h = lyra_tensor_make(host, dst->dtype, dst->ndim, dst->ne);
    return lyra_op_upload(be, dst, &h);
}

static lyra_status view4(lyra_tensor *v, const lyra_tensor *t, int64_t B, int64_t L, int64_t H, int64_t Dh) {
    return lyra_tensor_reshape(v, t, 4, (int64_t[]){B, L, H, Dh});
}

/* bias (1, H, L, L) <- P[bucket(j − i), n] through an embedding gather into (L, L, H) and a permuting copy. */
static lyra_status gather_bias(lyra_backend *be, lyra_arena *a, lyra_tensor *bias, const lyra_tensor *table,
                               const lyra_tensor *buckets) {
    int64_t L = buckets->ne[0], H = table->ne[1];
    size_t mark = lyra_arena_mark(a);
    lyra_tensor e, ep, bv;
    LYRA_TRY(lyra_arena_tensor(a, &e, LYRA_DTYPE_F32, 3, (int64_t[]){L, L, H}, "umT5 bias gather"));
    LYRA_TRY(lyra_op_embedding(be, &e, table, buckets));
    LYRA_TRY(lyra_tensor_permute(&ep, &e, (int[]){2, 0, 1}));
    LYRA_TRY(lyra_tensor_reshape(&bv, bias, 3, (int64_t[]){H, L, L}));
    LYRA_TRY(lyra_op_copy(be, &bv, &ep));
    lyra_arena_reset(a, mark);
    return LYRA_OK;
}

typedef struct run {
    const lyra_umt5 *m;
    lyra_backend *be;
    lyra_arena *a;
    int64_t B, L;           /* L = the computed length */
    lyra_dtype act;         /* activation storage (m->act): the residual stream and every GEMM output */
    lyra_tensor x;          /* (B, L, D) residual stream */
    lyra_tensor mask;       /* (B, L) u8 */
    lyra_tensor buckets;    /* (L, L) i32 */
    lyra_tensor bias;       /* (1, H, L, L), the shared table's bias (T5) */
} run;

static lyra_status attn_part(run *r, const lyra_umt5_block *b) {
    const lyra_umt5_config *c = &r->m->cfg;
    lyra_backend *be = r->be;
    int64_t B = r->B, L = r->L, D = c->dim, A = c->dim_attn, H = c->heads;
    const int64_t ned[3] = {B, L, D}, nea[3] = {B, L, A};
    lyra_tensor h, q, k, v, bias, o, t, q4, k4, v4, o4;
    LYRA_TRY(lyra_arena_tensor(r->a, &h, r->act, 3, ned, "umT5 norm1"));
    LYRA_TRY(lyra_op_rms_norm(be, &h, &r->x, &b->norm1, RMS_EPS));
    LYRA_TRY(lyra_arena_tensor(r->a, &q, r->act, 3, nea, "umT5 q"));
    LYRA_TRY(lyra_arena_tensor(r->a, &k, r->act, 3, nea, "umT5 k"));
    LYRA_TRY(lyra_arena_tensor(r->a, &v, r->act, 3, nea, "umT5 v"));
    LYRA_TRY(lyra_op_linear(be, &q, &h, &b->q, NULL));
    LYRA_TRY(lyra_op_linear(be, &k, &h, &b->k, NULL));
    LYRA_TRY(lyra_op_linear(be, &v, &h, &b->v, NULL));
    if (c->shared_pos) {
        bias = r->bias;
    } else {
        LYRA_TRY(lyra_arena_tensor(r->a, &bias, LYRA_DTYPE_F32, 4, (int64_t[]){1, H, L, L}, "umT5 position bias"));
        LYRA_TRY(gather_bias(be, r->a, &bias, &b->pos, &r->buckets));
    }
    LYRA_TRY(lyra_arena_tensor(r->a, &o, r->act, 3, nea, "umT5 attention"));
    /* Head n = features [n·Dh, (n+1)·Dh) of q/k/v and of o's input (upstream T5:130-331 head layout). */
    LYRA_TRY(view4(&q4, &q, B, L, H, A / H));
    LYRA_TRY(view4(&k4, &k, B, L, H, A / H));
    LYRA_TRY(view4(&v4, &v, B, L, H, A / H));
    LYRA_TRY(view4(&o4, &o, B, L, H, A / H));
    /* T5 has no 1/sqrt(d) scaling; padded keys get probability exactly 0, as upstream's finfo.min fill does
     * (</s> is always a real key, upstream T5:130-331). */
    LYRA_TRY(lyra_op_attention(be, &o4, &q4, &k4, &v4, &bias, &r->mask, 1.0f));
    LYRA_TRY(lyra_arena_tensor(r->a, &t, r->act, 3, ned, "umT5 attention projection"));
    LYRA_TRY(lyra_op_linear(be, &t, &o, &b->o, NULL));
    return lyra_op_add(be, &r->x, &r->x, &t);
}

static lyra_status ffn_part(run *r, const lyra_umt5_block *b) {
    const lyra_umt5_config *c = &r->m->cfg;
    lyra_backend *be = r->be;
    const int64_t ned[3] = {r->B, r->L, c->dim}, nef[3] = {r->B, r->L, c->ffn};
    lyra_tensor h, u, g, t;
    LYRA_TRY(lyra_arena_tensor(r->a, &h, r->act, 3, ned, "umT5 norm2"));
    LYRA_TRY(lyra_op_rms_norm(be, &h, &r->x, &b->norm2, RMS_EPS));
    LYRA_TRY(lyra_arena_tensor(r->a, &u, r->act, 3, nef, "umT5 ffn fc1"));
    LYRA_TRY(lyra_arena_tensor(r->a, &g, r->act, 3, nef, "umT5 ffn gate"));
    LYRA_TRY(lyra_op_linear(be, &u, &h, &b->fc1, NULL));
    LYRA_TRY(lyra_op_linear(be, &g, &h, &b->gate, NULL));
    LYRA_TRY(lyra_op_glu(be, &u, &u, &g, LYRA_ACT_GELU_TANH)); /* fc1(h) ⊙ gelu_tanh(gate(h)) */
    LYRA_TRY(lyra_arena_tensor(r->a, &t, r->act, 3, ned, "umT5 ffn fc2"));
    LYRA_TRY(lyra_op_linear(be, &t, &u, &b->fc2, NULL));
    return lyra_op_add(be, &r->x, &r->x, &t);
}

/* Inputs moved to the device: ids (B, L) and mask (B, L) packed from the first L columns of (B, Lfull), and the
 * bucket table (L, L). */
static lyra_status stage_inputs(run *r, lyra_tensor *tids, const int32_t *ids, const uint8_t *mask, int64_t Lfull) {
    int64_t B = r->B, L = r->L;
    const lyra_umt5_config *c = &r->m->cfg;
    LYRA_TRY(lyra_arena_tensor(r->a, tids, LYRA_DTYPE_I32, 2, (int64_t[]){B, L}, "umT5 ids"));
    LYRA_TRY(lyra_arena_tensor(r->a, &r->mask, LYRA_DTYPE_U8, 2, (int64_t[]){B, L}, "umT5 mask"));
    LYRA_TRY(lyra_arena_tensor(r->a, &r->buckets, LYRA_DTYPE_I32, 2, (int64_t[]){L, L}, "umT5 buckets"));
    int32_t *hid = malloc(sizeof *hid * (size_t)(B * L));
    uint8_t *hmask = malloc((size_t)(B * L));
    int32_t *hbk = malloc(sizeof *hbk * (size_t)(L * L));
    lyra_status s = LYRA_OK;
    if (!hid || !hmask || !hbk) s = lyra_error(LYRA_ERR_OOM, "umT5: out of memory staging the inputs");
    if (s == LYRA_OK) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t l = 0; l < L; l++) {
                hid[b * L + l] = ids[b * Lfull + l];
                hmask[b * L + l] = mask[b * Lfull + l] != 0;
            }
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++) hbk[i * L + j] = (int32_t)lyra_umt5_bucket(j - i, c->buckets, c->max_dist);
        s = upload(r->be, tids, hid);
        if (s == LYRA_OK) s = upload(r->be, &r->mask, hmask);
        if (s == LYRA_OK) s = upload(r->be, &r->buckets, hbk);
    }
    free(hid);
    free(hmask);
    free(hbk);
    return s;
}

static lyra_status encode(const lyra_umt5 *m, lyra_backend *be, lyra_arena *a, lyra_tensor *out, const int32_t *ids,
                          const uint8_t *mask, int64_t B, int64_t Lfull, int64_t L) {
    const lyra_umt5_config *c = &m->cfg;
    run r = {.m = m, .be = be, .a = a, .B = B, .L = L, .act = m->act};
    lyra_tensor tids;
    LYRA_TRY(stage_inputs(&r, &tids, ids, mask, Lfull));
    LYRA_TRY(lyra_arena_tensor(a, &r.x, r.act, 3, (int64_t[]){B, L, c->dim}, "umT5 residual"));
    LYRA_TRY(lyra_op_embedding(be, &r.x, &m->token_embedding, &tids)); /* no sqrt(d) scaling (upstream T5:130-331) */
    if (c->shared_pos) {
        LYRA_TRY(lyra_arena_tensor(a, &r.bias, LYRA_DTYPE_F32, 4, (int64_t[]){1, c->heads, L, L}, "umT5 bias"));
        LYRA_TRY(gather_bias(be, a, &r.bias, &m->shared_pos, &r.buckets));
    }
    for (int64_t l = 0; l < c->layers; l++) {
        size_t mark = lyra_arena_mark(a);
        LYRA_TRY(attn_part(&r, &m->blocks[l]));
        lyra_arena_reset(a, mark);
        LYRA_TRY(ffn_part(&r, &m->blocks[l]));
        lyra_arena_reset(a, mark);
    }
    for (int64_t b = 0; b < B; b++) {
        lyra_tensor xb, ob, ob_rows;
        LYRA_TRY(lyra_tensor_slice(&xb, &r.x, 0, b, b + 1));
        LYRA_TRY(lyra_tensor_slice(&ob, out, 0, b, b + 1));
        LYRA_TRY(lyra_tensor_slice(&ob_rows, &ob, 1, 0, L));
        LYRA_TRY(lyra_op_rms_norm(be, &ob_rows, &xb, &m->norm, RMS_EPS));
    }
    return LYRA_OK;
}

lyra_status lyra_umt5_encode(const lyra_umt5 *m, lyra_backend *be, lyra_arena *arena, lyra_tensor *out,
                             const int32_t *ids, const uint8_t *mask, int64_t B, int64_t L, int zero_padded) {
    const lyra_umt5_config *c = &m->cfg;
    if (m->random.pending) /* deferred random weights (umt5.h): lyra_umt5_place fills them, on any backend */
        return lyra_error(LYRA_ERR_INTERNAL, "umT5: its random weights are not filled yet (lyra_umt5_place)");
    if (B < 1 || L < 1) return lyra_error(LYRA_ERR_ARG, "umT5: ids must be (B, L) with B, L >= 1");
    if (out->dtype != LYRA_DTYPE_F32 || out->ndim != 3 || out->ne[0] != B || out->ne[1] != L ||
        out->ne[2] != c->dim || !lyra_tensor_is_contiguous(out))
        return lyra_error(LYRA_ERR_ARG, "umT5: out must be a contiguous f32 (%lld, %lld, %lld) tensor", (long long)B,
                          (long long)L, (long long)c->dim);
    for (int64_t i = 0; i < B * L; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return lyra_error(LYRA_ERR_ARG, "umT5: ids[%lld, %lld] = %d is outside [0, %lld) (the vocabulary)",
                              (long long)(i / L), (long long)(i % L), (int)ids[i], (long long)c->vocab);
    /* seq_len per row as upstream counts it (mask.gt(0).sum); whether every row is a 1…1 0…0 prefix. */
    int64_t max_len = 0;
    int prefix = 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t l = 0; l < L; l++) {
            if (mask[b * L + l]) {
                if (n != l) prefix = 0;
                n++;
            }
        }
        if (n > max_len) max_len = n;
    }
    int64_t Lc = zero_padded && prefix ? max_len : L;
    size_t mark = lyra_arena_mark(arena);
    lyra_status s = LYRA_OK;
    if (Lc > 0) s = encode(m, be, arena, out, ids, mask, B, L, Lc);
    lyra_arena_reset(arena, mark);
    if (s != LYRA_OK || !zero_padded) return s;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t l = 0; l < L; l++) n += mask[b * L + l] != 0;
        if (n == L) continue;
        lyra_tensor ob, rows;
        LYRA_TRY(lyra_tensor_slice(&ob, out, 0, b, b + 1));
        LYRA_TRY(lyra_tensor_slice(&rows, &ob, 1, n, L));
        LYRA_TRY(lyra_op_fill(be, &rows, 0.0f));
    }
    return LYRA_OK;
}
