/* Image decode from memory on libavformat + libavcodec (see media.h for what is covered).
 *
 * The bytes are probed like ffmpeg's image2pipe (content only, no file name), demuxed through a
 * read-only AVIOContext over the caller's buffer, and the first video frame is decoded. Bounds: the
 * decoder's max_pixels refuses oversized frames before allocating them, the probe looks at most
 * PROBE_BYTES, and at most MAX_PACKETS packets are read. */
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/pixdesc.h>

#include "av_util.h"
#include "image_internal.h"

#define PROBE_BYTES (1 << 20)
#define IO_BUFFER_BYTES (64 * 1024)
#define MAX_PACKETS 1024

typedef struct mem_reader {
    const uint8_t *data;
    size_t size, pos;
} mem_reader;

static int mem_read(void *opaque, uint8_t *buf, int n) {
    mem_reader *r = opaque;
    if (r->pos >= r->size) return AVERROR_EOF;
    size_t k = r->size - r->pos;
    if (k > (size_t)n) k = (size_t)n;
    memcpy(buf, r->data + r->pos, k);
    r->pos += k;
    return (int)k;
}

static int64_t mem_seek(void *opaque, int64_t offset, int whence) {
    mem_reader *r = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return (int64_t)r->size;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)r->pos; break;
    case SEEK_END: base = (int64_t)r->size; break;
    default: return AVERROR(EINVAL);
    }
    if (offset < -base || offset > (int64_t)r->size - base) return AVERROR(EINVAL);
    r->pos = (size_t)(base + offset);
    return (int64_t)r->pos;
}

/* Single-image demuxers only: every content-probed image demuxer is named "<codec>_pipe"; GIF and
 * APNG are animations whose first frame is the image. Anything else (mp4, mkv, mpegts, ...) is a
 * movie container and is refused. */
static int demuxer_allowed(const char *name) {
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, "_pipe") == 0) return 1;
    return strcmp(name, "gif") == 0 || strcmp(name, "apng") == 0;
}

static lyra_status probe(const uint8_t *data, size_t size, const AVInputFormat **fmt) {
    /* AVProbeData wants AVPROBE_PADDING_SIZE zero bytes after the data. */
    size_t n = size < PROBE_BYTES ? size : PROBE_BYTES;
    uint8_t *buf = calloc(n + AVPROBE_PADDING_SIZE, 1);
    if (!buf) return lyra_error(LYRA_ERR_OOM, "image: out of memory while probing %zu bytes", n);
    memcpy(buf, data, n);
    AVProbeData pd = {.filename = "", .buf = buf, .buf_size = (int)n, .mime_type = NULL};
    int score = 0;
    *fmt = av_probe_input_format3(&pd, 1, &score);
    free(buf);
    if (!*fmt || score < AVPROBE_SCORE_RETRY)
        return lyra_error(LYRA_ERR_FORMAT,
                          "image: the %zu bytes are not a recognised image format (PNG, JPEG, WebP, ...)", size);
    if (!demuxer_allowed((*fmt)->name))
        return lyra_error(LYRA_ERR_FORMAT, "image: the bytes look like '%s', which is not a still-image format",
                          (*fmt)->name);
    return LYRA_OK;
}

/* The EXIF orientation whose display matrix (as libavcodec builds it: rotate, then flip) has the
 * same signs as m; 1 when none matches. Comparing signs is exact because all eight are signed
 * permutations. */
static int orientation_from_matrix(const int32_t m[9]) {
    static const double angle[9] = {0, 0, 0, 180, 180, 90, 90, -90, -90};
    static const int hflip[9] = {0, 0, 1, 0, 1, 1, 0, 1, 0};
    for (int o = 2; o <= 8; o++) {
        int32_t r[9];
        av_display_rotation_set(r, angle[o]);
        if (hflip[o]) av_display_matrix_flip(r, 1, 0);
        int same = 1;
        for (int k = 0; k < 9 && same; k++) {
            if (k == 2 || k == 5 || k >= 6) continue; /* translation / projective part */
            same = ((r[k] > 0) - (r[k] < 0)) == ((m[k] > 0) - (m[k] < 0));
        }
        if (same) return o;
    }
    return 1;
}

