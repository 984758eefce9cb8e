/* Random weights of the real shapes for the DiT (models/dit.h lyra_dit_load_random): every parameter filled by the
 * backend op fill_random where it will be used — in the host block for CPU runs, in the device block at placement
 * (models/dit_device.c) so that no host copy is written and nothing is uploaded. An fp8 block Linear is filled as
 * f32 into a temporary and quantized per output row by lyra_op_quantize_fp8_rows, the formulas dit_fp8.c applies
 * to a loaded checkpoint's weights, so the codes and scales equal those of the same values quantized on the host. */
#include "models/dit_internal.h"

/* t points into [host, host + bytes): the same offset of base, on be's device. */
static lyra_tensor moved(const lyra_tensor *t, const void *host, void *base, const lyra_backend *be) {
    lyra_tensor r = *t;
    r.data = (char *)base + ((const char *)t->data - (const char *)host);
    r.device = be->device;
    return r;
}

static int is_fp8_weight(const lyra_dit_param *p) { return p->linear && p->linear->fp8 && p->dst == &p->linear->w; }

lyra_status dit_random_fill(lyra_dit *m, lyra_backend *be, const void *host, void *base) {
    int64_t tmp_numel = 0; /* the largest fp8 matrix: its f32 values before quantizing */
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].dst->data && is_fp8_weight(&m->params[i])) {
            int64_t k = lyra_tensor_numel(m->params[i].dst);
            if (k > tmp_numel) tmp_numel = k;
        }
    void *tmp = NULL;
    if (tmp_numel && !(tmp = be->ops->alloc(be, sizeof(float) * (size_t)tmp_numel)))
        return lyra_error(LYRA_ERR_OOM, "dit random weights: cannot allocate %lld floats on the %s device for the fp8 "
                          "quantization", (long long)tmp_numel, be->ops->name);
    lyra_status st = LYRA_OK;
    for (int i = 0; i < m->n_params && st == LYRA_OK; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (!p->dst->data) continue;
        lyra_random_fill r;
        lyra_random_fill_rule(&r, m->random.seed, p->name, p->ndim, p->ne, m->random.bf16_values);
        lyra_tensor t = moved(p->dst, host, base, be);
        if (is_fp8_weight(p)) {
            lyra_tensor s = moved(&p->linear->w_scale, host, base, be);
            lyra_tensor x = lyra_tensor_make(tmp, LYRA_DTYPE_F32, 2, p->ne);
            x.device = be->device;
            x.name = p->name;
            st = lyra_op_fill_random(be, &x, &r);
            if (st == LYRA_OK) st = lyra_op_quantize_fp8_rows(be, &t, &s, &x);
        } else {
            st = lyra_op_fill_random(be, &t, &r);
        }
    }
    if (tmp) {
        lyra_op_synchronize(be); /* the last quantization may still read tmp */
        be->ops->release(be, tmp);
    }
    return st;
}

lyra_status lyra_dit_random_materialize(lyra_dit *m) {
    if (!m->random.pending) return LYRA_OK;
    if (m->be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_INTERNAL, "dit random weights: pending on the %s device", m->be.ops->name);
    LYRA_TRY(dit_random_fill(m, &m->be, m->weight_mem, m->weight_mem));
    m->random.pending = 0;
    return LYRA_OK;
}
