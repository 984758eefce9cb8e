/* FP8 e4m3 ("e4m3fn", the format of NVIDIA's FP8 tensor cores): 1 sign, 4 exponent (bias 7), 3 mantissa bits;
 * no infinities, 0x7F / 0xFF are NaN, largest finite ±448, smallest subnormal 2^-9. */
#ifndef LYRA_FP8_H
#define LYRA_FP8_H

#include <stdint.h>

#define LYRA_E4M3_MAX 448.0f

/* Round to nearest, ties to even; values beyond ±448 saturate to ±448 (as __NV_SATFINITE); NaN stays NaN. */
uint8_t lyra_f32_to_e4m3(float f);
float lyra_e4m3_to_f32(uint8_t v);
/* e4m3(f) as f32: the rounding alone (quantize + dequantize). */
static inline float lyra_e4m3_round(float f) { return lyra_e4m3_to_f32(lyra_f32_to_e4m3(f)); }

#endif
