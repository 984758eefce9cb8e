/* Media I/O on libav*: image decode from memory, the upstream input resize, H.264 MP4 writing.
 *
 * Images are uint8 RGB, row-major (H, W, 3). Videos are uint8 RGB frames (T, H, W, 3).
 * Every function returns a lyra_status and leaves a message naming what was wrong (lyra2.h). */
#ifndef LYRA_IO_MEDIA_H
#define LYRA_IO_MEDIA_H

#include "lyra2.h"

/* Images with more pixels than this (after decoding the header) are refused with LYRA_ERR_FORMAT
 * before the pixel buffer is allocated: 100 MP is ~300 MB of RGB, far above any input the 480p/720p
 * pipeline needs, and bounds what a hostile file can make us allocate. */
#define LYRA_IMAGE_MAX_PIXELS 100000000LL

/* ---- image decode (image_decode.c) ----
 *
 * Accepts whatever libavformat probes from the bytes as a single-image container (the *_pipe image
 * demuxers: PNG, JPEG, WebP, BMP, TIFF, PPM, QOI, ...; also GIF/APNG, first frame). Video containers
 * are refused: an image source must not make us demux a movie.
 *
 * Orientation: the EXIF Orientation tag (1..8) is applied when libavcodec exposes it, either as the
 * frame metadata key "Orientation" (the mjpeg and webp decoders put EXIF IFD0 tags there) or as
 * AV_FRAME_DATA_DISPLAYMATRIX side data (mjpeg also does). For JPEG this matches cv2.imread, which
 * upstream uses and which applies EXIF orientation by default (all 8 values tested). Differences:
 * a PNG eXIf chunk is not exposed by libavcodec 59 (cv2 applies it); WebP EXIF is applied here
 * (cv2 4.11 ignores it). XMP or HEIF rotation is ignored.
 *
 * Alpha: composited over WHITE, out = round((c*a + 255*(255-a)) / 255). Upstream (cv2.imread with
 * IMREAD_COLOR) instead drops the alpha channel and keeps the colour under it, which turns a cut-out
 * with transparent black surroundings into a black background; white is the usual product choice. */
typedef struct lyra_image lyra_image;

/* Decodes the first image in data[0..size). Refuses more than max_pixels pixels (pass
 * LYRA_IMAGE_MAX_PIXELS unless testing a tighter bound). On success *out owns the decoded frame;
 * free it with lyra_image_free. Garbage input gives LYRA_ERR_FORMAT, never a crash. */
lyra_status lyra_image_decode(const uint8_t *data, size_t size, int64_t max_pixels, lyra_image **out);

/* Size of the RGB image lyra_image_to_rgb writes, with the orientation already applied. */
void lyra_image_size(const lyra_image *img, int *height, int *width);

/* EXIF orientation (1..8) that lyra_image_to_rgb applies; 1 when none was found. */
int lyra_image_orientation(const lyra_image *img);

/* Name of the decoder that produced the frame ("png", "mjpeg", "webp", ...). */
const char *lyra_image_codec_name(const lyra_image *img);

/* rgb: uint8 (H, W, 3) with (H, W) from lyra_image_size. Converts the pixel format with swscale
 * (no resizing), composites alpha over white and applies the orientation. */
lyra_status lyra_image_to_rgb(const lyra_image *img, uint8_t *rgb);

void lyra_image_free(lyra_image *img);

/* rgba: uint8 (n, 4) -> rgb: uint8 (n, 3), alpha over white with the rounding above. */
void lyra_image_flatten_alpha(const uint8_t *rgba, size_t n, uint8_t *rgb);

/* ---- resize (image_resize.c) ----
 *
 * src: uint8 (h0, w0, c) -> dst: uint8 (h, w, c), 1 <= c <= 4. Bilinear with half-pixel centres
 * (align_corners=False), no antialiasing, no crop, reproducing cv2.resize(INTER_LINEAR) on uint8
 * bit for bit, as upstream resizes its input with it (upstream Z:602-607, Z:67, Z:171). */
lyra_status lyra_image_resize(const uint8_t *src, int h0, int w0, int c, uint8_t *dst, int h, int w);

/* ---- video encode (video_encode.c) ---- */

#define LYRA_VIDEO_FPS_MIN 8
#define LYRA_VIDEO_FPS_MAX 24
/* upstream: imageio quality 5 -> -crf 25 (upstream Z:767-777, AR:441-463, Z:779-794) */
#define LYRA_VIDEO_CRF_DEFAULT 25
#define LYRA_VIDEO_MAX_SIDE 8192

/* x264's speed presets, fastest first; upstream writes with "medium" (imageio-ffmpeg's default), lyra2 by default
 * with "fast" (lyra2/media.py DEFAULT_PRESET: measured equal quality in less time). */
#define LYRA_VIDEO_PRESETS "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"

/* frames: uint8 (t, h, w, 3), t >= 1, h and w even in [2, LYRA_VIDEO_MAX_SIDE], fps in [8, 24],
 * crf in [0, 51], preset one of LYRA_VIDEO_PRESETS. Writes an H.264 (libx264, yuv420p, BT.601 limited range, tagged) MP4
 * to `path`: the file is written under a temporary name in the same directory and renamed into place
 * only when complete, so `path` never holds a partial video; on failure the temporary file is removed. */
lyra_status lyra_video_write(const char *path, const uint8_t *frames, int t, int h, int w, int fps,
                             int crf, const char *preset);

#endif
