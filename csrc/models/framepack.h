/* FramePack layout strings and the token geometry they give (upstream M:400-473, M:448-451, M:435-440, WL:555-803).
 *
 * Grammar (strict; upstream's parser is looser, see framepack.c):
 *     layout   := segment+ "_g" N
 *     segment  := "f" n type K        type := "k" | "s"
 * with n, K, N decimal integers in [1, LYRA_FP_MAX_COUNT]. A segment is n history latent frames tokenized with
 * kernel K: type k compresses t, h and w by K (latent patch (K, 2K, 2K)), type s compresses only h and w
 * (patch (1, 2K, 2K)). N is the number of generated latent frames (patch (1, 2, 2)). Segments occupy packed
 * time slots in order, then the N generated frames: the released "f1k1f4s2f1s1f16k4f2k2f1k1_g20" has 25
 * history slots (0..24) and 20 generated slots (25..44). The kernel id of history segment i is i; the
 * generated chunk has kernel id -1 and is always last. */
#ifndef LYRA_MODELS_FRAMEPACK_H
#define LYRA_MODELS_FRAMEPACK_H

#include <stdint.h>

#include "lyra2.h"

#define LYRA_FP_MAX_SEGMENTS 16
#define LYRA_FP_MAX_COUNT 1024
/* The Wan RoPE table has 128 positions per axis (upstream W:129, W:169-171): packed slots and token-grid
 * rows / columns beyond it are rejected. */
#define LYRA_FP_MAX_POSITIONS 128

typedef struct lyra_fp_segment {
    int frames;  /* n: latent frames in the segment */
    char type;   /* 'k' or 's' */
    int kernel;  /* K */
} lyra_fp_segment;

typedef struct lyra_framepack {
    int n_segments;                            /* history segments (= clean patch embeddings) */
    lyra_fp_segment seg[LYRA_FP_MAX_SEGMENTS];
    int n_new;                                 /* N: generated latent frames */
    int n_history;                             /* sum of segment frames */
    int n_total;                               /* n_history + n_new: T of every input tensor */
    int n_spatial;                             /* frames in 's' segments: correspondence-buffer slots */
    int n_temporal;                            /* frames in 'k' segments */
} lyra_framepack;

/* Parses `layout` into *fp. LYRA_ERR_ARG with a message quoting the layout and the offending position. */
lyra_status lyra_framepack_parse(lyra_framepack *fp, const char *layout);

/* One chunk of the packed sequence on a latent grid H×W (H, W even). Chunk c < n_segments is history segment c;
 * chunk n_segments is the generated one. */
typedef struct lyra_fp_chunk {
    int kernel_id;           /* c for history, -1 for generated */
    char type;               /* 'k', 's' or 'g' (generated) */
    int K;                   /* kernel (1 for generated) */
    int slot0, frames;       /* packed time slots [slot0, slot0 + frames) */
    int pt, ph, pw;          /* latent patch: (K, 2K, 2K) for k, (1, 2K, 2K) for s, (1, 2, 2) generated */
    int qt, qh, qw;          /* pooling kernel on the 2×2-token grid (camera and RoPE): patch / (1, 2, 2) */
    int64_t f, h, w;         /* token grid: ceil(frames/pt), ceil(H/ph), ceil(W/pw) (replicate padding) */
    int64_t token0, n_tokens;/* position in the packed sequence */
} lyra_fp_chunk;

/* Fills chunks[0 .. n_segments] for a latent grid H×W and returns the sequence length *L and the first
 * generated token *gen_start (= number of history tokens). LYRA_ERR_ARG when H or W is odd or < 2, or when
 * a table limit is exceeded (messages name latent_h / latent_w). For the released layout at 60×104:
 * L = 38246, gen_start = 7046. */
lyra_status lyra_framepack_chunks(const lyra_framepack *fp, int64_t H, int64_t W, lyra_fp_chunk *chunks,
                                  int64_t *L, int64_t *gen_start);

#endif
