/* libjpeg-style "fancy" chroma upsampling to 4:4:4 (chroma_upsample.c), used before swscale. */
#ifndef LYRA_IO_CHROMA_H
#define LYRA_IO_CHROMA_H

#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>

#include "lyra2.h"

/* 1 for the 8-bit planar formats handled: yuv420p, yuv422p, yuva420p, yuva422p (yuvj* map to these). */
int lyra_chroma_upsample_supported(enum AVPixelFormat fmt);

/* in: a decoded frame whose planes have the layout of `fmt` (one of the supported formats);
 * *out: a new yuv444p (or yuva444p) frame of the same size, chroma interpolated, luma/alpha copied. */
lyra_status lyra_chroma_upsample(const AVFrame *in, enum AVPixelFormat fmt, AVFrame **out);

#endif
