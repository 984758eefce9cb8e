/* The decoded image handle shared by image_decode.c (fills it) and image_convert.c (reads it). */
#ifndef LYRA_IO_IMAGE_INTERNAL_H
#define LYRA_IO_IMAGE_INTERNAL_H

#include <libavutil/frame.h>

#include "media.h"

struct lyra_image {
    /* the frame as decoded: stored orientation, any pixel format */
    AVFrame *frame;
    int orientation; /* EXIF 1..8 */
    int height, width; /* after orientation */
    char codec[32];
};

#endif
