// GEMMs through cuBLASLt: a cached plan (descriptors + heuristic algorithm) per problem shape, with bias and
// GELU epilogues; a simple tiled kernel when cuBLASLt has no algorithm for a case (odd alignment, exotic
// types). Linear (x·wᵀ + b, optional activation), batched matmul, and the FP8 (e4m3) weight path.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

// ---------------------------------------------------------------- plan cache

typedef struct plan_key {
    int transa, transb, batch, gelu, has_bias, has_scales;
    int64_t M, N, K, lda, ldb, ldc, sa, sb, sc;
    int ta, tb, tc, tbias;
    int align_a, align_b, align_c, align_bias;
} plan_key;

struct cu_plan {
    plan_key key;
    int ok; /* 1: cuBLASLt found an algorithm; 0: use the fallback kernel */
    int next; /* next plan in the same hash bucket, -1 at the end */
    unsigned long long used; /* cache tick of the last lookup: the least recent is evicted when full */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

/* A bounded hash map from plan_key to plan: a network has a few dozen GEMM shapes, but a caller that varies a
 * length (tokens, frames) makes a new shape per call, so the cache keeps the PLAN_CAP most recently used. */
enum { PLAN_CAP = 256, PLAN_BUCKETS = 512 };

struct cu_plan_cache {
    cu_plan plans[PLAN_CAP];
    int n;
    int bucket[PLAN_BUCKETS]; /* first plan of each bucket, -1 when empty */
    unsigned long long tick;
};

static void plan_destroy(cu_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
}

void cu_plans_free(cuda_state *st) {
    cu_plan_cache *c = st->plans;
    if (!c) return;
    for (int i = 0; i < c->n; i++) plan_destroy(&c->plans[i]);
    free(c);
    st->plans = NULL;
}

/* FNV-1a over the key's bytes (keys are memset before filling, so padding bytes are zero). */
static unsigned plan_hash(const plan_key *k) {
    const unsigned char *b = (const unsigned char *)k;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ b[i]) * 16777619u;
    return h % PLAN_BUCKETS;
}

static void plan_unlink(cu_plan_cache *c, int i) {
    int *link = &c->bucket[plan_hash(&c->plans[i].key)];
    while (*link != i) link = &c->plans[*link].next;
    *link = c->plans[i].next;
}

static int batch_align(const void *p, int64_t stride, int es, int batch) {
    int a = cu_align_of(p);
    if (batch > 1 && stride) {
        int s = cu_align_of((const void *)(uintptr_t)(stride * es));
        if (s < a) a = s;
    }
    return a;
}

__host__ __device__ static inline int dt_size(int t) {
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16BF: case CUDA_R_16F: return 2;
    default: return 1;
    }
}

static lyra_status layout_make(cublasLtMatrixLayout_t *l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                               int batch, int64_t stride) {
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(l, t, (uint64_t)rows, (uint64_t)cols, ld), "gemm layout");
    if (batch > 1) {
        int32_t bc = batch;
        CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc), "gemm layout");
        CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                    sizeof stride),
                   "gemm layout");
    }
    return LYRA_OK;
}

/* The descriptor's per-call pointers (bias, FP8 scales): not part of the plan key, so set when the plan is built
 * and again on every call that reuses it. cuBLASLt's A scale is our B's and its B scale our A's (see below). */
static lyra_status desc_set_pointers(cu_plan *p, const cu_gemm_desc *g, const char *what) {
    if (g->bias)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias),
                   what);
    if (g->scale_b)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &g->scale_b,
                                                  sizeof g->scale_b),
                   what);
    if (g->scale_a)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &g->scale_a,
                                                  sizeof g->scale_a),
                   what);
    return LYRA_OK;
}

/* Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's A is our B and its B our A, with
 * m = N, n = M. A row-major r×c matrix is the column-major c×r matrix with the same ld. */
static lyra_status plan_build(cuda_state *st, cu_plan *p, const cu_gemm_desc *g) {
    const plan_key *k = &p->key;
    cublasOperation_t opa = g->transb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS A = our B */
    cublasOperation_t opb = g->transa ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS B = our A */
    CUBLAS_TRY(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "gemm descriptor");
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "gemm descriptor");
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "gemm descriptor");
    cublasLtEpilogue_t epi = g->bias ? (g->gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                     : (g->gelu ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT);
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "gemm descriptor");
    if (g->bias) {
        int32_t bt = (int32_t)g->tbias;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt),
                   "gemm descriptor");
    }
    LYRA_TRY(desc_set_pointers(p, g, "gemm descriptor"));
    if (g->transb)
        LYRA_TRY(layout_make(&p->la, g->tb, g->K, g->N, g->ldb, g->batch, g->sb));
    else
        LYRA_TRY(layout_make(&p->la, g->tb, g->N, g->K, g->ldb, g->batch, g->sb));
    if (g->transa)
        LYRA_TRY(layout_make(&p->lb, g->ta, g->M, g->K, g->lda, g->batch, g->sa));
    else
        LYRA_TRY(layout_make(&p->lb, g->ta, g->K, g->M, g->lda, g->batch, g->sa));
    LYRA_TRY(layout_make(&p->lc, g->tc, g->N, g->M, g->ldc, g->batch, g->sc));

    cublasLtMatmulPreference_t pref;
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref), "gemm preference");
    uint64_t ws = st->lt_ws_size;
    uint32_t aa = (uint32_t)k->align_b, ab = (uint32_t)k->align_a, ac = (uint32_t)k->align_c;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(st->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    /* "not supported" is an answer, not an error: the fallback kernel takes the case */
    p->ok = s == CUBLAS_STATUS_SUCCESS && nres > 0;
    if (p->ok) p->algo = res.algo;
    return LYRA_OK;
}

