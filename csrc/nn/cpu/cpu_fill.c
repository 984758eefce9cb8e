/* CPU reference of the random weights (nn/ops.h lyra_op_fill_random; the arithmetic in nn/random_fill_math.h). */
#include "nn/random_fill_math.h"
#include "nn/cpu/cpu_internal.h"

lyra_status cpu_fill_random(lyra_backend *be, lyra_tensor *y, const lyra_random_fill *r) {
    const int64_t n = lyra_tensor_numel(y);
    const uint64_t key = r->key;
    const float scale = r->scale, mean = r->mean;
    const int b16 = r->bf16_values;
    char *out = y->data;
    const lyra_dtype dt = y->dtype;
#pragma omp parallel for num_threads(cpu_threads(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float v = lyra_rfill_value(key, (uint64_t)i, scale, mean, b16);
        if (dt == LYRA_DTYPE_F32) ((float *)out)[i] = v;
        else if (dt == LYRA_DTYPE_BF16) ((uint16_t *)out)[i] = lyra_f32_to_bf16(v);
        else ((uint16_t *)out)[i] = lyra_f32_to_f16(v);
    }
    return LYRA_OK;
}
