/* 3-D RoPE angles of the packed sequence with averaged angles for compressed history tokens (upstream W:93-188,
 * W:203-232, WL:586-596, upstream W:129-184 for the base table, WL:742-764 for the pooling).
 *
 * Upstream builds the angle table of the full base grid (slot t, token row h, token column w), then for a
 * history chunk selects its slots (repeating the last one up to a multiple of the time kernel), replicate-pads
 * rows and columns up to multiples of the pool kernel and average-pools the table. A border token therefore gets
 * the mean angle of the CLAMPED positions of its cell (e.g. rows {28, 29, 29, 29} -> 28.75), not the angle of
 * the clamped cell centre. We average the table values the same way (f32 table, f64 sum like torch's CPU
 * avg_pool, f32 result). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

#define ROPE_MAX_HALF 256 /* head_dim <= 512, checked by lyra_dit_config_detect */

/* Base frequencies exactly as upstream computes them in f32: 1 / 10000^(2j/d) with the exponent rounded to f32. */
static void axis_freqs(float *f, int d) {
    for (int j = 0; j < d / 2; j++) f[j] = 1.0f / powf(10000.0f, (float)(2 * j) / (float)d);
}

void lyra_dit_rope_angles(float *phi, const lyra_fp_chunk *chunks, int n_chunks, int64_t Hb, int64_t Wb,
                          int head_dim) {
    int dh = 2 * (head_dim / 6), dt = head_dim - 2 * dh, nt = dt / 2, nh = dh / 2, half = head_dim / 2;
    float ft[ROPE_MAX_HALF], fh[ROPE_MAX_HALF];
    axis_freqs(ft, dt);
    axis_freqs(fh, dh);
    int64_t row = 0;
    for (int c = 0; c < n_chunks; c++) {
        const lyra_fp_chunk *k = &chunks[c];
        int cell = k->qt * k->qh * k->qw;
        for (int64_t f = 0; f < k->f; f++)
            for (int64_t i = 0; i < k->h; i++)
                for (int64_t j = 0; j < k->w; j++, row++) {
                    float *o = phi + row * half;
                    double acc[ROPE_MAX_HALF];
                    memset(acc, 0, sizeof(double) * (size_t)half);
                    for (int a = 0; a < k->qt; a++) {
                        int64_t ft_i = f * k->qt + a;
                        float t = (float)(k->slot0 + (ft_i < k->frames ? ft_i : k->frames - 1));
                        for (int rr = 0; rr < k->qh; rr++) {
                            int64_t hi = i * k->qh + rr;
                            float h = (float)(hi < Hb ? hi : Hb - 1);
                            for (int s = 0; s < k->qw; s++) {
                                int64_t wi = j * k->qw + s;
                                float w = (float)(wi < Wb ? wi : Wb - 1);
                                for (int q = 0; q < nt; q++) acc[q] += t * ft[q];
                                for (int q = 0; q < nh; q++) acc[nt + q] += h * fh[q];
                                for (int q = 0; q < nh; q++) acc[nt + nh + q] += w * fh[q];
                            }
                        }
                    }
                    for (int q = 0; q < half; q++) o[q] = (float)(acc[q] / cell);
                }
    }
}

lyra_status dit_rope_table(dit_run *r) {
    /* The angles depend only on the layout and the grid: a forward at the grid of the previous one finds them
     * where that forward left them (the arena allocates in the same order every forward and nothing else writes
     * it), so the host computation and the upload (10 MB per call at 480p) happen once per grid. */
    lyra_dit *m = r->m;
    if (m->rope_kept.data == r->phi.data && m->rope_kept.H == r->H && m->rope_kept.W == r->W) {
        dit_probe(r, "freqs", &r->phi);
        return LYRA_OK;
    }
    m->rope_kept.data = NULL;
    size_t bytes = (size_t)r->L * (size_t)(r->m->cfg.head_dim / 2) * sizeof(float);
    float *host = malloc(bytes);
    if (!host) return lyra_error(LYRA_ERR_OOM, "dit: cannot allocate the RoPE table (%zu bytes)", bytes);
    lyra_dit_rope_angles(host, r->chunks, r->n_chunks, r->Hb, r->Wb, r->m->cfg.head_dim);
    lyra_status st = dit_upload(r, &r->phi, host, bytes);
    free(host);
    if (st == LYRA_OK) {
        m->rope_kept.data = r->phi.data;
        m->rope_kept.H = r->H;
        m->rope_kept.W = r->W;
        dit_probe(r, "freqs", &r->phi);
    }
    return st;
}