static lyra_status plan_get(cuda_state *st, const cu_gemm_desc *g, cu_plan **out) {
    plan_key k;
    memset(&k, 0, sizeof k);
    k.transa = g->transa;
    k.transb = g->transb;
    k.batch = g->batch;
    k.gelu = g->gelu;
    k.has_bias = g->bias != NULL;
    k.has_scales = (g->scale_a != NULL) | ((g->scale_b != NULL) << 1);
    k.M = g->M; k.N = g->N; k.K = g->K;
    k.lda = g->lda; k.ldb = g->ldb; k.ldc = g->ldc;
    k.sa = g->batch > 1 ? g->sa : 0;
    k.sb = g->batch > 1 ? g->sb : 0;
    k.sc = g->batch > 1 ? g->sc : 0;
    k.ta = (int)g->ta; k.tb = (int)g->tb; k.tc = (int)g->tc; k.tbias = g->bias ? (int)g->tbias : 0;
    k.align_a = batch_align(g->A, g->sa, dt_size(g->ta), g->batch);
    k.align_b = batch_align(g->B, g->sb, dt_size(g->tb), g->batch);
    k.align_c = batch_align(g->C, g->sc, dt_size(g->tc), g->batch);
    k.align_bias = g->bias ? cu_align_of(g->bias) : 0;
    if (!st->plans) {
        st->plans = (cu_plan_cache *)calloc(1, sizeof *st->plans);
        if (!st->plans) return lyra_error(LYRA_ERR_OOM, "gemm: cannot allocate the plan cache");
        for (int i = 0; i < PLAN_BUCKETS; i++) st->plans->bucket[i] = -1;
    }
    cu_plan_cache *c = st->plans;
    unsigned h = plan_hash(&k);
    for (int i = c->bucket[h]; i >= 0; i = c->plans[i].next)
        if (!memcmp(&c->plans[i].key, &k, sizeof k)) {
            c->plans[i].used = ++c->tick;
            *out = &c->plans[i];
            return LYRA_OK;
        }
    int slot = c->n;
    if (slot == PLAN_CAP) { /* full: evict the least recently used (a miss builds a plan, which costs far more) */
        slot = 0;
        for (int i = 1; i < PLAN_CAP; i++)
            if (c->plans[i].used < c->plans[slot].used) slot = i;
        plan_unlink(c, slot);
        plan_destroy(&c->plans[slot]);
    }
    cu_plan *p = &c->plans[slot];
    memset(p, 0, sizeof *p);
    p->key = k;
    lyra_status s = plan_build(st, p, g);
    if (s != LYRA_OK) {
        plan_destroy(p);
        if (slot < c->n) { /* an evicted slot in the middle: move the last plan into it to keep 0..n-1 filled */
            c->n--;
            if (slot != c->n) {
                plan_unlink(c, c->n);
                c->plans[slot] = c->plans[c->n];
                memset(&c->plans[c->n], 0, sizeof c->plans[c->n]);
                c->plans[slot].next = c->bucket[plan_hash(&c->plans[slot].key)];
                c->bucket[plan_hash(&c->plans[slot].key)] = slot;
            }
        }
        return s;
    }
    p->used = ++c->tick;
    p->next = c->bucket[h];
    c->bucket[h] = slot;
    if (slot == c->n) c->n++;
    *out = p;
    return LYRA_OK;
}

// ---------------------------------------------------------------- fallback kernel

__device__ __forceinline__ float ld_any(const void *base, int64_t idx, int t) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)base)[idx];
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)base)[idx]);
    case CUDA_R_16F: return __half2float(((const __half *)base)[idx]);
    default: { /* CUDA_R_8F_E4M3 */
        __nv_fp8_e4m3 v;
        v.__x = ((const __nv_fp8_storage_t *)base)[idx];
        return (float)v;
    }
    }
}

__device__ __forceinline__ void st_any(void *base, int64_t idx, int t, float v) {
    switch (t) {
    case CUDA_R_32F: ((float *)base)[idx] = v; break;
    case CUDA_R_16BF: ((__nv_bfloat16 *)base)[idx] = __float2bfloat16_rn(v); break;
    default: ((__half *)base)[idx] = __float2half_rn(v); break;
    }
}

