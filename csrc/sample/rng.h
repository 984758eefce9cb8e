/* numpy's legacy RandomState normal stream (MT19937 + Marsaglia polar), reproduced bit for bit.
 *
 * Upstream draws the initial noise of every chunk with numpy.random.RandomState(seed + chunk)
 * .standard_normal(shape) (upstream M:615-626, AR:847, AR:922). This file gives the same float64 values for any
 * seed in [0, 2^32): the generator state, the 53-bit uniform and the polar method's cached second
 * value follow numpy's legacy code path exactly, so odd counts continue the stream as numpy does.
 * No global state: every stream lives in its own lyra_rng. */
#ifndef LYRA_SAMPLE_RNG_H
#define LYRA_SAMPLE_RNG_H

#include <stdint.h>

#include "lyra2.h"

#define LYRA_RNG_STATE_LEN 624

typedef struct lyra_rng {
    uint32_t key[LYRA_RNG_STATE_LEN]; /* MT19937 state */
    int pos;                          /* next word of key[] to temper; LYRA_RNG_STATE_LEN = regenerate */
    int has_gauss;                    /* the polar method produced two values; the second is cached */
    double gauss;                     /* that cached value */
} lyra_rng;

/* numpy.random.RandomState(seed) for an integer seed: MT19937 init_genrand (numpy's legacy seeding
 * of a scalar seed). */
void lyra_rng_seed(lyra_rng *rng, uint32_t seed);

/* numpy.random.RandomState([k_0, ..., k_{n-1}]) for a 1-d seed array: MT19937 init_by_array.
 * key: [n] words, n >= 1. */
void lyra_rng_seed_array(lyra_rng *rng, const uint32_t *key, int64_t n);

/* Next tempered 32-bit word. */
uint32_t lyra_rng_next_u32(lyra_rng *rng);

/* numpy's random_sample(): 53-bit uniform in [0, 1) from two words. */
double lyra_rng_uniform(lyra_rng *rng);

/* numpy's legacy standard_normal(): one value of the polar method (cached pair). */
double lyra_rng_normal(lyra_rng *rng);

/* out: [n] float64, C order: standard_normal(n). */
void lyra_rng_fill_normal_f64(lyra_rng *rng, double *out, int64_t n);

/* out: [n] float32 = float32(standard_normal(n)) (round to nearest even), the form upstream uses. */
void lyra_rng_fill_normal_f32(lyra_rng *rng, float *out, int64_t n);

#endif
