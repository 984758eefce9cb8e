/* CPU attention, flash style: softmax(scale·Q·Kᵀ + bias, masked keys -> -inf)·V without an Lq×Lk matrix.
 *
 * Per (batch, kv head) the keys are packed once, transposed in panels of KP keys (D × KP floats each), so the
 * score kernel streams one panel row per multiply; the values are packed in panels of VP columns (Lk × VP floats),
 * so P·V streams contiguous lines too. Then blocks of BQ queries (of every head and batch whose
 * keys are packed) run in parallel, each against blocks of BK keys: S = (scale·Q)·Kᵀ for the block, an online softmax in f32
 * (running row max m and sum l; O is rescaled by e^(m_old − m_new) when the max grows), O += P·V. The per
 * thread working set (BQ×(D + BK + Dv) floats, ~170 KB at D = 128) stays in L2, where the two-SGEMM version
 * streamed a 4 MB score tile through memory twice and ran a scalar exp. Everything is own code: no BLAS
 * call inside the OpenMP region, so OpenBLAS's threads never compete with these. */
#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/cpu/cpu_internal.h"
#include "nn/cpu/cpu_flash.h"

enum {
    KP = CPU_FLASH_KP, /* keys per packed panel */
    VP = CPU_FLASH_VP, /* value columns per packed panel */
    MR = CPU_FLASH_MR, /* query rows per micro-kernel step */
    BK = 256,          /* keys per online-softmax block */
    BQ = 60,           /* query rows per task (a multiple of MR) */
};

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* One task's view of the problem. */
typedef struct {
    const cpu_flash_kernels *kern;
    const float *Kt;   /* packed keys of this kv head: panels of (D, KP), Lk rounded up to KP */
    const float *V;    /* packed values of this kv head: column panels of (Lk rounded up to KP, VP) */
    int64_t vps;       /* floats from one value column panel to the next */
    const char *bias;  /* bias of (b, h) at query row 0, or NULL; element (i, j) at i·bias_ri + j·bias_cj bytes */
    int64_t bias_ri, bias_cj;
    const uint8_t *mask; /* key mask of batch b (stride mask_s bytes), or NULL */
    int64_t mask_s;
    int64_t D, Dv, Dvp, Lk; /* Dvp: Dv rounded up to VP (zero columns) */
} attn_head;

/* Online softmax over one block of scores for nq rows (row stride BK): bias, mask, padding -> -inf;
 * updates the running max m and sum l, rescales the rows of O (stride ldo) and leaves P = e^(S − m) in S. */
static void softmax_block(const attn_head *h, int64_t q0, int64_t nq, int64_t k0, int64_t nk, float *S, float *m,
                          float *l, float *O, int64_t ldo) {
    int64_t nkp = round_up(nk, KP);
    for (int64_t i = 0; i < nq; i++) {
        float *s = S + i * BK; /* already scaled: the query rows were packed times scale */
        if (h->bias) {
            const char *br = h->bias + (q0 + i) * h->bias_ri + k0 * h->bias_cj;
            for (int64_t j = 0; j < nk; j++) s[j] += *(const float *)(br + j * h->bias_cj);
        }
        if (h->mask)
            for (int64_t j = 0; j < nk; j++)
                if (!h->mask[(k0 + j) * h->mask_s]) s[j] = -INFINITY;
        for (int64_t j = nk; j < nkp; j++) s[j] = -INFINITY;
        float mx = h->kern->row_max(s, nkp, m[i]);
        if (mx == -INFINITY) { /* every key so far masked: this block adds nothing */
            for (int64_t j = 0; j < nkp; j++) s[j] = 0.0f;
            continue;
        }
        float sum = h->kern->exp_sum(s, nkp, mx);
        float alpha = m[i] == -INFINITY ? 0.0f : expf(m[i] - mx);
        if (alpha != 1.0f) {
            float *o = O + i * ldo;
            for (int64_t d = 0; d < h->Dvp; d++) o[d] *= alpha;
        }
        l[i] = l[i] * alpha + sum;
        m[i] = mx;
    }
}

