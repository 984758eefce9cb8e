/* umT5 text encoder (Wan 2.1 T5Encoder as Lyra-2 runs it, upstream T5:544-577, Z:690-699, CTI:399-482).
 *
 *   x = E[ids]; per block: x += o(attn(RMS1(x))), x += fc2(fc1(h) ⊙ gelu_tanh(gate(h))) with h = RMS2(x);
 *   y = RMS(x). T5 RMS norm (eps 1e-6, no mean subtraction), no 1/sqrt(d) attention scaling, relative position
 *   bias per head from bucket(key − query) with a table per block (umT5) or one shared table (T5), padded
 *   KEYS masked (probability exactly 0), padded queries computed normally.
 *
 * Configuration comes from the weights (names as in the upstream state dict of T5:130-331):
 * vocab, dim = token_embedding.weight (V, D); layers = number of blocks.{i}; dim_attn = attn.q rows;
 * ffn = ffn.fc1 rows; (buckets, heads) = pos_embedding.embedding.weight. max_dist is upstream's fixed 128. */
#ifndef LYRA_UMT5_H
#define LYRA_UMT5_H

#include "core/arena.h"
#include "models/text_weights.h"
#include "nn/backend.h"

typedef struct lyra_umt5_config {
    int64_t vocab, dim, dim_attn, heads, ffn, layers, buckets, max_dist;
    int shared_pos; /* 1: one top-level "pos_embedding.embedding.weight" (T5); 0: one per block (umT5) */
} lyra_umt5_config;

typedef struct lyra_umt5_block {
    lyra_tensor norm1;           /* (D) f32 */
    lyra_tensor q, k, v;         /* (A, D) checkpoint dtype */
    lyra_tensor o;               /* (D, A) */
    lyra_tensor norm2;           /* (D) f32 */
    lyra_tensor gate, fc1;       /* (F, D): gate is the GELU branch, fc1 the linear branch */
    lyra_tensor fc2;             /* (D, F) */
    lyra_tensor pos;             /* (buckets, heads) f32; a copy of the shared table's descriptor for T5 */
} lyra_umt5_block;

typedef struct lyra_umt5 {
    lyra_umt5_config cfg;
    lyra_tensor token_embedding; /* (V, D) */
    lyra_tensor norm;            /* (D) f32 */
    lyra_tensor shared_pos;      /* (buckets, heads) f32, only when cfg.shared_pos */
    lyra_umt5_block *blocks;     /* cfg.layers */
    char *names;                 /* storage of the tensor names */
    void *mem;                   /* the one weight allocation: host, or device memory of `placed` */
    lyra_backend *placed;        /* the device backend holding mem after lyra_umt5_place, else NULL */
    lyra_dtype act;              /* activation storage: f32, or bf16 on a device (lyra_umt5_place) */
    lyra_text_random random;     /* random weights (a source with `random`, text_weights.h): pending until filled */
} lyra_umt5;

/* Detects the configuration, checks and copies every tensor (see text_weights.h for the checks). *m is
 * zeroed first; free with lyra_umt5_free (also after a failed load). A random source (src->random, text_weights.h)
 * gives random weights of its shapes: filled now, or with random->pending by lyra_umt5_place on the device (no host
 * copy, no upload). */
lyra_status lyra_umt5_load(lyra_umt5 *m, const lyra_text_wsource *src);
/* Frees the weights (a placed model: before its backend is freed). */
void lyra_umt5_free(lyra_umt5 *m);
/* Uploads the weights once to be's device (lyra_backend_place_weights_as); be must outlive the model. Afterwards
 * lyra_umt5_encode takes that backend, an arena in its memory and a device output. `act` is the activation
 * storage there: LYRA_DTYPE_BF16 is upstream's GPU policy (the encoder built in bf16, upstream T5:496; the
 * matrices are stored bf16 too, the norm and position-bias vectors stay f32 as their bf16 values; RMS statistics
 * and softmax in f32 inside the kernels, docs/PRECISION.md), LYRA_DTYPE_F32 a parity mode that keeps the
 * checkpoint's dtypes. The CPU (a no-op) computes f32 only. */
lyra_status lyra_umt5_place(lyra_umt5 *m, lyra_backend *be, lyra_dtype act);

/* Bucket of relative position d = key − query (bidirectional; upstream T5RelativeEmbedding, T5:259-296).
 * Evaluated in float32 in upstream's operation order so that any (buckets, max_dist) matches torch. */
int64_t lyra_umt5_bucket(int64_t d, int64_t num_buckets, int64_t max_dist);

/* Relative position bias of one block: bias (heads, Lq, Lk) f32 host, bias[n, i, j] = P[bucket(j − i), n]. */
lyra_status lyra_umt5_position_bias(const lyra_umt5 *m, int64_t layer, int64_t Lq, int64_t Lk, float *bias);

/* Encodes B sequences of L tokens.
 *   ids (B, L) host int32 in [0, vocab); mask (B, L) host uint8, nonzero = real token (upstream: content + </s>);
 *   out (B, L, dim) f32 on be's device, contiguous.
 * zero_padded = 0: the raw encoder output at every position (padded queries computed, padded keys masked).
 * zero_padded = 1: what Lyra feeds the DiT (upstream T5:522-537): with seq_len = number of nonzero mask entries of
 *   a row, rows < seq_len are the encoder output and rows >= seq_len exactly 0. When every mask row is a prefix
 *   (1…1 0…0), only the first max(seq_len) positions are computed: masked keys get probability exactly 0 and
 *   every other op is per token, so the kept rows are the same as with the full length.
 * The arena must hold the bytes lyra_umt5_arena_measure gives for the same inputs. */
lyra_status lyra_umt5_encode(const lyra_umt5 *m, lyra_backend *be, lyra_arena *arena, lyra_tensor *out,
                             const int32_t *ids, const uint8_t *mask, int64_t B, int64_t L, int zero_padded);

/* The arena bytes lyra_umt5_encode needs for exactly these inputs, measured by running it on the measuring
 * backend presenting itself as `device` (umt5_measure.c). The encode's callers size their arena with it. */
lyra_status lyra_umt5_arena_measure(const lyra_umt5 *m, lyra_device device, const int32_t *ids, const uint8_t *mask,
                                    int64_t B, int64_t L, int zero_padded, size_t *need);
/* The no-weights cost model of the same with activations stored as `act` (an upper bound, alignment included;
 * tests compare it with the measurement). */
size_t lyra_umt5_arena_bytes_as(const lyra_umt5_config *cfg, int64_t B, int64_t L, lyra_dtype act);
/* The same for f32 activations (the CPU backend). */
size_t lyra_umt5_arena_bytes(const lyra_umt5_config *cfg, int64_t B, int64_t L);
/* Parameters of the encoder, and multiply-add FLOPs (2 per MAC) of one forward over (B, L) tokens: the
 * projections, QKᵀ and PV, and the FFN (norms, softmax and bias gathers are O(L·D) and left out). */
int64_t lyra_umt5_params(const lyra_umt5_config *cfg);
double lyra_umt5_flops(const lyra_umt5_config *cfg, int64_t B, int64_t L);

#endif
