/* FP8 (e4m3) attention blocks: the numerics of an FP8 tensor-core GEMM with a per-output-channel weight scale and
 * a per-token activation scale, y = (Σ_k e4m3(x/s_x)·e4m3(W/s_w)) · s_x·s_w + b with s = max|row| / 448, summed in
 * f32 (nn/ops.h lyra_op_linear_fp8).
 *
 * Quantizing re-carves the weight allocation: each block Linear's matrix becomes its e4m3 codes (1 byte per
 * weight) followed by its f32 row scales, everything else is copied as it is. The parameters keep their table
 * order, so one block is still one contiguous span of the same size for every block (block streaming, dit_stream.c)
 * and placement uploads the codes as they are: 1 byte per block weight on the device, as
 * lyra2.memory_plan(dit_dtype="fp8") plans. The activations are quantized per token by a backend op
 * (lyra_op_quantize_fp8_rows, dit_run.c), so the CPU reference, the emulated device and the GPU run the same
 * arithmetic; only the GEMM's summation order differs. */
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

int dit_block_linears(lyra_dit_block *b, lyra_dit_linear **out) {
    lyra_dit_linear *lin[] = {&b->sa_q, &b->sa_k, &b->sa_v, &b->sa_o, &b->ca_q, &b->ca_k, &b->ca_v, &b->ca_o,
                              &b->ca_k_img, &b->ca_v_img, &b->ffn0, &b->ffn2, &b->cam, &b->buf0, &b->buf1};
    int n = (int)(sizeof lin / sizeof *lin);
    memcpy(out, lin, sizeof lin);
    return n;
}

/* codes (rows, cols) and scale (rows) of a contiguous float matrix w, by the op the activations use
 * (lyra_op_quantize_fp8_rows: per row s = max|w| / 448, 1 for a zero row, codes = e4m3(w / s)) on the DiT's CPU
 * backend, so its threads share the work: a real-size checkpoint has 16 G block weights to quantize. */
static lyra_status quantize_rows(lyra_backend *be, uint8_t *codes, float *scale, const lyra_tensor *w) {
    lyra_tensor q = lyra_tensor_make(codes, LYRA_DTYPE_U8, 2, w->ne), s = lyra_tensor_1d(scale, LYRA_DTYPE_F32, w->ne[0]);
    q.name = s.name = w->name;
    return lyra_op_quantize_fp8_rows(be, &q, &s, w);
}

/* The fp8 Linear of parameter p (its ".weight" entry), or NULL. */
static lyra_dit_linear *fp8_weight(const lyra_dit_param *p) {
    return p->linear && p->linear->fp8 && p->dst == &p->linear->w ? p->linear : NULL;
}

/* Carves every parameter of m into cv in table order (fp8 weights as u8 codes + f32 scales) into the
 * descriptors nt[i] / ns[i]. */
static lyra_status carve_all(lyra_dit *m, lyra_carver *cv, lyra_tensor *nt, lyra_tensor *ns) {
    for (int i = 0; i < m->n_params; i++) {
        const lyra_dit_param *p = &m->params[i];
        const lyra_tensor *t = p->dst;
        if (!t->data) continue; /* a Linear without bias has no entry in the table; kept for safety */
        if (fp8_weight(p)) {
            LYRA_TRY(lyra_carve(cv, &nt[i], p->name, LYRA_DTYPE_U8, 2, t->ne));
            LYRA_TRY(lyra_carve(cv, &ns[i], p->name, LYRA_DTYPE_F32, 1, t->ne));
        } else {
            LYRA_TRY(lyra_carve(cv, &nt[i], p->name, t->dtype, t->ndim, t->ne));
        }
    }
    return LYRA_OK;
}

lyra_status lyra_dit_quantize_fp8(lyra_dit *m) {
    if (m->fp8) return LYRA_OK;
    if (m->be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: fp8 blocks are quantized in host memory, before the weights "
                          "move to the device");
    if (m->n_adapters && !(m->lora_fold && m->random.pending)) /* else: filled, folded, quantized at placement */
        return lyra_error(LYRA_ERR_ARG, "dit: merge the %d LoRA adapter(s) before quantizing to fp8 (the DMD LoRA "
                          "is fixed: merge_lora() folds it into the weights once)", m->n_adapters);
    if (m->stream.slot[0]) /* its buffers are sized to the block span, which quantizing changes */
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: set the streaming (resident blocks) after quantize_fp8(), not "
                          "before");
    lyra_tensor *nt = calloc((size_t)m->n_params, sizeof *nt), *ns = calloc((size_t)m->n_params, sizeof *ns);
    void *mem = NULL;
    lyra_status st = nt && ns ? LYRA_OK : lyra_error(LYRA_ERR_OOM, "dit fp8: out of memory");
    for (int i = 0; i < m->cfg.num_layers; i++) {
        lyra_dit_linear *lin[16];
        int n = dit_block_linears(&m->w.blocks[i], lin);
        for (int k = 0; k < n; k++) lin[k]->fp8 = 1;
    }
    lyra_carver cv;
    size_t bytes = 0;
    if (st == LYRA_OK) {
        lyra_carver_init(&cv, NULL, 0, LYRA_DEVICE_CPU);
        st = carve_all(m, &cv, nt, ns);
        bytes = cv.used;
    }
    if (st == LYRA_OK) {
        mem = aligned_alloc(LYRA_CARVE_ALIGN, (bytes + LYRA_CARVE_ALIGN - 1) / LYRA_CARVE_ALIGN * LYRA_CARVE_ALIGN);
        if (!mem) st = lyra_error(LYRA_ERR_OOM, "dit fp8: cannot allocate %zu bytes of weights", bytes);
    }
    if (st == LYRA_OK) {
        lyra_carver_init(&cv, mem, bytes, LYRA_DEVICE_CPU);
        st = carve_all(m, &cv, nt, ns);
    }
    /* deferred random weights (models/dit.h): nothing to convert, placement fills the codes and scales */
    for (int i = 0; i < m->n_params && st == LYRA_OK && !m->random.pending; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (!p->dst->data) continue;
        if (fp8_weight(p))
            st = quantize_rows(&m->be, nt[i].data, ns[i].data, p->dst);
        else
            memcpy(nt[i].data, p->dst->data, lyra_tensor_nbytes(p->dst));
    }
    if (st != LYRA_OK) { /* nothing re-pointed: the model is unchanged */
        for (int i = 0; i < m->cfg.num_layers; i++) {
            lyra_dit_linear *lin[16];
            int n = dit_block_linears(&m->w.blocks[i], lin);
            for (int k = 0; k < n; k++) lin[k]->fp8 = 0;
        }
        free(mem);
        free(nt);
        free(ns);
        return st;
    }
    for (int i = 0; i < m->n_params; i++) {
        lyra_dit_param *p = &m->params[i];
        if (!p->dst->data) continue;
        lyra_dit_linear *lin = fp8_weight(p);
        *p->dst = nt[i];
        if (lin) lin->w_scale = ns[i];
    }
    free(nt);
    free(ns);
    free(m->weight_mem);
    m->weight_mem = mem;
    m->weight_bytes = bytes;
    m->fp8 = 1;
    return LYRA_OK;
}
