/* The four Resample modes (upstream TOK:70-94, TOK:97-109, TOK:120-198) with their time rules (upstream TOK:605-630,
 * M:1007-1046, TOK:623-630).
 *
 *   downsample2d: per frame ZeroPad2d(0,1,0,1) + Conv2d 3×3 stride 2 (run as a (1,3,3) conv3d over all frames).
 *   downsample3d: the same, then time_conv (3,1,1) stride 2 without padding. First chunk: frame 0 passes
 *                 untouched and the remaining frames form stride-2 triples after it; later chunks put the last
 *                 frame seen in front (a 1-frame cache), so frames pair up across chunk boundaries.
 *   upsample3d:   time_conv (3,1,1) C -> 2C causal, channels [0,C) -> frame 2i, [C,2C) -> frame 2i+1; then the
 *                 upsample2d op. First chunk: frame 0 passes without the time conv and the others start a
 *                 separate causal sequence with zeros in front (upstream's 'Rep' marker).
 *   upsample2d:   per frame nearest ×2 (exact replication for factor 2) then Conv2d 3×3 pad 1, C -> C/2.
 * The spatial upsample runs one frame at a time so its 4×-sized temporary is one frame, not the chunk.
 *
 * A first push of several frames follows the full-sequence definition (upstream TOK:605-630, M:1007-1046, TOK:623-630).
 * Upstream's code, handed such a first chunk, would skip the time conv for the whole chunk (it caches the chunk, or
 * sets 'Rep', and returns it unchanged), but it never is: its first chunk is frame 0 alone (encoder) or one latent
 * (decoder), where both readings agree. */
#include "models/vae_internal.h"

static lyra_status spatial_down(vae_ctx *c, const vae_layer *L, lyra_tensor *y, const lyra_tensor *x) {
    lyra_conv3d_params p = {1, 2, 2, 0, 0, 0, 1, 0, 1, LYRA_PAD_ZERO};
    return vx_conv3d(c, y, x, &L->w[VW_W], &L->w[VW_B], NULL, &p);
}

/* y (1, C/2, T, 2H, 2W) from x (1, C, T, H, W), frame by frame. */
static lyra_status spatial_up(vae_ctx *c, const vae_layer *L, lyra_tensor *y, const lyra_tensor *x) {
    vae_shape s = vx_shape(x);
    vae_shape su = {s.C, 1, 2 * s.H, 2 * s.W}, so = {L->cout, 1, 2 * s.H, 2 * s.W};
    lyra_conv3d_params p = {1, 1, 1, 0, 0, 1, 1, 1, 1, LYRA_PAD_ZERO};
    size_t mark = lyra_arena_mark(c->arena);
    for (int64_t t = 0; t < s.T; t++) {
        lyra_tensor up, out, xt = vx_frames(x, t, t + 1), yt = vx_frames(y, t, t + 1);
        LYRA_TRY(vx_alloc(c, &up, su, "upsample.nearest"));
        LYRA_TRY(vx_upsample2x(c, &up, &xt));
        if (s.T == 1) {
            LYRA_TRY(vx_conv3d(c, y, &up, &L->w[VW_W], &L->w[VW_B], NULL, &p));
        } else {
            /* A frame of y is a strided slice (frames are not outermost); conv3d writes contiguous outputs. */
            LYRA_TRY(vx_alloc(c, &out, so, "upsample.conv"));
            LYRA_TRY(vx_conv3d(c, &out, &up, &L->w[VW_W], &L->w[VW_B], NULL, &p));
            LYRA_TRY(vx_copy(c, &yt, &out));
        }
        lyra_arena_reset(c->arena, mark);
    }
    return LYRA_OK;
}

