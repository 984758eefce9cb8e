/* Placement of the DiT on a device backend (lyra_dit_place, models/dit.h): the weights and LoRA adapters are
 * uploaded once, each as one block, and every descriptor pointing into the host copy is re-pointed; or the adapters
 * are folded into the placed weights (models/dit_lora_fold.c) and never uploaded. */
#include <stdio.h>
#include <stdlib.h>

#include "models/dit_internal.h"

/* One device block holding a copy of host[0..bytes); host NULL: left unwritten (random weights, filled there). */
static lyra_status upload_block(lyra_backend *be, const void *host, size_t bytes, const char *name, void **dev) {
    *dev = be->ops->alloc(be, bytes ? bytes : 1);
    if (!*dev) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        return lyra_error(LYRA_ERR_OOM, "dit: cannot place %s (%zu bytes, %.2f GiB) on the %s device (%s)", name,
                          bytes, (double)bytes / (1 << 30), be->ops->name, why);
    }
    lyra_tensor h = lyra_tensor_1d((void *)host, LYRA_DTYPE_U8, (int64_t)bytes), d = h;
    h.name = d.name = name;
    d.data = *dev;
    d.device = be->device;
    lyra_status st = bytes && host ? lyra_op_upload(be, &d, &h) : LYRA_OK;
    if (st != LYRA_OK) {
        be->ops->release(be, *dev);
        *dev = NULL;
    }
    return st;
}

/* t points into [from, from + bytes): make it point at the same offset of `to` on `device`. */
static void rebase(lyra_tensor *t, const void *from, size_t bytes, void *to, lyra_device device) {
    const char *p = t->data, *f = from;
    if (!p || p < f || p >= f + bytes) return;
    t->data = (char *)to + (p - f);
    t->device = device;
}

static void rebase_adapter(lyra_dit *m, int a, const void *from, size_t bytes, void *to, lyra_device device) {
    for (int i = 0; i < m->n_params; i++) {
        lyra_dit_linear *lin = m->params[i].linear;
        if (!lin || m->params[i].dst != &lin->w) continue;
        lyra_dit_lora_term *t = &lin->lora[a];
        rebase(&t->a, from, bytes, to, device);
        rebase(&t->b, from, bytes, to, device);
        rebase(&t->bias, from, bytes, to, device);
    }
}

lyra_status dit_adapter_place(lyra_dit *m, int a) {
    if (m->be.device == LYRA_DEVICE_CPU) return LYRA_OK;
    lyra_dit_adapter *ad = &m->adapters[a];
    char name[128];
    snprintf(name, sizeof name, "LoRA '%s'", ad->name);
    void *dev;
    lyra_status st = upload_block(&m->be, ad->mem, ad->bytes, name, &dev);
    if (st != LYRA_OK) {
        /* drop the adapter: its terms point into host memory the device ops would refuse */
        for (int i = 0; i < m->n_params; i++)
            if (m->params[i].linear) memset(&m->params[i].linear->lora[a], 0, sizeof(lyra_dit_lora_term));
        free(ad->mem);
        memset(ad, 0, sizeof *ad);
        if (a == m->n_adapters - 1) m->n_adapters--;
        return st;
    }
    rebase_adapter(m, a, ad->mem, ad->bytes, dev, m->be.device);
    free(ad->mem);
    ad->mem = dev;
    return LYRA_OK;
}

void dit_adapter_free(lyra_dit *m, int a) {
    lyra_dit_adapter *ad = &m->adapters[a];
    if (m->be.ops && m->be.device != LYRA_DEVICE_CPU) m->be.ops->release(&m->be, ad->mem);
    else free(ad->mem);
    ad->mem = NULL;
}

