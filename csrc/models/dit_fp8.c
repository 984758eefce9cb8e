/* FP8 (e4m3) attention blocks, CPU reference: the numerics of an FP8 tensor-core GEMM with a per-output-channel
 * weight scale and a per-token activation scale, y = (s_x · e4m3(x / s_x)) · (s_w · e4m3(W / s_w))ᵀ + b with
 * s = max|row| / 448, accumulated in f32.
 *
 * The reference keeps the dequantized weights s_w · e4m3(W / s_w) in W's own dtype (so every backend's Linear
 * runs them unchanged) and rounds the activations token by token before each block Linear. On a GPU the e4m3
 * bytes and the f32 scales are what is stored (1 byte per weight: the plan of lyra2.memory_plan(dit_dtype="fp8")),
 * and the products are the same up to the accumulation order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp8.h"
#include "models/dit_internal.h"

int dit_block_linears(lyra_dit_block *b, lyra_dit_linear **out) {
    lyra_dit_linear *lin[] = {&b->sa_q, &b->sa_k, &b->sa_v, &b->sa_o, &b->ca_q, &b->ca_k, &b->ca_v, &b->ca_o,
                              &b->ca_k_img, &b->ca_v_img, &b->ffn0, &b->ffn2, &b->cam, &b->buf0, &b->buf1};
    int n = (int)(sizeof lin / sizeof *lin);
    memcpy(out, lin, sizeof lin);
    return n;
}

/* Row r of a contiguous (rows, cols) matrix: scale = max|w| / 448, w := scale · e4m3(w / scale). */
static void quantize_rows(lyra_tensor *w) {
    int64_t rows = w->ne[0], cols = w->ne[1];
    size_t es = lyra_dtype_size(w->dtype);
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    if (!tmp) return;
    for (int64_t r = 0; r < rows; r++) {
        char *row = (char *)w->data + (size_t)(r * cols) * es;
        lyra_convert_to_f32(tmp, row, w->dtype, cols);
        float m = 0.0f;
        for (int64_t c = 0; c < cols; c++) m = fmaxf(m, fabsf(tmp[c]));
        float s = m > 0.0f ? m / LYRA_E4M3_MAX : 1.0f;
        for (int64_t c = 0; c < cols; c++) tmp[c] = lyra_e4m3_round(tmp[c] / s) * s;
        lyra_convert_from_f32(row, w->dtype, tmp, cols);
    }
    free(tmp);
}

lyra_status lyra_dit_quantize_fp8(lyra_dit *m) {
    if (m->fp8) return LYRA_OK;
    if (m->be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "dit: fp8 blocks are quantized in host memory, before the weights "
                          "move to the device");
    if (m->n_adapters)
        return lyra_error(LYRA_ERR_ARG, "dit: merge the %d LoRA adapter(s) before quantizing to fp8 (the DMD LoRA "
                          "is fixed: merge_lora() folds it into the weights once)", m->n_adapters);
    for (int i = 0; i < m->cfg.num_layers; i++) {
        lyra_dit_linear *lin[16];
        int n = dit_block_linears(&m->w.blocks[i], lin);
        for (int k = 0; k < n; k++) {
            quantize_rows(&lin[k]->w);
            lin[k]->fp8 = 1;
        }
    }
    m->fp8 = 1;
    return LYRA_OK;
}
