/* H.264 MP4 writer on libavcodec (libx264) + libavformat (see media.h).
 *
 * Upstream writes with imageio-ffmpeg: libx264, yuv420p, -crf 25, preset medium, no audio
 * (upstream Z:767-777, AR:441-463, Z:779-794). The RGB -> YUV conversion is swscale's BT.601 limited range, as the
 * ffmpeg CLI behind imageio does for untagged RGB input; unlike imageio we tag the stream (matrix BT.601, limited
 * range) so players do not guess BT.709 for HD sizes. */
#include "media.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "av_util.h"

typedef struct encoder {
    AVFormatContext *oc;
    AVCodecContext *cc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
} encoder;

static void encoder_free(encoder *e) {
    if (e->oc && e->oc->pb) avio_closep(&e->oc->pb);
    avformat_free_context(e->oc);
    avcodec_free_context(&e->cc);
    av_frame_free(&e->frame);
    av_packet_free(&e->pkt);
    sws_freeContext(e->sws);
}

static lyra_status codec_error(const char *path, const char *what, int err) {
    const char *why = lyra_av_first_error();
    return lyra_error(LYRA_ERR_CODEC, "video %s: %s failed (%s%s%s)", path, what, lyra_av_errstr(err),
                      why[0] ? "; " : "", why);
}

/* Sends one frame (NULL flushes) and writes every packet the encoder has ready. */
static lyra_status encode(encoder *e, const AVFrame *frame, const char *path) {
    int err = avcodec_send_frame(e->cc, frame);
    if (err < 0) return codec_error(path, "H.264 encoding", err);
    for (;;) {
        err = avcodec_receive_packet(e->cc, e->pkt);
        if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return LYRA_OK;
        if (err < 0) return codec_error(path, "H.264 encoding", err);
        av_packet_rescale_ts(e->pkt, e->cc->time_base, e->st->time_base);
        e->pkt->stream_index = e->st->index;
        err = av_interleaved_write_frame(e->oc, e->pkt); /* takes the packet's reference */
        if (err < 0) return codec_error(path, "writing the MP4", err);
    }
}

static lyra_status encoder_open(encoder *e, const char *url, const char *path, int h, int w, int fps, int crf,
                                const char *preset) {
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec)
        return lyra_error(LYRA_ERR_UNSUPPORTED,
                          "video %s: this libavcodec has no libx264 encoder (install a libavcodec built with x264)",
                          path);
    int err = avformat_alloc_output_context2(&e->oc, NULL, "mp4", url);
    if (err < 0) return codec_error(path, "creating the MP4 muxer", err);
    e->cc = avcodec_alloc_context3(codec);
    e->frame = av_frame_alloc();
    e->pkt = av_packet_alloc();
    if (!e->cc || !e->frame || !e->pkt) return lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);

    AVCodecContext *cc = e->cc;
    cc->width = w;
    cc->height = h;
    cc->pix_fmt = AV_PIX_FMT_YUV420P;
    cc->time_base = (AVRational){1, fps};
    cc->framerate = (AVRational){fps, 1};
    cc->color_range = AVCOL_RANGE_MPEG;
    cc->colorspace = AVCOL_SPC_SMPTE170M;
    if (e->oc->oformat->flags & AVFMT_GLOBALHEADER) cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "preset", preset, 0);
    av_dict_set_int(&opts, "crf", crf, 0);
    err = avcodec_open2(cc, codec, &opts);
    av_dict_free(&opts);
    if (err < 0) return codec_error(path, "opening libx264", err);

    if (!(e->st = avformat_new_stream(e->oc, NULL))) return lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
    if ((err = avcodec_parameters_from_context(e->st->codecpar, cc)) < 0)
        return codec_error(path, "setting stream parameters", err);
    e->st->time_base = cc->time_base;
    e->st->avg_frame_rate = cc->framerate;

    e->frame->format = cc->pix_fmt;
    e->frame->width = w;
    e->frame->height = h;
    if ((err = av_frame_get_buffer(e->frame, 0)) < 0) return lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
    e->sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!e->sws) return lyra_error(LYRA_ERR_CODEC, "video %s: cannot set up RGB -> yuv420p conversion", path);

    if ((err = avio_open(&e->oc->pb, url, AVIO_FLAG_WRITE)) < 0) return codec_error(path, "opening the file", err);
    AVDictionary *mux = NULL;
    av_dict_set(&mux, "movflags", "+faststart", 0); /* index first: playable while downloading */
    err = avformat_write_header(e->oc, &mux);
    av_dict_free(&mux);
    if (err < 0) return codec_error(path, "writing the MP4 header", err);
    return LYRA_OK;
}

