/* The device temporaries of op warp_forward on the CUDA backend (nn/cuda/cuda_warp.cu), sized in one place so that
 * the measuring backend records the same pool blocks and a memory plan that includes a warp agrees with the CUDA
 * code. C and C++ (the .cu includes it).
 *
 * Two blocks, allocated in this order and released together after the last launch:
 *   source: the sanitized depth (H·W f32), the world points (H·W·3 f32), the splat flags (H·W u8), the per-target
 *           maximum projected depth (N u32, f32 bits) and the per-target normaliser log1p(max) (N f32);
 *   canvas: the accumulation canvases of one sub-batch of targets, (H+2)·(W+2)·(C+2) f32 each. The targets are
 *           splatted `sub_batch` at a time so the canvas stays within LYRA_WARP_CANVAS_BUDGET (one target's canvas
 *           when even that is larger), and at most LYRA_WARP_MAX_SUB_BATCH at a time because the cameras of a
 *           launch travel as kernel arguments. The sub-batches are balanced (ceil(N / n_sub) targets each). */
#ifndef LYRA_NN_MEASURE_WARP_DEVICE_TEMPS_H
#define LYRA_NN_MEASURE_WARP_DEVICE_TEMPS_H

#include <stddef.h>
#include <stdint.h>

#define LYRA_WARP_CANVAS_BUDGET ((size_t)256 << 20)
#define LYRA_WARP_MAX_SUB_BATCH 32

typedef struct lyra_warp_device_temps {
    int sub_batch;                 /* targets per splat pass */
    size_t off_points, off_valid;  /* byte offsets in the source block (the sanitized depth is at 0) */
    size_t off_zmax, off_log_norm;
    size_t source_bytes;
    size_t canvas_target_floats;   /* (H+2)·(W+2)·(C+2) */
    size_t canvas_bytes;           /* sub_batch canvases */
} lyra_warp_device_temps;

static inline size_t lyra_warp_align256(size_t n) { return (n + 255) & ~(size_t)255; }

static inline lyra_warp_device_temps lyra_warp_device_temps_of(int channels, int height, int width, int n_targets) {
    lyra_warp_device_temps t;
    size_t hw = (size_t)height * (size_t)width, n = (size_t)(n_targets > 0 ? n_targets : 1);
    t.off_points = lyra_warp_align256(hw * sizeof(float));
    t.off_valid = t.off_points + lyra_warp_align256(3 * hw * sizeof(float));
    t.off_zmax = t.off_valid + lyra_warp_align256(hw);
    t.off_log_norm = t.off_zmax + lyra_warp_align256(n * sizeof(uint32_t));
    t.source_bytes = t.off_log_norm + n * sizeof(float);
    t.canvas_target_floats = (size_t)(height + 2) * (size_t)(width + 2) * (size_t)(channels + 2);
    size_t fit = LYRA_WARP_CANVAS_BUDGET / (t.canvas_target_floats * sizeof(float));
    if (fit < 1) fit = 1;
    if (fit > LYRA_WARP_MAX_SUB_BATCH) fit = LYRA_WARP_MAX_SUB_BATCH;
    size_t n_sub = (n + fit - 1) / fit;
    t.sub_batch = (int)((n + n_sub - 1) / n_sub);
    t.canvas_bytes = (size_t)t.sub_batch * t.canvas_target_floats * sizeof(float);
    return t;
}

#endif