static int frame_orientation(const AVFrame *f) {
    const AVDictionaryEntry *e = av_dict_get(f->metadata, "Orientation", NULL, 0);
    if (e && e->value) {
        char *end = NULL;
        long v = strtol(e->value, &end, 10);
        if (end != e->value && v >= 1 && v <= 8) return (int)v;
    }
    const AVFrameSideData *sd = av_frame_get_side_data(f, AV_FRAME_DATA_DISPLAYMATRIX);
    if (sd && sd->size >= 9 * sizeof(int32_t)) return orientation_from_matrix((const int32_t *)sd->data);
    return 1;
}

typedef struct decode_state {
    AVFormatContext *fc;
    AVIOContext *pb;
    AVCodecContext *cc;
    AVPacket *pkt;
    AVFrame *frame;
} decode_state;

static void state_free(decode_state *s) {
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    avcodec_free_context(&s->cc);
    avformat_close_input(&s->fc); /* with AVFMT_FLAG_CUSTOM_IO this leaves pb to us */
    if (s->pb) {
        av_freep(&s->pb->buffer);
        avio_context_free(&s->pb);
    }
}

static lyra_status decode_error(const char *what, int err, int64_t max_pixels, const AVCodecContext *cc) {
    const char *why = lyra_av_first_error();
    /* libavcodec's max_pixels refusal, reworded with the numbers a user can act on */
    if (strstr(why, "max pixel count")) {
        if (cc && (int64_t)cc->width * cc->height > max_pixels)
            return lyra_error(LYRA_ERR_FORMAT, "image: %dx%d is %lld pixels; at most %lld are accepted", cc->width,
                              cc->height, (long long)cc->width * cc->height, (long long)max_pixels);
        return lyra_error(LYRA_ERR_FORMAT, "image: the picture has more than the %lld pixels accepted",
                          (long long)max_pixels);
    }
    /* av_image_check_size's hard limit ((w+128)*(h+128) < INT_MAX/8, ~268 M) */
    const char *size = strstr(why, "Picture size ");
    unsigned w = 0, h = 0;
    if (size && strstr(size, "is invalid") && sscanf(size, "Picture size %ux%u", &w, &h) == 2)
        return lyra_error(LYRA_ERR_FORMAT, "image: a %ux%u picture is too large (at most %lld pixels are accepted)",
                          w, h, (long long)max_pixels);
    return lyra_error(LYRA_ERR_FORMAT, "image: cannot decode (%s: %s%s%s)", what, lyra_av_errstr(err),
                      why[0] ? "; " : "", why);
}

