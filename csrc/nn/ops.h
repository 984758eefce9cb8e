/* The ops networks call: validated wrappers over the backend table (nn/backend.h).
 *
 * Conventions:
 * - Shapes are outermost-first (NumPy/PyTorch order, core/tensor.h). "..." is any number of leading dims
 *   (0 to 4). A tensor written "(B|1, ...)" may have size 1 in that dim and is broadcast.
 * - The caller allocates every output (arena) with the documented shape; ops never allocate outputs.
 * - Inputs may be strided views (slices, permutes, stride-0 broadcasts) unless the comment says
 *   "contiguous"; the CPU backend packs what its GEMMs need into scratch. Outputs must be contiguous unless
 *   the comment says otherwise (attention and linear accept outputs whose rows are contiguous).
 * - Output must not alias an input, except for the pointwise ops (unary, glu, add, mul, scale, modulate,
 *   gate, rope, softmax, rms_norm, layer_norm), where y == x (same data and strides) is allowed.
 * - Activations are f32 on the CPU backend. Weights (w) of linear / conv / embedding may be f32, bf16 or f16.
 * - Every wrapper returns LYRA_ERR_ARG (bad shape/value) or LYRA_ERR_TYPE (bad dtype) with a message naming
 *   the op and the argument, before touching any data.
 *
 * A layer written on this API (CLIP-style attention block; x (B, L, C), weights bound by lyra_weights_bind):
 *
 *     size_t mark = lyra_arena_mark(act);
 *     lyra_tensor h, qkv, o, a, q, k, v;
 *     LYRA_TRY(lyra_arena_tensor(act, &h, LYRA_DTYPE_F32, 3, x->ne, "ln1"));
 *     LYRA_TRY(lyra_op_layer_norm(be, &h, x, &blk->ln1_w, &blk->ln1_b, 1e-5f));
 *     LYRA_TRY(lyra_arena_tensor(act, &qkv, LYRA_DTYPE_F32, 5, (int64_t[]){B, L, 3, H, Dh}, "qkv"));
 *     lyra_tensor qkv3;                                   // the Linear writes (B, L, 3·C) into the same memory
 *     LYRA_TRY(lyra_tensor_reshape(&qkv3, &qkv, 3, (int64_t[]){B, L, 3 * C}));
 *     LYRA_TRY(lyra_op_linear(be, &qkv3, &h, &blk->qkv_w, &blk->qkv_b));
 *     LYRA_TRY(lyra_tensor_select(&q, &qkv, 2, 0));      // strided (B, L, H, Dh) views, no copy
 *     LYRA_TRY(lyra_tensor_select(&k, &qkv, 2, 1));
 *     LYRA_TRY(lyra_tensor_select(&v, &qkv, 2, 2));
 *     LYRA_TRY(lyra_arena_tensor(act, &o, LYRA_DTYPE_F32, 4, (int64_t[]){B, L, H, Dh}, "attn"));
 *     LYRA_TRY(lyra_op_attention(be, &o, &q, &k, &v, NULL, NULL, 1.0f / sqrtf((float)Dh)));
 *     lyra_tensor o3;                                     // merge heads: contiguous, so a reshape
 *     LYRA_TRY(lyra_tensor_reshape(&o3, &o, 3, (int64_t[]){B, L, C}));
 *     LYRA_TRY(lyra_arena_tensor(act, &a, LYRA_DTYPE_F32, 3, (int64_t[]){B, L, C}, "proj"));
 *     LYRA_TRY(lyra_op_linear(be, &a, &o3, &blk->proj_w, &blk->proj_b));
 *     LYRA_TRY(lyra_op_add(be, x, x, &a));               // in place
 *     lyra_arena_reset(act, mark);
 */
#ifndef LYRA_OPS_H
#define LYRA_OPS_H

#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------- memory ---------------- */

/* dst (on be's device) = host_src (host memory, any strides); same shape and dtype. Synchronous: host_src may
 * be reused on return. On the CPU backend a strided copy. */
