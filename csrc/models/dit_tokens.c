/* Tokenization of the packed FramePack sequence (upstream WL:902-912, WL:555-803, WL:661-667, WL:766-789, WL:498-803):
 * patch tokens, camera tokens and correspondence-buffer tokens, chunk by chunk in layout order. */
#include "models/dit_internal.h"

/* Replicate-pads `src` (… T, H, W in its last three dims) at the end to (t, h, w); returns src itself when no
 * padding is needed. */
static lyra_status pad_end(dit_run *r, lyra_tensor *dst, const lyra_tensor *src, int64_t t, int64_t h, int64_t w,
                           const char *what) {
    int nd = src->ndim;
    int64_t pads[2 * LYRA_MAX_DIMS] = {0};
    pads[2 * (nd - 3) + 1] = t - src->ne[nd - 3];
    pads[2 * (nd - 2) + 1] = h - src->ne[nd - 2];
    pads[2 * (nd - 1) + 1] = w - src->ne[nd - 1];
    if (!pads[2 * (nd - 3) + 1] && !pads[2 * (nd - 2) + 1] && !pads[2 * (nd - 1) + 1]) {
        *dst = *src;
        return LYRA_OK;
    }
    int64_t ne[LYRA_MAX_DIMS];
    for (int i = 0; i < nd; i++) ne[i] = src->ne[i] + pads[2 * i + 1];
    LYRA_TRY(dit_alloc(r, dst, nd, ne, what));
    return lyra_op_pad(r->be, dst, src, pads, LYRA_PAD_REPLICATE);
}

/* The slots of chunk c of a (1, C, T, H, W) input, in f32: a view of an f32 input; a bf16 input (the driver stores
 * the condition and the buffer in bf16 on a device, as upstream does) is widened into the arena, one chunk at a
 * time, so the widened copy never holds more than the largest chunk's slots. */
static lyra_status chunk_slots_f32(dit_run *r, lyra_tensor *dst, const lyra_tensor *in, const lyra_fp_chunk *c,
                                   const char *what) {
    lyra_tensor s;
    LYRA_TRY(lyra_tensor_slice(&s, in, 2, c->slot0, c->slot0 + c->frames));
    if (s.dtype == LYRA_DTYPE_F32) {
        *dst = s;
        return LYRA_OK;
    }
    LYRA_TRY(dit_alloc(r, dst, 5, s.ne, what));
    return lyra_op_copy(r->be, dst, &s);
}

/* Patch tokens of chunk c (upstream WL:555-803) from xc, its slots of [x | y]: replicate-pad to the patch, flatten
 * (c slowest, w fastest), Linear. */
static lyra_status patch_tokens(dit_run *r, const lyra_tensor *xc, const lyra_fp_chunk *c) {
    const lyra_dit_linear *lin = c->kernel_id < 0 ? &r->m->w.patch : &r->m->w.clean[c->kernel_id];
    lyra_tensor xp, p, dst;
    LYRA_TRY(pad_end(r, &xp, xc, c->f * c->pt, c->h * c->ph, c->w * c->pw, "padded chunk"));
    LYRA_TRY(dit_alloc(r, &p, 3, (int64_t[]){1, c->n_tokens, xc->ne[1] * c->pt * c->ph * c->pw}, "patches"));
    LYRA_TRY(lyra_op_patchify(r->be, &p, &xp, c->pt, c->ph, c->pw, LYRA_PATCH_C_SLOWEST));
    LYRA_TRY(lyra_tensor_slice(&dst, &r->x, 1, c->token0, c->token0 + c->n_tokens));
    return dit_linear(r, &dst, &p, lin);
}

/* Camera tokens of chunk c (upstream WL:661-667, WL:766-789). The 2×2 unshuffle of the Plücker channels is a (1, 2, 2)
 * patchify; history chunks then average-pool the token grid over (qt, qh, qw) after replicate-padding it (the time
 * padding repeats the last slot, WL:766-789). Pooling works channel-first on a permuted view of the tokens. */
static lyra_status camera_tokens(dit_run *r, const lyra_tensor *cc, const lyra_fp_chunk *c) {
    int64_t C = r->m->cfg.cam_dim;
    lyra_tensor dst;
    LYRA_TRY(lyra_tensor_slice(&dst, &r->camtok, 1, c->token0, c->token0 + c->n_tokens));
    if (c->qt == 1 && c->qh == 1 && c->qw == 1) return lyra_op_patchify(r->be, &dst, cc, 1, 2, 2, LYRA_PATCH_C_SLOWEST);

    lyra_tensor q, grid, chw, padded, pooled, pooled_t, dst4;
    LYRA_TRY(dit_alloc(r, &q, 3, (int64_t[]){1, c->frames * r->Hb * r->Wb, C}, "camera tokens"));
    LYRA_TRY(lyra_op_patchify(r->be, &q, cc, 1, 2, 2, LYRA_PATCH_C_SLOWEST));
    LYRA_TRY(lyra_tensor_reshape(&grid, &q, 4, (int64_t[]){c->frames, r->Hb, r->Wb, C}));
    LYRA_TRY(lyra_tensor_permute(&chw, &grid, (int[]){3, 0, 1, 2}));
    LYRA_TRY(pad_end(r, &padded, &chw, c->f * c->qt, c->h * c->qh, c->w * c->qw, "padded camera grid"));
    LYRA_TRY(dit_alloc(r, &pooled, 4, (int64_t[]){C, c->f, c->h, c->w}, "pooled camera grid"));
    LYRA_TRY(lyra_op_avg_pool3d(r->be, &pooled, &padded, c->qt, c->qh, c->qw));
    LYRA_TRY(lyra_tensor_permute(&pooled_t, &pooled, (int[]){1, 2, 3, 0}));
    LYRA_TRY(lyra_tensor_reshape(&dst4, &dst, 4, (int64_t[]){c->f, c->h, c->w, C}));
    return lyra_op_copy(r->be, &dst4, &pooled_t);
}

