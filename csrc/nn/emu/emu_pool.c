/* The emulated device's memory pool, counters and transfer log (see nn/emu/lyra_emu.h). Process-wide and guarded
 * by one mutex: several networks (each with its own backend) share the one emulated GPU, as they would share a
 * real one. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn/emu/emu_internal.h"

#define POISON_BYTE 0xFF                       /* 0xFFFF.. is a NaN in f32, bf16 and f16 */
#define QUARANTINE_BYTES ((size_t)256 << 20)   /* freed blocks kept mapped (poisoned) before free() */

typedef struct block {
    char *ptr;
    size_t size;
} block;

static struct {
    pthread_mutex_t mu;
    block *live;            /* sorted by ptr */
    int n_live, cap_live;
    block *quarantine;      /* FIFO of released blocks */
    int n_q, cap_q;
    size_t q_bytes;
    lyra_emu_stats stats;
    lyra_emu_transfer log[LYRA_EMU_LOG_CAP];
    int64_t n_log;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

int lyra_emu_enabled(void) {
    const char *v = getenv("LYRA2_EMULATED_CUDA");
    return v && *v && strcmp(v, "0") != 0;
}

/* Index of the first live block whose ptr is > p (binary search); the candidate container is the one before. */
static int upper(const char *p) {
    int lo = 0, hi = pool.n_live;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (pool.live[mid].ptr <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int grow(block **arr, int *cap, int need) {
    if (need <= *cap) return 1;
    int c = *cap ? 2 * *cap : 256;
    while (c < need) c *= 2;
    block *n = realloc(*arr, sizeof *n * (size_t)c);
    if (!n) return 0;
    *arr = n;
    *cap = c;
    return 1;
}

/* The emulated card's memory: LYRA2_EMULATED_CUDA_MEMORY bytes (a K/M/G suffix allowed), 0 = host memory only.
 * Read at every allocation, so a test can shrink the card between steps. */
static size_t card_bytes(void) {
    const char *v = getenv("LYRA2_EMULATED_CUDA_MEMORY");
    if (!v || !*v) return 0;
    char *end;
    double x = strtod(v, &end);
    double unit = *end == 'K' || *end == 'k' ? 1024.0 : *end == 'M' || *end == 'm' ? 1048576.0
                : *end == 'G' || *end == 'g' ? 1073741824.0 : 1.0;
    return x > 0 ? (size_t)(x * unit) : 0;
}

void *emu_pool_alloc(size_t bytes, const char *what) {
    size_t rounded = (bytes + 255) & ~(size_t)255; /* cudaMalloc alignment */
    if (!rounded) rounded = 256;
    size_t cap = card_bytes();
    if (cap) {
        pthread_mutex_lock(&pool.mu);
        size_t live = (size_t)pool.stats.live_bytes;
        pthread_mutex_unlock(&pool.mu);
        if (live + rounded > cap) { /* the CUDA backend's words for cudaErrorMemoryAllocation */
            lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes of GPU memory (out of memory on the emulated "
                       "device; %zu of %zu MiB in use)", what, bytes, live >> 20, cap >> 20);
            return NULL;
        }
    }
    char *p = aligned_alloc(256, rounded);
    if (!p) {
        lyra_error(LYRA_ERR_OOM, "%s: cannot allocate %zu bytes of (emulated) GPU memory", what, bytes);
        return NULL;
    }
    memset(p, POISON_BYTE, rounded);
    pthread_mutex_lock(&pool.mu);
    if (!grow(&pool.live, &pool.cap_live, pool.n_live + 1)) {
        pthread_mutex_unlock(&pool.mu);
        free(p);
        lyra_error(LYRA_ERR_OOM, "%s: cannot grow the emulated pool's block table", what);
        return NULL;
    }
    int i = upper(p);
    memmove(&pool.live[i + 1], &pool.live[i], sizeof(block) * (size_t)(pool.n_live - i));
    pool.live[i] = (block){p, rounded};
    pool.n_live++;
    pool.stats.allocations++;
    pool.stats.live_bytes += (int64_t)rounded;
    if (pool.stats.live_bytes > pool.stats.peak_bytes) pool.stats.peak_bytes = pool.stats.live_bytes;
    pthread_mutex_unlock(&pool.mu);
    return p;
}

void emu_pool_release(void *ptr) {
    if (!ptr) return;
    pthread_mutex_lock(&pool.mu);
    int i = upper(ptr) - 1;
    if (i < 0 || pool.live[i].ptr != ptr) {
        pthread_mutex_unlock(&pool.mu); /* not ours (or released twice): cudaFree would fail; nothing to undo */
        return;
    }
    block b = pool.live[i];
    memmove(&pool.live[i], &pool.live[i + 1], sizeof(block) * (size_t)(pool.n_live - i - 1));
    pool.n_live--;
    pool.stats.releases++;
    pool.stats.live_bytes -= (int64_t)b.size;
    memset(b.ptr, POISON_BYTE, b.size);
    /* Keep the poisoned block mapped for a while so a stale pointer reads NaN instead of unmapped memory. */
    while (pool.n_q > 0 && pool.q_bytes + b.size > QUARANTINE_BYTES) {
        pool.q_bytes -= pool.quarantine[0].size;
        free(pool.quarantine[0].ptr);
        memmove(&pool.quarantine[0], &pool.quarantine[1], sizeof(block) * (size_t)(pool.n_q - 1));
        pool.n_q--;
    }
    if (b.size <= QUARANTINE_BYTES && grow(&pool.quarantine, &pool.cap_q, pool.n_q + 1)) {
        pool.quarantine[pool.n_q++] = b;
        pool.q_bytes += b.size;
    } else {
        free(b.ptr);
    }
    pthread_mutex_unlock(&pool.mu);
}

int lyra_emu_in_pool(const void *p, size_t bytes) {
    const char *c = p;
    pthread_mutex_lock(&pool.mu);
    int i = upper(c) - 1;
    int ok = i >= 0 && c >= pool.live[i].ptr && (size_t)(c - pool.live[i].ptr) + bytes <= pool.live[i].size;
    pthread_mutex_unlock(&pool.mu);
    return ok;
}

void emu_count(int refused) {
    pthread_mutex_lock(&pool.mu);
    if (refused) pool.stats.refused++;
    else pool.stats.ops++;
    pthread_mutex_unlock(&pool.mu);
}

void emu_log_transfer(int download, int64_t bytes, const char *name) {
    pthread_mutex_lock(&pool.mu);
    if (download) {
        pool.stats.downloads++;
        pool.stats.download_bytes += bytes;
    } else {
        pool.stats.uploads++;
        pool.stats.upload_bytes += bytes;
    }
    if (pool.n_log < LYRA_EMU_LOG_CAP) {
        lyra_emu_transfer *t = &pool.log[pool.n_log];
        t->download = download;
        t->bytes = bytes;
        strncpy(t->name, name && *name ? name : "?", sizeof t->name - 1);
        t->name[sizeof t->name - 1] = 0;
    }
    pool.n_log++;
    pthread_mutex_unlock(&pool.mu);
}

void lyra_emu_stats_get(lyra_emu_stats *s) {
    pthread_mutex_lock(&pool.mu);
    *s = pool.stats;
    pthread_mutex_unlock(&pool.mu);
}

void lyra_emu_stats_reset(void) {
    pthread_mutex_lock(&pool.mu);
    int64_t live = pool.stats.live_bytes;
    memset(&pool.stats, 0, sizeof pool.stats);
    pool.stats.live_bytes = pool.stats.peak_bytes = live;
    pool.n_log = 0;
    pthread_mutex_unlock(&pool.mu);
}

int64_t lyra_emu_transfer_log(lyra_emu_transfer *out, int64_t cap) {
    pthread_mutex_lock(&pool.mu);
    int64_t kept = pool.n_log < LYRA_EMU_LOG_CAP ? pool.n_log : LYRA_EMU_LOG_CAP;
    for (int64_t i = 0; i < kept && i < cap; i++) out[i] = pool.log[i];
    int64_t n = pool.n_log;
    pthread_mutex_unlock(&pool.mu);
    return n;
}
