/* FramePack layout parser and chunk geometry (upstream M:400-473, M:448-451, M:435-440).
 *
 * Upstream (M:400-473) splits on "_", requires the first part to start with "f" and the second with "g", splits
 * the first on "f" and skips empty pieces, then reads digits, a type letter and int(rest). It therefore also
 * accepts oddities such as "ff1k1_g2", "f1k+1_g2" or "f1k1_g2_anything". We accept exactly the grammar of
 * framepack.h and reject everything else with a message, since a mistyped layout silently changing the token
 * layout would be worse than an error. */
#include "models/framepack.h"

#include <string.h>

/* Reads a decimal count in [1, LYRA_FP_MAX_COUNT] at *p; advances *p. Returns -1 when there is none or it is
 * out of range. */
static int read_count(const char **p) {
    const char *s = *p;
    long v = 0;
    int nd = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        if (v > LYRA_FP_MAX_COUNT) return -1;
        s++;
        nd++;
    }
    if (nd == 0 || v < 1) return -1;
    *p = s;
    return (int)v;
}

lyra_status lyra_framepack_parse(lyra_framepack *fp, const char *layout) {
    static const char grammar[] = "expected f<n>{k|s}<K>... segments then _g<N>, e.g. 'f1k1f4s2f1s1f16k4f2k2f1k1_g20'";
    memset(fp, 0, sizeof *fp);
    if (!layout || !*layout) return lyra_error(LYRA_ERR_ARG, "framepack: the layout string is empty (%s)", grammar);
    const char *p = layout;
    while (*p == 'f') {
        if (fp->n_segments == LYRA_FP_MAX_SEGMENTS)
            return lyra_error(LYRA_ERR_ARG, "framepack '%s': more than %d history segments", layout,
                              LYRA_FP_MAX_SEGMENTS);
        const char *start = p++;
        lyra_fp_segment *s = &fp->seg[fp->n_segments];
        s->frames = read_count(&p);
        if (s->frames < 0 || (*p != 'k' && *p != 's'))
            return lyra_error(LYRA_ERR_ARG, "framepack '%s': bad segment at offset %d (%s; n and K in 1..%d)", layout,
                              (int)(start - layout), grammar, LYRA_FP_MAX_COUNT);
        s->type = *p++;
        s->kernel = read_count(&p);
        if (s->kernel < 0)
            return lyra_error(LYRA_ERR_ARG, "framepack '%s': segment at offset %d needs a kernel size 1..%d after '%c'",
                              layout, (int)(start - layout), LYRA_FP_MAX_COUNT, s->type);
        fp->n_segments++;
        fp->n_history += s->frames;
        if (s->type == 's') fp->n_spatial += s->frames;
        else fp->n_temporal += s->frames;
    }
    if (fp->n_segments == 0)
        return lyra_error(LYRA_ERR_ARG, "framepack '%s': no history segment (%s)", layout, grammar);
    if (p[0] != '_' || p[1] != 'g')
        return lyra_error(LYRA_ERR_ARG, "framepack '%s': expected '_g<N>' at offset %d (%s)", layout,
                          (int)(p - layout), grammar);
    p += 2;
    fp->n_new = read_count(&p);
    if (fp->n_new < 0 || *p)
        return lyra_error(LYRA_ERR_ARG, "framepack '%s': '_g' must be followed by N in 1..%d and nothing else",
                          layout, LYRA_FP_MAX_COUNT);
    fp->n_total = fp->n_history + fp->n_new;
    if (fp->n_total > LYRA_FP_MAX_POSITIONS)
        return lyra_error(LYRA_ERR_ARG, "framepack '%s': %d latent frames in total, the RoPE table has %d positions",
                          layout, fp->n_total, LYRA_FP_MAX_POSITIONS);
    return LYRA_OK;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

lyra_status lyra_framepack_chunks(const lyra_framepack *fp, int64_t H, int64_t W, lyra_fp_chunk *chunks,
                                  int64_t *L, int64_t *gen_start) {
    /* Even sizes: the camera channels are 2×2 pixel-unshuffled onto the token grid (WL:908-912). */
    if (H < 2 || H % 2 || W < 2 || W % 2)
        return lyra_error(LYRA_ERR_ARG, "dit: latent_h and latent_w must be even and >= 2, got %lld x %lld",
                          (long long)H, (long long)W);
    if (H / 2 > LYRA_FP_MAX_POSITIONS || W / 2 > LYRA_FP_MAX_POSITIONS)
        return lyra_error(LYRA_ERR_ARG, "dit: latent %lld x %lld gives a %lld x %lld token grid; the RoPE table "
                          "allows at most %d per axis", (long long)H, (long long)W, (long long)(H / 2),
                          (long long)(W / 2), LYRA_FP_MAX_POSITIONS);
    int64_t tok = 0;
    int slot = 0;
    for (int c = 0; c <= fp->n_segments; c++) {
        lyra_fp_chunk *k = &chunks[c];
        memset(k, 0, sizeof *k);
        if (c < fp->n_segments) {
            const lyra_fp_segment *s = &fp->seg[c];
            k->kernel_id = c;
            k->type = s->type;
            k->K = s->kernel;
            k->frames = s->frames;
            k->pt = s->type == 'k' ? s->kernel : 1;
        } else {
            k->kernel_id = -1;
            k->type = 'g';
            k->K = 1;
            k->frames = fp->n_new;
            k->pt = 1;
        }
        k->slot0 = slot;
        k->ph = k->pw = 2 * k->K;
        k->qt = k->pt;
        k->qh = k->qw = k->K;
        k->f = ceil_div(k->frames, k->pt);
        k->h = ceil_div(H, k->ph);
        k->w = ceil_div(W, k->pw);
        k->token0 = tok;
        k->n_tokens = k->f * k->h * k->w;
        tok += k->n_tokens;
        slot += k->frames;
        if (c == fp->n_segments - 1) *gen_start = tok;
    }
    *L = tok;
    return LYRA_OK;
}