__global__ void gemm_ref_kernel(cu_gemm_desc g) {
    __shared__ float As[16][17], Bs[16][17];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t bi = blockIdx.z;
    const char *A = (const char *)g.A + bi * g.sa * dt_size(g.ta);
    const char *B = (const char *)g.B + bi * g.sb * dt_size(g.tb);
    char *C = (char *)g.C + bi * g.sc * dt_size(g.tc);
    float sab = (g.scale_a ? *g.scale_a : 1.0f) * (g.scale_b ? *g.scale_b : 1.0f);
    int64_t mtiles = (g.M + 15) / 16;
    for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {
        int64_t m = mt * 16 + ty, n = (int64_t)blockIdx.x * 16 + tx;
        float acc = 0.0f;
        for (int64_t k0 = 0; k0 < g.K; k0 += 16) {
            int64_t ka = k0 + tx, kb = k0 + ty, nb = (int64_t)blockIdx.x * 16 + tx, ma = mt * 16 + ty;
            As[ty][tx] = (ma < g.M && ka < g.K) ? ld_any(A, g.transa ? ka * g.lda + ma : ma * g.lda + ka, g.ta) : 0.0f;
            Bs[ty][tx] = (kb < g.K && nb < g.N) ? ld_any(B, g.transb ? nb * g.ldb + kb : kb * g.ldb + nb, g.tb) : 0.0f;
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < 16; kk++) acc += As[ty][kk] * Bs[kk][tx];
            __syncthreads();
        }
        if (m < g.M && n < g.N) {
            float v = g.alpha * sab * acc;
            int64_t ci = m * g.ldc + n;
            if (g.beta != 0.0f) v += g.beta * ld_any(C, ci, g.tc);
            if (g.bias) v += ld_any(g.bias, n, g.tbias);
            if (g.gelu) v = cu_act(LYRA_ACT_GELU_TANH, v);
            st_any(C, ci, g.tc, v);
        }
    }
}

lyra_status cu_gemm(lyra_backend *be, const cu_gemm_desc *g) {
    if (g->M <= 0 || g->N <= 0 || g->batch <= 0) return LYRA_OK;
    cuda_state *st = cu_st(be);
    cu_plan *p = NULL;
    if (g->K > 0) LYRA_TRY(plan_get(st, g, &p));
    if (p && p->ok) {
        /* pointers that are not part of the key change per call */
        LYRA_TRY(desc_set_pointers(p, g, "gemm"));
        float alpha = g->alpha, beta = g->beta;
        CUBLAS_TRY(cublasLtMatmul(st->lt, p->desc, &alpha, g->B, p->la, g->A, p->lb, &beta, g->C, p->lc, g->C, p->lc,
                                  &p->algo, st->lt_ws, st->lt_ws_size, st->stream),
                   "gemm (cuBLASLt)");
        return LYRA_OK;
    }
    if (g->K > 0)
        cu_note_fallback(LYRA_CUDA_FALLBACK_GEMM,
                         "M=%lld N=%lld K=%lld batch=%d, types A/B/C %d/%d/%d, lda/ldb/ldc %lld/%lld/%lld, alignments "
                         "A/B/C %d/%d/%d bytes: cuBLASLt offered no algorithm",
                         (long long)g->M, (long long)g->N, (long long)g->K, g->batch, (int)g->ta, (int)g->tb,
                         (int)g->tc, (long long)g->lda, (long long)g->ldb, (long long)g->ldc, p->key.align_a,
                         p->key.align_b, p->key.align_c);
    dim3 block(16, 16);
    int64_t mt = (g->M + 15) / 16, nt = (g->N + 15) / 16;
    if (nt > 0x7fffffff || g->batch > 65535) return lyra_error(LYRA_ERR_ARG, "gemm: problem too large for the fallback kernel");
    dim3 grid((unsigned)nt, (unsigned)(mt < 65535 ? mt : 65535), (unsigned)g->batch);
    cu_launch(gemm_ref_kernel, grid, block, 0, st->stream, *g);
    CU_LAUNCHED("gemm (fallback kernel)");
    return LYRA_OK;
}

// ---------------------------------------------------------------- operands as matrices

/* t's dims before the last collapse to rows with one uniform row stride and a unit-stride last dim:
 * returns 1 and the row stride in elements (the CPU backend's as_matrix rule); else 0 (pack first). */
static int as_matrix(const lyra_tensor *t, int64_t *ld) {
    int n = t->ndim;
    int64_t es = (int64_t)lyra_dtype_size(t->dtype);
    int64_t cols = n ? t->ne[n - 1] : 1;
    if (n && cols > 1 && t->nb[n - 1] != es) return 0;
    if (n < 2) { *ld = cols; return 1; }
    int64_t rs = -1, expect = -1;
    for (int i = n - 2; i >= 0; i--) {
        if (t->ne[i] == 1) continue;
        if (rs < 0) {
            rs = t->nb[i];
            if (rs <= 0 || rs % es || rs / es < cols) return 0;
        } else if (t->nb[i] != expect) {
            return 0;
        }
        expect = t->nb[i] * t->ne[i];
    }
    *ld = rs < 0 ? cols : rs / es;
    return 1;
}

