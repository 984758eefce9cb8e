/* CPU layout ops: concat, pad (zero / replicate), patchify / unpatchify, embedding lookup. */
#include "nn/cpu/cpu_internal.h"

lyra_status cpu_concat(lyra_backend *be, lyra_tensor *y, const lyra_tensor *const *xs, int n, int dim) {
    if (dim < 0) dim += y->ndim;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        lyra_tensor part;
        LYRA_TRY(lyra_tensor_slice(&part, y, dim, off, off + xs[i]->ne[dim]));
        LYRA_TRY(cpu_copy(be, &part, xs[i]));
        off += xs[i]->ne[dim];
    }
    return LYRA_OK;
}

lyra_status cpu_pad(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, const int64_t *pads, lyra_pad_mode mode) {
    int nd = y->ndim;
    size_t es = lyra_dtype_size(y->dtype);
    if (nd == 0) { memcpy(y->data, x->data, es); return LYRA_OK; }
    int64_t rows = cpu_rows(y), n = cpu_inner(y), nx = x->ne[nd - 1], before = pads[2 * (nd - 1)];
#pragma omp parallel for num_threads(cpu_threads(be, rows * n)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        char *yp = (char *)y->data + cpu_row_offset(y, y, r);
        /* Source row: per outer dim, index − before, clamped (replicate) or out of range (zero). */
        int64_t rem = r, off = 0;
        int inside = 1;
        for (int i = nd - 2; i >= 0; i--) {
            int64_t idx = rem % y->ne[i] - pads[2 * i];
            rem /= y->ne[i];
            if (idx < 0 || idx >= x->ne[i]) {
                if (mode == LYRA_PAD_ZERO) { inside = 0; break; }
                idx = idx < 0 ? 0 : x->ne[i] - 1;
            }
            off += idx * x->nb[i];
        }
        if (!inside) {
            for (int64_t j = 0; j < n; j++) memset(yp + j * y->nb[nd - 1], 0, es);
            continue;
        }
        const char *xp = (const char *)x->data + off;
        for (int64_t j = 0; j < n; j++) {
            int64_t idx = j - before;
            char *dst = yp + j * y->nb[nd - 1];
            if (idx < 0 || idx >= nx) {
                if (mode == LYRA_PAD_ZERO) { memset(dst, 0, es); continue; }
                idx = idx < 0 ? 0 : nx - 1;
            }
            memcpy(dst, xp + idx * x->nb[nd - 1], es);
        }
    }
    return LYRA_OK;
}

/* Byte offsets, relative to the patch's first element, of token-vector positions e = 0..E-1 for a (B, C, T, H, W)
 * video v with patch (kt, kh, kw): the same for every token, so computed once per call (the divisions per element
 * they replace were 6 % of a DiT forward: the buffer tokens alone are 9,602 × 5,120 values). */
static int64_t *patch_offsets(lyra_backend *be, const lyra_tensor *v, int kt, int kh, int kw, lyra_patch_order order) {
    int64_t C = v->ne[1], E = C * kt * kh * kw, e = 0;
    int64_t *rel = lyra_backend_scratch(be, (size_t)E * sizeof(int64_t), "patchify");
    if (!rel) return NULL;
    if (order == LYRA_PATCH_C_SLOWEST) {
        for (int64_t c = 0; c < C; c++)
            for (int a = 0; a < kt; a++)
                for (int r = 0; r < kh; r++)
                    for (int s = 0; s < kw; s++) rel[e++] = c * v->nb[1] + a * v->nb[2] + r * v->nb[3] + s * v->nb[4];
    } else {
        for (int a = 0; a < kt; a++)
            for (int r = 0; r < kh; r++)
                for (int s = 0; s < kw; s++)
                    for (int64_t c = 0; c < C; c++)
                        rel[e++] = c * v->nb[1] + a * v->nb[2] + r * v->nb[3] + s * v->nb[4];
    }
    return rel;
}

