/* UniPC-2 bh2 flow solver (see unipc.h). Scalars follow upstream UNI:265-266, UNI:399-400, UNI:422, UNI:272-324 and the
 * tables of docs/REFERENCES.md#sampler-test-vectors; the elementwise updates mirror upstream's tensor expressions one
 * float32 rounding per op. The build is -std=c11, so GCC keeps fp-contract off: no fused multiply-add changes a
 * rounding. */
#include "sample/unipc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/latent_math.h"
#include "nn/ops.h"
#include "sample/latent_state.h"
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

int64_t lyra_unipc_work_numel(const lyra_latent_shape *shape) {
    return 4 * lyra_latent_numel(shape) + lyra_latent_gen_numel(shape);
}

/* One latent_update of the step's scalars over the full state: y = f(x[0..n)). */
static lyra_status unipc_op(lyra_backend *be, lyra_latent_kind kind, const lyra_unipc_step *pair,
                            const lyra_unipc_step *cur, int order, lyra_tensor *y, const lyra_tensor *a,
                            const lyra_tensor *b, const lyra_tensor *c, const lyra_tensor *d) {
    const lyra_latent_update p = {.kind = kind, .order = order, .c1 = pair->c1, .c2 = pair->c2, .rinv = pair->rinv,
                                  .rho0 = cur->rho0, .rho1 = cur->rho1};
    const lyra_tensor *in[4] = {a, b, c, d};
    return lyra_op_latent_update(be, y, in, lyra_latent_inputs(&p), &p);
}

lyra_status lyra_unipc_run(lyra_backend *be, const lyra_latent_shape *shape, int num_steps, double shift, float *x,
                           float *work, const float *noise, lyra_denoise_tensor_fn denoise, void *ctx,
                           lyra_unipc_trace *trace) {
    LYRA_TRY(lyra_latent_shape_check(shape, "UniPC state"));
    if (num_steps < 1 || num_steps > LYRA_FLOW_MAX_STEPS)
        return lyra_error(LYRA_ERR_ARG, "num_steps must be in [1, %d], got %d", LYRA_FLOW_MAX_STEPS,
                          num_steps);
    const int64_t n = lyra_latent_numel(shape);
    lyra_status st = LYRA_OK;
    int64_t *timesteps = malloc((size_t)num_steps * sizeof(int64_t));
    float *sigmas = malloc((size_t)(num_steps + 1) * sizeof(float));
    lyra_unipc_step *plan = malloc((size_t)num_steps * sizeof(lyra_unipc_step));
    if (!timesteps || !sigmas || !plan) {
        st = lyra_error(LYRA_ERR_OOM, "UniPC: cannot allocate the solver plan (%d steps)", num_steps);
        goto finally;
    }
    if ((st = lyra_flow_schedule(num_steps, shift, timesteps, sigmas, NULL)) != LYRA_OK) goto finally;
    if ((st = lyra_unipc_plan(sigmas, num_steps, plan, NULL)) != LYRA_OK) goto finally;

    /* The three x0 predictions M_i, M_{i−1}, M_{i−2} (rotated), the corrected sample L and the denoiser's velocity,
     * all in be's memory. */
    lyra_tensor tx = lyra_state_tensor(be, shape, x, "sampler state x");
    lyra_tensor m = lyra_state_tensor(be, shape, work, "x0 prediction");
    lyra_tensor m1 = lyra_state_tensor(be, shape, work + n, "x0 prediction");
    lyra_tensor m2 = lyra_state_tensor(be, shape, work + 2 * n, "x0 prediction");
    lyra_tensor last = lyra_state_tensor(be, shape, work + 3 * n, "corrected sample");
    lyra_tensor v = lyra_gen_tensor(be, shape, work + 4 * n, "velocity");
    if (noise && (st = lyra_state_set_noise(be, shape, &tx, &v, "initial noise", noise)) != LYRA_OK) goto finally;
    if (trace && trace->x && (st = lyra_state_trace(be, &tx, trace->x)) != LYRA_OK) goto finally;

    for (int i = 0; i < num_steps; i++) {
        const lyra_unipc_step *cur = &plan[i];
        if ((st = denoise(ctx, shape, &tx, (float)timesteps[i], &v)) != LYRA_OK) goto finally;
        /* M_i = X − σ·V with V = 0 on the history: there σ·0 = +0 and X − (+0) is X bit for bit (−0 and NaN
         * included), so the history's M is a copy of X and only the generated frames go through the x0 formula. */
        if ((st = lyra_state_x0(be, shape, LYRA_LATENT_X0, cur->sigma, &m, &tx, &v)) != LYRA_OK) goto finally;
        /* UniC writes X_i^c over L (in place: each element reads its L before writing it); the first step has no
         * corrector, so L = X_0. */
        if (i >= 1) st = unipc_op(be, LYRA_LATENT_UNIPC_CORRECT, &plan[i - 1], cur, cur->corr_order, &last, &last, &m,
                                  &m1, &m2);
        else st = lyra_op_copy(be, &last, &tx);
        if (st != LYRA_OK) goto finally;
        if ((st = unipc_op(be, LYRA_LATENT_UNIPC_PREDICT, cur, cur, cur->order, &tx, &last, &m, &m1, NULL)) != LYRA_OK)
            goto finally;

        if (trace) {
            size_t off = (size_t)i * (size_t)n;
            if (trace->v && (st = lyra_state_trace_v(be, shape, &v, trace->v + off)) != LYRA_OK) goto finally;
            if (trace->x0 && (st = lyra_state_trace(be, &m, trace->x0 + off)) != LYRA_OK) goto finally;
            if (trace->x_corrected && (st = lyra_state_trace(be, &last, trace->x_corrected + off)) != LYRA_OK)
                goto finally;
            if (trace->x && (st = lyra_state_trace(be, &tx, trace->x + off + (size_t)n)) != LYRA_OK) goto finally;
            if (trace->order) trace->order[i] = cur->order;
        }
        /* Push M_i: the two-entry history becomes (M_i, M_{i−1}). */
        lyra_tensor tmp = m2;
        m2 = m1;
        m1 = m;
        m = tmp;
    }
finally:
    free(timesteps);
    free(sigmas);
    free(plan);
    return st;
}

lyra_status lyra_unipc_sample(const lyra_latent_shape *shape, int num_steps, double shift, float *x,
                              lyra_denoise_fn denoise, void *ctx, lyra_unipc_trace *trace) {
    LYRA_TRY(lyra_latent_shape_check(shape, "UniPC state"));
    lyra_backend cpu;
    LYRA_TRY(lyra_backend_cpu_init(&cpu, 1));
    float *work = malloc((size_t)lyra_unipc_work_numel(shape) * sizeof(float));
    lyra_status st = work ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "UniPC: cannot allocate the solver state (%lld floats)",
                                                  (long long)lyra_unipc_work_numel(shape));
    lyra_denoise_host host = {denoise, ctx};
    if (st == LYRA_OK) st = lyra_unipc_run(&cpu, shape, num_steps, shift, x, work, NULL, lyra_denoise_host_call, &host,
                                           trace);
    free(work);
    lyra_backend_free(&cpu);
    return st;
}