static int64_t rows_of(const lyra_tensor *t) {
    int64_t r = 1;
    for (int i = 0; i < t->ndim - 1; i++) r *= t->ne[i];
    return r;
}

/* (cols) vector as a packed vector of dtype dt (the bias epilogue's layout). */
static lyra_status vector_as(lyra_backend *be, const lyra_tensor *v, lyra_dtype dt, const void **data, void **owned) {
    lyra_tensor flat = *v;
    return cu_contiguous(be, &flat, dt, data, owned, "bias");
}

/* y = act(x·wᵀ + b). GEMM dtype = x's; w converted when it differs; y written directly when its dtype is the
 * GEMM dtype or f32 and its rows form a matrix, else through an f32 temporary. */
static lyra_status linear_impl(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                               const lyra_tensor *b, lyra_act act) {
    if (!cu_is_float(x->dtype) || !cu_is_float(y->dtype))
        return lyra_error(LYRA_ERR_TYPE, "linear: the CUDA backend computes f32/bf16/f16 activations");
    int64_t N = w->ne[0], K = w->ne[1], M = rows_of(x);
    if (M == 0 || N == 0) return LYRA_OK;
    lyra_dtype gt = x->dtype;
    int es = (int)lyra_dtype_size(gt);
    void *own[4] = {NULL, NULL, NULL, NULL};
    lyra_status s = LYRA_OK;
    const void *X = x->data, *W = w->data, *bias = NULL;
    int64_t ldx = K, ldw = K, ldy = N;
    if (!as_matrix(x, &ldx)) {
        s = cu_contiguous(be, x, gt, &X, &own[0], "linear x");
        ldx = K;
    }
    int w_direct = w->dtype == gt && (K <= 1 || w->nb[1] == es) &&
                   (N == 1 || (w->nb[0] > 0 && w->nb[0] % es == 0 && w->nb[0] >= K * es));
    if (s == LYRA_OK && w_direct) {
        ldw = N == 1 ? K : w->nb[0] / es;
    } else if (s == LYRA_OK) {
        s = cu_contiguous(be, w, gt, &W, &own[1], "linear w");
        ldw = K;
    }
    /* output */
    lyra_dtype tc = (y->dtype == gt || y->dtype == LYRA_DTYPE_F32) ? y->dtype : LYRA_DTYPE_F32;
    int y_direct = tc == y->dtype && as_matrix(y, &ldy);
    lyra_tensor out = *y;
    if (s == LYRA_OK && !y_direct) {
        out = lyra_tensor_make(NULL, tc, y->ndim, y->ne);
        out.device = LYRA_DEVICE_CUDA;
        out.data = cu_alloc(be, lyra_tensor_nbytes(&out), "linear output");
        if (!out.data) s = LYRA_ERR_OOM;
        own[2] = out.data;
        ldy = N;
    }
    if (s == LYRA_OK && b) s = vector_as(be, b, tc, &bias, &own[3]);
    /* the GELU epilogue is a (tanh) approximation evaluated by cuBLASLt: used for 16-bit outputs only, so
     * the f32 path stays bit-comparable to the CPU reference */
    int fuse = act == LYRA_ACT_GELU_TANH && tc != LYRA_DTYPE_F32;
    if (s == LYRA_OK && K == 0) {
        s = cu_op_fill(be, &out, 0.0f);
        if (s == LYRA_OK && b) {
            lyra_tensor bv = lyra_tensor_make((void *)bias, tc, 1, &N), bx;
            bv.device = LYRA_DEVICE_CUDA;
            int64_t ne[LYRA_MAX_DIMS];
            for (int i = 0; i < out.ndim; i++) ne[i] = i == out.ndim - 1 ? N : 1;
            s = lyra_tensor_reshape(&bx, &bv, out.ndim, ne);
            if (s == LYRA_OK) s = cu_op_add(be, &out, &out, &bx);
        }
        fuse = 0;
    } else if (s == LYRA_OK) {
        cu_gemm_desc g;
        memset(&g, 0, sizeof g);
        g.transa = 0;
        g.transb = 1;
        g.M = M; g.N = N; g.K = K;
        g.A = X; g.ta = cu_dt(gt); g.lda = ldx;
        g.B = W; g.tb = cu_dt(gt); g.ldb = ldw;
        g.C = out.data; g.tc = cu_dt(tc); g.ldc = ldy;
        g.batch = 1;
        g.alpha = 1.0f;
        g.bias = bias;
        g.tbias = cu_dt(tc);
        g.gelu = fuse;
        s = cu_gemm(be, &g);
    }
    if (s == LYRA_OK && act != LYRA_ACT_IDENTITY && !fuse) s = cu_op_unary(be, &out, &out, act);
    if (s == LYRA_OK && !y_direct) s = cu_copy(be, y, &out);
    for (int i = 0; i < 4; i++) cu_free(be, own[i]);
    return s;
}

