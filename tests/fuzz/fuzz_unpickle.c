/* libFuzzer target: the restricted pickle reader (csrc/io/unpickle.c). Walks the resulting graph
 * (with a visited mark, so shared and cyclic structures terminate) and checks the tensor invariants
 * the Python side relies on: every addressable element of a view lies inside its storage. */
#include <stdlib.h>
#include <string.h>

#include "io/unpickle.h"

static void walk(lyra_pk_value *v, int depth) {
    if (!v || v->mark || depth > 10000) return;
    v->mark = 1;
    if (v->kind == LYRA_PK_TENSOR) {
        int64_t last = v->offset, numel = 1;
        for (int d = 0; d < v->ndim; d++) {
            numel *= v->shape[d];
            if (v->shape[d] > 0) last += (v->shape[d] - 1) * v->stride[d];
        }
        if (numel > 0 && (last >= v->storage->i || v->offset < 0)) abort();
        walk(v->storage, depth + 1);
    }
    for (size_t k = 0; k < v->n; k++) walk(v->items[k], depth + 1);
    walk(v->args, depth + 1);
    walk(v->state, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lyra_pk_result res;
    if (lyra_pk_load(buf, size, "fuzz", &res) == LYRA_OK) walk(res.root, 0);
    lyra_pk_free(&res);
    free(buf);
    return 0;
}
