/* Generic ViT forward on the runtime ops (vit.h; upstream DA3dino:22-64, DA3vit:454-466, DA3cfg/da3-giant:6-17,
 * DA3net:484) and its cost model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/vit.h"
#include "nn/ops.h"

size_t lyra_vit_arena_bytes(const lyra_vit_config *c, int64_t S, int64_t gh, int64_t gw) {
    int64_t C = c->dim, G = gh * gw, N = 1 + c->registers + G, F = c->ffn_hidden, half = c->head_dim / 2;
    int64_t e = (int64_t)lyra_dtype_size(c->gemm), P = c->patch;
    int cast = c->gemm != LYRA_DTYPE_F32;
    size_t x = lyra_arena_size(S * N * C * 4);
    size_t tables = c->opt.rope_start >= 0 ? lyra_arena_size(N * half * 4) + lyra_arena_size(S * N * half * 4) : 0;
    /* pos-embed, its resized grid, the patch conv's output, and under autocast the pixels cast for the conv */
    size_t embed = lyra_arena_size((1 + G) * C * 4) + lyra_arena_size(C * G * 4) + lyra_arena_size(S * C * G * e) +
                   (cast ? lyra_arena_size(S * 3 * gh * P * gw * P * e) : 0);
    /* norm1, qkv, q and k (f32 for the q/k norm and RoPE, then cast), attention output, projection */
    size_t attn = lyra_arena_size(S * N * C * e) + lyra_arena_size(S * N * 3 * C * e) +
                  2 * lyra_arena_size(S * N * C * 4) + (cast ? 2 * lyra_arena_size(S * N * C * e) : 0) +
                  2 * lyra_arena_size(S * N * C * e);
    size_t ffn = 2 * lyra_arena_size(S * N * C * e) + lyra_arena_size(S * N * 2 * F * e) +
                 lyra_arena_size(S * N * F * e);
    return x + tables + lyra_size_max(embed, lyra_size_max(attn, ffn)) + 4 * LYRA_ARENA_ALIGN;
}

double lyra_vit_flops(const lyra_vit_config *c, int64_t S, int64_t gh, int64_t gw, int blocks) {
    double C = (double)c->dim, F = (double)c->ffn_hidden, G = (double)(gh * gw);
    double N = 1.0 + (double)c->registers + G, Sd = (double)S;
    double embed = 2.0 * Sd * G * C * 3.0 * (double)(c->patch * c->patch);
    double lin = 2.0 * Sd * N * C * 4.0 * C;
    lin += c->ffn == LYRA_VIT_FFN_SWIGLU ? 2.0 * Sd * N * 3.0 * F * C : 2.0 * Sd * N * 2.0 * F * C;
    double total = embed;
    for (int i = 0; i < blocks; i++) {
        double L = lyra_vit_block_is_global(c, i) ? Sd * N : N, seqs = Sd * N / L;
        total += lin + seqs * 2.0 * 2.0 * L * L * C; /* Q·Kᵀ and P·V over all heads */
    }
    return total;
}

/* A (B, L, H, Dh) view of one third (which = 0 q, 1 k, 2 v) of the fused qkv (S, N, 3C), with the S views
 * either kept apart (B = S, L = N) or joined into one sequence (B = 1, L = S·N): qkv is contiguous, so the
 * view stride of S is N times that of N and the two merge. */
static lyra_tensor qkv_part(const lyra_tensor *qkv, int which, int64_t H, int joined) {
    int64_t S = qkv->ne[0], N = qkv->ne[1], C = qkv->ne[2] / 3, Dh = C / H;
    lyra_tensor v = *qkv;
    v.ndim = 4;
    v.ne[0] = joined ? 1 : S;
    v.ne[1] = joined ? S * N : N;
    v.ne[2] = H;
    v.ne[3] = Dh;
    v.nb[0] = joined ? S * qkv->nb[0] : qkv->nb[0];
    v.nb[1] = qkv->nb[1];
    int64_t e = (int64_t)lyra_dtype_size(qkv->dtype);
    v.nb[2] = Dh * e;
    v.nb[3] = e;
    v.data = (char *)qkv->data + (size_t)which * (size_t)C * (size_t)e;
    return v;
}

