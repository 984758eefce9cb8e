/* Helpers shared by the libav*-based media files: log capture and error strings. */
#ifndef LYRA_IO_AV_UTIL_H
#define LYRA_IO_AV_UTIL_H

/* Routes libav logging through lyra2 once per process: messages of level AV_LOG_ERROR or worse are
 * kept per thread (so an error can quote libav's reason) and nothing is printed, unless the
 * environment variable LYRA2_AV_LOG is set, which restores libav's own printing. Note that the
 * callback is process-wide (libav has one). */
void lyra_av_init(void);

/* The calling thread's last captured libav error message ("" when none), and its reset. */
const char *lyra_av_last_log(void);
void lyra_av_clear_log(void);

/* av_strerror into a per-thread buffer. */
const char *lyra_av_errstr(int err);

#endif
