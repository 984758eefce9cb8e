/* DiT block streaming: the weights of blocks [resident, num_layers) are not used in place but uploaded, one
 * block at a time, into two block-sized device buffers that alternate, so the device holds the resident blocks
 * plus two buffers (lyra2/memory.py plans with exactly these bytes).
 *
 * The loader carves the parameters in table order (dit_weights.c), so one block's tensors are one contiguous
 * byte span of the weight allocation, of the same size for every block: a block streams with ONE upload of its
 * span, and its descriptors are rebased into the buffer. Adapter (LoRA) tensors live outside the span and are
 * used where they are. The two buffers are the double buffer of the CUDA copy stream (block i+1 uploads into the
 * other buffer while block i runs); through the backend table the uploads are issued in order, block by block. */
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
    }
    for (size_t i = 0; i < sizeof vec / sizeof *vec; i++) t[n++] = vec[i];
    return n;
}
#define BLOCK_TENSORS_MAX 40

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
    for (int k = 0; k < 2; k++)
        if (m->stream.slot[k]) m->be.ops->release(&m->be, m->stream.slot[k]);
    memset(&m->stream, 0, sizeof m->stream);
    m->stream.resident = m->cfg.num_layers;
}

lyra_status lyra_dit_set_streaming(lyra_dit *m, int resident) {
    int layers = m->cfg.num_layers;
    if (resident < 0 || resident > layers)
        return lyra_error(LYRA_ERR_ARG, "dit: resident blocks %d is outside 0..%d", resident, layers);
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

lyra_status dit_stream_block(dit_run *r, int i, const lyra_dit_block **blk) {
    lyra_dit *m = r->m;
    lyra_dit_stream *s = &m->stream;
    if (!s->slot[0] || i < s->resident) {
        *blk = &m->w.blocks[i];
        return LYRA_OK;
    }
    int k = (i - s->resident) & 1;
    char *lo, *hi;
    block_span(&m->w.blocks[i], &lo, &hi);
    lyra_tensor host = lyra_tensor_1d(lo, LYRA_DTYPE_U8, (int64_t)s->span);
    lyra_tensor dev = lyra_tensor_1d(s->slot[k], LYRA_DTYPE_U8, (int64_t)s->span);
    dev.device = r->be->device;
    LYRA_TRY(lyra_op_upload(r->be, &dev, &host));
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
    *blk = &s->view[k];
    return LYRA_OK;
}