/* Byte offset of token tok's patch origin in v (without the batch term). */
static inline int64_t patch_origin(const lyra_tensor *v, int64_t tok, int kt, int kh, int kw) {
    int64_t Hp = v->ne[3] / kh, Wp = v->ne[4] / kw;
    int64_t j = tok % Wp, i = (tok / Wp) % Hp, f = tok / (Wp * Hp);
    return f * kt * v->nb[2] + i * kh * v->nb[3] + j * kw * v->nb[4];
}

lyra_status cpu_patchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                         lyra_patch_order order) {
    LYRA_TRY(cpu_require_f32("patchify", 2, y, x));
    int64_t B = y->ne[0], L = y->ne[1], E = y->ne[2];
    const int64_t *rel = patch_offsets(be, x, kt, kh, kw, order);
    if (!rel) return LYRA_ERR_OOM;
#pragma omp parallel for num_threads(cpu_threads(be, B * L * E)) schedule(static)
    for (int64_t bl = 0; bl < B * L; bl++) {
        int64_t b = bl / L, tok = bl % L;
        float *yp = (float *)y->data + bl * E;
        const char *xb = (const char *)x->data + b * x->nb[0] + patch_origin(x, tok, kt, kh, kw);
        for (int64_t e = 0; e < E; e++) yp[e] = *(const float *)(xb + rel[e]);
    }
    return LYRA_OK;
}

lyra_status cpu_unpatchify(lyra_backend *be, lyra_tensor *y, const lyra_tensor *x, int kt, int kh, int kw,
                           lyra_patch_order order) {
    LYRA_TRY(cpu_require_f32("unpatchify", 2, y, x));
    int64_t B = x->ne[0], L = x->ne[1], E = x->ne[2];
    /* y is contiguous (validated), so the offsets on y's strides give the destinations. */
    const int64_t *rel = patch_offsets(be, y, kt, kh, kw, order);
    if (!rel) return LYRA_ERR_OOM;
#pragma omp parallel for num_threads(cpu_threads(be, B * L * E)) schedule(static)
    for (int64_t bl = 0; bl < B * L; bl++) {
        int64_t b = bl / L, tok = bl % L;
        const char *xp = (const char *)x->data + b * x->nb[0] + tok * x->nb[1];
        char *yb = (char *)y->data + b * y->nb[0] + patch_origin(y, tok, kt, kh, kw);
        for (int64_t e = 0; e < E; e++) *(float *)(yb + rel[e]) = *(const float *)(xp + e * x->nb[2]);
    }
    return LYRA_OK;
}

lyra_status cpu_embedding(lyra_backend *be, lyra_tensor *y, const lyra_tensor *table, const lyra_tensor *ids) {
    (void)be;
    LYRA_TRY(cpu_require_f32("embedding", 1, y));
    int64_t N = lyra_tensor_numel(ids), V = table->ne[0], D = table->ne[1];
    for (int64_t n = 0; n < N; n++) {
        /* flat index n over ids' own (possibly strided) layout */
        int64_t rem = n, off = 0;
        for (int i = ids->ndim - 1; i >= 0; i--) {
            off += (rem % ids->ne[i]) * ids->nb[i];
            rem /= ids->ne[i];
        }
        const char *p = (const char *)ids->data + off;
        int64_t id = ids->dtype == LYRA_DTYPE_I32 ? *(const int32_t *)p : *(const int64_t *)p;
        if (id < 0 || id >= V)
            return lyra_error(LYRA_ERR_ARG, "embedding: id %lld at position %lld is outside [0, %lld)", (long long)id,
                              (long long)n, (long long)V);
        const char *row = (const char *)table->data + id * table->nb[0];
        float *dst = (float *)y->data + n * D;
        if (table->nb[1] == (int64_t)lyra_dtype_size(table->dtype))
            lyra_convert_to_f32(dst, row, table->dtype, D);
        else
            for (int64_t d = 0; d < D; d++) dst[d] = cpu_load(row + d * table->nb[1], table->dtype);
    }
    return LYRA_OK;
}