static lyra_status write_all(const char *url, const char *path, const uint8_t *frames, int t, int h, int w,
                             int fps, int crf, const char *preset) {
    encoder e = {0};
    lyra_status st = encoder_open(&e, url, path, h, w, fps, crf, preset);
    size_t frame_bytes = (size_t)h * w * 3;
    for (int i = 0; st == LYRA_OK && i < t; i++) {
        int err = av_frame_make_writable(e.frame);
        if (err < 0) {
            st = lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
            break;
        }
        const uint8_t *src[4] = {frames + frame_bytes * i, NULL, NULL, NULL};
        int src_linesize[4] = {w * 3, 0, 0, 0};
        sws_scale(e.sws, src, src_linesize, 0, h, e.frame->data, e.frame->linesize);
        e.frame->pts = i;
        st = encode(&e, e.frame, path);
    }
    if (st == LYRA_OK) st = encode(&e, NULL, path);
    if (st == LYRA_OK) {
        int err = av_write_trailer(e.oc);
        if (err < 0) st = codec_error(path, "finishing the MP4", err);
    }
    if (st == LYRA_OK && e.oc->pb) {
        int err = avio_closep(&e.oc->pb);
        if (err < 0) st = codec_error(path, "closing the file", err);
    }
    encoder_free(&e);
    return st;
}

/* Creates an empty, new file beside `path` ("<dir>/.<name>.lyra2-<pid>-<n>.tmp") and returns its name
 * (malloc'd) in *tmp. O_EXCL makes the name ours; mode 0666 lets the umask decide as for any file. */
static lyra_status temp_create(const char *path, char **tmp) {
    static atomic_uint counter;
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
    const char *base = path + dir_len;
    size_t cap = strlen(path) + 64;
    char *name = malloc(cap);
    if (!name) return lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = atomic_fetch_add(&counter, 1u);
        snprintf(name, cap, "%.*s.%s.lyra2-%ld-%u.tmp", (int)dir_len, path, base, (long)getpid(), n);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            close(fd);
            *tmp = name;
            return LYRA_OK;
        }
        if (errno != EEXIST) {
            int e = errno;
            free(name);
            return lyra_error(LYRA_ERR_IO, "video %s: cannot create a file in directory '%.*s' (%s)", path,
                              dir_len ? (int)dir_len : 1, dir_len ? path : ".", strerror(e));
        }
    }
    free(name);
    return lyra_error(LYRA_ERR_IO, "video %s: cannot find a free temporary name beside it", path);
}

lyra_status lyra_video_write(const char *path, const uint8_t *frames, int t, int h, int w, int fps, int crf,
                             const char *preset) {
    LYRA_ASSERT(path && frames);
    static const char *const presets[] = {LYRA_VIDEO_PRESETS};
    int known = 0;
    for (size_t i = 0; preset && i < sizeof presets / sizeof *presets; i++) known |= !strcmp(preset, presets[i]);
    if (!known)
        return lyra_error(LYRA_ERR_ARG, "video preset: '%s' is not an x264 preset (ultrafast .. veryslow)",
                          preset ? preset : "(null)");
    if (!path[0]) return lyra_error(LYRA_ERR_ARG, "video path: must not be empty");
    if (t < 1) return lyra_error(LYRA_ERR_ARG, "video frames: need at least 1 frame, got %d", t);
    if (h < 2 || w < 2 || h > LYRA_VIDEO_MAX_SIDE || w > LYRA_VIDEO_MAX_SIDE || h % 2 || w % 2)
        return lyra_error(LYRA_ERR_ARG,
                          "video frames: height and width must be even and in 2..%d (yuv420p halves both for "
                          "chroma), got %dx%d",
                          LYRA_VIDEO_MAX_SIDE, h, w);
    if (fps < LYRA_VIDEO_FPS_MIN || fps > LYRA_VIDEO_FPS_MAX)
        return lyra_error(LYRA_ERR_ARG, "video fps: must be an integer in %d..%d, got %d", LYRA_VIDEO_FPS_MIN,
                          LYRA_VIDEO_FPS_MAX, fps);
    if (crf < 0 || crf > 51) return lyra_error(LYRA_ERR_ARG, "video crf: must be in 0..51, got %d", crf);
    lyra_av_init();
    lyra_av_clear_log();

    char *tmp = NULL;
    LYRA_TRY(temp_create(path, &tmp));
    /* "file:" keeps libav from reading a protocol out of a name that contains ':'. */
    size_t url_len = strlen(tmp) + 6;
    char *url = malloc(url_len);
    lyra_status st = LYRA_OK;
    if (!url)
        st = lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
    else {
        snprintf(url, url_len, "file:%s", tmp);
        st = write_all(url, path, frames, t, h, w, fps, crf, preset);
    }
    if (st == LYRA_OK && rename(tmp, path) != 0)
        st = lyra_error(LYRA_ERR_IO, "video %s: cannot move the finished file into place (%s)", path, strerror(errno));
    if (st != LYRA_OK) unlink(tmp);
    free(url);
    free(tmp);
    return st;
}