lyra_status cu_op_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                         const lyra_tensor *b) {
    return linear_impl(be, y, x, w, b, LYRA_ACT_IDENTITY);
}

lyra_status cu_op_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             const lyra_tensor *b, lyra_act act) {
    return linear_impl(be, y, x, w, b, act);
}

/* One operand of a batched matmul as (batch stride, ld) over a 2-d or 3-d tensor whose last dim is contiguous;
 * 0 when it must be packed. A size-1 batch broadcasts (stride 0). */
static int as_batched(const lyra_tensor *t, int64_t *ld, int64_t *bs) {
    int n = t->ndim, bd = n - 2;
    int64_t es = (int64_t)lyra_dtype_size(t->dtype), rows = t->ne[bd], cols = t->ne[bd + 1];
    if (cols > 1 && t->nb[bd + 1] != es) return 0;
    if (rows > 1 && (t->nb[bd] <= 0 || t->nb[bd] % es || t->nb[bd] / es < cols)) return 0;
    *ld = rows > 1 ? t->nb[bd] / es : cols;
    *bs = 0;
    if (bd && t->ne[0] > 1) {
        if (t->nb[0] <= 0 || t->nb[0] % es) return 0;
        *bs = t->nb[0] / es;
    }
    return 1;
}

lyra_status cu_op_matmul(lyra_backend *be, lyra_tensor *c, const lyra_tensor *a, const lyra_tensor *b, int trans_b,
                         float alpha) {
    if (!cu_is_float(c->dtype)) return lyra_error(LYRA_ERR_TYPE, "matmul: c must be f32, bf16 or f16");
    int bd = c->ndim - 2;
    int64_t B = bd ? c->ne[0] : 1, M = c->ne[bd], N = c->ne[bd + 1], K = a->ne[bd + 1];
    if (!B || !M || !N) return LYRA_OK;
    lyra_dtype gt = (a->dtype == b->dtype) ? a->dtype : LYRA_DTYPE_F32;
    void *own[3] = {NULL, NULL, NULL};
    lyra_status s = LYRA_OK;
    const lyra_tensor *ops[2] = {a, b};
    const void *data[2];
    int64_t ld[2], bs[2];
    for (int i = 0; i < 2 && s == LYRA_OK; i++) {
        const lyra_tensor *t = ops[i];
        if (t->dtype == gt && as_batched(t, &ld[i], &bs[i])) {
            data[i] = t->data;
        } else {
            s = cu_contiguous(be, t, gt, &data[i], &own[i], "matmul operand");
            ld[i] = t->ne[bd + 1];
            bs[i] = (bd && t->ne[0] > 1) ? t->ne[bd] * t->ne[bd + 1] : 0;
        }
    }
    lyra_dtype tc = (c->dtype == gt || c->dtype == LYRA_DTYPE_F32) ? c->dtype : LYRA_DTYPE_F32;
    int64_t ldc = N, bsc = M * N;
    int c_direct = tc == c->dtype && as_batched(c, &ldc, &bsc) && (!bd || B == 1 || bsc != 0);
    lyra_tensor out = *c;
    if (s == LYRA_OK && !c_direct) {
        out = lyra_tensor_make(NULL, tc, c->ndim, c->ne);
        out.device = LYRA_DEVICE_CUDA;
        out.data = cu_alloc(be, lyra_tensor_nbytes(&out), "matmul output");
        if (!out.data) s = LYRA_ERR_OOM;
        own[2] = out.data;
        ldc = N;
        bsc = M * N;
    }
    cu_gemm_desc g;
    memset(&g, 0, sizeof g);
    g.transa = 0;
    g.transb = trans_b;
    g.M = M; g.N = N; g.K = K;
    g.ta = g.tb = cu_dt(gt);
    g.tc = cu_dt(tc);
    g.lda = ld[0]; g.ldb = ld[1]; g.ldc = ldc;
    g.alpha = alpha;
    if (s == LYRA_OK && K == 0) {
        s = cu_op_fill(be, &out, 0.0f);
    } else if (s == LYRA_OK && (B == 1 || (bs[0] && bs[1]))) {
        g.A = data[0]; g.B = data[1]; g.C = out.data;
        g.sa = bs[0]; g.sb = bs[1]; g.sc = bsc;
        g.batch = (int)B;
        s = cu_gemm(be, &g);
    } else if (s == LYRA_OK) {
        /* a broadcast operand (batch stride 0): one GEMM per batch */
        int e = (int)lyra_dtype_size(gt), ec = (int)lyra_dtype_size(tc);
        g.batch = 1;
        for (int64_t i = 0; i < B && s == LYRA_OK; i++) {
            g.A = (const char *)data[0] + i * bs[0] * e;
            g.B = (const char *)data[1] + i * bs[1] * e;
            g.C = (char *)out.data + i * bsc * ec;
            s = cu_gemm(be, &g);
        }
    }
    if (s == LYRA_OK && !c_direct) s = cu_copy(be, c, &out);
    for (int i = 0; i < 3; i++) cu_free(be, own[i]);
    return s;
}

