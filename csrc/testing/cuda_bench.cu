// Measurements behind benchmarks/kernels.py: GEMMs, attention and one full-width DiT block on random bf16 data.
// Every timed repeat starts with a write over a buffer larger than the L2 cache (so weights are not served from
// L2), is timed with CUDA events on the backend's stream, and the median over the repeats is reported.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>

#include "cuda_bench.h"
#include "nn/cuda/cuda_internal.h"
#include "nn/ops.h"

namespace {

constexpr size_t L2_FLUSH_BYTES = (size_t)256 << 20; /* > 5× the H100's 50 MB L2 */

/* Deterministic pseudo-random values, uniform in [-scale, scale). */
__global__ void random_kernel(char *p, int dt, int64_t n, float scale, uint64_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull + seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float u = (float)(z >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
        cu_store(p + i * cu_esize(dt), dt, (2.0f * u - 1.0f) * scale);
    }
}

struct bench_mem {
    lyra_backend *be;
    void *ptrs[64];
    int n;
    uint64_t seed;
    ~bench_mem() {
        for (int i = 0; i < n; i++) cu_free(be, ptrs[i]);
    }
    /* a contiguous device tensor filled with uniform values in [-scale, scale) (scale 0: left uninitialised) */
    lyra_status tensor(lyra_tensor *t, lyra_dtype dt, std::initializer_list<int64_t> shape, float scale) {
        int64_t ne[LYRA_MAX_DIMS];
        int ndim = 0;
        for (int64_t v : shape) ne[ndim++] = v;
        *t = lyra_tensor_make(NULL, dt, ndim, ne);
        t->device = LYRA_DEVICE_CUDA;
        if (n == 64) return lyra_error(LYRA_ERR_INTERNAL, "bench: too many tensors");
        t->data = cu_alloc(be, lyra_tensor_nbytes(t) ? lyra_tensor_nbytes(t) : 1, "bench tensor");
        if (!t->data) return LYRA_ERR_OOM;
        ptrs[n++] = t->data;
        int64_t cnt = lyra_tensor_numel(t);
        if (scale > 0.0f && cnt) {
            cu_launch(random_kernel, cu_blocks(cnt, 256), 256, 0, cu_st(be)->stream, (char *)t->data, (int)dt, cnt, scale,
                                                                             seed += 0x1234567ull);
            CU_LAUNCHED("bench random");
        }
        return LYRA_OK;
    }
};

/* CUDA events around phases of one run; elapsed time is accumulated per category. */
struct phase_timer {
    cudaEvent_t ev[96];
    int cat[96];
    int n;
    cudaStream_t s;
    lyra_status mark(int category) { /* the segment that ends here belongs to `category` */
        if (n == 96) return lyra_error(LYRA_ERR_INTERNAL, "bench: too many phases");
        CU_TRY(cudaEventCreate(&ev[n]), "bench event");
        CU_TRY(cudaEventRecord(ev[n], s), "bench event");
        cat[n++] = category;
        return LYRA_OK;
    }
    ~phase_timer() {
        for (int i = 0; i < n; i++) cudaEventDestroy(ev[i]);
    }
};

int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median ms of fn over `repeat` timed runs after one warm-up, the L2 flushed before each. */
template <typename F>
lyra_status time_median(lyra_backend *be, int repeat, F fn, double *ms) {
    cuda_state *st = cu_st(be);
    if (repeat < 1) repeat = 1;
    if (repeat > 64) repeat = 64;
    void *flush = cu_alloc(be, L2_FLUSH_BYTES, "bench L2 flush");
    if (!flush) return LYRA_ERR_OOM;
    cudaEvent_t a = NULL, b = NULL;
    double t[64];
    lyra_status s = fn();
    cudaError_t e = cudaSuccess;
    if (s == LYRA_OK) e = cudaEventCreate(&a);
    if (e == cudaSuccess) e = cudaEventCreate(&b);
    for (int r = 0; r < repeat && s == LYRA_OK && e == cudaSuccess; r++) {
        e = cudaMemsetAsync(flush, r & 0xff, L2_FLUSH_BYTES, st->stream);
        if (e == cudaSuccess) e = cudaEventRecord(a, st->stream);
        if (e != cudaSuccess) break;
        s = fn();
        if (s != LYRA_OK) break;
        e = cudaEventRecord(b, st->stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(b);
        float f = 0.0f;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&f, a, b);
        t[r] = f;
    }
    if (s == LYRA_OK && e != cudaSuccess) s = cu_error(e, "bench timing");
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    cu_free(be, flush);
    if (s != LYRA_OK) return s;
    qsort(t, (size_t)repeat, sizeof t[0], cmp_double);
    *ms = repeat % 2 ? t[repeat / 2] : 0.5 * (t[repeat / 2 - 1] + t[repeat / 2]);
    return LYRA_OK;
}

lyra_status need_cuda(lyra_backend *be) {
    if (!be || be->device != LYRA_DEVICE_CUDA) return lyra_error(LYRA_ERR_ARG, "bench: needs the CUDA backend");
    return LYRA_OK;
}

} // namespace

