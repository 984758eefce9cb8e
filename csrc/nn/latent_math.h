/* The per-element arithmetic of the samplers' latent updates (op latent_update, nn/backend.h lyra_latent_kind),
 * shared word for word by the host sampler (sample/cfg.c), the latent denormalisation (models/vae_latent.c), the
 * CPU reference (nn/cpu/cpu_latent.c) and the CUDA kernel (nn/cuda/cuda_latent.cu). Each formula is upstream's
 * tensor expression with one rounding per operation in its order (upstream M:641-647 CFG, UNI:272-324 and
 * UNI:214-224 UniPC, M:815-850 DMD, TOK:810-848 the VAE's latent scale): LATENT_MUL / ADD / SUB are plain operators in
 * C (the build's -std=c11 keeps GCC's fp-contract off, and x86-64's baseline has no FMA) and __fmul_rn / __fadd_rn /
 * __fsub_rn / __dmul_rn / __dsub_rn in the CUDA file, so nvcc cannot contract a product and a sum into one FMA; '/' is
 * IEEE-rounded under nvcc's default -prec-div. The backends therefore agree bit for bit.
 *
 * LATENT_FN is `static inline` in C; the CUDA file defines it (`static __device__ inline`) and the arithmetic macros
 * first. */
#ifndef LYRA_NN_LATENT_MATH_H
#define LYRA_NN_LATENT_MATH_H

#include "nn/backend.h"

#ifndef LATENT_FN
#define LATENT_FN static inline
#define LATENT_MUL(a, b) ((a) * (b))
#define LATENT_ADD(a, b) ((a) + (b))
#define LATENT_SUB(a, b) ((a) - (b))
#define LATENT_DMUL(a, b) ((a) * (b))
#define LATENT_DSUB(a, b) ((a) - (b))
#endif

/* Inputs each kind reads (x[0..n) of lyra_op_latent_update); 0 for an unknown kind or order. */
LATENT_FN int lyra_latent_inputs(const lyra_latent_update *p) {
    switch (p->kind) {
    case LYRA_LATENT_CFG:
    case LYRA_LATENT_X0:
    case LYRA_LATENT_X0_F64:
    case LYRA_LATENT_RENOISE: return 2;
    case LYRA_LATENT_UNIPC_CORRECT: return p->order == 1 ? 3 : p->order == 2 ? 4 : 0;
    case LYRA_LATENT_UNIPC_PREDICT: return p->order == 1 ? 2 : p->order == 2 ? 3 : 0;
    case LYRA_LATENT_DENORM: return 3;
    default: return 0;
    }
}

/* One output element from the kind's inputs a, b, c, d (unused ones are ignored). */
LATENT_FN float lyra_latent_elem(const lyra_latent_update *p, float a, float b, float c, float d) {
    switch (p->kind) {
    case LYRA_LATENT_CFG: /* a = cond, b = uncond: u + g·(c − u) */
        return LATENT_ADD(b, LATENT_MUL(p->guidance, LATENT_SUB(a, b)));
    case LYRA_LATENT_X0: /* M = X − σ·V */
        return LATENT_SUB(a, LATENT_MUL(p->sigma, b));
    case LYRA_LATENT_X0_F64: /* the product of two f32 is exact in f64; the difference rounds in f64, then to f32 */
        return (float)LATENT_DSUB((double)a, LATENT_DMUL((double)p->sigma, (double)b));
    case LYRA_LATENT_RENOISE: /* fl32(fl32(α·x) + fl32(σ·ε)) */
        return LATENT_ADD(LATENT_MUL(p->alpha, a), LATENT_MUL(p->sigma, b));
    case LYRA_LATENT_UNIPC_CORRECT: { /* a = L (X_{i−1}^c), b = M_i, c = M_{i−1}, d = M_{i−2}; c3 = c2 (bh2) */
        const float y = LATENT_SUB(LATENT_MUL(p->c1, a), LATENT_MUL(p->c2, c));
        const float dt = LATENT_SUB(b, c);
        float k;
        if (p->order == 1) {
            k = LATENT_ADD(0.0f, LATENT_MUL(p->rho1, dt)); /* upstream: corr_res (the int 0) + ρ·D_t */
        } else {
            const float d1 = LATENT_MUL(LATENT_SUB(d, c), p->rinv);
            k = LATENT_ADD(LATENT_MUL(p->rho0, d1), LATENT_MUL(p->rho1, dt));
        }
        return LATENT_SUB(y, LATENT_MUL(p->c2, k));
    }
    case LYRA_LATENT_UNIPC_PREDICT: { /* a = X_i^c, b = M_i, c = M_{i−1} */
        const float y = LATENT_SUB(LATENT_MUL(p->c1, a), LATENT_MUL(p->c2, b));
        if (p->order == 1) return LATENT_SUB(y, LATENT_MUL(p->c2, 0.0f)); /* upstream subtracts α_t·B·0 */
        const float d1 = LATENT_MUL(LATENT_SUB(c, b), p->rinv);
        return LATENT_SUB(y, LATENT_MUL(p->c2, LATENT_MUL(0.5f, d1))); /* the predictor's ρ is the fixed [0.5] */
    }
    case LYRA_LATENT_DENORM: /* a = z, b = inv_std, c = mean: a division by the rounded inverse, as upstream */
        return LATENT_ADD(a / b, c);
    default: return 0.0f;
    }
}

#endif