// ---------------------------------------------------------------- FP8 (e4m3)

namespace {

constexpr float E4M3_MAX = 448.0f;

/* *amax = max |t| over all elements (float bits compare like ints for non-negative values). */
__global__ void amax_kernel(cu_tensor t, int64_t total, unsigned *amax) {
    __shared__ float sh[32];
    float m = 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, off = 0;
        for (int d = t.ndim - 1; d >= 0; d--) {
            off += (r % t.ne[d]) * t.nb[d];
            r /= t.ne[d];
        }
        m = fmaxf(m, fabsf(cu_load(t.data + off, t.dtype)));
    }
    m = cu_block_max_nonneg(m, sh);
    if (threadIdx.x == 0) atomicMax(amax, __float_as_uint(m));
}

/* scale[r] = max |w[r, :]| / 448 (1 for an all-zero row), one block per row of a 2-d tensor. */
__global__ void row_scale_kernel(cu_tensor w, float *scale) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x, K = w.ne[1];
    float m = 0.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, fabsf(cu_load(w.data + r * w.nb[0] + k * w.nb[1], w.dtype)));
    m = cu_block_max_nonneg(m, sh);
    if (threadIdx.x == 0) scale[r] = m > 0.0f ? m / E4M3_MAX : 1.0f;
}

__global__ void amax_to_scale_kernel(const unsigned *amax, float *scale) {
    float m = __uint_as_float(*amax);
    *scale = m > 0.0f ? m / E4M3_MAX : 1.0f;
}

/* q (rows, cols) contiguous e4m3 = t / scale[row or 0], saturating at ±448. */
__global__ void quantize_kernel(__nv_fp8_storage_t *q, cu_tensor t, const float *scale, int per_row, int64_t cols,
                                int64_t total) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, off = 0;
        for (int d = t.ndim - 1; d >= 0; d--) {
            off += (r % t.ne[d]) * t.nb[d];
            r /= t.ne[d];
        }
        float s = scale[per_row ? i / cols : 0];
        q[i] = __nv_cvt_float_to_fp8(cu_load(t.data + off, t.dtype) / s, __NV_SATFINITE, __NV_E4M3);
    }
}

/* Eight consecutive elements from a 16-byte aligned address as floats (one 16-byte load for bf16/f16, two
 * for f32): the contiguous activation path of linear_fp8 reads each byte once, in full 16-byte transactions. */
__device__ __forceinline__ void load8(const char *p, int dt, float v[8]) {
    if (dt == LYRA_DTYPE_F32) {
        float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        return;
    }
    uint4 r = *reinterpret_cast<const uint4 *>(p);
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint16_t lo = (uint16_t)(w[i] & 0xffffu), hi = (uint16_t)(w[i] >> 16);
        if (dt == LYRA_DTYPE_BF16) {
            v[2 * i] = __uint_as_float((uint32_t)lo << 16);
            v[2 * i + 1] = __uint_as_float((uint32_t)hi << 16);
        } else {
            v[2 * i] = __half2float(__ushort_as_half(lo));
            v[2 * i + 1] = __half2float(__ushort_as_half(hi));
        }
    }
}

/* *amax = max |x| over n8 groups of 8 contiguous elements. */
__global__ void amax_contig_kernel(const char *x, int dt, int64_t n8, unsigned *amax) {
    __shared__ float sh[32];
    int step = 8 * cu_esize(dt);
    float m = 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        float v[8];
        load8(x + i * step, dt, v);
#pragma unroll
        for (int e = 0; e < 8; e++) m = fmaxf(m, fabsf(v[e]));
    }
    m = cu_block_max_nonneg(m, sh);
    if (threadIdx.x == 0) atomicMax(amax, __float_as_uint(m));
}

/* q = x / scale[0] as e4m3 (saturating), 8 contiguous elements per step, one 8-byte store each. */
__global__ void quantize_contig_kernel(uint2 *q, const char *x, int dt, const float *scale, int64_t n8) {
    int step = 8 * cu_esize(dt);
    float inv = 1.0f / scale[0];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        float v[8];
        load8(x + i * step, dt, v);
        uint32_t w[4];
#pragma unroll
        for (int e = 0; e < 4; e++)
            w[e] = __nv_cvt_float2_to_fp8x2(make_float2(v[2 * e] * inv, v[2 * e + 1] * inv), __NV_SATFINITE,
                                            __NV_E4M3);
        q[i] = make_uint2(w[0] | (w[1] << 16), w[2] | (w[3] << 16));
    }
}