static lyra_tensor vec3(const lyra_tensor *v) {
    lyra_tensor r = *v;
    r.ndim = 3;
    r.ne[0] = r.ne[1] = 1;
    r.ne[2] = v->ne[0];
    r.nb[2] = v->nb[0];
    r.nb[0] = r.nb[1] = r.nb[2] * r.ne[2];
    return r;
}

lyra_status lyra_vit_pos_embed(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_tensor *pos, int64_t gh,
                               int64_t gw) {
    const lyra_vit_config *c = &m->cfg;
    int64_t C = c->dim, M = c->pos_grid;
    if (pos->ndim != 3 || pos->ne[0] != 1 || pos->ne[1] != 1 + gh * gw || pos->ne[2] != C ||
        !lyra_tensor_is_contiguous(pos))
        return lyra_error(LYRA_ERR_ARG, "ViT pos-embed: output must be a contiguous (1, %lld, %lld) tensor",
                          (long long)(1 + gh * gw), (long long)C);
    if (gh == M && gw == M) return lyra_op_copy(be, pos, &m->pos); /* DINOv2: the table as is, no resampling */
    lyra_tensor cls_src, cls_dst, grid, grid3, src, out, out_t, dst, dst3;
    LYRA_TRY(lyra_tensor_slice(&cls_src, &m->pos, 1, 0, 1));
    LYRA_TRY(lyra_tensor_slice(&cls_dst, pos, 1, 0, 1));
    LYRA_TRY(lyra_op_copy(be, &cls_dst, &cls_src));
    LYRA_TRY(lyra_tensor_slice(&grid, &m->pos, 1, 1, 1 + M * M));
    LYRA_TRY(lyra_tensor_reshape(&grid3, &grid, 3, (int64_t[]){M, M, C}));
    LYRA_TRY(lyra_tensor_permute(&src, &grid3, (int[]){2, 0, 1})); /* (C, M, M) */
    size_t mark = lyra_arena_mark(a);
    LYRA_TRY(lyra_arena_tensor(a, &out, LYRA_DTYPE_F32, 3, (int64_t[]){C, gh, gw}, "ViT pos-embed grid"));
    /* F.interpolate(scale_factor=((gh+off)/M, (gw+off)/M), bicubic): PyTorch samples with ratio 1/scale_factor,
     * not M/g, and the output size floor(M·scale) = g (the "interpolate_offset" kludge, upstream DA3vit:220-280). */
    lyra_resize_params rp = {.mode = LYRA_RESIZE_BICUBIC, .align_corners = 0, .antialias = c->opt.pos_antialias,
                             .ratio_h = (double)M / ((double)gh + c->opt.pos_offset),
                             .ratio_w = (double)M / ((double)gw + c->opt.pos_offset)};
    lyra_status s = lyra_op_resize(be, &out, &src, &rp);
    if (s == LYRA_OK) s = lyra_tensor_permute(&out_t, &out, (int[]){1, 2, 0});
    if (s == LYRA_OK) s = lyra_tensor_slice(&dst, pos, 1, 1, 1 + gh * gw);
    if (s == LYRA_OK) s = lyra_tensor_reshape(&dst3, &dst, 3, (int64_t[]){gh, gw, C});
    if (s == LYRA_OK) s = lyra_op_copy(be, &dst3, &out_t);
    lyra_arena_reset(a, mark);
    return s;
}

/* RoPE angle tables (upstream DA3rope:23-200, DA3vit:282-298): local positions (r+1, c+1) per patch, (0, 0) for
 * cls/registers; global ("pos_nodiff") positions (1, 1) per patch and (0, 0) for special tokens, repeated per view.
 * Built on the host and uploaded into the arena (a device copy once the CUDA backend runs networks). */
