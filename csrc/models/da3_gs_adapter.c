/* DA3 GaussianAdapter (Depth-Anything-3 @ 1ed6cb8, src/depth_anything_3/model/gs_adapter.py:58 forward) on host
 * arrays, float32 as upstream, and the real-SH band rotation it needs (utils/sh_helpers.py:56 rotate_sh).
 *
 * Pitfalls (upstream quirks kept on purpose):
 *   - the mean is origin + unit_ray · depth: DA3's z-depth is used as a distance along the normalised ray
 *     (utils/geometry.py:304 normalises the direction, gs_adapter.py:117 multiplies it by the depth);
 *   - pixel centres at (x + 0.5)/w in normalised coordinates (utils/geometry.py:218 sample_image_grid), shifted by
 *     the raw xy offset in pixels;
 *   - the quaternion is read as xyzw ("historical issue", gs_adapter.py:148), reordered to wxyz and handed to
 *     model/utils/transform.py:68 quat_to_mat, which reads xyzw (transform.py:184-200), composed with the
 *     camera-to-world rotation and written back by transform.py:100 mat_to_quat, which returns xyzw with the last
 *     component >= 0 although the caller names it wxyz; the PLY's rot_0..3 are those four numbers in that order and
 *     DA3's renderer hands them to gsplat as wxyz (model/utils/gs_renderer.py:131);
 *   - SH bands scaled by 0.1·0.25^degree (gs_adapter.py:56) before the rotation;
 *   - opacity = map_pdf_to_opacity(sigmoid(logit)) (utils/geometry.py:333) with exponent 1: 0.5·((1 − (1 − p)) + p). */
#include <math.h>
#include <string.h>

#include "models/da3_gs.h"

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* 3DGS real SH basis of bands 1 and 2 (gaussian-splatting utils/sh_utils.py eval_sh constants and order). */
static void sh_basis(const double *d, double *b1, double *b2) {
    const double C1 = 0.4886025119029199;
    const double C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                          0.5462742152960396};
    double x = d[0], y = d[1], z = d[2];
    b1[0] = -C1 * y, b1[1] = C1 * z, b1[2] = -C1 * x;
    b2[0] = C2[0] * x * y, b2[1] = C2[1] * y * z, b2[2] = C2[2] * (2 * z * z - x * x - y * y);
    b2[3] = C2[3] * x * z, b2[4] = C2[4] * (x * x - y * y);
}

/* Solves (AᵀA) D = AᵀB for the m×m matrix D (m <= 5) by Gauss-Jordan with partial pivoting. A, B: n×m. */
static void least_squares(const double *A, const double *B, int n, int m, double *D) {
    double M[5][10];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < 2 * m; j++) {
            double s = 0;
            const double *rhs = j < m ? A : B;
            int jj = j < m ? j : j - m;
            for (int k = 0; k < n; k++) s += A[k * m + i] * rhs[k * m + jj];
            M[i][j] = s;
        }
    for (int c = 0; c < m; c++) {
        int p = c;
        for (int r = c + 1; r < m; r++)
            if (fabs(M[r][c]) > fabs(M[p][c])) p = r;
        for (int j = 0; j < 2 * m; j++) {
            double t = M[c][j];
            M[c][j] = M[p][j], M[p][j] = t;
        }
        double inv = 1.0 / M[c][c];
        for (int j = 0; j < 2 * m; j++) M[c][j] *= inv;
        for (int r = 0; r < m; r++) {
            if (r == c) continue;
            double f = M[r][c];
            for (int j = 0; j < 2 * m; j++) M[r][j] -= f * M[c][j];
        }
    }
    /* A·X ≈ B reads Y_j(Rᵀd) = Σ_i Y_i(d) X[i][j], so f'(d) = Σ_j c_j Y_j(Rᵀd) has c'_i = Σ_j X[i][j] c_j: D = X. */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) D[i * m + j] = M[i][m + j];
}

