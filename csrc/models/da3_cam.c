/* DA3 cameras: the pose encoding (w2c + K -> 9 numbers) and its inverse, the camera encoder (poses -> camera
 * tokens, upstream DA3ce:23-80, DA3ub, DA3ua) and the camera decoder (last tap's camera token -> pose encoding,
 * upstream DA3cd:19-45, DA3tf:41-65, DA3net:238-255). The 3×3 geometry runs on the host in float32, in upstream's
 * operation order (model/utils/transform.py, utils/geometry.py affine_inverse). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/da3.h"
#include "nn/ops.h"

/* c2w = affine_inverse(w2c): [Rᵀ | −Rᵀ t]. e (4, 4) row-major; o (3, 4). */
static void affine_inverse(const float *e, float *o) {
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) o[i * 4 + j] = e[j * 4 + i];
        float acc = 0.0f;
        for (int j = 0; j < 3; j++) acc += e[j * 4 + i] * e[j * 4 + 3];
        o[i * 4 + 3] = -acc;
    }
}

/* mat_to_quat (pytorch3d style, scalar last, standardised to r >= 0). m (3, 3) row-major -> q (i, j, k, r). */
static void mat_to_quat(const float *m, float *q) {
    float m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5], m20 = m[6], m21 = m[7], m22 = m[8];
    float arg[4] = {1.0f + m00 + m11 + m22, 1.0f + m00 - m11 - m22, 1.0f - m00 + m11 - m22, 1.0f - m00 - m11 + m22};
    float qa[4];
    for (int n = 0; n < 4; n++) qa[n] = arg[n] > 0.0f ? sqrtf(arg[n]) : 0.0f;
    float cand[4][4] = {{qa[0] * qa[0], m21 - m12, m02 - m20, m10 - m01},
                        {m21 - m12, qa[1] * qa[1], m10 + m01, m02 + m20},
                        {m02 - m20, m10 + m01, qa[2] * qa[2], m12 + m21},
                        {m10 - m01, m20 + m02, m21 + m12, qa[3] * qa[3]}};
    int best = 0;
    for (int n = 1; n < 4; n++)
        if (qa[n] > qa[best]) best = n; /* argmax: first maximum */
    float den = 2.0f * (qa[best] > 0.1f ? qa[best] : 0.1f);
    float r = cand[best][0] / den, i = cand[best][1] / den, j = cand[best][2] / den, k = cand[best][3] / den;
    float sgn = r < 0.0f ? -1.0f : 1.0f;
    q[0] = sgn * i, q[1] = sgn * j, q[2] = sgn * k, q[3] = sgn * r;
}

void lyra_da3_pose_encoding(const float *ext, const float *K, int64_t S, int64_t h, int64_t w, float *enc) {
    for (int64_t s = 0; s < S; s++) {
        float c2w[12], R[9];
        affine_inverse(ext + s * 16, c2w);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) R[i * 3 + j] = c2w[i * 4 + j];
        float *e = enc + s * 9;
        e[0] = c2w[3], e[1] = c2w[7], e[2] = c2w[11];
        mat_to_quat(R, e + 3);
        const float *k = K + s * 9;
        e[7] = 2.0f * atanf((float)((double)h / 2.0) / k[4]); /* fov_h from fy */
        e[8] = 2.0f * atanf((float)((double)w / 2.0) / k[0]); /* fov_w from fx */
    }
}

void lyra_da3_pose_decode(const float *enc, int64_t S, int64_t h, int64_t w, float *extrinsics, float *intrinsics) {
    for (int64_t s = 0; s < S; s++) {
        const float *e = enc + s * 9;
        float i = e[3], j = e[4], k = e[5], r = e[6];
        float two_s = 2.0f / (((i * i + j * j) + k * k) + r * r);
        float R[9] = {1.0f - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
                      two_s * (i * j + k * r), 1.0f - two_s * (i * i + k * k), two_s * (j * k - i * r),
                      two_s * (i * k - j * r), two_s * (j * k + i * r), 1.0f - two_s * (i * i + j * j)};
        float c2w[16] = {R[0], R[1], R[2], e[0], R[3], R[4], R[5], e[1], R[6], R[7], R[8], e[2], 0, 0, 0, 1};
        float inv[12];
        affine_inverse(c2w, inv);
        memcpy(extrinsics + s * 12, inv, sizeof inv);
        float th = tanf(e[7] / 2.0f), tw = tanf(e[8] / 2.0f);
        float fy = (float)((double)h / 2.0) / (th > 1e-6f ? th : 1e-6f);
        float fx = (float)((double)w / 2.0) / (tw > 1e-6f ? tw : 1e-6f);
        float *K = intrinsics + s * 9;
        memset(K, 0, 9 * sizeof *K);
        K[0] = fx, K[4] = fy, K[2] = (float)w / 2.0f, K[5] = (float)h / 2.0f, K[8] = 1.0f;
    }
}

static lyra_status to_host(lyra_backend *be, float *dst, const lyra_tensor *src) {
    lyra_tensor h = lyra_tensor_make(dst, LYRA_DTYPE_F32, src->ndim, src->ne);
    return be->ops->download(be, &h, src);
}