lyra_status lyra_op_upload(lyra_backend *be, lyra_tensor *dst, const lyra_tensor *host_src);
/* host_dst (host memory) = src (on be's device); waits until the data is there. */
lyra_status lyra_op_download(lyra_backend *be, lyra_tensor *host_dst, const lyra_tensor *src);
/* Waits for every queued op (the CUDA backend queues its kernels on a stream). */
lyra_status lyra_op_synchronize(lyra_backend *be);

/* ---------------- layout ---------------- */

/* y = x with dtype conversion (f32/bf16/f16 among each other; other dtypes only to the same dtype).
 * y, x: same shape, any strides (y may be a strided view: this is how slices/permutes are materialised). */
lyra_status lyra_op_copy(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x);
/* y[...] = value. y: any shape, any strides, f32. */
lyra_status lyra_op_fill(lyra_backend *be, lyra_tensor *y, float value);
/* y = concatenate(xs[0..n-1], dim). xs[i]: same shape as y except in `dim`; sum of their sizes = y.ne[dim]. */
lyra_status lyra_op_concat(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim);
/* y = pad(x). pads[2i], pads[2i+1] = elements added before / after dim i (outermost first, i < x.ndim, >= 0).
 * y.ne[i] = x.ne[i] + pads[2i] + pads[2i+1]. REPLICATE copies the edge element (needs x.ne[i] >= 1). */
lyra_status lyra_op_pad(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *pads,
                        lyra_pad_mode mode);
/* Patch tokens, tokens ordered f-major then i then j (upstream WL:555-803):
 *   x (B, C, T, H, W) with T % kt == H % kh == W % kw == 0 (replicate-pad first, lyra_op_pad);
 *   y (B, (T/kt)·(H/kh)·(W/kw), C·kt·kh·kw), vector order per lyra_patch_order. */
lyra_status lyra_op_patchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                             lyra_patch_order order);
/* Inverse of patchify: x (B, (T/kt)·(H/kh)·(W/kw), C·kt·kh·kw) -> y (B, C, T, H, W) (the shape of y gives the grid). */
lyra_status lyra_op_unpatchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                               lyra_patch_order order);
/* y[n, :] = table[ids[n], :]. ids (N) i32/i64 (... leading dims allowed: y (..., D), ids (...)),
 * table (V, D) f32/bf16/f16; y f32. An id outside [0, V) -> LYRA_ERR_ARG naming the position. */
lyra_status lyra_op_embedding(lyra_backend *be, lyra_tensor *y, const lyra_tensor *table, const lyra_tensor *ids);

/* ---------------- GEMM ---------------- */

/* y = x·wᵀ + b (PyTorch Linear, w in (out, in) layout). x (..., K), w (N, K), b (N) or NULL, y (..., N);
 * f32 accumulation. y's rows must be contiguous (a column slice of a wider buffer is fine). */
lyra_status lyra_op_linear(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b);
/* y = act(x·wᵀ + b): linear followed by an activation, fused where the backend can (CUDA: the GEMM's bias +
 * GELU-tanh epilogue for bf16/f16 outputs; otherwise a separate pointwise pass). Shapes as lyra_op_linear. */
lyra_status lyra_op_linear_act(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                               const lyra_tensor *b, lyra_act act);
/* Batched c = alpha·a·op(b). a (B|1, M, K); b (B|1, K, N), or (B|1, N, K) when trans_b; c (B, M, N).
 * 2-d a/b/c (no batch) are accepted too. */
lyra_status lyra_op_matmul(lyra_backend *be, lyra_tensor *c, const lyra_tensor *a, const lyra_tensor *b,
                           int trans_b, float alpha);
