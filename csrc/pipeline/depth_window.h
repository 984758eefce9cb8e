/* DA3 on one depth window where the frames are (upstream AR:1059-1060, AR:1071-1393, AR:261-366; DA3's inference,
 * upstream DA3api:143-145, DA3in:219-257, DA3api:397-436, DA3out:42-148). */
#ifndef LYRA_PIPELINE_DEPTH_WINDOW_H
#define LYRA_PIPELINE_DEPTH_WINDOW_H

#include "pipeline/ar_driver.h"

/* u8 (n, H, W, 3) contiguous uint8 frames in vb's memory (the window, clamp(x·0.5 + 0.5)·255 + 0.5 truncated);
 * w2c (n, 4, 4) with the pose-alignment offsets and K (n, 3, 3), host -> depth (n, H, W) host f32: DA3's depth at
 * its processed size (the longest side kept, both sides to the nearest multiple of 14), divided by the Umeyama
 * scale and resized bilinearly (align_corners=False) to H x W. DA3's pixels are built on vb (op u8_pixels) and read
 * there by the forward; the frames come down only for dm->record (then also called here). */
lyra_status lyra_ar_da3_window(const lyra_ar_depth_model *dm, lyra_backend *vb, const lyra_tensor *u8,
                               const float *w2c, const float *K, float *depth);

/* lyra2.generate._bilinear (F.interpolate bilinear, align_corners=False, f64 source coordinates, f32 blends) of
 * n maps (n, h, w) -> (n, H, W), host. */
lyra_status lyra_ar_depth_bilinear(const float *x, int n, int h, int w, float *y, int H, int W);

#endif
