// Attention dispatch: the fused bf16 flash kernel (cuda_attention_flash.cu) when the case fits it, else this file's
// reference kernel: exact f32 arithmetic for any float dtype and head dims up to 512, one warp per query with an
// online softmax over chunks of 32 keys (no L×L matrix either way). The f32 path is what the CPU-parity tests
// exercise; bf16 models take the flash kernel.
#include <math.h>
#include <string.h>

#include "cuda_internal.h"

namespace {

constexpr int REF_WARPS = 4;
constexpr int REF_MAX_D = 512;

struct ref_params {
    cu_tensor o, q, k, v;
    const char *bias;
    int64_t bias_sb, bias_sh, bias_sl, bias_sk; /* bytes; 0 on broadcast dims */
    int bias_dt;
    const uint8_t *mask;
    int64_t mask_sb, mask_sk;
    int64_t B, Lq, Lk, H, D, Dv, group;
    float scale;
};

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__global__ void __launch_bounds__(REF_WARPS * 32) attn_ref_kernel(ref_params p) {
    __shared__ float qs[REF_WARPS][REF_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t qi = (int64_t)blockIdx.x * REF_WARPS + warp;
    if (qi >= p.B * p.H * p.Lq) return; /* warp-uniform */
    int64_t i = qi % p.Lq, h = (qi / p.Lq) % p.H, b = qi / (p.Lq * p.H), hk = h / p.group;
    const char *qr = p.q.data + b * p.q.nb[0] + i * p.q.nb[1] + h * p.q.nb[2];
    for (int64_t d = lane; d < p.D; d += 32) qs[warp][d] = cu_load(qr + d * p.q.nb[3], p.q.dtype);
    __syncwarp();
    const char *kb = p.k.data + b * p.k.nb[0] + hk * p.k.nb[2];
    const char *vb = p.v.data + b * p.v.nb[0] + hk * p.v.nb[2];
    const char *bias_row = p.bias ? p.bias + b * p.bias_sb + h * p.bias_sh + i * p.bias_sl : NULL;
    const uint8_t *mrow = p.mask ? p.mask + b * p.mask_sb : NULL;
    float m = -INFINITY, l = 0.0f, acc[REF_MAX_D / 32];
#pragma unroll
    for (int t = 0; t < REF_MAX_D / 32; t++) acc[t] = 0.0f;
    int nt = (int)((p.Dv + 31) / 32);
    for (int64_t j0 = 0; j0 < p.Lk; j0 += 32) {
        int64_t j = j0 + lane;
        float s = -INFINITY;
        if (j < p.Lk && !(mrow && !mrow[j * p.mask_sk])) {
            const char *kr = kb + j * p.k.nb[1];
            float dot = 0.0f;
            for (int64_t d = 0; d < p.D; d++) dot += qs[warp][d] * cu_load(kr + d * p.k.nb[3], p.k.dtype);
            s = dot * p.scale;
            if (bias_row) s += cu_load(bias_row + j * p.bias_sk, p.bias_dt);
        }
        float mn = fmaxf(m, warp_max(s));
        if (mn == -INFINITY) continue; /* nothing unmasked yet (uniform across the warp) */
        float alpha = expf(m - mn);    /* m = -inf: 0 */
        float pj_own = s == -INFINITY ? 0.0f : expf(s - mn);
        l = l * alpha + warp_sum(pj_own);
#pragma unroll
        for (int t = 0; t < REF_MAX_D / 32; t++) acc[t] *= alpha;
        int64_t nk = p.Lk - j0 < 32 ? p.Lk - j0 : 32;
        for (int jj = 0; jj < nk; jj++) {
            float pj = __shfl_sync(0xffffffffu, pj_own, jj);
            if (pj == 0.0f) continue; /* uniform: pj is the same value in every lane */
            const char *vr = vb + (j0 + jj) * p.v.nb[1];
#pragma unroll
            for (int t = 0; t < REF_MAX_D / 32; t++)
                if (t < nt) {
                    int64_t d = lane + 32 * t;
                    if (d < p.Dv) acc[t] += pj * cu_load(vr + d * p.v.nb[3], p.v.dtype);
                }
        }
        m = mn;
    }
    char *orow = p.o.data + b * p.o.nb[0] + i * p.o.nb[1] + h * p.o.nb[2];
    float inv = l > 0.0f ? 1.0f / l : 0.0f; /* every key masked: o = 0 */
#pragma unroll
    for (int t = 0; t < REF_MAX_D / 32; t++)
        if (t < nt) {
            int64_t d = lane + 32 * t;
            if (d < p.Dv) cu_store(orow + d * p.o.nb[3], p.o.dtype, acc[t] * inv);
        }
}

} // namespace

lyra_status cu_op_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                            const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask, float scale) {
    const lyra_tensor *ts[5] = {o, q, k, v, bias};
    for (int i = 0; i < 5; i++)
        if (ts[i] && !cu_is_float(ts[i]->dtype))
            return lyra_error(LYRA_ERR_TYPE, "attention: the CUDA backend computes f32/bf16/f16 tensors");
    int64_t B = q->ne[0], Lq = q->ne[1], H = q->ne[2], D = q->ne[3], Lk = k->ne[1], Dv = v->ne[3];
    if (!B || !Lq || !H || !Dv) return LYRA_OK;
    lyra_status st;
    if (cu_flash_attention(be, o, q, k, v, bias, key_mask, scale, &st)) return st;
    if (D > REF_MAX_D || Dv > REF_MAX_D)
        return lyra_error(LYRA_ERR_UNSUPPORTED,
                          "attention: head dims %lld/%lld: the CUDA backend supports up to %d (and any multiple of 16 "
                          "up to 128 with bf16 inputs in its fused kernel)",
                          (long long)D, (long long)Dv, REF_MAX_D);
    cu_note_fallback(LYRA_CUDA_FALLBACK_ATTENTION,
                     "q/k/v/o %s/%s/%s/%s, head dims %lld/%lld, Lq=%lld Lk=%lld, q/k/v row strides %lld/%lld/%lld "
                     "bytes at alignments %d/%d/%d: the fused kernel takes bf16 q/k/v, head dims 16..128 in steps of "
                     "16 and 16-byte aligned rows",
                     lyra_dtype_name(q->dtype), lyra_dtype_name(k->dtype), lyra_dtype_name(v->dtype),
                     lyra_dtype_name(o->dtype), (long long)D, (long long)Dv, (long long)Lq, (long long)Lk,
                     (long long)q->nb[1], (long long)k->nb[1], (long long)v->nb[1], cu_align_of(q->data),
                     cu_align_of(k->data), cu_align_of(v->data));
    ref_params p;
    memset(&p, 0, sizeof p);
    p.o = cu_tensor_of(o);
    p.q = cu_tensor_of(q);
    p.k = cu_tensor_of(k);
    p.v = cu_tensor_of(v);
    if (bias) {
        p.bias = (const char *)bias->data;
        p.bias_sb = bias->ne[0] == 1 ? 0 : bias->nb[0];
        p.bias_sh = bias->ne[1] == 1 ? 0 : bias->nb[1];
        p.bias_sl = bias->nb[2];
        p.bias_sk = bias->nb[3];
        p.bias_dt = (int)bias->dtype;
    }
    if (key_mask) {
        p.mask = (const uint8_t *)key_mask->data;
        p.mask_sb = key_mask->nb[0];
        p.mask_sk = key_mask->nb[1];
    }
    p.B = B; p.Lq = Lq; p.Lk = Lk; p.H = H; p.D = D; p.Dv = Dv;
    p.group = H / k->ne[2];
    p.scale = scale;
    int64_t nq = B * H * Lq, blocks = (nq + REF_WARPS - 1) / REF_WARPS;
    if (blocks > 0x7fffffff) return lyra_error(LYRA_ERR_ARG, "attention: too many queries for one launch");
    cu_launch(attn_ref_kernel, (unsigned)blocks, REF_WARPS * 32, 0, cu_st(be)->stream, p);
    CU_LAUNCHED("attention (reference kernel)");
    return LYRA_OK;
}