static lyra_status decode_first_frame(decode_state *s, mem_reader *reader, const AVInputFormat *fmt,
                                      int64_t max_pixels) {
    s->fc = avformat_alloc_context();
    uint8_t *iobuf = av_malloc(IO_BUFFER_BYTES);
    if (!s->fc || !iobuf) {
        av_free(iobuf);
        return lyra_error(LYRA_ERR_OOM, "image: out of memory");
    }
    s->pb = avio_alloc_context(iobuf, IO_BUFFER_BYTES, 0, reader, mem_read, NULL, mem_seek);
    if (!s->pb) {
        av_free(iobuf);
        return lyra_error(LYRA_ERR_OOM, "image: out of memory");
    }
    s->fc->pb = s->pb;
    s->fc->flags |= AVFMT_FLAG_CUSTOM_IO;
    int err = avformat_open_input(&s->fc, NULL, fmt, NULL); /* frees fc on failure */
    if (err < 0) return decode_error(fmt->name, err, max_pixels, s->cc);

    int vs = av_find_best_stream(s->fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (vs < 0) return lyra_error(LYRA_ERR_FORMAT, "image: no picture found in the '%s' data", fmt->name);
    const AVCodecParameters *par = s->fc->streams[vs]->codecpar;
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec)
        return lyra_error(LYRA_ERR_FORMAT, "image: this libavcodec has no decoder for '%s'",
                          avcodec_get_name(par->codec_id));
    if ((int64_t)par->width * par->height > max_pixels)
        return lyra_error(LYRA_ERR_FORMAT, "image: %dx%d is %lld pixels; at most %lld are accepted", par->width,
                          par->height, (long long)par->width * par->height, (long long)max_pixels);
    s->cc = avcodec_alloc_context3(codec);
    s->pkt = av_packet_alloc();
    s->frame = av_frame_alloc();
    if (!s->cc || !s->pkt || !s->frame) return lyra_error(LYRA_ERR_OOM, "image: out of memory");
    if ((err = avcodec_parameters_to_context(s->cc, par)) < 0) return decode_error(codec->name, err, max_pixels, s->cc);
    /* libavcodec refuses larger frames before allocating them; it checks its padded buffer size (e.g.
     * 64x16 for a 16x16 PNG), hence the slack. The exact bound is checked on the decoded frame. */
    s->cc->max_pixels = max_pixels + max_pixels / 8 + 65536;
    s->cc->thread_count = 1;
    if ((err = avcodec_open2(s->cc, codec, NULL)) < 0) return decode_error(codec->name, err, max_pixels, s->cc);

    int flushing = 0;
    for (int packets = 0; packets < MAX_PACKETS;) {
        err = avcodec_receive_frame(s->cc, s->frame);
        if (err == 0) return LYRA_OK;
        if (err != AVERROR(EAGAIN) || flushing) return decode_error(codec->name, err, max_pixels, s->cc);
        err = av_read_frame(s->fc, s->pkt);
        if (err == AVERROR_EOF) {
            flushing = 1;
            err = avcodec_send_packet(s->cc, NULL);
        } else if (err < 0) {
            return decode_error(fmt->name, err, max_pixels, s->cc);
        } else {
            packets++;
            if (s->pkt->stream_index == vs) err = avcodec_send_packet(s->cc, s->pkt);
            av_packet_unref(s->pkt);
        }
        if (err < 0 && err != AVERROR(EAGAIN)) return decode_error(codec->name, err, max_pixels, s->cc);
    }
    return lyra_error(LYRA_ERR_FORMAT, "image: no picture after %d packets of '%s' data", MAX_PACKETS,
                      fmt->name);
}

lyra_status lyra_image_decode(const uint8_t *data, size_t size, int64_t max_pixels, lyra_image **out) {
    LYRA_ASSERT(out && (data || size == 0) && max_pixels > 0);
    *out = NULL;
    if (size == 0) return lyra_error(LYRA_ERR_FORMAT, "image: the data is empty");
    if (size > INT32_MAX) return lyra_error(LYRA_ERR_FORMAT, "image: %zu bytes is more than 2 GiB", size);
    lyra_av_init();
    lyra_av_clear_log();
    const AVInputFormat *fmt = NULL;
    LYRA_TRY(probe(data, size, &fmt));

    mem_reader reader = {data, size, 0};
    decode_state s = {0};
    lyra_status st = decode_first_frame(&s, &reader, fmt, max_pixels);
    if (st == LYRA_OK) {
        AVFrame *f = s.frame;
        if (f->width <= 0 || f->height <= 0 || !av_pix_fmt_desc_get(f->format))
            st = lyra_error(LYRA_ERR_FORMAT, "image: decoder returned an unusable %dx%d frame", f->width,
                            f->height);
        else if ((int64_t)f->width * f->height > max_pixels)
            st = lyra_error(LYRA_ERR_FORMAT, "image: %dx%d is %lld pixels; at most %lld are accepted", f->width,
                            f->height, (long long)f->width * f->height, (long long)max_pixels);
    }
    lyra_image *img = NULL;
    if (st == LYRA_OK && !(img = calloc(1, sizeof *img))) st = lyra_error(LYRA_ERR_OOM, "image: out of memory");
    if (st == LYRA_OK) {
        img->frame = s.frame;
        s.frame = NULL;
        img->orientation = frame_orientation(img->frame);
        int swap = img->orientation >= 5;
        img->height = swap ? img->frame->width : img->frame->height;
        img->width = swap ? img->frame->height : img->frame->width;
        snprintf(img->codec, sizeof img->codec, "%s", s.cc->codec->name);
        *out = img;
    }
    state_free(&s);
    return st;
}

void lyra_image_size(const lyra_image *img, int *height, int *width) {
    *height = img->height;
    *width = img->width;
}

int lyra_image_orientation(const lyra_image *img) { return img->orientation; }

const char *lyra_image_codec_name(const lyra_image *img) { return img->codec; }

void lyra_image_free(lyra_image *img) {
    if (!img) return;
    av_frame_free(&img->frame);
    free(img);
}