extern "C" lyra_status lyra_cuda_bench_linear(lyra_backend *be, int64_t M, int64_t N, int64_t K, int mode, int repeat,
                                              double *ms) {
    LYRA_TRY(need_cuda(be));
    cu_device_scope on(cu_st(be)->device); /* its events and timings belong to the backend's device */
    if (mode < 0 || mode > 5) return lyra_error(LYRA_ERR_ARG, "bench_linear: mode must be 0..5");
    bench_mem mem{be, {}, 0, 1};
    lyra_dtype dt = mode == 4 ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16;
    lyra_tensor x, w, y, b, w8, sc;
    float ws = 1.0f / sqrtf((float)(K > 0 ? K : 1));
    LYRA_TRY(mem.tensor(&x, dt, {M, K}, 1.0f));
    LYRA_TRY(mem.tensor(&w, dt, {N, K}, ws));
    LYRA_TRY(mem.tensor(&y, dt, {M, N}, 0.0f));
    LYRA_TRY(mem.tensor(&b, dt, {N}, 0.1f));
    if (mode == 2 || mode == 3) {
        LYRA_TRY(mem.tensor(&w8, LYRA_DTYPE_U8, {N, K}, 0.0f));
        LYRA_TRY(mem.tensor(&sc, LYRA_DTYPE_F32, {mode == 2 ? 1 : N}, 0.0f));
        LYRA_TRY(lyra_cuda_quantize_fp8(be, &w8, &sc, &w));
        return time_median(be, repeat, [&]() { return lyra_cuda_linear_fp8(be, &y, &x, &w8, &sc, NULL); }, ms);
    }
    if (mode == 5) { /* the DiT's fp8 Linear: per-token codes of x on the device, then the scaled FP8 GEMM */
        lyra_tensor q, xs;
        LYRA_TRY(mem.tensor(&w8, LYRA_DTYPE_U8, {N, K}, 0.0f));
        LYRA_TRY(mem.tensor(&sc, LYRA_DTYPE_F32, {N}, 0.0f));
        LYRA_TRY(mem.tensor(&q, LYRA_DTYPE_U8, {M, K}, 0.0f));
        LYRA_TRY(mem.tensor(&xs, LYRA_DTYPE_F32, {M}, 0.0f));
        LYRA_TRY(lyra_cuda_quantize_fp8(be, &w8, &sc, &w));
        return time_median(be, repeat, [&]() {
            lyra_status s = lyra_op_quantize_fp8_rows(be, &q, &xs, &x);
            return s == LYRA_OK ? lyra_op_linear_fp8(be, &y, &q, &xs, &w8, &sc, &b) : s;
        }, ms);
    }
    if (mode == 1)
        return time_median(be, repeat, [&]() { return lyra_op_linear_act(be, &y, &x, &w, &b, LYRA_ACT_GELU_TANH); }, ms);
    return time_median(be, repeat, [&]() { return lyra_op_linear(be, &y, &x, &w, NULL); }, ms);
}

