/* UniPC-2 bh2 flow solver (see unipc.h). Scalars follow upstream UNI:265-266, UNI:399-400, UNI:422, UNI:272-324 and the
 * tables of docs/REFERENCES.md#sampler-test-vectors; the elementwise updates mirror upstream's tensor expressions one
 * float32 rounding per op. The build is -std=c11, so GCC keeps fp-contract off: no fused multiply-add changes a
 * rounding. */
#include "sample/unipc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/schedules.h"

/* Correctly rounded float32 log / expm1 via float64 (the convention of the docs/REFERENCES.md#sampler-test-vectors
 * tables; upstream's SLEEF u10 kernels may differ by 1 ulp near a rounding boundary, upstream UNI:214-224, UNI:636-719,
 * M:656-668). log32(0) = -inf. */
static float log32(float x) { return (float)log((double)x); }
static float expm1_32(float x) { return (float)expm1((double)x); }

static float lambda_of(float sigma) {
    float alpha = 1.0f - sigma;
    return log32(alpha) - log32(sigma);
}

/* The corrector's 2x2 system [[1, 1], [r, 1]]·ρ = b, solved as LAPACK getrf/getrs would in float32:
 * partial pivoting on column 0, the multiplier through the pivot's reciprocal, back substitution by
 * division (upstream UNI:214-224, UNI:636-719, M:656-668; cuSOLVER's order is undocumented and may differ by 1 ulp). */
static void solve_2x2(float r, float b1, float b2, float *rho0, float *rho1) {
    float a11 = 1.0f, a12 = 1.0f, a21 = r, a22 = 1.0f, y1 = b1, y2 = b2;
    if (fabsf(a21) > fabsf(a11)) {
        a11 = r, a12 = 1.0f, a21 = 1.0f, a22 = 1.0f;
        y1 = b2, y2 = b1;
    }
    float l = a21 * (1.0f / a11);
    float u22 = a22 - l * a12;
    float z2 = y2 - l * y1;
    float x2 = z2 / u22;
    float x1 = (y1 - a12 * x2) / a11;
    *rho0 = x1;
    *rho1 = x2;
}

lyra_status lyra_unipc_plan(const float *sigmas, int n, lyra_unipc_step *steps, float *lambda_last) {
    if (n < 1) return lyra_error(LYRA_ERR_ARG, "UniPC plan: need at least one step, got %d", n);
    for (int j = 0; j < n; j++)
        if (!(sigmas[j] > 0.0f && sigmas[j] < 1.0f && sigmas[j] > sigmas[j + 1]))
            return lyra_error(LYRA_ERR_ARG,
                              "UniPC plan: sigmas must decrease strictly inside (0, 1); sigma[%d] = %.9g, "
                              "sigma[%d] = %.9g",
                              j, (double)sigmas[j], j + 1, (double)sigmas[j + 1]);
    if (!(sigmas[n] >= 0.0f))
        return lyra_error(LYRA_ERR_ARG, "UniPC plan: final sigma must be >= 0, got %.9g", (double)sigmas[n]);

    for (int i = 0; i < n; i++) {
        lyra_unipc_step *st = &steps[i];
        memset(st, 0, sizeof(*st));
        int p = n - i < 2 ? n - i : 2;
        if (p > i + 1) p = i + 1; /* warm-up: order grows with the number of finished steps */
        st->order = p;
        st->sigma = sigmas[i];
        st->lambda = lambda_of(sigmas[i]);

        /* Predictor i -> i+1 (upstream UNI:265-266, UNI:399-400, UNI:422). At the final step σ_{i+1} = 0, λ = +inf, h =
         * +inf and expm1(−inf) = −1, so c1 = 0 and c2 = −1: the result is the x0 prediction itself (upstream
         * UNI:214-224, UNI:636-719, M:656-668). */
        float sigma_t = sigmas[i + 1];
        float alpha_t = 1.0f - sigma_t;
        float h = lambda_of(sigma_t) - st->lambda;
        float hh = -h;
        float phi1 = expm1_32(hh);
        st->c1 = sigma_t / st->sigma;
        st->c2 = alpha_t * phi1;
        if (p == 2) {
            st->r = (steps[i - 1].lambda - st->lambda) / h;
            st->rinv = 1.0f / st->r;
        }

        /* Corrector of step i: order of the previous predictor, over the pair (i−1 -> i), whose
         * scalars are the ones just stored in steps[i − 1] (upstream UNI:214-224, UNI:636-719, M:656-668). */
        if (i == 0) continue;
        const lyra_unipc_step *prev = &steps[i - 1];
        st->corr_order = prev->order;
        if (prev->order == 1) {
            st->rho0 = 0.0f;
            st->rho1 = 0.5f;
        } else {
            float hc = st->lambda - prev->lambda;
            float hhc = -hc;
            float phi1c = expm1_32(hhc);
            float bh = phi1c; /* bh2: B(h) = expm1(hh) */
            float psi1 = phi1c / hhc - 1.0f;
            float b1 = (psi1 * 1.0f) / bh;
            float psi2 = psi1 / hhc - 0.5f;
            float b2 = (psi2 * 2.0f) / bh;
            solve_2x2(prev->r, b1, b2, &st->rho0, &st->rho1);
        }
    }
    if (lambda_last) *lambda_last = lambda_of(sigmas[n]);
    return LYRA_OK;
}

/* x0 conversion M = X − σ·V over the full state (upstream UNI:272-324). */
static void unipc_x0(const float *x, const float *v, float sigma, int64_t n, float *m) {
    for (int64_t e = 0; e < n; e++) m[e] = x[e] - sigma * v[e];
}

