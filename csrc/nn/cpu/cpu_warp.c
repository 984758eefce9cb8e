/* CPU reference of the forward warp (op warp_forward): lyra_warp_forward (nn/warp.h, cpu_warp_forward.c) on the
 * op's tensors, with the backend's thread count. The mask is always computed there, so a caller that does not want
 * it gets a temporary. */
#include <stdlib.h>

#include "nn/warp.h"
#include "nn/cpu/cpu_internal.h"

lyra_status cpu_warp_forward(lyra_backend *be, lyra_tensor *out_image, lyra_tensor *out_mask, lyra_tensor *out_depth,
                             const lyra_tensor *image, const lyra_tensor *depth, const lyra_warp_params *p) {
    const int C = (int)image->ne[0], H = (int)image->ne[1], W = (int)image->ne[2];
    float *mask = out_mask ? out_mask->data : malloc(sizeof(float) * (size_t)p->n_targets * (size_t)H * (size_t)W);
    if (!mask) return lyra_error(LYRA_ERR_OOM, "warp_forward: out of memory for %d target masks", p->n_targets);
    lyra_warp_forward_args a = {
        .channels = C, .height = H, .width = W, .n_targets = p->n_targets, .image = image->data, .depth = depth->data,
        .src_w2c = p->src_w2c, .src_K = p->src_K, .tgt_w2c = p->tgt_w2c, .tgt_K = p->tgt_K,
        .clean_points = p->clean_points, .norm_batch = p->norm_batch, .out_image = out_image->data, .out_mask = mask,
        .out_depth = out_depth ? out_depth->data : NULL, .n_threads = be->n_threads > 0 ? be->n_threads : 1,
    };
    lyra_status st = lyra_warp_forward(&a);
    if (!out_mask) free(mask);
    return st;
}