extern "C" lyra_status lyra_cuda_bench_attention(lyra_backend *be, int64_t Lq, int64_t Lk, int64_t H, int64_t D,
                                                 int repeat, double *ms) {
    LYRA_TRY(need_cuda(be));
    cu_device_scope on(cu_st(be)->device); /* its events and timings belong to the backend's device */
    bench_mem mem{be, {}, 0, 2};
    lyra_tensor q, k, v, o;
    LYRA_TRY(mem.tensor(&q, LYRA_DTYPE_BF16, {1, Lq, H, D}, 1.0f));
    LYRA_TRY(mem.tensor(&k, LYRA_DTYPE_BF16, {1, Lk, H, D}, 1.0f));
    LYRA_TRY(mem.tensor(&v, LYRA_DTYPE_BF16, {1, Lk, H, D}, 1.0f));
    LYRA_TRY(mem.tensor(&o, LYRA_DTYPE_BF16, {1, Lq, H, D}, 0.0f));
    float scale = 1.0f / sqrtf((float)D);
    return time_median(be, repeat, [&]() { return lyra_op_attention(be, &o, &q, &k, &v, NULL, NULL, scale); }, ms);
}

namespace {

/* Categories of the block's phases (ms[1..6] of lyra_cuda_bench_dit_block). */
enum { PH_SELF_PROJ = 1, PH_SELF_ATTN, PH_CROSS_PROJ, PH_CROSS_ATTN, PH_FFN, PH_POINTWISE };

struct dit_block_bench {
    lyra_backend *be;
    int64_t L, H, hd, D, F, Lt, Li;
    lyra_tensor x, mod, kqb, phi, ctx_t, ctx_i;
    lyra_tensor wq, wk, wv, wo, bq, bk, bv, bo, gq, gk;                /* self-attention */
    lyra_tensor cwq, cwk, cwv, cwki, cwvi, cwo, cbq, cbo, cgq, cgk, cgki; /* cross-attention */
    lyra_tensor n3w, n3b, w0, b0, w2, b2;                               /* norm3, FFN */
    lyra_tensor n, kq, q, k, v, o, a, kt, vt, ki, vi, oi, hbuf;         /* activations */
    phase_timer *tm;

    lyra_status mark(int c) { return tm ? tm->mark(c) : LYRA_OK; }

    lyra_status heads(lyra_tensor *v4, const lyra_tensor *t) {
        int64_t ne[4] = {1, t->ne[1], H, hd};
        return lyra_tensor_reshape(v4, t, 4, ne);
    }

