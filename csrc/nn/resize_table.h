/* Resize interpolation tables (PyTorch F.interpolate coordinates, docs/REFERENCES.md#resampling, upstream
 * CLIP:519-523), shared by the CPU backend and the CUDA backend so both sample exactly the same source pixels with the
 * same weights. */
#ifndef LYRA_RESIZE_TABLE_H
#define LYRA_RESIZE_TABLE_H

#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maximum taps per output along an axis of `in` -> `out` samples (ratio: the axis' lyra_resize_params ratio). */
int lyra_resize_taps(int64_t in, int64_t out, const lyra_resize_params *p, double ratio);
/* idx (out, taps) source indices (clamped into [0, in)) and wt (out, taps) weights; unused taps have weight 0. */
void lyra_resize_table(int64_t in, int64_t out, const lyra_resize_params *p, double ratio, int taps, int64_t *idx,
                       float *wt);

#ifdef __cplusplus
}
#endif
#endif
