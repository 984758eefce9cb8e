/* The emulated CUDA device: a backend that runs the CPU kernels (csrc/nn/cpu) but behaves like the CUDA backend
 * from the outside, so the placement of every network and of the AR driver can be checked on machines without a
 * GPU (LYRA2_EMULATED_CUDA=1 makes device="cuda" use it; see docs/PRECISION.md for the dtypes it stores).
 *
 * What it enforces, and why each matters on a real GPU:
 * - One device memory pool, separate from host memory (process-wide, like one GPU shared by every network's
 *   backend). Every op checks that each tensor it touches lies inside a live pool block and refuses it otherwise,
 *   naming the op, the argument and the tensor: a host pointer handed to a CUDA kernel is an illegal address.
 * - Uploads and downloads copy (never alias) and are counted (count + bytes) and logged by tensor name, so tests
 *   can list the transfers of a chunk.
 * - Fresh and freed blocks are filled with 0xFF bytes, a NaN in f32, bf16 and f16 (cudaMalloc hands out garbage;
 *   a kernel reading memory it never wrote, or memory already released, then poisons the result). Freed blocks
 *   stay mapped (poisoned, outside the pool) in a bounded quarantine so a stale pointer reads NaN, not a crash.
 * - LYRA2_EMULATED_CUDA_MEMORY=<bytes>[K|M|G] gives the card a size: an allocation past it fails with
 *   LYRA_ERR_OOM as cudaMalloc would, so out-of-memory handling can be tested.
 * - Activations stored in bf16/f16 stay in that dtype in the pool: each op converts them to f32 around the CPU
 *   kernel and rounds its output back, as the CUDA kernels store bf16 with f32 arithmetic inside. Weights of
 *   linear/conv/embedding/norm ops are read in their own dtype (as the CPU kernels and cuBLAS do). */
#ifndef LYRA_EMU_H
#define LYRA_EMU_H

#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when LYRA2_EMULATED_CUDA is set to a non-empty value other than "0" (read at every backend creation). */
int lyra_emu_enabled(void);

/* An emulated-device backend (device LYRA_DEVICE_CUDA, name "cuda-emulated") running n_threads CPU threads. */
lyra_status lyra_backend_emu_init(lyra_backend *be, int n_threads);

typedef struct lyra_emu_stats {
    int64_t uploads, upload_bytes;      /* host -> device copies */
    int64_t downloads, download_bytes;  /* device -> host copies */
    int64_t allocations, releases;      /* pool blocks handed out / given back */
    int64_t live_bytes, peak_bytes;     /* bytes in live pool blocks now / at most since the last reset */
    int64_t ops;                        /* ops run */
    int64_t refused;                    /* ops refused because a tensor was outside the pool */
} lyra_emu_stats;

/* A snapshot of the process-wide counters. */
void lyra_emu_stats_get(lyra_emu_stats *s);
/* Zeroes the counters and the transfer log; peak_bytes restarts from the live bytes. */
void lyra_emu_stats_reset(void);

/* One logged transfer: direction (0 upload, 1 download), bytes and the tensor's name ("?" when unnamed). */
typedef struct lyra_emu_transfer {
    int download;
    int64_t bytes;
    char name[64];
} lyra_emu_transfer;
#define LYRA_EMU_LOG_CAP 4096
/* Copies up to `cap` logged transfers (oldest first, since the last reset) into out; returns how many were
 * logged in all (entries beyond LYRA_EMU_LOG_CAP are counted but not kept). */
int64_t lyra_emu_transfer_log(lyra_emu_transfer *out, int64_t cap);

/* 1 when [p, p + bytes) lies inside one live block of the emulated pool. */
int lyra_emu_in_pool(const void *p, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