/* Multi-head attention, O = softmax(Q·Kᵀ·scale + bias + mask)·V per (batch, head), statistics in f32.
 *   q (B, Lq, H, D), k (B, Lk, Hk, D), v (B, Lk, Hk, Dv), o (B, Lq, H, Dv); H % Hk == 0 (grouped heads:
 *   head h uses kv head h / (H/Hk)). Strided q/k/v are fine (slices of a fused qkv) if the last dim is
 *   contiguous.
 *   bias: NULL or f32 (B|1, H|1, Lq, Lk), added after scaling (T5 relative position bias, upstream T5:130-331).
 *   key_mask: NULL or u8 (B, Lk), 0 = key masked out (probability exactly 0). A query whose keys are all
 *   masked gets o = 0.
 *   No causal mask: nothing in Lyra-2 attends causally (upstream W:300-307, WL:979-999, W:389-396). */
lyra_status lyra_op_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                              const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask,
                              float scale);

/* FP8 (e4m3, core/fp8.h): the two halves of an FP8 tensor-core Linear with a per-token activation scale and a
 * per-output-channel weight scale (the DiT's fp8 blocks, models/dit_fp8.c).
 * quantize_fp8_rows: x (..., K) f32/bf16/f16 with M = numel/K rows (last dim contiguous); q (M, K) u8 and s (M)
 *   f32, contiguous: s[m] = max_k |x[m, k]| / 448 (1 for an all-zero row), q[m, k] = e4m3(x[m, k] / s[m]) rounded to
 *   nearest even, saturating at ±448 (an f32 division, so every backend produces the same codes).
 * linear_fp8: y (..., N) f32/bf16/f16 with M rows (rows contiguous) = acc[m, n]·(s[m]·ws[n]) + b[n], where
 *   acc[m, n] = Σ_k e4m3(q[m, k])·e4m3(w8[n, k]) accumulated in f32 (each product is exact in f32); w8 (N, K) u8
 *   and ws (N) f32 contiguous; b (N) float or NULL. Only the summation order differs between backends. */
lyra_status lyra_op_quantize_fp8_rows(lyra_backend *be, lyra_tensor *q, lyra_tensor *s, const lyra_tensor *x);
lyra_status lyra_op_linear_fp8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *q, const lyra_tensor *s,
                               const lyra_tensor *w8, const lyra_tensor *ws, const lyra_tensor *b);

/* ---------------- normalisation ---------------- */

/* y = x / sqrt(mean(x², last dim) + eps) · w. x, y (..., D); w (D) or NULL (f32/bf16/f16).
 * Per-head RMSNorm: pass x viewed as (B, L, H, Dh) and w (Dh). */
lyra_status lyra_op_rms_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                             float eps);
/* y = (x − mean)/sqrt(var_biased + eps)·w + b over the last dim. w, b (D) or NULL (no affine). */
lyra_status lyra_op_layer_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                               const lyra_tensor *b, float eps);
/* Wan VAE "RMS_norm" (upstream TOK:70-94, TOK:97-109, TOK:120-198): over dim 1 (channels) of x (B, C, ...):
 *   y[b, c, s] = x[b, c, s] / max(‖x[b, :, s]‖₂, eps) · sqrt(C) · gamma[c] (+ beta[c]).
 * gamma (C) or NULL, beta (C) or NULL; upstream eps = 1e-12. */
lyra_status lyra_op_l2norm_channels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x,
                                    const lyra_tensor *gamma, const lyra_tensor *beta, float eps);
/* GroupNorm over x (B, C, ...): C % groups == 0, statistics over (C/groups, ...), biased variance.
 * w, b (C) or NULL. */
lyra_status lyra_op_group_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int groups,
                               const lyra_tensor *w, const lyra_tensor *b, float eps);
/* y = softmax(x·scale) over the last dim. x, y (..., N). */
lyra_status lyra_op_softmax(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float scale);

/* ---------------- pointwise ---------------- */

