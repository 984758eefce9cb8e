/* CPU GEMM: OpenBLAS sgemm when available (plain C fallback), Linear with f32/bf16/f16 weights, batched matmul. */
#include "nn/cpu/cpu_internal.h"

#ifdef LYRA2_HAVE_CBLAS
#include <cblas.h>
#endif

/* Fallback kernels: parallel over rows of C; inner loops are unit-stride so -O3 vectorises them. */
static void sgemm_nt_ref(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int nt) {
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < M; i++) {
        const float *a = A + i * lda;
        float *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++) {
            const float *b = B + j * ldb;
            float acc[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int u = 0; u < 8; u++) acc[u] += a[k + u] * b[k + u];
            float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            for (; k < K; k++) s += a[k] * b[k];
            c[j] = alpha * s + (beta == 0.0f ? 0.0f : beta * c[j]);
        }
    }
}

static void sgemm_nn_ref(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int nt) {
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) {
            for (int64_t j = 0; j < N; j++) c[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
        for (int64_t k = 0; k < K; k++) {
            float a = alpha * A[i * lda + k];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

void cpu_sgemm_ref(int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int n_threads) {
    int nt = M * N * K < (1 << 18) ? 1 : n_threads;
    if (trans_b)
        sgemm_nt_ref(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nt);
    else
        sgemm_nn_ref(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nt);
}

#ifdef LYRA2_HAVE_CBLAS
/* One thread pool. OpenBLAS's own pthreads and the backend's OpenMP team used to share the cores: after every
 * OpenMP region (norms, pointwise ops, attention) its workers keep spinning while OpenBLAS's threads wait for
 * a core, and OpenBLAS's threads yield-spin while the OpenMP ops run (measured: 2-thread networks 2–3× behind
 * PyTorch at equal single-thread GEMM speed). So OpenBLAS runs single-threaded and cpu_sgemm splits C into
 * n_threads blocks computed by the OpenMP team, each a single-threaded sgemm. */
static void blas_one_thread(void) {
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        openblas_set_num_threads(1);
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
}

static void blas_sgemm(int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (lda < K) lda = K; /* only reached for M == 1, where lda is irrelevant but BLAS checks it */
    int64_t bcols = trans_b ? K : N;
    if (ldb < bcols) ldb = bcols;
    if (ldc < N) ldc = N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,
                (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
#endif

void cpu_sgemm(int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int n_threads) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* C = beta·C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
#ifdef LYRA2_HAVE_CBLAS
    blas_one_thread();
    int nt = n_threads > 1 && M * N * K >= ((int64_t)1 << 21) ? n_threads : 1;
    if (nt == 1) {
        blas_sgemm(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the longer side of C; blocks are multiples of the micro-kernel sizes (16 rows, 64 columns) so
     * no thread gets a ragged kernel edge it would not have had anyway. The other operand is packed by every
     * thread: O(K·N) copies against O(M·N·K / nt) multiply-adds. */
    int split_rows = M >= N;
    int64_t len = split_rows ? M : N, unit = split_rows ? 16 : 64;
    int64_t chunk = ((len + nt - 1) / nt + unit - 1) / unit * unit;
    int nblk = (int)((len + chunk - 1) / chunk);
#pragma omp parallel for num_threads(nblk) schedule(static)
    for (int t = 0; t < nblk; t++) {
        int64_t s0 = t * chunk, n = len - s0 < chunk ? len - s0 : chunk;
        if (split_rows)
            blas_sgemm(trans_b, n, N, K, alpha, A + s0 * lda, lda, B, ldb, beta, C + s0 * ldc, ldc);
        else
            blas_sgemm(trans_b, M, n, K, alpha, A, lda, trans_b ? B + s0 * ldb : B + s0, ldb, beta, C + s0, ldc);
    }
#else
    cpu_sgemm_ref(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, n_threads);
#endif
}

/* If t's dims other than the last two... collapse to a 2-d (rows, cols) matrix with a unit-stride last dim
 * and a uniform row stride, returns 1 and the row stride in elements; else 0 (the caller packs). */
static int as_matrix(const lyra_tensor *t, int64_t *ld) {
    int n = t->ndim;
    int64_t es = (int64_t)lyra_dtype_size(t->dtype);
    int64_t cols = n ? t->ne[n - 1] : 1;
    if (n && cols > 1 && t->nb[n - 1] != es) return 0;
    if (n < 2) { *ld = cols; return 1; }
    int64_t rs = -1; /* stride of the innermost row dim with size > 1 */
    int64_t expect = -1;
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

lyra_status cpu_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                       const lyra_tensor *b) {
    LYRA_TRY(cpu_require_f32("linear", 2, y, x));
    int64_t N = w->ne[0], K = w->ne[1], M = cpu_rows(x);
    int64_t ldx = K, ldy = N, ldw = K;
    int pack_x = !as_matrix(x, &ldx), tmp_y = !as_matrix(y, &ldy);
    int conv_w = w->dtype != LYRA_DTYPE_F32 || w->nb[1] != 4 || (w->ne[0] > 1 && (w->nb[0] % 4 || w->nb[0] < 4 * K));
    if (!conv_w) ldw = w->ne[0] > 1 ? w->nb[0] / 4 : K;
    /* Converted weight tiles: ~4 MB of f32 rows at a time (bf16 checkpoints are never upcast whole). */
    int64_t tile = conv_w ? (K ? (int64_t)(1 << 20) / K : N) : N;
    if (tile < 16) tile = 16;
    if (tile > N) tile = N;
    int64_t nb_bias = cpu_f32_need(b);
    size_t need = (size_t)((pack_x ? M * K : 0) + (tmp_y ? M * N : 0) + (conv_w ? tile * K : 0) + nb_bias);
    float *ws = lyra_backend_scratch(be, need * sizeof(float), "linear");
    if (!ws) return LYRA_ERR_OOM;
    float *xp = ws, *yp = xp + (pack_x ? M * K : 0), *wt = yp + (tmp_y ? M * N : 0), *bb = wt + (conv_w ? tile * K : 0);
    const float *X = (const float *)x->data;
    if (pack_x) { cpu_gather_f32(xp, x); X = xp; ldx = K; }
    float *Y = tmp_y ? yp : (float *)y->data;
    if (tmp_y) ldy = N;
    const float *bias = cpu_as_f32(b, bb);
    int nt = be->n_threads;

    for (int64_t n0 = 0; n0 < N; n0 += tile) {
        int64_t nn = N - n0 < tile ? N - n0 : tile;
        const float *W;
        int64_t ld;
        if (conv_w) {
            /* Converting a tile is O(nn·K) against the GEMM's O(M·nn·K); the same OpenMP team then runs the
             * sgemm (cpu_sgemm), so splitting it costs no thread hand-over. */
#pragma omp parallel for num_threads(cpu_threads(be, nn * K)) schedule(static)
            for (int64_t r = 0; r < nn; r++) {
                const char *src = (const char *)w->data + (n0 + r) * w->nb[0];
                if (w->nb[1] == (int64_t)lyra_dtype_size(w->dtype)) {
                    lyra_convert_to_f32(wt + r * K, src, w->dtype, K);
                } else {
                    for (int64_t k = 0; k < K; k++) wt[r * K + k] = cpu_load(src + k * w->nb[1], w->dtype);
                }
            }
            W = wt;
            ld = K;
        } else {
            W = (const float *)w->data + n0 * ldw;
            ld = ldw;
        }
        cpu_sgemm(1, M, nn, K, 1.0f, X, ldx, W, ld, 0.0f, Y + n0, ldy, nt);
    }
    if (bias) {
#pragma omp parallel for num_threads(cpu_threads(be, M * N)) schedule(static)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) Y[i * ldy + j] += bias[j];
    }
    if (tmp_y) {
        lyra_tensor src = lyra_tensor_make(Y, LYRA_DTYPE_F32, y->ndim, y->ne);
        return cpu_copy(be, y, &src);
    }
    return LYRA_OK;
}

/* 2-d operand of one batch as a plain matrix: the tensor's own memory when possible, else packed. */
static const float *batch_matrix(const lyra_tensor *t, int64_t bidx, float *buf, int64_t *ld) {
    lyra_tensor m = *t;
    if (t->ndim == 3) {
        m.data = (char *)t->data + (t->ne[0] == 1 ? 0 : bidx) * t->nb[0];
        m.ndim = 2;
        m.ne[0] = t->ne[1]; m.ne[1] = t->ne[2];
        m.nb[0] = t->nb[1]; m.nb[1] = t->nb[2];
    }
    if (m.dtype == LYRA_DTYPE_F32 && as_matrix(&m, ld)) return (const float *)m.data;
    cpu_gather_f32(buf, &m);
    *ld = m.ne[1];
    return buf;
}

lyra_status cpu_matmul(lyra_backend *be, lyra_tensor *c, const lyra_tensor *a, const lyra_tensor *b, int trans_b,
                       float alpha) {
    LYRA_TRY(cpu_require_f32("matmul", 1, c));
    int bd = c->ndim - 2;
    int64_t B = bd ? c->ne[0] : 1, M = c->ne[bd], N = c->ne[bd + 1], K = a->ne[bd + 1];
    int64_t na = M * K, nbm = K * N, ncm = M * N;
    int64_t ldc;
    int tmp_c = !as_matrix(c, &ldc) || (bd && c->nb[0] != c->nb[1] * M);
    float *ws = lyra_backend_scratch(be, (size_t)(na + nbm + (tmp_c ? B * ncm : 0)) * sizeof(float), "matmul");
    if (!ws) return LYRA_ERR_OOM;
    float *abuf = ws, *bbuf = ws + na, *cbuf = bbuf + nbm;
    for (int64_t i = 0; i < B; i++) {
        int64_t lda, ldb;
        const float *A = batch_matrix(a, i, abuf, &lda);
        const float *Bm = batch_matrix(b, i, bbuf, &ldb);
        float *C;
        int64_t ld;
        if (tmp_c) {
            C = cbuf + i * ncm;
            ld = N;
        } else {
            C = (float *)((char *)c->data + (bd ? i * c->nb[0] : 0));
            ld = ldc;
        }
        cpu_sgemm(trans_b, M, N, K, alpha, A, lda, Bm, ldb, 0.0f, C, ld, be->n_threads);
    }
    if (tmp_c) {
        lyra_tensor src = lyra_tensor_make(cbuf, LYRA_DTYPE_F32, c->ndim, c->ne);
        return cpu_copy(be, c, &src);
    }
    return LYRA_OK;
}

/* No fusion on the CPU: the GEMM, then the activation in place. */
lyra_status cpu_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b, lyra_act act) {
    LYRA_TRY(cpu_linear(be, y, x, w, b));
    return act == LYRA_ACT_IDENTITY ? LYRA_OK : cpu_unary(be, y, y, act);
}