static lyra_status rope_tables(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_vit_run *run) {
    const lyra_vit_config *c = &m->cfg;
    int64_t N = run->N, S = run->S, half = c->head_dim / 2, special = 1 + c->registers;
    LYRA_TRY(lyra_arena_tensor(a, &run->rope_local, LYRA_DTYPE_F32, 2, (int64_t[]){N, half}, "ViT RoPE local"));
    LYRA_TRY(lyra_arena_tensor(a, &run->rope_global, LYRA_DTYPE_F32, 2, (int64_t[]){S * N, half},
                               "ViT RoPE global"));
    float *p = malloc(sizeof *p * (size_t)(S * N * 2)), *phi = malloc(sizeof *phi * (size_t)(S * N * half));
    if (!p || !phi) {
        free(p);
        free(phi);
        return lyra_error(LYRA_ERR_OOM, "ViT RoPE tables: out of memory");
    }
    for (int64_t n = 0; n < N; n++) {
        int64_t g = n - special;
        p[2 * n] = g < 0 ? 0.0f : (float)(g / run->gw + 1);
        p[2 * n + 1] = g < 0 ? 0.0f : (float)(g % run->gw + 1);
    }
    lyra_rope_angles_2d(phi, p, N, (int)c->head_dim, c->opt.rope_theta);
    lyra_tensor host = lyra_tensor_2d(phi, LYRA_DTYPE_F32, N, half);
    lyra_status s = be->ops->upload(be, &run->rope_local, &host);
    for (int64_t v = 0; v < S; v++)
        for (int64_t n = 0; n < N; n++) {
            float q = n < special ? 0.0f : 1.0f;
            p[2 * (v * N + n)] = q;
            p[2 * (v * N + n) + 1] = q;
        }
    lyra_rope_angles_2d(phi, p, S * N, (int)c->head_dim, c->opt.rope_theta);
    host = lyra_tensor_2d(phi, LYRA_DTYPE_F32, S * N, half);
    if (s == LYRA_OK) s = be->ops->upload(be, &run->rope_global, &host);
    free(p);
    free(phi);
    return s;
}

lyra_status lyra_vit_embed(const lyra_vit *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                           lyra_tensor *x, lyra_vit_run *run) {
    const lyra_vit_config *c = &m->cfg;
    int64_t C = c->dim, P = c->patch, R = c->registers;
    if (pixels->ndim != 4 || pixels->ne[0] < 1 || pixels->ne[1] != 3 || pixels->ne[2] < P || pixels->ne[3] < P ||
        pixels->ne[2] % P || pixels->ne[3] % P)
        return lyra_error(LYRA_ERR_ARG, "ViT: pixels must be (S, 3, h, w) with h, w positive multiples of %lld",
                          (long long)P);
    memset(run, 0, sizeof *run);
    run->S = pixels->ne[0];
    run->gh = pixels->ne[2] / P;
    run->gw = pixels->ne[3] / P;
    int64_t S = run->S, G = run->gh * run->gw, N = 1 + R + G;
    run->N = N;
    LYRA_TRY(lyra_arena_tensor(a, x, LYRA_DTYPE_F32, 3, (int64_t[]){S, N, C}, "ViT tokens"));
    if (c->opt.rope_start >= 0) LYRA_TRY(rope_tables(m, be, a, run));
    size_t mark = lyra_arena_mark(a);
    lyra_tensor pos, p, pf, pt, xp, xc, cls, pos_p, pos_c, pos_pe, pos_ce;
    lyra_status s = lyra_arena_tensor(a, &pos, LYRA_DTYPE_F32, 3, (int64_t[]){1, 1 + G, C}, "ViT pos-embed");
    if (s == LYRA_OK) s = lyra_vit_pos_embed(m, be, a, &pos, run->gh, run->gw);
    /* under autocast the patch conv runs on the pixels cast to the autocast dtype; the pos-embed add promotes
     * its output back to the f32 residual stream (upstream DA3vit:263-264: cat with the f32 cls token) */
    lyra_tensor px = *pixels;
    if (s == LYRA_OK && c->gemm != pixels->dtype) {
        s = lyra_arena_tensor(a, &px, c->gemm, 4, pixels->ne, "ViT pixels (autocast)");
        if (s == LYRA_OK) s = lyra_op_copy(be, &px, pixels);
    }
    if (s == LYRA_OK) s = lyra_arena_tensor(a, &p, c->gemm, 4, (int64_t[]){S, C, run->gh, run->gw},
                                            "ViT patch embedding");
    lyra_conv2d_params cp = {.stride_h = (int)P, .stride_w = (int)P};
    if (s == LYRA_OK) s = lyra_op_conv2d(be, &p, &px, &m->patch_w, &m->patch_b, &cp);
    /* tokens: [cls, registers, patches (row-major)]; pos-embed on cls and patches only (DINOv2 order). */
    if (s == LYRA_OK) s = lyra_tensor_reshape(&pf, &p, 3, (int64_t[]){S, C, G});
    if (s == LYRA_OK) s = lyra_tensor_permute(&pt, &pf, (int[]){0, 2, 1});
    if (s == LYRA_OK) s = lyra_tensor_slice(&xp, x, 1, 1 + R, N);
    if (s == LYRA_OK) s = lyra_tensor_slice(&pos_p, &pos, 1, 1, 1 + G);
    if (s == LYRA_OK) s = lyra_tensor_expand(&pos_pe, &pos_p, 3, (int64_t[]){S, G, C});
    if (s == LYRA_OK) s = lyra_op_add(be, &xp, &pt, &pos_pe);
    if (s == LYRA_OK) s = lyra_tensor_slice(&xc, x, 1, 0, 1);
    if (s == LYRA_OK) s = lyra_tensor_expand(&cls, &m->cls, 3, (int64_t[]){S, 1, C});
    if (s == LYRA_OK) s = lyra_tensor_slice(&pos_c, &pos, 1, 0, 1);
    if (s == LYRA_OK) s = lyra_tensor_expand(&pos_ce, &pos_c, 3, (int64_t[]){S, 1, C});
    if (s == LYRA_OK) s = lyra_op_add(be, &xc, &cls, &pos_ce);
    if (s == LYRA_OK && R > 0) {
        lyra_tensor xr, reg;
        s = lyra_tensor_slice(&xr, x, 1, 1, 1 + R);
        if (s == LYRA_OK) s = lyra_tensor_expand(&reg, &m->registers, 3, (int64_t[]){S, R, C});
        if (s == LYRA_OK) s = lyra_op_copy(be, &xr, &reg);
    }
    lyra_arena_reset(a, mark);
    return s;
}

