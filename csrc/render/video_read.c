/* Reading a video file's frames as RGB (libavformat + libavcodec + libswscale), for `lyra2 reconstruct VIDEO`:
 * the zoom MP4s lyra2 writes (H.264 yuv420p, BT.601 limited range, csrc/io/video_encode.c) and other
 * single-video-stream files. Frames come out in presentation order, at most max_frames of them. */
#include "render/video_read.h"

#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>

#include "io/av_util.h"

typedef struct reader {
    AVFormatContext *fc;
    AVCodecContext *cc;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    int stream;
    lyra_video_frames *out;
    int64_t max_frames;
} reader;

static lyra_status codec_error(const char *path, const char *what, int err) {
    const char *log = lyra_av_first_error();
    return lyra_error(LYRA_ERR_CODEC, "video %s: %s failed (%s%s%s)", path, what, lyra_av_errstr(err),
                      log[0] ? ": " : "", log);
}

/* Appends the decoded frame converted to RGB24 (growing the buffer geometrically). */
static lyra_status keep_frame(reader *r, const char *path) {
    lyra_video_frames *o = r->out;
    int h = r->frame->height, w = r->frame->width;
    if (o->t == 0) {
        o->h = h, o->w = w;
    } else if (h != o->h || w != o->w) {
        return lyra_error(LYRA_ERR_FORMAT, "video %s: the frame size changes from %dx%d to %dx%d", path, o->w, o->h,
                          w, h);
    }
    size_t frame_bytes = (size_t)h * (size_t)w * 3;
    if ((size_t)(o->t + 1) * frame_bytes > o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16 * frame_bytes;
        uint8_t *p = realloc(o->rgb, cap);
        if (!p) return lyra_error(LYRA_ERR_OOM, "video %s: out of memory after %lld frames", path, (long long)o->t);
        o->rgb = p, o->cap = cap;
    }
    r->sws = sws_getCachedContext(r->sws, w, h, (enum AVPixelFormat)r->frame->format, w, h, AV_PIX_FMT_RGB24,
                                  SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!r->sws) return lyra_error(LYRA_ERR_CODEC, "video %s: cannot convert its pixel format to RGB", path);
    uint8_t *dst[4] = {o->rgb + (size_t)o->t * frame_bytes, NULL, NULL, NULL};
    int dst_linesize[4] = {3 * w, 0, 0, 0};
    sws_scale(r->sws, (const uint8_t *const *)r->frame->data, r->frame->linesize, 0, h, dst, dst_linesize);
    o->t++;
    return LYRA_OK;
}

static lyra_status drain(reader *r, const char *path) {
    for (;;) {
        if (r->out->t >= r->max_frames) return LYRA_OK;
        int err = avcodec_receive_frame(r->cc, r->frame);
        if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return LYRA_OK;
        if (err < 0) return codec_error(path, "decoding", err);
        lyra_status s = keep_frame(r, path);
        av_frame_unref(r->frame);
        if (s != LYRA_OK) return s;
    }
}

static lyra_status run(reader *r, const char *path) {
    int err = avformat_open_input(&r->fc, path, NULL, NULL);
    if (err < 0) return codec_error(path, "opening", err);
    if ((err = avformat_find_stream_info(r->fc, NULL)) < 0) return codec_error(path, "reading the stream info", err);
    const AVCodec *codec = NULL;
    r->stream = av_find_best_stream(r->fc, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r->stream < 0 || !codec) return lyra_error(LYRA_ERR_FORMAT, "video %s: no decodable video stream", path);
    if (!(r->cc = avcodec_alloc_context3(codec))) return lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
    if ((err = avcodec_parameters_to_context(r->cc, r->fc->streams[r->stream]->codecpar)) < 0)
        return codec_error(path, "reading the codec parameters", err);
    if ((err = avcodec_open2(r->cc, codec, NULL)) < 0) return codec_error(path, "opening the decoder", err);
    AVRational fr = av_guess_frame_rate(r->fc, r->fc->streams[r->stream], NULL);
    r->out->fps = fr.den > 0 ? (double)fr.num / fr.den : 0.0;
    if (!(r->frame = av_frame_alloc()) || !(r->pkt = av_packet_alloc()))
        return lyra_error(LYRA_ERR_OOM, "video %s: out of memory", path);
    while (r->out->t < r->max_frames && (err = av_read_frame(r->fc, r->pkt)) >= 0) {
        lyra_status s = LYRA_OK;
        if (r->pkt->stream_index == r->stream) {
            int e = avcodec_send_packet(r->cc, r->pkt);
            s = e < 0 && e != AVERROR(EAGAIN) ? codec_error(path, "decoding", e) : drain(r, path);
        }
        av_packet_unref(r->pkt);
        if (s != LYRA_OK) return s;
    }
    if (err < 0 && err != AVERROR_EOF) return codec_error(path, "reading", err);
    avcodec_send_packet(r->cc, NULL); /* flush the decoder's delayed frames */
    LYRA_TRY(drain(r, path));
    if (r->out->t == 0) return lyra_error(LYRA_ERR_FORMAT, "video %s: no frame could be decoded", path);
    return LYRA_OK;
}

lyra_status lyra_video_read(const char *path, int64_t max_frames, lyra_video_frames *out) {
    memset(out, 0, sizeof *out);
    lyra_av_init();
    lyra_av_clear_log();
    reader r = {.out = out, .max_frames = max_frames > 0 ? max_frames : INT64_MAX, .stream = -1};
    lyra_status s = run(&r, path);
    sws_freeContext(r.sws);
    av_packet_free(&r.pkt);
    av_frame_free(&r.frame);
    avcodec_free_context(&r.cc);
    avformat_close_input(&r.fc);
    if (s != LYRA_OK) lyra_video_frames_free(out);
    return s;
}

void lyra_video_frames_free(lyra_video_frames *f) {
    free(f->rgb);
    memset(f, 0, sizeof *f);
}