/* Buffer tokens of chunk c (upstream WL:600-619, WL:628-642, WL:700-740), written into the first 4·Cb channels of
 * r->buftok, validity into the last. Generated and 's' chunks pixel-shuffle their buffer slice ('s' with K > 1 after a
 * floor average pool by K); 'k' chunks get −1 everywhere and validity 0 (WL:700-740). */
static lyra_status buffer_tokens(dit_run *r, const lyra_tensor *buf, const lyra_fp_chunk *c) {
    int64_t Cb = r->m->cfg.buffer_in_dim;
    lyra_tensor rows, u, val;
    LYRA_TRY(lyra_tensor_slice(&rows, &r->buftok, 1, c->token0, c->token0 + c->n_tokens));
    LYRA_TRY(lyra_tensor_slice(&u, &rows, 2, 0, 4 * Cb));
    LYRA_TRY(lyra_tensor_slice(&val, &rows, 2, 4 * Cb, 4 * Cb + 1));
    if (c->type == 'k') {
        LYRA_TRY(lyra_op_fill(r->be, &u, -1.0f));
        return lyra_op_fill(r->be, &val, 0.0f);
    }
    lyra_tensor bc, src, padded, p;
    LYRA_TRY(chunk_slots_f32(r, &bc, buf, c, "buffer slots"));
    src = bc;
    if (c->K > 1) {
        LYRA_TRY(dit_alloc(r, &src, 5, (int64_t[]){1, Cb, c->frames, r->H / c->K, r->W / c->K}, "pooled buffer"));
        LYRA_TRY(lyra_op_avg_pool3d(r->be, &src, &bc, 1, c->K, c->K));
    }
    int64_t hs = (src.ne[3] + 1) / 2, ws = (src.ne[4] + 1) / 2;
    /* Pooling by K floors while the patch tokens pad up to 2K: for K >= 3 the grids can differ, and upstream
     * then fails adding the q/k bias (upstream W:109-111, W:116-118, W:129). */
    if (c->frames * hs * ws != c->n_tokens || src.ne[3] < 1 || src.ne[4] < 1)
        return lyra_error(LYRA_ERR_ARG, "dit: layout segment %d ('s', K=%d) gives %lld x %lld buffer tokens but "
                          "%lld x %lld patch tokens on a %lld x %lld latent; use latent sizes divisible by %d",
                          c->kernel_id, c->K, (long long)hs, (long long)ws, (long long)c->h, (long long)c->w,
                          (long long)r->H, (long long)r->W, 2 * c->K);
    LYRA_TRY(pad_end(r, &padded, &src, c->frames, 2 * hs, 2 * ws, "padded buffer"));
    LYRA_TRY(dit_alloc(r, &p, 3, (int64_t[]){1, c->n_tokens, 4 * Cb}, "buffer tokens"));
    LYRA_TRY(lyra_op_patchify(r->be, &p, &padded, 1, 2, 2, LYRA_PATCH_C_SLOWEST));
    LYRA_TRY(lyra_op_copy(r->be, &u, &p));
    return lyra_op_fill(r->be, &val, 1.0f);
}

lyra_status dit_tokenize(dit_run *r, const lyra_dit_inputs *in) {
    const lyra_dit_config *cfg = &r->m->cfg;
    /* upstream WL:902-912: X = [x | y without its last cam_channels channels] (WL:827-828, WL:902-907), built per
     * chunk from its slots; the last cam_channels channels of y are the Plücker camera input. */
    int64_t Cy = in->y->ne[1], Cx = in->x->ne[1];
    for (int k = 0; k < r->n_chunks; k++) {
        const lyra_fp_chunk *c = &r->chunks[k];
        size_t m2 = lyra_arena_mark(r->a);
        lyra_tensor yc, xc, X, Xx, Xy, ylat, cam;
        LYRA_TRY(chunk_slots_f32(r, &yc, in->y, c, "condition slots"));
        LYRA_TRY(lyra_tensor_slice(&xc, in->x, 2, c->slot0, c->slot0 + c->frames));
        LYRA_TRY(lyra_tensor_slice(&ylat, &yc, 1, 0, Cy - cfg->cam_channels));
        LYRA_TRY(lyra_tensor_slice(&cam, &yc, 1, Cy - cfg->cam_channels, Cy));
        LYRA_TRY(dit_alloc(r, &X, 5, (int64_t[]){1, cfg->in_dim, c->frames, r->H, r->W}, "x+y"));
        LYRA_TRY(lyra_tensor_slice(&Xx, &X, 1, 0, Cx));
        LYRA_TRY(lyra_tensor_slice(&Xy, &X, 1, Cx, cfg->in_dim));
        LYRA_TRY(lyra_op_copy(r->be, &Xx, &xc));
        LYRA_TRY(lyra_op_copy(r->be, &Xy, &ylat));
        LYRA_TRY(patch_tokens(r, &X, c));
        LYRA_TRY(camera_tokens(r, &cam, c));
        LYRA_TRY(buffer_tokens(r, in->buffer, c));
        lyra_arena_reset(r->a, m2);
    }
    dit_probe(r, "tokens", &r->x);
    dit_probe(r, "camera_tokens", &r->camtok);
    dit_probe(r, "buffer_tokens", &r->buftok);
    return LYRA_OK;
}
