/* The arithmetic of op depth_resize (nn/ops.h): lyra2.generate._bilinear (F.interpolate bilinear, align_corners=False)
 * with f64 source coordinates, of the maps divided by the Umeyama scale in f64 (DepthAnything3.__call__'s depth / s,
 * rounded to f32). lyra_op_resize evaluates PyTorch's f32 source coordinates instead, which differ from these in the
 * last bits of the fractions, so the depth update has this op. Shared word for word by the CPU kernel
 * (nn/cpu/cpu_da3_merge.c) and the CUDA kernel (nn/cuda/cuda_da3_merge.cu): DRS_MUL / DRS_ADD / DRS_SUB / DRS_DMUL /
 * DRS_DADD are plain operators in C (no FMA contraction on the x86-64 baseline) and __fmul_rn / ... in the CUDA file;
 * '/' is IEEE-rounded on both, so the backends agree bit for bit.
 *
 * DRS_FN is `static inline` in C; the CUDA file defines it (`static __device__ inline`, with the operators) first. */
#ifndef LYRA_NN_DEPTH_RESIZE_MATH_H
#define LYRA_NN_DEPTH_RESIZE_MATH_H

#include <math.h>
#include <stdint.h>

#ifndef DRS_FN
#define DRS_FN static inline
#define DRS_MUL(a, b) ((a) * (b))
#define DRS_ADD(a, b) ((a) + (b))
#define DRS_SUB(a, b) ((a) - (b))
#define DRS_DMUL(a, b) ((a) * (b))
#define DRS_DADD(a, b) ((a) + (b))
#endif

/* Output index i of an axis n_in -> n_out: s = (i + 0.5)·(n_in / n_out) − 0.5 in f64, clipped at 0;
 * i0 = min(floor(s), n_in − 1), i1 = min(i0 + 1, n_in − 1), frac = f32(s − i0) (generate._bilinear's axis()). */
DRS_FN void lyra_drs_axis(int n_in, int n_out, int i, int *i0, int *i1, float *frac) {
    const double ratio = (double)n_in / (double)n_out;
    double s = DRS_DADD(DRS_DMUL(DRS_DADD((double)i, 0.5), ratio), -0.5);
    if (s < 0.0) s = 0.0;
    int a = (int)floor(s);
    if (a > n_in - 1) a = n_in - 1;
    *i0 = a;
    *i1 = a + 1 < n_in - 1 ? a + 1 : n_in - 1;
    *frac = (float)DRS_DADD(s, -(double)a);
}

/* A source value divided by the scale: f64 division, one rounding to f32. */
DRS_FN float lyra_drs_src(float v, double divisor) { return (float)((double)v / divisor); }

/* One output value of map m (h, w rows of w): top = m[y0, x0]·(1 − fx) + m[y0, x1]·fx, bottom alike, then
 * top·(1 − fy) + bottom·fy, each step an f32 rounding as numpy's. With fy = fx = 0 (equal sizes) it is the source
 * value itself (v·1 + u·0 = v for finite maps). */
DRS_FN float lyra_drs_pixel(const float *m, int w, int y0, int y1, float fy, int x0, int x1, float fx, double divisor) {
    const float gx0 = DRS_SUB(1.0f, fx), gy0 = DRS_SUB(1.0f, fy);
    const float *a = m + (int64_t)y0 * w, *b = m + (int64_t)y1 * w;
    const float top = DRS_ADD(DRS_MUL(lyra_drs_src(a[x0], divisor), gx0), DRS_MUL(lyra_drs_src(a[x1], divisor), fx));
    const float bot = DRS_ADD(DRS_MUL(lyra_drs_src(b[x0], divisor), gx0), DRS_MUL(lyra_drs_src(b[x1], divisor), fx));
    return DRS_ADD(DRS_MUL(top, gy0), DRS_MUL(bot, fy));
}

#endif
