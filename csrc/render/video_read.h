/* A video file's frames as RGB24 (video_read.c), for reconstructing a scene from a written zoom video. */
#ifndef LYRA_VIDEO_READ_H
#define LYRA_VIDEO_READ_H

#include <stddef.h>
#include <stdint.h>

#include "lyra2.h"

typedef struct lyra_video_frames {
    uint8_t *rgb;   /* (t, h, w, 3), owned; free with lyra_video_frames_free */
    int64_t t;
    int h, w;
    double fps;     /* the stream's guessed frame rate, 0 when unknown */
    size_t cap;     /* bytes allocated */
} lyra_video_frames;

/* Decodes up to max_frames (<= 0: all) frames of the best video stream of `path`. LYRA_ERR_CODEC / FORMAT / OOM
 * with a message naming the file; *out is empty after a failure. */
lyra_status lyra_video_read(const char *path, int64_t max_frames, lyra_video_frames *out);
void lyra_video_frames_free(lyra_video_frames *f);

#endif
