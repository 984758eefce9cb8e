/* numpy legacy MT19937 + polar Gaussian (see rng.h). The constants and the order of operations are
 * those of the reference MT19937 and of numpy's legacy_gauss; every line matters for bit-exactness. */
#include "sample/rng.h"

#include <math.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

void lyra_rng_seed(lyra_rng *rng, uint32_t seed) {
    rng->key[0] = seed;
    for (uint32_t i = 1; i < LYRA_RNG_STATE_LEN; i++) {
        uint32_t prev = rng->key[i - 1];
        rng->key[i] = 1812433253u * (prev ^ (prev >> 30)) + i; /* mod 2^32 by uint32 wrap-around */
    }
    rng->pos = LYRA_RNG_STATE_LEN;
    rng->has_gauss = 0;
    rng->gauss = 0.0;
}

void lyra_rng_seed_array(lyra_rng *rng, const uint32_t *key, int64_t n) {
    uint32_t *mt = rng->key;
    lyra_rng_seed(rng, 19650218u);
    int64_t i = 1, j = 0;
    for (int64_t k = n > LYRA_RNG_STATE_LEN ? n : LYRA_RNG_STATE_LEN; k > 0; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= LYRA_RNG_STATE_LEN) {
            mt[0] = mt[LYRA_RNG_STATE_LEN - 1];
            i = 1;
        }
        if (j >= n) j = 0;
    }
    for (int k = LYRA_RNG_STATE_LEN - 1; k > 0; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= LYRA_RNG_STATE_LEN) {
            mt[0] = mt[LYRA_RNG_STATE_LEN - 1];
            i = 1;
        }
    }
    mt[0] = 0x80000000u; /* MSB set: the state is never all zero */
    rng->pos = LYRA_RNG_STATE_LEN;
    rng->has_gauss = 0;
    rng->gauss = 0.0;
}

static void mt_regenerate(lyra_rng *rng) {
    uint32_t *mt = rng->key;
    for (int i = 0; i < LYRA_RNG_STATE_LEN; i++) {
        uint32_t y = (mt[i] & MT_UPPER) | (mt[(i + 1) % LYRA_RNG_STATE_LEN] & MT_LOWER);
        mt[i] = mt[(i + MT_M) % LYRA_RNG_STATE_LEN] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    rng->pos = 0;
}

uint32_t lyra_rng_next_u32(lyra_rng *rng) {
    if (rng->pos >= LYRA_RNG_STATE_LEN) mt_regenerate(rng);
    uint32_t y = rng->key[rng->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

double lyra_rng_uniform(lyra_rng *rng) {
    /* Two words are drawn in this order (the evaluation order of C arguments is unspecified, so
     * they are read into named variables first). */
    uint32_t a = lyra_rng_next_u32(rng) >> 5;
    uint32_t b = lyra_rng_next_u32(rng) >> 6;
    return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

double lyra_rng_normal(lyra_rng *rng) {
    if (rng->has_gauss) {
        rng->has_gauss = 0;
        double cached = rng->gauss;
        rng->gauss = 0.0;
        return cached;
    }
    double x1, x2, r2;
    do {
        x1 = 2.0 * lyra_rng_uniform(rng) - 1.0;
        x2 = 2.0 * lyra_rng_uniform(rng) - 1.0;
        r2 = x1 * x1 + x2 * x2; /* no FMA: -std=c11 keeps fp-contract off */
    } while (r2 >= 1.0 || r2 == 0.0);
    /* glibc log/sqrt, as numpy uses the platform libm: same machine, same bits. */
    double f = sqrt(-2.0 * log(r2) / r2);
    rng->gauss = f * x1;
    rng->has_gauss = 1;
    return f * x2;
}

void lyra_rng_fill_normal_f64(lyra_rng *rng, double *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = lyra_rng_normal(rng);
}

void lyra_rng_fill_normal_f32(lyra_rng *rng, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)lyra_rng_normal(rng);
}
