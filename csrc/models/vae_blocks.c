/* The VAE's non-resampling layers (upstream TOK:70-94, TOK:97-109, TOK:120-198): causal stem conv, pointwise convs,
 * residual block, single-head attention block, head. Each writes y (allocated by the driver with vae_layer_out's shape)
 * and allocates its temporaries from the arena above the driver's mark. */
#include <math.h>

#include "models/vae_internal.h"

const char *vae_kind_name(vae_kind k) {
    static const char *names[VAE_KIND_COUNT] = {"conv", "pointwise", "residual", "attention", "downsample2d",
                                                "downsample3d", "upsample2d", "upsample3d", "head"};
    return (unsigned)k < VAE_KIND_COUNT ? names[k] : "?";
}

lyra_status vae_layer_out(const vae_layer *L, int first, vae_shape in, vae_shape *out) {
    *out = in;
    out->C = L->cout;
    switch (L->kind) {
    case VAE_DOWN2D:
    case VAE_DOWN3D:
        /* ZeroPad2d(0,1,0,1) then 3×3 stride 2: H -> H/2 for even H (inputs are multiples of 8). */
        out->H = in.H / 2;
        out->W = in.W / 2;
        if (L->kind == VAE_DOWN3D) {
            /* First chunk: frame 0 passes, then stride-2 triples -> 1 + (T-1)/2; later: cache frame + T -> T/2. */
            if (first ? in.T % 2 != 1 : (in.T % 2 != 0 || in.T == 0))
                return lyra_error(LYRA_ERR_INTERNAL, "vae %s: %lld frames reach a time downsample", L->name,
                                  (long long)in.T);
            out->T = first ? 1 + (in.T - 1) / 2 : in.T / 2;
        }
        break;
    case VAE_UP2D:
    case VAE_UP3D:
        out->H = 2 * in.H;
        out->W = 2 * in.W;
        /* First chunk: frame 0 passes (no time conv), the rest double; later chunks double (upstream TOK:605-630,
         * M:1007-1046, TOK:623-630). */
        if (L->kind == VAE_UP3D) out->T = first ? 1 + 2 * (in.T - 1) : 2 * in.T;
        break;
    default:
        break;
    }
    return LYRA_OK;
}

/* y = x + (conv(silu(norm(conv(silu(norm(x)))))) with a 1×1×1 shortcut when the width changes. The two 3×3×3
 * convs cache their own inputs (post-SiLU activations), slots L->slot and L->slot + 1. */
static lyra_status run_residual(vae_ctx *c, const vae_layer *L, lyra_tensor *y, const lyra_tensor *x) {
    vae_shape s = vx_shape(x), so = s;
    so.C = L->cout;
    lyra_tensor a, h;
    LYRA_TRY(vx_alloc(c, &a, s, "residual.in"));
    LYRA_TRY(vx_norm_silu(c, &a, x, &L->w[VW_G0], 1));
    LYRA_TRY(vx_alloc(c, &h, so, "residual.mid"));
    LYRA_TRY(vx_causal_conv(c, L->slot, &h, &a, &L->w[VW_W2], &L->w[VW_B2]));
    LYRA_TRY(vx_norm_silu(c, &h, &h, &L->w[VW_G3], 1));
    LYRA_TRY(vx_causal_conv(c, L->slot + 1, y, &h, &L->w[VW_W6], &L->w[VW_B6]));
    if (L->cin == L->cout) return vx_add(c, y, y, x);
    lyra_tensor sc;
    lyra_conv3d_params p = {1, 1, 1, 0, 0, 0, 0, 0, 0, LYRA_PAD_ZERO};
    LYRA_TRY(vx_alloc(c, &sc, so, "residual.shortcut"));
    LYRA_TRY(vx_conv3d(c, &sc, x, &L->w[VW_SCW], &L->w[VW_SCB], NULL, &p));
    return vx_add(c, y, y, &sc);
}

/* Per frame: u = norm(x); q,k,v = 1×1 conv(u) split [0,C), [C,2C), [2C,3C); softmax(q·kᵀ/√C)·v over the H·W
 * tokens (row-major), one head of width C; y = x + proj(a). Frames are the attention batch: no time mixing. */