/* y = act(x). x, y same shape. */
lyra_status lyra_op_unary(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_act act);
static inline lyra_status lyra_op_gelu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int tanh_approx) {
    return lyra_op_unary(be, y, x, tanh_approx ? LYRA_ACT_GELU_TANH : LYRA_ACT_GELU_ERF);
}
static inline lyra_status lyra_op_silu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x) {
    return lyra_op_unary(be, y, x, LYRA_ACT_SILU);
}
/* Gated unit y = a ⊙ act(g). a, g, y same shape. umT5 FFN: a = fc1(h), g = gate(h), act = GELU_TANH
 * (upstream T5:130-331); SwiGLU (DA3): a = x2, g = x1, act = SILU. */
lyra_status lyra_op_glu(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *g, lyra_act act);
/* y = a + b, y = a ⊙ b. a, b: same ndim as y, each dim equal to y's or 1 (broadcast). */
lyra_status lyra_op_add(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b);
lyra_status lyra_op_mul(lyra_backend *be, lyra_tensor *y, const lyra_tensor *a, const lyra_tensor *b);
/* y = alpha·x + beta. */
lyra_status lyra_op_scale(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, float alpha, float beta);
/* adaLN modulate y = x·(1 + scale) + shift (upstream WL:150-212, W:280-437). x, y (B, L, D);
 * shift, scale broadcastable to x (typically (B|1, 1, D)). */
lyra_status lyra_op_modulate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *shift,
                             const lyra_tensor *scale);
/* Gated residual y = x + g ⊙ a (upstream WL:150-212, W:280-437). x, a, y same shape; g broadcastable. */
lyra_status lyra_op_gate(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *g,
                         const lyra_tensor *a);
/* Rotary embedding. x, y (B, L, H, D) (last dim contiguous), angles f32 (L, D/2) shared by all heads and
 * batches; pairing per lyra_rope_mode (n_sections used by HALF only; D % (2·n_sections) == 0). */
lyra_status lyra_op_rope(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *angles,
                         lyra_rope_mode mode, int n_sections);

/* Sin/cos features (the DiT's correspondence-buffer encoding, upstream
 * Lyra-2/lyra_2/_src/networks/wan2pt1_lyra2.py:137-148): x (..., C), y (..., 2·octaves·C) contiguous, per octave
 * o < octaves the blocks y[..., 2oC + c] = sin(x·f_o), y[..., (2o+1)C + c] = cos(x·f_o) with f_o = 2^o·π rounded
 * to f32 and the product rounded to f32 (upstream's x.float() * (2^o·π)). x: any strides, float dtypes. */
lyra_status lyra_op_sincos(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int octaves);

/* ---------------- convolution and resampling ---------------- */

/* Cross-correlation. x (B, Ci, H, W), w (Co, Ci, kh, kw), b (Co) or NULL, y (B, Co, Ho, Wo) with
 * Ho = (H + pad_top + pad_bottom − kh)/stride_h + 1 (floor), Wo likewise. Groups = 1, dilation = 1. */
lyra_status lyra_op_conv2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b, const lyra_conv2d_params *p);
/* 3-D cross-correlation with causal time padding (Wan CausalConv3d, upstream TOK:70-94, TOK:97-109, TOK:120-198).
 * x (B, Ci, T, H, W), w (Co, Ci, kt, kh, kw), b (Co) or NULL, prefix NULL or (B, Ci, m, H, W) with
 * m <= pad_front (the streaming cache), y (B, Co, To, Ho, Wo), To = (T + pad_front + pad_back − kt)/stride_t + 1. */
lyra_status lyra_op_conv3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                           const lyra_tensor *b, const lyra_tensor *prefix, const lyra_conv3d_params *p);
/* PyTorch ConvTranspose2d (no output_padding, groups 1). x (B, Ci, H, W), w (Ci, Co, kh, kw), b (Co) or NULL,
 * y (B, Co, (H−1)·stride − 2·padding + kh, (W−1)·stride − 2·padding + kw). */
lyra_status lyra_op_conv_transpose2d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *w,
                                     const lyra_tensor *b, int stride, int padding);
/* Nearest 2× over the last two dims: y[..., y, x] = x[..., y/2, x/2]. x (..., H, W), y (..., 2H, 2W). */
lyra_status lyra_op_upsample_nearest2x(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x);
/* Resize over the last two dims (PyTorch F.interpolate semantics, docs/REFERENCES.md#resampling, upstream
 * CLIP:519-523). x (..., H, W), y (..., Ho, Wo). */