/* q or k (B, L, H, Dh) contiguous: q/k LayerNorm over Dh (blocks with q_norm) or a plain copy, then RoPE. */
static lyra_status qk_prepare(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *src, const lyra_tensor *w,
                              const lyra_tensor *b, float eps, const lyra_tensor *angles) {
    if (w->data) LYRA_TRY(lyra_op_layer_norm(be, dst, src, w, b, eps));
    else LYRA_TRY(lyra_op_copy(be, dst, src));
    if (angles) LYRA_TRY(lyra_op_rope(be, dst, dst, angles, LYRA_ROPE_HALF, 2));
    return LYRA_OK;
}

static lyra_status residual(lyra_backend *be, lyra_tensor *x, const lyra_tensor *ls, const lyra_tensor *t) {
    if (!ls->data) return lyra_op_add(be, x, x, t);
    lyra_tensor g = vec3(ls);
    return lyra_op_gate(be, x, x, &g, t);
}

static lyra_status attention(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_tensor *x,
                             const lyra_vit_run *run, int i) {
    const lyra_vit_config *c = &m->cfg;
    const lyra_vit_block *b = &m->blocks[i];
    int64_t S = x->ne[0], N = x->ne[1], C = c->dim, H = c->heads, Dh = c->head_dim;
    int joined = lyra_vit_block_is_global(c, i);
    int64_t B = joined ? 1 : S, L = joined ? S * N : N;
    int rope = c->opt.rope_start >= 0 && i >= c->opt.rope_start;
    lyra_tensor h, qkv, o, t, q, k;
    /* the LayerNorm output feeds a GEMM only: stored in its dtype, the one rounding autocast applies there */
    LYRA_TRY(lyra_arena_tensor(a, &h, c->gemm, 3, x->ne, "ViT norm1"));
    LYRA_TRY(lyra_op_layer_norm(be, &h, x, &b->norm1_w, &b->norm1_b, c->opt.ln_eps));
    LYRA_TRY(lyra_arena_tensor(a, &qkv, c->gemm, 3, (int64_t[]){S, N, 3 * C}, "ViT qkv"));
    LYRA_TRY(lyra_op_linear(be, &qkv, &h, &b->qkv_w, &b->qkv_b));
    lyra_tensor qv = qkv_part(&qkv, 0, H, joined), kv = qkv_part(&qkv, 1, H, joined), vv = qkv_part(&qkv, 2, H, joined);
    const lyra_tensor *qp = &qv, *kp = &kv;
    if (rope || b->q_norm_w.data) {
        const lyra_tensor *ang = rope ? (joined ? &run->rope_global : &run->rope_local) : NULL;
        LYRA_TRY(lyra_arena_tensor(a, &q, LYRA_DTYPE_F32, 4, (int64_t[]){B, L, H, Dh}, "ViT q"));
        LYRA_TRY(lyra_arena_tensor(a, &k, LYRA_DTYPE_F32, 4, (int64_t[]){B, L, H, Dh}, "ViT k"));
        LYRA_TRY(qk_prepare(be, &q, &qv, &b->q_norm_w, &b->q_norm_b, c->opt.qk_norm_eps, ang));
        LYRA_TRY(qk_prepare(be, &k, &kv, &b->k_norm_w, &b->k_norm_b, c->opt.qk_norm_eps, ang));
        if (c->gemm != LYRA_DTYPE_F32) { /* f32 norm and RoPE, cast by the autocast attention */
            lyra_tensor q16, k16;
            LYRA_TRY(lyra_arena_tensor(a, &q16, c->gemm, 4, q.ne, "ViT q (autocast)"));
            LYRA_TRY(lyra_arena_tensor(a, &k16, c->gemm, 4, k.ne, "ViT k (autocast)"));
            LYRA_TRY(lyra_op_copy(be, &q16, &q));
            LYRA_TRY(lyra_op_copy(be, &k16, &k));
            q = q16;
            k = k16;
        }
        qp = &q;
        kp = &k;
    }
    LYRA_TRY(lyra_arena_tensor(a, &o, c->gemm, 4, (int64_t[]){B, L, H, Dh}, "ViT attention"));
    LYRA_TRY(lyra_op_attention(be, &o, qp, kp, &vv, NULL, NULL, 1.0f / sqrtf((float)Dh)));
    lyra_tensor o3;
    LYRA_TRY(lyra_tensor_reshape(&o3, &o, 3, (int64_t[]){S, N, C}));
    LYRA_TRY(lyra_arena_tensor(a, &t, c->gemm, 3, x->ne, "ViT attention projection"));
    LYRA_TRY(lyra_op_linear(be, &t, &o3, &b->proj_w, &b->proj_b));
    return residual(be, x, &b->ls1, &t);
}