static lyra_status run_down3d(vae_ctx *c, const vae_layer *L, int first, lyra_tensor *y, const lyra_tensor *x) {
    vae_shape s = vx_shape(x);
    s.H /= 2;
    s.W /= 2;
    lyra_tensor d, pv;
    LYRA_TRY(vx_alloc(c, &d, s, "downsample3d.spatial"));
    LYRA_TRY(spatial_down(c, L, &d, x));
    vae_slot *slot;
    lyra_tensor last = vx_frames(&d, s.T - 1, s.T);
    LYRA_TRY(vx_slot(c, L->slot, 1, &last, &slot));
    LYRA_ASSERT(!first == !!slot->m[c->b]);
    lyra_conv3d_params p = {2, 1, 1, 0, 0, 0, 0, 0, 0, LYRA_PAD_ZERO};
    if (first) {
        lyra_tensor y0 = vx_frames(y, 0, 1), d0 = vx_frames(&d, 0, 1);
        LYRA_TRY(vx_copy(c, &y0, &d0));
        if (s.T >= 3) {
            /* Frames 1.. of y are a strided slice (channels are outer): conv into a temporary, then copy. */
            vae_shape sr = s;
            sr.T = (s.T - 1) / 2;
            lyra_tensor r, rest = vx_frames(y, 1, y->ne[2]);
            LYRA_TRY(vx_alloc(c, &r, sr, "downsample3d.time_conv"));
            LYRA_TRY(vx_conv3d(c, &r, &d, &L->w[VW_TW], &L->w[VW_TB], NULL, &p));
            LYRA_TRY(vx_copy(c, &rest, &r));
        }
    } else {
        p.pad_front = 1; /* the cached frame */
        LYRA_TRY(vx_conv3d(c, y, &d, &L->w[VW_TW], &L->w[VW_TB], vx_slot_prefix(c, slot, &pv), &p));
    }
    return vx_slot_push(c, slot, &last);
}

static lyra_status run_up3d(vae_ctx *c, const vae_layer *L, int first, lyra_tensor *y, const lyra_tensor *x) {
    vae_shape s = vx_shape(x), si = s;
    si.T = first ? 1 + 2 * (s.T - 1) : 2 * s.T;
    lyra_tensor mid;
    LYRA_TRY(vx_alloc(c, &mid, si, "upsample3d.time"));
    int64_t off = 0;
    lyra_tensor src = *x;
    if (first) {
        lyra_tensor m0 = vx_frames(&mid, 0, 1), x0 = vx_frames(x, 0, 1);
        LYRA_TRY(vx_copy(c, &m0, &x0));
        src = vx_frames(x, 1, s.T);
        off = 1;
    }
    int64_t n = src.ne[2];
    if (n > 0) {
        vae_shape st = {2 * s.C, n, s.H, s.W};
        lyra_tensor tc;
        LYRA_TRY(vx_alloc(c, &tc, st, "upsample3d.time_conv"));
        LYRA_TRY(vx_causal_conv(c, L->slot, &tc, &src, &L->w[VW_TW], &L->w[VW_TB]));
        /* Interleave: tc[s·C + ch, i] -> mid[ch, off + 2i + s], both viewed as (C, n, 2, H, W). */
        int64_t hw = s.H * s.W, f = (int64_t)lyra_dtype_size(tc.dtype);
        lyra_tensor from = tc, to = mid;
        from.ndim = to.ndim = 5;
        int64_t ne[5] = {s.C, n, 2, s.H, s.W};
        int64_t nb_from[5] = {n * hw * f, hw * f, s.C * n * hw * f, s.W * f, f};
        int64_t nb_to[5] = {si.T * hw * f, 2 * hw * f, hw * f, s.W * f, f};
        memcpy(from.ne, ne, sizeof ne);
        memcpy(to.ne, ne, sizeof ne);
        memcpy(from.nb, nb_from, sizeof nb_from);
        memcpy(to.nb, nb_to, sizeof nb_to);
        to.data = (char *)mid.data + off * hw * f;
        LYRA_TRY(vx_copy(c, &to, &from));
    }
    return spatial_up(c, L, y, &mid);
}

lyra_status vae_run_resample(vae_ctx *c, const vae_layer *L, int first, lyra_tensor *y, const lyra_tensor *x) {
    switch (L->kind) {
    case VAE_DOWN2D:
        return spatial_down(c, L, y, x);
    case VAE_DOWN3D:
        return run_down3d(c, L, first, y, x);
    case VAE_UP2D:
        return spatial_up(c, L, y, x);
    case VAE_UP3D:
        return run_up3d(c, L, first, y, x);
    default:
        return lyra_error(LYRA_ERR_INTERNAL, "vae: layer %s has no implementation", L->name);
    }
}