/* UniC: x (in: X_i, out: X_i^c) from L = X_{i−1}^c, M_i, M_{i−1}, M_{i−2} (upstream UNI:214-224, UNI:636-719,
 * M:656-668). `prev` holds the pair's c1, c2 = c3 and 1/r; `cur` the order and ρ. */
static void unipc_correct(const lyra_unipc_step *prev, const lyra_unipc_step *cur, const float *last,
                          const float *m, const float *m1, const float *m2, int64_t n, float *x) {
    const float c1 = prev->c1, c2 = prev->c2, c3 = prev->c2;
    if (cur->corr_order == 1) {
        const float rho = cur->rho1;
        for (int64_t e = 0; e < n; e++) {
            float y = c1 * last[e] - c2 * m1[e];
            float dt = m[e] - m1[e];
            float k = 0.0f + rho * dt; /* upstream: corr_res (the int 0) + ρ·D_t */
            x[e] = y - c3 * k;
        }
    } else {
        const float rinv = prev->rinv, rho0 = cur->rho0, rho1 = cur->rho1;
        for (int64_t e = 0; e < n; e++) {
            float y = c1 * last[e] - c2 * m1[e];
            float dt = m[e] - m1[e];
            float d1 = (m2[e] - m1[e]) * rinv;
            float k = rho0 * d1 + rho1 * dt;
            x[e] = y - c3 * k;
        }
    }
}

/* UniP from s = i to i+1: x_next from X_i^c (`xc`), M_i and M_{i−1} (upstream UNI:214-224, UNI:636-719, M:656-668). */
static void unipc_predict(const lyra_unipc_step *st, const float *xc, const float *m, const float *m1,
                          int64_t n, float *x_next) {
    const float c1 = st->c1, c2 = st->c2, c3 = st->c2;
    if (st->order == 1) {
        for (int64_t e = 0; e < n; e++) {
            float y = c1 * xc[e] - c2 * m[e];
            x_next[e] = y - c3 * 0.0f; /* upstream subtracts α_t·B·0; only a zero's sign can change */
        }
    } else {
        const float rinv = st->rinv;
        for (int64_t e = 0; e < n; e++) {
            float y = c1 * xc[e] - c2 * m[e];
            float d1 = (m1[e] - m[e]) * rinv;
            x_next[e] = y - c3 * (0.5f * d1); /* the predictor's ρ is the fixed [0.5] */
        }
    }
}

lyra_status lyra_unipc_sample(const lyra_latent_shape *shape, int num_steps, double shift, float *x,
                              lyra_denoise_fn denoise, void *ctx, lyra_unipc_trace *trace) {
    LYRA_TRY(lyra_latent_shape_check(shape, "UniPC state"));
    if (num_steps < 1 || num_steps > LYRA_FLOW_MAX_STEPS)
        return lyra_error(LYRA_ERR_ARG, "num_steps must be in [1, %d], got %d", LYRA_FLOW_MAX_STEPS,
                          num_steps);
    const int64_t n = lyra_latent_numel(shape), ngen = lyra_latent_gen_numel(shape);
    const size_t fbytes = (size_t)n * sizeof(float);
    lyra_status st = LYRA_OK;
    int64_t *timesteps = malloc((size_t)num_steps * sizeof(int64_t));
    float *sigmas = malloc((size_t)(num_steps + 1) * sizeof(float));
    lyra_unipc_step *plan = malloc((size_t)num_steps * sizeof(lyra_unipc_step));
    float *buf = malloc(5 * fbytes + (size_t)ngen * sizeof(float));
    if (!timesteps || !sigmas || !plan || !buf) {
        st = lyra_error(LYRA_ERR_OOM, "UniPC: cannot allocate the solver state (%lld floats)",
                        (long long)(6 * n));
        goto finally;
    }
    if ((st = lyra_flow_schedule(num_steps, shift, timesteps, sigmas, NULL)) != LYRA_OK) goto finally;
    if ((st = lyra_unipc_plan(sigmas, num_steps, plan, NULL)) != LYRA_OK) goto finally;

    /* v (full, zero on history), the three x0 predictions M_i, M_{i−1}, M_{i−2} (rotated), the
     * corrected sample L and the denoiser's output. */
    float *v = buf, *m = buf + n, *m1 = buf + 2 * n, *m2 = buf + 3 * n, *last = buf + 4 * n;
    float *vgen = buf + 5 * n;
    memset(v, 0, fbytes);
    if (trace && trace->x) memcpy(trace->x, x, fbytes);

    for (int i = 0; i < num_steps; i++) {
        const lyra_unipc_step *cur = &plan[i];
        if ((st = denoise(ctx, shape, x, (float)timesteps[i], vgen)) != LYRA_OK) goto finally;
        lyra_latent_gen_set(shape, v, vgen);
        unipc_x0(x, v, cur->sigma, n, m);
        if (i >= 1) unipc_correct(&plan[i - 1], cur, last, m, m1, m2, n, x);
        memcpy(last, x, fbytes);
        unipc_predict(cur, last, m, m1, n, x);

        if (trace) {
            size_t off = (size_t)i * (size_t)n;
            if (trace->v) memcpy(trace->v + off, v, fbytes);
            if (trace->x0) memcpy(trace->x0 + off, m, fbytes);
            if (trace->x_corrected) memcpy(trace->x_corrected + off, last, fbytes);
            if (trace->x) memcpy(trace->x + off + (size_t)n, x, fbytes);
            if (trace->order) trace->order[i] = cur->order;
        }
        /* Push M_i: the two-entry history becomes (M_i, M_{i−1}). */
        float *tmp = m2;
        m2 = m1;
        m1 = m;
        m = tmp;
    }
finally:
    free(timesteps);
    free(sigmas);
    free(plan);
    free(buf);
    return st;
}