void lyra_sh_rotation(const double *R, double *D1, double *D2) {
    /* Band l is closed under rotation, so a fit over enough generic directions is exact (to rounding). */
    enum { N = 14 };
    static const double dirs[N][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {-1, 0, 0}, {0, -1, 0}, {0, 0, -1},
                                      {1, 1, 1}, {1, -1, 1}, {-1, 1, 1}, {1, 1, -1}, {0.3, 0.5, -0.8},
                                      {-0.6, 0.2, 0.4}, {0.1, -0.9, -0.3}, {0.7, 0.7, -0.2}};
    double A1[N * 3], B1[N * 3], A2[N * 5], B2[N * 5];
    for (int k = 0; k < N; k++) {
        double d[3], n = sqrt(dirs[k][0] * dirs[k][0] + dirs[k][1] * dirs[k][1] + dirs[k][2] * dirs[k][2]);
        for (int i = 0; i < 3; i++) d[i] = dirs[k][i] / n;
        double rd[3]; /* Rᵀ d */
        for (int i = 0; i < 3; i++) rd[i] = R[0 * 3 + i] * d[0] + R[1 * 3 + i] * d[1] + R[2 * 3 + i] * d[2];
        sh_basis(d, A1 + 3 * k, A2 + 5 * k);
        sh_basis(rd, B1 + 3 * k, B2 + 5 * k);
    }
    least_squares(A1, B1, N, 3, D1);
    least_squares(A2, B2, N, 5, D2);
}

/* quat_to_mat of an xyzw quaternion (transform.py: two_s = 2 / |q|²). */
static void quat_to_mat(const float *q, float *m) {
    float i = q[0], j = q[1], k = q[2], r = q[3];
    float two_s = 2.0f / (i * i + j * j + k * k + r * r);
    m[0] = 1 - two_s * (j * j + k * k), m[1] = two_s * (i * j - k * r), m[2] = two_s * (i * k + j * r);
    m[3] = two_s * (i * j + k * r), m[4] = 1 - two_s * (i * i + k * k), m[5] = two_s * (j * k - i * r);
    m[6] = two_s * (i * k - j * r), m[7] = two_s * (j * k + i * r), m[8] = 1 - two_s * (i * i + j * j);
}

/* mat_to_quat (transform.py): the best-conditioned of four candidates, xyzw, standardised to w >= 0. */
static void mat_to_quat(const float *m, float *q) {
    float m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5], m20 = m[6], m21 = m[7], m22 = m[8];
    float qa[4] = {1.0f + m00 + m11 + m22, 1.0f + m00 - m11 - m22, 1.0f - m00 + m11 - m22, 1.0f - m00 - m11 + m22};
    for (int i = 0; i < 4; i++) qa[i] = qa[i] > 0 ? sqrtf(qa[i]) : 0.0f;
    float cand[4][4] = {{qa[0] * qa[0], m21 - m12, m02 - m20, m10 - m01},
                        {m21 - m12, qa[1] * qa[1], m10 + m01, m02 + m20},
                        {m02 - m20, m10 + m01, qa[2] * qa[2], m12 + m21},
                        {m10 - m01, m20 + m02, m21 + m12, qa[3] * qa[3]}};
    int best = 0;
    for (int i = 1; i < 4; i++)
        if (qa[i] > qa[best]) best = i; /* argmax: first maximum */
    float den = 2.0f * (qa[best] > 0.1f ? qa[best] : 0.1f);
    float rijk[4];
    for (int i = 0; i < 4; i++) rijk[i] = cand[best][i] / den;
    float out[4] = {rijk[1], rijk[2], rijk[3], rijk[0]};
    float sign = out[3] < 0 ? -1.0f : 1.0f;
    for (int i = 0; i < 4; i++) q[i] = sign * out[i];
}

/* inverse of the 2×2 upper-left block of K (as torch inverse in float32) */
static void inv2(const float *K, float *inv) {
    float a = K[0], b = K[1], c = K[3], d = K[4];
    float det = a * d - b * c;
    inv[0] = d / det, inv[1] = -b / det, inv[2] = -c / det, inv[3] = a / det;
}

