/* CPU attention: per (batch, head), query tiles of S = scale·Q·Kᵀ (+bias, mask) -> f32 softmax -> S·V.
 * Two SGEMMs per tile; the score tile is bounded (~4 MB) so long sequences (VAE middle attention: 6240 tokens,
 * DiT self-attention: ~38k tokens) never materialise the whole L×L matrix. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"

/* 1 when the (L, D) rows of t can be handed to BLAS directly (positive, aligned row stride >= D). */
static int rows_direct(const lyra_tensor *t) {
    return t->ne[1] <= 1 || (t->nb[1] > 0 && t->nb[1] % 4 == 0 && t->nb[1] / 4 >= t->ne[3]);
}

/* The (L, D) matrix of head h in batch b of a (B, L, H, D) tensor; packed into buf when its row stride is
 * unusable by BLAS (broadcast or unaligned). */
static const float *head_matrix(const lyra_tensor *t, int64_t b, int64_t h, float *buf, int64_t *ld) {
    int64_t L = t->ne[1], D = t->ne[3];
    const char *base = (const char *)t->data + b * t->nb[0] + h * t->nb[2];
    if (L <= 1) { *ld = D; return (const float *)base; }
    if (rows_direct(t)) { *ld = t->nb[1] / 4; return (const float *)base; }
    for (int64_t l = 0; l < L; l++) memcpy(buf + l * D, base + l * t->nb[1], (size_t)D * 4);
    *ld = D;
    return buf;
}

lyra_status cpu_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                          const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask, float scale) {
    LYRA_TRY(cpu_require_f32("attention", 5, o, q, k, v, bias));
    int64_t B = q->ne[0], Lq = q->ne[1], H = q->ne[2], D = q->ne[3];
    int64_t Lk = k->ne[1], Hk = k->ne[2], Dv = v->ne[3], group = H / Hk;
    if (B == 0 || Lq == 0 || H == 0 || Dv == 0) return LYRA_OK;
    int64_t tq = Lk ? ((int64_t)1 << 20) / Lk : Lq;
    if (tq < 16) tq = 16;
    if (tq > Lq) tq = Lq;
    int o_direct = o->nb[1] > 0 && o->nb[1] % 4 == 0 && o->nb[1] / 4 >= Dv;
    /* workspace: score tile, then pack buffers only for operands BLAS cannot read in place */
    int64_t nq_pack = rows_direct(q) ? 0 : Lq * D, nk_pack = rows_direct(k) ? 0 : Lk * D;
    int64_t nv_pack = rows_direct(v) ? 0 : Lk * Dv;
    size_t need = (size_t)(tq * (Lk ? Lk : 1) + nq_pack + nk_pack + nv_pack + (o_direct ? 0 : tq * Dv));
    float *ws = lyra_backend_scratch(be, need * sizeof(float), "attention");
    if (!ws) return LYRA_ERR_OOM;
    float *S = ws, *qb = S + tq * (Lk ? Lk : 1), *kb = qb + nq_pack, *vb = kb + nk_pack, *ob = vb + nv_pack;

    for (int64_t b = 0; b < B; b++) {
        const uint8_t *mask = key_mask ? (const uint8_t *)key_mask->data + b * key_mask->nb[0] : NULL;
        for (int64_t h = 0; h < H; h++) {
            int64_t ldq, ldk, ldv;
            const float *Q = head_matrix(q, b, h, qb, &ldq);
            const float *K = head_matrix(k, b, h / group, kb, &ldk);
            const float *V = head_matrix(v, b, h / group, vb, &ldv);
            const char *bias_bh = NULL;
            if (bias)
                bias_bh = (const char *)bias->data + (bias->ne[0] == 1 ? 0 : b * bias->nb[0]) +
                          (bias->ne[1] == 1 ? 0 : h * bias->nb[1]);
            for (int64_t q0 = 0; q0 < Lq; q0 += tq) {
                int64_t nq = Lq - q0 < tq ? Lq - q0 : tq;
                float *O;
                int64_t ldo;
                char *obase = (char *)o->data + b * o->nb[0] + h * o->nb[2] + q0 * o->nb[1];
                if (o_direct || nq == 1) { O = (float *)obase; ldo = nq == 1 ? Dv : o->nb[1] / 4; }
                else { O = ob; ldo = Dv; }
                if (Lk == 0) {
                    for (int64_t i = 0; i < nq; i++)
                        for (int64_t d = 0; d < Dv; d++) O[i * ldo + d] = 0.0f;
                } else {
                    cpu_sgemm(1, nq, Lk, D, scale, Q + q0 * ldq, ldq, K, ldk, 0.0f, S, Lk, be->n_threads);
#pragma omp parallel for num_threads(cpu_threads(be, nq * Lk)) schedule(static)
                    for (int64_t i = 0; i < nq; i++) {
                        float *s = S + i * Lk;
                        if (bias_bh) {
                            const char *br = bias_bh + (q0 + i) * bias->nb[2];
                            for (int64_t j = 0; j < Lk; j++) s[j] += *(const float *)(br + j * bias->nb[3]);
                        }
                        if (mask)
                            for (int64_t j = 0; j < Lk; j++)
                                if (!mask[j * key_mask->nb[1]]) s[j] = -INFINITY;
                        float mx = -INFINITY;
                        for (int64_t j = 0; j < Lk; j++) mx = s[j] > mx ? s[j] : mx;
                        if (mx == -INFINITY) { /* every key masked: defined as a zero output row */
                            for (int64_t j = 0; j < Lk; j++) s[j] = 0.0f;
                            continue;
                        }
                        float sum = 0.0f;
                        for (int64_t j = 0; j < Lk; j++) {
                            s[j] = expf(s[j] - mx);
                            sum += s[j];
                        }
                        float inv = 1.0f / sum;
                        for (int64_t j = 0; j < Lk; j++) s[j] *= inv;
                    }
                    cpu_sgemm(0, nq, Dv, Lk, 1.0f, S, Lk, V, ldv, 0.0f, O, ldo, be->n_threads);
                }
                if (O == ob)
                    for (int64_t i = 0; i < nq; i++) memcpy(obase + i * o->nb[1], ob + i * Dv, (size_t)Dv * 4);
            }
        }
    }
    return LYRA_OK;
}
