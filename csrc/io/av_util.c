/* libav log capture and error strings (see av_util.h). */
#include "av_util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/log.h>

static _Thread_local char first_error[512];
static _Thread_local char errbuf[AV_ERROR_MAX_STRING_SIZE];
static int print_too;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void log_callback(void *avcl, int level, const char *fmt, va_list vl) {
    if (print_too) {
        va_list copy;
        va_copy(copy, vl);
        av_log_default_callback(avcl, level, fmt, copy);
        va_end(copy);
    }
    if (level > AV_LOG_ERROR || first_error[0]) return;
    int prefix = 0; /* no "[png @ 0x...]" context: the message is for users */
    char line[sizeof first_error];
    av_log_format_line2(avcl, level, fmt, vl, line, (int)sizeof line, &prefix);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = '\0';
    if (n > 0) memcpy(first_error, line, n + 1);
}

static void install(void) {
    print_too = getenv("LYRA2_AV_LOG") != NULL;
    av_log_set_callback(log_callback);
}

void lyra_av_init(void) { pthread_once(&init_once, install); }

const char *lyra_av_first_error(void) { return first_error; }

void lyra_av_clear_log(void) { first_error[0] = '\0'; }

const char *lyra_av_errstr(int err) {
    if (av_strerror(err, errbuf, sizeof errbuf) < 0) snprintf(errbuf, sizeof errbuf, "libav error %d", err);
    return errbuf;
}