/* Rows [q0, q0 + nq) of one head: Q (nq rows of D, packed, zero rows up to a multiple of MR) -> O (rows of
 * ldo floats, not yet divided by l). S is BQ×BK scratch. */
static void attend_rows(const attn_head *h, int64_t q0, int64_t nq, const float *Q, float *S, float *O, int64_t ldo,
                        float *m, float *l) {
    int64_t nr = round_up(nq, MR);
    for (int64_t i = 0; i < nr; i++) { m[i] = -INFINITY; l[i] = 0.0f; }
    memset(O, 0, (size_t)(nr * ldo) * sizeof(float));
    for (int64_t k0 = 0; k0 < h->Lk; k0 += BK) {
        int64_t nk = h->Lk - k0 < BK ? h->Lk - k0 : BK;
        h->kern->scores(Q, nr, h->D, h->Kt + k0 * h->D, round_up(nk, KP), S, BK);
        softmax_block(h, q0, nq, k0, nk, S, m, l, O, ldo);
        for (int64_t i = nq; i < nr; i++) memset(S + i * BK, 0, (size_t)nk * sizeof(float)); /* padding rows */
        h->kern->pv(S, BK, nr, nk, h->V + k0 * VP, h->vps, h->Dvp, O, ldo);
    }
}

/* Packs panel p of the (Lk, D) keys at base (row stride rs bytes): keys p·KP.. transposed, zero-padded. */
static void pack_panel(float *Kt, const char *base, int64_t rs, int64_t Lk, int64_t D, int64_t p) {
    float *dst = Kt + p * KP * D;
    for (int64_t j = 0; j < KP; j++) {
        int64_t key = p * KP + j;
        if (key < Lk) {
            const float *row = (const float *)(base + key * rs);
            for (int64_t d = 0; d < D; d++) dst[d * KP + j] = row[d];
        } else {
            for (int64_t d = 0; d < D; d++) dst[d * KP + j] = 0.0f;
        }
    }
}

/* Packs the values of key panel p (keys p·KP..) of the (Lk, Dv) values at base (row stride rs bytes) into the
 * column panels of Vp (panel c at Vp + c·vps, key j's row at j·VP), zero-padded past Lk and Dv. */
static void pack_values(float *Vp, int64_t vps, const char *base, int64_t rs, int64_t Lk, int64_t Dv, int64_t p) {
    for (int64_t c0 = 0; c0 < Dv; c0 += VP) {
        int64_t n = Dv - c0 < VP ? Dv - c0 : VP;
        float *dst = Vp + (c0 / VP) * vps + p * KP * VP;
        for (int64_t j = 0; j < KP; j++, dst += VP) {
            int64_t key = p * KP + j, have = key < Lk ? n : 0;
            if (have) memcpy(dst, base + key * rs + c0 * 4, (size_t)have * 4);
            for (int64_t c = have; c < VP; c++) dst[c] = 0.0f;
        }
    }
}

/* Packed keys and values of several (batch, kv head) units are built at once, up to this many floats, so a
 * whole attention is usually one OpenMP region with one barrier (between packing and the query tasks). */
#define PACK_FLOATS ((int64_t)16 << 20)

