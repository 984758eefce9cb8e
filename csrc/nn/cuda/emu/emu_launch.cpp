// Kernel launches in the CPU emulation build: every block of the grid in turn, each thread of a block a fiber
// with its own small stack. A fiber runs until it finishes or waits (at __syncthreads or a warp collective);
// the scheduler then resumes the lowest-numbered runnable fiber. A waiting thread becomes runnable when the
// block (barrier) or its warp (collective) has fully arrived; the last thread to arrive completes the operation
// and runs on. So warp 0 runs from one barrier to the next before warp 1 starts: the widest skew between warps
// a barrier allows, which makes a missing __syncthreads show as stale or poisoned shared memory. No runnable
// thread while some still wait is a deadlock (divergent barrier), reported as a fault.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

constexpr size_t STACK_BYTES = (size_t)256 << 10; /* per thread; the deepest kernel frame is a few KiB */
constexpr int MAX_THREADS = 1024;

enum fiber_state { F_RUNNABLE, F_WAIT_BARRIER, F_WAIT_WARP, F_DONE };

struct async_copy {
    void *dst;
    const void *src;
    int bytes, group;
};

struct fiber {
    void *sp;          /* saved stack pointer while switched out */
    char *stack;       /* lowest usable byte (a guard page lies below) */
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    int state;
    uint3 tid;
    std::vector<async_copy> copies; /* queued cp.async of this thread */
    int groups;                     /* cp.async groups committed so far */
};

struct warp_state {
    int lanes;      /* threads of the block in this warp (32 but for a partial last warp) */
    int exited;     /* lanes that finished the kernel */
    int arrived;
    int kind;
    unsigned mask;
    unsigned char in[32][LYRA_CUEMU_LANE_IN];
    unsigned char out[32][LYRA_CUEMU_LANE_OUT];
};

struct block_run {
    std::vector<fiber> *fibers;
    int n, live, barrier_arrived;
    int next_runnable; /* no fiber below this index is runnable */
    std::vector<warp_state> warps;
    unsigned char *smem;
    size_t smem_size;
    void (*body)(void *);
    void *ctx;
    int aborted;
};

std::mutex g_launch_lock;         /* one launch at a time in the process */
std::vector<fiber> g_fibers;      /* stacks kept across launches */
block_run *g_block;
fiber *g_cur;
void *g_sched_sp;
#if !defined(__x86_64__)
ucontext_t g_sched_uc;
#endif
#if EMU_ASAN
const void *g_sched_stack_bottom;
size_t g_sched_stack_size;
#endif

} // namespace

/* ---------------------------------------------------------------- context switch */

#if defined(__x86_64__)
/* lyra_cuemu_switch(&save_sp, new_sp): saves the callee-saved registers and the FP control words on the current
 * stack, stores its stack pointer in *save_sp, and resumes the context saved at new_sp (SysV x86-64 ABI). */
extern "C" void lyra_cuemu_switch(void **save_sp, void *new_sp);
asm(R"(
    .text
    .globl lyra_cuemu_switch
    .hidden lyra_cuemu_switch
    .type lyra_cuemu_switch, @function
lyra_cuemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size lyra_cuemu_switch, .-lyra_cuemu_switch
)");
#endif

namespace {

void fiber_main();

#if !defined(__x86_64__)
void fiber_main_uc() { fiber_main(); }
#endif

/* Prepares f to start at fiber_main on its own stack. */
void fiber_reset(fiber &f) {
#if EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack, STACK_BYTES); /* frames of the previous thread never returned */
#endif
#if defined(__x86_64__)
    uintptr_t top = ((uintptr_t)f.stack + STACK_BYTES) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                    /* fiber_main's "return address": it never returns */
    *--sp = (void *)&fiber_main;        /* where lyra_cuemu_switch's ret goes */
    for (int i = 0; i < 6; i++) *--sp = nullptr; /* rbp rbx r12-r15 */
    --sp;
    uint32_t mxcsr = 0x1f80;            /* defaults: round to nearest, exceptions masked */
    uint16_t fcw = 0x037f;
    memcpy(sp, &mxcsr, 4);
    memcpy((char *)sp + 4, &fcw, 2);
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack;
    f.uc.uc_stack.ss_size = STACK_BYTES;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, fiber_main_uc, 0);
#endif
    f.state = F_RUNNABLE;
    f.copies.clear();
    f.groups = 0;
}