static lyra_status run_attention(vae_ctx *c, const vae_layer *L, lyra_tensor *y, const lyra_tensor *x) {
    vae_shape s = vx_shape(x);
    int64_t C = s.C, T = s.T, n = s.H * s.W;
    lyra_tensor u, u4, ut, qkv, o, o4, p, p5, pv;
    LYRA_TRY(vx_alloc(c, &u, s, "attention.norm"));
    LYRA_TRY(vx_norm_silu(c, &u, x, &L->w[VW_G0], 0));
    /* Token-major view of u: (1, C, T, n) -> (1, T, n, C). */
    LYRA_TRY(lyra_tensor_reshape(&u4, &u, 4, (int64_t[]){1, C, T, n}));
    LYRA_TRY(lyra_tensor_permute(&ut, &u4, (int[]){0, 2, 3, 1}));
    LYRA_TRY(vx_alloc_tokens(c, &qkv, 4, (int64_t[]){1, T, n, 3 * C}, "attention.qkv"));
    LYRA_TRY(vx_linear(c, &qkv, &ut, &L->w[VW_QKV], &L->w[VW_QKVB]));
    /* q, k, v as (T, n, 1, C) column slices of qkv: last dim contiguous, rows 3C apart. */
    lyra_tensor q = qkv, k, v;
    q.ndim = 4;
    q.ne[0] = T; q.ne[1] = n; q.ne[2] = 1; q.ne[3] = C;
    int64_t es = (int64_t)lyra_dtype_size(qkv.dtype);
    q.nb[0] = n * 3 * C * es; q.nb[1] = 3 * C * es;
    q.nb[2] = C * es; q.nb[3] = es;
    k = q;
    v = q;
    k.data = (char *)qkv.data + C * es;
    v.data = (char *)qkv.data + 2 * C * es;
    LYRA_TRY(vx_alloc_tokens(c, &o, 4, (int64_t[]){T, n, 1, C}, "attention.out"));
    LYRA_TRY(vx_attention(c, &o, &q, &k, &v, (float)(1.0 / sqrt((double)C))));
    LYRA_TRY(lyra_tensor_reshape(&o4, &o, 4, (int64_t[]){1, T, n, C}));
    LYRA_TRY(vx_alloc_tokens(c, &p, 4, (int64_t[]){1, T, n, C}, "attention.proj"));
    LYRA_TRY(vx_linear(c, &p, &o4, &L->w[VW_PROJ], &L->w[VW_PROJB]));
    /* Back to channels-first: (1, T, H, W, C) -> (1, C, T, H, W) as a strided view for the residual add. */
    LYRA_TRY(lyra_tensor_reshape(&p5, &p, 5, (int64_t[]){1, T, s.H, s.W, C}));
    LYRA_TRY(lyra_tensor_permute(&pv, &p5, (int[]){0, 4, 1, 2, 3}));
    return vx_add(c, y, x, &pv);
}

lyra_status vae_layer_run(vae_ctx *c, const vae_layer *L, int first, lyra_tensor *y, const lyra_tensor *x) {
    switch (L->kind) {
    case VAE_CONV:
        return vx_causal_conv(c, L->slot, y, x, &L->w[VW_W], &L->w[VW_B]);
    case VAE_POINTWISE: {
        /* Rows [0, cout) of a (cin, cin) 1×1×1 conv: all of conv2, the mu half of conv1. */
        lyra_tensor w, b;
        lyra_conv3d_params p = {1, 1, 1, 0, 0, 0, 0, 0, 0, LYRA_PAD_ZERO};
        LYRA_TRY(lyra_tensor_slice(&w, &L->w[VW_W], 0, 0, L->cout));
        LYRA_TRY(lyra_tensor_slice(&b, &L->w[VW_B], 0, 0, L->cout));
        return vx_conv3d(c, y, x, &w, &b, NULL, &p);
    }
    case VAE_RES:
        return run_residual(c, L, y, x);
    case VAE_ATTN:
        return run_attention(c, L, y, x);
    case VAE_HEAD: {
        lyra_tensor a;
        LYRA_TRY(vx_alloc(c, &a, vx_shape(x), "head.in"));
        LYRA_TRY(vx_norm_silu(c, &a, x, &L->w[VW_G0], 1));
        return vx_causal_conv(c, L->slot, y, &a, &L->w[VW_HW], &L->w[VW_HB]);
    }
    default:
        return vae_run_resample(c, L, first, y, x);
    }
}