    lyra_status run() {
        lyra_backend *b = be;
        lyra_tensor sh1, sc1, g1, sh2, sc2, g2, q4, k4, v4, o4, kt4, vt4, ki4, vi4, oi4;
        LYRA_TRY(lyra_tensor_slice(&sh1, &mod, 1, 0, 1));
        LYRA_TRY(lyra_tensor_slice(&sc1, &mod, 1, 1, 2));
        LYRA_TRY(lyra_tensor_slice(&g1, &mod, 1, 2, 3));
        LYRA_TRY(lyra_tensor_slice(&sh2, &mod, 1, 3, 4));
        LYRA_TRY(lyra_tensor_slice(&sc2, &mod, 1, 4, 5));
        LYRA_TRY(lyra_tensor_slice(&g2, &mod, 1, 5, 6));
        const float eps = 1e-6f, scale = 1.0f / sqrtf((float)hd);
        LYRA_TRY(mark(0));
        /* self-attention (upstream WL:150-212, W:280-437): adaLN, kq-bias on q/k only, q/k RMSNorm, RoPE, gated
         * residual */
        LYRA_TRY(lyra_op_layer_norm(b, &n, &x, NULL, NULL, eps));
        LYRA_TRY(lyra_op_modulate(b, &n, &n, &sh1, &sc1));
        LYRA_TRY(lyra_op_add(b, &kq, &kqb, &n));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_linear(b, &q, &kq, &wq, &bq));
        LYRA_TRY(mark(PH_SELF_PROJ));
        LYRA_TRY(lyra_op_rms_norm(b, &q, &q, &gq, eps));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_linear(b, &k, &kq, &wk, &bk));
        LYRA_TRY(mark(PH_SELF_PROJ));
        LYRA_TRY(lyra_op_rms_norm(b, &k, &k, &gk, eps));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_linear(b, &v, &n, &wv, &bv));
        LYRA_TRY(mark(PH_SELF_PROJ));
        LYRA_TRY(heads(&q4, &q));
        LYRA_TRY(heads(&k4, &k));
        LYRA_TRY(heads(&v4, &v));
        LYRA_TRY(heads(&o4, &o));
        LYRA_TRY(lyra_op_rope(b, &q4, &q4, &phi, LYRA_ROPE_INTERLEAVED, 1));
        LYRA_TRY(lyra_op_rope(b, &k4, &k4, &phi, LYRA_ROPE_INTERLEAVED, 1));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_attention(b, &o4, &q4, &k4, &v4, NULL, NULL, scale));
        LYRA_TRY(mark(PH_SELF_ATTN));
        LYRA_TRY(lyra_op_linear(b, &a, &o, &wo, &bo));
        LYRA_TRY(mark(PH_SELF_PROJ));
        LYRA_TRY(lyra_op_gate(b, &x, &x, &g1, &a));
        /* cross-attention: text and image keys, two softmaxes summed before the output projection */
        LYRA_TRY(lyra_op_layer_norm(b, &n, &x, &n3w, &n3b, eps));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_linear(b, &q, &n, &cwq, &cbq));
        LYRA_TRY(lyra_op_linear(b, &kt, &ctx_t, &cwk, NULL));
        LYRA_TRY(lyra_op_linear(b, &vt, &ctx_t, &cwv, NULL));
        LYRA_TRY(lyra_op_linear(b, &ki, &ctx_i, &cwki, NULL));
        LYRA_TRY(lyra_op_linear(b, &vi, &ctx_i, &cwvi, NULL));
        LYRA_TRY(mark(PH_CROSS_PROJ));
        LYRA_TRY(lyra_op_rms_norm(b, &q, &q, &cgq, eps));
        LYRA_TRY(lyra_op_rms_norm(b, &kt, &kt, &cgk, eps));
        LYRA_TRY(lyra_op_rms_norm(b, &ki, &ki, &cgki, eps));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(heads(&q4, &q));
        LYRA_TRY(heads(&kt4, &kt));
        LYRA_TRY(heads(&vt4, &vt));
        LYRA_TRY(heads(&ki4, &ki));
        LYRA_TRY(heads(&vi4, &vi));
        LYRA_TRY(heads(&oi4, &oi));
        LYRA_TRY(lyra_op_attention(b, &o4, &q4, &kt4, &vt4, NULL, NULL, scale));
        LYRA_TRY(lyra_op_attention(b, &oi4, &q4, &ki4, &vi4, NULL, NULL, scale));
        LYRA_TRY(mark(PH_CROSS_ATTN));
        LYRA_TRY(lyra_op_add(b, &o, &o, &oi));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_linear(b, &a, &o, &cwo, &cbo));
        LYRA_TRY(mark(PH_CROSS_PROJ));
        LYRA_TRY(lyra_op_add(b, &x, &x, &a));
        /* FFN: adaLN, Linear + GELU(tanh) fused, Linear, gated residual */
        LYRA_TRY(lyra_op_layer_norm(b, &n, &x, NULL, NULL, eps));
        LYRA_TRY(lyra_op_modulate(b, &n, &n, &sh2, &sc2));
        LYRA_TRY(mark(PH_POINTWISE));
        LYRA_TRY(lyra_op_linear_act(b, &hbuf, &n, &w0, &b0, LYRA_ACT_GELU_TANH));
        LYRA_TRY(lyra_op_linear(b, &a, &hbuf, &w2, &b2));
        LYRA_TRY(mark(PH_FFN));
        LYRA_TRY(lyra_op_gate(b, &x, &x, &g2, &a));
        LYRA_TRY(mark(PH_POINTWISE));
        return LYRA_OK;
    }
};

} // namespace