static lyra_status ffn(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_tensor *x, int i) {
    const lyra_vit_config *c = &m->cfg;
    const lyra_vit_block *b = &m->blocks[i];
    int64_t S = x->ne[0], N = x->ne[1], F = c->ffn_hidden;
    lyra_tensor h, u, t;
    LYRA_TRY(lyra_arena_tensor(a, &h, c->gemm, 3, x->ne, "ViT norm2"));
    LYRA_TRY(lyra_op_layer_norm(be, &h, x, &b->norm2_w, &b->norm2_b, c->opt.ln_eps));
    lyra_tensor *hidden = &u;
    lyra_tensor g;
    if (c->ffn == LYRA_VIT_FFN_SWIGLU) {
        /* w3(silu(x1)·x2), [x1 | x2] = w12(h) split in halves (upstream DA3dino:22-64, DA3vit:454-466,
         * DA3cfg/da3-giant:6-17). */
        lyra_tensor x1, x2;
        LYRA_TRY(lyra_arena_tensor(a, &u, c->gemm, 3, (int64_t[]){S, N, 2 * F}, "ViT w12"));
        LYRA_TRY(lyra_op_linear(be, &u, &h, &b->fc1_w, &b->fc1_b));
        LYRA_TRY(lyra_tensor_slice(&x1, &u, 2, 0, F));
        LYRA_TRY(lyra_tensor_slice(&x2, &u, 2, F, 2 * F));
        LYRA_TRY(lyra_arena_tensor(a, &g, c->gemm, 3, (int64_t[]){S, N, F}, "ViT SwiGLU"));
        LYRA_TRY(lyra_op_glu(be, &g, &x2, &x1, LYRA_ACT_SILU));
        hidden = &g;
    } else {
        LYRA_TRY(lyra_arena_tensor(a, &u, c->gemm, 3, (int64_t[]){S, N, F}, "ViT fc1"));
        LYRA_TRY(lyra_op_linear(be, &u, &h, &b->fc1_w, &b->fc1_b));
        LYRA_TRY(lyra_op_gelu(be, &u, &u, 0)); /* nn.GELU(): exact erf */
    }
    LYRA_TRY(lyra_arena_tensor(a, &t, c->gemm, 3, x->ne, "ViT ffn out"));
    LYRA_TRY(lyra_op_linear(be, &t, hidden, &b->fc2_w, &b->fc2_b));
    return residual(be, x, &b->ls2, &t);
}

