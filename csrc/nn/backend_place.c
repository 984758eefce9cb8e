/* Moving a network's carved host weight block to its device backend (nn/backend.h lyra_backend_place_weights):
 * the networks' one upload point for their weights. */
#include <stdio.h>
#include <stdlib.h>

#include "nn/ops.h"

lyra_status lyra_backend_place_weights(lyra_backend *be, void **mem, size_t bytes, lyra_tensor *const *tensors, int n,
                                       const char *what) {
    if (be->device == LYRA_DEVICE_CPU) return LYRA_OK;
    void *dev = be->ops->alloc(be, bytes ? bytes : 1);
    if (!dev) {
        char why[256];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        return lyra_error(LYRA_ERR_OOM, "%s: cannot place %zu bytes (%.2f GiB) of weights on the %s device (%s)", what,
                          bytes, (double)bytes / (1 << 30), be->ops->name, why);
    }
    if (bytes) {
        lyra_tensor h = lyra_tensor_1d(*mem, LYRA_DTYPE_U8, (int64_t)bytes), d = h;
        h.name = d.name = what;
        d.data = dev;
        d.device = be->device;
        lyra_status st = lyra_op_upload(be, &d, &h);
        if (st != LYRA_OK) {
            be->ops->release(be, dev);
            return st;
        }
    }
    const char *lo = *mem;
    for (int i = 0; i < n; i++) {
        lyra_tensor *t = tensors[i];
        const char *p = t->data;
        if (!p || p < lo || p >= lo + bytes) continue;
        t->data = (char *)dev + (p - lo);
        t->device = be->device;
    }
    free(*mem);
    *mem = dev;
    return LYRA_OK;
}