/* y[m, n] = acc[m, n]·scale[n] + b[n] (per-channel dequantisation after an unscaled FP8 GEMM). */
__global__ void channel_scale_kernel(char *y, int ydt, int64_t ldy, const float *acc, int64_t ldacc,
                                     const float *scale, const char *b, int bdt, int64_t bnb, int64_t M, int64_t N) {
    int64_t total = M * N;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t m = i / N, n = i % N;
        float v = acc[m * ldacc + n] * scale[n];
        if (b) v += cu_load(b + n * bnb, bdt);
        cu_store(y + (m * ldy + n) * cu_esize(ydt), ydt, v);
    }
}

} // namespace

extern "C" lyra_status lyra_cuda_quantize_fp8(lyra_backend *be, lyra_tensor *w8, lyra_tensor *scale,
                                             const lyra_tensor *w) {
    if (!be || be->device != LYRA_DEVICE_CUDA) return lyra_error(LYRA_ERR_ARG, "quantize_fp8: needs the CUDA backend");
    cu_device_scope on(cu_st(be)->device);
    if (w->ndim != 2 || !cu_is_float(w->dtype)) return lyra_error(LYRA_ERR_ARG, "quantize_fp8: w must be (N, K) float");
    int64_t N = w->ne[0], K = w->ne[1];
    if (w8->dtype != LYRA_DTYPE_U8 || !lyra_tensor_same_shape(w8, w) || !lyra_tensor_is_contiguous(w8))
        return lyra_error(LYRA_ERR_ARG, "quantize_fp8: w8 must be a contiguous (N, K) u8 tensor");
    int per_row = scale->ndim == 1 && scale->ne[0] == N && N > 1;
    if (scale->dtype != LYRA_DTYPE_F32 || scale->ndim != 1 || (scale->ne[0] != 1 && scale->ne[0] != N) ||
        !lyra_tensor_is_contiguous(scale))
        return lyra_error(LYRA_ERR_ARG, "quantize_fp8: scale must be f32 (1) or (N)");
    cuda_state *st = cu_st(be);
    int64_t total = N * K;
    if (!total) return LYRA_OK;
    cu_tensor t = cu_tensor_of(w);
    if (per_row) {
        cu_launch(row_scale_kernel, (unsigned)N, 256, 0, st->stream, t, (float *)scale->data);
    } else {
        CU_TRY(cudaMemsetAsync(st->d_flag, 0, sizeof(unsigned), st->stream), "quantize_fp8");
        cu_launch(amax_kernel, cu_blocks(total, 256) > 1024 ? 1024 : cu_blocks(total, 256), 256, 0, st->stream,
            t, total, (unsigned *)st->d_flag);
        cu_launch(amax_to_scale_kernel, 1, 1, 0, st->stream, (const unsigned *)st->d_flag, (float *)scale->data);
    }
    cu_launch(quantize_kernel, cu_blocks(total, 256), 256, 0, st->stream, (__nv_fp8_storage_t *)w8->data, t,
                                                                  (const float *)scale->data, per_row, K, total);
    CU_LAUNCHED("quantize_fp8");
    return LYRA_OK;
}