int fibers_reserve(int n) {
    long page = sysconf(_SC_PAGESIZE);
    while ((int)g_fibers.size() < n) {
        /* a guard page below each stack turns an overflow into a fault instead of silent corruption */
        char *m = (char *)mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return 0;
        mprotect(m, page, PROT_NONE);
        g_fibers.emplace_back();
        g_fibers.back().stack = m + page;
    }
    return 1;
}

/* From the running fiber back to the scheduler; returns when the scheduler resumes this fiber. */
void yield_to_scheduler(bool dying) {
    fiber *f = g_cur;
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, g_sched_stack_bottom, g_sched_stack_size);
#else
    (void)dying;
#endif
#if defined(__x86_64__)
    lyra_cuemu_switch(&f->sp, g_sched_sp);
#else
    swapcontext(&f->uc, &g_sched_uc);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void resume(fiber &f) {
    g_cur = &f;
    threadIdx = f.tid;
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack, STACK_BYTES);
#endif
#if defined(__x86_64__)
    lyra_cuemu_switch(&g_sched_sp, f.sp);
#else
    swapcontext(&g_sched_uc, &f.uc);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, &g_sched_stack_bottom, &g_sched_stack_size);
#endif
    g_cur = nullptr;
}

void flush_copies(fiber &f, int upto_group) {
    size_t w = 0;
    for (size_t i = 0; i < f.copies.size(); i++) {
        async_copy &c = f.copies[i];
        if (c.group < upto_group) {
            if (c.bytes) memcpy(c.dst, c.src, (size_t)c.bytes);
            memset((char *)c.dst + c.bytes, 0, (size_t)(16 - c.bytes));
        } else {
            f.copies[w++] = c;
        }
    }
    f.copies.resize(w);
}

char g_fault[512];

/* The fault path inside a kernel: record, stop the block, never resume this fiber. */
[[noreturn]] void kernel_abort() {
    g_block->aborted = 1;
    g_cur->state = F_DONE;
    yield_to_scheduler(true);
    __builtin_unreachable();
}

void make_runnable(fiber &f) {
    f.state = F_RUNNABLE;
    int i = (int)(&f - g_block->fibers->data());
    if (i < g_block->next_runnable) g_block->next_runnable = i;
}

void wake_warp(int w) {
    std::vector<fiber> &fs = *g_block->fibers;
    for (int i = w * 32; i < w * 32 + g_block->warps[w].lanes; i++)
        if (fs[i].state == F_WAIT_WARP) make_runnable(fs[i]);
}

void release_barrier_if_complete() {
    block_run *b = g_block;
    if (b->barrier_arrived == 0 || b->barrier_arrived < b->live) return;
    b->barrier_arrived = 0;
    for (int i = 0; i < b->n; i++)
        if ((*b->fibers)[i].state == F_WAIT_BARRIER) make_runnable((*b->fibers)[i]);
}

void thread_exit() {
    fiber &f = *g_cur;
    flush_copies(f, 1 << 30); /* outstanding copies land eventually */
    int linear = (int)(&f - g_block->fibers->data());
    warp_state &w = g_block->warps[linear / 32];
    if (w.arrived > 0) {
        snprintf(g_fault, sizeof g_fault,
                 "thread %d exited while %d lane(s) of its warp wait in a warp collective (kind %d)", linear,
                 w.arrived, w.kind);
        lyra_cuemu_set_error(cudaErrorLaunchFailure, g_fault);
        g_block->aborted = 1;
    }
    f.state = F_DONE;
    w.exited++;
    g_block->live--;
    release_barrier_if_complete(); /* exited threads count as arrived, as on sm_70+ */
    yield_to_scheduler(true);
    __builtin_unreachable();
}

void fiber_main() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_sched_stack_bottom, &g_sched_stack_size);
#endif
    g_block->body(g_block->ctx);
    thread_exit();
}

/* ---------------------------------------------------------------- warp collectives */

void fault_in_kernel(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fault_in_kernel(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fault, sizeof g_fault, fmt, ap);
    va_end(ap);
    lyra_cuemu_set_error(cudaErrorLaunchFailure, g_fault);
    if (g_cur) kernel_abort();
}

int lane_of_shfl(int kind, int lane, const lyra_cuemu_shfl_in &in) {
    int width = in.width, base = lane & ~(width - 1), src;
    switch (kind) {
    case LYRA_CUEMU_SHFL_IDX: src = base + (in.arg & (width - 1)); break;
    case LYRA_CUEMU_SHFL_XOR: src = lane ^ in.arg; break;
    case LYRA_CUEMU_SHFL_UP: src = lane - in.arg; if (src < base) src = lane; break;
    default: src = lane + in.arg; if (src >= base + width) src = lane; break;
    }
    if (src < base || src >= base + width) src = lane; /* out of the segment: the lane's own value */
    return src;
}