lyra_status cpu_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                          const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask, float scale) {
    LYRA_TRY(cpu_require_f32("attention", 5, o, q, k, v, bias));
    int64_t B = q->ne[0], Lq = q->ne[1], H = q->ne[2], D = q->ne[3];
    int64_t Lk = k->ne[1], Hk = k->ne[2], Dv = v->ne[3], group = H / Hk;
    if (B == 0 || Lq == 0 || H == 0 || Dv == 0) return LYRA_OK;
    if (Lk == 0) { /* softmax over no keys: defined as zero rows */
        return cpu_fill(be, o, 0.0f);
    }
    const cpu_flash_kernels *kern = cpu_flash_select();
    int64_t nblk = (Lq + BQ - 1) / BQ, npanel = round_up(Lk, KP) / KP, ldo = round_up(Dv, VP);
    int64_t vps = npanel * KP * VP;
    int64_t kt_n = round_up(npanel * KP * D, 16), vp_n = (ldo / VP) * vps;
    int64_t units = B * Hk, per_chunk = PACK_FLOATS / (kt_n + vp_n);
    if (per_chunk < 1) per_chunk = 1;
    if (per_chunk > units) per_chunk = units;
    int nt = cpu_threads(be, Lq * Lk * D * H * B);
    if (nt > per_chunk * group * nblk) nt = (int)(per_chunk * group * nblk);
    int64_t per_thread = round_up(BQ * D, 16) + BQ * BK + BQ * ldo + 2 * BQ;
    float *ws = lyra_backend_scratch(be, (size_t)(per_chunk * (kt_n + vp_n) + nt * per_thread) * sizeof(float),
                                     "attention");
    if (!ws) return LYRA_ERR_OOM;
    float *Kt = ws, *Vp = Kt + per_chunk * kt_n, *tbuf = Vp + per_chunk * vp_n;

    for (int64_t u0 = 0; u0 < units; u0 += per_chunk) {
        int64_t nu = units - u0 < per_chunk ? units - u0 : per_chunk, ntask = nu * group * nblk;
#pragma omp parallel num_threads(nt)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
#pragma omp for schedule(static)
            for (int64_t t = 0; t < nu * npanel; t++) {
                int64_t u = u0 + t / npanel, b = u / Hk, hk = u % Hk;
                pack_panel(Kt + (t / npanel) * kt_n, (const char *)k->data + b * k->nb[0] + hk * k->nb[2], k->nb[1],
                           Lk, D, t % npanel);
                pack_values(Vp + (t / npanel) * vp_n, vps, (const char *)v->data + b * v->nb[0] + hk * v->nb[2],
                            v->nb[1], Lk, Dv, t % npanel);
            }
            float *Qb = tbuf + tid * per_thread, *S = Qb + round_up(BQ * D, 16), *O = S + BQ * BK;
            float *m = O + BQ * ldo, *l = m + BQ;
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < ntask; t++) {
                int64_t ui = t / (group * nblk), u = u0 + ui, b = u / Hk, hk = u % Hk;
                int64_t hh = hk * group + (t / nblk) % group, q0 = (t % nblk) * BQ;
                int64_t nq = Lq - q0 < BQ ? Lq - q0 : BQ;
                attn_head h = {.kern = kern, .Kt = Kt + ui * kt_n, .V = Vp + ui * vp_n, .vps = vps, .D = D, .Dv = Dv,
                               .Dvp = ldo, .Lk = Lk};
                if (key_mask) {
                    h.mask = (const uint8_t *)key_mask->data + b * key_mask->nb[0];
                    h.mask_s = key_mask->nb[1];
                }
                if (bias) {
                    h.bias = (const char *)bias->data + (bias->ne[0] == 1 ? 0 : b * bias->nb[0]) +
                             (bias->ne[1] == 1 ? 0 : hh * bias->nb[1]);
                    h.bias_ri = bias->nb[2];
                    h.bias_cj = bias->nb[3];
                }
                const char *qbase = (const char *)q->data + b * q->nb[0] + hh * q->nb[2];
                for (int64_t i = 0; i < round_up(nq, MR); i++) {
                    if (i >= nq) { memset(Qb + i * D, 0, (size_t)D * 4); continue; }
                    const float *src = (const float *)(qbase + (q0 + i) * q->nb[1]);
                    for (int64_t d = 0; d < D; d++) Qb[i * D + d] = src[d] * scale;
                }
                attend_rows(&h, q0, nq, Qb, S, O, ldo, m, l);
                char *obase = (char *)o->data + b * o->nb[0] + hh * o->nb[2];
                for (int64_t i = 0; i < nq; i++) {
                    float *dst = (float *)(obase + (q0 + i) * o->nb[1]);
                    float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f; /* every key masked: a zero row */
                    for (int64_t d = 0; d < Dv; d++) dst[d] = O[i * ldo + d] * inv;
                }
            }
        }
    }
    return LYRA_OK;
}
