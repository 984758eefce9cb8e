/* The float32 matrix inverse of the warp, rounded like upstream's (upstream M:1601-1822, FW).
 *
 * Upstream inverts K and w2c with torch.linalg.inv (FW:34-35). torch 1.13 on CPU computes it as
 * solve(A, I) through LAPACK, which sees the row-major A as its transpose M = Aᵀ: sgetrf(M) then
 * sgetrs('T'). The last bit of the result decides which points land exactly on integer pixels (and
 * are then splatted twice or four times, docs/REFERENCES.md#upstream-quirks-kept-on-purpose item 13), so the same op
 * order is used here. The file must be compiled without FMA contraction (the build's -std=c11 sets -ffp-contract=off).
 * */
#include <math.h>
#include <string.h>

#include "nn/warp.h"

lyra_status lyra_warp_invert(const float *a, int n, float *out, const char *what) {
    LYRA_ASSERT(n == 3 || n == 4);
    float lu[4][4]; /* lu[r][c] = M(r,c) = a[c][r] */
    int piv[4];
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) lu[r][c] = a[c * n + r];

    /* Right-looking LU with partial pivoting. For n <= 4 this performs the same float operations in
     * the same order as LAPACK's recursive sgetrf2 (each Schur update is a sequence of single
     * products subtracted in k order). The pivot is the first entry of largest magnitude (isamax). */
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int r = k + 1; r < n; r++)
            if (fabsf(lu[r][k]) > fabsf(lu[p][k])) p = r;
        piv[k] = p;
        if (lu[p][k] == 0.0f || !isfinite(lu[p][k]))
            return lyra_error(LYRA_ERR_ARG, "%s: the matrix is singular or not finite, cannot invert it", what);
        if (p != k)
            for (int c = 0; c < n; c++) {
                float t = lu[k][c];
                lu[k][c] = lu[p][c];
                lu[p][c] = t;
            }
        float rcp = 1.0f / lu[k][k];
        for (int r = k + 1; r < n; r++) lu[r][k] *= rcp;
        for (int r = k + 1; r < n; r++)
            for (int c = k + 1; c < n; c++) lu[r][c] -= lu[r][k] * lu[k][c];
    }

    /* sgetrs('T'): solve Uᵀ Y = I (forward, dividing by the diagonal), then Lᵀ Z = Y (backward, unit
     * diagonal), then undo the row interchanges in reverse order. x[i][j] is column j of the solution. */
    float x[4][4];
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) {
            float t = (i == j) ? 1.0f : 0.0f;
            for (int k = 0; k < i; k++) t -= lu[k][i] * x[k][j];
            x[i][j] = t / lu[i][i];
        }
        for (int i = n - 1; i >= 0; i--) {
            float t = x[i][j];
            for (int k = i + 1; k < n; k++) t -= lu[k][i] * x[k][j];
            x[i][j] = t;
        }
    }
    for (int k = n - 1; k >= 0; k--)
        if (piv[k] != k)
            for (int j = 0; j < n; j++) {
                float t = x[k][j];
                x[k][j] = x[piv[k]][j];
                x[piv[k]][j] = t;
            }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (!isfinite(x[i][j]))
                return lyra_error(LYRA_ERR_ARG, "%s: the matrix is (nearly) singular, its inverse is not finite", what);
            out[i * n + j] = x[i][j];
        }
    return LYRA_OK;
}
