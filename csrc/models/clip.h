/* CLIP ViT vision tower as Lyra-2 uses it (open-clip xlm-roberta-large-vit-huge-14 through Wan's clip.py,
 * upstream CONDC:68-72, CLIP:453-478, CLIP:277-279): the image embedding the DiT cross-attends to, (B, 257, 1280) for
 * ViT-H/14.
 *
 *   pixels = Normalize(bicubic_resize(image, S×S)·0.5 + 0.5)         (upstream CLIP:519-523, no antialias,
 * align_corners False)
 *   x = [cls; conv_P×P(pixels) as tokens] + pos; x = LN_pre(x)           (upstream CLIP:261-282)
 *   every block except the last (use_31_block): x += proj(attn(LN1(x))), x += mlp2(gelu_erf(mlp0(LN2(x))))
 *   no post-norm, no head.
 *
 * Configuration from the weights (names as the checkpoint's `visual.*`, upstream CLIP:309-400): width from
 * cls_embedding, patch from patch_embedding.weight, tokens = 1 + G² from pos_embedding (image size S = G·P),
 * blocks = number of visual.transformer.{i}, mlp width from mlp.0. The head count is not in the weights: the
 * caller passes it (open-clip ViT-H/14 uses heads of width 80, i.e. 16 heads at width 1280). */
#ifndef LYRA_CLIP_H
#define LYRA_CLIP_H

#include "core/arena.h"
#include "models/text_weights.h"
#include "nn/backend.h"

typedef struct lyra_clip_config {
    int64_t width, heads, layers, used_layers, mlp, patch, grid, image_size, tokens;
} lyra_clip_config;

typedef struct lyra_clip_block {
    lyra_tensor norm1_w, norm1_b;   /* (W) f32 */
    lyra_tensor qkv_w;              /* (3W, W): rows [0, W) q, [W, 2W) k, [2W, 3W) v */
    lyra_tensor qkv_b;              /* (3W) f32 */
    lyra_tensor proj_w;             /* (W, W) */
    lyra_tensor proj_b;             /* (W) f32 */
    lyra_tensor norm2_w, norm2_b;   /* (W) f32 */
    lyra_tensor fc1_w, fc1_b;       /* mlp.0: (M, W), (M) f32 */
    lyra_tensor fc2_w, fc2_b;       /* mlp.2: (W, M), (W) f32 */
} lyra_clip_block;

typedef struct lyra_clip {
    lyra_clip_config cfg;
    lyra_tensor patch_w;            /* (W, 3, P, P), no bias (pre_norm models) */
    lyra_tensor cls;                /* (1, 1, W) f32 */
    lyra_tensor pos;                /* (1, T, W) f32 */
    lyra_tensor pre_w, pre_b;       /* (W) f32 */
    lyra_clip_block *blocks;        /* cfg.used_layers (the last block is not loaded) */
    char *names;
    void *mem;                      /* the one weight allocation: host, or device memory of `placed` */
    lyra_backend *placed;           /* the device backend holding mem after lyra_clip_place, else NULL */
    lyra_dtype act;                 /* weight and residual-stream storage: f32, or f16 on a device */
    lyra_text_random random;        /* random weights (a source with `random`, text_weights.h): pending until filled */
} lyra_clip;

/* Detects the configuration and loads the used tensors. heads <= 0 means width / 80 (ViT-H/14's head width),
 * which must divide. Tensors outside `visual.` (the text tower, log_scale) and the unused last block,
 * post_norm and head are ignored; any other tensor is an error. Free with lyra_clip_free (also after failure). */
lyra_status lyra_clip_load(lyra_clip *m, const lyra_text_wsource *src, int64_t heads);
void lyra_clip_free(lyra_clip *m);
/* Uploads the weights once to be's device (lyra_backend_place_weights_as); be must outlive the model. Afterwards
 * lyra_clip_preprocess/encode take that backend, an arena in its memory and device tensors. `act`:
 * LYRA_DTYPE_F16 is upstream's GPU policy (the tower built in fp16 and run under fp16 autocast, upstream
 * CLIP:496, CLIP:526: every parameter, the patch-conv input, the residual stream and every GEMM output f16,
 * LayerNorm statistics f32 (upstream CLIP:44-46), q/k/v cast to bf16 for the attention and its bf16 output
 * (upstream ATT:101-112)); LYRA_DTYPE_F32 is a parity mode keeping the loaded dtypes. No-op on the CPU (f32
 * only). */
lyra_status lyra_clip_place(lyra_clip *m, lyra_backend *be, lyra_dtype act);

/* The tower's input: y (B, 3, S, S) f32 from image (B, 3, H, W) f32 in [−1, 1] (both on be's device). */
lyra_status lyra_clip_preprocess(const lyra_clip *m, lyra_backend *be, lyra_tensor *y, const lyra_tensor *image);

/* out (B, T, W) f32 contiguous on be's device <- image (B, 3, H, W). The arena must hold the bytes
 * lyra_clip_arena_measure gives for an image of this shape. */
lyra_status lyra_clip_encode(const lyra_clip *m, lyra_backend *be, lyra_arena *arena, lyra_tensor *out,
                             const lyra_tensor *image);

/* The arena bytes lyra_clip_encode needs for an image of image's shape and dtype, measured by running it on the
 * measuring backend presenting itself as `device` (clip_measure.c). */
lyra_status lyra_clip_arena_measure(const lyra_clip *m, lyra_device device, const lyra_tensor *image, size_t *need);
/* The no-weights cost model of the same (an upper bound; tests compare it with the measurement), with the
 * activations of a model placed as `act`. */
size_t lyra_clip_arena_bytes_as(const lyra_clip_config *cfg, int64_t B, lyra_dtype act);
/* The same for f32 activations (the CPU backend). */
size_t lyra_clip_arena_bytes(const lyra_clip_config *cfg, int64_t B);
/* Parameters of the used part (embeddings, pre-norm, used blocks) and FLOPs (2 per MAC) of one forward:
 * patch conv, qkv/proj/MLP linears, QKᵀ and PV. The resize and norms are O(pixels + T·W) and left out. */
int64_t lyra_clip_params(const lyra_clip_config *cfg);
double lyra_clip_flops(const lyra_clip_config *cfg, int64_t B);

#endif
