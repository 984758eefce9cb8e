/* lyra_backend_init: the one place that knows which backends this build has. */
#include "nn/backend.h"

#include <stdlib.h>

#include "nn/emu/lyra_emu.h"

#ifdef LYRA2_WITH_CUDA
#include "nn/cuda/lyra_cuda.h"
#endif

/* The emulated device runs CPU kernels: with the thread count the CPU networks use ($LYRA2_NUM_THREADS, 0 or unset =
 * every core), so a test that pins one thread per network does not oversubscribe a shared machine. */
static int emu_threads(void) {
    const char *v = getenv("LYRA2_NUM_THREADS");
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : 0;
    return v && end != v && *end == '\0' && n > 0 && n < 4096 ? (int)n : 0;
}

lyra_status lyra_backend_init(lyra_backend *be, lyra_device device, int arg) {
    if (device == LYRA_DEVICE_CPU) return lyra_backend_cpu_init(be, arg);
    if (device != LYRA_DEVICE_CUDA) return lyra_error(LYRA_ERR_ARG, "backend: unknown device %d", (int)device);
    /* LYRA2_EMULATED_CUDA=1 takes precedence even in a CUDA build, so the same tests run everywhere. */
    if (lyra_emu_enabled()) return lyra_backend_emu_init(be, emu_threads());
#ifdef LYRA2_WITH_CUDA
    return lyra_backend_cuda_init(be, arg);
#else
    memset(be, 0, sizeof *be);
    return lyra_error(LYRA_ERR_UNSUPPORTED, "the CUDA backend is not part of this build (built without nvcc/cuBLAS or "
                                            "with LYRA2_CUDA=0)");
#endif
}