lyra_status lyra_op_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_resize_params *p);
/* Average pool with kernel = stride over the last three dims, floor (no padding):
 * x (..., T, H, W), y (..., T/kt, H/kh, W/kw). */
lyra_status lyra_op_avg_pool3d(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw);

/* Gaussian-splat render (the model in nn/splat_math.h): y (H, W, 5) f32 = (r, g, b, alpha, depth) of the splats
 * means (N, 3), scales (N, 3) (standard deviations), rotations (N, 4) (quaternions w, x, y, z; normalised here),
 * harmonics (N, 3, d_sh) (d_sh = 1, 4 or 9: SH degree 0, 1 or 2), opacities (N), all contiguous f32, seen by cam
 * (positive focal lengths, near_plane > 0). H and W from 1 to 16384. */
lyra_status lyra_op_gs_rasterize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *means, const lyra_tensor *scales,
                                 const lyra_tensor *rotations, const lyra_tensor *harmonics,
                                 const lyra_tensor *opacities, const lyra_splat_camera *cam);

/* Forward warp of one source view into p->n_targets cameras, upstream's `forward_warp_multiframes` with v = 1,
 * is_image and render_depth (upstream M:1601-1822, FW:57-150, FW:302-419); the CPU reference is nn/warp.h's
 * lyra_warp_forward, whose comments list the upstream quirks kept. image (C, H, W) f32 source values (C >= 1),
 * depth (H, W) f32 raw z-depth (NaN / inf / <= 0 allowed: sanitized as upstream); out_image (N, C, H, W) f32
 * (holes -1, clamped to [-1, 1]), out_mask (N, H, W) f32 0/1 or NULL, out_depth (N, H, W) f32 (holes 0) or NULL.
 * All contiguous. Cameras in host memory (lyra_warp_params), finite. */
lyra_status lyra_op_warp_forward(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask,
                                 lyra_tensor *out_depth, const lyra_tensor *image, const lyra_tensor *depth,
                                 const lyra_warp_params *p);

/* ---------------- chunk inputs (pipeline/prep.c) ---------------- */

/* Ray image of one camera (upstream M:1830-1888, PL:28-74; per-pixel arithmetic nn/rays_math.h, the CPU reference
 * geom/rays.c): per pixel centre the unit direction d = R·normalize(((i+0.5-cx)/fx, (j+0.5-cy)/fy, 1)) and the
 * origin o = c2w[:3, 3] (or the moment o×d), computed in f32 and stored in y's float dtype (f32 on the CPU backend;
 * bf16/f16 on a device round once). y any strides, (6·u², height/u, width/u) for p->unshuffle = u
 * (height, width multiples of u): channel c·u² + r·u + q at (i, j) holds component c of pixel (u·i + r, u·j + q),
 * components [o, d] (u = 1: plain planes; u = 8: the DiT's pixel-unshuffled condition). */
lyra_status lyra_op_rays(lyra_backend *be, lyra_tensor *y, int height, int width, const lyra_ray_params *p);
/* uint8 frames: x (N, C, H, W) float, any strides -> y (N, H, W, C) u8 contiguous, per lyra_u8_mode (every
 * backend rounds each step in f32 as the mode's formula is written). */
lyra_status lyra_op_to_u8(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, lyra_u8_mode mode);
/* Running minimum and maximum: mm (2) f32 = [min(prev[0], min x), max(prev[1], max x)] (prev NULL: +inf, -inf);
 * NaNs in x are skipped. x f32, any shape and strides; prev (2) f32 or NULL, may be mm itself (accumulate). */
