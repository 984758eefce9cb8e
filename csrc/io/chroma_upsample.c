/* Chroma upsampling of decoded 4:2:0 / 4:2:2 images to 4:4:4 with libjpeg's "fancy" triangle filter.
 *
 * Why not swscale: for a same-size yuv420p -> rgb24 conversion swscale repeats each chroma sample
 * (measured: ~2.4 LSB mean, up to ~17 LSB at colour edges against cv2.imread on a q90 4:2:0 JPEG),
 * while libjpeg(-turbo), which cv2.imread uses upstream (upstream Z:602-607, Z:67, Z:171), and libwebp
 * interpolate chroma sited at the centre of each 2x2 block. This is the same filter with the same
 * integer rounding as libjpeg-turbo's h2v2/h2v1 fancy upsamplers (jdsample.c): weights 3/4 and 1/4
 * along each subsampled axis, edge samples replicated, alternating +8/+7 (+2/+1) rounding biases. */
#include "chroma.h"

#include <libavutil/imgutils.h>

/* 4:2:0: one output row (w samples) from the nearest chroma row (weight 3/4) and the next nearest
 * (1/4), both (cw,), cw = ceil(w / 2). Column sums are 3*near + far; outputs are /16 with the
 * +8 (left) / +7 (right) biases of libjpeg's h2v2 upsampler. */
static void fancy_row_h2v2(const uint8_t *near, const uint8_t *far, int cw, int w, uint8_t *out) {
    int this = 3 * near[0] + far[0], last = this;
    for (int c = 0; c < cw; c++) {
        int next = c + 1 < cw ? 3 * near[c + 1] + far[c + 1] : this;
        int x = 2 * c;
        out[x] = (uint8_t)((this * 3 + last + 8) >> 4);
        if (x + 1 < w) out[x + 1] = (uint8_t)((this * 3 + next + 7) >> 4);
        last = this;
        this = next;
    }
}

/* 4:2:2: horizontal only, /4 with libjpeg's h2v1 biases +1 (left) / +2 (right). The first and last
 * outputs copy the edge sample, which is what replicating it gives. */
static void fancy_row_h2v1(const uint8_t *in, int cw, int w, uint8_t *out) {
    for (int c = 0; c < cw; c++) {
        int left = in[c > 0 ? c - 1 : 0], right = in[c + 1 < cw ? c + 1 : c], x = 2 * c;
        out[x] = (uint8_t)((in[c] * 3 + left + 1) >> 2);
        if (x + 1 < w) out[x + 1] = (uint8_t)((in[c] * 3 + right + 2) >> 2);
    }
}

static void upsample_plane(const uint8_t *src, int src_ls, int cw, int ch, uint8_t *dst, int dst_ls, int w, int h,
                           int vertical) {
    for (int y = 0; y < h; y++) {
        int cy = vertical ? y >> 1 : y;
        const uint8_t *near = src + (ptrdiff_t)cy * src_ls;
        const uint8_t *far = near;
        if (vertical) {
            /* the upper output row of a pair leans on the chroma row above, the lower on the one below */
            int fy = (y & 1) ? cy + 1 : cy - 1;
            if (fy < 0) fy = 0;
            if (fy > ch - 1) fy = ch - 1;
            far = src + (ptrdiff_t)fy * src_ls;
        }
        if (vertical)
            fancy_row_h2v2(near, far, cw, w, dst + (ptrdiff_t)y * dst_ls);
        else
            fancy_row_h2v1(near, cw, w, dst + (ptrdiff_t)y * dst_ls);
    }
}

static void copy_plane(const uint8_t *src, int src_ls, uint8_t *dst, int dst_ls, int w, int h) {
    for (int y = 0; y < h; y++) memcpy(dst + (ptrdiff_t)y * dst_ls, src + (ptrdiff_t)y * src_ls, (size_t)w);
}

int lyra_chroma_upsample_supported(enum AVPixelFormat fmt) {
    switch (fmt) {
    case AV_PIX_FMT_YUV420P:
    case AV_PIX_FMT_YUV422P:
    case AV_PIX_FMT_YUVA420P:
    case AV_PIX_FMT_YUVA422P: return 1;
    default: return 0;
    }
}

lyra_status lyra_chroma_upsample(const AVFrame *in, enum AVPixelFormat fmt, AVFrame **out) {
    LYRA_ASSERT(lyra_chroma_upsample_supported(fmt));
    int alpha = fmt == AV_PIX_FMT_YUVA420P || fmt == AV_PIX_FMT_YUVA422P;
    int vertical = fmt == AV_PIX_FMT_YUV420P || fmt == AV_PIX_FMT_YUVA420P;
    int w = in->width, h = in->height, cw = (w + 1) / 2, ch = vertical ? (h + 1) / 2 : h;
    AVFrame *f = av_frame_alloc();
    if (!f) return lyra_error(LYRA_ERR_OOM, "image: out of memory");
    f->format = alpha ? AV_PIX_FMT_YUVA444P : AV_PIX_FMT_YUV444P;
    f->width = w;
    f->height = h;
    if (av_frame_get_buffer(f, 0) < 0) {
        av_frame_free(&f);
        return lyra_error(LYRA_ERR_OOM, "image: out of memory upsampling %dx%d chroma", w, h);
    }
    copy_plane(in->data[0], in->linesize[0], f->data[0], f->linesize[0], w, h);
    for (int p = 1; p <= 2; p++)
        upsample_plane(in->data[p], in->linesize[p], cw, ch, f->data[p], f->linesize[p], w, h, vertical);
    if (alpha) copy_plane(in->data[3], in->linesize[3], f->data[3], f->linesize[3], w, h);
    *out = f;
    return LYRA_OK;
}