lyra_status lyra_dit_place(lyra_dit *m, lyra_device device) {
    if (device == m->be.device) return LYRA_OK;
    if (device == LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: the model is on the %s device and its host copy was freed; "
                          "load it again for the CPU", m->be.ops->name);
    lyra_backend dev;
    LYRA_TRY(lyra_backend_init(&dev, device, 0));
    void *w = NULL;
    int streaming = m->stream.slot[0] != NULL;
    /* random weights (lyra_dit_load_random, deferred): the block is filled on the device, nothing is uploaded
     * (streaming: dit_stream_place fills the resident part there and the streamed blocks in host memory) */
    const int fill = m->random.pending && !streaming;
    lyra_status st = streaming ? LYRA_OK : upload_block(&dev, fill ? NULL : m->weight_mem, m->weight_bytes,
                                                        "the weights", &w);
    if (st == LYRA_OK && fill) st = dit_random_fill(m, &dev, m->weight_mem, w);
    void *ad_dev[LYRA_DIT_MAX_ADAPTERS] = {0};
    /* adapters folded at placement (lyra_dit_lora_fold_at_placement) stay on the host and are freed after the fold */
    for (int a = 0; a < m->n_adapters && st == LYRA_OK && !m->lora_fold; a++) {
        char name[128];
        snprintf(name, sizeof name, "LoRA '%s'", m->adapters[a].name);
        st = upload_block(&dev, m->adapters[a].mem, m->adapters[a].bytes, name, &ad_dev[a]);
    }
    /* streaming: the streamed blocks stay in host memory (dit_stream.c); last, as it re-points on success */
    if (st == LYRA_OK && streaming) st = dit_stream_place(m, &dev, &w);
    if (st != LYRA_OK) { /* nothing re-pointed yet: the model stays whole on the CPU */
        for (int a = 0; a < m->n_adapters; a++) dev.ops->release(&dev, ad_dev[a]);
        if (w) dev.ops->release(&dev, w);
        lyra_backend_free(&dev);
        return st;
    }
    if (!streaming)
        for (int i = 0; i < m->n_params; i++) {
            lyra_dit_linear *lin = m->params[i].linear;
            rebase(m->params[i].dst, m->weight_mem, m->weight_bytes, w, device);
            if (lin && lin->fp8 && m->params[i].dst == &lin->w) /* its scales follow the codes (dit_fp8.c) */
                rebase(&lin->w_scale, m->weight_mem, m->weight_bytes, w, device);
        }
    free(m->weight_mem);
    m->weight_mem = w;
    const int filled = m->random.pending;
    m->random.pending = 0;
    if (m->lora_fold) {
        /* each weight where it now lies, one Linear at a time (the device's transient: one f32 delta); a failure
         * here leaves the model half folded: unusable, the caller frees it */
        lyra_backend cpu = m->be;
        m->be = dev;
        st = dit_lora_fold_placed(m, &cpu, &dev, filled);
        lyra_backend_arena_free(&cpu, &m->arena);
        lyra_backend_free(&cpu);
        return st;
    }
    for (int a = 0; a < m->n_adapters; a++) {
        rebase_adapter(m, a, m->adapters[a].mem, m->adapters[a].bytes, ad_dev[a], device);
        free(m->adapters[a].mem);
        m->adapters[a].mem = ad_dev[a];
    }
    lyra_backend_arena_free(&m->be, &m->arena); /* host arena: the next forward reserves device memory */
    lyra_backend_free(&m->be);
    m->be = dev;
    return LYRA_OK;
}

lyra_status lyra_dit_set_precision(lyra_dit *m, lyra_dtype act) {
    if (act != LYRA_DTYPE_F32 && act != LYRA_DTYPE_BF16)
        return lyra_error(LYRA_ERR_ARG, "dit: precision %s is not allowed; expected f32 or bf16", lyra_dtype_name(act));
    if (act != LYRA_DTYPE_F32 && m->be.device == LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: %s activations need a device (the CPU backend computes f32); "
                          "place the model on 'cuda' first", lyra_dtype_name(act));
    m->act_dtype = act;
    return LYRA_OK;
}