lyra_status lyra_da3_cam_enc_run(const lyra_da3 *m, lyra_backend *be, lyra_arena *a, const float *ext,
                                 const float *K, int64_t S, int64_t h, int64_t w, lyra_tensor *tokens, float *pose_out) {
    const lyra_da3_cam_enc *e = &m->cam_enc;
    if (!m->has_cam_enc)
        return lyra_error(LYRA_ERR_ARG, "Depth Anything 3: these weights have no camera encoder (da3.cam_enc.*), so "
                          "extrinsics cannot be used; call without poses");
    int64_t C = e->trunk.cfg.dim;
    float *enc = malloc(sizeof *enc * (size_t)(S * 9));
    if (!enc) return lyra_error(LYRA_ERR_OOM, "DA3 camera encoder: out of memory");
    lyra_da3_pose_encoding(ext, K, S, h, w, enc);
    if (pose_out) memcpy(pose_out, enc, sizeof *enc * (size_t)(S * 9));
    size_t mark = lyra_arena_mark(a);
    lyra_tensor pe, h1, x;
    lyra_tensor host = lyra_tensor_3d(enc, LYRA_DTYPE_F32, 1, S, 9);
    lyra_status s = lyra_arena_tensor(a, &pe, LYRA_DTYPE_F32, 3, (int64_t[]){1, S, 9}, "DA3 pose encoding");
    if (s == LYRA_OK) s = be->ops->upload(be, &pe, &host);
    free(enc);
    /* pose_branch Mlp (GELU, exact erf), token_norm, trunk blocks over the S view tokens, trunk_norm (eps 1e-5) */
    if (s == LYRA_OK) s = lyra_arena_tensor(a, &h1, LYRA_DTYPE_F32, 3, (int64_t[]){1, S, C / 2}, "DA3 pose fc1");
    if (s == LYRA_OK) s = lyra_op_linear(be, &h1, &pe, &e->fc1_w, &e->fc1_b);
    if (s == LYRA_OK) s = lyra_op_gelu(be, &h1, &h1, 0);
    if (s == LYRA_OK) s = lyra_arena_tensor(a, &x, LYRA_DTYPE_F32, 3, (int64_t[]){1, S, C}, "DA3 pose tokens");
    if (s == LYRA_OK) s = lyra_op_linear(be, &x, &h1, &e->fc2_w, &e->fc2_b);
    if (s == LYRA_OK) s = lyra_op_layer_norm(be, &x, &x, &e->token_norm_w, &e->token_norm_b, 1e-5f);
    lyra_vit_run run = {.S = 1, .N = S};
    for (int i = 0; i < e->trunk.cfg.depth && s == LYRA_OK; i++) s = lyra_vit_run_block(&e->trunk, be, a, &x, &run, i);
    if (s == LYRA_OK) s = lyra_op_layer_norm(be, tokens, &x, &e->trunk_norm_w, &e->trunk_norm_b, 1e-5f);
    lyra_arena_reset(a, mark);
    return s;
}

lyra_status lyra_da3_cam_dec_run(const lyra_da3_cam_dec *d, lyra_backend *be, lyra_arena *a, const lyra_tensor *cam,
                                 float *pose_enc) {
    int64_t S = cam->ne[0], D = d->dim;
    size_t mark = lyra_arena_mark(a);
    lyra_tensor h1, h2, o, ot, oq, of;
    lyra_status s = lyra_arena_tensor(a, &h1, LYRA_DTYPE_F32, 2, (int64_t[]){S, D}, "DA3 cam_dec hidden");
    if (s == LYRA_OK) s = lyra_op_linear(be, &h1, cam, &d->b0_w, &d->b0_b);
    if (s == LYRA_OK) s = lyra_op_unary(be, &h1, &h1, LYRA_ACT_RELU);
    if (s == LYRA_OK) s = lyra_arena_tensor(a, &h2, LYRA_DTYPE_F32, 2, (int64_t[]){S, D}, "DA3 cam_dec hidden 2");
    if (s == LYRA_OK) s = lyra_op_linear(be, &h2, &h1, &d->b2_w, &d->b2_b);
    if (s == LYRA_OK) s = lyra_op_unary(be, &h2, &h2, LYRA_ACT_RELU);
    /* pose_enc = [fc_t (3) | fc_qvec (4) | relu(fc_fov) (2)] written as column slices of one (S, 9) buffer */
    if (s == LYRA_OK) s = lyra_arena_tensor(a, &o, LYRA_DTYPE_F32, 2, (int64_t[]){S, 9}, "DA3 pose encoding");
    if (s == LYRA_OK) s = lyra_tensor_slice(&ot, &o, 1, 0, 3);
    if (s == LYRA_OK) s = lyra_tensor_slice(&oq, &o, 1, 3, 7);
    if (s == LYRA_OK) s = lyra_tensor_slice(&of, &o, 1, 7, 9);
    if (s == LYRA_OK) s = lyra_op_linear(be, &ot, &h2, &d->t_w, &d->t_b);
    if (s == LYRA_OK) s = lyra_op_linear(be, &oq, &h2, &d->q_w, &d->q_b);
    if (s == LYRA_OK) s = lyra_op_linear(be, &of, &h2, &d->fov_w, &d->fov_b);
    if (s == LYRA_OK) s = to_host(be, pose_enc, &o);
    for (int64_t v = 0; s == LYRA_OK && v < S; v++)
        for (int c = 7; c < 9; c++) pose_enc[v * 9 + c] = pose_enc[v * 9 + c] > 0.0f ? pose_enc[v * 9 + c] : 0.0f;
    lyra_arena_reset(a, mark);
    return s;
}