extern "C" lyra_status lyra_cuda_bench_dit_block(lyra_backend *be, int64_t L, int64_t heads, int64_t head_dim,
                                                 int64_t F, int64_t Lt, int64_t Li, int repeat, double ms[7]) {
    LYRA_TRY(need_cuda(be));
    cu_device_scope on(cu_st(be)->device); /* its events and timings belong to the backend's device */
    if (L < 1 || heads < 1 || head_dim < 2 || head_dim % 2 || F < 1 || Lt < 1 || Li < 1)
        return lyra_error(LYRA_ERR_ARG, "bench_dit_block: sizes must be positive (head_dim even)");
    bench_mem mem{be, {}, 0, 3};
    dit_block_bench d{};
    d.be = be;
    d.L = L; d.H = heads; d.hd = head_dim; d.D = heads * head_dim; d.F = F; d.Lt = Lt; d.Li = Li;
    const lyra_dtype bf = LYRA_DTYPE_BF16;
    int64_t D = d.D;
    float wsD = 1.0f / sqrtf((float)D), wsF = 1.0f / sqrtf((float)F);
    LYRA_TRY(mem.tensor(&d.x, bf, {1, L, D}, 1.0f));
    LYRA_TRY(mem.tensor(&d.mod, bf, {1, 6, D}, 0.1f));
    LYRA_TRY(mem.tensor(&d.kqb, bf, {1, L, D}, 0.1f));
    LYRA_TRY(mem.tensor(&d.phi, LYRA_DTYPE_F32, {L, head_dim / 2}, 8.0f));
    LYRA_TRY(mem.tensor(&d.ctx_t, bf, {1, Lt, D}, 1.0f));
    LYRA_TRY(mem.tensor(&d.ctx_i, bf, {1, Li, D}, 1.0f));
    lyra_tensor *sq[] = {&d.wq, &d.wk, &d.wv, &d.wo, &d.cwq, &d.cwk, &d.cwv, &d.cwki, &d.cwvi, &d.cwo};
    for (lyra_tensor *t : sq) LYRA_TRY(mem.tensor(t, bf, {D, D}, wsD));
    lyra_tensor *vs[] = {&d.bq, &d.bk, &d.bv, &d.bo, &d.gq, &d.gk, &d.cbq, &d.cbo, &d.cgq, &d.cgk, &d.cgki, &d.n3w,
                         &d.n3b, &d.b2};
    for (lyra_tensor *t : vs) LYRA_TRY(mem.tensor(t, bf, {D}, 0.5f));
    LYRA_TRY(mem.tensor(&d.w0, bf, {F, D}, wsD));
    LYRA_TRY(mem.tensor(&d.b0, bf, {F}, 0.1f));
    LYRA_TRY(mem.tensor(&d.w2, bf, {D, F}, wsF));
    lyra_tensor *acts[] = {&d.n, &d.kq, &d.q, &d.k, &d.v, &d.o, &d.a, &d.oi};
    for (lyra_tensor *t : acts) LYRA_TRY(mem.tensor(t, bf, {1, L, D}, 0.0f));
    LYRA_TRY(mem.tensor(&d.kt, bf, {1, Lt, D}, 0.0f));
    LYRA_TRY(mem.tensor(&d.vt, bf, {1, Lt, D}, 0.0f));
    LYRA_TRY(mem.tensor(&d.ki, bf, {1, Li, D}, 0.0f));
    LYRA_TRY(mem.tensor(&d.vi, bf, {1, Li, D}, 0.0f));
    LYRA_TRY(mem.tensor(&d.hbuf, bf, {1, L, F}, 0.0f));

    /* The residual x keeps changing across repeats (as it does across blocks); every op's cost is
     * data-independent, so that does not bias the timing. */
    LYRA_TRY(time_median(be, repeat, [&]() { return d.run(); }, &ms[0]));

    /* a second run with events between the phases, for the breakdown */
    phase_timer tm{};
    tm.s = cu_st(be)->stream;
    d.tm = &tm;
    lyra_status s = d.run();
    d.tm = NULL;
    if (s != LYRA_OK) return s;
    CU_TRY(cudaStreamSynchronize(tm.s), "bench dit block");
    for (int c = 1; c < 7; c++) ms[c] = 0.0;
    for (int i = 1; i < tm.n; i++) {
        float f = 0.0f;
        CU_TRY(cudaEventElapsedTime(&f, tm.ev[i - 1], tm.ev[i]), "bench dit block");
        if (tm.cat[i] >= 1 && tm.cat[i] < 7) ms[tm.cat[i]] += f;
    }
    return LYRA_OK;
}
