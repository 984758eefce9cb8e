/* The CUDA value types the kernels use, for the CPU emulation build (LYRA2_CUDA_EMU): vectors (dim3, uint3,
 * float2), bf16, f16 and FP8 e4m3 with bit-exact conversions. Written from the formats' definitions, not from
 * the CUDA headers, so the emulation builds on machines without a CUDA toolkit.
 *
 * Rounding: float -> bf16/f16/e4m3 round to nearest, ties to even (cvt.rn in the PTX ISA, "Floating Point
 * Instructions: cvt"). NaN -> bf16 gives 0x7FFF (what cuda_bf16.hpp's __float2bfloat16_rn returns), NaN -> f16
 * 0x7FFF. e4m3 has no infinity (PTX ISA "Alternate Floating Point Data Formats"): with .satfinite (what
 * __NV_SATFINITE selects) a finite or infinite value beyond ±448 becomes ±448 and NaN becomes 0x7F; without it an
 * overflow becomes NaN. */
#ifndef LYRA_CUEMU_TYPES_H
#define LYRA_CUEMU_TYPES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct __attribute__((aligned(8))) float2 { /* CUDA's float2 is 8-byte aligned: a misaligned one faults */
    float x, y;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(16))) uint4 { /* a 16-byte vector load: 16-byte aligned, as CUDA's */
    unsigned x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 { /* 8-byte aligned, as CUDA's: an 8-byte vector store */
    unsigned x, y;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline int __float_as_int(float f) { return (int)__float_as_uint(f); }
static inline float __int_as_float(int i) { return __uint_as_float((unsigned)i); }

/* ---------------- bf16 ---------------- */

struct __nv_bfloat16 {
    uint16_t __x;
};
struct __attribute__((aligned(4))) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = __float_as_uint(f);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u)
        r.__x = 0x7fff;
    else
        r.__x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
static inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((uint32_t)h.__x << 16); }
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}

/* ---------------- f16 (IEEE binary16) ---------------- */

struct __half {
    uint16_t __x;
};
static inline __half __ushort_as_half(unsigned short u) { return __half{u}; } /* the bits, unchanged */

static inline __half __float2half_rn(float f) {
    uint32_t u = __float_as_uint(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    __half r;
    if (a > 0x7f800000u) { r.__x = 0x7fff; return r; }          /* NaN */
    if (a >= 0x477ff000u) { r.__x = sign | 0x7c00; return r; }  /* rounds to >= 65520: infinity */
    if (a < 0x38800000u) {                                      /* below 2^-14: subnormal or zero */
        /* exact: |f| * 2^24 counts units of the smallest subnormal (2^-24); rint ties to even */
        float q = nearbyintf(__uint_as_float(a) * 16777216.0f);
        r.__x = sign | (uint16_t)q;                             /* q = 1024 is the smallest normal: still right */
        return r;
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is the right result */
    r.__x = sign | (uint16_t)h;
    return r;
}

static inline float __half2float(__half h) {
    uint32_t sign = (uint32_t)(h.__x & 0x8000u) << 16, e = (h.__x >> 10) & 0x1fu, m = h.__x & 0x3ffu;
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        float v = (float)m * (1.0f / 16777216.0f); /* m · 2^-24, exact */
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((e - 15 + 127) << 23) | (m << 13));
}

/* ---------------- FP8 e4m3 (bias 7, 3 mantissa bits, max 448, NaN = S.1111.111) ---------------- */

typedef unsigned char __nv_fp8_storage_t;
typedef enum { __NV_NOSAT, __NV_SATFINITE } __nv_saturation_t;
typedef enum { __NV_E4M3, __NV_E5M2 } __nv_fp8_interpretation_t;

static inline float lyra_cuemu_e4m3_to_float(uint8_t v) {
    uint32_t e = (v >> 3) & 0xfu, m = v & 7u;
    float r;
    if (e == 0xf && m == 7) return __uint_as_float(0x7fffffffu);
    if (e == 0)
        r = (float)m * (1.0f / 512.0f); /* subnormal: m · 2^-9 */
    else
        r = ldexpf((float)(8 + m), (int)e - 7 - 3);
    return (v & 0x80) ? -r : r;
}

/* Defined in emu_types.cpp: E5M2 is not used by the backend and reports an emulation fault. */
__nv_fp8_storage_t lyra_cuemu_float_to_e4m3(float f, __nv_saturation_t sat);
__nv_fp8_storage_t lyra_cuemu_fp8_unsupported(const char *what);

static inline __nv_fp8_storage_t __nv_cvt_float_to_fp8(float f, __nv_saturation_t sat,
                                                       __nv_fp8_interpretation_t fmt) {
    if (fmt != __NV_E4M3) return lyra_cuemu_fp8_unsupported("__nv_cvt_float_to_fp8 to E5M2");
    return lyra_cuemu_float_to_e4m3(f, sat);
}

/* Two conversions packed as cuda_fp8.h does: .x in the low byte, .y in the high byte, each rounded like
 * __nv_cvt_float_to_fp8 (round to nearest even, saturating to +-448 under __NV_SATFINITE). */
typedef unsigned short __nv_fp8x2_storage_t;
static inline __nv_fp8x2_storage_t __nv_cvt_float2_to_fp8x2(float2 v, __nv_saturation_t sat,
                                                            __nv_fp8_interpretation_t fmt) {
    __nv_fp8_storage_t lo = __nv_cvt_float_to_fp8(v.x, sat, fmt), hi = __nv_cvt_float_to_fp8(v.y, sat, fmt);
    return (__nv_fp8x2_storage_t)(lo | (hi << 8));
}

struct __nv_fp8_e4m3 {
    __nv_fp8_storage_t __x;
    operator float() const { return lyra_cuemu_e4m3_to_float(__x); }
};

#endif
