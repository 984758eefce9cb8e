/* MoGe's focal/shift least squares (upstream MGT:40-52, MGN:79-112; MoGe geometry_numpy.solve_optimal_focal_shift,
 * MGN:79-112): scipy.optimize.least_squares(fn, x0=0, ftol=1e-3, method='lm'), which is MINPACK lmdif with n = 1, xtol
 * = gtol = 1e-8, maxfev = 200, epsfcn = machine epsilon, diag = [1] (mode 2) and factor 100.
 *
 * The loose ftol makes the answer depend on the iteration path, so this follows MINPACK's floating-point
 * operations step by step for n = 1 rather than using a better optimiser: enorm with its three accumulators,
 * the forward-difference Jacobian of fdjac2, the Householder QR of qrfac and the Q^T·r product of lmdif, the
 * Givens solve of qrsolv inside lmpar, and lmdif's trust-region bookkeeping. The residual reproduces NumPy's
 * float64 evaluation of upstream's fn, including numpy's pairwise summation for the closed-form focal. */
#include <math.h>
#include <stdlib.h>

#include "models/moge.h"

/* MINPACK's dpmpar DATA constants, rounded to 12 digits, as scipy's Fortran MINPACK (<= 1.14) uses them: the
 * finite-difference step is sqrt(max(epsfcn, epsmch)) = 1.4901161193880158e-08, not 2^-26, which the golden
 * trace confirms. (scipy's C translation of MINPACK, 1.15+, uses DBL_EPSILON: its iterates differ by ~1e-7
 * relative.) */
#define MACHEP 2.22044604926e-16       /* dpmpar(1) */
#define DWARF 2.22507385852e-308       /* dpmpar(2) */
#define FTOL 1e-3                      /* upstream's ftol */
#define XTOL 1e-8                      /* scipy's default xtol */
#define GTOL 1e-8                      /* scipy's default gtol */
#define MAXFEV 200                     /* scipy: 100·n·(n+1) for n = 1 */
#define FACTOR 100.0                   /* scipy's initial step bound factor */

/* MINPACK enorm: the Euclidean norm of x (n), accumulated in three ranges to avoid overflow/underflow. */
static double enorm(const double *x, int64_t n) {
    const double rdwarf = 3.834e-20, rgiant = 1.304e19;
    double s1 = 0, s2 = 0, s3 = 0, x1max = 0, x3max = 0, agiant = rgiant / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double xabs = fabs(x[i]);
        if (xabs > rdwarf && xabs < agiant) {
            s2 += xabs * xabs;
        } else if (xabs > rdwarf) {
            if (xabs > x1max) {
                s1 = 1.0 + s1 * (x1max / xabs) * (x1max / xabs);
                x1max = xabs;
            } else {
                s1 += (xabs / x1max) * (xabs / x1max);
            }
        } else if (xabs > x3max) {
            s3 = 1.0 + s3 * (x3max / xabs) * (x3max / xabs);
            x3max = xabs;
        } else if (xabs != 0.0) {
            s3 += (xabs / x3max) * (xabs / x3max);
        }
    }
    if (s1 != 0.0) return x1max * sqrt(s1 + (s2 / x1max) / x1max);
    if (s2 != 0.0)
        return s2 >= x3max ? sqrt(s2 * (1.0 + (x3max / s2) * x3max)) : sqrt(x3max * ((s2 / x3max) + (x3max * s2)));
    return x3max * sqrt(s3);
}

static double enorm1(double x) { return enorm(&x, 1); }

/* NumPy's pairwise float64 sum (the inner loop of np.add.reduce over a contiguous array): blocks of at most
 * 128 summed with 8 accumulators, longer runs split in halves at multiples of 8. */
