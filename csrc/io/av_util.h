/* Helpers shared by the libav*-based media files: log capture and error strings. */
#ifndef LYRA_IO_AV_UTIL_H
#define LYRA_IO_AV_UTIL_H

/* Routes libav logging through lyra2 once per process: messages of level AV_LOG_ERROR or worse are
 * noted per thread (so an error can quote libav's reason) and nothing is printed, unless the
 * environment variable LYRA2_AV_LOG is set, which restores libav's own printing. Note that the
 * callback is process-wide (libav has one). */
void lyra_av_init(void);

/* The calling thread's first libav error message since lyra_av_clear_log() ("" when none): the first
 * one names the cause ("Picture size ... exceeds max pixel count"), later ones its consequences. */
const char *lyra_av_first_error(void);
void lyra_av_clear_log(void);

/* av_strerror into a per-thread buffer. */
const char *lyra_av_errstr(int err);

#endif
