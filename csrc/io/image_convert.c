/* Decoded frame -> RGB uint8 (H, W, 3): pixel format conversion with swscale (no resizing), libjpeg-style
 * chroma upsampling first where it applies (chroma_upsample.c), alpha over white, EXIF orientation. */
#include "media.h"

#include <stdlib.h>

#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "av_util.h"
#include "chroma.h"
#include "image_internal.h"

/* yuvj* are yuv* with full range; swscale wants the plain format plus the range. */
static enum AVPixelFormat plain_yuv(enum AVPixelFormat f, int *full) {
    switch (f) {
    case AV_PIX_FMT_YUVJ420P: *full = 1; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full = 1; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full = 1; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full = 1; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full = 1; return AV_PIX_FMT_YUV411P;
    default: return f;
    }
}

static int sws_matrix(enum AVColorSpace cs) {
    switch (cs) {
    case AVCOL_SPC_BT709: return SWS_CS_ITU709;
    case AVCOL_SPC_FCC: return SWS_CS_FCC;
    case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020;
    default: return SWS_CS_ITU601; /* JPEG/JFIF, WebP (VP8) and untagged data are BT.601 */
    }
}

/* Same size in and out: swscale only converts the pixel format, never resizes. */
static struct SwsContext *sws_context(const AVFrame *f, enum AVPixelFormat src, int full, enum AVPixelFormat dst) {
    struct SwsContext *sws = sws_getContext(f->width, f->height, src, f->width, f->height, dst,
                                            SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!sws) return NULL;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(src);
    if (!(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3) {
        const int *matrix = sws_getCoefficients(sws_matrix(f->colorspace));
        sws_setColorspaceDetails(sws, matrix, full, matrix, 1, 0, 1 << 16, 1 << 16);
    }
    return sws;
}

/* Where displayed pixel (0, 0) sits in the stored image and how far (in bytes) one step right and
 * one step down in the displayed image moves in the stored one, for EXIF orientation o. */
static void orientation_walk(int o, int h, int w, ptrdiff_t row, ptrdiff_t px, ptrdiff_t *origin,
                             ptrdiff_t *step_x, ptrdiff_t *step_y) {
    ptrdiff_t last_row = (ptrdiff_t)(h - 1) * row, last_col = (ptrdiff_t)(w - 1) * px;
    switch (o) {
    case 2: *origin = last_col; *step_x = -px; *step_y = row; break;             /* mirror left-right */
    case 3: *origin = last_row + last_col; *step_x = -px; *step_y = -row; break; /* rotate 180 */
    case 4: *origin = last_row; *step_x = px; *step_y = -row; break;             /* mirror top-bottom */
    case 5: *origin = 0; *step_x = row; *step_y = px; break;                     /* transpose */
    case 6: *origin = last_row; *step_x = -row; *step_y = px; break;             /* rotate 90 clockwise */
    case 7: *origin = last_row + last_col; *step_x = -row; *step_y = -px; break; /* transverse */
    case 8: *origin = last_col; *step_x = row; *step_y = -px; break;             /* rotate 90 anticlockwise */
    default: *origin = 0; *step_x = px; *step_y = row; break;
    }
}

lyra_status lyra_image_to_rgb(const lyra_image *img, uint8_t *rgb) {
    LYRA_ASSERT(img && img->frame && rgb);
    const AVFrame *f = img->frame;
    int w = f->width, h = f->height;
    int full = f->color_range == AVCOL_RANGE_JPEG;
    enum AVPixelFormat src = plain_yuv((enum AVPixelFormat)f->format, &full);
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(src);
    LYRA_ASSERT(desc);
    int alpha = (desc->flags & (AV_PIX_FMT_FLAG_ALPHA | AV_PIX_FMT_FLAG_PAL)) != 0;
    int cn = alpha ? 4 : 3;

    lyra_av_init();
    lyra_av_clear_log();
    /* Centre-sited 4:2:0 / 4:2:2 (JPEG, WebP): interpolate chroma as libjpeg does (chroma_upsample.c). */
    AVFrame *up = NULL;
    if (lyra_chroma_upsample_supported(src) &&
        (f->chroma_location == AVCHROMA_LOC_UNSPECIFIED || f->chroma_location == AVCHROMA_LOC_CENTER)) {
        LYRA_TRY(lyra_chroma_upsample(f, src, &up));
        src = (enum AVPixelFormat)up->format;
    }
    const AVFrame *in = up ? up : f;
    struct SwsContext *sws = sws_context(f, src, full, alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24);
    if (!sws) {
        av_frame_free(&up);
        return lyra_error(LYRA_ERR_FORMAT, "image: cannot convert pixel format '%s' to RGB", desc->name);
    }
    ptrdiff_t row = ((ptrdiff_t)w * cn + 63) & ~(ptrdiff_t)63;
    uint8_t *tmp = av_malloc((size_t)row * h + 64);
    if (!tmp) {
        sws_freeContext(sws);
        av_frame_free(&up);
        return lyra_error(LYRA_ERR_OOM, "image: out of memory converting %dx%d pixels", w, h);
    }
    uint8_t *dst_data[4] = {tmp, NULL, NULL, NULL};
    int dst_linesize[4] = {(int)row, 0, 0, 0};
    int done = sws_scale(sws, (const uint8_t *const *)in->data, in->linesize, 0, h, dst_data, dst_linesize);
    sws_freeContext(sws);
    av_frame_free(&up);
    if (done != h) {
        av_free(tmp);
        return lyra_error(LYRA_ERR_FORMAT, "image: pixel format conversion from '%s' failed", desc->name);
    }

    ptrdiff_t origin, step_x, step_y;
    orientation_walk(img->orientation, h, w, row, cn, &origin, &step_x, &step_y);
    int oh = img->height, ow = img->width;
#pragma omp parallel for if ((int64_t)oh * ow > (1 << 20))
    for (int y = 0; y < oh; y++) {
        const uint8_t *p = tmp + origin + y * step_y;
        uint8_t *o = rgb + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++, p += step_x, o += 3) {
            if (alpha)
                lyra_image_flatten_alpha(p, 1, o);
            else
                o[0] = p[0], o[1] = p[1], o[2] = p[2];
        }
    }
    av_free(tmp);
    return LYRA_OK;
}

void lyra_image_flatten_alpha(const uint8_t *rgba, size_t n, uint8_t *rgb) {
    for (size_t i = 0; i < n; i++) {
        unsigned a = rgba[4 * i + 3];
        for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)((rgba[4 * i + k] * a + 255u * (255u - a) + 127u) / 255u);
    }
}
