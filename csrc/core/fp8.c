/* FP8 e4m3 conversions (core/fp8.h), bit by bit so the CPU reference rounds exactly as the hardware does. */
#include "core/fp8.h"

#include <math.h>
#include <string.h>

float lyra_e4m3_to_f32(uint8_t v) {
    int sign = v >> 7, exp = (v >> 3) & 15, man = v & 7;
    if (exp == 15 && man == 7) return NAN;
    float mag = exp ? ldexpf(1.0f + (float)man / 8.0f, exp - 7) : ldexpf((float)man / 8.0f, -6);
    return sign ? -mag : mag;
}

uint8_t lyra_f32_to_e4m3(float f) {
    if (isnan(f)) return 0x7F;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= LYRA_E4M3_MAX) return sign | 0x7E; /* saturate: 1.75·2^8 = 448 */
    /* Quantization step of a's binade: 2^(e-3) for normals (e >= -6), 2^-9 in the subnormal range. */
    int e;
    frexpf(a, &e);   /* a = m·2^e, m in [0.5, 1): the binade is 2^(e-1) */
    int binade = e - 1 < -6 ? -6 : e - 1;
    float step = ldexpf(1.0f, binade - 3);
    float q = a / step;                      /* exact: step is a power of two */
    float r = nearbyintf(q);                 /* ties to even under the default rounding mode */
    float v = r * step;
    if (v >= LYRA_E4M3_MAX) return sign | 0x7E;
    /* encode v (exactly representable now) */
    if (v == 0.0f) return sign;
    int ve;
    float vm = frexpf(v, &ve);               /* v = vm·2^ve, vm in [0.5, 1) */
    int exp = ve - 1 + 7;
    if (exp <= 0) return sign | (uint8_t)lrintf(v / ldexpf(1.0f, -9)); /* subnormal: man = v / 2^-9 */
    int man = (int)lrintf((vm * 2.0f - 1.0f) * 8.0f);
    return sign | (uint8_t)(exp << 3) | (uint8_t)man;
}