lyra_status lyra_op_minmax(lyra_backend *be, lyra_tensor *mm, const lyra_tensor *x, const lyra_tensor *prev);
/* Range normalisation to [-1, 1] with the range in device memory (upstream M:1787-1793):
 * y = 2·(x − mm[0]) / r − 1 with r = mm[1] − mm[0] when > eps, else eps, each step rounded in f32, stored in y's
 * float dtype (f32 on the CPU backend). x f32, y same shape, any strides (y == x in place allowed); mm (2) f32. */
lyra_status lyra_op_range_norm(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_tensor *mm,
                               float eps);
/* DA3's input pixels from uint8 frames on the backend (upstream DA3in:219-257, DA3in:316-383; the reference is
 * models/da3_preproc.c, the per-pixel arithmetic nn/u8_pixels_math.h, bit-identical on every backend):
 * x (N, H, W, C) u8 contiguous, 1 <= C <= 4 -> y (N, C, Ho, Wo) f32 contiguous, y = (resample(x) / 255 − mean) / std.
 * p->resample NONE needs Ho = H, Wo = W; AREA shrinks only (Ho <= H, Wo <= W). */
lyra_status lyra_op_u8_pixels(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const lyra_u8_pixels_params *p);
/* DA3's head activations and nested merge where the heads' maps are (upstream DA3dpt output activations, DA3net:499-567,
 * DA3aln; the arithmetic of lyra_da3_merge_host below). depth, conf, metric and sky are f32 (S, h, w) contiguous;
 * depth, conf and metric hold the heads' logits on entry and are rewritten in place: conf = exp(conf) + 1 (1 at the
 * sky), metric = exp(metric)·metric_factor[v], depth = σ·exp(depth) with the sky filled; sky is read. metric_factor:
 * host, S values (each view's mean predicted focal / 300). stats (4) f32 = [median confidence, σ, sky fill, non-sky
 * count (exact below 2^24)]; with at most 10 non-sky pixels only the activations run and stats = [NaN, NaN, NaN,
 * count] (the caller refuses, as upstream asserts). CPU: bit-identical to lyra_da3_merge_host; CUDA: exact selections
 * (a radix select over the float bits), the f64 least-squares sums in another order (σ within 1 f32 ulp), expf
 * within CUDA's 2 ulp. */
lyra_status lyra_op_da3_merge(lyra_backend *be, lyra_tensor *stats, lyra_tensor *depth, lyra_tensor *conf,
                              lyra_tensor *metric, const lyra_tensor *sky, const float *metric_factor);
/* Depth maps to the frames' size: y = bilinear(x / divisor) with f64 source coordinates (lyra2.generate._bilinear,
 * align_corners=False; each source value (float)((double)x / divisor)), per element nn/depth_resize_math.h,
 * bit-identical on every backend. x (N, h, w) f32 contiguous, y (N, H, W) f32 contiguous, divisor finite and > 0. */
lyra_status lyra_op_depth_resize(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, double divisor);

/* ---------------- sampler state (sample/unipc.c, sample/dmd.c, pipeline/ar_driver.c) ---------------- */

/* The samplers' elementwise latent updates, y[i] = f(x[0][i], ..., x[n−1][i]) with f the formula of p->kind
 * (nn/backend.h lyra_latent_kind; per element nn/latent_math.h, every step one f32 rounding, X0_F64 in f64 as
 * upstream): the CFG combination, the x0 predictions, DMD's re-noise, UniPC's corrector and predictor, and the VAE's
 * latent denormalisation. y and every x[i] f32, any strides; each x[i] has y's ndim with each dim equal to y's or 1
 * (broadcast, e.g. the per-channel tables of DENORM). n must be the kind's input count (lyra_latent_inputs). y may be
 * an input itself (same data and strides: in place); otherwise it must not overlap one. */
lyra_status lyra_op_latent_update(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                                  const lyra_latent_update *p);

/* ---------------- random weights (lyra2.testing.random_weights: the real shapes without a checkpoint) --------- */

