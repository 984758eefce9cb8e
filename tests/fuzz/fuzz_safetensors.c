/* libFuzzer target: the safetensors header parser and validator (csrc/io/safetensors.c, json.c).
 * Every accepted file must describe tensors that lie inside the buffer; converting each one to f32
 * touches every byte, so ASan catches any range the validator let through. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy into an exact-size heap block so reads past the end are caught. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lyra_st_file *f = NULL;
    if (lyra_st_parse(buf, size, "fuzz", &f) == LYRA_OK) {
        for (size_t i = 0; i < f->n_tensors; i++) {
            const lyra_st_tensor *t = &f->tensors[i];
            if (lyra_st_find(f, t->name) != t) abort(); /* names are unique, lookup must agree */
            if (t->data < buf || t->data + t->nbytes > buf + size) abort();
            if (t->numel > (1u << 20)) continue;
            float *out = malloc((t->numel ? t->numel : 1) * sizeof *out);
            if (out) {
                (void)lyra_st_read_f32(f, t, out);
                free(out);
            }
        }
        lyra_st_close(f);
    }
    free(buf);
    return 0;
}