extern "C" lyra_status lyra_cuda_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x,
                                           const lyra_tensor *w8, const lyra_tensor *scale, const lyra_tensor *b) {
    if (!be || be->device != LYRA_DEVICE_CUDA) return lyra_error(LYRA_ERR_ARG, "linear_fp8: needs the CUDA backend");
    cu_device_scope on(cu_st(be)->device);
    if (w8->ndim != 2 || w8->dtype != LYRA_DTYPE_U8 || !lyra_tensor_is_contiguous(w8))
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: w8 must be a contiguous (N, K) u8 (e4m3) tensor");
    int64_t N = w8->ne[0], K = w8->ne[1], M = rows_of(x), ldy;
    if (x->ndim < 1 || x->ne[x->ndim - 1] != K || !cu_is_float(x->dtype))
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: x must be (..., %lld) float", (long long)K);
    if (y->ndim != x->ndim || y->ne[y->ndim - 1] != N || rows_of(y) != M ||
        (y->dtype != LYRA_DTYPE_BF16 && y->dtype != LYRA_DTYPE_F32) || !as_matrix(y, &ldy))
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: y must be (..., %lld) bf16/f32 with contiguous rows", (long long)N);
    if (scale->dtype != LYRA_DTYPE_F32 || scale->ndim != 1 || (scale->ne[0] != 1 && scale->ne[0] != N))
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: scale must be f32 (1) or (N)");
    if (b && (b->ndim != 1 || b->ne[0] != N || !cu_is_float(b->dtype)))
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: b must be (N) float");
    /* cuBLASLt's FP8 kernels need K % 16 == 0 and 16-byte aligned matrices and leading dimensions; outside
     * that no algorithm exists and only the naive kernel could run, hundreds of times slower */
    if (K % 16)
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: K = %lld must be a multiple of 16 (cuBLASLt's FP8 kernels)",
                          (long long)K);
    if ((uintptr_t)w8->data % 16)
        return lyra_error(LYRA_ERR_ARG, "linear_fp8: w8 must start at a 16-byte aligned address");
    int per_channel = scale->ne[0] == N && N > 1;
    int yes = (int)lyra_dtype_size(y->dtype);
    if (!per_channel && M && N && ((uintptr_t)y->data % 16 || (M > 1 && (ldy * yes) % 16)))
        return lyra_error(LYRA_ERR_ARG,
                          "linear_fp8: y's rows must start 16-byte aligned for cuBLASLt's FP8 kernels (row stride "
                          "%lld bytes)",
                          (long long)(ldy * yes));
    if (!M || !N) return LYRA_OK;
    cuda_state *st = cu_st(be);
    /* x8 (M, K) e4m3, then the per-tensor activation scale (one float after it, 256-byte aligned) */
    size_t xbytes = ((size_t)(M * K) + 255) & ~(size_t)255;
    char *buf = (char *)cu_alloc(be, xbytes + 256, "linear_fp8 activations");
    if (!buf) return LYRA_ERR_OOM;
    float *xs = (float *)(buf + xbytes);
    void *own[2] = {NULL, NULL};
    lyra_status s = LYRA_OK;
    cu_tensor t = cu_tensor_of(x);
    int64_t total = M * K;
    cudaError_t e = cudaMemsetAsync(st->d_flag, 0, sizeof(unsigned), st->stream);
    if (e != cudaSuccess) s = cu_error(e, "linear_fp8");
    /* contiguous 16-byte aligned x (the usual case; total is a multiple of 16 since K is): 8 elements per step */
    int contig = lyra_tensor_is_contiguous(x) && (uintptr_t)x->data % 16 == 0;
    if (s == LYRA_OK && total) {
        unsigned nb = cu_blocks(contig ? total / 8 : total, 256);
        if (contig)
            cu_launch(amax_contig_kernel, nb > 1024 ? 1024 : nb, 256, 0, st->stream, (const char *)x->data,
                      (int)x->dtype, total / 8, (unsigned *)st->d_flag);
        else
            cu_launch(amax_kernel, nb > 1024 ? 1024 : nb, 256, 0, st->stream, t, total, (unsigned *)st->d_flag);
        cu_launch(amax_to_scale_kernel, 1, 1, 0, st->stream, (const unsigned *)st->d_flag, xs);
        if (contig)
            cu_launch(quantize_contig_kernel, nb, 256, 0, st->stream, (uint2 *)buf, (const char *)x->data,
                      (int)x->dtype, xs, total / 8);
        else
            cu_launch(quantize_kernel, nb, 256, 0, st->stream, (__nv_fp8_storage_t *)buf, t, xs, 0, K, total);
        e = cudaGetLastError();
        if (e != cudaSuccess) s = cu_error(e, "linear_fp8 quantize");
    }
    cu_gemm_desc g;
    memset(&g, 0, sizeof g);
    g.transa = 0;
    g.transb = 1;
    g.M = M; g.N = N; g.K = K;
    g.A = buf; g.ta = CUDA_R_8F_E4M3; g.lda = K;
    g.B = w8->data; g.tb = CUDA_R_8F_E4M3; g.ldb = K;
    g.batch = 1;
    g.alpha = 1.0f;
    g.scale_a = xs;
    if (s == LYRA_OK && !per_channel) {
        g.scale_b = (const float *)scale->data;
        g.C = y->data; g.tc = cu_dt(y->dtype); g.ldc = ldy;
        if (b) {
            /* cuBLASLt's FP8 kernels take a bf16 bias for bf16 and for f32 outputs (an f32 bias finds no
             * algorithm) */
            const void *bias;
            s = vector_as(be, b, LYRA_DTYPE_BF16, &bias, &own[0]);
            g.bias = bias;
            g.tbias = CUDA_R_16BF;
        }
        if (s == LYRA_OK) s = cu_gemm(be, &g);
    } else if (s == LYRA_OK) {
        int64_t lda = (N + 3) & ~(int64_t)3; /* rows 16-byte aligned, as cuBLASLt's FP8 kernels need */
        float *acc = (float *)cu_alloc(be, (size_t)(M * lda) * sizeof(float), "linear_fp8 accumulator");
        own[1] = acc;
        if (!acc) s = LYRA_ERR_OOM;
        g.C = acc; g.tc = CUDA_R_32F; g.ldc = lda;
        if (s == LYRA_OK) s = cu_gemm(be, &g);
        if (s == LYRA_OK) {
            cu_launch(channel_scale_kernel, cu_blocks(M * N, 256), 256, 0, st->stream,
                (char *)y->data, (int)y->dtype, ldy, acc, lda, (const float *)scale->data,
                b ? (const char *)b->data : NULL, b ? (int)b->dtype : 0, b ? b->nb[0] : 0, M, N);
            e = cudaGetLastError();
            if (e != cudaSuccess) s = cu_error(e, "linear_fp8 channel scale");
        }
    }
    cu_free(be, own[0]);
    cu_free(be, own[1]);
    cu_free(be, buf);
    return s;
}
