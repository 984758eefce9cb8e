/* lyra2 C API: status codes and the last-error message shared by every subsystem.
 *
 * Every function a user can make fail returns lyra_status and, on failure, leaves a message
 * (naming the file, tensor, field or value) that lyra_error_message() returns. The CPython glue
 * (csrc/python) turns these into exceptions: LYRA_ERR_ARG -> ValueError, LYRA_ERR_TYPE -> TypeError,
 * everything else -> lyra2.Lyra2Error. Nothing in the extension terminates the process.
 *
 * Programmer errors (violated invariants that tests make unreachable) use LYRA_ASSERT, which in a
 * normal build records the failure and returns LYRA_ERR_INTERNAL from the enclosing function. */
#ifndef LYRA2_H
#define LYRA2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lyra_status {
    LYRA_OK = 0,
    LYRA_ERR_ARG,          /* bad argument value or shape (ValueError) */
    LYRA_ERR_TYPE,         /* bad argument type / dtype (TypeError) */
    LYRA_ERR_IO,           /* file cannot be opened / read / written */
    LYRA_ERR_FORMAT,       /* file or stream is corrupt or unsupported */
    LYRA_ERR_OOM,          /* host or device allocation failed */
    LYRA_ERR_CODEC,        /* libav* failure */
    LYRA_ERR_CUDA,         /* CUDA runtime / cuBLAS failure */
    LYRA_ERR_UNSUPPORTED,  /* feature not available in this build or not built yet */
    LYRA_ERR_INTERRUPTED,  /* stopped by the caller (Ctrl-C between steps) */
    LYRA_ERR_INTERNAL      /* a violated invariant: a bug in lyra2 */
} lyra_status;

/* Records a formatted message for the calling thread and returns `status` (for `return lyra_error(...)`). */
lyra_status lyra_error(lyra_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The calling thread's last message ("" when none). */
const char *lyra_error_message(void);
void lyra_error_clear(void);
const char *lyra_status_name(lyra_status status);

#define LYRA_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return lyra_error(LYRA_ERR_INTERNAL, "internal error: %s (%s:%d)", #cond, __FILE__,    \
                              __LINE__);                                                           \
    } while (0)

/* Propagates a failing status from a call. */
#define LYRA_TRY(expr)                                                                             \
    do {                                                                                           \
        lyra_status lyra__s = (expr);                                                              \
        if (lyra__s != LYRA_OK) return lyra__s;                                                    \
    } while (0)

/* Build information. */
int lyra_build_has_cuda(void);
/* 1 in the CPU emulation build (LYRA2_CUDA_EMU): the CUDA backend's kernels run on the host, thread by thread. */
int lyra_build_cuda_emulated(void);
int lyra_build_has_cblas(void);

#ifdef __cplusplus
}
#endif
#endif