void lyra_da3_gs_adapt(const lyra_da3_gs_adapt_params *p, const float *raw, int64_t out_dim, int64_t hg, int64_t wg,
                       const float *depth, const float *c2w, const float *K, float *means, float *scales,
                       float *rotations, float *harmonics, float *opacities) {
    const int d_sh = (p->sh_degree + 1) * (p->sh_degree + 1);
    const int64_t N = hg * wg;
    /* normalised intrinsics (row 0 / w, row 1 / h) and their inverse (a 3×3 upper-triangular K) */
    float kn[9];
    memcpy(kn, K, sizeof kn);
    for (int j = 0; j < 3; j++) kn[j] /= (float)wg, kn[3 + j] /= (float)hg;
    float fx = kn[0], sk = kn[1], cx = kn[2], fy = kn[4], cy = kn[5];
    float k2inv[4];
    inv2(kn, k2inv);
    const float px = 1.0f / (float)wg, py = 1.0f / (float)hg;
    /* get_scale_multiplier: 0.1 · Σ_i (K2⁻¹ · pixel_size)_i */
    float mult = 0.1f * ((k2inv[0] * px + k2inv[1] * py) + (k2inv[2] * px + k2inv[3] * py));
    float R[9];
    double Rd[9], D1[9], D2[25];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) R[i * 3 + j] = c2w[i * 4 + j], Rd[i * 3 + j] = c2w[i * 4 + j];
    lyra_sh_rotation(Rd, D1, D2);
    static const float SH_MASK[3] = {1.0f, 0.1f * 0.25f, 0.1f * 0.25f * 0.25f}; /* 0.1 · 0.25^degree */
#define RAW(c) raw[(int64_t)(c) * N + n]
    for (int64_t n = 0; n < N; n++) {
        int64_t i = n / wg, j = n % wg;
        float d = depth[n] + RAW(out_dim - 2) * p->offset_scale;
        /* ray through the offset pixel centre (normalised coordinates) */
        float x = ((float)j + 0.5f) / (float)wg + RAW(0) * px;
        float y = ((float)i + 0.5f) / (float)hg + RAW(1) * py;
        float yc = (y - cy) / fy;
        float dir[3] = {(x - cx - sk * yc) / fx, yc, 1.0f};
        float len = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
        for (int a = 0; a < 3; a++) dir[a] /= len;
        for (int a = 0; a < 3; a++) {
            float w = R[a * 3] * dir[0] + R[a * 3 + 1] * dir[1] + R[a * 3 + 2] * dir[2];
            means[n * 3 + a] = c2w[a * 4 + 3] + w * d;
        }
        for (int a = 0; a < 3; a++) {
            float s = p->scale_min + (p->scale_max - p->scale_min) * sigmoidf(RAW(2 + a));
            scales[n * 3 + a] = s * d * mult;
        }
        /* raw xyzw reordered to wxyz, which transform.py quat_to_mat then reads as xyzw (upstream quirk) */
        float q[4] = {RAW(8), RAW(5), RAW(6), RAW(7)};
        float qn = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]) + 1e-8f;
        for (int a = 0; a < 4; a++) q[a] /= qn; /* normalised before the reorder, same numbers */
        float mc[9], mw[9];
        quat_to_mat(q, mc);
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                mw[a * 3 + b] = R[a * 3] * mc[b] + R[a * 3 + 1] * mc[3 + b] + R[a * 3 + 2] * mc[6 + b];
        mat_to_quat(mw, rotations + n * 4);
        for (int c = 0; c < 3; c++) {
            float sh[9];
            for (int k = 0; k < d_sh; k++) sh[k] = RAW(9 + c * d_sh + k) * SH_MASK[k >= 4 ? 2 : k >= 1];
            float *o = harmonics + (n * 3 + c) * d_sh;
            o[0] = sh[0];
            if (p->sh_degree >= 1)
                for (int a = 0; a < 3; a++)
                    o[1 + a] = (float)(D1[a * 3] * sh[1] + D1[a * 3 + 1] * sh[2] + D1[a * 3 + 2] * sh[3]);
            if (p->sh_degree >= 2)
                for (int a = 0; a < 5; a++) {
                    double acc = 0;
                    for (int b = 0; b < 5; b++) acc += D2[a * 5 + b] * sh[4 + b];
                    o[4 + a] = (float)acc;
                }
        }
        float pdf = sigmoidf(RAW(out_dim - 1));
        opacities[n] = 0.5f * ((1.0f - (1.0f - pdf)) + pdf);
    }
#undef RAW
}