bool in_smem(const void *p, size_t bytes) {
    const unsigned char *c = (const unsigned char *)p;
    return g_block->smem && c >= g_block->smem && c + bytes <= g_block->smem + g_block->smem_size;
}

/* Executes a completed collective for every lane of warp w. */
void collective_run(warp_state &w) {
    int n = w.lanes;
    switch (w.kind) {
    case LYRA_CUEMU_SYNCWARP: break;
    case LYRA_CUEMU_SHFL_IDX: case LYRA_CUEMU_SHFL_XOR: case LYRA_CUEMU_SHFL_UP: case LYRA_CUEMU_SHFL_DOWN:
        for (int l = 0; l < n; l++) {
            lyra_cuemu_shfl_in in;
            memcpy(&in, w.in[l], sizeof in);
            if (in.width <= 0 || in.width > 32 || (in.width & (in.width - 1)))
                fault_in_kernel("shuffle width %d is not a power of two <= 32", in.width);
            int src = lane_of_shfl(w.kind, l, in);
            if (src >= n) fault_in_kernel("shuffle reads lane %d, which does not exist in this warp", src);
            memcpy(w.out[l], w.in[src], 8);
        }
        break;
    case LYRA_CUEMU_VOTE: {
        unsigned bits = 0;
        for (int l = 0; l < n; l++) {
            int p;
            memcpy(&p, w.in[l], sizeof p);
            if (p) bits |= 1u << l;
        }
        for (int l = 0; l < n; l++) memcpy(w.out[l], &bits, 4);
        break;
    }
    case LYRA_CUEMU_LDMATRIX: {
        if (n != 32) fault_in_kernel("ldmatrix in a partial warp");
        const unsigned char *row[32];
        int trans[32];
        for (int l = 0; l < 32; l++) {
            memcpy(&row[l], w.in[l], sizeof row[l]);
            memcpy(&trans[l], w.in[l] + sizeof row[l], sizeof trans[l]);
            if (trans[l] != trans[0]) fault_in_kernel("ldmatrix: lanes disagree on .trans");
            if ((uintptr_t)row[l] % 16) fault_in_kernel("ldmatrix: lane %d's row address %p is not 16-byte aligned", l, (const void *)row[l]);
            if (!in_smem(row[l], 16))
                fault_in_kernel("ldmatrix: lane %d's row %p..+16 lies outside the block's shared memory (%p, %zu bytes)",
                                l, (const void *)row[l], (void *)g_block->smem, g_block->smem_size);
        }
        for (int l = 0; l < 32; l++) {
            uint32_t r[4];
            int g = l >> 2, t = l & 3;
            for (int i = 0; i < 4; i++) {
                uint16_t lo, hi;
                if (!trans[0]) {
                    memcpy(&lo, row[8 * i + g] + 4 * t, 2);
                    memcpy(&hi, row[8 * i + g] + 4 * t + 2, 2);
                } else { /* element (g, 2t) of the transpose is row 2t, column g of the matrix */
                    memcpy(&lo, row[8 * i + 2 * t] + 2 * g, 2);
                    memcpy(&hi, row[8 * i + 2 * t + 1] + 2 * g, 2);
                }
                r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
            }
            memcpy(w.out[l], r, sizeof r);
        }
        break;
    }
    case LYRA_CUEMU_MMA_BF16: {
        if (n != 32) fault_in_kernel("mma.sync in a partial warp");
        float A[16][16], B[16][8], C[16][8];
        auto bf = [](uint32_t reg, int hi) {
            __nv_bfloat16 h;
            h.__x = (uint16_t)(hi ? reg >> 16 : reg & 0xffffu);
            return __bfloat162float(h);
        };
        for (int l = 0; l < 32; l++) {
            uint32_t a[4], b[2];
            float c[4];
            memcpy(a, w.in[l], 16);
            memcpy(b, w.in[l] + 16, 8);
            memcpy(c, w.in[l] + 24, 16);
            int g = l >> 2, t = l & 3;
            for (int e = 0; e < 2; e++) {
                A[g][2 * t + e] = bf(a[0], e);
                A[g + 8][2 * t + e] = bf(a[1], e);
                A[g][2 * t + 8 + e] = bf(a[2], e);
                A[g + 8][2 * t + 8 + e] = bf(a[3], e);
                B[2 * t + e][g] = bf(b[0], e);
                B[2 * t + 8 + e][g] = bf(b[1], e);
                C[g][2 * t + e] = c[e];
                C[g + 8][2 * t + e] = c[2 + e];
            }
        }
        for (int l = 0; l < 32; l++) {
            int g = l >> 2, t = l & 3;
            float d[4];
            for (int e = 0; e < 4; e++) {
                int m = g + (e >> 1) * 8, nn = 2 * t + (e & 1);
                float acc = C[m][nn];
                for (int k = 0; k < 16; k++) acc += A[m][k] * B[k][nn];
                d[e] = acc;
            }
            memcpy(w.out[l], d, sizeof d);
        }
        break;
    }
    default: fault_in_kernel("unknown warp collective %d", w.kind);
    }
}

} // namespace

