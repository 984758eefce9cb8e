// Fused attention for bf16 q/k/v (flash-attention-2 style): per block a tile of BM queries of one (batch, head);
// key/value tiles of BN rows stream through shared memory (cp.async, double buffered); S = Q·Kᵀ and O += P·V on
// bf16 tensor cores (mma.sync m16n8k16, fp32 accumulators); online softmax with fp32 row statistics in the log2
// domain. Each of the 4 warps owns MT·16 query rows. No L×L matrix exists anywhere.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): lane = 4·g + t.
//   A (16×16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16×8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16×8):             c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Q and K are read with ldmatrix (rows of 16 bytes); V with ldmatrix.trans, which hands each lane the (k, k+1)
// pair of one column, i.e. the B operand of P·V. The C fragments of two adjacent score tiles are exactly the A
// fragment of P (FA2's register reuse), so P never touches shared memory.
// Shared rows are padded by 16 bytes: a pitch of 4·odd words puts the 8 rows of every ldmatrix on distinct banks.
#include <math.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_ptx.h"

namespace {

constexpr int FA_THREADS = 128;
constexpr float FA_LOG2E = 1.4426950408889634f;

struct fa_params {
    const __nv_bfloat16 *q, *k, *v;
    void *o;
    int64_t q_sb, q_sl, q_sh, k_sb, k_sl, k_sh, v_sb, v_sl, v_sh, o_sb, o_sl, o_sh; /* element strides */
    int o_f32;
    const float *bias;
    int64_t bias_sb, bias_sh, bias_sl, bias_sk; /* element strides, 0 on broadcast dims */
    const uint8_t *mask;
    int64_t mask_sb, mask_sk;
    int Lq, Lk, group;
    float scale_log2;
};

/* Two floats as a bf16x2 register, lo in the low half (the lower column index). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

template <int D, int MT, int BN>
struct fa_shape {
    static constexpr int BM = 4 * 16 * MT;           /* queries per block */
    static constexpr int PITCH = D + 8;              /* bf16 elements per shared row */
    static constexpr int SMEM = (BM + 4 * BN) * PITCH * 2; /* Q, then K and V double-buffered */
};

