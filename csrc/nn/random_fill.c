/* The rule of a random weight tensor by its name and shape (nn/ops.h lyra_random_fill_rule). */
#include <math.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/random_fill_math.h"

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

void lyra_random_fill_rule(lyra_random_fill *r, uint64_t seed, const char *name, int ndim, const int64_t *ne,
                           int bf16_values) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    r->key = lyra_rfill_mix(seed ^ lyra_rfill_mix(h));
    double mean = 0.0, std;
    if (ends_with(name, "bias")) {
        std = 0.02;
    } else if (ndim <= 1 || ends_with(name, "gamma")) {
        mean = 1.0;
        std = 0.1;
    } else {
        double fan_in = 1.0;
        for (int d = 1; d < ndim; d++) fan_in *= (double)ne[d];
        std = 1.0 / sqrt(fan_in > 1.0 ? fan_in : 1.0);
    }
    /* Irwin–Hall: each quarter u/65536 is ~U(0, 1) (variance 1/12), so s/65536 has variance 4/12 = 1/3 */
    r->scale = (float)(std * sqrt(3.0) / 65536.0);
    r->mean = (float)mean;
    r->bf16_values = bf16_values;
}
