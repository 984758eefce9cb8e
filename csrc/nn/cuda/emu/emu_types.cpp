// FP8 e4m3 encoding for the emulation build (see emu_types.h for the rounding and saturation rules).
#include "cuda_emu.h"

__nv_fp8_storage_t lyra_cuemu_float_to_e4m3(float f, __nv_saturation_t sat) {
    uint8_t sign = (__float_as_uint(f) >> 24) & 0x80u;
    float a = fabsf(f);
    if (isnan(f)) return (uint8_t)(sign | 0x7f);
    const uint8_t overflow = sat == __NV_SATFINITE ? (uint8_t)(sign | 0x7e) : (uint8_t)(sign | 0x7f);
    if (a > 464.0f) return overflow; /* 464, halfway to the next step (NaN), rounds to the even 448 */
    uint32_t code;
    if (a < 0.015625f) {
        /* below 2^-6: units of 2^-9, exact scaling; q = 8 is the smallest normal, encoded the same way */
        code = (uint32_t)nearbyintf(a * 512.0f);
    } else {
        int e;
        frexpf(a, &e);                                       /* a = fr · 2^e, fr in [0.5, 1) */
        uint32_t q = (uint32_t)nearbyintf(ldexpf(a, 4 - e)); /* 8..16: 1.mmm in units of 2^(e-4) */
        int exp = e - 1 + 7;
        if (q == 16) {
            q = 8;
            exp++;
        }
        code = ((uint32_t)exp << 3) | (q - 8);
    }
    if (code > 0x7e) return overflow;
    return (uint8_t)(sign | code);
}

__nv_fp8_storage_t lyra_cuemu_fp8_unsupported(const char *what) {
    lyra_cuemu_fault("%s is not emulated", what);
    return 0x7f;
}