template <int D, int MT, int BN>
__global__ void __launch_bounds__(FA_THREADS) fa_kernel(fa_params p) {
    constexpr int BM = fa_shape<D, MT, BN>::BM, PITCH = fa_shape<D, MT, BN>::PITCH;
    constexpr int CH = D / 8;  /* 16-byte chunks per row */
    constexpr int NT = BN / 8; /* score tiles per 16 rows */
    constexpr int DT = D / 8;  /* output tiles per 16 rows */
    CU_DYNAMIC_SMEM(unsigned char, fa_smem, 128);
    __nv_bfloat16 *sQ = reinterpret_cast<__nv_bfloat16 *>(fa_smem);
    __nv_bfloat16 *sK = sQ + BM * PITCH;
    __nv_bfloat16 *sV = sK + 2 * BN * PITCH;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    const int q0 = blockIdx.x * BM, wrow = warp * 16 * MT;
    const int64_t h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
    const __nv_bfloat16 *qg = p.q + b * p.q_sb + h * p.q_sh;
    const __nv_bfloat16 *kg = p.k + b * p.k_sb + hk * p.k_sh;
    const __nv_bfloat16 *vg = p.v + b * p.v_sb + hk * p.v_sh;

    for (int c = tid; c < BM * CH; c += FA_THREADS) {
        int r = c / CH, cc = c % CH, qi = q0 + r;
        bool ok = qi < p.Lq;
        cp_async16(sQ + r * PITCH + cc * 8, qg + (int64_t)(ok ? qi : 0) * p.q_sl + cc * 8, ok ? 16 : 0);
    }
    const int ntiles = (p.Lk + BN - 1) / BN;
    auto load_kv = [&](int tile, int buf) {
        int k0 = tile * BN;
        __nv_bfloat16 *dk = sK + buf * BN * PITCH, *dv = sV + buf * BN * PITCH;
        for (int c = tid; c < BN * CH; c += FA_THREADS) {
            int r = c / CH, cc = c % CH, kj = k0 + r;
            bool ok = kj < p.Lk;
            int64_t row = ok ? kj : 0;
            cp_async16(dk + r * PITCH + cc * 8, kg + row * p.k_sl + cc * 8, ok ? 16 : 0);
            cp_async16(dv + r * PITCH + cc * 8, vg + row * p.v_sl + cc * 8, ok ? 16 : 0);
        }
    };
    if (ntiles > 0) load_kv(0, 0);
    cp_async_commit(); /* group 0: Q and the first K/V tile */

    float o_acc[MT][DT][4];
    float m_i[MT][2], l_i[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++) o_acc[mt][dt][e] = 0.0f;
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            m_i[mt][hr] = -INFINITY;
            l_i[mt][hr] = 0.0f;
        }
    }

    for (int t = 0; t < ntiles; t++) {
        const int buf = t & 1;
        if (t + 1 < ntiles) load_kv(t + 1, buf ^ 1);
        cp_async_commit();   /* possibly empty: keeps the group count uniform */
        cp_async_wait<1>();  /* every group but the newest is done: Q and tile t are in shared memory */
        __syncthreads();
        const __nv_bfloat16 *cK = sK + buf * BN * PITCH, *cV = sV + buf * BN * PITCH;

        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mt][nt][e] = 0.0f;

        /* S = Q·Kᵀ over D in steps of 16 */
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                ldsm_x4(a[mt], sQ + (wrow + mt * 16 + (lane & 15)) * PITCH + kk * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int nb = 0; nb < BN / 16; nb++) {
                /* matrices: keys +0..7 d +0..7 | keys +0..7 d +8..15 | keys +8..15 d +0..7 | keys +8..15 d +8..15 */
                uint32_t bk[4];
                ldsm_x4(bk, cK + (nb * 16 + (lane & 7) + ((lane >> 4) << 3)) * PITCH + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(s[mt][2 * nb], a[mt], bk[0], bk[1]);
                    mma_bf16(s[mt][2 * nb + 1], a[mt], bk[2], bk[3]);
                }
            }
        }

        /* scale into the log2 domain, bias, masks; online softmax per row */
        const int kbase = t * BN;
        /* only the last tile and biased/masked calls need per-element work (uniform over the block) */
        const bool edge = kbase + BN > p.Lk || p.bias || p.mask;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                int qi = q0 + wrow + mt * 16 + g + hr * 8;
                int qc = qi < p.Lq ? qi : p.Lq - 1;
                const float *brow = p.bias ? p.bias + b * p.bias_sb + h * p.bias_sh + (int64_t)qc * p.bias_sl : nullptr;
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float x = s[mt][nt][hr * 2 + e] * p.scale_log2;
                        if (edge) {
                            int j = kbase + nt * 8 + tq * 2 + e;
                            if (j >= p.Lk) {
                                x = -INFINITY;
                            } else {
                                if (brow) x += brow[(int64_t)j * p.bias_sk] * FA_LOG2E;
                                if (p.mask && !p.mask[b * p.mask_sb + (int64_t)j * p.mask_sk]) x = -INFINITY;
                            }
                        }
                        s[mt][nt][hr * 2 + e] = x;
                        mx = fmaxf(mx, x);
                    }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float m_new = fmaxf(m_i[mt][hr], mx);
                float m_use = m_new == -INFINITY ? 0.0f : m_new; /* a row with nothing unmasked yet: p = 0 */
                float alpha = exp2f(m_i[mt][hr] - m_use);
                m_i[mt][hr] = m_new;
                float rs = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float pv = exp2f(s[mt][nt][hr * 2 + e] - m_use);
                        s[mt][nt][hr * 2 + e] = pv;
                        rs += pv;
                    }
                l_i[mt][hr] = l_i[mt][hr] * alpha + rs; /* per-lane partial sum; the quad is summed at the end */
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    o_acc[mt][dt][hr * 2] *= alpha;
                    o_acc[mt][dt][hr * 2 + 1] *= alpha;
                }
            }

        /* O += P·V over the tile's keys in steps of 16 */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dn = 0; dn < D / 16; dn++) {
                /* matrices: keys +0..7 d +0..7 | keys +8..15 d +0..7 | keys +0..7 d +8..15 | keys +8..15 d +8..15 */
                uint32_t bv[4];
                ldsm_x4_trans(bv, cV + (kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3)) * PITCH + dn * 16 +
                                      ((lane >> 4) << 3));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(o_acc[mt][2 * dn], pa[mt], bv[0], bv[1]);
                    mma_bf16(o_acc[mt][2 * dn + 1], pa[mt], bv[2], bv[3]);
                }
            }
        }
        __syncthreads(); /* the buffer just read is refilled by the next iteration's load */
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            float l = l_i[mt][hr];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            float inv = l > 0.0f ? 1.0f / l : 0.0f; /* every key masked: o = 0 */
            int qi = q0 + wrow + mt * 16 + g + hr * 8;
            if (qi >= p.Lq) continue;
            int64_t base = b * p.o_sb + (int64_t)qi * p.o_sl + h * p.o_sh;
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                int col = dt * 8 + tq * 2;
                float v0 = o_acc[mt][dt][hr * 2] * inv, v1 = o_acc[mt][dt][hr * 2 + 1] * inv;
                if (p.o_f32)
                    *reinterpret_cast<float2 *>((float *)p.o + base + col) = make_float2(v0, v1);
                else
                    *reinterpret_cast<__nv_bfloat162 *>((__nv_bfloat16 *)p.o + base + col) = __floats2bfloat162_rn(v0, v1);
            }
        }
}

