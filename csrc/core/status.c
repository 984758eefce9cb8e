/* Per-thread last-error message behind lyra_error(). */
#include "lyra2.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char lyra_last_message[1024];

lyra_status lyra_error(lyra_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lyra_last_message, sizeof lyra_last_message, fmt, ap);
    va_end(ap);
    return status;
}

const char *lyra_error_message(void) { return lyra_last_message; }

void lyra_error_clear(void) { lyra_last_message[0] = '\0'; }

const char *lyra_status_name(lyra_status status) {
    switch (status) {
    case LYRA_OK: return "ok";
    case LYRA_ERR_ARG: return "invalid argument";
    case LYRA_ERR_TYPE: return "invalid type";
    case LYRA_ERR_IO: return "I/O error";
    case LYRA_ERR_FORMAT: return "bad format";
    case LYRA_ERR_OOM: return "out of memory";
    case LYRA_ERR_CODEC: return "codec error";
    case LYRA_ERR_CUDA: return "CUDA error";
    case LYRA_ERR_UNSUPPORTED: return "unsupported";
    case LYRA_ERR_INTERRUPTED: return "interrupted";
    case LYRA_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int lyra_build_has_cuda(void) {
#ifdef LYRA2_WITH_CUDA
    return 1;
#else
    return 0;
#endif
}

int lyra_build_cuda_emulated(void) {
#ifdef LYRA2_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

int lyra_build_has_cblas(void) {
#ifdef LYRA2_HAVE_CBLAS
    return 1;
#else
    return 0;
#endif
}
