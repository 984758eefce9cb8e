/* DiT block streaming: the weights of blocks [resident, num_layers) are not used in place but uploaded, one
 * block at a time, into two block-sized device buffers that alternate, so the device holds the resident blocks
 * plus two buffers (lyra2/memory.py plans with exactly these bytes).
 *
 * The loader carves the parameters in table order (dit_weights.c), so one block's tensors are one contiguous
 * byte span of the weight allocation, of the same size for every block: a block streams with ONE upload of its
 * span, and its descriptors are rebased into the buffer. Adapter (LoRA) tensors live outside the span and are
 * used where they are. The two buffers are a double buffer: when block i is about to run, block i+1 starts uploading
 * into the other buffer on the backend's copy stream (lyra_op_upload_async, from page-locked host memory), after
 * block i−1, which used that buffer, has finished; block i+1 then waits for its copy only. Backends without a copy
 * stream (CPU, emulated device) upload in order, block by block, with the same results. */
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

/* Every tensor of a block that comes from the checkpoint (not the adapters'), for the span and the rebase. */
static int block_tensors(lyra_dit_block *b, lyra_tensor **t) {
    lyra_dit_linear *lin[16];
    int n_lin = dit_block_linears(b, lin), n = 0;
    lyra_tensor *vec[] = {&b->modulation, &b->sa_norm_q, &b->sa_norm_k, &b->norm3_w, &b->norm3_b, &b->ca_norm_q,
                          &b->ca_norm_k, &b->ca_norm_k_img};
    for (int i = 0; i < n_lin; i++) {
        t[n++] = &lin[i]->w;
        t[n++] = &lin[i]->b;
        t[n++] = &lin[i]->w_scale; /* fp8 blocks only (dit_fp8.c); data NULL otherwise */
    }
    for (size_t i = 0; i < sizeof vec / sizeof *vec; i++) t[n++] = vec[i];
    return n;
}
#define BLOCK_TENSORS_MAX 64

/* [lo, hi) of block b's checkpoint tensors. */
static void block_span(lyra_dit_block *b, char **lo, char **hi) {
    lyra_tensor *t[BLOCK_TENSORS_MAX];
    int n = block_tensors(b, t);
    *lo = NULL;
    *hi = NULL;
    for (int i = 0; i < n; i++) {
        if (!t[i]->data) continue; /* a Linear without bias */
        char *p = t[i]->data, *e = p + lyra_tensor_nbytes(t[i]);
        if (!*lo || p < *lo) *lo = p;
        if (!*hi || e > *hi) *hi = e;
    }
}

void dit_stream_release(lyra_dit *m) {
    if (m->stream.slot[0] || m->stream.host) lyra_op_synchronize(&m->be); /* no copy may still write a buffer */
    for (int k = 0; k < 2; k++)
        if (m->stream.slot[k]) m->be.ops->release(&m->be, m->stream.slot[k]);
    lyra_backend_host_release(&m->be, m->stream.host);
    memset(&m->stream, 0, sizeof m->stream);
    m->stream.resident = m->cfg.num_layers;
    m->stream.prefetched = -1;
}

lyra_status lyra_dit_set_streaming(lyra_dit *m, int resident) {
    int layers = m->cfg.num_layers;
    if (resident < 0 || resident > layers)
        return lyra_error(LYRA_ERR_ARG, "dit: resident blocks %d is outside 0..%d", resident, layers);
    if (m->be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: streaming is set before the model is placed on the %s device "
                          "(placement keeps the streamed blocks in host memory)", m->be.ops->name);
    dit_stream_release(m);
    if (resident == layers) return LYRA_OK;
    size_t span = 0;
    for (int i = 0; i < layers; i++) {
        char *lo, *hi;
        block_span(&m->w.blocks[i], &lo, &hi);
        size_t s = (size_t)(hi - lo);
        if (i && s != span)
            return lyra_error(LYRA_ERR_INTERNAL, "dit: block %d spans %zu bytes, block 0 %zu: the weights are not "
                              "carved block by block", i, s, span);
        span = s;
    }
    for (int k = 0; k < 2; k++) {
        m->stream.slot[k] = m->be.ops->alloc(&m->be, span);
        if (!m->stream.slot[k]) {
            dit_stream_release(m);
            return lyra_error(LYRA_ERR_OOM, "dit: cannot allocate the two %zu-byte block buffers for streaming", span);
        }
    }
    m->stream.resident = resident;
    m->stream.span = span;
    return LYRA_OK;
}

/* Starts the upload of streamed block i into its buffer (ticket = buffer) and points s->view[buffer] at it. */
static lyra_status start_upload(dit_run *r, int i) {
    lyra_dit *m = r->m;
    lyra_dit_stream *s = &m->stream;
    int k = (i - s->resident) & 1;
    char *lo, *hi;
    block_span(&m->w.blocks[i], &lo, &hi);
    lyra_tensor host = lyra_tensor_1d(lo, LYRA_DTYPE_U8, (int64_t)s->span);
    lyra_tensor dev = lyra_tensor_1d(s->slot[k], LYRA_DTYPE_U8, (int64_t)s->span);
    dev.device = r->be->device;
    host.name = dev.name = "streamed DiT block";
    LYRA_TRY(lyra_op_upload_async(r->be, &dev, &host, k));
    s->uploads++;
    s->upload_bytes += s->span;
    s->view[k] = m->w.blocks[i];
    lyra_tensor *t[BLOCK_TENSORS_MAX];
    int n = block_tensors(&s->view[k], t);
    for (int j = 0; j < n; j++) {
        if (!t[j]->data) continue;
        t[j]->data = (char *)s->slot[k] + ((char *)t[j]->data - lo);
        t[j]->device = r->be->device;
    }
    return LYRA_OK;
}