template <int D, int MT, int BN>
lyra_status fa_launch(lyra_backend *be, const fa_params &p, int64_t B, int64_t H) {
    constexpr int BM = fa_shape<D, MT, BN>::BM, SMEM = fa_shape<D, MT, BN>::SMEM;
    cuda_state *st = cu_st(be);
    if ((size_t)SMEM > st->smem_optin)
        return lyra_error(LYRA_ERR_CUDA, "attention: the fused kernel needs %d bytes of shared memory, the GPU offers %zu",
                          SMEM, st->smem_optin);
    CU_TRY(cudaFuncSetAttribute(fa_kernel<D, MT, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM), "attention");
    dim3 grid((unsigned)((p.Lq + BM - 1) / BM), (unsigned)H, (unsigned)B);
    cu_launch(fa_kernel<D, MT, BN>, grid, FA_THREADS, SMEM, st->stream, p);
    CU_LAUNCHED("attention (fused kernel)");
    return LYRA_OK;
}

/* The tile shape per head dim, fixed at compile time: MT 16-row query tiles per warp (BM = 64·MT queries per
 * block) and BN keys per K/V tile. Larger tiles reuse more of what shared memory holds, but every thread keeps
 * MT·D/2 output and MT·BN/2 score accumulators in registers: `nvcc --resource-usage` (sm_90) gives 2×64 at
 * D = 128 255 registers and 328 bytes of spill stores, so 128 takes 2×32 (1×64 halves the queries per block
 * and the K/V reuse). FA_ACC_BUDGET is the most accumulators a thread holds among the entries that ptxas
 * compiles without spills; the static_asserts keep a later edit of the table inside it. */
struct fa_tiles {
    int D, MT, BN;
};
constexpr fa_tiles FA_TILES[] = {{16, 2, 64}, {32, 2, 64},  {48, 2, 64},  {64, 2, 64},
                                 {80, 2, 32}, {96, 2, 32}, {112, 2, 32}, {128, 2, 32}};
constexpr int FA_N_TILES = (int)(sizeof FA_TILES / sizeof FA_TILES[0]);
constexpr int FA_ACC_BUDGET = 160;
constexpr int FA_SMEM_MAX = 227 * 1024; /* Hopper's opt-in shared memory per block */

constexpr bool fa_tiles_ok(int i) {
    return i == FA_N_TILES ||
           (FA_TILES[i].D % 16 == 0 && FA_TILES[i].BN % 16 == 0 && FA_TILES[i].MT >= 1 &&
            FA_TILES[i].MT * FA_TILES[i].D / 2 + FA_TILES[i].MT * FA_TILES[i].BN / 2 <= FA_ACC_BUDGET &&
            (4 * 16 * FA_TILES[i].MT + 4 * FA_TILES[i].BN) * (FA_TILES[i].D + 8) * 2 <= FA_SMEM_MAX &&
            (i == 0 || FA_TILES[i].D > FA_TILES[i - 1].D) && fa_tiles_ok(i + 1));
}
static_assert(fa_tiles_ok(0), "FA_TILES: head dims multiples of 16 in increasing order, BN a multiple of 16, "
                              "accumulators within FA_ACC_BUDGET registers, shared memory within Hopper's 227 KiB");
static_assert(FA_TILES[FA_N_TILES - 1].D == 128, "cu_flash_attention admits head dims up to 128");