lyra_status lyra_vit_run_block(const lyra_vit *m, lyra_backend *be, lyra_arena *a, lyra_tensor *x,
                           const lyra_vit_run *run, int i) {
    const lyra_vit_config *c = &m->cfg;
    if (i < 0 || i >= c->depth) return lyra_error(LYRA_ERR_ARG, "ViT: block %d out of range", i);
    if (x->ndim != 3 || x->ne[2] != c->dim || x->ne[0] != run->S || x->ne[1] != run->N ||
        !lyra_tensor_is_contiguous(x))
        return lyra_error(LYRA_ERR_ARG, "ViT: tokens must be contiguous (%lld, %lld, %lld)", (long long)run->S,
                          (long long)run->N, (long long)c->dim);
    size_t mark = lyra_arena_mark(a);
    lyra_status s = attention(m, be, a, x, run, i);
    lyra_arena_reset(a, mark);
    if (s == LYRA_OK) s = ffn(m, be, a, x, i);
    lyra_arena_reset(a, mark);
    return s;
}

lyra_status lyra_vit_final_norm(const lyra_vit *m, lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    return lyra_op_layer_norm(be, y, x, &m->norm_w, &m->norm_b, m->cfg.opt.norm_eps);
}

lyra_status lyra_vit_taps(const lyra_vit *m, lyra_backend *be, lyra_arena *a, const lyra_tensor *pixels,
                          int n_taps, const int *idx, lyra_tensor *const *taps, lyra_tensor *cls) {
    const lyra_vit_config *c = &m->cfg;
    if (n_taps < 1) return lyra_error(LYRA_ERR_ARG, "ViT: at least one tap is needed");
    for (int t = 0; t < n_taps; t++)
        if (idx[t] < 0 || idx[t] >= c->depth || (t > 0 && idx[t] <= idx[t - 1]))
            return lyra_error(LYRA_ERR_ARG, "ViT: tap blocks must increase within [0, %lld)", (long long)c->depth);
    size_t mark = lyra_arena_mark(a);
    lyra_tensor x;
    lyra_vit_run run;
    lyra_status s = lyra_vit_embed(m, be, a, pixels, &x, &run);
    int64_t special = 1 + c->registers;
    for (int i = 0, t = 0; s == LYRA_OK && t < n_taps; i++) {
        s = lyra_vit_run_block(m, be, a, &x, &run, i);
        if (s != LYRA_OK || i != idx[t]) continue;
        lyra_tensor patches, cls_in, cls_out;
        s = lyra_tensor_slice(&patches, &x, 1, special, run.N);
        if (s == LYRA_OK) s = lyra_vit_final_norm(m, be, taps[t], &patches);
        if (s == LYRA_OK && cls) {
            s = lyra_tensor_select(&cls_in, &x, 1, 0);
            if (s == LYRA_OK) s = lyra_tensor_select(&cls_out, cls, 0, t);
            if (s == LYRA_OK) s = lyra_vit_final_norm(m, be, &cls_out, &cls_in);
        }
        t++;
    }
    lyra_arena_reset(a, mark);
    return s;
}