void lyra_cuemu_warp_collective(int kind, unsigned mask, const void *in, size_t in_size, void *out, size_t out_size) {
    if (!g_cur) {
        fault_in_kernel("a warp collective outside a kernel");
        return;
    }
    fiber &f = *g_cur;
    int linear = (int)(&f - g_block->fibers->data()), wi = linear / 32, lane = linear % 32;
    warp_state &w = g_block->warps[wi];
    unsigned all = w.lanes == 32 ? 0xffffffffu : (1u << w.lanes) - 1;
    if (mask != all)
        fault_in_kernel("warp collective with mask %#x in a warp of lanes %#x: only whole-warp masks are emulated",
                        mask, all);
    if (w.exited)
        fault_in_kernel("warp %d: a collective (kind %d) after %d of its lanes exited: they never arrive", wi, kind,
                        w.exited);
    if (w.arrived == 0) {
        w.kind = kind;
        w.mask = mask;
    } else if (w.kind != kind) {
        fault_in_kernel("lanes of warp %d are in different warp collectives (%d and %d): divergent code", wi, w.kind,
                        kind);
    }
    if (in_size) memcpy(w.in[lane], in, in_size);
    if (++w.arrived == w.lanes) {
        collective_run(w);
        w.arrived = 0;
        wake_warp(wi);
    } else {
        f.state = F_WAIT_WARP;
        yield_to_scheduler(false);
    }
    if (out_size) memcpy(out, w.out[lane], out_size);
}

void __syncthreads(void) {
    if (!g_cur) {
        fault_in_kernel("__syncthreads outside a kernel");
        return;
    }
    block_run *b = g_block;
    b->barrier_arrived++;
    if (b->barrier_arrived == b->live) {
        release_barrier_if_complete();
        return;
    }
    g_cur->state = F_WAIT_BARRIER;
    yield_to_scheduler(false);
}

unsigned char *lyra_cuemu_dynamic_smem(size_t *size) {
    if (size) *size = g_block ? g_block->smem_size : 0;
    return g_block ? g_block->smem : nullptr;
}

void lyra_cuemu_fault(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fault, sizeof g_fault, fmt, ap);
    va_end(ap);
    lyra_cuemu_set_error(cudaErrorLaunchFailure, g_fault);
    if (g_cur) kernel_abort();
}

void lyra_cuemu_ldmatrix_x4(uint32_t r[4], const void *row, int trans) {
    unsigned char in[sizeof(void *) + sizeof(int)];
    memcpy(in, &row, sizeof row);
    memcpy(in + sizeof row, &trans, sizeof trans);
    lyra_cuemu_warp_collective(LYRA_CUEMU_LDMATRIX, 0xffffffffu, in, sizeof in, r, 16);
}

void lyra_cuemu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    unsigned char in[40];
    uint32_t b[2] = {b0, b1};
    memcpy(in, a, 16);
    memcpy(in + 16, b, 8);
    memcpy(in + 24, d, 16);
    lyra_cuemu_warp_collective(LYRA_CUEMU_MMA_BF16, 0xffffffffu, in, sizeof in, d, 16);
}

void lyra_cuemu_cp_async16(void *dst, const void *src, int src_bytes) {
    if (!g_cur) {
        fault_in_kernel("cp.async outside a kernel");
        return;
    }
    if (src_bytes < 0 || src_bytes > 16) fault_in_kernel("cp.async: src-size %d outside 0..16", src_bytes);
    if ((uintptr_t)dst % 16 || (src_bytes && (uintptr_t)src % 16))
        fault_in_kernel("cp.async.cg 16: misaligned dst %p or src %p", dst, src);
    if (!in_smem(dst, 16))
        fault_in_kernel("cp.async: dst %p..+16 lies outside the block's shared memory (%p, %zu bytes)", dst,
                        (void *)g_block->smem, g_block->smem_size);
    /* until the wait covering it, the destination holds neither old nor new data: NaN bytes, so a reader that
     * is not ordered after the wait (a missing __syncthreads or wait_group) sees them */
    memset(dst, 0xff, 16);
    g_cur->copies.push_back(async_copy{dst, src, src_bytes, g_cur->groups});
}

