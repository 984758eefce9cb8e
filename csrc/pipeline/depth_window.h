/* DA3 on one depth window where the frames are (upstream AR:1059-1060, AR:1071-1393, AR:261-366; DA3's inference,
 * upstream DA3api:143-145, DA3in:219-257, DA3api:397-436, DA3out:42-148). */
#ifndef LYRA_PIPELINE_DEPTH_WINDOW_H
#define LYRA_PIPELINE_DEPTH_WINDOW_H

#include "pipeline/ar_driver.h"

/* The depths of a window, handed to the driver while they are valid: depth (n, H, W) f32 in the frames' device
 * memory (DA3's arena, given back after take returns). */
typedef lyra_status (*lyra_ar_depth_take)(void *ctx, const lyra_tensor *depth);

/* u8 (n, H, W, 3) contiguous uint8 frames in vb's memory (the window, clamp(x·0.5 + 0.5)·255 + 0.5 truncated);
 * w2c (n, 4, 4) with the pose-alignment offsets and K (n, 3, 3), host -> take(take_ctx, depth (n, H, W)): DA3's depth
 * at its processed size (the longest side kept, both sides to the nearest multiple of 14), merged on the device (op
 * da3_merge), divided by the Umeyama scale and resized bilinearly (align_corners=False) to H x W (op depth_resize),
 * all where the frames are. DA3's pixels are built on vb (op u8_pixels) and read there by the forward. What comes
 * down: the merge's four scalars and DA3's pose; the frames and the depths only for dm->record (then also called
 * here). */
lyra_status lyra_ar_da3_window(const lyra_ar_depth_model *dm, lyra_backend *vb, const lyra_tensor *u8,
                               const float *w2c, const float *K, lyra_ar_depth_take take, void *take_ctx);

#endif
