/* CPU reference of the samplers' latent updates (op latent_update): every element through nn/latent_math.h's
 * lyra_latent_elem, the formula the host sampler and the CUDA kernel share. Element order does not matter (each
 * output element depends only on the inputs' same element), so the threads split the flat index freely. */
#include "nn/cpu/cpu_internal.h"
#include "nn/latent_math.h"

/* Byte offset of the flat index idx (outermost-first over t's own shape) in t. */
static int64_t offset_of(const lyra_tensor *t, int64_t idx) {
    int64_t off = 0;
    for (int i = t->ndim - 1; i >= 0; i--) {
        off += (idx % t->ne[i]) * t->nb[i];
        idx /= t->ne[i];
    }
    return off;
}

lyra_status cpu_latent_update(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *x, int n,
                              const lyra_latent_update *p) {
    const int64_t total = lyra_tensor_numel(y);
    int contiguous = lyra_tensor_is_contiguous(y);
    for (int i = 0; i < n; i++) contiguous = contiguous && lyra_tensor_is_contiguous(x[i]);
    const lyra_latent_update q = *p;
#pragma omp parallel for num_threads(cpu_threads(be, total)) schedule(static)
    for (int64_t k = 0; k < total; k++) {
        float in[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = 0; i < n; i++)
            in[i] = contiguous ? ((const float *)x[i]->data)[k]
                               : *(const float *)((const char *)x[i]->data + offset_of(x[i], k));
        const float v = lyra_latent_elem(&q, in[0], in[1], in[2], in[3]);
        if (contiguous) ((float *)y->data)[k] = v;
        else *(float *)((char *)y->data + offset_of(y, k)) = v;
    }
    return LYRA_OK;
}