lyra_status dit_stream_block(dit_run *r, int i, const lyra_dit_block **blk) {
    lyra_dit *m = r->m;
    lyra_dit_stream *s = &m->stream;
    if (!s->slot[0] || i < s->resident) {
        *blk = &m->w.blocks[i];
        return LYRA_OK;
    }
    int k = (i - s->resident) & 1;
    if (i == s->resident) s->prefetched = -1; /* a new forward (the last one may have stopped half way) */
    lyra_status st = s->prefetched == i ? LYRA_OK : start_upload(r, i);
    s->prefetched = -1;
    if (st == LYRA_OK) st = lyra_op_upload_wait(r->be, k);
    /* block i+1 into the other buffer, after block i-1 (queued before this point) is done with it */
    if (st == LYRA_OK && i + 1 < m->cfg.num_layers) {
        st = start_upload(r, i + 1);
        if (st == LYRA_OK) s->prefetched = i + 1;
    }
    *blk = &s->view[k];
    return st;
}

/* Offset of p in the device block of dit_stream_place: the streamed range [lo, hi) is cut out. */
static size_t placed_offset(const char *p, const char *base, const char *lo, const char *hi) {
    return p < lo ? (size_t)(p - base) : (size_t)(p - base) - (size_t)(hi - lo);
}

/* Where dit_stream_place puts a host-block tensor: the streamed range into the pinned host copy, the rest into
 * the device block. */
typedef struct placement {
    lyra_backend *cpu, *dev;
    char *base, *lo, *hi, *host;
    void *w;
} placement;

static lyra_backend *placed_at(void *ctx, lyra_tensor *t) {
    placement *pl = ctx;
    char *p = t->data;
    if (p >= pl->lo && p < pl->hi) {
        t->data = pl->host + (p - pl->lo);
        return pl->cpu;
    }
    t->data = (char *)pl->w + placed_offset(p, pl->base, pl->lo, pl->hi);
    t->device = pl->dev->device;
    return pl->dev;
}

lyra_status dit_stream_place(lyra_dit *m, lyra_backend *dev, void **w_out) {
    lyra_dit_stream *s = &m->stream;
    int layers = m->cfg.num_layers;
    char *base = m->weight_mem, *lo, *hi, *x, *y;
    block_span(&m->w.blocks[s->resident], &lo, &x);
    block_span(&m->w.blocks[layers - 1], &y, &hi);
    size_t cut = (size_t)(hi - lo), total = m->weight_bytes - cut;
    /* the streamed blocks stay in host memory (the source of every upload); the device gets the rest */
    char *host = lyra_backend_host_alloc(dev, cut, "dit: the streamed blocks");
    void *w = dev->ops->alloc(dev, total ? total : 1);
    void *slot[2] = {dev->ops->alloc(dev, s->span), dev->ops->alloc(dev, s->span)};
    lyra_status st = LYRA_OK;
    if (!host || !w || !slot[0] || !slot[1])
        st = lyra_error(LYRA_ERR_OOM, "dit: cannot place the weights with %d of %d blocks streamed (%zu bytes on "
                        "the %s device + two %zu-byte block buffers, %zu bytes of host memory)", layers - s->resident,
                        layers, total, dev->ops->name, s->span, cut);
    size_t head = (size_t)(lo - base), tail = m->weight_bytes - (size_t)(hi - base);
    lyra_tensor h1 = lyra_tensor_1d(base, LYRA_DTYPE_U8, (int64_t)head), d1 = h1;
    lyra_tensor h2 = lyra_tensor_1d(hi, LYRA_DTYPE_U8, (int64_t)tail), d2 = h2;
    /* random weights (lyra_dit_load_random, deferred): the resident part filled on the device, the streamed blocks
     * in their pinned host copy; the host block stays unwritten and nothing is uploaded */
    const int fill = m->random.pending;
    if (st == LYRA_OK && fill) {
        placement pl = {&m->be, dev, base, lo, hi, host, w};
        st = dit_random_fill_at(m, placed_at, &pl);
    }
    if (st == LYRA_OK && !fill) {
        d1.data = w;
        d2.data = (char *)w + head;
        d1.device = d2.device = dev->device;
        if (head) st = lyra_op_upload(dev, &d1, &h1);
        if (st == LYRA_OK && tail) st = lyra_op_upload(dev, &d2, &h2);
    }
    if (st != LYRA_OK) {
        lyra_backend_host_release(dev, host);
        if (w) dev->ops->release(dev, w);
        for (int k = 0; k < 2; k++)
            if (slot[k]) dev->ops->release(dev, slot[k]);
        return st;
    }
    if (!fill) memcpy(host, lo, cut);
    for (int i = 0; i < 2 * m->n_params; i++) {
        /* every parameter, then the scales of the fp8 weights among them (they follow their codes) */
        lyra_dit_param *pa = &m->params[i % m->n_params];
        lyra_tensor *t = pa->dst;
        if (i >= m->n_params) {
            if (!pa->linear || !pa->linear->fp8 || pa->dst != &pa->linear->w) continue;
            t = &pa->linear->w_scale;
        }
        char *p = t->data;
        if (!p || p < base || p >= base + m->weight_bytes) continue;
        if (p >= lo && p < hi) {
            t->data = host + (p - lo); /* host memory: dit_stream_block uploads it */
        } else {
            t->data = (char *)w + placed_offset(p, base, lo, hi);
            t->device = dev->device;
        }
    }
    /* the CPU slots go with the CPU backend; the device ones replace them */
    for (int k = 0; k < 2; k++) {
        m->be.ops->release(&m->be, s->slot[k]);
        s->slot[k] = slot[k];
    }
    s->host = host;
    *w_out = w;
    return LYRA_OK;
}