template <int I = 0>
lyra_status fa_dispatch(lyra_backend *be, const fa_params &p, int64_t D, int64_t B, int64_t H) {
    if constexpr (I == FA_N_TILES) {
        return lyra_error(LYRA_ERR_UNSUPPORTED, "attention: no fused-kernel tile shape for head dim %lld",
                          (long long)D);
    } else {
        constexpr fa_tiles t = FA_TILES[I];
        if (D == t.D) return fa_launch<t.D, t.MT, t.BN>(be, p, B, H);
        return fa_dispatch<I + 1>(be, p, D, B, H);
    }
}

/* 1 when D has an entry in FA_TILES. */
int fa_has_tiles(int64_t D) {
    for (int i = 0; i < FA_N_TILES; i++)
        if (FA_TILES[i].D == D) return 1;
    return 0;
}

/* 16-byte aligned base and strides (in bytes) that keep every row start 16-byte aligned (size-1 dims free). */
int rows16(const lyra_tensor *t) {
    if ((uintptr_t)t->data % 16 || t->nb[3] != 2) return 0;
    for (int i = 0; i < 3; i++)
        if (t->ne[i] > 1 && t->nb[i] % 16) return 0;
    return 1;
}

int64_t estride(const lyra_tensor *t, int i, int es) { return t->ne[i] > 1 ? t->nb[i] / es : 0; }

} // namespace

int cu_flash_attention(lyra_backend *be, lyra_tensor *o, const lyra_tensor *q, const lyra_tensor *k,
                       const lyra_tensor *v, const lyra_tensor *bias, const lyra_tensor *key_mask, float scale,
                       lyra_status *st) {
    int64_t B = q->ne[0], Lq = q->ne[1], H = q->ne[2], D = q->ne[3], Lk = k->ne[1];
    if (q->dtype != LYRA_DTYPE_BF16 || k->dtype != LYRA_DTYPE_BF16 || v->dtype != LYRA_DTYPE_BF16) return 0;
    if (o->dtype != LYRA_DTYPE_BF16 && o->dtype != LYRA_DTYPE_F32) return 0;
    if (v->ne[3] != D || !fa_has_tiles(D)) return 0;
    if (bias && bias->dtype != LYRA_DTYPE_F32) return 0;
    if (!rows16(q) || !rows16(k) || !rows16(v)) return 0;
    int oes = (int)lyra_dtype_size(o->dtype);
    if ((uintptr_t)o->data % (2 * oes) || o->nb[3] != oes) return 0;
    for (int i = 0; i < 3; i++)
        if (o->ne[i] > 1 && o->nb[i] % (2 * oes)) return 0;
    if (Lq > 0x7fffffff || Lk > 0x7fffffff || H > 65535 || B > 65535) return 0;
    fa_params p;
    memset(&p, 0, sizeof p);
    p.q = (const __nv_bfloat16 *)q->data;
    p.k = (const __nv_bfloat16 *)k->data;
    p.v = (const __nv_bfloat16 *)v->data;
    p.o = o->data;
    p.q_sb = estride(q, 0, 2); p.q_sl = estride(q, 1, 2); p.q_sh = estride(q, 2, 2);
    p.k_sb = estride(k, 0, 2); p.k_sl = estride(k, 1, 2); p.k_sh = estride(k, 2, 2);
    p.v_sb = estride(v, 0, 2); p.v_sl = estride(v, 1, 2); p.v_sh = estride(v, 2, 2);
    p.o_sb = estride(o, 0, oes); p.o_sl = estride(o, 1, oes); p.o_sh = estride(o, 2, oes);
    p.o_f32 = o->dtype == LYRA_DTYPE_F32;
    if (bias) {
        p.bias = (const float *)bias->data;
        p.bias_sb = estride(bias, 0, 4);
        p.bias_sh = estride(bias, 1, 4);
        p.bias_sl = bias->nb[2] / 4;
        p.bias_sk = bias->nb[3] / 4;
    }
    if (key_mask) {
        p.mask = (const uint8_t *)key_mask->data;
        p.mask_sb = key_mask->nb[0];
        p.mask_sk = key_mask->nb[1];
    }
    p.Lq = (int)Lq;
    p.Lk = (int)Lk;
    p.group = (int)(H / k->ne[2]);
    p.scale_log2 = scale * FA_LOG2E;
    *st = fa_dispatch(be, p, D, B, H);
    return 1;
}