/* One tensor's random values (nn/random_fill_math.h): element i (the flat index, outermost first) is
 *   v = mean + s·scale,  s = Σ_{j<4} u_j − 131070, u_j the 16-bit quarters of splitmix64(key + (i + 1)·φ64)
 * (an Irwin–Hall sum of four uniforms: approximately normal, |s| ≤ 131070, exact in f32), the product and the sum
 * each rounded once in f32, then rounded to bf16 (nearest even) when bf16_values, then stored in y's dtype. Integer
 * hashing and two IEEE-rounded f32 steps: every backend writes the same bits. */
/* (lyra_random_fill: nn/backend.h) */

/* The rule of a weight tensor, by its name and shape (as benchmarks/make_random_checkpoint.py draws them): a name
 * ending in "bias" 0.02·N; a gain (1-D, or a name ending in "gamma") 1 + 0.1·N; anything else N / sqrt(fan_in) with
 * fan_in = ne[1]·…·ne[ndim-1] (at least 1). key = splitmix64(seed ^ splitmix64(FNV-1a-64(name))), so a tensor's
 * values depend on the seed and its name only, not on the order of the loader's table. */
void lyra_random_fill_rule(lyra_random_fill *r, uint64_t seed, const char *name, int ndim, const int64_t *ne,
                           int bf16_values);
/* Fills y (f32/bf16/f16, contiguous, any shape) with the values of r. */
lyra_status lyra_op_fill_random(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r);

/* ---------------- host helpers (no backend: they fill small host tables) ---------------- */

/* DA3's nested merge on host maps, after the activations and the metric scaling (upstream DA3net:499-567, DA3aln):
 * over the n pixels of all views, non-sky = sky < 0.3; median confidence over the non-sky pixels; σ = Σ m·d / max(Σ d·d,
 * 1e-12) (f64 sums in index order) over conf >= median, non-sky, m > 0.01, d > 0.001; depth ·= σ; the sky filled with
 * min(q0.99 of the non-sky depth, 200), its confidence 1. The quantiles are torch.quantile's linear interpolation over
 * ALL non-sky values (upstream samples 100 000 when more qualify; see models/da3_merge.c). align_mask and non_sky
 * (n uint8) may be NULL. With at most 10 non-sky pixels nothing is changed and stats = [NaN, NaN, NaN, count].
 * LYRA_ERR_OOM when the selection buffer cannot be allocated. */
typedef struct lyra_da3_merge_stats {
    float median, sigma, fill;
    int64_t non_sky;
} lyra_da3_merge_stats;
lyra_status lyra_da3_merge_host(int64_t n, float *depth, float *conf, const float *metric, const float *sky,
                                lyra_da3_merge_stats *stats, uint8_t *align_mask, uint8_t *non_sky);
/* torch.quantile(x, q) (linear interpolation, float32 rank and lerp as PyTorch's CPU kernel) over n values;
 * x is sorted in place. */
float lyra_quantile_f32(float *x, int64_t n, float q);

/* Wan 3-axis RoPE angles (upstream W:93-188, W:203-232, WL:586-596). head_dim D (even); the D/2 pair angles split into
 * dt/2 = (D − 4·(D/6))/2 time, dh/2 = dw/2 = D/6 height and width pairs; ω_axis[j] = theta^(−2j/d_axis).
 * pos (L, 3) = (t, h, w) per token (fractional for pooled history tokens); phi (L, D/2) f32:
 *   phi[l] = [t·ω_t | h·ω_h | w·ω_w]. Frequencies in f64, products rounded to f32. */
void lyra_rope_angles_video(float *phi, const float *pos, int64_t L, int head_dim, double theta);
/* DA3 2-D RoPE angles for LYRA_ROPE_HALF with 2 sections (upstream DA3rope:23-200, DA3vit:282-298). pos (L, 2) = (y,
 * x); phi (L, D/2): phi[l, s·D/4 + k] = pos[l, s]·theta^(−4k/D), k < D/4 (= 100^(−2k/32) for D = 64). */
void lyra_rope_angles_2d(float *phi, const float *pos, int64_t L, int head_dim, double theta);

#ifdef __cplusplus
}
#endif
#endif
