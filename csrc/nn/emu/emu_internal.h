/* Private pieces of the emulated device (nn/emu/lyra_emu.h): the pool and the counters behind the backend. */
#ifndef LYRA_EMU_INTERNAL_H
#define LYRA_EMU_INTERNAL_H

#include "nn/emu/lyra_emu.h"

/* A poisoned pool block of at least `bytes` (256-byte aligned, as cudaMalloc); NULL + LYRA_ERR_OOM naming what. */
void *emu_pool_alloc(size_t bytes, const char *what);
/* Poisons the block and takes it out of the pool; pointers that are not live blocks are ignored. */
void emu_pool_release(void *ptr);
/* Counts one op run (refused = 0) or refused (1). */
void emu_count(int refused);
/* Counts and logs one transfer. */
void emu_log_transfer(int download, int64_t bytes, const char *name);

#endif