static double pairwise_sum(const double *a, int64_t n) {
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

typedef struct problem {
    const float *uv, *xyz;
    int64_t n;
    double *q, *tmp;    /* (2n) workspaces */
    double *trace;      /* (trace_cap, 2) or NULL */
    int trace_cap, nfev;
} problem;

/* r (2n) = F(s)·q − uv with q = xy/(z + s) and F(s) = Σ q·uv / Σ q² (upstream fn; float32 data promoted to
 * float64 by the float64 shift, sums as numpy does them over the flattened (n, 2) arrays). */
static void residual(problem *p, double s, double *r) {
    const int64_t m = 2 * p->n;
    for (int64_t i = 0; i < p->n; i++) {
        double d = (double)p->xyz[3 * i + 2] + s;
        p->q[2 * i] = (double)p->xyz[3 * i] / d;
        p->q[2 * i + 1] = (double)p->xyz[3 * i + 1] / d;
    }
    for (int64_t k = 0; k < m; k++) p->tmp[k] = p->q[k] * (double)p->uv[k];
    double num = pairwise_sum(p->tmp, m);
    for (int64_t k = 0; k < m; k++) p->tmp[k] = p->q[k] * p->q[k];
    double f = num / pairwise_sum(p->tmp, m);
    for (int64_t k = 0; k < m; k++) r[k] = f * p->q[k] - (double)p->uv[k];
    if (p->trace && p->nfev < p->trace_cap) {
        p->trace[2 * p->nfev] = s;
        p->trace[2 * p->nfev + 1] = enorm(r, m);
    }
    p->nfev++;
}

/* lmpar for n = 1 with diag = 1: the Levenberg-Marquardt parameter *par and step x for the trust radius delta,
 * given R = r11 (1×1 QR of the Jacobian) and qtb = (Q^T r)_1. *sdiag receives qrsolv's diagonal. */
static double lmpar1(double r11, double qtb, double delta, double *par, double *sdiag_out) {
    int nsing = r11 != 0.0;
    double wa1 = nsing ? qtb / r11 : 0.0;
    double x = wa1, sdiag = r11;
    int iter = 0;
    double dxnorm = enorm1(x), fp = dxnorm - delta;
    if (fp <= 0.1 * delta) {
        *par = 0.0;
        *sdiag_out = sdiag;
        return x;
    }
    double parl = 0.0;
    if (nsing) {
        double t = enorm1((x / dxnorm) / r11);
        parl = ((fp / delta) / t) / t;
    }
    double gnorm = enorm1(r11 * qtb);
    double paru = gnorm / delta;
    if (paru == 0.0) paru = DWARF / fmin(delta, 0.1);
    *par = fmax(*par, parl);
    *par = fmin(*par, paru);
    if (*par == 0.0) *par = gnorm / dxnorm;
    for (;;) {
        iter++;
        if (*par == 0.0) *par = fmax(DWARF, 0.001 * paru);
        /* qrsolv: one Givens rotation eliminates sqrt(par) against r11. */
        double d = sqrt(*par), rkk = r11, wa = qtb;
        if (d != 0.0) {
            double c, s;
            if (fabs(rkk) < fabs(d)) {
                double cotan = rkk / d;
                s = 0.5 / sqrt(0.25 + 0.25 * cotan * cotan);
                c = s * cotan;
            } else {
                double tan = d / rkk;
                c = 0.5 / sqrt(0.25 + 0.25 * tan * tan);
                s = c * tan;
            }
            rkk = c * rkk + s * d;
            wa = c * wa;
        }
        sdiag = rkk;
        x = sdiag != 0.0 ? wa / sdiag : 0.0;
        dxnorm = enorm1(x);
        double fp_prev = fp;
        fp = dxnorm - delta;
        if (fabs(fp) <= 0.1 * delta || (parl == 0.0 && fp <= fp_prev && fp_prev < 0.0) || iter == 10) break;
        double t = enorm1((x / dxnorm) / sdiag);
        double parc = ((fp / delta) / t) / t;
        if (fp > 0.0) parl = fmax(parl, *par);
        if (fp < 0.0) paru = fmin(paru, *par);
        *par = fmax(parl, *par + parc);
    }
    *sdiag_out = sdiag;
    return x;
}

lyra_status lyra_moge_lm_solve(const float *uv, const float *xyz, int64_t n, lyra_moge_lm_info *info,
                               double *trace, int trace_cap) {
    if (n < 1) return lyra_error(LYRA_ERR_ARG, "MoGe focal/shift: need at least one (uv, xyz) sample");
    const int64_t m = 2 * n;
    double *work = malloc(sizeof(double) * (size_t)m * 6);
    if (!work) return lyra_error(LYRA_ERR_OOM, "MoGe focal/shift: out of memory for %lld samples", (long long)n);
    double *fvec = work, *wa4 = work + m, *fjac = work + 2 * m;
    problem p = {uv, xyz, n, work + 3 * m, work + 4 * m, trace, trace ? trace_cap : 0, 0};
    double *trial = work + 5 * m;

    double x = 0.0, par = 0.0, delta = 0.0, xnorm = 0.0;
    int iter = 1, status = 0;
    residual(&p, x, fvec);
    double fnorm = enorm(fvec, m);
    const double eps = sqrt(MACHEP); /* fdjac2: sqrt(max(epsfcn, epsmch)) with epsfcn = epsmch */
    while (!status) {
        /* fdjac2: forward difference. */
        double h = eps * fabs(x);
        if (h == 0.0) h = eps;
        residual(&p, x + h, wa4);
        for (int64_t i = 0; i < m; i++) fjac[i] = (wa4[i] - fvec[i]) / h;
        /* qrfac: Householder on the single column; acnorm is the column norm before the reflection. */
        double acnorm = enorm(fjac, m), ajnorm = acnorm;
        if (ajnorm != 0.0) {
            if (fjac[0] < 0.0) ajnorm = -ajnorm;
            for (int64_t i = 0; i < m; i++) fjac[i] /= ajnorm;
            fjac[0] += 1.0;
        }
        double r11 = -ajnorm;
        if (iter == 1) {
            xnorm = enorm1(x);
            delta = FACTOR * xnorm;
            if (delta == 0.0) delta = FACTOR;
        }
        /* lmdif: qtf = (Q^T fvec)_1 through the stored Householder vector. */
        double qtf = fvec[0];
        if (fjac[0] != 0.0) {
            double sum = 0.0;
            for (int64_t i = 0; i < m; i++) sum += fjac[i] * fvec[i];
            qtf = fvec[0] + fjac[0] * (-sum / fjac[0]);
        }
        double gnorm = 0.0;
        if (fnorm != 0.0 && acnorm != 0.0) gnorm = fabs(r11 * (qtf / fnorm) / acnorm);
        if (gnorm <= GTOL) {
            status = 4;
            break;
        }
        for (;;) { /* inner loop: same Jacobian until a step is accepted */
            double sdiag;
            double step = -lmpar1(r11, qtf, delta, &par, &sdiag);
            double pnorm = enorm1(step);
            if (iter == 1) delta = fmin(delta, pnorm);
            residual(&p, x + step, trial);
            double fnorm1 = enorm(trial, m);
            double actred = 0.1 * fnorm1 < fnorm ? 1.0 - (fnorm1 / fnorm) * (fnorm1 / fnorm) : -1.0;
            double t1 = enorm1(r11 * step) / fnorm, t2 = (sqrt(par) * pnorm) / fnorm;
            double prered = t1 * t1 + t2 * t2 / 0.5, dirder = -(t1 * t1 + t2 * t2);
            double ratio = prered != 0.0 ? actred / prered : 0.0;
            if (ratio <= 0.25) {
                double tau = actred >= 0.0 ? 0.5 : 0.5 * dirder / (dirder + 0.5 * actred);
                if (0.1 * fnorm1 >= fnorm || tau < 0.1) tau = 0.1;
                delta = tau * fmin(delta, pnorm / 0.1);
                par /= tau;
            } else if (par == 0.0 || ratio >= 0.75) {
                delta = pnorm / 0.5;
                par *= 0.5;
            }
            if (ratio >= 1e-4) {
                x += step;
                double *t = fvec;
                fvec = trial;
                trial = t;
                xnorm = enorm1(x);
                fnorm = fnorm1;
                iter++;
            }
            if (fabs(actred) <= FTOL && prered <= FTOL && 0.5 * ratio <= 1.0) status = 1;
            if (delta <= XTOL * xnorm) status = status == 1 ? 3 : 2;
            if (status) break;
            /* MINPACK tests these in sequence and the last that holds sets info. */
            if (p.nfev >= MAXFEV) status = 5;
            if (fabs(actred) <= MACHEP && prered <= MACHEP && 0.5 * ratio <= 1.0) status = 6;
            if (delta <= MACHEP * xnorm) status = 7;
            if (gnorm <= MACHEP) status = 8;
            if (status || ratio >= 1e-4) break;
        }
    }
    info->shift = x;
    info->cost = 0.5 * fnorm * fnorm;
    info->nfev = p.nfev;
    info->status = status;
    free(work);
    return LYRA_OK;
}

/* NumPy's pairwise sum for float32 arrays: the same blocking, float32 accumulators. */
static float pairwise_sum_f32(const float *a, int64_t n) {
    if (n < 8) {
        float res = 0.0f;
        for (int64_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        float r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum_f32(a, n2) + pairwise_sum_f32(a + n2, n - n2);
}

lyra_status lyra_moge_lm_focal(const float *uv, const float *xyz, int64_t n, float shift, float *focal) {
    /* Upstream recomputes the focal at the float32 shift entirely in float32 numpy arithmetic (float32 data
     * plus a 0-d float32 shift stays float32), sums included. */
    float *t = malloc(sizeof(float) * (size_t)n * 4);
    if (!t) return lyra_error(LYRA_ERR_OOM, "MoGe focal: out of memory for %lld samples", (long long)n);
    float *q = t, *prod = t + 2 * n;
    for (int64_t i = 0; i < n; i++) {
        float d = xyz[3 * i + 2] + shift;
        q[2 * i] = xyz[3 * i] / d;
        q[2 * i + 1] = xyz[3 * i + 1] / d;
    }
    for (int64_t k = 0; k < 2 * n; k++) prod[k] = q[k] * uv[k];
    float num = pairwise_sum_f32(prod, 2 * n);
    for (int64_t k = 0; k < 2 * n; k++) prod[k] = q[k] * q[k];
    *focal = num / pairwise_sum_f32(prod, 2 * n);
    free(t);
    return LYRA_OK;
}