void lyra_cuemu_cp_async_commit(void) {
    if (g_cur) g_cur->groups++;
}

void lyra_cuemu_cp_async_wait(int newest_pending) {
    if (g_cur) flush_copies(*g_cur, g_cur->groups - newest_pending);
}

/* ---------------------------------------------------------------- the launch */

void lyra_cuemu_launch(const void *func, dim3 grid, dim3 block, size_t smem, cudaStream_t s, void (*body)(void *),
                     void *ctx) {
    (void)s;
    uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
    if (!nthreads || nthreads > MAX_THREADS || block.z > 64 || !grid.x || !grid.y || !grid.z || grid.y > 65535 ||
        grid.z > 65535) {
        char msg[160];
        snprintf(msg, sizeof msg, "launch configuration grid (%u, %u, %u) block (%u, %u, %u)", grid.x, grid.y,
                 grid.z, block.x, block.y, block.z);
        lyra_cuemu_set_error(cudaErrorInvalidConfiguration, msg);
        return;
    }
    if (smem > lyra_cuemu_func_smem_limit(func)) {
        char msg[160];
        snprintf(msg, sizeof msg, "launch asks for %zu bytes of dynamic shared memory, the kernel may use %zu", smem,
                 lyra_cuemu_func_smem_limit(func));
        lyra_cuemu_set_error(cudaErrorInvalidValue, msg);
        return;
    }
    std::lock_guard<std::mutex> lock(g_launch_lock);
    int n = (int)nthreads;
    if (!fibers_reserve(n)) {
        lyra_cuemu_set_error(cudaErrorMemoryAllocation, "cannot map the emulated threads' stacks");
        return;
    }
    block_run b;
    b.fibers = &g_fibers;
    b.n = n;
    b.warps.resize((size_t)(n + 31) / 32);
    for (int w = 0; w < (int)b.warps.size(); w++) {
        b.warps[w].lanes = n - 32 * w < 32 ? n - 32 * w : 32;
        b.warps[w].arrived = 0;
        b.warps[w].exited = 0;
    }
    b.smem_size = smem;
    b.smem = smem ? (unsigned char *)malloc(smem) : nullptr;
    if (smem && !b.smem) {
        lyra_cuemu_set_error(cudaErrorMemoryAllocation, "cannot allocate the emulated shared memory");
        return;
    }
    b.body = body;
    b.ctx = ctx;
    b.aborted = 0;
    g_block = &b;
    gridDim = grid;
    blockDim = block;
    for (int i = 0; i < n; i++)
        g_fibers[i].tid = uint3{(unsigned)i % block.x, (unsigned)(i / block.x) % block.y, (unsigned)(i / (block.x * block.y))};
    for (unsigned bz = 0; bz < grid.z && !b.aborted; bz++)
        for (unsigned by = 0; by < grid.y && !b.aborted; by++)
            for (unsigned bx = 0; bx < grid.x && !b.aborted; bx++) {
                blockIdx = uint3{bx, by, bz};
                b.live = n;
                b.barrier_arrived = 0;
                for (warp_state &w : b.warps) w.arrived = w.exited = 0;
                /* shared memory starts undefined on the GPU: fill with a NaN pattern so reads before writes show */
                if (b.smem) memset(b.smem, 0xff, smem);
                for (int i = 0; i < n; i++) fiber_reset(g_fibers[i]);
                b.next_runnable = 0;
                while (!b.aborted) {
                    int i = b.next_runnable;
                    while (i < n && g_fibers[i].state != F_RUNNABLE) i++;
                    b.next_runnable = i;
                    if (i < n) {
                        resume(g_fibers[i]); /* it comes back waiting or done, never runnable */
                        continue;
                    }
                    if (b.live == 0) break;
                    int at_bar = 0, at_warp = 0;
                    for (int j = 0; j < n; j++) {
                        at_bar += g_fibers[j].state == F_WAIT_BARRIER;
                        at_warp += g_fibers[j].state == F_WAIT_WARP;
                    }
                    snprintf(g_fault, sizeof g_fault,
                             "deadlock in block (%u, %u, %u): %d thread(s) at __syncthreads, %d in warp collectives, "
                             "%d exited (divergent barrier or collective)",
                             bx, by, bz, at_bar, at_warp, n - b.live);
                    lyra_cuemu_set_error(cudaErrorLaunchFailure, g_fault);
                    b.aborted = 1;
                }
            }
    g_block = nullptr;
    free(b.smem);
}
